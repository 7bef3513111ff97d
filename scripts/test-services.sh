#!/usr/bin/env bash
# Starts the real services that the revocation-source tests run against: a
# redis-server and a PostgreSQL cluster, both on loopback only, and prints the
# environment the tests read:
#
#   eval "$(bash scripts/test-services.sh)"
#   go test ./revocationsource/... ./cmd/revocation-source/...
#
# It also installs what the tests run: Debian's Flask-SQLAlchemy,
# flask-jwt-extended and psycopg2 (for /usr/bin/python3), curl, openssl,
# Node.js and npm (the V8 host; the status list's npm peers).
#
# Idempotent: a second run finds both services answering and only prints the
# exports. Everything but the export lines goes to stderr so that eval sees
# nothing else. Needs root on Debian (apt-get, su postgres) the first time.
set -euo pipefail

REDIS_PORT="${TEST_REDIS_PORT:-6379}"
PG_PORT="${TEST_PG_PORT:-5432}"
PG_USER="${TEST_PG_USER:-jtiguard}"
PG_PASSWORD="${TEST_PG_PASSWORD:-jtiguard}"
PG_DB="${TEST_PG_DB:-jtiguard_test}"
REDIS_DIR="${TEST_REDIS_DIR:-/tmp/jtiguard-test-redis}"

log() { echo "test-services: $*" >&2; }

need_install=()
command -v redis-server >/dev/null 2>&1 || need_install+=(redis-server)
command -v pg_ctlcluster >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_install+=(postgresql)
# The real flask-jwt-extended app of the SQL store's tests, and what the docs' commands use;
# PyJWT and cryptography mint the back-channel logout tokens of the source's tests.
/usr/bin/python3 -c 'import flask_sqlalchemy, flask_jwt_extended, psycopg2, jwt, cryptography' >/dev/null 2>&1 ||
  need_install+=(python3-flask-sqlalchemy python3-python-flask-jwt-extended python3-psycopg2 python3-jwt python3-cryptography)
command -v curl >/dev/null 2>&1 || need_install+=(curl)
command -v openssl >/dev/null 2>&1 || need_install+=(openssl)
# The V8 host's tests run the module in Node.js (they fail, never skip, without it), and the
# status list's tests compare with independent implementations from npm.
command -v node >/dev/null 2>&1 || need_install+=(nodejs)
command -v npm >/dev/null 2>&1 || need_install+=(npm)
if ((${#need_install[@]})); then
  log "installing ${need_install[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need_install[@]}" >&2
fi
bash "$(dirname "$0")/install-differential.sh" >&2 # the Python reference of e2e/differential
statuslist_peers="$(dirname "$0")/../statuslist/testdata"
[ -d "$statuslist_peers/node_modules" ] ||
  (cd "$statuslist_peers" && npm ci --ignore-scripts --no-audit --no-fund >&2) # the npm peers of statuslist's tests

# --- Redis: our own instance, no persistence, loopback only. ---
if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)" != "PONG" ]; then
  log "starting redis-server on 127.0.0.1:$REDIS_PORT"
  mkdir -p "$REDIS_DIR"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --dir "$REDIS_DIR" --save '' --appendonly no \
    --logfile "$REDIS_DIR/redis.log" --pidfile "$REDIS_DIR/redis.pid" >&2
  for _ in $(seq 1 50); do
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)" = "PONG" ] && break
    sleep 0.1
  done
  [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)" = "PONG" ] || { log "redis did not start"; exit 1; }
fi

# --- PostgreSQL: the Debian cluster, started with pg_ctlcluster. ---
pg_ready() { su postgres -c "psql -h 127.0.0.1 -p $PG_PORT -Atqc 'select 1'" >/dev/null 2>&1 || \
             su postgres -c "psql -p $PG_PORT -Atqc 'select 1'" >/dev/null 2>&1; }
if ! pg_ready; then
  PG_VERSION="$(ls /usr/lib/postgresql | sort -V | tail -1)"
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$PG_VERSION main"; then
    log "creating PostgreSQL $PG_VERSION cluster main"
    pg_createcluster "$PG_VERSION" main -p "$PG_PORT" -- --auth-local=peer --auth-host=scram-sha-256 >&2
  fi
  log "starting PostgreSQL $PG_VERSION/main on port $PG_PORT"
  pg_ctlcluster "$PG_VERSION" main start -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT" >&2 || true
  for _ in $(seq 1 100); do pg_ready && break; sleep 0.1; done
  pg_ready || { log "PostgreSQL did not start"; exit 1; }
fi

psql_su() { su postgres -c "psql -p $PG_PORT -v ON_ERROR_STOP=1 -Atq $*" >&2; }
if [ "$(su postgres -c "psql -p $PG_PORT -Atqc \"select 1 from pg_roles where rolname='$PG_USER'\"")" != "1" ]; then
  log "creating role $PG_USER"
  psql_su "-c \"create role $PG_USER login password '$PG_PASSWORD'\""
fi
if [ "$(su postgres -c "psql -p $PG_PORT -Atqc \"select 1 from pg_database where datname='$PG_DB'\"")" != "1" ]; then
  log "creating database $PG_DB"
  psql_su "-c \"create database $PG_DB owner $PG_USER\""
fi

echo "export REDIS_ADDR=127.0.0.1:$REDIS_PORT"
echo "export PG_DSN='postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable'"
