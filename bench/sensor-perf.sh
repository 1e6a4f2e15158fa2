#!/usr/bin/env bash
# Node sensor benchmark, as root: the syscall_loop example with `kubebid serve sensor` off and on,
# interleaved in each round, in the same run:
#   1. getpid and open/close of /dev/null (calls no rule needs), 2,000,000 each;
#   2. an exec loop (fork + exec of /bin/true, as fast as one caller goes), with the sensor's lost count;
# three ways: KubeBid's exec-tier rules alone (no rule needs a system call: only sched_process_exec is
# attached); with Falco's upstream rules file too (some of its rules need ptrace, setuid and module
# loading, so the sensor goes on the kernel's system call tracepoints); and with KubeBid's system call
# tier added (`--syscall-rules`).
#
#   bench/sensor-perf.sh [rounds]     (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
[ "$(id -u)" = 0 ] || { echo "bench/sensor-perf.sh: run as root (the sensor loads BPF programs)" >&2; exit 2; }
cargo build --release -q -p kubebid
cargo build --release -q -p kubebid-sensor --example syscall_loop
bin=target/release/kubebid
loop=target/release/examples/syscall_loop
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
printf 'apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec: {namespaces: [acme-prod]}\n' > "$work/t.yaml"

start() {
  KUBEBID_LOG=info "$bin" serve sensor -c "$work/t.yaml" --alerts "$work/alerts.jsonl" "$@" 2>"$work/sensor.log" &
  pid=$!
  for _ in $(seq 100); do grep -q "sensor running" "$work/sensor.log" 2>/dev/null && return; sleep 0.1; done
  echo "the sensor did not start:" >&2; cat "$work/sensor.log" >&2; exit 1
}
stop() {
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  grep -o '"events":[0-9]*,"alerts":[0-9]*,"malformed":[0-9]*,"lost":[0-9]*' "$work/sensor.log" | tail -1
}
ns() { "$loop" "$1" "$2" | awk '{print $2}'; }

declare -A off on
run_tier() {
  local tier=$1; shift
  for r in $(seq "$rounds"); do
    for m in getpid openclose exec; do
      n=2000000; [ "$m" = exec ] && n=2000
      off["$tier|$m"]+="$(ns "$m" "$n") "
      start "$@"
      on["$tier|$m"]+="$(ns "$m" "$n") "
      echo "round $r $tier $m: sensor $(stop)"
    done
  done
}
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
falco=crates/kubebid-rules/tests/data/falco_rules.yaml
run_tier exec-tier
run_tier with-falco --rules "$falco"
run_tier syscall-tier --rules "$falco" --syscall-rules
echo
printf '%-14s %-10s %14s %14s %9s\n' rules loop "off ns/op" "on ns/op" slower
for tier in exec-tier with-falco syscall-tier; do
  for m in getpid openclose exec; do
    a=$(median <<<"${off["$tier|$m"]}"); b=$(median <<<"${on["$tier|$m"]}")
    awk -v t="$tier" -v m="$m" -v a="$a" -v b="$b" 'BEGIN { printf "%-14s %-10s %14.1f %14.1f %8.1f%%\n", t, m, a, b, (b / a - 1) * 100 }'
  done
done
echo "(medians of $rounds rounds; each 'on' run has the sensor started fresh; the lost counts are above)"
