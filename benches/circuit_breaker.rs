//! Closed-state overhead of the circuit breaker against a bare service, tower's
//! `ConcurrencyLimit` and tower-resilience 0.13's circuit breaker, in the same run; single
//! thread and two threads; plus heap allocations per call (counting global allocator).
//!
//! `cargo bench --bench circuit_breaker -- --warm-up-time 1 --measurement-time 3`
//!
//! For deterministic instruction counts, `CB_CALLS=<n>` skips criterion and makes `n` closed
//! calls through the count-window breaker (plus `n` bare calls): run it under
//! `valgrind --tool=callgrind` with two values of `n` and divide the difference.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Service, ServiceBuilder, service_fn};
use tower_pressure::circuit_breaker::CircuitBreakerLayer;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Polls to completion with a no-op waker (every service here is ready at once or spins).
fn block<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

fn call<S: Service<u64>>(svc: &mut S, i: u64) {
    let mut cx = Context::from_waker(Waker::noop());
    while svc.poll_ready(&mut cx).is_pending() {}
    let _ = black_box(block(svc.call(black_box(i))));
}

type Bare =
    tower::util::ServiceFn<fn(u64) -> std::future::Ready<Result<u64, std::convert::Infallible>>>;

fn ready_ok(x: u64) -> std::future::Ready<Result<u64, std::convert::Infallible>> {
    std::future::ready(Ok(x))
}

fn bare() -> Bare {
    service_fn(ready_ok as fn(u64) -> _)
}

fn ours() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    let layer = CircuitBreakerLayer::builder().build().expect("valid");
    ServiceBuilder::new().layer(layer).service(bare())
}

fn ours_time_window() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    let layer = CircuitBreakerLayer::builder()
        .time_window(60)
        .build()
        .expect("valid");
    ServiceBuilder::new().layer(layer).service(bare())
}

fn limit() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    ServiceBuilder::new()
        .concurrency_limit(1_000_000)
        .service(bare())
}

fn resilience() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .expect("valid");
    ServiceBuilder::new().layer(layer).service(bare())
}

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

fn allocs_per_call<S: Service<u64>>(mut svc: S) -> f64 {
    for i in 0..1000 {
        call(&mut svc, i);
    }
    let region = Region::new(GLOBAL);
    const N: u64 = 10_000;
    for i in 0..N {
        call(&mut svc, i);
    }
    region.change().allocations as f64 / N as f64
}

fn bench(c: &mut Criterion) {
    // tower-resilience's layer needs a runtime context for its internals.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();

    println!(
        "allocations per call: bare {:.2}, tower-pressure {:.2}, tower-pressure time window {:.2}, ConcurrencyLimit {:.2}, tower-resilience {:.2}",
        allocs_per_call(bare()),
        allocs_per_call(ours()),
        allocs_per_call(ours_time_window()),
        allocs_per_call(limit()),
        allocs_per_call(resilience()),
    );

    let mut g = c.benchmark_group("closed_1_thread");
    let mut s = bare();
    g.bench_function("bare", |b| b.iter(|| call(&mut s, 1)));
    let mut s = ours();
    g.bench_function("tower_pressure", |b| b.iter(|| call(&mut s, 1)));
    let mut s = ours_time_window();
    g.bench_function("tower_pressure_time_window", |b| b.iter(|| call(&mut s, 1)));
    let mut s = limit();
    g.bench_function("concurrency_limit", |b| b.iter(|| call(&mut s, 1)));
    let mut s = resilience();
    g.bench_function("tower_resilience", |b| b.iter(|| call(&mut s, 1)));
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
