#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md in one go (about 13 minutes on 2 cores) and prints
# the tables with the ratios. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Criterion writes under the cargo target directory (CARGO_TARGET_DIR when set).
CRITERION_DIR=${CARGO_TARGET_DIR:-target}/criterion
rm -rf "$CRITERION_DIR"
cargo bench -p abacus-bench --bench peers --bench core --bench render --bench ordering "$@"
python3 crates/abacus-bench/report.py "$CRITERION_DIR"
# Two-thread scaling, with 1- and 2-thread runs interleaved (see src/bin/scaling.rs).
echo
echo "### Two-thread scaling (interleaved)"
cargo run -q --release -p abacus-bench --bin scaling
