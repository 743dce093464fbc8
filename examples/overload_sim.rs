//! Deterministic overload simulation under tokio's paused clock.
//!
//! A backend with capacity `C` (C workers, FIFO queue in front, ~20 ms per request) is
//! offered open-loop load sweeping 0.5x, 1x, 2x, 4x C, then C halves (still 4x the original
//! load) and recovers. The same arrival sequence is replayed against: no limit, tower's
//! `ConcurrencyLimit` + `LoadShed` set too high (4C) and too low (C/2), and this crate's
//! AIMD, Vegas and Gradient2 limiters (Gradient2 also with a guaranteed Critical share and a
//! Critical queue). Prints a markdown table and writes `docs/overload.svg`. Then issue 21's
//! Vegas scenario: 20 workers halved to 10 under overload, long enough for several baseline
//! re-probes; the run fails if Vegas's limit does not come back near capacity.
//!
//! Run: `cargo run --release --example overload_sim`

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn, util::BoxCloneService};
use tower_pressure::Priority;
use tower_pressure::concurrency::limit::{Aimd, Gradient2, LimitAlgorithm, Vegas};
use tower_pressure::concurrency::{AdaptiveConcurrencyHandle, AdaptiveConcurrencyLayer, Shares};
use tower_pressure::pressure::PressureMonitor;

const C: u32 = 40;
const BASE_MS: f64 = 20.0;
const SLO_MS: f64 = 50.0;
const PHASE_S: u64 = 6;
/// (load as a multiple of the original capacity, capacity factor)
const PHASES: [(f64, f64, &str); 6] = [
    (0.5, 1.0, "0.5x"),
    (1.0, 1.0, "1x"),
    (2.0, 1.0, "2x"),
    (4.0, 1.0, "4x"),
    (4.0, 0.5, "4x, C/2"),
    (4.0, 1.0, "4x, C back"),
];
const BUCKET_MS: u64 = 100;
/// Baseline probe interval of the "gradient2 probe" and "gradient2+prio" runs (the default,
/// 60 s, is longer than the whole run).
const PROBE_S: u64 = 5;

type Svc = BoxCloneService<http::Request<()>, (), BoxError>;

#[derive(Clone, Copy)]
struct Rec {
    start_ms: u32,
    latency_us: u32,
    ok: bool,
    prio: u8,
}

struct Run {
    name: &'static str,
    recs: Vec<Rec>,
    /// (time ms, limit) every bucket, for limiters that learn.
    limits: Vec<(u64, u32)>,
}

/// A backend of `cap` workers with a FIFO queue; `cap` can change while running.
#[derive(Clone)]
struct Backend {
    sem: Arc<Semaphore>,
    cap: Arc<AtomicU32>,
}

impl Backend {
    fn new() -> Self {
        Self::with_capacity(C)
    }

    fn with_capacity(cap: u32) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(cap as usize)),
            cap: Arc::new(AtomicU32::new(cap)),
        }
    }

    fn set_capacity(&self, cap: u32) {
        let old = self.cap.swap(cap, Ordering::Relaxed);
        if cap > old {
            self.sem.add_permits((cap - old) as usize);
        } else if cap < old {
            let sem = self.sem.clone();
            let n = old - cap;
            // Retire workers as they finish their current request.
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many(n).await {
                    p.forget();
                }
            });
        }
    }

    fn service(
        &self,
    ) -> impl Service<http::Request<()>, Response = (), Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static {
        let sem = self.sem.clone();
        service_fn(move |req: http::Request<()>| {
            let sem = sem.clone();
            // Deterministic +-10 % service-time jitter from the request's sequence number.
            let seq = req.extensions().get::<u64>().copied().unwrap_or(0);
            let jitter = 0.9 + 0.2 * fastrand::Rng::with_seed(seq).f64();
            async move {
                let _worker = sem.acquire().await;
                tokio::time::sleep(Duration::from_secs_f64(BASE_MS * jitter / 1e3)).await;
                Ok(())
            }
        })
    }
}

fn priority_of(seq: u64) -> Priority {
    // 10 % Critical, 20 % High, 40 % Normal, 30 % Low.
    match fastrand::Rng::with_seed(seq ^ 0xabcdef).u32(0..100) {
        0..10 => Priority::Critical,
        10..30 => Priority::High,
        30..70 => Priority::Normal,
        _ => Priority::Low,
    }
}

fn adaptive(
    backend: &Backend,
    algo: impl LimitAlgorithm,
    prio: bool,
) -> (Svc, AdaptiveConcurrencyHandle) {
    let (monitor, _manual) = PressureMonitor::manual();
    let mut b = AdaptiveConcurrencyLayer::builder(monitor).algorithm(algo);
    if prio {
        b = b
            .shares(
                Shares::none()
                    .with(Priority::Critical, 0.5)
                    .unwrap_or_default(),
            )
            .critical_queue(64, Duration::from_millis(20));
    }
    let layer = b.build().expect("valid config");
    let h = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(backend.service());
    (BoxCloneService::new(svc), h)
}

async fn run(
    name: &'static str,
    make: impl FnOnce(&Backend) -> (Svc, Option<AdaptiveConcurrencyHandle>),
) -> Run {
    let backend = Backend::new();
    let (svc, handle) = make(&backend);
    let recs = Arc::new(Mutex::new(Vec::with_capacity(200_000)));
    let limits = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    if let Some(h) = handle.clone() {
        let limits = limits.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(BUCKET_MS));
            loop {
                tick.tick().await;
                limits
                    .lock()
                    .unwrap()
                    .push((t0.elapsed().as_millis() as u64, h.limit()));
            }
        });
    }
    let mut seq = 0u64;
    let mut carry = 0.0;
    let capacity_rps = f64::from(C) * 1e3 / BASE_MS;
    let mut tasks = tokio::task::JoinSet::new();
    for (load, cap, _) in PHASES {
        backend.set_capacity((f64::from(C) * cap) as u32);
        let per_ms = load * capacity_rps / 1e3;
        for _ in 0..PHASE_S * 1000 {
            carry += per_ms;
            while carry >= 1.0 {
                carry -= 1.0;
                seq += 1;
                let prio = priority_of(seq);
                let mut req = http::Request::new(());
                req.extensions_mut().insert(prio);
                req.extensions_mut().insert(seq);
                let svc = svc.clone();
                let recs = recs.clone();
                let start = Instant::now();
                tasks.spawn(async move {
                    let ok = svc.oneshot(req).await.is_ok();
                    let rec = Rec {
                        start_ms: start.duration_since(t0).as_millis() as u32,
                        latency_us: start.elapsed().as_micros() as u32,
                        ok,
                        prio: prio.index() as u8,
                    };
                    recs.lock().unwrap().push(rec);
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            while tasks.try_join_next().is_some() {}
        }
    }
    // Let in-flight requests finish (bounded: the no-limit queue drains at C / 20 ms).
    let drain_until = Instant::now() + Duration::from_secs(120);
    while !tasks.is_empty() && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        while tasks.try_join_next().is_some() {}
    }
    tasks.abort_all();
    let recs = std::mem::take(&mut *recs.lock().unwrap());
    let limits = std::mem::take(&mut *limits.lock().unwrap());
    Run { name, recs, limits }
}

fn pct(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    f64::from(v[i]) / 1e3
}

struct PhaseStats {
    goodput: f64,
    p50: f64,
    p99: f64,
    admitted: f64,
    crit: f64,
    low: f64,
    limit: f64,
}

fn phase_stats(run: &Run, phase: usize) -> PhaseStats {
    let from = (phase as u64 * PHASE_S * 1000) as u32;
    let to = from + (PHASE_S * 1000) as u32;
    let cap = f64::from(C) * PHASES[phase].1 * 1e3 / BASE_MS;
    let recs: Vec<&Rec> = run
        .recs
        .iter()
        .filter(|r| r.start_ms >= from && r.start_ms < to)
        .collect();
    let mut lat: Vec<u32> = recs.iter().filter(|r| r.ok).map(|r| r.latency_us).collect();
    let good = recs
        .iter()
        .filter(|r| r.ok && f64::from(r.latency_us) <= SLO_MS * 1e3)
        .count();
    let rate = |p: u8| {
        let all = recs.iter().filter(|r| r.prio == p).count().max(1);
        let ok = recs
            .iter()
            .filter(|r| r.prio == p && r.ok && f64::from(r.latency_us) <= SLO_MS * 1e3)
            .count();
        100.0 * ok as f64 / all as f64
    };
    PhaseStats {
        goodput: 100.0 * good as f64 / (PHASE_S as f64) / cap,
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
        admitted: 100.0 * lat.len() as f64 / recs.len().max(1) as f64,
        limit: {
            let l: Vec<f64> = run
                .limits
                .iter()
                .filter(|(t, _)| *t >= u64::from(from) && *t < u64::from(to))
                .map(|(_, l)| f64::from(*l))
                .collect();
            l.iter().sum::<f64>() / l.len().max(1) as f64
        },
        crit: rate(Priority::Critical.index() as u8),
        low: rate(Priority::Low.index() as u8),
    }
}

/// p99 per bucket of requests *started* in the bucket (ms), NaN when none succeeded.
fn p99_series(run: &Run) -> Vec<f64> {
    let total = PHASES.len() as u64 * PHASE_S * 1000 / BUCKET_MS;
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); total as usize];
    for r in run.recs.iter().filter(|r| r.ok) {
        let b = (u64::from(r.start_ms) / BUCKET_MS) as usize;
        if b < buckets.len() {
            buckets[b].push(r.latency_us);
        }
    }
    buckets.iter_mut().map(|b| pct(b, 0.99)).collect()
}

/// Seconds after `step_s` until the p99 of every following 100 ms bucket (for 1 s) is
/// within 2x the unloaded p99; `None` if never within the phase.
fn convergence(series: &[f64], step_s: u64, target: f64) -> Option<f64> {
    let from = (step_s * 1000 / BUCKET_MS) as usize;
    let to = from + (PHASE_S * 1000 / BUCKET_MS) as usize;
    let hold = (1000 / BUCKET_MS) as usize;
    (from..to.saturating_sub(hold)).find_map(|i| {
        series[i..i + hold]
            .iter()
            .all(|v| v.is_finite() && *v <= target)
            .then(|| (i - from) as f64 * BUCKET_MS as f64 / 1e3)
    })
}

fn svg(runs: &[Run], unloaded_p99: f64) -> String {
    let (w, h, pad) = (900.0, 260.0, 50.0);
    let total_s = (PHASES.len() as u64 * PHASE_S) as f64;
    let x = |t_s: f64| pad + t_s / total_s * (w - 2.0 * pad);
    let colors = [
        "#999999", "#e08000", "#c00000", "#2a7fff", "#8a2be2", "#00a000", "#00a0a0", "#004d00",
    ];
    let mut s = String::new();
    let height = 2.0 * h + 3.0 * pad;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // Panel 1: limits. Panel 2: p99 latency (clipped at 200 ms).
    for (panel, (title, ymax)) in [
        ("concurrency limit (backend capacity C dashed)", 200.0),
        (
            "p99 latency of admitted requests, ms (clipped at 200)",
            200.0,
        ),
    ]
    .iter()
    .enumerate()
    {
        let top = pad + panel as f64 * (h + pad);
        let y = |v: f64| top + h - (v.min(*ymax) / ymax) * h;
        let _ = writeln!(
            s,
            r#"<text x="{pad}" y="{}" font-weight="bold">{title}</text>"#,
            top - 8.0
        );
        let _ = writeln!(
            s,
            r##"<rect x="{pad}" y="{top}" width="{}" height="{h}" fill="none" stroke="#333"/>"##,
            w - 2.0 * pad
        );
        for v in [0.0, 50.0, 100.0, 150.0, 200.0] {
            let _ = writeln!(
                s,
                r##"<line x1="{pad}" x2="{0}" y1="{1:.1}" y2="{1:.1}" stroke="#eee"/><text x="{2}" y="{3:.1}" text-anchor="end">{v}</text>"##,
                w - pad,
                y(v),
                pad - 4.0,
                y(v) + 4.0
            );
        }
        for (i, (_, _, label)) in PHASES.iter().enumerate() {
            let t = (i as u64 * PHASE_S) as f64;
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1}" stroke="#ccc"/><text x="{2:.1}" y="{3}" fill="#666">{label}</text>"##,
                x(t),
                top + h,
                x(t) + 3.0,
                top + 14.0
            );
        }
        if panel == 0 {
            let mut pts = String::new();
            for (i, (_, cap, _)) in PHASES.iter().enumerate() {
                let c = f64::from(C) * cap;
                let t = (i as u64 * PHASE_S) as f64;
                let _ = write!(
                    pts,
                    "{:.1},{:.1} {:.1},{:.1} ",
                    x(t),
                    y(c),
                    x(t + PHASE_S as f64),
                    y(c)
                );
            }
            let _ = writeln!(
                s,
                r##"<polyline points="{pts}" fill="none" stroke="#000" stroke-dasharray="4 3"/>"##
            );
            for (k, run) in runs.iter().enumerate() {
                if run.limits.is_empty() {
                    continue;
                }
                let pts: String = run
                    .limits
                    .iter()
                    .map(|(t, l)| format!("{:.1},{:.1} ", x(*t as f64 / 1e3), y(f64::from(*l))))
                    .collect();
                let _ = writeln!(
                    s,
                    r#"<polyline points="{pts}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
                    colors[k % colors.len()]
                );
            }
        } else {
            let _ = writeln!(
                s,
                r##"<line x1="{pad}" x2="{0}" y1="{1:.1}" y2="{1:.1}" stroke="#000" stroke-dasharray="4 3"/><text x="{2}" y="{3:.1}">2x unloaded p99</text>"##,
                w - pad,
                y(2.0 * unloaded_p99),
                pad + 4.0,
                y(2.0 * unloaded_p99) - 4.0
            );
            for (k, run) in runs.iter().enumerate() {
                let series = p99_series(run);
                let mut pts = String::new();
                for (i, v) in series.iter().enumerate() {
                    if v.is_finite() {
                        let _ = write!(
                            pts,
                            "{:.1},{:.1} ",
                            x(i as f64 * BUCKET_MS as f64 / 1e3),
                            y(*v)
                        );
                    }
                }
                let _ = writeln!(
                    s,
                    r#"<polyline points="{pts}" fill="none" stroke="{}" stroke-width="1.2"/>"#,
                    colors[k % colors.len()]
                );
            }
        }
    }
    // Legend.
    let ly = height - 14.0;
    for (k, run) in runs.iter().enumerate() {
        let lx = pad + k as f64 * 120.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="4" fill="{}"/><text x="{}" y="{ly}">{}</text>"#,
            ly - 5.0,
            colors[k % colors.len()],
            lx + 16.0,
            run.name
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Issue 21's scenario for Vegas alone: 20 workers, open-loop load at 2x their capacity,
/// then the workers halve to 10 (4x) for long enough for several baseline re-probes (one
/// every 0.5..1 x 30 x limit windows). Netflix's re-probe took a queued window's latency as
/// the no-load latency and the limit jumped back to about 2x capacity; it must re-converge
/// to capacity plus Vegas's 3..6 queued requests and stay there. Prints the limit every 5 s
/// and returns the mean and max limit of the last 30 s (probes at limit 3 excluded).
async fn vegas_capacity_halves() -> Result<(f64, u32), BoxError> {
    const WORKERS: u32 = 20;
    const BEFORE_S: u64 = 30;
    const AFTER_S: u64 = 90;
    let backend = Backend::with_capacity(WORKERS);
    let vegas = Vegas::builder().min_limit(4).max_limit(400).build()?;
    let (svc, h) = adaptive(&backend, vegas, false);
    let t0 = Instant::now();
    let limits = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let limits = limits.clone();
        let h = h.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(BUCKET_MS));
            loop {
                tick.tick().await;
                limits
                    .lock()
                    .unwrap()
                    .push((t0.elapsed().as_millis() as u64, h.limit()));
            }
        })
    };
    let per_ms = 2.0 * f64::from(WORKERS) / BASE_MS;
    let (mut carry, mut seq) = (0.0, 0u64);
    let mut tasks = tokio::task::JoinSet::new();
    for ms in 0..(BEFORE_S + AFTER_S) * 1000 {
        if ms == BEFORE_S * 1000 {
            backend.set_capacity(WORKERS / 2);
        }
        carry += per_ms;
        while carry >= 1.0 {
            carry -= 1.0;
            seq += 1;
            let mut req = http::Request::new(());
            req.extensions_mut().insert(seq);
            let svc = svc.clone();
            tasks.spawn(async move {
                let _ = svc.oneshot(req).await;
            });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        while tasks.try_join_next().is_some() {}
    }
    sampler.abort();
    tasks.abort_all();
    let limits = std::mem::take(&mut *limits.lock().unwrap());
    println!(
        "\nVegas, {WORKERS} -> {} workers at {BEFORE_S} s (load 2x, then 4x capacity): limit every 5 s",
        WORKERS / 2
    );
    let line: Vec<String> = limits
        .iter()
        .filter(|(t, _)| t % 5000 < BUCKET_MS)
        .map(|(t, l)| format!("{}s:{l}", t / 1000))
        .collect();
    println!("{}", line.join(" "));
    let end = (BEFORE_S + AFTER_S) * 1000;
    let late: Vec<u32> = limits
        .iter()
        .filter(|(t, l)| *t >= end - 30_000 && *l > 3)
        .map(|(_, l)| *l)
        .collect();
    let mean = late.iter().map(|l| f64::from(*l)).sum::<f64>() / late.len().max(1) as f64;
    let max = late.iter().copied().max().unwrap_or(0);
    let probes = limits
        .windows(2)
        .filter(|p| p[0].1 > 3 && p[1].1 <= 3)
        .count();
    println!(
        "last 30 s: mean limit {mean:.1}, max {max} (capacity {}; Vegas keeps 3..6 queued); {probes} baseline probes in the run",
        WORKERS / 2
    );
    Ok((mean, max))
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    let wall = std::time::Instant::now();
    let min = 4;
    let mut runs = Vec::new();
    runs.push(
        run("no limit", |b| {
            (
                BoxCloneService::new(b.service().map_err(BoxError::from)),
                None,
            )
        })
        .await,
    );
    runs.push(
        run("tower 4C", |b| {
            let svc = ServiceBuilder::new()
                .load_shed()
                .concurrency_limit(4 * C as usize)
                .service(b.service());
            (BoxCloneService::new(svc), None)
        })
        .await,
    );
    runs.push(
        run("tower C/2", |b| {
            let svc = ServiceBuilder::new()
                .load_shed()
                .concurrency_limit(C as usize / 2)
                .service(b.service());
            (BoxCloneService::new(svc), None)
        })
        .await,
    );
    let aimd = || {
        Aimd::builder()
            .min_limit(min)
            .max_limit(400)
            .timeout(Duration::from_millis(SLO_MS as u64))
            .build()
    };
    let vegas = || Vegas::builder().min_limit(min).max_limit(400).build();
    let g2 = |probe: u64| {
        Gradient2::builder()
            .min_limit(min)
            .max_limit(400)
            .probe_interval(Some(Duration::from_secs(probe)))
            .build()
    };
    let (a, v, g, gs, gp) = (aimd()?, vegas()?, g2(60)?, g2(PROBE_S)?, g2(60)?);
    runs.push(
        run("aimd", |b| {
            let (s, h) = adaptive(b, a, false);
            (s, Some(h))
        })
        .await,
    );
    runs.push(
        run("vegas", |b| {
            let (s, h) = adaptive(b, v, false);
            (s, Some(h))
        })
        .await,
    );
    runs.push(
        run("gradient2", |b| {
            let (s, h) = adaptive(b, g, false);
            (s, Some(h))
        })
        .await,
    );
    runs.push(
        run("gradient2 probe", |b| {
            let (s, h) = adaptive(b, gs, false);
            (s, Some(h))
        })
        .await,
    );
    runs.push(
        run("gradient2+prio", |b| {
            let (s, h) = adaptive(b, gp, true);
            (s, Some(h))
        })
        .await,
    );

    let unloaded_p99 = phase_stats(&runs[0], 0).p99;
    println!(
        "C = {C} workers x {BASE_MS} ms (capacity {} req/s), SLO {SLO_MS} ms, unloaded p99 {unloaded_p99:.1} ms, phases of {PHASE_S} s\n",
        f64::from(C) * 1e3 / BASE_MS
    );
    println!(
        "| limiter | phase | mean limit | goodput (% of C) | admitted % | p50 ms | p99 ms | Critical ok % | Low ok % |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        for (i, (_, _, label)) in PHASES.iter().enumerate() {
            let s = phase_stats(run, i);
            println!(
                "| {} | {label} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                run.name, s.limit, s.goodput, s.admitted, s.p50, s.p99, s.crit, s.low
            );
        }
    }
    println!(
        "\n| limiter | 4x goodput % of C | 4x p99 / unloaded p99 | converged after C/2 (s) | after C back (s) | Critical ok % (4x..end) | Low ok % (4x..end) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        let s = phase_stats(run, 3);
        let series = p99_series(run);
        let conv = |step| {
            convergence(&series, step * PHASE_S, 2.0 * unloaded_p99)
                .map_or("never".to_string(), |t| format!("{t:.1}"))
        };
        let (mut crit, mut low) = (0.0, 0.0);
        for p in 3..6 {
            let s = phase_stats(run, p);
            crit += s.crit / 3.0;
            low += s.low / 3.0;
        }
        println!(
            "| {} | {:.1} | {:.2} | {} | {} | {:.1} | {:.1} |",
            run.name,
            s.goodput,
            s.p99 / unloaded_p99,
            conv(4),
            conv(5),
            crit,
            low
        );
    }
    let (mean, max) = vegas_capacity_halves().await?;
    if max > 2 * 10 {
        return Err(format!(
            "Vegas stuck above capacity after it halved: mean {mean:.1}, max {max}"
        )
        .into());
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/overload.svg");
    std::fs::write(&path, svg(&runs, unloaded_p99))?;
    println!(
        "\nwrote {} ({:.1} s wall)",
        path.display(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}
