#!/usr/bin/env bash
# Checks the admin API's real responses against its own OpenAPI document with schemathesis.
# Usage: .ci/admin-api-check.sh path/to/cratopus
set -euo pipefail
BIN=$1
VENV="${CRATOPUS_CI_VENV:-$HOME/.cache/cratopus-ci-venv}"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  rm -rf "$VENV"  # a half-made one (an earlier run failed) is made again
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis
fi
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
DIR=$(mktemp -d)
HTTP=$(freeport); HTTPS=$(freeport); ADMIN=$(freeport); TOKEN=ci-admin-token-$RANDOM$RANDOM
# Certificates so that /api/certificates has something to describe (the example's demo ones).
CERTS="$(cd "$(dirname "$0")/.." && pwd)/examples/https/certs"
cat > "$DIR/gateway.yaml" <<YAML
listeners: [{bind: "127.0.0.1:$HTTP"}, {bind: "127.0.0.1:$HTTPS", tls: true}]
admin: {bind: "127.0.0.1:$ADMIN", token: "$TOKEN"}
tls:
  default_certificate: {cert: "$CERTS/default.pem", key: "$CERTS/default-key.pem"}
organizations:
  - name: ci
    upstreams:
      m: {targets: ["mirror://"]}
      m2: {targets: ["mirror://"]}
    routes:
      - {path: "/{*rest}", upstream: m}
      # A split, so that /api/splits describes one and takes weights.
      - name: split
        path: /split
        split:
          backends: [{upstream: m, weight: 9}, {upstream: m2, weight: 1, canary: true}]
          rollback: {max_error_rate: 0.5}
    tls: {cert: "$CERTS/shop.pem", key: "$CERTS/shop-key.pem"}
YAML
"$BIN" run -c "$DIR/gateway.yaml" > "$DIR/gateway.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do
  curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN/api/status" >/dev/null && break
  sleep 0.1
done
cd "$DIR"  # schemathesis keeps state in ./.schemathesis
"$VENV/bin/schemathesis" run "http://127.0.0.1:$ADMIN/api/openapi.json" \
  -H "Authorization: Bearer $TOKEN" --max-examples 50
