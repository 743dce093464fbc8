//! AlertLayer overhead per call against a bare service, in the same run, with the price of
//! one clock read for reference. The cases are built by `support/alert_cases.rs`; their heap
//! allocations per call are counted by `cargo bench --bench allocs` (this binary runs on the
//! system allocator).
//!
//! `cargo bench --bench alert -- --warm-up-time 1 --measurement-time 3`

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/visit.rs"]
mod visit;

#[path = "support/alert_cases.rs"]
mod alert_cases;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("alert_layer");
    alert_cases::cases(&mut g);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
