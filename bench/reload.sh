#!/usr/bin/env bash
# bench/reload.sh — reload at scale, under load, on 127.0.0.1:
#   a config of ORGS organization files (one domain each) with ROUTES routes each, some with a
#   rate limit, a JWT or a rewrite; wrk keeps requests going to one route of one organization
#   while the config is reloaded RELOADS times (SIGHUP, each after the previous one is in);
#   every reload's cost comes from the gateway's log line "config compiled and swapped in"
#   (load_ms: read and validate, compile_ms: compile and start, total_ms), and wrk's errors
#   and non-2xx answers count the requests the swaps failed.
#   CHANGE says what changes before each reload: `one` organization file (a route added to
#   the next file in turn; the others' parse is reused), `all` of them (a cold reload), or
#   `none`. LOAD=0 reloads without wrk running.
set -euo pipefail

BENCH_TAG=reload
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ORGS=${ORGS:-100}
ROUTES=${ROUTES:-100}
RELOADS=${RELOADS:-10}
CONNECTIONS=${CONNECTIONS:-32}
CHANGE=${CHANGE:-one}
LOAD=${LOAD:-1}
case "$CHANGE" in one | all | none) ;; *) die "CHANGE must be one, all or none" ;; esac

bench_init
ensure_pkgs wrk:wrk nginx:nginx curl:curl python3:python3
pin_setup
resolve_cratopus

BP=$(free_port)
json_backend "$BP" '{"ok":true}'

GW_PORT=$(free_port)
g="$TMP/cratopus"; mkdir -p "$g/orgs"
cat >"$g/gateway.yaml" <<YAML
listeners:
  - name: http
    bind: 127.0.0.1:$GW_PORT
workers: 1
watch: false
organizations: orgs/*.yaml
YAML
python3 - "$g/orgs" "$ORGS" "$ROUTES" "$BP" <<'PY'
import sys
out, orgs, routes, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for o in range(orgs):
    lines = [f"name: org{o}", f"domains: [org{o}.test]", "upstreams:",
             f"  svc: {{targets: [\"http://127.0.0.1:{port}\"]}}", "routes:"]
    for r in range(routes):
        lines.append(f"  - path: \"/svc{r}/items/{{id}}\"")
        lines.append("    upstream: svc")
        if r % 10 == 1:
            lines.append("    rate_limit: {limits: [{rate: 100000, per: 1s}]}")
        if r % 10 == 2:
            lines.append("    auth: {jwt: {secret: \"an-hmac-secret-of-at-least-32-bytes!!\"}}")
        if r % 10 == 3:
            lines.append(f"    rewrite: \"/v2/items/{{id}}\"")
        if r % 10 == 4:
            lines.append("    methods: [GET, POST]")
    open(f"{out}/org{o}.yaml", "w").write("\n".join(lines) + "\n")
PY
msg "config: $ORGS organizations x $ROUTES routes"
start_proc cratopus env CRATOPUS_LOG=info "$CRATOPUS_BIN" run -c "$g/gateway.yaml"
GW_PID=$LAST_PID
wait_http cratopus "$GW_PID" "http://127.0.0.1:$GW_PORT/__health" 60 || die "cratopus did not start"
got=$(curl -s -H 'Host: org7.test' "http://127.0.0.1:$GW_PORT/svc0/items/1")
[ "$got" = '{"ok":true}' ] || die "GET org7.test/svc0/items/1 gave '$got'"

swapped() { grep -c "config compiled and swapped in" "$TMP/cratopus.log" || true; }
# Before reload $1: a route added to one organization file (the next in turn) or to all.
change() {
  local files=()
  case "$CHANGE" in
    one) files=("$g/orgs/org$(($1 % ORGS)).yaml") ;;
    all) files=("$g"/orgs/*.yaml) ;;
    none) return 0 ;;
  esac
  for f in "${files[@]}"; do
    printf '  - path: "/added%s/items/{id}"\n    upstream: svc\n' "$1" >>"$f"
  done
}
wrk_secs=$((RELOADS * 3 + 6))
if [ "$LOAD" = 1 ]; then
  "${CLIENT_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${wrk_secs}s" -H 'Host: org7.test' \
    "http://127.0.0.1:$GW_PORT/svc0/items/1" >"$TMP/wrk.out" 2>&1 &
  WRK=$!
  CLIENT_PIDS=("$WRK")
fi
sleep 2
for i in $(seq "$RELOADS"); do
  change "$i"
  before=$(swapped)
  kill -HUP "$GW_PID"
  for _ in $(seq 1 600); do [ "$(swapped)" -gt "$before" ] && break; sleep 0.05; done
  [ "$(swapped)" -gt "$before" ] || die "reload $i did not complete; log tail: $(tail -3 "$TMP/cratopus.log")"
  sleep 2
done
if [ "$LOAD" = 1 ]; then
  wait "$WRK" || die "wrk failed: $(tail -3 "$TMP/wrk.out")"
  CLIENT_PIDS=()
fi
grep "config compiled and swapped in" "$TMP/cratopus.log" | sed 's/\x1b\[[0-9;]*m//g' | python3 -c '
import re, sys, statistics
rows = [dict(re.findall(r"(\w+)=([0-9.]+)", l)) for l in sys.stdin]
print("unchanged files per reload:", " ".join(r.get("unchanged_files", "-") for r in rows))
for k in ("load_ms", "compile_ms", "total_ms"):
    v = sorted(float(r[k]) for r in rows)
    n = rows[0].get("routes")
    print(f"{k:>10}: median {statistics.median(v):7.1f}  min {v[0]:7.1f}  max {v[-1]:7.1f}  ({len(v)} reloads, {n} routes)")
'
[ "$LOAD" = 1 ] || exit 0
reqs=$(awk '/requests in/ {print $1}' "$TMP/wrk.out")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$TMP/wrk.out"); non2xx=${non2xx:-0}
errs=$(awk '/Socket errors/ {print}' "$TMP/wrk.out"); errs=${errs:-none}
printf 'under load: %s requests, %s non-2xx, socket errors: %s\n' "$reqs" "$non2xx" "$errs"
grep -E "Requests/sec|Latency " "$TMP/wrk.out"
