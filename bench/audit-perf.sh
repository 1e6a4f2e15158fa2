#!/usr/bin/env bash
# Audit sink benchmark: `kubebid serve audit` (release build, plain HTTP on loopback, detection on with
# KubeBid's rules and Falco's upstream k8saudit rules, four tenants and the platform) fed realistic events of
# about 1.1 KiB by the audit_load example, which shares the 2 cores with it. In the same run:
#   1. acknowledgement latency at 10,000 events/s (batches of 100, open loop), on the fresh sink;
#   2. saturation: 8 connections posting batches of 200 events, acknowledged only once durable;
#   3. the limit: the same event bytes appended to a file with one fdatasync per batch, no sink at all;
#   4. `kubebid audit verify` over everything stored (it prints its own rate).
#
#   bench/audit-perf.sh [seconds]     (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
cargo build --release -q -p kubebid
cargo build --release -q -p kubebid-audit --example audit_load
bin=target/release/kubebid
load=target/release/examples/audit_load
# On disk (not a tmpfs): fdatasync must mean what it means in production.
mkdir -p target/bench
work=$(mktemp -d target/bench/audit.XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/tenants.yaml" <<'YAML'
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {namespaces: [acme-prod], owners: [{kind: Group, name: acme-admins}]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec: {namespaces: [globex], owners: [{kind: Group, name: globex-admins}]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: initech}
spec: {namespaces: [initech-web], owners: [{kind: Group, name: initech-admins}]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: umbrella}
spec: {namespaces: [umbrella], owners: [{kind: Group, name: umbrella-admins}]}
YAML
"$bin" audit keygen --out "$work/key.pem" >/dev/null
port=$(( 20000 + RANDOM % 20000 ))
KUBEBID_LOG=error "$bin" serve audit --listen "127.0.0.1:$port" --data "$work/data" --signing-key "$work/key.pem" \
  -c "$work/tenants.yaml" --rules crates/kubebid-rules/tests/data/k8s_audit_rules.yaml --alerts "$work/alerts.jsonl" &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "== 1. acknowledgement latency at 10,000 events/s (batches of 100)"
"$load" rate "127.0.0.1:$port" "$secs" 10000 100
echo "== 2. saturation (8 connections, batches of 200)"
sat=$("$load" saturate "127.0.0.1:$port" "$secs" 8 200); echo "$sat"
echo "== 3. the limit: append + fdatasync of the same bytes, one sync per batch of 200"
lim=$("$load" limit "$work" "$secs" 200); echo "$lim"
ours=$(sed -E 's/.*: ([0-9]+) events\/s.*/\1/' <<<"$sat")
limit=$(sed -E 's/.*: ([0-9]+) events\/s.*/\1/' <<<"$lim")
awk -v a="$ours" -v b="$limit" 'BEGIN { printf "sink / limit: %.2f\n", a / b }'
curl -fs "http://127.0.0.1:$port/metrics" | grep -E '^kubebid_audit_(batches_per_commit_(sum|count)|detection_skipped_events_total|sync_failures_total)' || true
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
echo "== 4. verify everything stored"
"$bin" audit verify "$work/data" --key "$work/key.pub" | tail -1
