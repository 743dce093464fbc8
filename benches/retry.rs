//! Overhead of RetryLayer on a successful first attempt, against a bare service and against
//! tower's own `Retry` with a never-retry policy, in the same run. Also allocations per call.
//!
//! `cargo bench --bench retry -- --warm-up-time 1 --measurement-time 3`
//!
//! Instruction counts (deterministic on a loaded machine): with `RETRY_BENCH_LOOP=<name>:<n>`
//! the binary makes `n` calls of one service (`bare`, `tower`, `ours`, `no_budget`, `http`)
//! and exits, e.g. under `valgrind --tool=callgrind`; the difference between two runs divided
//! by the difference of their `n` is the cost of one call.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::alloc::System;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group};
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

/// Builds every benched service as a local binding (a macro: the types are unnameable).
macro_rules! services {
    ($bare:ident, $tower_retry:ident, $ours:ident, $ours_no_budget:ident, $ours_http:ident) => {
        // No runtime is entered: with tokio's `test-util` feature (unified in from the
        // dev-dependencies) `Instant::now()` inside a runtime takes the mock clock's mutex, which
        // production builds never do. Outside a runtime it is the plain monotonic clock.
        let (monitor, _manual) = PressureMonitor::manual();
        let inner =
            service_fn(|_: Req| std::future::ready(Ok::<_, std::convert::Infallible>(200u16)));

        let mut $bare = inner;
        let mut $tower_retry = tower::retry::RetryLayer::new(NeverRetry).layer(inner);
        let mut $ours = RetryLayer::new(monitor.clone()).layer(inner);
        let mut $ours_no_budget = RetryLayer::builder(monitor.clone())
            .no_budget()
            .build()
            .unwrap()
            .layer(inner);
        #[cfg(feature = "http")]
        let mut $ours_http = {
            let inner = service_fn(|_: Req| {
                std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
            });
            RetryLayer::http(monitor.clone())
                .build()
                .unwrap()
                .layer(inner)
        };
    };
}

fn bench(c: &mut Criterion) {
    services!(bare, tower_retry, ours, ours_no_budget, ours_http);

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

    // Criterion measures one function after the other: on a shared, loaded machine the load
    // changes between them. Alternating short batches of two services and taking the median
    // of the per-round ratios compares them under the same load.
    println!("interleaved medians (200 rounds of 20 000 calls each, order alternating):");
    let (t, o, r) = interleaved(&mut tower_retry, &mut ours);
    println!("  tower_retry_never {t:.1} ns, retry_layer {o:.1} ns, ratio {r:.3}");
    let (t, o, r) = interleaved(&mut tower_retry, &mut ours_no_budget);
    println!("  tower_retry_never {t:.1} ns, retry_layer_no_budget {o:.1} ns, ratio {r:.3}");

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
        services!(bare, tower_retry, ours, ours_no_budget, ours_http);
        let _ = (&mut bare, &mut ours_http);
        let (t, o, r) = interleaved(&mut tower_retry, &mut ours);
        println!("tower {t:.1} ns, ours {o:.1} ns, ratio {r:.3}");
        let (t, o, r) = interleaved(&mut tower_retry, &mut ours_no_budget);
        println!("tower {t:.1} ns, no_budget {o:.1} ns, ratio {r:.3}");
        return;
    }
    if spec == "sizes" {
        services!(bare, tower_retry, ours, ours_no_budget, ours_http);
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
    services!(bare, tower_retry, ours, ours_no_budget, ours_http);
    match name {
        "bare" => repeat(&mut bare, n),
        "tower" => repeat(&mut tower_retry, n),
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
