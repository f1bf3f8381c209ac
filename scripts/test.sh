#!/usr/bin/env bash
# Install everything the tests need (SpatiaLite, PostgreSQL + PostGIS started as the
# postgres user, the Python test tools) and run the whole suite with the linters.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_debian_packages libsqlite3-mod-spatialite postgresql-15-postgis-3 chromium
ensure_venv "[test]"
ensure_node_modules

FIELDOPS_TEST_POSTGIS_URL="$(bash scripts/postgis.sh fieldops_test | tail -n 1)"
export FIELDOPS_TEST_POSTGIS_URL

echo "== ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy" && .venv/bin/mypy
echo "== import contracts" && .venv/bin/lint-imports --no-cache | tail -n 5
# Two workers: each gets its own SpatiaLite file and its own PostGIS database.
echo "== pytest" && .venv/bin/pytest -n 2 "$@"
