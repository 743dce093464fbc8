//! Admission overhead of the adaptive concurrency layer, against a bare service, tower's
//! `ConcurrencyLimit` and tower-resilience 0.13's `AdaptiveLimiter`, in the same run:
//! single-threaded and with two threads calling one shared limiter. The services are built by
//! `support/concurrency_cases.rs`; their heap allocations per call are counted by
//! `cargo bench --bench allocs` (this binary runs on the system allocator).
//!
//! `cargo bench --bench concurrency -- --warm-up-time 1 --measurement-time 3`

use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use tower::Service;
use tower_pressure::concurrency::WindowConfig;

#[path = "support/visit.rs"]
mod visit;

#[path = "support/pair.rs"]
mod pair_threads;
use pair_threads::Pair;

#[path = "support/concurrency_cases.rs"]
mod concurrency_cases;
use concurrency_cases::{bare, one, ours, ours_cold, resilience, tower_limit, warm};

/// Two long-lived threads (`support/pair.rs`), each with its own clone of one service (one
/// shared limiter), polling it directly.
fn pair<S>(svc: S) -> Pair
where
    S: Service<u32> + Clone + Send + 'static,
{
    Pair::spawn(|| {
        let mut svc = svc.clone();
        move || {
            move |iters| {
                let mut cx = Context::from_waker(Waker::noop());
                let t = Instant::now();
                for _ in 0..iters {
                    one(&mut svc, &mut cx);
                }
                t.elapsed()
            }
        }
    })
}

/// `CONC_COUNT=<ours|tower|bare|resilience> [CONC_N=<calls>] [CONC_PAIR=<rounds>]`: with
/// `CONC_PAIR`, rounds of `CONC_N` calls on each of two threads (min and median printed).
/// Otherwise no criterion, just the
/// warm-up and then `CONC_N` single-threaded calls inside [`measured`], for
///
/// ```text
/// CONC_COUNT=ours valgrind --tool=callgrind --toggle-collect='*measured*' <bench binary>
/// ```
///
/// whose total divided by `CONC_N` is the instruction count per call. Ours uses 1 s sample
/// windows here (the default is 100 ms): under valgrind a call is ~50x slower, and with
/// 100 ms windows the adaptive latency sampling would settle on a rate that depends on the
/// machine's load; with 1 s windows it settles at its sparsest (1 in 256) as natively.
fn count_mode(which: &str) {
    let n: u64 = std::env::var("CONC_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    if let Ok(reps) = std::env::var("CONC_PAIR").map(|v| v.parse::<usize>().unwrap_or(11)) {
        // Two threads, `reps` rounds of `n` calls each: min and median ns per call per thread.
        let pair = match which {
            "ours" => pair(ours()),
            "tower" => pair(tower_limit()),
            "resilience" => pair(resilience()),
            _ => pair(bare()),
        };
        let mut per_call: Vec<f64> = (0..reps.max(1))
            .map(|_| pair.run(n).as_nanos() as f64 / n as f64)
            .collect();
        per_call.sort_by(f64::total_cmp);
        println!(
            "two threads: min {:.1} ns, median {:.1} ns per call per thread",
            per_call[0],
            per_call[per_call.len() / 2]
        );
        return;
    }
    match which {
        "ours" => {
            let window =
                WindowConfig::new(Duration::from_secs(1), Duration::from_secs(1), 10).unwrap();
            let mut svc = ours_cold(window);
            warm(&mut svc, Duration::from_millis(2500));
            measured(&mut svc, n);
        }
        // The criterion configuration (100 ms windows, 300 ms warm-up), for native timing.
        "ours-default" => measured(&mut ours(), n),
        "tower" => measured(&mut tower_limit(), n),
        "resilience" => measured(&mut resilience(), n),
        _ => measured(&mut bare(), n),
    }
}

/// The calls counted by callgrind (see [`count_mode`]). With `CONC_TIME=<reps>` it also
/// times `reps` rounds of `n` calls natively and prints the minimum and median ns per call
/// (the minimum is the least disturbed round on a shared machine).
#[inline(never)]
fn measured<S: Service<u32>>(svc: &mut S, n: u64) {
    let mut cx = Context::from_waker(Waker::noop());
    let reps: usize = std::env::var("CONC_TIME")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if reps == 0 {
        for _ in 0..n {
            one(svc, &mut cx);
        }
        return;
    }
    let mut per_call: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                one(svc, &mut cx);
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    println!(
        "min {:.1} ns, median {:.1} ns per call",
        per_call[0],
        per_call[reps / 2]
    );
}

fn bench(c: &mut Criterion) {
    // Two threads, 2M calls each, timed directly (the same threads serve criterion below).
    const N: u64 = 2_000_000;
    let pairs = [
        ("bare", pair(bare())),
        ("adaptive (ours)", pair(ours())),
        ("tower ConcurrencyLimit", pair(tower_limit())),
        ("tower-resilience AdaptiveLimiter", pair(resilience())),
    ];
    let direct: Vec<String> = pairs
        .iter()
        .map(|(name, p)| format!("{name} {:.1}", p.run(N).as_nanos() as f64 / N as f64))
        .collect();
    println!(
        "two threads x {N} calls, ns per call per thread: {}",
        direct.join(", ")
    );
    let mut g = c.benchmark_group("admission/1-thread");
    concurrency_cases::one_thread(&mut g);
    g.finish();

    let mut g = c.benchmark_group("admission/2-threads");
    for (name, pair) in &pairs {
        g.bench_function(*name, |b| b.iter_custom(|n| pair.run(n)));
    }
    g.finish();
}

mod harness {
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::bench);
}

fn main() {
    if let Ok(which) = std::env::var("CONC_COUNT") {
        count_mode(&which);
        return;
    }
    harness::benches();
    Criterion::default().configure_from_args().final_summary();
}
