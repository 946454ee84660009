#!/usr/bin/env bash
# Start Debian's PostgreSQL for the tests and give them a role that may create databases
# (each test makes its own and drops it). Run by `scripts/bootstrap.sh dev` as root or
# through sudo; idempotent. The role and password are for a loopback test server only.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
role="${EARMARK_TEST_PG_ROLE:-earmark_test}"

read -r version cluster status < <($sudo pg_lsclusters -h | awk 'NR == 1 {print $1, $2, $4}') || true
if [ -z "${version:-}" ]; then
  version="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
  cluster=main
  $sudo pg_createcluster "$version" "$cluster"
  status=down
fi
# PostgreSQL keeps dynamic shared memory in /dev/shm; some containers mount it writable by
# root only, and the server then fails to start. Files in its data directory do the same job.
if ! $sudo runuser -u postgres -- test -w /dev/shm; then
  echo "dynamic_shared_memory_type = mmap" | $sudo tee "/etc/postgresql/$version/$cluster/conf.d/earmark-shm.conf" >/dev/null
fi
if [ "$status" != online ]; then
  $sudo pg_ctlcluster "$version" "$cluster" start
fi
as_postgres() { $sudo runuser -u postgres -- psql -v ON_ERROR_STOP=1 -Atq -c "$1"; }
if [ -z "$(as_postgres "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" ]; then
  as_postgres "CREATE ROLE $role LOGIN CREATEDB PASSWORD '$role'"
fi
# Each test drops its database WITH (FORCE); an autovacuum worker busy in it belongs to
# the superuser, and ending it takes pg_signal_backend.
as_postgres "GRANT pg_signal_backend TO $role"
port="$($sudo pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $3}')"
echo "dev_postgres: PostgreSQL $version/$cluster on 127.0.0.1:$port; tests connect as $role"
if [ "$port" != 5432 ] && [ -z "${EARMARK_TEST_POSTGRES:-}" ]; then
  echo "dev_postgres: not on port 5432: set EARMARK_TEST_POSTGRES=postgresql://$role:$role@127.0.0.1:$port/postgres" >&2
fi
