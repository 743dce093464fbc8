#!/usr/bin/env bash
# Runs every criterion bench back to back with the short settings BENCHMARKS.md quotes, then
# the allocation counts (`benches/allocs.rs`, the only bench binary with a counting global
# allocator, so the timing benches run on the system allocator). Keeps each bench's full
# output in target/bench/<name>.log and prints its summary lines. Run it on a quiet machine:
# the medians move with load, the ratios within one bench much less; the allocation counts
# do not depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
for b in stack degradation circuit_breaker retry alert concurrency quota; do
  echo "== $b"
  cargo bench --bench "$b" -- --warm-up-time 1 --measurement-time 3 2>&1 \
    | tee "target/bench/$b.log" \
    | sed -n '/^summary\|^| \|^one clock\|^ratio\|^overhead\|^two threads\|^2 threads\|^medians\|^interleaved\|^what each\|^  [A-Za-z]/p'
done
echo "== allocs"
cargo bench --bench allocs 2>&1 \
  | tee target/bench/allocs.log \
  | sed -n '/^heap\|^stack:\|^per layer:\|^| /p'
