#!/usr/bin/env bash
# bench/compress.sh — response compression under load, in one run on 127.0.0.1:
#   gzip    GET /c/data.json through a route with `compression:` (wrk sends
#           `Accept-Encoding: gzip`): the gateway gzips the ~20 KiB JSON answer (level 1)
#   plain   GET /p/data.json through a route without it, the same header: the answer as is
# Both routes go to one nginx serving the same static file. Rounds are interleaved (gzip,
# plain, gzip, ...). For each run: requests per second, p50/p99, the gateway's CPU time per
# request (utime+stime of its process from /proc, over the requests wrk completed) and the
# bytes of one answer on the wire (curl, headers excluded).
#   bench/compress.sh                        # 3 rounds x 10 s
#   CRATOPUS_BIN=target/release/cratopus bench/compress.sh
#   LEVEL=6 ALGO=br bench/compress.sh        # another encoder or level (wrk then asks for ALGO)
set -euo pipefail

BENCH_TAG=compress
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2}
ALGO=${ALGO:-gzip}
LEVEL=${LEVEL:-}

bench_init
ensure_pkgs wrk:wrk nginx:nginx curl:curl python3:python3
pin_setup
resolve_cratopus

# The answer: ~20 KiB of JSON records, served by nginx as a static file (Content-Length, ETag).
d="$TMP/backend"; mkdir -p "$d/tmp" "$d/www"
python3 - "$d/www/data.json" <<'PY'
import json, sys
items = [{"id": i, "name": f"customer {i}", "email": f"c{i}@example.test",
          "active": i % 3 == 0, "tags": ["retail", "eu"], "balance": round(i * 13.37, 2)}
         for i in range(180)]
open(sys.argv[1], "w").write(json.dumps(items))
PY
BYTES=$(stat -c %s "$d/www/data.json")
BP=$(free_port)
{
  ngx_common "$d"
  echo "http {"
  ngx_http_common "$d"
  cat <<NGX
  server {
    listen 127.0.0.1:$BP backlog=4096;
    location / { root $d/www; default_type application/json; types { application/json json; } }
  }
NGX
  echo "}"
} >"$d/nginx.conf"
start_proc backend nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf"
wait_http backend "$LAST_PID" "http://127.0.0.1:$BP/data.json" 10 || die "backend did not start"

levels=""
[ -n "$LEVEL" ] && levels="levels: {$ALGO: $LEVEL}"
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
      files: {targets: ["http://127.0.0.1:$BP"]}
    routes:
      - path: /c/{*rest}
        upstream: files
        strip_prefix: /c
        compression:
          algorithms: [$ALGO]
          $levels
      - path: /p/{*rest}
        upstream: files
        strip_prefix: /p
YAML
start_proc cratopus env RUST_LOG=warn "$CRATOPUS_BIN" run -c "$TMP/cratopus/gateway.yaml"
GW_PID=$LAST_PID
wait_http cratopus "$GW_PID" "http://127.0.0.1:$GW_PORT/__health" 20 || die "cratopus did not start"

# Both routes give the file back exactly (curl decodes the compressed one).
curl -s --compressed -H "Accept-Encoding: $ALGO" "http://127.0.0.1:$GW_PORT/c/data.json" | cmp -s - "$d/www/data.json" \
  || die "/c/data.json does not decode to the file"
curl -s -H "Accept-Encoding: $ALGO" "http://127.0.0.1:$GW_PORT/p/data.json" | cmp -s - "$d/www/data.json" \
  || die "/p/data.json is not the file"
enc=$(curl -s -o /dev/null -D - -H "Accept-Encoding: $ALGO" "http://127.0.0.1:$GW_PORT/c/data.json" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" {print $2}')
[ "$enc" = "$ALGO" ] || die "/c/data.json answered content-encoding '$enc', not $ALGO"
wire() { curl -s -o /dev/null -w '%{size_download}' -H "Accept-Encoding: $ALGO" "http://127.0.0.1:$GW_PORT$1"; }
WIRE_C=$(wire /c/data.json); WIRE_P=$(wire /p/data.json)

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$GW_PID/stat"; }

declare -A RPS=() P50=() P99=() CPU=()
run() {  # run NAME PATH — one wrk run: rps, latencies, CPU µs per request
  local name=$1 path=$2 out="$TMP/wrk.out" before after reqs
  before=$(cpu_ticks)
  run_client "$out" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -H "Accept-Encoding: $ALGO" "http://127.0.0.1:$GW_PORT$path" || die "wrk failed: $(tail -3 "$out")"
  after=$(cpu_ticks)
  grep -q "Non-2xx" "$out" && die "$name: non-2xx answers: $(grep Non-2xx "$out")"
  reqs=$(awk '/requests in/ {print $1}' "$out")
  RPS[$name]+="$(awk '/^Requests\/sec/ {print $2}' "$out") "
  P50[$name]+="$(awk '$1=="50%" {print $2}' "$out") "
  P99[$name]+="$(awk '$1=="99%" {print $2}' "$out") "
  CPU[$name]+="$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}') "
}
if [ "$WARMUP" -gt 0 ]; then
  for p in /c/data.json /p/data.json; do
    run_client "$TMP/warm.out" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -H "Accept-Encoding: $ALGO" "http://127.0.0.1:$GW_PORT$p" || true
  done
fi
for r in $(seq "$ROUNDS"); do
  msg "round $r/$ROUNDS"
  run "$ALGO" /c/data.json
  run plain /p/data.json
done
echo "answer: $BYTES bytes of JSON; on the wire: $ALGO $WIRE_C bytes, plain $WIRE_P bytes (body only)"
printf '%-8s %-30s %-28s %-24s %s\n' route "requests/s (rounds)" "p50 (rounds)" "p99 (rounds)" "gateway CPU µs/request"
for t in "$ALGO" plain; do
  printf '%-8s %-30s %-28s %-24s %s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${CPU[$t]}"
done
