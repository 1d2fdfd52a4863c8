#!/bin/sh
# Entrypoint of the local PostgreSQL image that deploy/composetest assembles from
# Debian's postgresql-17 package when postgres:17 cannot be pulled. It honours the
# official image's variables the compose file sets: POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB and PGDATA (initialised on first start, password auth over TCP).
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
  pw=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8
  rm -f "$pw"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    # Single-user mode: no server listens before the database exists.
    echo "CREATE DATABASE \"$db\" OWNER \"$user\"" | postgres --single -D "$PGDATA" -c jit=off postgres >/dev/null
  fi
fi
# The image leaves out LLVM (JIT) to stay small.
exec postgres -D "$PGDATA" -c listen_addresses='*' -c jit=off "$@"
