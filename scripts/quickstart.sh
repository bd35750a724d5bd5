#!/usr/bin/env bash
# Install idnode and run a node on its embedded defaults: SQLite in
# ./idnode-data, prefix 88.118.2, http://127.0.0.1:8000 (no Redis, nothing else).
set -euo pipefail
. "$(dirname "$0")/venv.sh"
idnode_venv
cd "$idnode_root"
.venv/bin/idnode init --data idnode-data --prefix "${IDNODE_PREFIX:-88.118.2}" --if-missing
exec .venv/bin/idnode serve --data idnode-data "$@"
