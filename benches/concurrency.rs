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
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use tower::{Layer, Service, service_fn};
use tower_pressure::Priority;
use tower_pressure::concurrency::limit::Gradient2;
use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, WindowConfig};
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

/// The layer under test, warmed up for 300 ms so its latency sampling has adapted to the
/// call rate (it times every request until the first window closes).
fn ours() -> impl Service<u32, Response = u32, Future: Send> + Clone + Send {
    let mut svc = ours_cold(WindowConfig::default());
    warm(&mut svc, Duration::from_millis(300));
    svc
}

fn warm<S: Service<u32>>(svc: &mut S, d: Duration) {
    let mut cx = Context::from_waker(Waker::noop());
    let t = Instant::now();
    while t.elapsed() < d {
        one(svc, &mut cx);
    }
}

fn ours_cold(
    window: WindowConfig,
) -> impl Service<u32, Response = u32, Future: Send> + Clone + Send {
    let (monitor, _m) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(Gradient2::builder().initial_limit(100).build().unwrap())
        .classifier(|_: &u32| Priority::Normal)
        .window(window)
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

/// Two long-lived threads, each with its own clone of one service (one shared limiter).
///
/// The threads are spawned once per service, not per sample: criterion's `iter_custom`
/// sizes its samples from the *wall* time of the whole closure (setup included), so
/// spawning threads, or building and warming a limiter, inside it made criterion believe
/// one iteration took milliseconds and run ONE call per sample, which then measured a
/// freshly spawned thread's cold first call (the old 2 µs "outlier"). Here a sample only
/// sends `iters` to both threads, which meet at a barrier, time their own loops and answer
/// with their elapsed time; the sample's value is the slower thread's.
struct Pair {
    jobs: Vec<mpsc::Sender<u64>>,
    done: mpsc::Receiver<Duration>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pair {
    fn new<S>(svc: S) -> Self
    where
        S: Service<u32> + Clone + Send + 'static,
    {
        let barrier = Arc::new(Barrier::new(2));
        let (done_tx, done) = mpsc::channel();
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = mpsc::channel::<u64>();
            let mut svc = svc.clone();
            let barrier = barrier.clone();
            let done_tx = done_tx.clone();
            jobs.push(tx);
            threads.push(std::thread::spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                while let Ok(iters) = rx.recv() {
                    barrier.wait();
                    let t = Instant::now();
                    for _ in 0..iters {
                        one(&mut svc, &mut cx);
                    }
                    let _ = done_tx.send(t.elapsed());
                }
            }));
        }
        Self {
            jobs,
            done,
            threads,
        }
    }

    /// `iters` calls on each thread at once; the slower thread's elapsed time.
    fn run(&self, iters: u64) -> Duration {
        for j in &self.jobs {
            j.send(iters).unwrap();
        }
        let a = self.done.recv().unwrap();
        let b = self.done.recv().unwrap();
        a.max(b)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.jobs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
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
            "ours" => Pair::new(ours()),
            "tower" => Pair::new(tower_limit()),
            "resilience" => Pair::new(resilience()),
            _ => Pair::new(bare()),
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
    println!(
        "allocations per call: bare {:.2}, adaptive (ours) {:.2}, tower ConcurrencyLimit {:.2}, tower-resilience AdaptiveLimiter {:.2}",
        allocs_per_call(bare()),
        allocs_per_call(ours()),
        allocs_per_call(tower_limit()),
        allocs_per_call(resilience()),
    );

    // Two threads, 2M calls each, timed directly (the same threads serve criterion below).
    const N: u64 = 2_000_000;
    let pairs = [
        ("bare", Pair::new(bare())),
        ("adaptive (ours)", Pair::new(ours())),
        ("tower ConcurrencyLimit", Pair::new(tower_limit())),
        ("tower-resilience AdaptiveLimiter", Pair::new(resilience())),
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
