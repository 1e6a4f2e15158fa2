#!/usr/bin/env bash
# Webhook benchmark, three servers on loopback in one sitting, each driven the same way by webhook_load:
#   - `kubebid serve webhook` (release build, the three-tenant example configuration, TLS);
#   - the limit: bare_server, the same TLS and HTTP settings reading the same AdmissionReview and
#     answering a fixed response (no layers, no decoding, no policy);
#   - with KUBEBID_BASE_BIN=path, another kubebid binary (the previous commit's) to compare against.
# Phases, interleaved so that the machine's noise falls on every server alike:
#   1. saturation (throughput, and server CPU per review), twice per server;
#   2. a fixed 5,000 reviews/s (p50/p99/p999 latency) for kubebid and the baseline.
# Prints each figure, kubebid's saturation as a fraction of the limit (goal >= 0.6) and against the
# baseline. The load generator shares the machine's 2 cores with the server.
#
#   bench/webhook-load.sh [seconds]     (default 10 per phase)
#
# KUBEBID_BIN=path runs that binary instead of building this checkout's, KUBEBID_BENCH_CONFIG=dir another
# configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
if [ -z "${KUBEBID_BIN:-}" ]; then
  cargo build --release -q -p kubebid
fi
cargo build --release -q -p kubebid-webhook --example webhook_load --example bare_server
bin=${KUBEBID_BIN:-target/release/kubebid}
base=${KUBEBID_BASE_BIN:-}
load=target/release/examples/webhook_load
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
"$bin" cert generate --out "$work" --host localhost --host 127.0.0.1 >/dev/null

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
start_webhook() { # binary port
  KUBEBID_LOG=warn "$1" serve webhook --listen "127.0.0.1:$2" --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --config "${KUBEBID_BENCH_CONFIG:-examples/config}" &
  pids+=($!)
  echo $! > "$work/pid-$2"
  wait_port "$2"
}
port_k=$(( 20000 + RANDOM % 10000 )); port_b=$((port_k + 1)); port_p=$((port_k + 2))
start_webhook "$bin" "$port_k"
target/release/examples/bare_server "127.0.0.1:$port_b" "$work/tls.crt" "$work/tls.key" &
pids+=($!); echo $! > "$work/pid-$port_b"; wait_port "$port_b"
if [ -n "$base" ]; then start_webhook "$base" "$port_p"; fi
sleep 1
idle=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$(cat "$work/pid-$port_k")/status")
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
run() { # label port [extra load args...]
  local label=$1 port=$2; shift 2
  echo "--- $label"
  "$load" --addr "127.0.0.1:$port" --ca "$work/ca.crt" --body "$work/review.json" --seconds "$secs" --server-pid "$(cat "$work/pid-$port")" "$@" | tee "$work/out"
}
rps() { awk '/completed:/ {gsub(/[(]/, "", $3); print $3}' "$work/out"; }
p99() { awk '/from send/ {for (i = 1; i <= NF; i++) if ($i == "p99") print $(i+1)}' "$work/out"; }
echo "kubebid webhook, idle RSS: ${idle} MiB (target <= 30 MiB)"
echo "=== 1. saturation, 64 connections (target >= 20,000 reviews/s; goal >= 0.6 of the bare server)"
declare -A sat
for round in 1 2; do
  for who in bare kubebid ${base:+base}; do
    case $who in bare) port=$port_b;; kubebid) port=$port_k;; base) port=$port_p;; esac
    run "$who (round $round)" "$port" --connections 64
    sat[$who]="${sat[$who]:-} $(rps)"
  done
done
best() { tr ' ' '\n' <<<"$1" | sort -n | tail -1; }
k=$(best "${sat[kubebid]}"); b=$(best "${sat[bare]}")
echo "=== 2. latency at 5,000 reviews/s, 32 connections (target p99 <= 2 ms)"
run "kubebid" "$port_k" --connections 32 --rate 5000; kp99=$(p99)
if [ -n "$base" ]; then run "base" "$port_p" --connections 32 --rate 5000; bp99=$(p99); fi
echo "=== summary (best round of each)"
awk -v k="$k" -v b="$b" 'BEGIN { printf "saturation: kubebid %.0f reviews/s, bare server %.0f: %.2f of the limit (goal >= 0.6)\n", k, b, k / b }'
if [ -n "$base" ]; then
  p=$(best "${sat[base]}")
  awk -v k="$k" -v p="$p" 'BEGIN { printf "saturation: kubebid %.0f reviews/s, baseline %.0f: ratio %.2f\n", k, p, k / p }'
  echo "p99 at 5,000/s: kubebid ${kp99} ms, baseline ${bp99} ms"
else
  echo "p99 at 5,000/s: kubebid ${kp99} ms"
fi
