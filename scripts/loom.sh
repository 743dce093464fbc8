#!/usr/bin/env bash
# Model-checks the lock-free pieces with loom (tests/loom.rs). Uses its own target dir so the
# cfg flag does not invalidate normal builds. LOOM_MAX_PREEMPTIONS bounds the search. A debug
# build: from cold it takes about 3 minutes on 2 cores (models ~25 s), half the time of --release.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg tower_pressure_loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
start=$(date +%s)
cargo test --test loom -- --test-threads=2 "$@"
echo "loom: models passed in $(( $(date +%s) - start ))s (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
