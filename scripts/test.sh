#!/usr/bin/env bash
# Install what the test suite needs (fresh Debian is fine) and run all of it.
# Extra arguments go to pytest, e.g. scripts/test.sh -k batch
set -euo pipefail
. "$(dirname "$0")/venv.sh"
# curl: the README's examples are tested with curl itself
command -v curl >/dev/null || idnode_apt_install curl
# redis-server: the Redis cache tier is tested against a real server the tests start
command -v redis-server >/dev/null || idnode_apt_install redis-server
# chromium: the record page is tested in a real (headless) browser, phone-sized
command -v chromium >/dev/null || idnode_apt_install chromium
# cairo (SVG labels are rasterised with cairosvg to be decoded) and a CJK font
# (labels print Chinese product names)
dpkg -s libcairo2 >/dev/null 2>&1 || idnode_apt_install libcairo2
fc-list :lang=zh 2>/dev/null | grep -q . || idnode_apt_install fonts-wqy-zenhei
idnode_venv test
cd "$idnode_root"
exec .venv/bin/python -m pytest "$@"
