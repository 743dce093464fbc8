//! AlertLayer overhead per call against a bare service, in the same run, plus allocations
//! per call counted by a global allocator.
//!
//! `cargo bench --bench alert -- --warm-up-time 1 --measurement-time 3`

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::alloc::System;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tower::{Layer, Service};
use tower_pressure::alert::AlertLayer;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn allocations() -> u64 {
    GLOBAL.stats().allocations as u64
}

#[derive(Clone, Copy)]
struct Bare;

impl Service<u64> for Bare {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, x: u64) -> Self::Future {
        ready(Ok(x))
    }
}

#[inline(always)]
fn once<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, x: u64) {
    let _ = svc.poll_ready(cx);
    let fut = pin!(svc.call(x));
    black_box(fut.poll(cx).is_ready());
}

fn allocs_per_call<S: Service<u64>>(svc: &mut S) -> f64 {
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..1000 {
        once(svc, &mut cx, i);
    }
    let before = allocations();
    for i in 0..100_000 {
        once(svc, &mut cx, i);
    }
    (allocations() - before) as f64 / 100_000.0
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("alert_layer");
    let mut cx = Context::from_waker(Waker::noop());

    let mut bare = Bare;
    g.bench_function("bare", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            once(&mut bare, &mut cx, i)
        })
    });

    let mut observed = AlertLayer::new("bench").layer(Bare);
    g.bench_function("alert_layer", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            once(&mut observed, &mut cx, i)
        })
    });

    let keyed_layer = AlertLayer::new("bench-keyed");
    let keys = ["D3-Q3", "D4-Q2", "D2-Q3", "D1-Q1"];
    let mut keyed = keyed_layer
        .key_by(|x: &u64| Some(keys[(*x % 4) as usize]))
        .layer(Bare);
    g.bench_function("alert_layer_keyed", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            once(&mut keyed, &mut cx, i)
        })
    });
    g.bench_function("tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    g.bench_function("std_instant_now", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    g.finish();

    eprintln!(
        "allocations per call: bare {:.3}, alert_layer {:.3}, alert_layer_keyed {:.3}",
        allocs_per_call(&mut Bare),
        allocs_per_call(&mut AlertLayer::new("a").layer(Bare)),
        allocs_per_call(&mut keyed),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
