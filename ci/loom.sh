#!/usr/bin/env bash
# Model-checks the custom synchronisation protocols (shard hand-over, retirement of evicted
# cells) with loom. Each model is small (2-3 threads, a few operations), so the full state
# space is explored in well under a minute in release mode; LOOM_MAX_PREEMPTIONS bounds it
# further if a model grows.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="--cfg loom" cargo test -p abacus --lib --release loom -- --test-threads=1
