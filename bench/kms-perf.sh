#!/usr/bin/env bash
# KMS plugin benchmark: `kubebid serve kms` (release build) with its root key in a SoftHSM2 token initialised
# here, driven over its unix socket by the kms_load example: 8 concurrent callers, each encrypting a 32-byte
# data key (what the API server sends) and decrypting the result, for $secs seconds. The callers share the
# machine's 2 cores with the plugin. Decrypts of a KEK the plugin has not seen go to the HSM once (counted in
# kubebid_kms_kek_unwraps_total); a restart is measured separately: the first decrypt after it. Then 1,000
# volume key wraps and unwraps of one tenant on the tenant key socket, one caller. The token holds the
# keys of $tenants tenants besides, as a multi-tenant cluster's would: calls must not slow down with them.
#
#   bench/kms-perf.sh [seconds] [tenants]     (defaults 10 and 200)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
tenants=${2:-200}
command -v softhsm2-util >/dev/null || { echo "bench/kms-perf.sh: softhsm2 is not installed (apt-get install softhsm2)" >&2; exit 2; }
cargo build --release -q -p kubebid
cargo build --release -q -p kubebid-kms --example kms_load
bin=target/release/kubebid
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf" KUBEBID_KMS_PIN=1234 KUBEBID_LOG=warn
softhsm2-util --init-token --free --label kubebid --pin 1234 --so-pin 5678 >/dev/null
"$bin" kms tenant-key create bench >/dev/null
for i in $(seq "$tenants"); do "$bin" kms tenant-key create "tenant-$i" >/dev/null; done
metrics_port=$(( 20000 + RANDOM % 20000 ))
"$bin" serve kms --socket "$work/kms.sock" --tenant-socket "$work/tenant-keys.sock" --metrics-listen "127.0.0.1:$metrics_port" &
pid=$!
for _ in $(seq 100); do [ -S "$work/kms.sock" ] && break; sleep 0.05; done
echo "== kms_load, $secs s, 8 callers over the unix socket, root key in SoftHSM2 $(dpkg-query -W -f='${Version}' softhsm2 2>/dev/null), $((tenants + 1)) tenant keys in the token"
KUBEBID_BENCH_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so target/release/examples/kms_load "$work/kms.sock" "$secs" 8 "$work/tenant-keys.sock"
echo "HSM round trips (KEK unwraps) during the run: $(curl -s "127.0.0.1:$metrics_port/metrics" | awk '/^kubebid_kms_kek_unwraps_total/ {print $2}')"
rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
echo "plugin RSS after the run: $rss MiB"
