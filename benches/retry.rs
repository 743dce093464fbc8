//! Overhead of RetryLayer on a successful first attempt, against a bare service and against
//! tower's own `Retry` with a never-retry policy, in the same run. The services are built by
//! `support/retry_cases.rs`; their heap allocations per call are counted by
//! `cargo bench --bench allocs` (this binary runs on the system allocator).
//!
//! `cargo bench --bench retry -- --warm-up-time 1 --measurement-time 3`
//!
//! Instruction counts (deterministic on a loaded machine): with `RETRY_BENCH_LOOP=<name>:<n>`
//! the binary makes `n` calls of one service (`bare`, `tower`, `tower_budgeted`, `floor`, `ours`, `no_budget`, `http`)
//! and exits, e.g. under `valgrind --tool=callgrind`; the difference between two runs divided
//! by the difference of their `n` is the cost of one call.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use tower::Service;

#[path = "support/visit.rs"]
mod visit;

#[macro_use]
#[path = "support/retry_cases.rs"]
mod retry_cases;
use retry_cases::{Req, call};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ns per call of `a` and of `b`, and the median of the per-round ratios `b / a`,
/// over rounds that alternate which service goes first.
fn interleaved<A: Service<Req>, B: Service<Req>>(a: &mut A, b: &mut B) -> (f64, f64, f64) {
    const ROUNDS: usize = 200;
    const CALLS: u32 = 20_000;
    fn batch<S: Service<Req>>(svc: &mut S) -> f64 {
        let start = std::time::Instant::now();
        for _ in 0..CALLS {
            let _ = black_box(call(svc));
        }
        start.elapsed().as_nanos() as f64 / f64::from(CALLS)
    }
    let (mut ta, mut tb, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (x, y) = if round % 2 == 0 {
            let x = batch(a);
            (x, batch(b))
        } else {
            let y = batch(b);
            (batch(a), y)
        };
        ta.push(x);
        tb.push(y);
        ratio.push(y / x);
    }
    (median(&mut ta), median(&mut tb), median(&mut ratio))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("retry_success_first_attempt");
    retry_cases::cases(&mut g);
    g.finish();

    // Criterion measures one function after the other: on a shared, loaded machine the load
    // changes between them. Alternating short batches of two services and taking the median
    // of the per-round ratios compares them under the same load.
    println!("interleaved medians (200 rounds of 20 000 calls each, order alternating):");
    let [(t, o, r), (tn, n, rn), (tf, f, rf), (tb, b, rb)] = interleaved_vs_tower();
    println!("  tower_retry_never {t:.1} ns, retry_layer {o:.1} ns, ratio {r:.3}");
    println!("  tower_retry_never {tn:.1} ns, retry_layer_no_budget {n:.1} ns, ratio {rn:.3}");
    println!("  tower_retry_never {tf:.1} ns, floor_arc_and_count {f:.1} ns, ratio {rf:.3}");
    println!("  tower_retry_budgeted {tb:.1} ns, retry_layer {b:.1} ns, ratio {rb:.3}");
}

/// [`interleaved`] of tower's `Retry` against ours, then against ours without a budget, on
/// fresh services.
///
/// Then the floor any shared-state retry pays against tower's never-retry `Retry`, and ours
/// against tower's `Retry` with its own `TpsBudget`.
fn interleaved_vs_tower() -> [(f64, f64, f64); 4] {
    services!(
        bare,
        tower_retry,
        tower_budgeted,
        shared_floor,
        ours,
        ours_no_budget,
        ours_http
    );
    let _ = &mut bare;
    #[cfg(feature = "http")]
    let _ = &mut ours_http;
    [
        interleaved(&mut tower_retry, &mut ours),
        interleaved(&mut tower_retry, &mut ours_no_budget),
        interleaved(&mut tower_retry, &mut shared_floor),
        interleaved(&mut tower_budgeted, &mut ours),
    ]
}

/// `n` calls of `svc` (for instruction counting).
fn repeat<S: Service<Req>>(svc: &mut S, n: u64) {
    for _ in 0..n {
        let _ = black_box(call(svc));
    }
}

/// The size of the future `svc.call` returns: it is moved at least once per call.
fn future_size<S: Service<Req>>(svc: &mut S) -> usize {
    std::mem::size_of_val(&svc.call(http::Request::new(())))
}

fn loop_mode(spec: &str) {
    if spec == "ratio" {
        let [(t, o, r), (tn, n, rn), (tf, f, rf), (tb, b, rb)] = interleaved_vs_tower();
        println!("tower {t:.1} ns, ours {o:.1} ns, ratio {r:.3}");
        println!("tower {tn:.1} ns, no_budget {n:.1} ns, ratio {rn:.3}");
        println!("tower {tf:.1} ns, floor {f:.1} ns, ratio {rf:.3}");
        println!("tower budgeted {tb:.1} ns, ours {b:.1} ns, ratio {rb:.3}");
        return;
    }
    if spec == "sizes" {
        services!(
            bare,
            tower_retry,
            tower_budgeted,
            shared_floor,
            ours,
            ours_no_budget,
            ours_http
        );
        println!("request {} bytes", std::mem::size_of::<Req>());
        println!("future of bare   {} bytes", future_size(&mut bare));
        println!("future of tower  {} bytes", future_size(&mut tower_retry));
        println!("future of ours   {} bytes", future_size(&mut ours));
        println!(
            "future of no_budget {} bytes",
            future_size(&mut ours_no_budget)
        );
        #[cfg(feature = "http")]
        println!("future of http   {} bytes", future_size(&mut ours_http));
        return;
    }
    let (name, n) = spec.split_once(':').expect("RETRY_BENCH_LOOP=<name>:<n>");
    let n: u64 = n.parse().expect("a count");
    services!(
        bare,
        tower_retry,
        tower_budgeted,
        shared_floor,
        ours,
        ours_no_budget,
        ours_http
    );
    match name {
        "bare" => repeat(&mut bare, n),
        "tower" => repeat(&mut tower_retry, n),
        "tower_budgeted" => repeat(&mut tower_budgeted, n),
        "floor" => repeat(&mut shared_floor, n),
        "ours" => repeat(&mut ours, n),
        "no_budget" => repeat(&mut ours_no_budget, n),
        #[cfg(feature = "http")]
        "http" => repeat(&mut ours_http, n),
        other => panic!("unknown service {other}"),
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("RETRY_BENCH_LOOP") {
        loop_mode(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
