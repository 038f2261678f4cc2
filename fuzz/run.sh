#!/usr/bin/env bash
# Builds every fuzz target with the nightly toolchain and runs each for a fixed budget, seeded from
# the repository's fixtures. Prints, per target, the executions, the rate and what was found.
#
#   fuzz/run.sh                     every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh    a longer budget
#   fuzz/run.sh config proc_cpu     only these targets
#
# Needs `cargo install cargo-fuzz` and a nightly toolchain (`rustup toolchain install nightly`).
# A crash leaves its input in fuzz/artifacts/<target>/; replay it with
# `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>`.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
# Each input may take at most this many seconds and this much memory before it counts as a hang
# or a leak.
timeout=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-512}

cargo +nightly fuzz build
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Seeds and the file trees the /proc targets write go to a scratch directory, in memory by default.
scratch=$(mktemp -d "${FUZZ_TMPDIR:-/dev/shm}/pipit-fuzz.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 seeds.py "$scratch/seeds"

status=0
printf '%-18s %12s %10s %s\n' target execs execs/s result
for target in "${targets[@]}"; do
    corpus=corpus/$target
    mkdir -p "$corpus" "artifacts/$target" "$scratch/tmp"
    seeds=()
    [ -d "$scratch/seeds/$target" ] && seeds=("$scratch/seeds/$target")
    log=$scratch/$target.log
    result=ok
    if ! TMPDIR=$scratch/tmp cargo +nightly fuzz run "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss_mb" \
        -print_final_stats=1 >"$log" 2>&1; then
        result="FOUND: $(grep -m1 -oE '(panicked at|ERROR: libFuzzer: |SUMMARY: ).*' "$log" || echo 'see log')"
        result+=" (input: $(grep -m1 -oE 'Test unit written to .*' "$log" | sed 's/.*fuzz\///' || echo '?'))"
        cp "$log" "artifacts/$target/last.log"
        status=1
    fi
    execs=$(grep -m1 -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    elapsed=$(grep -m1 -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+' || echo "$seconds")
    printf '%-18s %12s %10s %s\n' "$target" "$execs" "$((execs / (elapsed > 0 ? elapsed : 1)))" "$result"
    rm -rf "$scratch/tmp"
done
exit $status
