#!/usr/bin/env bash
# etcd proxy benchmark: the etcd_load example (etcd v3 gRPC over HTTP/2, the API server's Put and
# single-key Range, 1 KiB values shaped like KMS v2 envelopes) against Debian's etcd directly and through
# `kubebid serve etcd-proxy` (release build; tenant keys in a SoftHSM2 token behind `kubebid serve kms`),
# interleaved: each round runs every case directly and through the proxy, alternating which goes first.
# Cases: pass-through keys (ConfigMaps) and a tenant's Secrets (sealed on the way in, opened on the way
# out), writes then reads, at 16 callers (throughput) and at 1 caller (latency, p99). etcd keeps its data
# on disk with its default fsync per write, as in production. Everything shares the machine's 2 cores.
# The limit of any proxy here is measured in the same rounds: a bare TCP relay (etcd_load relay: bytes
# copied both ways, nothing parsed, one thread like the proxy) between the client and etcd.
#
#   bench/etcd-proxy.sh [seconds per run] [rounds]     (defaults 5 and 3)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
for t in etcd etcdctl softhsm2-util; do
  command -v "$t" >/dev/null || { echo "bench/etcd-proxy.sh: $t is not installed (scripts/test installs etcd-server, etcd-client and softhsm2)" >&2; exit 2; }
done
cargo build --release -q -p kubebid
cargo build --release -q -p kubebid-etcd --example etcd_load
bin=target/release/kubebid
load=target/release/examples/etcd_load
mkdir -p target/bench
work=$(mktemp -d "$PWD/target/bench/etcd.XXXXXX")
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf" KUBEBID_KMS_PIN=1234 KUBEBID_LOG=warn
softhsm2-util --init-token --free --label kubebid --pin 1234 --so-pin 5678 >/dev/null
"$bin" kms tenant-key create acme >/dev/null
"$bin" serve kms --socket "$work/kms.sock" --tenant-socket "$work/tenant-keys.sock" --metrics-listen 127.0.0.1:0 &
pids+=($!)
base=$(( 20000 + RANDOM % 20000 ))
client=$base peer=$((base + 1)) proxy=$((base + 2)) metrics=$((base + 3)) relay=$((base + 4))
etcd --name bench --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$client" \
  --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "bench=http://127.0.0.1:$peer" \
  >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/tenant-keys.sock" ] && ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$client" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
cat > "$work/tenants.yaml" <<'YAML'
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {namespaces: [acme-prod]}
YAML
"$bin" serve etcd-proxy --listen "127.0.0.1:$proxy" --metrics-listen "127.0.0.1:$metrics" \
  --etcd "http://127.0.0.1:$client" --tenant-key-socket "$work/tenant-keys.sock" -c "$work/tenants.yaml" &
pids+=($!)
for _ in $(seq 100); do curl -fs "127.0.0.1:$metrics/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
"$load" relay "127.0.0.1:$relay" "127.0.0.1:$client" &
pids+=($!)
echo "== etcd $(etcd --version | awk '/etcd Version/ {print $3}'), $rounds rounds of $secs s per run, 1,000 keys, 1 KiB values"

# run <side> <op> <prefix> <concurrency>: one line of etcd_load.
run() {
  local addr=$client
  [ "$1" = proxy ] && addr=$proxy
  [ "$1" = relay ] && addr=$relay
  "$load" "127.0.0.1:$addr" "$2" "$3" 1000 1024 "$4" "$secs"
}
declare -A ops p99
cases=("pass-through put:put:/registry/configmaps/bench/" "pass-through get:get:/registry/configmaps/bench/"
       "sealed Secret put:put:/registry/secrets/acme-prod/" "sealed Secret get:get:/registry/secrets/acme-prod/")
for r in $(seq "$rounds"); do
  order=(direct proxy relay); [ $((r % 2)) -eq 0 ] && order=(relay proxy direct)
  for c in "${cases[@]}"; do
    IFS=: read -r name op prefix <<<"$c"
    for side in "${order[@]}"; do
      # Each side reads and writes its own keys: the proxy's reads open values the proxy sealed.
      p="$prefix$side-"
      for conc in 16 1; do
        line=$(run "$side" "$op" "$p" "$conc")
        echo "round $r $side $name: $line"
        ops["$name|$side|$conc"]+="$(awk '{print $3}' <<<"$line") "
        p99["$name|$side|$conc"]+="$(awk '{print $8}' <<<"$line") "
        # The relay is only a reference; errors through it are reported, not fatal.
        if ! grep -q 'errors 0$' <<<"$line"; then
          [ "$side" = relay ] && echo "  (errors through the relay in that run)" || { echo "errors in that run" >&2; exit 1; }
        fi
      done
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf '%-18s %12s %12s %7s %12s %7s %9s  %11s %11s %10s\n' case "direct ops/s" "proxy ops/s" ratio "relay ops/s" ratio "proxy/relay" "direct p99" "proxy p99" "added p99"
for c in "${cases[@]}"; do
  IFS=: read -r name _ _ <<<"$c"
  d=$(median <<<"${ops["$name|direct|16"]}"); x=$(median <<<"${ops["$name|proxy|16"]}"); y=$(median <<<"${ops["$name|relay|16"]}")
  dl=$(median <<<"${p99["$name|direct|1"]}"); xl=$(median <<<"${p99["$name|proxy|1"]}")
  awk -v n="$name" -v d="$d" -v x="$x" -v y="$y" -v dl="$dl" -v xl="$xl" \
    'BEGIN { printf "%-18s %12d %12d %7.2f %12d %7.2f %9.2f  %8d µs %8d µs %7d µs\n", n, d, x, x / d, y, y / d, x / y, dl, xl, xl - dl }'
done
echo "(throughput at 16 callers, p99 at 1 caller; medians of $rounds rounds)"
curl -fs "127.0.0.1:$metrics/metrics" | grep -E '^kubebid_etcd_proxy_(seals|opens|faults)_total' || true
