#!/usr/bin/env bash
# DNS benchmark: dnsperf against `kubebid serve dns` (release build, policy on) and against unbound serving
# the same names as local data, in the same run on the same machine, same query file, same client.
#
# The cluster: 3 tenants x 1,000 ClusterIP services (3,000 services, 3,000 A records) plus a client pod of
# tenant t0 at 127.0.0.11. The queries, from that pod: 80% its own services (NOERROR), 20% another tenant's
# (NXDOMAIN by policy at KubeBid; unbound, which has no policy, answers them). Per server:
#   1. saturation: dnsperf (4 clients, up to 100 queries outstanding) for $secs seconds, twice per server,
#      alternating, best run kept -> queries per second, and queries per CPU-second the server used;
#   2. latency at a fixed 20,000 queries/s, every answer's latency (dnsperf -v) -> p50/p99/p999.
# dnsperf shares the machine's 2 cores with the server. KubeBid runs with the per-client rate limit off
# (--client-qps 0): the benchmark is one client, which the default limit (1,000/s) would cap.
#
# With KUBEBID_BASE_BIN=path, that kubebid binary (the previous commit's, say) serves the same data on a
# third port and takes part in every round: the summary prints kubebid against it too.
#
#   bench/dns-perf.sh [seconds]     (default 10 per phase)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
for tool in dnsperf unbound; do
    command -v "$tool" >/dev/null || { echo "bench/dns-perf.sh: $tool is not installed (apt-get install dnsperf unbound)" >&2; exit 2; }
done
cargo build --release -q -p kubebid
bin=target/release/kubebid
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
random.seed(7)
items, local, queries_own, queries_other = [], [], [], []
tenants = [f"t{i}" for i in range(3)]
tenant_docs = []
for ti, t in enumerate(tenants):
    ns = f"tenant-{t}"
    items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubebid.io/tenant": t}}})
    tenant_docs.append(f"apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {{name: {t}}}\nspec:\n  namespaces: [{ns}]\n")
    for i in range(1000):
        ip = f"10.{96 + ti}.{i // 250}.{i % 250 + 1}"
        name = f"svc-{i}"
        items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                      "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        fq = f"{name}.{ns}.svc.cluster.local"
        local.append(f'  local-data: "{fq}. 5 IN A {ip}"')
        (queries_own if ti == 0 else queries_other).append(f"{fq} A")
items.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "tenant-t0"},
              "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Running", "podIP": "127.0.0.11"}})
with open(f"{work}/state.json", "w") as f:
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
with open(f"{work}/tenants.yaml", "w") as f:
    f.write("---\n".join(tenant_docs))
with open(f"{work}/local-data.conf", "w") as f:
    f.write("\n".join(local) + "\n")
qs = [random.choice(queries_own) if random.random() < 0.8 else random.choice(queries_other) for _ in range(100000)]
with open(f"{work}/queries.txt", "w") as f:
    f.write("\n".join(qs) + "\n")
PY

port_ours=$(( 20000 + RANDOM % 10000 ))
port_unbound=$(( port_ours + 1 ))
metrics_port=$(( port_ours + 2 ))
port_base=$(( port_ours + 3 ))
base=${KUBEBID_BASE_BIN:-}
base_pid=""
if [ -n "$base" ]; then
    KUBEBID_LOG=warn "$base" serve dns --listen "127.0.0.1:$port_base" --metrics-listen "127.0.0.1:$(( port_ours + 4 ))" \
        --state "$work/state.json" --config "$work/tenants.yaml" --upstream 127.0.0.1:9 --client-qps 0 &
    pids+=($!)
    base_pid=$!
fi
KUBEBID_LOG=warn "$bin" serve dns --listen "127.0.0.1:$port_ours" --metrics-listen "127.0.0.1:$metrics_port" \
    --state "$work/state.json" --config "$work/tenants.yaml" --upstream 127.0.0.1:9 --client-qps 0 &
pids+=($!)
ours_pid=$!
cat > "$work/unbound.conf" <<EOF
server:
  interface: 127.0.0.1@$port_unbound
  port: $port_unbound
  do-daemonize: no
  use-syslog: no
  logfile: ""
  username: ""
  chroot: ""
  directory: "$work"
  pidfile: ""
  num-threads: 2
  so-reuseport: yes
  access-control: 127.0.0.0/8 allow
  do-ip6: no
  verbosity: 0
  local-zone: "cluster.local." static
  include: "$work/local-data.conf"
remote-control:
  control-enable: no
EOF
unbound -c "$work/unbound.conf" &
pids+=($!)
unbound_pid=$!
for p in "$port_ours" "$port_unbound" ${base:+"$port_base"}; do
    for _ in $(seq 100); do
        dig +short +tries=1 +time=1 -b 127.0.0.11 -p "$p" @127.0.0.1 svc-1.tenant-t0.svc.cluster.local | grep -q 10.96 && break
        sleep 0.1
    done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
saturate() { # port pid -> "qps cpu-seconds-of-the-server"
    local before after qps
    before=$(cpu_ticks "$2")
    qps=$(dnsperf -a 127.0.0.11 -s 127.0.0.1 -p "$1" -d "$work/queries.txt" -l "$secs" -c 4 -Q 1000000 2>/dev/null \
        | awk '/Queries per second/ {printf "%.0f", $4}')
    after=$(cpu_ticks "$2")
    echo "$qps $(( after - before ))"
}
latency() { # port -> "p50 p99 p999" in microseconds at 20,000 queries/s
    dnsperf -v -a 127.0.0.11 -s 127.0.0.1 -p "$1" -d "$work/queries.txt" -l "$secs" -c 4 -Q 20000 2>/dev/null \
        | awk '$1 == ">" {print $NF * 1000000}' | sort -n \
        | awk '{v[NR]=$1} END {printf "%.0f %.0f %.0f", v[int(NR*0.5)], v[int(NR*0.99)], v[int(NR*0.999)]}'
}
echo "== dnsperf, $secs s per phase, client 127.0.0.11 (tenant t0), 80% own names / 20% another tenant's"
# Two rounds, alternating, best of each: the machine is noisy and neither server should get the quiet slot.
ours_qps=0; unbound_qps=0; base_qps=0
for _ in 1 2; do
    read -r q t <<<"$(saturate "$port_ours" "$ours_pid")"
    if [ "$q" -gt "$ours_qps" ]; then ours_qps=$q; ours_ticks=$t; fi
    read -r q t <<<"$(saturate "$port_unbound" "$unbound_pid")"
    if [ "$q" -gt "$unbound_qps" ]; then unbound_qps=$q; unbound_ticks=$t; fi
    if [ -n "$base" ]; then
        read -r q t <<<"$(saturate "$port_base" "$base_pid")"
        if [ "$q" -gt "$base_qps" ]; then base_qps=$q; base_ticks=$t; fi
    fi
done
hz=$(getconf CLK_TCK)
read -r o50 o99 o999 <<<"$(latency "$port_ours")"
read -r u50 u99 u999 <<<"$(latency "$port_unbound")"
rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$ours_pid/status")
denied=$(curl -s "127.0.0.1:$metrics_port/metrics" | awk '/^kubebid_dns_denials_total/ {s += $2} END {print s+0}')
per_cpu() { awk -v q="$1" -v t="$2" -v hz="$hz" -v s="$secs" 'BEGIN {printf "%.0f", q * s / (t / hz)}'; }
printf "%-22s %12s %16s %10s %10s %10s\n" server "queries/s" "per CPU-second" "p50 us" "p99 us" "p999 us"
printf "%-22s %12s %16s %10s %10s %10s\n" "kubebid (policy on)" "$ours_qps" "$(per_cpu "$ours_qps" "$ours_ticks")" "$o50" "$o99" "$o999"
printf "%-22s %12s %16s %10s %10s %10s\n" "unbound 1.17 (2 thr)" "$unbound_qps" "$(per_cpu "$unbound_qps" "$unbound_ticks")" "$u50" "$u99" "$u999"
if [ -n "$base" ]; then
    printf "%-22s %12s %16s\n" "baseline kubebid" "$base_qps" "$(per_cpu "$base_qps" "$base_ticks")"
    awk -v a="$ours_qps" -v b="$base_qps" 'BEGIN {printf "ratio kubebid/baseline: %.2f\n", a / b}'
fi
awk -v a="$ours_qps" -v b="$unbound_qps" 'BEGIN {printf "ratio kubebid/unbound: %.2f\n", a / b}'
echo "kubebid RSS after the run: $rss MiB; queries denied by policy: $denied"
