#!/usr/bin/env bash
# Long fuzzing runs, for what CI's 30 s per target cannot find.
#
#   fuzz/run-long.sh [HOURS]        # or HOURS=4 fuzz/run-long.sh
#
# Every target of `cargo fuzz list` in turn (TARGETS="query tcp_framing"
# narrows them), HOURS in all (default 4, fractions allowed) split evenly,
# each in libFuzzer's fork mode with JOBS processes (default: one per
# core) that keep going after a crash. Each target fuzzes a copy of its
# corpus in a temporary directory (KEEP_CORPUS=1 keeps it, for `cargo fuzz
# cmin` into fuzz/corpus), so the tree only gains crash files, in
# fuzz/artifacts/<target>/ (git-ignored). A crash is fixed at its root and
# its file added to fuzz/corpus/<target>/, which `cargo test` replays.
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Prints the executions and the crash files per target at the end; exits 1
# when any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
hours=${1:-${HOURS:-4}}
jobs=${JOBS:-$(nproc)}
targets=${TARGETS:-$(cargo +nightly fuzz list --fuzz-dir fuzz)}
count=$(wc -w <<<"$targets")
secs=$(awk -v h="$hours" -v n="$count" 'BEGIN { s = int(h * 3600 / n); print (s < 1 ? 1 : s) }')

cargo +nightly fuzz build --fuzz-dir fuzz
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin=$repo/fuzz/target/$host/release

work=$(mktemp -d)
if [ -z "${KEEP_CORPUS:-}" ]; then
    trap 'rm -rf "$work"' EXIT
fi
echo "fuzzing $count targets for ${secs} s each with $jobs processes; work in $work"

summary=()
crashed=0
for t in $targets; do
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    cp "fuzz/corpus/$t"/* "$work/$t"/
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    log=$work/$t.log
    echo "=== $t: $(date -u +%H:%M:%S) for ${secs} s, log $log"
    # Fork mode runs the target in child processes over corpus subsets
    # and merges what they find; -ignore_crashes (and the OOM and timeout
    # twins) keep it going after a failure, whose input is still saved.
    (cd "$work" && "$bin/$t" "$work/$t" "$repo/fuzz/corpus/$t" \
        -fork="$jobs" -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
        -max_total_time="$secs" -artifact_prefix="$repo/fuzz/artifacts/$t/" \
        -print_final_stats=1) >"$log" 2>&1 || true
    # The fork mode's status lines start with "#<total executions>:".
    execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    found=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - before))
    [ "$found" -eq 0 ] || crashed=1
    summary+=("$(printf '%-12s %12s executions  %d new crash files' "$t" "${execs:-?}" "$found")")
done

echo
echo "=== executions per target ($secs s each, $jobs processes)"
printf '%s\n' "${summary[@]}"
[ "$crashed" -eq 0 ] || echo "crash inputs are in fuzz/artifacts/<target>/"
exit "$crashed"
