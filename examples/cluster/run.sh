#!/usr/bin/env bash
# A whole cratopus cluster on this machine, from one script: PostgreSQL, Redis, the control
# plane (`cratopus control`) and two gateway nodes (`cratopus run` with a `cluster:` section).
#
#   examples/cluster/run.sh           # start it all, create an organization through the
#                                     # control plane's API, show both nodes serving it, stop
#   examples/cluster/run.sh --keep    # the same, then keep everything running until Ctrl-C
#
# Needs redis-server and PostgreSQL (Debian: apt-get install redis-server postgresql); builds
# the gateway with cargo unless CRATOPUS_BIN names a binary. Everything listens on 127.0.0.1,
# on ports from BASE_PORT (default 17400) up, and lives in a temporary directory that is
# removed at the end. See docs/control-plane.md and docs/cluster.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
keep=false
[ "${1:-}" = "--keep" ] && keep=true

# --- what it needs --------------------------------------------------------------------------
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -n "$pg_bin" ] || missing+=(postgresql)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh needs: ${missing[*]} (apt-get install ${missing[*]})" >&2
  exit 2
fi
if [ -z "${CRATOPUS_BIN:-}" ]; then
  cargo build -q -p cratopus --manifest-path "$root/Cargo.toml"
  CRATOPUS_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/cratopus"
fi

base=${BASE_PORT:-17400}
pg_port=$((base)) redis_port=$((base + 1)) control_port=$((base + 2))
work="$(mktemp -d)"
chmod 711 "$work"   # PostgreSQL runs as its own user and must reach its directory
pids=()
cleanup() {
  # PostgreSQL by its own pid (runuser, which started it, does not pass signals on): a fast
  # shutdown, as pg_ctl's.
  local pm="$work/pg/data/postmaster.pid"
  [ -f "$pm" ] && kill -INT "$(head -1 "$pm")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls `$@` until it succeeds (30 s at most).
wait_for() {
  local what="$1"; shift
  for _ in $(seq 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "run.sh: $what did not come up; logs are in $work" >&2
  tail -n 20 "$work"/*.log >&2 || true
  exit 1
}

# --- Redis: versions, certificates and node reports travel through it -----------------------
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  > "$work/redis.log" 2>&1 &
pids+=($!)
wait_for "redis-server" bash -c "exec 3<>/dev/tcp/127.0.0.1/$redis_port"

# --- PostgreSQL: the control plane's store (PostgreSQL refuses to run as root) --------------
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pg_bin/initdb" -D "$work/pg/data" -A trust -U cratopus --no-sync -E UTF8 > "$work/initdb.log"
as_pg "$pg_bin/postgres" -D "$work/pg/data" -k "$work/pg/data" -p "$pg_port" \
  -c listen_addresses=127.0.0.1 > "$work/postgres.log" 2>&1 &
pids+=($!)
wait_for "PostgreSQL" "$pg_bin/pg_isready" -h 127.0.0.1 -p "$pg_port" -U cratopus -d postgres
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U cratopus cratopus

# --- the control plane: examples/control/control.yaml, told where things are ---------------
export CRATOPUS_OPERATOR_TOKEN="example-operator-token-$(date +%s%N)"
CONTROL_BIND="127.0.0.1:$control_port" \
CONTROL_DATABASE="postgres://cratopus@127.0.0.1:$pg_port/cratopus" \
CONTROL_REDIS="redis://127.0.0.1:$redis_port" \
  "$CRATOPUS_BIN" control -c "$root/examples/control/control.yaml" > "$work/control.log" 2>&1 &
pids+=($!)
api="http://127.0.0.1:$control_port/api/v1"
wait_for "the control plane" curl -sf "$api/health"

# --- two nodes: examples/cluster/node.yaml, each with its own name, ports and disk copy ------
for i in 1 2; do
  NODE="edge-$i" \
  CRATOPUS_BIND="127.0.0.1:$((base + 2 + 2 * i - 1))" \
  CRATOPUS_ADMIN_BIND="127.0.0.1:$((base + 2 + 2 * i))" \
  REDIS_URL="redis://127.0.0.1:$redis_port" \
  CACHE_DIR="$work" \
    "$CRATOPUS_BIN" run -c "$here/node.yaml" > "$work/node$i.log" 2>&1 &
  pids+=($!)
done
node_url() { echo "http://127.0.0.1:$((base + 2 + 2 * $1 - 1))"; }
for i in 1 2; do wait_for "node edge-$i" curl -s -o /dev/null "$(node_url "$i")/"; done

# --- an organization, created through the API ----------------------------------------------
auth=(-H "authorization: Bearer $CRATOPUS_OPERATOR_TOKEN" -H 'content-type: application/json')
echo "== POST $api/organizations"
curl -sf "${auth[@]}" "$api/organizations" -d '{
  "name": "shop",
  "upstreams": {"app": {"targets": ["mirror://"]}},
  "routes": [{"name": "hello", "path": "/hello", "upstream": "app"}]
}' | head -c 300
echo

# Both nodes take the new version within moments (pushed through Redis).
for i in 1 2; do
  wait_for "/hello on edge-$i" curl -sf "$(node_url "$i")/hello"
  echo "== GET $(node_url "$i")/hello (edge-$i), the mirror's echo of it:"
  curl -sf "$(node_url "$i")/hello" | grep -E '"(method|path)"' 
done

# A route added to the running cluster: one PUT, both nodes serve it.
echo "== PUT $api/organizations/shop/routes/products"
curl -sf "${auth[@]}" -X PUT "$api/organizations/shop/routes/products" \
  -d '{"path": "/products/{id}", "upstream": "app"}' | head -c 300
echo
for i in 1 2; do
  wait_for "/products/7 on edge-$i" curl -sf "$(node_url "$i")/products/7"
  echo "== edge-$i serves /products/7: $(curl -s -o /dev/null -w '%{http_code}' "$(node_url "$i")/products/7")"
done

echo "== GET $api/nodes"
curl -sf "${auth[@]}" "$api/nodes"
echo

if $keep; then
  echo "== running: control plane $api, nodes $(node_url 1) and $(node_url 2); Ctrl-C stops"
  echo "   operator token: $CRATOPUS_OPERATOR_TOKEN"
  wait
fi
