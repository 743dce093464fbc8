//! The whole stack against a bare service and the competitors, in the same run.
//!
//! ```text
//! cargo bench --bench stack -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Cases (request `http::Request<()>`, built per call; the handler answers at once):
//!
//! * `bare`: `service_fn` only;
//! * `inbound`: `ResilienceStack::inbound(monitor)` (alert → degradation → adaptive concurrency);
//! * `outbound`: `ResilienceStack::outbound(monitor)` (alert → degradation → retry → breaker →
//!   30 s timeout);
//! * `tower`: tower's `LoadShed > Timeout > ConcurrencyLimit > Retry` (never-retry policy);
//! * `tower_resilience`: tower-resilience 0.13's `Retry > CircuitBreaker > Bulkhead >
//!   AdaptiveLimiter` (AIMD).
//!
//! Every call goes through `ServiceExt::ready` then `call`, awaited on a current-thread tokio
//! runtime (`1_thread`); `2_threads` runs two OS threads, each with its own current-thread
//! runtime and its own clone of the service (clones share the layers' state), and reports the
//! time per call per thread. The monitor comes from `PressureMonitor::manual()` (no system
//! sources, no sampler task), so nothing depends on the machine's pressure.
//!
//! After the criterion run the medians are read back from criterion's estimates and printed
//! as a table with ratios against `bare`, next to heap allocations per call counted with
//! `stats_alloc` as the global allocator (the crate forbids `unsafe`, so no hand-written
//! allocator).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::Criterion;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_pressure::ResilienceStack;
use tower_pressure::pressure::{ManualSource, PressureMonitor};

#[path = "support/mod.rs"]
mod support;
use support::{criterion_dir, median_ns};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

type Req = http::Request<()>;

/// The handler: reads the request's extensions (as a handler reading `Constraints` would) and
/// answers at once.
fn handler(req: Req) -> Ready<Result<usize, Infallible>> {
    ready(Ok(black_box(&req).extensions().len()))
}

type Bare = tower::util::ServiceFn<fn(Req) -> Ready<Result<usize, Infallible>>>;

fn bare() -> Bare {
    tower::service_fn(handler as fn(Req) -> _)
}

/// A monitor at a normal level (10 %), with no background task.
fn monitor() -> (PressureMonitor, ManualSource) {
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(10.0);
    monitor.sample_now();
    (monitor, manual)
}

/// tower's `Retry` policy that keeps a copy of the request (as any replaying policy must)
/// and never retries.
#[derive(Clone)]
struct NeverRetry;

impl<Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

type TrError = tower_resilience::circuitbreaker::CircuitBreakerError<
    tower_resilience::bulkhead::BulkheadServiceError<
        tower_resilience::adaptive::AdaptiveError<Infallible>,
    >,
>;

/// The benched cases. Every service is `Clone + Send` so the two-thread case can clone it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Bare,
    Inbound,
    Outbound,
    Tower,
    TowerResilience,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::Bare,
        Case::Inbound,
        Case::Outbound,
        Case::Tower,
        Case::TowerResilience,
    ];

    fn id(self) -> &'static str {
        match self {
            Case::Bare => "bare",
            Case::Inbound => "inbound",
            Case::Outbound => "outbound",
            Case::Tower => "tower",
            Case::TowerResilience => "tower_resilience",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Case::Bare => "bare service_fn",
            Case::Inbound => "ResilienceStack::inbound",
            Case::Outbound => "ResilienceStack::outbound",
            Case::Tower => "tower LoadShed>Timeout>ConcLimit>Retry",
            Case::TowerResilience => "tower-resilience Retry>CB>Bulkhead>Adaptive",
        }
    }

    /// Clock reads per successful request, counted by reading the code paths (see
    /// BENCHMARKS.md for the breakdown).
    fn clock_reads(self) -> &'static str {
        match self {
            Case::Bare => "0",
            Case::Inbound => "2 (1 call + 1 completion, shared)",
            Case::Outbound => "2 + 1/32 (shared)",
            Case::Tower => "1",
            Case::TowerResilience => "-",
        }
    }
}

/// Calls `f` with the case's service (the services have different types).
macro_rules! with_service {
    ($case:expr, |$svc:ident| $body:expr) => {{
        let (monitor, _manual) = monitor();
        match $case {
            Case::Bare => {
                let $svc = bare();
                $body
            }
            Case::Inbound => {
                let $svc = ResilienceStack::inbound(monitor.clone()).layer(bare());
                $body
            }
            Case::Outbound => {
                let $svc = ResilienceStack::outbound(monitor.clone()).layer(bare());
                $body
            }
            Case::Tower => {
                let $svc = ServiceBuilder::new()
                    .load_shed()
                    .timeout(Duration::from_secs(30))
                    .concurrency_limit(1_000_000)
                    .retry(NeverRetry)
                    .service(bare());
                $body
            }
            Case::TowerResilience => {
                let $svc = tower_resilience_stack();
                $body
            }
        }
    }};
}

fn tower_resilience_stack() -> impl Service<Req, Response = usize> + Clone + Send + 'static {
    use tower_resilience::adaptive::{AdaptiveLimiterLayer, Aimd};
    use tower_resilience::bulkhead::BulkheadLayer;
    use tower_resilience::circuitbreaker::CircuitBreakerLayer;
    use tower_resilience::retry::RetryLayer;

    let retry = RetryLayer::<Req, usize, TrError>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(100))
        .build();
    let breaker = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .expect("valid breaker config");
    let bulkhead = BulkheadLayer::builder()
        .max_concurrent_calls(10_000)
        .build()
        .expect("valid bulkhead config");
    let aimd = Aimd::builder()
        .initial_limit(1_000)
        .max_limit(10_000)
        .latency_threshold(Duration::from_millis(100))
        .build()
        .expect("valid aimd config");
    ServiceBuilder::new()
        .layer(retry)
        .layer(breaker)
        .layer(bulkhead)
        .layer(AdaptiveLimiterLayer::new(aimd))
        .service(bare())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `n` calls through `ready` + `call`, awaited; every call must succeed.
async fn drive<S: Service<Req>>(svc: &mut S, n: u64) {
    for _ in 0..n {
        let ok = match svc.ready().await {
            Ok(s) => s.call(http::Request::new(())).await.is_ok(),
            Err(_) => false,
        };
        assert!(black_box(ok), "the benched services always succeed");
    }
}

/// The same with requests built beforehand (their extensions already populated).
async fn drive_prebuilt<S: Service<Req>>(svc: &mut S, reqs: Vec<Req>) {
    for req in reqs {
        let ok = match svc.ready().await {
            Ok(s) => s.call(req).await.is_ok(),
            Err(_) => false,
        };
        assert!(black_box(ok), "the benched services always succeed");
    }
}

fn one_thread<S: Service<Req>>(rt: &tokio::runtime::Runtime, svc: &mut S, iters: u64) -> Duration {
    rt.block_on(async {
        let t = Instant::now();
        drive(svc, iters).await;
        t.elapsed()
    })
}

/// Two OS threads, each with its own runtime and clone, started together; the slower
/// thread's time for `iters` calls (so the result is the time per call per thread).
fn two_threads<S>(svc: &S, iters: u64) -> Duration
where
    S: Service<Req> + Clone + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let mut s = svc.clone();
            let b = barrier.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                b.wait();
                one_thread(&rt, &mut s, iters)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .max()
        .unwrap_or_default()
}

const G1: &str = "stack_1_thread";
const G2: &str = "stack_2_threads";
const G_CLOCK: &str = "stack_clock";

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group(G1);
    for case in Case::ALL {
        with_service!(case, |svc| {
            let mut svc = svc;
            g.bench_function(case.id(), |b| {
                b.iter_custom(|n| one_thread(&rt, &mut svc, n))
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group(G2);
    for case in Case::ALL {
        with_service!(case, |svc| {
            g.bench_function(case.id(), |b| b.iter_custom(|n| two_threads(&svc, n)));
        });
    }
    g.finish();

    // Reference: the price of one clock read here (what each read in the stacks costs).
    let mut g = c.benchmark_group(G_CLOCK);
    g.bench_function("tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    g.finish();
}

const N: usize = 10_000;

/// Heap allocations per call over `N` calls after a warm-up, with fresh empty requests and
/// with requests whose extensions already hold one entry (built before counting).
fn allocations<S: Service<Req>>(rt: &tokio::runtime::Runtime, svc: &mut S) -> (f64, f64) {
    #[derive(Clone, Copy)]
    struct RequestId(#[allow(dead_code)] u64);
    rt.block_on(async {
        drive(svc, 1_000).await;
        let region = Region::new(GLOBAL);
        drive(svc, N as u64).await;
        let empty = region.change().allocations as f64 / N as f64;

        let reqs: Vec<Req> = (0..N as u64)
            .map(|i| {
                let mut r = http::Request::new(());
                r.extensions_mut().insert(RequestId(i));
                r
            })
            .collect();
        let region = Region::new(GLOBAL);
        drive_prebuilt(svc, reqs).await;
        let s = region.change();
        // The requests (and their maps) are freed inside the region: count allocations only.
        let prebuilt = s.allocations as f64 / N as f64;
        (empty, prebuilt)
    })
}

fn summary() {
    let rt = runtime();
    let mut rows = Vec::new();
    for case in Case::ALL {
        let allocs = with_service!(case, |svc| {
            let mut svc = svc;
            allocations(&rt, &mut svc)
        });
        rows.push((case, allocs));
    }
    // Where the stacks' allocations come from: the same stacks without degradation (the layer
    // that inserts `Constraints` into the request's extensions).
    let (m, _manual) = monitor();
    let mut inbound_nd = ResilienceStack::inbound(m.clone())
        .without_degradation()
        .layer(bare());
    let mut outbound_nd = ResilienceStack::outbound(m)
        .without_degradation()
        .layer(bare());
    let inbound_nd = allocations(&rt, &mut inbound_nd);
    let outbound_nd = allocations(&rt, &mut outbound_nd);

    let b1 = median_ns(G1, "bare");
    let b2 = median_ns(G2, "bare");
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let ratio = |v: Option<f64>, b: Option<f64>| match (v, b) {
        (Some(v), Some(b)) if b > 0.0 => format!("x{:.1}", v / b),
        _ => "-".to_string(),
    };
    let over = |v: Option<f64>, b: Option<f64>| match (v, b) {
        (Some(v), Some(b)) => format!("{:+.0}", v - b),
        _ => "-".to_string(),
    };
    println!("\nsummary: medians in ns per call (2 threads: per call per thread), ratio vs bare,");
    println!("heap allocations per call (empty extensions / one extension already present),");
    println!("clock reads per request (counted in the code, not measured)\n");
    println!(
        "| {:<44} | {:>8} | {:>7} | {:>7} | {:>8} | {:>7} | {:>13} | {:>8} |",
        "case", "1 thread", "vs bare", "over", "2 thr", "vs bare", "allocs/call", "clock"
    );
    println!(
        "|{:-<46}|{:->10}|{:->9}|{:->9}|{:->10}|{:->9}|{:->15}|{:->10}|",
        "", "", "", "", "", "", "", ""
    );
    for (case, (empty, pre)) in rows {
        let m1 = median_ns(G1, case.id());
        let m2 = median_ns(G2, case.id());
        println!(
            "| {:<44} | {:>8} | {:>7} | {:>7} | {:>8} | {:>7} | {:>13} | {:>8} |",
            case.label(),
            fmt(m1),
            ratio(m1, b1),
            over(m1, b1),
            fmt(m2),
            ratio(m2, b2),
            format!("{empty:.2} / {pre:.2}"),
            case.clock_reads(),
        );
    }
    println!(
        "\nallocations without the degradation layer: inbound {:.2} / {:.2}, outbound {:.2} / {:.2}",
        inbound_nd.0, inbound_nd.1, outbound_nd.0, outbound_nd.1
    );
    if let Some(ns) = median_ns(G_CLOCK, "tokio_instant_now") {
        println!("one clock read (tokio::time::Instant::now) costs {ns:.1} ns here");
    }
    if b1.is_none() {
        println!("(no criterion estimates found under {:?})", criterion_dir());
    }
}

/// `n` calls of one case, for `valgrind --tool=callgrind --toggle-collect='*counted*'`
/// (instruction counts repeat exactly, whatever the machine's load):
///
/// ```text
/// STACK_COUNT=outbound STACK_N=20000 valgrind --tool=callgrind --toggle-collect='*counted*' <bench binary>
/// ```
#[inline(never)]
fn counted<S: Service<Req>>(rt: &tokio::runtime::Runtime, svc: &mut S, n: u64) {
    rt.block_on(drive(svc, n));
}

fn count_mode(which: &str) {
    let n: u64 = std::env::var("STACK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = runtime();
    let Some(case) = Case::ALL.into_iter().find(|c| c.id() == which) else {
        eprintln!("STACK_COUNT: one of bare, inbound, outbound, tower, tower_resilience");
        return;
    };
    with_service!(case, |svc| {
        let mut svc = svc;
        rt.block_on(drive(&mut svc, 1_000)); // warm-up, not counted
        counted(&rt, &mut svc, n);
    });
}

fn main() {
    if let Ok(which) = std::env::var("STACK_COUNT") {
        count_mode(&which);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
