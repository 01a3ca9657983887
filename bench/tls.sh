#!/usr/bin/env bash
# bench/tls.sh — HTTPS: cratopus and nginx terminating TLS with the same certificate (ECDSA
# P-256, made here with openssl) in front of the same plain nginx backend, measured two ways:
#   keepalive  wrk over kept-alive TLS connections: requests per second (the handshake is paid
#              once per connection)
#   handshake  wrk with `Connection: close`: every request is a new TCP connection and a full
#              TLS handshake (wrk does not resume sessions): new connections per second
# Rounds are interleaved (nginx, cratopus, nginx, …) as in bench/run.sh; medians are reported.
# See bench/README.md.
set -euo pipefail

BENCH_TAG=tls
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}         # seconds per run
CONNECTIONS=${CONNECTIONS:-64}   # wrk -c for keepalive runs
HS_CONNECTIONS=${HS_CONNECTIONS:-16}   # wrk -c for handshake runs
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2}
BENCH_PATH=${BENCH_PATH:-/hello}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
READY_WAIT=${READY_WAIT:-20}
for v in ROUNDS DURATION CONNECTIONS HS_CONNECTIONS THREADS WARMUP; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got ${!v})"
done

bench_init
ensure_pkgs wrk:wrk nginx:nginx curl:curl python3:python3 openssl:openssl
pin_setup
resolve_cratopus
python3 "$BENCH_DIR/wrk_report.py" selftest >/dev/null || die "wrk output parser self-test failed"

# ---- the certificate, shared by both servers -----------------------------------
C="$TMP/certs"; mkdir -p "$C"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=bench CA" -keyout "$C/ca-key.pem" -out "$C/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$C/key.pem" -out "$C/csr.pem" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$C/leaf.ext"
openssl x509 -req -in "$C/csr.pem" -CA "$C/ca.pem" -CAkey "$C/ca-key.pem" -CAcreateserial -days 30 \
  -extfile "$C/leaf.ext" -out "$C/cert.pem" 2>/dev/null
chmod 644 "$C"/*.pem   # nginx workers run as nobody

start_backend

declare -A TPORT=() TPID=()
TARGETS=()
add_tls_target() {  # add_tls_target NAME PORT CMD
  local name=$1 port=$2 cmd=$3 code
  msg "starting $name on 127.0.0.1:$port (HTTPS)"
  start_proc "$name" bash -c "exec $cmd"
  TPID[$name]=$LAST_PID
  for _ in $(seq 1 $((READY_WAIT * 10))); do
    code=$(curl -s -o "$TMP/sanity.body" -w '%{http_code}' --max-time 1 --cacert "$C/ca.pem" \
      "https://127.0.0.1:$port$BENCH_PATH" || true)
    [ "$code" = 200 ] && break
    kill -0 "$LAST_PID" 2>/dev/null || { tail -n 20 "$TMP/$name.log" >&2; die "$name exited"; }
    sleep 0.1
  done
  [ "$code" = 200 ] && [ "$(cat "$TMP/sanity.body")" = "$BACKEND_BODY" ] ||
    die "$name: GET https://127.0.0.1:$port$BENCH_PATH gave $code"
  TARGETS+=("$name"); TPORT[$name]=$port
}

# nginx: 1 worker, TLS 1.2/1.3, session tickets and cache as nginx ships them, upstream keepalive.
port=$(free_port); d="$TMP/nginx"; mkdir -p "$d/tmp"
{
  ngx_common "$d"
  echo "http {"
  ngx_http_common "$d"
  cat <<NGX
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$port ssl backlog=4096;
    ssl_certificate $C/cert.pem;
    ssl_certificate_key $C/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
} >"$d/nginx.conf"
add_tls_target nginx "$port" "nginx -p $d -e $d/error.log -c $d/nginx.conf"

# cratopus: workers 1, one HTTPS listener; the certificate is the default one (wrk sends no SNI
# for an address).
port=$(free_port); mkdir -p "$TMP/cratopus"
cat >"$TMP/cratopus/gateway.yaml" <<YAML
listeners:
  - {name: https, bind: "127.0.0.1:$port", tls: true}
workers: 1
tls:
  default_certificate: {cert: $C/cert.pem, key: $C/key.pem}
organizations:
  - name: bench
    upstreams:
      backend: {targets: ["http://127.0.0.1:$BACKEND_PORT"]}
    routes:
      - {path: "/{*rest}", upstream: backend}
default_organization: bench
YAML
add_tls_target cratopus "$port" \
  "env RUST_LOG=${RUST_LOG:-warn} $(printf '%q' "$CRATOPUS_BIN") run -c $TMP/cratopus/gateway.yaml"

# ---- load --------------------------------------------------------------------
mkdir -p "$OUT_DIR/wrk-tls"
RUNS="$TMP/runs.jsonl"; : >"$RUNS"
run_wrk() {  # run_wrk TARGET MODE SECONDS ROUND
  local name=$1 mode=$2 secs=$3 round=$4 out rc=0 line conns=$CONNECTIONS hdr=()
  if [ "$mode" = handshake ]; then conns=$HS_CONNECTIONS; hdr=(-H "Connection: close"); fi
  if [ "$round" = 0 ]; then out="$TMP/warmup-$name-$mode.txt"; else out="$OUT_DIR/wrk-tls/$name-$mode-r$round.txt"; fi
  run_client "$out" timeout -k 5 $((secs + 30)) \
    wrk -t"$THREADS" -c"$conns" -d"${secs}s" --latency "${hdr[@]}" \
    "https://127.0.0.1:${TPORT[$name]}$BENCH_PATH" || rc=$?
  kill -0 "${TPID[$name]}" 2>/dev/null || { tail -n 20 "$TMP/$name.log" >&2; die "$name died"; }
  [ "$round" = 0 ] && return 0
  [ "$rc" = 0 ] || { msg "wrk exited $rc for $name $mode round $round"; tail -n 5 "$out" >&2; }
  line=$(python3 "$BENCH_DIR/wrk_report.py" parse "$out")
  printf '{"target":"%s %s","round":%d,"run":%s}\n' "$name" "$mode" "$round" "$line" >>"$RUNS"
  python3 - "$line" "$name $mode" "$round" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1])
f = lambda v, s: "n/a" if v is None else format(v, s)
print("[tls]   round %s %-20s %10s req/s  p50 %s ms  p99 %s ms%s" % (
    sys.argv[3], sys.argv[2], f(r["rps"], ".0f"), f(r["p50_ms"], ".3f"), f(r["p99_ms"], ".3f"),
    "  errors %d" % (r["socket_errors"] + r["non_2xx_3xx"]) if r["socket_errors"] + r["non_2xx_3xx"] else ""))
PY
}

pin_desc="off"; [ "${#SRV_PIN[@]}" -gt 0 ] && pin_desc="servers on CPU 0, wrk on CPU 1"
msg "targets: ${TARGETS[*]} | keepalive: wrk -c$CONNECTIONS, handshake: wrk -c$HS_CONNECTIONS + Connection: close | ${DURATION}s x $ROUNDS rounds | pinning: $pin_desc"
for mode in keepalive handshake; do
  if [ "$WARMUP" -gt 0 ]; then for t in "${TARGETS[@]}"; do run_wrk "$t" "$mode" "$WARMUP" 0; done; fi
done
for round in $(seq 1 "$ROUNDS"); do
  for mode in keepalive handshake; do
    for t in "${TARGETS[@]}"; do run_wrk "$t" "$mode" "$DURATION" "$round"; done
  done
done

export BENCH_SETTINGS
BENCH_SETTINGS=$(printf '{"kind":"tls","rounds":%d,"duration_s":%d,"connections":%d,"handshake_connections":%d,"pinning":"%s","certificate":"ECDSA P-256"}' \
  "$ROUNDS" "$DURATION" "$CONNECTIONS" "$HS_CONNECTIONS" "$pin_desc")
echo
python3 "$BENCH_DIR/wrk_report.py" report "$RUNS" "$OUT_DIR/bench-tls.json"
echo
echo "keepalive: requests/s over kept-alive TLS; handshake: new TLS connections/s (one request each)"
echo "results: $OUT_DIR/bench-tls.json   raw wrk output: $OUT_DIR/wrk-tls/"
