#!/usr/bin/env bash
# Times `kubebid check` over the whole Pod Security Admission corpus (4,537 fixture files), release build,
# warm page cache. Prints the best and median wall time of N runs and the files/s they mean.
#
#   bench/check-corpus.sh [runs]        (default 10)
#
# The engine alone (no file reading or YAML) is measured by: cargo bench -p kubebid-policy --bench engine
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
corpus=crates/kubebid-policy/tests/data/psa/testdata
[ -d "$corpus" ] || { echo "no PSA corpus at $corpus" >&2; exit 2; }
cargo build --release -q -p kubebid
bin=target/release/kubebid
files=$(find "$corpus" -name '*.yaml' | wc -l)

run_once() {
    local start end
    start=$(date +%s%N)
    # Exit status 1 is expected: half the corpus are failing fixtures.
    "$bin" check --profile restricted -o json "$corpus" >/dev/null || [ $? -eq 1 ]
    end=$(date +%s%N)
    echo $(( (end - start) / 1000 ))
}

run_once >/dev/null # warm the page cache
times=()
for _ in $(seq "$runs"); do times+=("$(run_once)"); done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
best=${sorted[0]}
median=${sorted[$(( runs / 2 ))]}
objects=$("$bin" check --profile restricted -o json "$corpus" | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["objects"])' || true)
printf 'kubebid check over the PSA corpus: %d files, %s objects, %d runs\n' "$files" "$objects" "$runs"
awk -v b="$best" -v m="$median" -v f="$files" 'BEGIN {
    printf "  best   %8.1f ms  (%.0f files/s)\n", b / 1000, f * 1e6 / b
    printf "  median %8.1f ms  (%.0f files/s)\n", m / 1000, f * 1e6 / m
}'
printf '  target < 1000 ms: %s\n' "$([ "$median" -lt 1000000 ] && echo met || echo MISSED)"
