#!/usr/bin/env bash
# bench/grpc.sh — gRPC unary calls through cratopus against the same tonic server called
# directly, in one interleaved run (direct, cratopus, direct, …), with h2load sending a
# prepared gRPC frame (`-d frame.bin -H 'content-type: application/grpc' -H 'te: trailers'`)
# over h2c. Reports requests per second and the p50/p99 latency of each target (medians over
# the rounds; percentiles from h2load's per-request log) and the gateway's ratio to direct.
# The server is crates/cratopus/examples/grpc_echo.rs (tonic, `/bench.Echo/Unary`), built
# with `cargo build --release -p cratopus --example grpc_echo` when missing. See bench/README.md.
set -euo pipefail

BENCH_TAG=grpc
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}         # seconds per run
CONNECTIONS=${CONNECTIONS:-8}    # h2load -c
STREAMS=${STREAMS:-16}           # h2load -m: concurrent streams per connection
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
READY_WAIT=${READY_WAIT:-20}
for v in ROUNDS DURATION CONNECTIONS STREAMS THREADS WARMUP; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got ${!v})"
done

bench_init
ensure_pkgs h2load:nghttp2-client python3:python3
pin_setup
resolve_cratopus
GRPC_ECHO_BIN=${GRPC_ECHO_BIN:-target/release/examples/grpc_echo}
case "$GRPC_ECHO_BIN" in /*) ;; *) GRPC_ECHO_BIN="$REPO_ROOT/$GRPC_ECHO_BIN" ;; esac
if [ ! -x "$GRPC_ECHO_BIN" ]; then
  msg "$GRPC_ECHO_BIN not found: cargo build --release -p cratopus --example grpc_echo"
  (cd "$REPO_ROOT" && cargo build --release -p cratopus --example grpc_echo) || die "cargo build failed"
  [ -x "$GRPC_ECHO_BIN" ] || die "$GRPC_ECHO_BIN still missing after the build"
fi

# One gRPC message in its framing: not compressed, length 7, `Msg { text: "hello" }`.
FRAME="$TMP/frame.bin"
printf '\x00\x00\x00\x00\x07\x0a\x05hello' >"$FRAME"
METHOD=/bench.Echo/Unary

wait_port() {  # wait_port NAME PID PORT
  local name=$1 pid=$2 port=$3
  for _ in $(seq 1 $((READY_WAIT * 10))); do
    python3 -c "import socket,sys;s=socket.socket();s.settimeout(0.2);sys.exit(s.connect_ex(('127.0.0.1',$port)))" && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$TMP/$name.log" >&2; die "$name exited"; }
    sleep 0.1
  done
  die "$name did not listen on $port"
}

h2load_call() {  # h2load_call OUT PORT ARGS... — the gRPC call, as h2load sends it
  local out=$1 port=$2; shift 2
  run_client "$out" timeout -k 5 $((DURATION + 60)) h2load "$@" -d "$FRAME" \
    -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$port$METHOD"
}

declare -A TPORT=() TPID=()
TARGETS=()
add_target() {  # add_target NAME PORT CMD — starts it and checks 20 calls succeed
  local name=$1 port=$2 cmd=$3
  msg "starting $name on 127.0.0.1:$port (h2c)"
  start_proc "$name" bash -c "exec $cmd"
  TPID[$name]=$LAST_PID
  wait_port "$name" "$LAST_PID" "$port"
  TARGETS+=("$name"); TPORT[$name]=$port
}

# The tonic server, called directly.
port=$(free_port)
add_target direct "$port" "$(printf '%q' "$GRPC_ECHO_BIN") 127.0.0.1:$port"
ECHO_PORT=$port

# cratopus: workers 1, one route to the server over h2c.
port=$(free_port); mkdir -p "$TMP/cratopus"
cat >"$TMP/cratopus/gateway.yaml" <<YAML
listeners:
  - {name: http, bind: "127.0.0.1:$port"}
workers: 1
organizations:
  - name: bench
    upstreams:
      echo: {targets: ["http://127.0.0.1:$ECHO_PORT"], protocol: h2c}
    routes:
      - {path: "/bench.Echo/{*method}", upstream: echo}
YAML
add_target cratopus "$port" \
  "env RUST_LOG=${RUST_LOG:-warn} $(printf '%q' "$CRATOPUS_BIN") run -c $TMP/cratopus/gateway.yaml"

# Sanity: every call succeeds, and the answer is gRPC's (its trailers carry grpc-status 0;
# h2load counts HTTP statuses only, so curl looks at one answer).
for t in "${TARGETS[@]}"; do
  h2load_call "$TMP/sanity-$t.txt" "${TPORT[$t]}" -n 20 -c 1 -m 1 || true
  grep -q '20 succeeded' "$TMP/sanity-$t.txt" || { cat "$TMP/sanity-$t.txt" >&2; die "$t: calls failed"; }
  if command -v curl >/dev/null 2>&1; then
    curl -sv --http2-prior-knowledge -o "$TMP/sanity-$t.body" -H 'content-type: application/grpc' \
      -H 'te: trailers' --data-binary @"$FRAME" "http://127.0.0.1:${TPORT[$t]}$METHOD" 2>"$TMP/sanity-$t.curl" || true
    grep -qi '^< grpc-status: 0' "$TMP/sanity-$t.curl" || { cat "$TMP/sanity-$t.curl" >&2; die "$t: no grpc-status 0"; }
  fi
done

# ---- load --------------------------------------------------------------------
mkdir -p "$OUT_DIR/h2load-grpc"
RUNS="$TMP/runs.jsonl"; : >"$RUNS"
run_round() {  # run_round TARGET SECONDS ROUND (0: warm-up)
  local name=$1 secs=$2 round=$3 out log
  if [ "$round" = 0 ]; then out="$TMP/warmup-$name.txt"; else out="$OUT_DIR/h2load-grpc/$name-r$round.txt"; fi
  log="$TMP/log-$name-$round.tsv"
  h2load_call "$out" "${TPORT[$name]}" -D "$secs" -c "$CONNECTIONS" -m "$STREAMS" -t "$THREADS" \
    --log-file="$log" || msg "h2load exited $? for $name round $round"
  kill -0 "${TPID[$name]}" 2>/dev/null || { tail -n 20 "$TMP/$name.log" >&2; die "$name died"; }
  [ "$round" = 0 ] && return 0
  python3 - "$name" "$round" "$out" "$log" >>"$RUNS" <<'PY'
import json, re, sys
name, rnd, out, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
text = open(out).read()
m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", text)
# --log-file: start (µs since epoch), status, duration (µs) per request.
lat = sorted(int(l.split("\t")[2]) for l in open(log) if l.count("\t") >= 2 and l.split("\t")[1] == "200")
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else None
print(json.dumps({"target": name, "round": rnd, "rps": float(m.group(1)) if m else None,
                  "succeeded": int(ok.group(1)) if ok else None, "failed": int(ok.group(2)) if ok else None,
                  "p50_ms": pct(0.50), "p99_ms": pct(0.99)}))
PY
  tail -n 1 "$RUNS" >&2
}

if [ "$WARMUP" -gt 0 ]; then
  for t in "${TARGETS[@]}"; do run_round "$t" "$WARMUP" 0; done
fi
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do run_round "$t" "$DURATION" "$r"; done
done

python3 - "$RUNS" "$OUT_DIR/grpc.json" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
res = {}
for t in sorted({r["target"] for r in runs}):
    rs = [r for r in runs if r["target"] == t]
    med = lambda k: statistics.median([r[k] for r in rs if r[k] is not None]) if any(r[k] is not None for r in rs) else None
    res[t] = {"rps": med("rps"), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
              "failed": sum(r["failed"] or 0 for r in rs), "rounds": len(rs)}
if "direct" in res and "cratopus" in res and res["direct"]["rps"]:
    res["ratio_rps"] = res["cratopus"]["rps"] / res["direct"]["rps"]
json.dump(res, open(sys.argv[2], "w"), indent=2)
print(f"{'target':10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
for t in ("direct", "cratopus"):
    if t in res:
        r = res[t]
        print(f"{t:10} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['failed']:>7}")
if "ratio_rps" in res:
    print(f"cratopus / direct: {res['ratio_rps']:.2f} of the req/s")
PY
