#!/usr/bin/env bash
# bench/compose.sh — API composition under load, in one run on 127.0.0.1:
#   aggregate   GET /agg: the gateway calls three JSON backends concurrently and merges them
#   one-by-one  the same three backends through three plain routes, each wrk connection
#               calling /a, /b, /c in turn (what a client without composition does)
#   plain       GET /a alone: the streaming pass-through a route without `compose` takes
# Rounds are interleaved (aggregate, one-by-one, plain, aggregate, ...). Each wrk request of
# one-by-one is one of three calls, so a composed answer's worth of it is a third of its
# requests per second, and the three calls one after the other take three of its latencies.
set -euo pipefail

BENCH_TAG=compose
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2}

bench_init
ensure_pkgs wrk:wrk nginx:nginx curl:curl python3:python3
pin_setup
resolve_cratopus

# Three JSON backends: one nginx, three ports.
d="$TMP/backends"; mkdir -p "$d/tmp"
PA=$(free_port); PB=$(free_port); PC=$(free_port)
{
  ngx_common "$d"
  echo "http {"
  ngx_http_common "$d"
  for p in "a $PA" "b $PB" "c $PC"; do
    set -- $p
    cat <<NGX
  server {
    listen 127.0.0.1:$2 backlog=4096;
    location / { default_type application/json; return 200 '{"$1":{"id":7,"name":"service $1","items":[1,2,3]}}'; }
  }
NGX
  done
  echo "}"
} >"$d/nginx.conf"
start_proc backends nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf"
wait_http backends "$LAST_PID" "http://127.0.0.1:$PA/a" 10 || die "backends did not start"

GW_PORT=$(free_port)
mkdir -p "$TMP/cratopus"
cat >"$TMP/cratopus/gateway.yaml" <<YAML
listeners:
  - name: http
    bind: 127.0.0.1:$GW_PORT
workers: 1
default_organization: bench
organizations:
  - name: bench
    upstreams:
      a: {targets: ["http://127.0.0.1:$PA"]}
      b: {targets: ["http://127.0.0.1:$PB"]}
      c: {targets: ["http://127.0.0.1:$PC"]}
    routes:
      - {path: /a, upstream: a}
      - {path: /b, upstream: b}
      - {path: /c, upstream: c}
      - path: /agg
        compose:
          backend:
            - {upstream: a, url_pattern: /a}
            - {upstream: b, url_pattern: /b}
            - {upstream: c, url_pattern: /c}
YAML
start_proc cratopus env RUST_LOG=warn "$CRATOPUS_BIN" run -c "$TMP/cratopus/gateway.yaml"
wait_http cratopus "$LAST_PID" "http://127.0.0.1:$GW_PORT/__health" 20 || die "cratopus did not start"
want='{"a":{"id":7,"items":[1,2,3],"name":"service a"},"b":{"id":7,"items":[1,2,3],"name":"service b"},"c":{"id":7,"items":[1,2,3],"name":"service c"}}'
got=$(curl -s "http://127.0.0.1:$GW_PORT/agg")
[ "$got" = "$want" ] || die "GET /agg gave '$got'"

cat >"$TMP/one-by-one.lua" <<'LUA'
local paths = {"/a", "/b", "/c"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n - 1) % 3 + 1])
end
LUA

declare -A RPS=() P50=() P99=()
run() {  # run NAME PATH [SCRIPT] — one wrk round against the gateway (lib.sh: wrk_round)
  wrk_round "$1" "http://127.0.0.1:$GW_PORT$2" "${3:-}"
}
if [ "$WARMUP" -gt 0 ]; then
  for p in /agg /a; do run_client "$TMP/warm.out" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "http://127.0.0.1:$GW_PORT$p" || true; done
fi
for r in $(seq "$ROUNDS"); do
  msg "round $r/$ROUNDS"
  run aggregate /agg
  run one-by-one / "$TMP/one-by-one.lua"
  run plain /a
done
printf '%-12s %-32s %-28s %s\n' target "requests/s (rounds)" "p50 (rounds)" "p99 (rounds)"
for t in aggregate one-by-one plain; do
  printf '%-12s %-32s %-28s %s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}"
done
