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
//! * `outbound`: `ResilienceStack::outbound(monitor)` (alert → retry → degradation → breaker →
//!   30 s timeout);
//! * `outbound_coarse`: the same with `tower_pressure::clock::CoarseClock` (1 ms) running, so
//!   the stack's two clock reads are atomic loads of the last tick;
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
//! `STACK_MARGINAL=1 <bench binary>` (also printed after the criterion run) times each stack
//! against the same stack without one layer, in alternating batches: what each layer adds.
//!
//! After the criterion run the medians are read back from criterion's estimates and printed
//! as a table with ratios against `bare`. This binary runs on the system allocator: heap
//! allocations per call of the same services (built by `support/stack_cases.rs`) are counted
//! by `cargo bench --bench allocs`, whose `stats_alloc` global allocator would slow down
//! every allocating call timed here (and contend between the two threads).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use tower::{Layer, Service};
use tower_pressure::ResilienceStack;

#[path = "support/mod.rs"]
mod support;
use support::{criterion_dir, median_ns};

#[path = "support/pair.rs"]
mod pair;
use pair::Pair;

#[macro_use]
#[path = "support/stack_cases.rs"]
mod stack_cases;
use stack_cases::{Case, Req, bare, drive, monitor, runtime};

/// Clock reads per successful request, counted by reading the code paths (see BENCHMARKS.md
/// for the breakdown).
fn clock_reads(case: Case) -> &'static str {
    match case {
        Case::Bare => "0",
        Case::Inbound => "2 (1 call + 1 completion, shared)",
        Case::Outbound => "2 + 1/32 (shared)",
        Case::OutboundCoarse => "0 (2 atomic loads)",
        Case::Tower => "1",
        Case::TowerResilience => "-",
    }
}

fn one_thread<S: Service<Req>>(rt: &tokio::runtime::Runtime, svc: &mut S, iters: u64) -> Duration {
    rt.block_on(async {
        let t = Instant::now();
        drive(svc, iters).await;
        t.elapsed()
    })
}

/// Two persistent threads (`support/pair.rs`), each with its own current-thread runtime
/// and its own clone of the service.
fn pair<S>(svc: &S) -> Pair
where
    S: Service<Req> + Clone + Send + 'static,
{
    Pair::spawn(|| {
        let mut svc = svc.clone();
        move || {
            let rt = runtime();
            move |iters| one_thread(&rt, &mut svc, iters)
        }
    })
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
            let pair = pair(&svc);
            g.bench_function(case.id(), |b| b.iter_custom(|n| pair.run(n)));
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

fn summary() {
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
    println!("clock reads per request (counted in the code, not measured); heap allocations per");
    println!("call of the same services: `cargo bench --bench allocs`\n");
    println!(
        "| {:<44} | {:>8} | {:>7} | {:>7} | {:>8} | {:>7} | {:>8} |",
        "case", "1 thread", "vs bare", "over", "2 thr", "vs bare", "clock"
    );
    println!(
        "|{:-<46}|{:->10}|{:->9}|{:->9}|{:->10}|{:->9}|{:->10}|",
        "", "", "", "", "", "", ""
    );
    for case in Case::ALL {
        let m1 = median_ns(G1, case.id());
        let m2 = median_ns(G2, case.id());
        println!(
            "| {:<44} | {:>8} | {:>7} | {:>7} | {:>8} | {:>7} | {:>8} |",
            case.label(),
            fmt(m1),
            ratio(m1, b1),
            over(m1, b1),
            fmt(m2),
            ratio(m2, b2),
            clock_reads(case),
        );
    }
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
        eprintln!(
            "STACK_COUNT: one of bare, inbound, outbound, outbound_coarse, tower, tower_resilience"
        );
        return;
    };
    with_service!(case, |svc| {
        let mut svc = svc;
        rt.block_on(drive(&mut svc, 1_000)); // warm-up, not counted
        counted(&rt, &mut svc, n);
    });
}

/// What each layer adds inside its stack: the whole stack against the same stack without
/// that one layer, timed in alternating batches (the median of 15 rounds of 100 000 calls
/// each), so the machine's drift between criterion's runs does not enter the differences.
/// The parts do not add up exactly: removing a layer also removes its share of the shared
/// clock reads and of the moves of the nested futures.
fn marginal_costs() {
    const ROUNDS: usize = 15;
    const CALLS: u64 = 100_000;
    let rt = runtime();
    let (m, _manual) = monitor();
    fn time<S: Service<Req>>(rt: &tokio::runtime::Runtime, svc: &mut S) -> f64 {
        one_thread(rt, svc, CALLS).as_nanos() as f64 / CALLS as f64
    }
    let out = || ResilienceStack::outbound(m.clone());
    let inb = || ResilienceStack::inbound(m.clone());
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
    for _ in 0..ROUNDS {
        let t = [
            ("bare", time(&rt, &mut bare())),
            ("outbound", time(&rt, &mut out().layer(bare()))),
            (
                "outbound - alert",
                time(&rt, &mut out().without_alert().layer(bare())),
            ),
            (
                "outbound - retry",
                time(&rt, &mut out().without_retry().layer(bare())),
            ),
            (
                "outbound - degradation",
                time(&rt, &mut out().without_degradation().layer(bare())),
            ),
            (
                "outbound - breaker",
                time(&rt, &mut out().without_breaker().layer(bare())),
            ),
            (
                "outbound - timeout",
                time(&rt, &mut out().without_timeout().layer(bare())),
            ),
            ("outbound, coarse clock", {
                let _coarse = tower_pressure::clock::CoarseClock::start(Duration::from_millis(1))
                    .expect("valid resolution");
                time(&rt, &mut out().layer(bare()))
            }),
            ("inbound", time(&rt, &mut inb().layer(bare()))),
            (
                "inbound - alert",
                time(&rt, &mut inb().without_alert().layer(bare())),
            ),
            (
                "inbound - degradation",
                time(&rt, &mut inb().without_degradation().layer(bare())),
            ),
            (
                "inbound - concurrency",
                time(&rt, &mut inb().without_concurrency().layer(bare())),
            ),
        ];
        for (i, (name, v)) in t.into_iter().enumerate() {
            match rows.get_mut(i) {
                Some(r) => r.1.push(v),
                None => rows.push((name, vec![v])),
            }
        }
    }
    let med: Vec<(&str, f64)> = rows
        .into_iter()
        .map(|(n, mut v)| {
            v.sort_by(f64::total_cmp);
            (n, v[v.len() / 2])
        })
        .collect();
    let get = |name: &str| {
        med.iter()
            .find(|(n, _)| *n == name)
            .map_or(f64::NAN, |r| r.1)
    };
    let bare_ns = get("bare");
    println!(
        "\nwhat each layer adds inside its stack (1 thread, interleaved medians, ns per call):"
    );
    let coarse = get("outbound, coarse clock");
    println!(
        "  outbound with the coarse clock (1 ms): {coarse:.1} ({:+.0} over bare)",
        coarse - bare_ns
    );
    for stack in ["outbound", "inbound"] {
        let whole = get(stack);
        println!(
            "  {stack}: {whole:.1} ({:+.0} over bare {bare_ns:.1})",
            whole - bare_ns
        );
        for (n, v) in med
            .iter()
            .filter(|(n, _)| n.starts_with(&format!("{stack} - ")))
        {
            let layer = n.trim_start_matches(&format!("{stack} - "));
            println!("    {layer:<12} {:+.1}", whole - v);
        }
    }
}

fn main() {
    if let Ok(which) = std::env::var("STACK_COUNT") {
        count_mode(&which);
        return;
    }
    if std::env::var_os("STACK_MARGINAL").is_some() {
        marginal_costs();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
    marginal_costs();
}
