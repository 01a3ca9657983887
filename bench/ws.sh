#!/usr/bin/env bash
# bench/ws.sh — WebSocket echo round trips per second and p50/p99 latency through cratopus
# (a route that copies bytes, and one that reads frames) against the same echo server direct,
# in one interleaved run. Loopback only; the echo server and the clients are the ws_bench
# example (tokio-tungstenite), the gateway is $CRATOPUS_BIN (default target/dist/cratopus,
# built with the dist profile if missing).
#
#   bench/ws.sh [conns] [round trips per conn] [rounds] [message bytes]   (default 32 2000 3 64)
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
TARGET=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
BIN=${CRATOPUS_BIN:-$TARGET/dist/cratopus}
if [[ ! -x $BIN ]]; then
  cargo build --profile dist -p cratopus
fi
cargo build --release -p cratopus --example ws_bench
mkdir -p bench/out
"$TARGET/release/examples/ws_bench" run "$BIN" "$@" | tee "bench/out/ws-$(date +%Y%m%d-%H%M%S).txt"
