//! Overhead of RetryLayer on a successful first attempt, against a bare service and against
//! tower's own `Retry` with a never-retry policy, in the same run. Also allocations per call.
//!
//! `cargo bench --bench retry -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::alloc::System;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tower::{Layer, Service, service_fn};
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::retry::RetryLayer;

// Counts allocations (stats_alloc: the crate forbids `unsafe`, so no hand-written allocator).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type Req = http::Request<()>;

/// tower's `Retry` with a policy that keeps a copy of the request (as any replaying policy
/// must) and never retries.
#[derive(Clone)]
struct NeverRetry;

impl<Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = std::future::Ready<()>;
    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// Polls a future that is ready at once (the inner service answers immediately).
fn run<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the benched services answer at once"),
    }
}

fn call<S: Service<Req>>(svc: &mut S) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => unreachable!("always ready"),
    }
    run(svc.call(black_box(http::Request::new(()))))
}

fn allocs_per_call<S: Service<Req>>(svc: &mut S) -> f64 {
    const N: u64 = 10_000;
    let before = GLOBAL.stats().allocations;
    for _ in 0..N {
        let _ = black_box(call(svc));
    }
    (GLOBAL.stats().allocations - before) as f64 / N as f64
}

fn bench(c: &mut Criterion) {
    // No runtime is entered: with tokio's `test-util` feature (unified in from the
    // dev-dependencies) `Instant::now()` inside a runtime takes the mock clock's mutex, which
    // production builds never do. Outside a runtime it is the plain monotonic clock.
    let (monitor, _manual) = PressureMonitor::manual();
    let inner = service_fn(|_: Req| std::future::ready(Ok::<_, std::convert::Infallible>(200u16)));

    let mut bare = inner;
    let mut tower_retry = tower::retry::RetryLayer::new(NeverRetry).layer(inner);
    let mut ours = RetryLayer::new(monitor.clone()).layer(inner);
    let mut ours_no_budget = RetryLayer::builder(monitor.clone())
        .no_budget()
        .build()
        .unwrap()
        .layer(inner);
    #[cfg(feature = "http")]
    let mut ours_http = {
        let inner = service_fn(|_: Req| {
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
        });
        RetryLayer::http(monitor.clone())
            .build()
            .unwrap()
            .layer(inner)
    };

    let mut g = c.benchmark_group("retry_success_first_attempt");
    g.bench_function("bare", |b| b.iter(|| call(&mut bare)));
    g.bench_function("tower_retry_never", |b| b.iter(|| call(&mut tower_retry)));
    g.bench_function("retry_layer", |b| b.iter(|| call(&mut ours)));
    g.bench_function("retry_layer_no_budget", |b| {
        b.iter(|| call(&mut ours_no_budget))
    });
    #[cfg(feature = "http")]
    g.bench_function("retry_layer_http", |b| b.iter(|| call(&mut ours_http)));
    g.finish();

    println!("allocations per call:");
    println!("  bare                  {:.2}", allocs_per_call(&mut bare));
    println!(
        "  tower_retry_never     {:.2}",
        allocs_per_call(&mut tower_retry)
    );
    println!("  retry_layer           {:.2}", allocs_per_call(&mut ours));
    println!(
        "  retry_layer_no_budget {:.2}",
        allocs_per_call(&mut ours_no_budget)
    );
    #[cfg(feature = "http")]
    println!(
        "  retry_layer_http      {:.2}",
        allocs_per_call(&mut ours_http)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
