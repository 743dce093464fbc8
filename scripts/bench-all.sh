#!/usr/bin/env bash
# Runs every criterion bench back to back with the short settings BENCHMARKS.md quotes and
# keeps each bench's printed summary in target/bench/<name>.txt. Run it on a quiet machine:
# the medians move with load, the ratios within one bench much less.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
for b in stack degradation circuit_breaker retry alert concurrency quota; do
  echo "== $b"
  cargo bench --bench "$b" -- --warm-up-time 1 --measurement-time 3 2>&1 \
    | tee "target/bench/$b.log" \
    | sed -n '/^summary\|^| \|^allocations\|^one clock\|^ratio\|^overhead\|^two threads\|^2 threads/p'
done
