//! Closed-state overhead of the circuit breaker against a bare service, tower's
//! `ConcurrencyLimit` and tower-resilience 0.13's circuit breaker, in the same run; single
//! thread and two threads. The services are built by `support/breaker_cases.rs`; their heap
//! allocations per call are counted by `cargo bench --bench allocs` (this binary runs on the
//! system allocator).
//!
//! `cargo bench --bench circuit_breaker -- --warm-up-time 1 --measurement-time 3`
//!
//! For deterministic instruction counts, `CB_CALLS=<n>` skips criterion and makes `n` closed
//! calls through the count-window breaker (plus `n` bare calls): run it under
//! `valgrind --tool=callgrind` with two values of `n` and divide the difference.

use std::time::{Duration, Instant};

use criterion::Criterion;
use tower::Service;

#[path = "support/visit.rs"]
mod visit;

#[path = "support/breaker_cases.rs"]
mod breaker_cases;
use breaker_cases::{bare, call, limit, ours, ours_time_window, resilience};

/// Two threads, each calling its own clone of `svc` (so sharing whatever state the clones
/// share) `iters` times; returns the slower thread's time: per call per thread.
fn two_threads<S: Service<u64> + Clone + Send + 'static>(svc: S, iters: u64) -> Duration {
    two_threads_with(|| svc.clone(), iters)
}

/// Two threads, each calling the service `make` gives it.
fn two_threads_with<S: Service<u64> + Send + 'static>(
    make: impl Fn() -> S,
    iters: u64,
) -> Duration {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let mut s = make();
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                let t = Instant::now();
                for i in 0..iters {
                    call(&mut s, i);
                }
                t.elapsed()
            })
        })
        .collect();
    hs.into_iter()
        .map(|h| h.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    // tower-resilience's layer needs a runtime context for its internals.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();

    let mut g = c.benchmark_group("closed_1_thread");
    breaker_cases::one_thread(&mut g);
    g.finish();

    let mut g = c.benchmark_group("closed_2_threads");
    g.bench_function("bare", |b| b.iter_custom(|n| two_threads(bare(), n)));
    let s = ours();
    g.bench_function("tower_pressure", |b| {
        b.iter_custom(|n| two_threads(s.clone(), n))
    });
    let s = ours_time_window();
    g.bench_function("tower_pressure_time_window", |b| {
        b.iter_custom(|n| two_threads(s.clone(), n))
    });
    // Each thread with its own breaker: what the two threads cost without sharing anything.
    g.bench_function("tower_pressure_unshared", |b| {
        b.iter_custom(|n| two_threads_with(ours, n))
    });
    let s = limit();
    g.bench_function("concurrency_limit", |b| {
        b.iter_custom(|n| two_threads(s.clone(), n))
    });
    let s = resilience();
    g.bench_function("tower_resilience", |b| {
        b.iter_custom(|n| two_threads(s.clone(), n))
    });
    g.finish();
}

mod group {
    criterion::criterion_group!(benches, super::bench);
}

fn main() {
    if let Some(n) = std::env::var("CB_CALLS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut s = ours();
        let mut b = bare();
        for i in 0..n {
            call(&mut s, i);
            call(&mut b, i);
        }
        return;
    }
    group::benches();
    Criterion::default().configure_from_args().final_summary();
}
