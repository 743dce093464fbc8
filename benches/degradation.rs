//! Cost of the degradation layer and of reading the monitor, as ratios against a bare
//! `service_fn` measured in the same run.
//!
//! ```text
//! cargo bench --bench degradation -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The monitor comes from `PressureMonitor::manual()`: no system sources and no sampler task,
//! so the numbers do not depend on the machine's load. After the criterion run the medians are
//! read back from criterion's estimates and printed as ratios, followed by heap allocations
//! per call counted by an instrumented global allocator.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use criterion::Criterion;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, service_fn};
use tower_pressure::degradation::DegradationLayer;
use tower_pressure::pressure::{ManualSource, PressureMonitor};

#[path = "support/mod.rs"]
mod support;
use support::median_ns;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const GROUP: &str = "degradation";

type Req = http::Request<()>;

fn handler(req: Req) -> Ready<Result<usize, Infallible>> {
    ready(Ok(black_box(&req).extensions().len()))
}

/// One request through `svc`: `poll_ready`, `call`, poll the (immediately ready) future.
#[inline]
fn call_once<S>(svc: &mut S) -> usize
where
    S: Service<Req, Response = usize, Error = Infallible>,
    S::Future: Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let _ = svc.poll_ready(&mut cx);
    let mut fut = svc.call(http::Request::new(()));
    match Pin::new(&mut fut).poll(&mut cx) {
        Poll::Ready(Ok(n)) => n,
        _ => unreachable!("service_fn with a ready future"),
    }
}

fn monitor_at(value: f64) -> (PressureMonitor, ManualSource) {
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(value);
    monitor.sample_now();
    (monitor, manual)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);

    let mut bare = service_fn(handler);
    g.bench_function("bare", |b| b.iter(|| call_once(&mut bare)));

    let (normal, _m1) = monitor_at(10.0);
    let mut layered = DegradationLayer::new(normal.clone()).layer(service_fn(handler));
    g.bench_function("layer_normal", |b| b.iter(|| call_once(&mut layered)));

    let (critical, _m2) = monitor_at(90.0);
    let mut layered_critical = DegradationLayer::new(critical).layer(service_fn(handler));
    g.bench_function("layer_critical", |b| {
        b.iter(|| call_once(&mut layered_critical))
    });

    g.bench_function("monitor_level", |b| b.iter(|| black_box(&normal).level()));
    g.bench_function("monitor_snapshot", |b| {
        b.iter(|| black_box(&normal).snapshot())
    });
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

/// Heap allocations per call, averaged over many calls (counted, not timed).
fn print_allocations() {
    const N: usize = 10_000;
    fn per_call(mut f: impl FnMut()) -> (f64, f64) {
        f(); // warm up lazily initialised state
        let region = Region::new(GLOBAL);
        for _ in 0..N {
            f();
        }
        let s = region.change();
        (
            s.allocations as f64 / N as f64,
            s.bytes_allocated as f64 / N as f64,
        )
    }
    let mut bare = service_fn(handler);
    let (normal, _m1) = monitor_at(10.0);
    let (critical, _m2) = monitor_at(90.0);
    let mut layered = DegradationLayer::new(normal.clone()).layer(service_fn(handler));
    let mut layered_critical = DegradationLayer::new(critical).layer(service_fn(handler));
    println!("\nheap allocations per call (allocations, bytes):");
    let rows: [(&str, (f64, f64)); 5] = [
        (
            "bare",
            per_call(|| {
                black_box(call_once(&mut bare));
            }),
        ),
        (
            "layer_normal",
            per_call(|| {
                black_box(call_once(&mut layered));
            }),
        ),
        (
            "layer_critical",
            per_call(|| {
                black_box(call_once(&mut layered_critical));
            }),
        ),
        (
            "monitor_level",
            per_call(|| {
                black_box(normal.level());
            }),
        ),
        (
            "monitor_snapshot",
            per_call(|| {
                black_box(normal.snapshot());
            }),
        ),
    ];
    for (id, (allocs, bytes)) in rows {
        println!("  {id:<18} {allocs:>5.2} allocs  {bytes:>7.1} bytes");
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    print_ratios();
    print_allocations();
}
