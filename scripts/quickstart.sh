#!/usr/bin/env bash
# Install idnode and run the demo hierarchy on its embedded defaults: a
# top-level node (88), a secondary node (88.118) and an enterprise node
# (88.118.2) over SQLite files in ./idnode-demo, with 300 sample products,
# and a recursive node on http://127.0.0.1:8000 (in-process cache; no Redis,
# nothing else). Extra arguments go to 'idnode demo' (--redis URL, --fresh ...).
set -euo pipefail
. "$(dirname "$0")/venv.sh"
idnode_venv
cd "$idnode_root"
exec .venv/bin/idnode demo "$@"
