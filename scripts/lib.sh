# Shared by scripts/demo.sh and scripts/test.sh: system packages and the virtualenv.
# Every step checks first and does nothing when the machine already has what it needs.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
# ensure_debian_packages PKG...: install those not installed yet.
ensure_debian_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "Installing Debian packages: ${missing[*]}" >&2
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >&2
}

# ensure_venv EXTRAS: a .venv with Python >= 3.11 and FieldOps installed (editable).
ensure_venv() {
  local extras="$1"
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "FieldOps needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
      # Debian splits venv and ensurepip out of the interpreter package.
      rm -rf .venv
      ensure_debian_packages "python3-venv"
      "$python" -m venv .venv
    fi
  fi
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e ".${extras}" >&2
}

# ensure_node_modules: the map's browser libraries (Leaflet and plugins), exactly as
# package-lock.json pins them; the app serves them itself, never from a CDN.
ensure_node_modules() {
  command -v npm >/dev/null 2>&1 || ensure_debian_packages nodejs npm
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
  fi
}
