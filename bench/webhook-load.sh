#!/usr/bin/env bash
# Webhook benchmark: starts `kubebid serve webhook` (release build, the three-tenant example configuration,
# TLS on loopback),
# reports its idle RSS, then drives /validate with keep-alive connections:
#   1. at saturation (throughput), 2. at a fixed 5,000 reviews/s (p50/p99/p999 latency),
# with the server's CPU and RSS. The load generator shares the machine's 2 cores with the server.
#
#   bench/webhook-load.sh [seconds]     (default 10 per phase)
#
# KUBEBID_BIN=path runs that binary instead of building this checkout's (to compare two versions in one
# sitting), KUBEBID_BENCH_CONFIG=dir another configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
if [ -z "${KUBEBID_BIN:-}" ]; then
  cargo build --release -q -p kubebid
fi
cargo build --release -q -p kubebid-webhook --example webhook_load
bin=${KUBEBID_BIN:-target/release/kubebid}
load=target/release/examples/webhook_load
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
"$bin" cert generate --out "$work" --host localhost --host 127.0.0.1 >/dev/null
port=$(( 20000 + RANDOM % 20000 ))
KUBEBID_LOG=warn "$bin" serve webhook --listen "127.0.0.1:$port" --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --config "${KUBEBID_BENCH_CONFIG:-examples/config}" &
pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
sleep 1
idle=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
# A restricted-compliant Pod with two containers, as the API server sends it.
cat > "$work/review.json" <<'JSON'
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"b5f8a2c4-0c1d-4b1e-9f43-2a6f1e9d7c10",
 "kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
 "name":"web-7d4b9c","namespace":"tenant-acme","operation":"CREATE",
 "userInfo":{"username":"system:serviceaccount:kube-system:replicaset-controller","groups":["system:serviceaccounts","system:authenticated"]},
 "object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-7d4b9c","namespace":"tenant-acme","labels":{"app":"web"}},
  "spec":{"runtimeClassName":"kubebid-secure","securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},
   "containers":[
    {"name":"web","image":"ghcr.io/acme/web:1.4.2","ports":[{"containerPort":8080}],
     "securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}},
     "resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"500m","memory":"256Mi"}}},
    {"name":"proxy","image":"ghcr.io/acme/proxy:2.1","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}},
     "resources":{"requests":{"cpu":"50m","memory":"32Mi"},"limits":{"cpu":"200m","memory":"64Mi"}}}]}},
 "dryRun":false}}
JSON
echo "kubebid webhook, idle RSS: ${idle} MiB (target <= 30 MiB)"
echo "--- throughput at saturation (target >= 20,000 reviews/s)"
"$load" --addr "127.0.0.1:$port" --ca "$work/ca.crt" --body "$work/review.json" --connections 64 --seconds "$secs" --server-pid "$pid"
echo "--- latency at 5,000 reviews/s (target p99 <= 2 ms)"
"$load" --addr "127.0.0.1:$port" --ca "$work/ca.crt" --body "$work/review.json" --connections 32 --seconds "$secs" --rate 5000 --server-pid "$pid"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
