#!/usr/bin/env bash
# bench/rss.sh — memory footprint of cratopus:
#   1. idle RSS after start-up (VmRSS from /proc/PID/status),
#   2. RSS with CONNS (default 10,000) idle keep-alive client connections open,
#      each having made one GET /__health (opened by bench/hold_conns.py),
#   3. RSS after those connections are closed again.
# The gateway runs with the bench config (proxying to a local nginx backend)
# and its default number of workers. See bench/README.md.
set -euo pipefail

BENCH_TAG=rss
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

CONNS=${CONNS:-10000}          # idle keep-alive connections to hold
WORKERS=${WORKERS:-}           # empty = leave `workers` out of the config (one per core)
SETTLE=${SETTLE:-2}            # seconds to wait before each RSS reading
HOLD_WINDOW=${HOLD_WINDOW:-256}  # connections being set up at once
OUT_DIR=${OUT_DIR:-$BENCH_DIR/out}
READY_WAIT=${READY_WAIT:-20}
NOFILE=$(( CONNS + 4096 > 65536 ? CONNS + 4096 : 65536 ))
# A loopback source address has ~28,000 ephemeral ports towards the gateway's one port.
SOURCES=$(( (CONNS + 24999) / 25000 ))

if ! [[ "$CONNS" =~ ^[0-9]+$ ]] || [ "$CONNS" -lt 1 ]; then die "CONNS must be a positive integer (got $CONNS)"; fi
[[ "$SETTLE" =~ ^[0-9]+$ ]] || die "SETTLE must be whole seconds (got $SETTLE)"

bench_init
ensure_pkgs nginx:nginx curl:curl python3:python3
resolve_cratopus   # may build, before anything is started

# Both the gateway and the python client inherit this limit.
ulimit -n "$NOFILE" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" || true   # root may raise the hard limit too
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((CONNS + 1024)) ] ||
  die "open-file limit $(ulimit -n) is too low for $CONNS connections (could not raise it to $NOFILE)"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

start_backend
port=$(free_port)
mkdir -p "$TMP/cratopus"
# Idle keep-alive connections are closed after `header_read_timeout` (10 s by default): long
# enough here for every connection to be open when the memory is read.
write_cratopus_conf "$TMP/cratopus/gateway.yaml" "$port" "$WORKERS" "$(printf 'limits:\n  header_read_timeout: 600s')"
msg "starting cratopus on 127.0.0.1:$port (workers: ${WORKERS:-default})"
start_proc cratopus env RUST_LOG="${RUST_LOG:-warn}" "$CRATOPUS_BIN" run -c "$TMP/cratopus/gateway.yaml"
GW_PID=$LAST_PID
wait_http cratopus "$GW_PID" "http://127.0.0.1:$port/__health" "$READY_WAIT" || die "cratopus did not become ready"
msg "gateway pid $GW_PID ($(cat "/proc/$GW_PID/comm"), $(awk '/^Threads:/ {print $2}' "/proc/$GW_PID/status") threads)"

sleep "$SETTLE"
IDLE=$(rss_kib "$GW_PID")
msg "idle RSS: $(mib "$IDLE") MiB"

msg "opening $CONNS keep-alive connections"
coproc HOLD { exec python3 "$BENCH_DIR/hold_conns.py" --port "$port" -n "$CONNS" --window "$HOLD_WINDOW" --sources "$SOURCES" --hold-max 600 2>"$TMP/hold_conns.err"; }
HOLD_IN=${HOLD[1]}; HOLD_OUT=${HOLD[0]}
CLIENT_PIDS=("$HOLD_PID")
ready=""
read -r -t 300 -u "$HOLD_OUT" ready || true
[[ "$ready" == READY* ]] || { cat "$TMP/hold_conns.err" >&2 || true; die "hold_conns.py did not get ready (got '$ready')"; }
cat "$TMP/hold_conns.err" >&2 || true
ok=$(sed -E 's/.*ok=([0-9]+).*/\1/' <<<"$ready")
failed=$(sed -E 's/.*failed=([0-9]+).*/\1/' <<<"$ready")
setup_s=$(sed -E 's/.*seconds=([0-9.]+).*/\1/' <<<"$ready")
msg "established $ok (failed $failed) in ${setup_s}s"
kill -0 "$GW_PID" 2>/dev/null || { tail -n 20 "$TMP/cratopus.log" >&2; die "cratopus died while connections were opened"; }

sleep "$SETTLE"
LOADED=$(rss_kib "$GW_PID")
echo check >&"$HOLD_IN"
alive=""
read -r -t 60 -u "$HOLD_OUT" alive || true
alive=${alive#ALIVE }
msg "RSS with $ok connections ($alive still open): $(mib "$LOADED") MiB"

echo close >&"$HOLD_IN"
read -r -t 60 -u "$HOLD_OUT" _ || true   # "CLOSED"
wait "$HOLD_PID" 2>/dev/null || true
CLIENT_PIDS=()
sleep "$SETTLE"
AFTER=$(rss_kib "$GW_PID")
PEAK=$(hwm_kib "$GW_PID")

per_conn="n/a"
[ "$ok" -gt 0 ] && per_conn=$(awk -v a="$LOADED" -v b="$IDLE" -v n="$ok" 'BEGIN { printf "%.2f", (a - b) / n }')

mkdir -p "$OUT_DIR"
IDLE="$IDLE" LOADED="$LOADED" AFTER="$AFTER" PEAK="$PEAK" OK="$ok" FAILED="$failed" ALIVE="$alive" \
CONNS="$CONNS" WORKERS="$WORKERS" SETUP_S="$setup_s" BIN="$CRATOPUS_BIN" python3 - "$OUT_DIR/rss.json" <<'PY'
import json, os, sys, time
e = os.environ
k = lambda name: int(e[name])
doc = {
    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "cratopus_bin": e["BIN"], "workers": int(e["WORKERS"]) if e["WORKERS"] else None,
    "connections_requested": k("CONNS"), "connections_established": k("OK"),
    "connections_failed": k("FAILED"),
    "connections_alive_at_measurement": int(e["ALIVE"]) if e["ALIVE"].isdigit() else None,
    "setup_seconds": float(e["SETUP_S"]),
    "idle_rss_kib": k("IDLE"), "loaded_rss_kib": k("LOADED"), "after_close_rss_kib": k("AFTER"),
    "peak_rss_kib": k("PEAK"),
    "per_connection_kib": (k("LOADED") - k("IDLE")) / k("OK") if k("OK") else None,
}
json.dump(doc, open(sys.argv[1], "w"), indent=2)
PY

echo
printf '%-44s %10s\n' "cratopus (workers: ${WORKERS:-default})" "RSS MiB"
printf '%-44s %10s\n' "idle, after start-up" "$(mib "$IDLE")"
printf '%-44s %10s\n' "with $ok idle keep-alive connections" "$(mib "$LOADED")"
printf '%-44s %10s\n' "after closing them" "$(mib "$AFTER")"
printf '%-44s %10s\n' "peak (VmHWM)" "$(mib "$PEAK")"
echo
echo "per connection: $per_conn KiB; $alive of $ok still open when measured; $failed failed to connect"
echo "results: $OUT_DIR/rss.json"
if [ "$ok" != "$CONNS" ] || [ "$alive" != "$ok" ]; then
  echo "WARNING: not all $CONNS connections were held open during the measurement" >&2
fi
