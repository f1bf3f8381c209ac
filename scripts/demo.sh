#!/usr/bin/env bash
# Install what FieldOps needs and run the demo city: SpatiaLite database, Montréal layers,
# the real 311 sample, a dispatcher key, and the server on http://127.0.0.1:8000.
# Extra arguments go to `fieldops demo` (e.g. --port 8080, --db URL).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_debian_packages libsqlite3-mod-spatialite
ensure_venv ""
ensure_node_modules
exec .venv/bin/fieldops demo "$@"
