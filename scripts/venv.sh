# Sourced by the set-up scripts: make .venv and install idnode into it.
# Usage: . scripts/venv.sh [EXTRA]   (EXTRA: pip extra, e.g. "test")
# PYTHON picks the interpreter (default: python3, 3.11 or newer).

idnode_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

idnode_apt_install() {
  # Install Debian packages that are missing; quiet when there is nothing to do.
  [ "$#" -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: $*" >&2
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

idnode_venv() {
  local extra="${1:-}" missing=()
  command -v "$PYTHON" >/dev/null || missing+=(python3)
  "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  idnode_apt_install "${missing[@]}"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "idnode needs Python 3.11 or newer ($PYTHON is older)" >&2; return 1; }
  [ -x "$idnode_root/.venv/bin/python" ] || "$PYTHON" -m venv "$idnode_root/.venv"
  "$idnode_root/.venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$idnode_root/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$idnode_root${extra:+[$extra]}"
}
