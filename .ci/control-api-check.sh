#!/usr/bin/env bash
# Checks the control plane's real responses against its own OpenAPI document with schemathesis,
# on a throwaway PostgreSQL and redis-server.
# Usage: .ci/control-api-check.sh path/to/cratopus
# Needs: postgresql (Debian package), redis-server, python3-venv.
set -euo pipefail
BIN=$(realpath "$1")
VENV="${CRATOPUS_CI_VENV:-$HOME/.cache/cratopus-ci-venv}"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  rm -rf "$VENV"  # a half-made one (an earlier run failed) is made again
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis
fi
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DIR=$(mktemp -d)
chmod 755 "$DIR"
PG=$(freeport); REDIS=$(freeport); API=$(freeport); TOKEN=ci-operator-token-$RANDOM$RANDOM$RANDOM
# PostgreSQL refuses root: run it as the postgres user when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir "$DIR/pg"
[ "$(id -u)" = 0 ] && chown postgres "$DIR/pg"
as_pg "$PGBIN/initdb" -D "$DIR/pg" -A trust -U cratopus --no-sync >/dev/null
as_pg "$PGBIN/postgres" -D "$DIR/pg" -k "$DIR/pg" -p "$PG" -c listen_addresses=127.0.0.1 -c fsync=off > "$DIR/pg.log" 2>&1 &
PGPID=$!
redis-server --bind 127.0.0.1 --port "$REDIS" --save '' --appendonly no > "$DIR/redis.log" 2>&1 &
REDISPID=$!
cleanup() {
  kill "${CPPID:-}" 2>/dev/null || true
  kill "$REDISPID" 2>/dev/null || true
  [ -f "$DIR/pg/postmaster.pid" ] && kill -QUIT "$(head -1 "$DIR/pg/postmaster.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 200); do
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG" && break
  sleep 0.1
done
"$PGBIN/psql" -q -h 127.0.0.1 -p "$PG" -U cratopus -d postgres -c 'CREATE DATABASE control'
cat > "$DIR/control.yaml" <<YAML
bind: 127.0.0.1:$API
database: postgres://cratopus@127.0.0.1:$PG/control
redis: {urls: ["redis://127.0.0.1:$REDIS"]}
operator_token: $TOKEN
YAML
"$BIN" control -c "$DIR/control.yaml" > "$DIR/control.log" 2>&1 &
CPPID=$!
for _ in $(seq 200); do
  curl -fs "http://127.0.0.1:$API/api/v1/openapi.json" >/dev/null && break
  sleep 0.1
done
H=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')
# Something for the read endpoints to describe: an organization with a route, a token.
curl -fsS "${H[@]}" -X POST "http://127.0.0.1:$API/api/v1/organizations" -d '{"name": "root",
  "domains": ["api.root.test"], "upstreams": {"m": {"targets": ["mirror://"]}},
  "routes": [{"name": "root", "path": "/", "upstream": "m"}]}' >/dev/null
cd "$DIR"  # schemathesis keeps state in ./.schemathesis and reads ./schemathesis.toml
# A well-formed write can still be refused: 422 when the organization does not compile (an
# OpenAPI schema cannot say that a route's upstream must exist) and 412 when If-Match names
# another version. Both are the API working, not a rejected valid request; and a malformed
# write with a stale If-Match is refused by the precondition first (412, not accepted).
# Paths name the organization the script made, so that its resources are reached (and fuzzed)
# rather than answered 404.
cat > schemathesis.toml <<'TOML'
[parameters]
"path.org" = "root"
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "429", "5xx"]
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "415", "422", "428", "429", "5xx"]
TOML
"$VENV/bin/schemathesis" run "http://127.0.0.1:$API/api/v1/openapi.json" \
  -H "Authorization: Bearer $TOKEN" --max-examples 30 || { tail -50 "$DIR/control.log"; exit 1; }
