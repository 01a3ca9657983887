# shellcheck shell=bash
# bench/lib.sh — helpers shared by bench/run.sh and bench/rss.sh.
#
# Sourced, never run. The sourcing script must use `set -euo pipefail` and
# set BENCH_TAG (a short name used in messages and temp-dir names) first.
#
# Every process started through start_proc runs in its own session
# (setsid, so pid == process group id) and is killed, group and all, by
# bench_cleanup, which is installed as the EXIT trap by bench_init.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"
set +m   # no job control: background children stay in our process group,
         # so `setsid` execs in place and the pid we record is the server's.

KEEP_TMP=${KEEP_TMP:-0}      # 1 = keep the temp dir (configs, logs) for inspection
INSTALL=${INSTALL:-1}        # 0 = never apt-get install, fail instead

PIDS=()                      # pids (== pgids) of everything we started
CLIENT_PIDS=()               # load generators / clients running in our own group
declare -A PNAME=()          # pid -> name, for messages
TMP=""
LAST_PID=""
SRV_PIN=()                   # prefix for server commands (taskset ...) or empty
CLIENT_PIN=()                # prefix for the load generator / client

msg() { printf '[%s] %s\n' "${BENCH_TAG:-bench}" "$*" >&2; }
die() { msg "error: $*"; exit 1; }

bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid alive
  for pid in "${CLIENT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    alive=0
    for pid in "${PIDS[@]}"; do
      if kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    if kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null; then
      msg "force-killing ${PNAME[$pid]:-?} (pid $pid)"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    if [ "$KEEP_TMP" = 1 ]; then msg "kept temp dir $TMP"; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}

bench_init() {  # installs the traps and creates $TMP
  trap bench_cleanup EXIT
  trap 'msg "interrupted"; exit 130' INT TERM
  TMP=$(mktemp -d "/tmp/cratopus-${BENCH_TAG:-bench}.XXXXXX")
  chmod 755 "$TMP"   # nginx workers drop to `nobody`
}

# pin_setup: servers on CPU 0, client on CPU 1 (needs taskset and >= 2 CPUs).
# PIN=auto (default) pins when possible, PIN=0 never, PIN=1 requires it.
pin_setup() {
  local want=${PIN:-auto}
  [ "$want" = 0 ] && return 0
  if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    SRV_PIN=(taskset -c 0); CLIENT_PIN=(taskset -c 1)
  elif [ "$want" = 1 ]; then
    die "PIN=1 but taskset is missing or there are fewer than 2 CPUs"
  fi
}

free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# ensure_pkgs BIN:PKG ... — install the packages whose binaries are missing.
# `apt-get update` runs once, and only if something has to be installed.
ensure_pkgs() {
  local spec bin pkg missing=() created_policy=0 rc=0
  for spec in "$@"; do
    bin=${spec%%:*}; pkg=${spec#*:}
    command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  [ "$INSTALL" = 1 ] || die "missing packages (${missing[*]}) and INSTALL=0"
  [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root or install them"
  msg "installing ${missing[*]} (apt-get update first)"
  # Keep Debian's nginx service from starting on :80 during the install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  } >"/tmp/cratopus-bench-apt.log" 2>&1 || rc=$?
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { tail -n 20 /tmp/cratopus-bench-apt.log >&2; die "apt-get failed (log: /tmp/cratopus-bench-apt.log)"; }
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || die "${spec%%:*} still missing after installing ${spec#*:}"
  done
}

# start_proc NAME CMD ARGS... — start a server in its own session, pinned to
# the server CPU when pinning is on; output goes to $TMP/NAME.log.
start_proc() {
  local name=$1; shift
  setsid "${SRV_PIN[@]}" "$@" >"$TMP/$name.log" 2>&1 </dev/null &
  LAST_PID=$!
  PIDS+=("$LAST_PID"); PNAME[$LAST_PID]=$name
}

# session_cpu_ticks PID — "USER SYSTEM": CPU time, in clock ticks, of every process in the
# session PID leads (a server started by start_proc: nginx's master and workers, the gateway).
session_cpu_ticks() {
  local u=0 s=0 p v
  for p in $(pgrep -s "$1" 2>/dev/null); do
    v=$(awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$p/stat" 2>/dev/null) || v="0 0"
    u=$((u + ${v%% *})); s=$((s + ${v##* }))
  done
  echo "$u $s"
}

# run_client OUTFILE CMD ARGS... — run a client in the background (pinned to
# the client CPU when pinning is on), stdout and stderr to OUTFILE, and wait
# for it, so that a TERM/INT to this script is handled at once and the client
# is killed by the cleanup. Returns the client's status.
run_client() {
  local rc=0 pid out=$1; shift
  "${CLIENT_PIN[@]}" "$@" >"$out" 2>&1 &
  pid=$!
  CLIENT_PIDS=("$pid")
  wait "$pid" || rc=$?
  CLIENT_PIDS=()
  return "$rc"
}

# wait_http NAME PID URL SECONDS — wait until URL answers 200.
wait_http() {
  local name=$1 pid=$2 url=$3 secs=$4 t=0
  while [ "$t" -lt $((secs * 10)) ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      msg "$name exited early; log tail:"; tail -n 20 "$TMP/$name.log" >&2 || true
      return 1
    fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" = 200 ]; then
      return 0
    fi
    sleep 0.1; t=$((t + 1))
  done
  msg "$name: $url did not answer 200 within ${secs}s; log tail:"
  tail -n 20 "$TMP/$name.log" >&2 || true
  return 1
}

# ---- the direct backend -----------------------------------------------------
BACKEND_BODY="hello world"   # served as "hello world\n" (12 bytes)
BACKEND_PORT=""
BACKEND_PID=""

ngx_common() {  # ngx_common DIR — the top of an nginx.conf confined to DIR
  local d=$1
  cat <<NGX
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
NGX
}
ngx_http_common() {
  local d=$1 t
  echo "  access_log off;"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $d/tmp/$t;"; done
  echo "  keepalive_requests 1000000;"
  echo "  keepalive_timeout 75s;"
}

start_backend() {
  local d="$TMP/backend"
  mkdir -p "$d/tmp"
  BACKEND_PORT=$(free_port)
  {
    ngx_common "$d"
    echo "http {"
    ngx_http_common "$d"
    cat <<NGX
  server {
    listen 127.0.0.1:$BACKEND_PORT backlog=4096;
    location / { default_type text/plain; return 200 "$BACKEND_BODY\n"; }
  }
}
NGX
  } >"$d/nginx.conf"
  start_proc backend nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf"
  BACKEND_PID=$LAST_PID
  wait_http backend "$BACKEND_PID" "http://127.0.0.1:$BACKEND_PORT/" 10 || die "backend nginx did not start"
}

# write_nginx_proxy_conf DIR PORT — nginx reverse proxy to the backend.
write_nginx_proxy_conf() {
  local d=$1 port=$2
  mkdir -p "$d/tmp"
  {
    ngx_common "$d"
    echo "http {"
    ngx_http_common "$d"
    cat <<NGX
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGX
  } >"$d/nginx.conf"
}

# write_cratopus_conf FILE PORT [WORKERS] [EXTRA_YAML] [ORG_YAML] — the gateway config;
# WORKERS empty leaves `workers` out (the gateway then uses one thread per core); EXTRA_YAML
# is appended at the top level and ORG_YAML inside the organization, indented by 4 (a
# variant's settings, see VARIANTS in run.sh).
write_cratopus_conf() {
  local file=$1 port=$2 workers=${3:-} extra=${4:-} org=${5:-}
  {
    cat <<YAML
listeners:
  - name: http
    bind: 127.0.0.1:$port
YAML
    [ -n "$workers" ] && echo "workers: $workers"
    cat <<YAML
organizations:
  - name: bench
    upstreams:
      backend:
        targets: ["http://127.0.0.1:$BACKEND_PORT"]
    routes:
      - path: /{*rest}
        upstream: backend
YAML
    if [ -n "$org" ]; then printf '%s\n' "$org"; fi
    echo "default_organization: bench"
    if [ -n "$extra" ]; then printf '%s\n' "$extra"; fi
  } >"$file"
}

# resolve_cratopus — set CRATOPUS_BIN (absolute), building it if it is missing.
resolve_cratopus() {
  CRATOPUS_BIN=${CRATOPUS_BIN:-target/dist/cratopus}
  case "$CRATOPUS_BIN" in /*) ;; *) CRATOPUS_BIN="$REPO_ROOT/$CRATOPUS_BIN" ;; esac
  if [ ! -x "$CRATOPUS_BIN" ]; then
    msg "$CRATOPUS_BIN not found: cargo build --profile dist -p cratopus"
    (cd "$REPO_ROOT" && cargo build --profile dist -p cratopus) || die "cargo build failed"
    [ -x "$CRATOPUS_BIN" ] || die "$CRATOPUS_BIN still missing after the build"
  fi
}

# json_backend PORT BODY — an nginx on 127.0.0.1:PORT answering every path with the JSON
# BODY (no single quotes in it); waits until it answers.
json_backend() {
  local port=$1 body=$2 d="$TMP/backend-$1"
  mkdir -p "$d/tmp"
  {
    ngx_common "$d"
    echo "http {"
    ngx_http_common "$d"
    cat <<NGX
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { default_type application/json; return 200 '$body'; }
  }
NGX
    echo "}"
  } >"$d/nginx.conf"
  start_proc "backend-$port" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf"
  wait_http "backend-$port" "$LAST_PID" "http://127.0.0.1:$port/" 10 || die "backend on :$port did not start"
}

# wrk_round NAME URL [SCRIPT] — one wrk run of THREADS, CONNECTIONS and DURATION; its
# requests/s, p50 and p99 are appended to the caller's RPS[NAME], P50[NAME], P99[NAME]
# (declare -A RPS=() P50=() P99=() first). Non-2xx answers end the bench.
wrk_round() {
  local name=$1 url=$2 script=${3:-} out="$TMP/wrk.out" args=()
  [ -n "$script" ] && args=(-s "$script")
  run_client "$out" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${args[@]}" "$url" \
    || die "wrk failed: $(tail -3 "$out")"
  grep -q "Non-2xx" "$out" && die "$name: non-2xx answers: $(grep Non-2xx "$out")"
  RPS[$name]+="$(awk '/^Requests\/sec/ {print $2}' "$out") "
  P50[$name]+="$(awk '$1=="50%" {print $2}' "$out") "
  P99[$name]+="$(awk '$1=="99%" {print $2}' "$out") "
}
