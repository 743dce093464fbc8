//! Cost of the degradation layer and of reading the monitor, as ratios against a bare
//! `service_fn` measured in the same run.
//!
//! ```text
//! cargo bench --bench degradation -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The monitor comes from `PressureMonitor::manual()`: no system sources and no sampler task,
//! so the numbers do not depend on the machine's load. After the criterion run the medians are
//! read back from criterion's estimates and printed as ratios. The cases are built by
//! `support/degradation_cases.rs`; their heap allocations per call are counted by
//! `cargo bench --bench allocs` (this binary runs on the system allocator).

use criterion::Criterion;

#[path = "support/mod.rs"]
mod support;
use support::median_ns;

#[path = "support/visit.rs"]
mod visit;

#[path = "support/degradation_cases.rs"]
mod degradation_cases;

const GROUP: &str = "degradation";

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    degradation_cases::cases(&mut g);
    g.finish();
}

fn print_ratios() {
    let Some(base) = median_ns(GROUP, "bare") else {
        println!("(no criterion estimates found: ratios skipped)");
        return;
    };
    println!("\nmedians vs bare service_fn ({base:.2} ns):");
    for id in [
        "bare",
        "layer_normal",
        "layer_critical",
        "monitor_level",
        "monitor_snapshot",
    ] {
        if let Some(ns) = median_ns(GROUP, id) {
            println!("  {id:<18} {ns:>9.2} ns   x{:.2}", ns / base);
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    print_ratios();
}
