#!/usr/bin/env bash
# Install (where missing) and start a local PostgreSQL + PostGIS, and make sure the
# fieldops role and the database named in $1 (default fieldops_test) exist.
# Prints the database URL on its last line.
set -euo pipefail

db="${1:-fieldops_test}"
pg_version=15
source "$(dirname "$0")/lib.sh"

ensure_debian_packages "postgresql-${pg_version}" "postgresql-${pg_version}-postgis-3"

# PostgreSQL refuses to run as root: Debian's wrapper starts the cluster as postgres.
if ! pg_lsclusters -h 2>/dev/null | grep -q "^${pg_version} *main"; then
  as_root pg_createcluster "${pg_version}" main >&2
fi
if ! pg_lsclusters -h | grep -q "^${pg_version} *main .* online"; then
  as_root pg_ctlcluster "${pg_version}" main start >&2
fi
for _ in $(seq 1 30); do
  if pg_isready -q -h 127.0.0.1 -p 5432; then break; fi
  sleep 0.5
done

psql_su() { as_root su postgres -c "psql -v ON_ERROR_STOP=1 -qAt $*"; }
psql_su "-c \"SELECT 1 FROM pg_roles WHERE rolname='fieldops'\"" | grep -q 1 ||
  psql_su "-c \"CREATE ROLE fieldops LOGIN CREATEDB PASSWORD 'fieldops'\"" >&2
# DROP DATABASE ... WITH (FORCE) ends the other sessions on a test database, an autovacuum
# worker's among them; without this grant that fails now and then.
psql_su "-c \"GRANT pg_signal_backend TO fieldops\"" >&2
psql_su "-c \"SELECT 1 FROM pg_database WHERE datname='${db}'\"" | grep -q 1 ||
  psql_su "-c \"CREATE DATABASE ${db} OWNER fieldops\"" >&2
psql_su "-d ${db} -c \"CREATE EXTENSION IF NOT EXISTS postgis\"" >&2
# A template with PostGIS in it, so a test run can create databases of its own
# without superuser rights (CREATE DATABASE ... TEMPLATE fieldops_template).
psql_su "-c \"SELECT 1 FROM pg_database WHERE datname='fieldops_template'\"" | grep -q 1 || {
  psql_su "-c \"CREATE DATABASE fieldops_template OWNER fieldops\"" >&2
  psql_su "-d fieldops_template -c \"CREATE EXTENSION IF NOT EXISTS postgis\"" >&2
}

echo "postgresql+psycopg://fieldops:fieldops@127.0.0.1:5432/${db}"
