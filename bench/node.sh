#!/usr/bin/env bash
# Node agent benchmark:
#   1. a full attestation (criterion): this machine (real /dev/kvm: open, API version, a VM created) and a
#      fixture node with every feature (SEV-SNP, resctrl, Kata, containerd, kubelet files);
#   2. the agent's resident memory when idle (`serve node --offline` on the fixture, one tenant with a
#      cache share, after 5 s, with the chart's MIMALLOC_ARENA_EAGER_COMMIT=0), beside a bare `sleep`
#      process as the floor;
#   3. the same in cluster mode, against a stand-in API server (bench/mock-apiserver.py);
#   4. how long after a tenant's pod starts (its cgroup appears and it is in the pods list) its threads are in
#      the tenant's resctrl group, over N pod starts.
#
#   bench/node.sh [pods]     (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
[ -e /dev/kvm ] || { echo "bench/node.sh: needs /dev/kvm" >&2; exit 2; }
cargo bench -q -p kubebid-node --bench attest -- --noplot 2>&1 | grep -E "^attest|time:" || true
# The node agent as the image ships it: the `dist` profile (whole-program LTO).
cargo build --profile dist -q -p kubebid
bin=target/dist/kubebid
root=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$root"' EXIT
# The fixture node (as in crates/kubebid-node/tests/common).
mkdir -p "$root"/dev "$root"/etc/containerd "$root"/opt/kata/bin "$root"/opt/kata/share/defaults/kata-containers \
  "$root"/var/lib/kubelet "$root"/proc "$root"/sys/fs/resctrl/info/L3 "$root"/sys/fs/cgroup/kubepods.slice
ln -s /dev/kvm "$root/dev/kvm"
printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-fc]\n  runtime_type = "io.containerd.kata-fc.v2"\n' > "$root/etc/containerd/config.toml"
printf '[hypervisor.firecracker]\npath = "/opt/kata/bin/firecracker"\njailer_path = "/opt/kata/bin/jailer"\n' > "$root/opt/kata/share/defaults/kata-containers/configuration-fc.toml"
touch "$root/opt/kata/bin/firecracker" "$root/opt/kata/bin/jailer"
printf 'kind: KubeletConfiguration\ncpuManagerPolicy: static\ncpuManagerPolicyOptions: {full-pcpus-only: "true"}\ntopologyManagerPolicy: restricted\n' > "$root/var/lib/kubelet/config.yaml"
printf 'resctrl /sys/fs/resctrl resctrl rw 0 0\n' > "$root/proc/mounts"
echo 16 > "$root/sys/fs/resctrl/info/L3/num_closids"; echo fff > "$root/sys/fs/resctrl/info/L3/cbm_mask"
echo 1 > "$root/sys/fs/resctrl/info/L3/min_cbm_bits"; printf 'L3:0=fff\n' > "$root/sys/fs/resctrl/schemata"
printf 'apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  namespaces: [acme-prod]\n  isolation: {cachePartition: {share: 25}}\n' > "$root/tenants.yaml"
echo '{"apiVersion":"v1","kind":"List","items":[]}' > "$root/pods.json"
# As the chart runs it: mimalloc commits its arenas lazily (eager commit alone adds about 5 MiB resident).
MIMALLOC_ARENA_EAGER_COMMIT=0 "$bin" serve node --offline --node bench --host-root "$root" -c "$root/tenants.yaml" --pods "$root/pods.json" \
  --cgroup-root "$root/sys/fs/cgroup" --metrics-listen 127.0.0.1:0 2>"$root/agent.log" &
pid=$!
sleep 5
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
sleep 5 & sl=$!; floor=$(awk '/VmRSS/ {print $2}' "/proc/$sl/status"); wait "$sl"
echo "idle RSS: agent $((rss / 1024)).$(( (rss % 1024) * 10 / 1024 )) MiB ($rss KiB); a bare sleep $floor KiB"
group="$root/sys/fs/resctrl/kubebid-acme"
[ -f "$group/mode" ] || { echo "no group made:" >&2; cat "$root/agent.log" >&2; exit 1; }
items=""
lat=()
for i in $(seq "$n"); do
  uid=$(printf '%08x-0000-4000-8000-%012x' "$i" "$i")
  dir="$root/sys/fs/cgroup/kubepods.slice/kubepods-pod${uid//-/_}.slice"
  mkdir -p "$dir"; echo $((100000 + i)) > "$dir/cgroup.threads"
  items="${items:+$items,}{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p$i\",\"namespace\":\"acme-prod\",\"uid\":\"$uid\"}}"
  t0=$(date +%s%N)
  echo "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[$items]}" > "$root/pods.json"
  until grep -qx $((100000 + i)) "$group/tasks" 2>/dev/null; do sleep 0.005; done
  lat+=($(( ($(date +%s%N) - t0) / 1000000 )))
done
printf '%s\n' "${lat[@]}" | sort -n | awk -v n="$n" '{a[NR]=$1} END {printf "pod start to threads placed, %d pods: median %d ms, p90 %d ms, max %d ms (target: within 1000 ms)\n", n, a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[NR]}'
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=""
# In cluster mode, against a stand-in API server (bench/mock-apiserver.py): the kube client, the node's pod
# watch, the tenancy watch and a round of Node updates every 2 s.
port=18443
python3 bench/mock-apiserver.py "$port" & api=$!
printf 'apiVersion: v1\nkind: Config\nclusters: [{name: m, cluster: {server: "http://127.0.0.1:%s"}}]\nusers: [{name: m, user: {}}]\ncontexts: [{name: m, context: {cluster: m, user: m}}]\ncurrent-context: m\n' "$port" > "$root/kubeconfig"
mkdir -p "$root/cluster-node" && cp -a "$root"/dev "$root"/etc "$root"/opt "$root"/var "$root"/proc "$root"/sys "$root/tenants.yaml" "$root/cluster-node/"
sleep 0.5
KUBECONFIG="$root/kubeconfig" MIMALLOC_ARENA_EAGER_COMMIT=0 "$bin" serve node --node bench --host-root "$root/cluster-node" --interval 2 \
  --cgroup-root "$root/cluster-node/sys/fs/cgroup" --metrics-listen 127.0.0.1:0 2>"$root/cluster.log" & cpid=$!
sleep 8
crss=$(awk '/VmRSS/ {print $2}' "/proc/$cpid/status")
grep -q "node agent running" "$root/cluster.log" || { echo "the agent did not start:" >&2; cat "$root/cluster.log" >&2; }
kill "$cpid" "$api" 2>/dev/null; wait "$cpid" 2>/dev/null || true
echo "idle RSS in cluster mode (kube client, pod and tenancy watches, Node updates every 2 s): $((crss / 1024)).$(( (crss % 1024) * 10 / 1024 )) MiB ($crss KiB)"
