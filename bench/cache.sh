#!/usr/bin/env bash
# bench/cache.sh — the response cache under load, in one run on 127.0.0.1:
#   hit      GET /cached: answered from the cache (the backend is never asked after the first)
#   proxied  GET /proxied: the same backend answer through a route without a cache
# Rounds are interleaved (hit, proxied, hit, ...). Then a key flood: wrk asks /flood?k=<n>
# for ever new n on a gateway whose cache.max_bytes is 1MiB, and the admin API's
# cratopus_cache_bytes must stay within it (evictions counted).
set -euo pipefail

BENCH_TAG=cache
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2}
MAX_BYTES=${MAX_BYTES:-1MiB}

bench_init
ensure_pkgs wrk:wrk nginx:nginx curl:curl python3:python3
pin_setup
resolve_cratopus

# One JSON backend (1 KiB answers).
PB=$(free_port)
BODY=$(python3 -c 'import json; print(json.dumps({"items": ["item %d" % i for i in range(80)]}))')
json_backend "$PB" "$BODY"

GW_PORT=$(free_port); ADMIN_PORT=$(free_port)
mkdir -p "$TMP/cratopus"
cat >"$TMP/cratopus/gateway.yaml" <<YAML
listeners:
  - name: http
    bind: 127.0.0.1:$GW_PORT
admin:
  bind: 127.0.0.1:$ADMIN_PORT
  token: bench-token-0123456789
workers: 1
cache:
  max_bytes: $MAX_BYTES
default_organization: bench
organizations:
  - name: bench
    upstreams:
      b: {targets: ["http://127.0.0.1:$PB"]}
    routes:
      - {path: /proxied, upstream: b}
      - {path: /cached, upstream: b, cache: {ttl: 1h}}
      - {path: /flood, upstream: b, cache: {ttl: 1h}}
YAML
start_proc cratopus env RUST_LOG=warn "$CRATOPUS_BIN" run -c "$TMP/cratopus/gateway.yaml"
wait_http cratopus "$LAST_PID" "http://127.0.0.1:$GW_PORT/__health" 20 || die "cratopus did not start"
curl -s "http://127.0.0.1:$GW_PORT/cached" >/dev/null
status=$(curl -s -D - -o /dev/null "http://127.0.0.1:$GW_PORT/cached" | tr -d '\r' | awk -F': ' 'tolower($1)=="cache-status" {print $2}')
case "$status" in "cratopus; hit"*) ;; *) die "GET /cached is not a hit: '$status'" ;; esac

declare -A RPS=() P50=() P99=()
run() {  # run NAME PATH [SCRIPT] — one wrk round against the gateway (lib.sh: wrk_round)
  wrk_round "$1" "http://127.0.0.1:$GW_PORT$2" "${3:-}"
}
if [ "$WARMUP" -gt 0 ]; then
  for p in /cached /proxied; do run_client "$TMP/warm.out" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "http://127.0.0.1:$GW_PORT$p" || true; done
fi
for r in $(seq "$ROUNDS"); do
  msg "round $r/$ROUNDS"
  run hit /cached
  run proxied /proxied
done

# The key flood: every request a new key.
cat >"$TMP/flood.lua" <<'LUA'
local n = 0
local prefix = tostring(math.random(1, 1000000000))
request = function()
  n = n + 1
  return wrk.format("GET", "/flood?k=" .. prefix .. "-" .. n)
end
LUA
run flood / "$TMP/flood.lua"
metric() { curl -s -H 'Authorization: Bearer bench-token-0123456789' "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1==m {print $2}'; }
BYTES=$(metric cratopus_cache_bytes); LIMIT=$(metric cratopus_cache_max_bytes)
EVICTIONS=$(metric cratopus_cache_evictions_total); ENTRIES=$(metric cratopus_cache_entries)

printf '%-10s %-32s %-28s %s\n' target "requests/s (rounds)" "p50 (rounds)" "p99 (rounds)"
for t in hit proxied flood; do
  printf '%-10s %-32s %-28s %s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}"
done
echo "key flood: cratopus_cache_bytes=$BYTES of max_bytes=$LIMIT, entries=$ENTRIES, evictions=$EVICTIONS"
[ "${BYTES%.*}" -le "${LIMIT%.*}" ] || die "the cache grew past its bound: $BYTES > $LIMIT"
