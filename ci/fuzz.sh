#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) for SECONDS_PER_TARGET seconds each (default 30) and
# prints target / execs / execs/s / corpus / crashes. Exits non-zero if any target crashed
# (the crashing input is left in fuzz/artifacts/<target>/ and printed).
#
# Self-installing: `cargo install cargo-fuzz --locked` if absent. Stable toolchain only:
# RUSTC_BOOTSTRAP=1 lets stable rustc take cargo-fuzz's -Z flags, and the sanitizer is off
# (`-s none`): all our code is safe Rust, so AddressSanitizer would add cost, not findings.
#
# Environment: CARGO_TARGET_DIR (default fuzz/target), FUZZ_TARGETS (space-separated subset).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
case "$secs" in '' | *[!0-9]*) echo "usage: ci/fuzz.sh [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac

export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/fuzz/target}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$CARGO_TARGET_DIR/$triple/release"

targets="${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir fuzz)}"

start=$SECONDS
echo "building fuzz targets (sanitizer off, debug assertions on)"
cargo fuzz build --fuzz-dir fuzz -s none --debug-assertions
echo "build took $((SECONDS - start)) s"

failed=0
rows=()
for t in $targets; do
    run_corpus="fuzz/corpus-run/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$run_corpus" "$artifacts"
    log="fuzz/artifacts/$t.log"
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
    # New inputs go to the run corpus (first dir, gitignored); the seeds are read only.
    set +e
    "$bin_dir/$t" "$run_corpus" "fuzz/corpus/$t" "${dict[@]}" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
    rc=$?
    set -e
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    corpus="$(ls "$run_corpus" | wc -l)"
    crashes="$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        echo "=== $t FAILED (exit $rc); last lines of $log:"
        tail -40 "$log"
        find "$artifacts" -type f -print
    fi
    rows+=("$(printf '%-15s %12s %9s %8s %8s' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes")")
done

printf '\n%-15s %12s %9s %8s %8s\n' target execs execs/s corpus crashes
printf '%s\n' "${rows[@]}"
echo "total $((SECONDS - start)) s, $secs s per target"
exit "$failed"
