//! Admission overhead of the adaptive concurrency layer, against a bare service, tower's
//! `ConcurrencyLimit` and tower-resilience 0.13's `AdaptiveLimiter`, in the same run:
//! single-threaded and with two threads calling one shared limiter. Also counts heap
//! allocations per call with a counting global allocator.
//!
//! `cargo bench --bench concurrency -- --warm-up-time 1 --measurement-time 3`

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_main};
use tower::{Layer, Service, service_fn};
use tower_pressure::Priority;
use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
use tower_pressure::concurrency::limit::Gradient2;
use tower_pressure::pressure::PressureMonitor;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocations() -> u64 {
    GLOBAL.stats().allocations as u64
}

/// One request through `svc`: poll_ready, call, poll the response to completion.
#[inline]
fn one<S: Service<u32>>(svc: &mut S, cx: &mut Context<'_>) {
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("not ready"),
    }
    let fut = pin!(svc.call(black_box(7)));
    match fut.poll(cx) {
        Poll::Ready(r) => {
            let _ = black_box(r.is_ok());
        }
        Poll::Pending => panic!("pending"),
    }
}

fn bare() -> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone + Send {
    service_fn(|x: u32| std::future::ready(Ok::<_, Infallible>(x)))
}

fn ours() -> impl Service<u32, Response = u32, Future: Send> + Clone + Send {
    let (monitor, _m) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(Gradient2::builder().initial_limit(100).build().unwrap())
        .classifier(|_: &u32| Priority::Normal)
        .build()
        .unwrap();
    layer.layer(bare())
}

fn tower_limit() -> impl Service<u32, Response = u32, Future: Send> + Clone + Send {
    tower::limit::ConcurrencyLimitLayer::new(100).layer(bare())
}

fn resilience() -> impl Service<u32, Response = u32, Future: Send> + Clone + Send {
    use tower_resilience::adaptive::{AdaptiveLimiterLayer, Aimd};
    let algo = Aimd::builder()
        .initial_limit(100)
        .max_limit(1000)
        .latency_threshold(Duration::from_millis(100))
        .build()
        .unwrap();
    AdaptiveLimiterLayer::new(algo).layer(bare())
}

fn allocs_per_call<S: Service<u32>>(mut svc: S) -> f64 {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100 {
        one(&mut svc, &mut cx);
    }
    let n = 10_000;
    let before = allocations();
    for _ in 0..n {
        one(&mut svc, &mut cx);
    }
    (allocations() - before) as f64 / n as f64
}

/// Two threads, each with its own clone of one service (one shared limiter), each doing
/// `iters` calls; returns the elapsed time of the slower thread.
fn two_threads<S>(svc: S, iters: u64) -> Duration
where
    S: Service<u32> + Clone + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let mut svc = svc.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                barrier.wait();
                let t = Instant::now();
                for _ in 0..iters {
                    one(&mut svc, &mut cx);
                }
                t.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    println!(
        "allocations per call: bare {:.2}, adaptive (ours) {:.2}, tower ConcurrencyLimit {:.2}, tower-resilience AdaptiveLimiter {:.2}",
        allocs_per_call(bare()),
        allocs_per_call(ours()),
        allocs_per_call(tower_limit()),
        allocs_per_call(resilience()),
    );

    let mut g = c.benchmark_group("admission/1-thread");
    macro_rules! single {
        ($name:literal, $svc:expr) => {
            g.bench_function($name, |b| {
                let mut svc = $svc;
                let mut cx = Context::from_waker(Waker::noop());
                b.iter(|| one(&mut svc, &mut cx));
            });
        };
    }
    single!("bare", bare());
    single!("adaptive (ours)", ours());
    single!("tower ConcurrencyLimit", tower_limit());
    single!("tower-resilience AdaptiveLimiter", resilience());
    g.finish();

    let mut g = c.benchmark_group("admission/2-threads");
    g.bench_function("bare", |b| b.iter_custom(|n| two_threads(bare(), n)));
    g.bench_function("adaptive (ours)", |b| {
        b.iter_custom(|n| two_threads(ours(), n))
    });
    g.bench_function("tower ConcurrencyLimit", |b| {
        b.iter_custom(|n| two_threads(tower_limit(), n))
    });
    g.bench_function("tower-resilience AdaptiveLimiter", |b| {
        b.iter_custom(|n| two_threads(resilience(), n))
    });
    g.finish();
}

mod harness {
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(harness::benches);
