#!/usr/bin/env bash
# bench/run.sh — interleaved wrk load benchmark on 127.0.0.1:
#   direct   nginx backend returning a fixed 12-byte body ("hello world\n")
#   nginx    nginx reverse proxy (1 worker, upstream keepalive) to the backend
#   cratopus the gateway (workers: 1) proxying to the same backend
# Rounds are interleaved (direct, nginx, cratopus, direct, ...) so drift on
# the machine hits every target alike; the table shows medians over rounds.
# See bench/README.md for the knobs and how to read the output.
set -euo pipefail

BENCH_TAG=run
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# ---- settings (override via env) ---------------------------------------------
ROUNDS=${ROUNDS:-3}              # measured rounds; each round runs every target once
DURATION=${DURATION:-10s}        # per run: wrk -d (10, 10s or 1m)
CONNECTIONS=${CONNECTIONS:-64}   # wrk -c
THREADS=${THREADS:-1}            # wrk -t
WARMUP=${WARMUP:-2}              # seconds of unrecorded warm-up per target (0 = none)
BENCH_PATH=${BENCH_PATH:-/hello} # request path (every target answers it via the backend)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
SKIP_CRATOPUS=${SKIP_CRATOPUS:-0}  # 1 = only direct and nginx
READY_WAIT=${READY_WAIT:-20}     # seconds a target gets to answer its readiness URL
VARIANTS=${VARIANTS:-}           # extra cratopus targets, e.g. "otel" (see variant_yaml)
BASELINE_BIN=${BASELINE_BIN:-}   # another cratopus build (e.g. of main before a change), run as
                                 # target "baseline" with the plain config in the same rounds

case "$DURATION" in
  *[0-9]) DURATION="${DURATION}s" ;;
esac
case "$DURATION" in
  *s) DURATION_S=${DURATION%s} ;;
  *m) DURATION_S=$(( ${DURATION%m} * 60 )) ;;
  *) die "DURATION must look like 10, 10s or 1m (got $DURATION)" ;;
esac
[[ "$DURATION_S" =~ ^[0-9]+$ ]] || die "DURATION must be whole seconds or minutes (got $DURATION)"
for v in ROUNDS CONNECTIONS THREADS WARMUP; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got ${!v})"
done
[ "$ROUNDS" -ge 1 ] || die "ROUNDS must be at least 1"

bench_init
ensure_pkgs wrk:wrk nginx:nginx curl:curl python3:python3
pin_setup
[ "$SKIP_CRATOPUS" = 1 ] || resolve_cratopus   # may build, before anything is started
python3 "$BENCH_DIR/wrk_report.py" selftest >/dev/null || die "wrk output parser self-test failed"

# ---- targets -----------------------------------------------------------------
TARGETS=()             # in run order
declare -A TPORT=()    # name -> port
declare -A TPID=()     # name -> pid of its server (for liveness checks)
declare -A THEADER=()  # name -> a request header wrk sends to it (credentials of a variant)

sanity() {  # sanity NAME PORT — the bench path must answer 200 with the backend's body
  local name=$1 port=$2 code body hdr=()
  [ -n "${THEADER[$name]:-}" ] && hdr=(-H "${THEADER[$name]}")
  code=$(curl -s -o "$TMP/sanity.body" -w '%{http_code}' --max-time 3 "${hdr[@]}" "http://127.0.0.1:$port$BENCH_PATH" || true)
  body=$(cat "$TMP/sanity.body" 2>/dev/null || true)
  if [ "$code" != 200 ] || [ "$body" != "$BACKEND_BODY" ]; then
    die "$name: GET $BENCH_PATH gave HTTP $code with body '${body:0:80}' (want 200 '$BACKEND_BODY')"
  fi
}

# add_target NAME PORT START_CMD [READY_PATH]
#   Start a server with the shell command START_CMD (run with `exec` in its own
#   session, pinned to the server CPU), wait until http://127.0.0.1:PORT/READY_PATH
#   answers 200 (default: the bench path), check the bench path, and add it
#   to the run. To bench another gateway config, write it and call add_target.
add_target() {
  local name=$1 port=$2 cmd=$3 ready=${4:-$BENCH_PATH}
  msg "starting $name on 127.0.0.1:$port"
  start_proc "$name" bash -c "exec $cmd"
  TPID[$name]=$LAST_PID
  wait_http "$name" "$LAST_PID" "http://127.0.0.1:$port$ready" "$READY_WAIT" || die "$name did not become ready"
  sanity "$name" "$port"
  TARGETS+=("$name"); TPORT[$name]=$port
}

start_backend
sanity direct "$BACKEND_PORT"
TARGETS+=(direct); TPORT[direct]=$BACKEND_PORT; TPID[direct]=$BACKEND_PID

port=$(free_port)
write_nginx_proxy_conf "$TMP/nginx" "$port"
add_target nginx "$port" "nginx -p $TMP/nginx -e $TMP/nginx/error.log -c $TMP/nginx/nginx.conf"

if [ "$SKIP_CRATOPUS" != 1 ]; then
  port=$(free_port)
  mkdir -p "$TMP/cratopus"
  write_cratopus_conf "$TMP/cratopus/gateway.yaml" "$port" 1
  add_target cratopus "$port" \
    "env RUST_LOG=${RUST_LOG:-warn} $(printf '%q' "$CRATOPUS_BIN") run -c $TMP/cratopus/gateway.yaml" /__health
fi

if [ -n "$BASELINE_BIN" ]; then
  [ -x "$BASELINE_BIN" ] || die "BASELINE_BIN $BASELINE_BIN is not an executable"
  port=$(free_port)
  mkdir -p "$TMP/baseline"
  write_cratopus_conf "$TMP/baseline/gateway.yaml" "$port" 1
  add_target baseline "$port" \
    "env RUST_LOG=${RUST_LOG:-warn} $(printf '%q' "$BASELINE_BIN") run -c $TMP/baseline/gateway.yaml" /__health
fi

# A rate limit per client address that the load never reaches, so that every request pays
# for the check and none is refused.
LIMIT_YAML='    rate_limit:
      limits: [{rate: 100000000, per: 1s}]'
# variant_yaml NAME — the top-level YAML a cratopus variant adds to the plain config.
variant_yaml() {
  case "$1" in
    # Spans of 1% of requests exported over OTLP/HTTP; the backend nginx is the sink
    # (it answers the POSTs with 200).
    otel) printf 'tracing:\n  sample_ratio: 0.01\n  otlp:\n    endpoint: http://127.0.0.1:%s/v1/traces\n' "$BACKEND_PORT" ;;
    limit|apikey|jwt|split|shaped) ;;
    # The same gateway with hyper's HTTP/1 server in place of its own (CRATOPUS_HTTP1=hyper).
    hyper) ;;
    # Two runtime workers instead of one (with PIN=0, so that they have two cores to run on).
    workers2) ;;
    # The same limit counted in a local redis-server (started here, pinned like the servers).
    redis|redis2) printf 'state:\n  redis:\n    urls: ["redis://127.0.0.1:%s"]\n' "$REDIS_PORT" ;;
    *) die "unknown variant $1 (known: otel, limit, redis, redis2, apikey, jwt, split, shaped, hyper, workers2)" ;;
  esac
}
# variant_org_yaml NAME — what a variant adds inside the organization.
variant_org_yaml() {
  case "$1" in
    limit|redis) printf '%s\n' "$LIMIT_YAML" ;;
    # Two policies in Redis on the route, the organization's (per client) and a named one (per
    # route): they share one round trip. The first line is a key of the route above it.
    redis2) printf '        policies: [per-route]\n%s\n    policies:\n      per-route:\n        rate_limit:\n          limits: [{rate: 100000000, per: 1s}]\n          key: route\n' "$LIMIT_YAML" ;;
    # The bench path on a route of its own with a 99/1 canary split and its rollback monitor
    # (both arms on the one backend), so that every request pays the choice and the recording.
    split) printf '%s\n' \
      "      - path: $BENCH_PATH" \
      "        split:" \
      "          backends: [{upstream: backend, weight: 99, name: stable}, {upstream: backend, weight: 1, name: canary, canary: true}]" \
      "          rollback: {max_error_rate: 0.05, max_p95_ratio: 2.0}" ;;
    # The split above plus two modifiers (a fixed request header and the client's address in
    # another), the shaped route issue 11 prices: every request pays the choice, the recording
    # and two header sets.
    shaped) printf '%s\n' \
      "      - path: $BENCH_PATH" \
      "        split:" \
      "          backends: [{upstream: backend, weight: 99, name: stable}, {upstream: backend, weight: 1, name: canary, canary: true}]" \
      "          rollback: {max_error_rate: 0.05, max_p95_ratio: 2.0}" \
      "        modify:" \
      "          request_headers:" \
      "            set: {X-Gateway: cratopus, X-Client-Ip: \"{client_ip}\"}" ;;
    # Every request authenticated by an API key of a consumer.
    apikey) printf '    consumers:\n      - id: bench\n        keys: ["%s"]\n    auth:\n      api_key: {}\n' \
      "$("$CRATOPUS_BIN" hash-key "$BENCH_API_KEY")" ;;
    # Every request carries an RS256 JWT verified against an inline public key.
    jwt) printf '    auth:\n      jwt:\n        public_key: |\n%s\n        audience: [bench]\n' \
      "$(sed 's/^/          /' "$TMP/jwt-public.pem")" ;;
  esac
}
BENCH_API_KEY=bench-key-0123456789abcdef
# make_rs256_token — an RSA key pair and an RS256 token (1 day) signed with openssl.
make_rs256_token() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/jwt-private.pem" 2>/dev/null
  openssl pkey -in "$TMP/jwt-private.pem" -pubout -out "$TMP/jwt-public.pem"
  local b64 header payload sig
  b64() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
  header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64)
  payload=$(printf '{"sub":"bench","aud":"bench","exp":%d}' $(( $(date +%s) + 86400 )) | b64)
  sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$TMP/jwt-private.pem" -binary | b64)
  printf '%s.%s.%s' "$header" "$payload" "$sig"
}
if [ "$SKIP_CRATOPUS" != 1 ]; then
  case " $VARIANTS " in
    *" redis "*|*" redis2 "*)
      ensure_pkgs redis-server:redis-server
      REDIS_PORT=$(free_port)
      start_proc redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no
      for _ in $(seq 1 100); do
        [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
        sleep 0.05
      done
      ;;
  esac
  case " $VARIANTS " in *" jwt "*) BENCH_JWT=$(make_rs256_token) ;; esac
  for v in $VARIANTS; do
    case "$v" in
      apikey) THEADER[cratopus-$v]="X-Api-Key: $BENCH_API_KEY" ;;
      jwt) THEADER[cratopus-$v]="Authorization: Bearer $BENCH_JWT" ;;
    esac
    port=$(free_port)
    mkdir -p "$TMP/cratopus-$v"
    workers=1
    [ "$v" = workers2 ] && workers=2
    write_cratopus_conf "$TMP/cratopus-$v/gateway.yaml" "$port" "$workers" "$(variant_yaml "$v")" "$(variant_org_yaml "$v")"
    server_env=""
    [ "$v" = hyper ] && server_env="CRATOPUS_HTTP1=hyper"
    add_target "cratopus-$v" "$port" \
      "env RUST_LOG=${RUST_LOG:-warn} $server_env $(printf '%q' "$CRATOPUS_BIN") run -c $TMP/cratopus-$v/gateway.yaml" /__health
  done
fi

# ---- load --------------------------------------------------------------------
mkdir -p "$OUT_DIR/wrk"
rm -f "$OUT_DIR"/wrk/*-r[0-9]*.txt   # raw output of an earlier run
RUNS="$TMP/runs.jsonl"; : >"$RUNS"

run_wrk() {  # run_wrk NAME SECONDS ROUND (0 = warm-up, not recorded)
  local name=$1 secs=$2 round=$3 out rc=0 line
  if [ "$round" = 0 ]; then out="$TMP/warmup-$name.txt"; else out="$OUT_DIR/wrk/$name-r$round.txt"; fi
  local extra=()
  [ -n "${THEADER[$name]:-}" ] && extra=(-H "${THEADER[$name]}")
  local cpu0 cpu1
  cpu0=$(session_cpu_ticks "${TPID[$name]}")
  run_client "$out" timeout -k 5 $((secs + 30)) \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --latency "${extra[@]}" \
    "http://127.0.0.1:${TPORT[$name]}$BENCH_PATH" || rc=$?
  cpu1=$(session_cpu_ticks "${TPID[$name]}")
  if ! kill -0 "${TPID[$name]}" 2>/dev/null; then
    msg "$name died during the run; log tail:"; tail -n 20 "$TMP/$name.log" >&2 || true
    die "$name is gone"
  fi
  [ "$round" = 0 ] && return 0
  [ "$rc" = 0 ] || { msg "wrk exited $rc for $name round $round:"; tail -n 5 "$out" >&2; }
  local user sys
  read -r user sys <<<"$(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.3f %.3f", (y[1] - x[1]) / hz, (y[2] - x[2]) / hz }')"
  line=$(python3 "$BENCH_DIR/wrk_report.py" parse "$out" "$user" "$sys")
  printf '{"target":"%s","round":%d,"run":%s}\n' "$name" "$round" "$line" >>"$RUNS"
  python3 - "$line" "$name" "$round" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1])
f = lambda v, s: "n/a" if v is None else format(v, s)
print("[run]   round %s %-12s %10s req/s  p50 %s ms  p99 %s ms  cpu %s us/req (user %s)%s" % (
    sys.argv[3], sys.argv[2], f(r["rps"], ".0f"), f(r["p50_ms"], ".3f"), f(r["p99_ms"], ".3f"),
    f(r.get("cpu_us_per_req"), ".2f"), f(r.get("user_us_per_req"), ".2f"),
    "  errors %d" % (r["socket_errors"] + r["non_2xx_3xx"]) if r["socket_errors"] + r["non_2xx_3xx"] else ""))
PY
}

pin_desc="off"; [ "${#SRV_PIN[@]}" -gt 0 ] && pin_desc="servers on CPU 0, wrk on CPU 1"
msg "targets: ${TARGETS[*]} | wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS rounds, warm-up ${WARMUP}s | pinning: $pin_desc"
if [ "$WARMUP" -gt 0 ]; then
  for t in "${TARGETS[@]}"; do run_wrk "$t" "$WARMUP" 0; done
fi
for round in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do run_wrk "$t" "$DURATION_S" "$round"; done
done

# ---- report ------------------------------------------------------------------
ver() { "$@" 2>&1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1 || true; }
ports_json=$(for t in "${TARGETS[@]}"; do printf '%s=%s\n' "$t" "${TPORT[$t]}"; done)
BENCH_SETTINGS=$(
  WRK_V=$(ver wrk -v) NGINX_V=$(ver nginx -v) PORTS="$ports_json" PIN_DESC="$pin_desc" \
  GIT_REV=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || true) \
  CRATOPUS="$([ "$SKIP_CRATOPUS" = 1 ] || echo "$CRATOPUS_BIN")" \
  ROUNDS="$ROUNDS" DURATION_S="$DURATION_S" CONNECTIONS="$CONNECTIONS" THREADS="$THREADS" \
  WARMUP="$WARMUP" BENCH_PATH="$BENCH_PATH" python3 - <<'PY'
import json, os, platform, time
e = os.environ
print(json.dumps({
    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "rounds": int(e["ROUNDS"]), "duration_s": int(e["DURATION_S"]),
    "connections": int(e["CONNECTIONS"]), "threads": int(e["THREADS"]),
    "warmup_s": int(e["WARMUP"]), "path": e["BENCH_PATH"], "pinning": e["PIN_DESC"],
    "ports": dict(l.split("=", 1) for l in e["PORTS"].splitlines() if l),
    "cratopus_bin": e["CRATOPUS"] or None, "git_rev": e["GIT_REV"] or None,
    "versions": {"wrk": e["WRK_V"] or None, "nginx": e["NGINX_V"] or None},
    "cpus": os.cpu_count(), "kernel": platform.release(),
}))
PY
)
export BENCH_SETTINGS
echo
python3 "$BENCH_DIR/wrk_report.py" report "$RUNS" "$OUT_DIR/bench.json"
echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved rounds, medians; pinning: $pin_desc"
echo "results: $OUT_DIR/bench.json   raw wrk output: $OUT_DIR/wrk/"
