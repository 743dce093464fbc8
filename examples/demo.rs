//! The tower-pressure demo: every layer at work on real sockets, in about 30 seconds.
//!
//! * An axum API on 127.0.0.1 behind `ResilienceStack::inbound` (alerts, degradation,
//!   adaptive concurrency with priority shedding). Its handler does real CPU work on a small
//!   worker pool, reads `Constraints` to do less under pressure, and enriches answers by
//!   calling a backend.
//! * The backend is a second axum server on 127.0.0.1 that can be switched into an outage
//!   (every call a 503). The API calls it through `ResilienceStack::outbound` (budgeted
//!   retries, a circuit breaker that also trips at Emergency pressure, a per-attempt
//!   timeout) and falls back to an un-enriched answer when the breaker is open.
//! * An open-loop load generator offers requests at a rate relative to the measured capacity,
//!   with priorities (10 % critical, 20 % high, 40 % normal, 30 % low), through five phases:
//!   normal (0.5x), overload (4x), backend outage (1x), memory pressure (1x; a custom gauge
//!   ramps to 97 %, so the demo never endangers the machine), recovery (0.5x).
//!
//! Every second it prints one line (pressure level and driving signal, adaptive limit,
//! in-flight, served, shed, p99, breaker state, retries, alerts); at the end a summary of what
//! each layer did, and an SVG plot of limit, latency, pressure and breaker state in
//! `target/demo.svg`.
//!
//! ```text
//! cargo run --example demo                      # about 30 s
//! cargo run --example demo -- --quick           # about 10 s
//! cargo run --example demo -- --duration 60
//! cargo run --example demo -- --quick --check   # exit 1 unless shedding, a breaker opening
//!                                               # and closing, and recovery were all seen (CI)
//! ```

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_pressure::alert::AlertManager;
use tower_pressure::circuit_breaker::CircuitBreakerLayer;
use tower_pressure::circuit_breaker::CircuitState;
use tower_pressure::circuit_breaker::http::ServerErrorsAsFailures;
use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
use tower_pressure::event::{BreakerEventKind, Event, RetryEventKind};
use tower_pressure::pressure::{PressureMonitor, Signal, Thresholds};
use tower_pressure::priority::HeaderPriority;
use tower_pressure::rejection::handle_error;
use tower_pressure::retry::{Backoff, RetryLayer};
use tower_pressure::{Constraints, PressureLevel, Priority, ResilienceStack, ServiceBuilderExt};

// ---------------------------------------------------------------------------------------------
// Arguments

struct Args {
    duration: Duration,
    check: bool,
    simulated: bool,
    /// `--config FILE`: monitor, breaker, retry, timeout, limiter and alert settings from a
    /// configuration document (needs `--features config`); the file is watched and its
    /// thresholds and alert rules reload while the demo runs.
    config: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut duration = Duration::from_secs(30);
    let mut check = false;
    let mut simulated = false;
    let mut config = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => duration = Duration::from_secs(10),
            "--check" => {
                check = true;
                simulated = true;
            }
            "--simulated-pressure" => simulated = true,
            "--config" => {
                let v = it
                    .next()
                    .ok_or("--config needs a file (.toml, .yaml or .json)")?;
                config = Some(std::path::PathBuf::from(v));
            }
            "--duration" => {
                let v = it.next().ok_or("--duration needs a number of seconds")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--duration: {v:?} is not a whole number of seconds"))?;
                if !(5..=3600).contains(&secs) {
                    return Err(format!("--duration: {secs} must be within 5..=3600"));
                }
                duration = Duration::from_secs(secs);
            }
            "-h" | "--help" => {
                println!(
                    "usage: demo [--quick] [--duration SECONDS] [--simulated-pressure] [--check] [--config FILE]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Args {
        duration,
        check,
        simulated,
        config,
    })
}

// ---------------------------------------------------------------------------------------------
// Phases

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Normal,
    Overload,
    Outage,
    Memory,
    Recovery,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Normal,
        Phase::Overload,
        Phase::Outage,
        Phase::Memory,
        Phase::Recovery,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Normal => "normal",
            Phase::Overload => "overload 4x",
            Phase::Outage => "backend outage",
            Phase::Memory => "memory pressure",
            Phase::Recovery => "recovery",
        }
    }

    /// Offered load as a multiple of capacity.
    fn load(self) -> f64 {
        match self {
            Phase::Normal | Phase::Recovery => 0.5,
            Phase::Overload => 4.0,
            Phase::Outage | Phase::Memory => 1.0,
        }
    }

    /// Share of the run: [0.15, 0.25, 0.2, 0.2, 0.2].
    fn at(frac: f64) -> Phase {
        match frac {
            f if f < 0.15 => Phase::Normal,
            f if f < 0.40 => Phase::Overload,
            f if f < 0.60 => Phase::Outage,
            f if f < 0.80 => Phase::Memory,
            _ => Phase::Recovery,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The API's handler: real CPU work on a small worker pool, less of it under pressure.

const WORKERS: usize = 2;
const FULL_ENTITIES: usize = 200;

fn analyse(entities: usize, rounds: usize) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for e in 0..entities {
        for r in 0..rounds {
            h ^= (e * 31 + r) as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn rounds(c: &Constraints) -> usize {
    if c.should_skip_expensive() { 300 } else { 1200 }
}

type Backend =
    BoxCloneSyncService<Request<Full<Bytes>>, http::Response<hyper::body::Incoming>, BoxError>;

#[derive(Clone)]
struct AppState {
    workers: Arc<Semaphore>,
    backend: Backend,
    backend_uri: http::Uri,
    fallbacks: Arc<AtomicU64>,
    enriched: Arc<AtomicU64>,
}

async fn analyze(State(app): State<AppState>, c: Constraints) -> Result<String, StatusCode> {
    let permit = app
        .workers
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let entities = c.entity_limit(FULL_ENTITIES);
    let r = rounds(&c);
    let h = tokio::task::spawn_blocking(move || {
        let h = analyse(entities, r);
        drop(permit);
        h
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;

    // Enrichment from the backend, skipped when simplified methods are in force (Critical and
    // above); a failing backend (or an open breaker) means the answer is served without it:
    // the seed's fallback strategy.
    let enrichment = if c.should_use_simplified() {
        "skipped"
    } else {
        let req = Request::get(app.backend_uri.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        match app.backend.clone().oneshot(req).await {
            Ok(res) if res.status().is_success() => {
                let _ = res.into_body().collect().await;
                app.enriched.fetch_add(1, Ordering::Relaxed);
                "enriched"
            }
            _ => {
                app.fallbacks.fetch_add(1, Ordering::Relaxed);
                "fallback"
            }
        }
    };
    Ok(format!("{} {entities} {enrichment} {}", c.level(), h & 1))
}

// ---------------------------------------------------------------------------------------------
// Per-second statistics

#[derive(Default)]
struct Tick {
    ok: u64,
    shed: u64,
    errors: u64,
    dropped: u64,
    latencies_us: Vec<u64>,
}

/// A breaker transition: seconds since start, from, to, reason.
type Transition = (f64, CircuitState, CircuitState, String);

#[derive(Clone)]
struct Row {
    t: f64,
    phase: Phase,
    level: PressureLevel,
    limit: u32,
    in_flight: u32,
    ok: u64,
    shed: u64,
    p99_ms: f64,
    breaker: CircuitState,
}

fn percentile(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(2);
        }
    };
    let quick = args.duration <= Duration::from_secs(12);

    // Capacity: measured, so the phases mean the same on a fast or a slow machine.
    let full = Constraints::unconstrained();
    let mut samples = Vec::new();
    for _ in 0..15 {
        let t = std::time::Instant::now();
        std::hint::black_box(analyse(FULL_ENTITIES, rounds(&full)));
        samples.push(t.elapsed().as_micros() as u64);
    }
    let work_us = percentile(&mut samples, 0.5).max(50);
    let capacity = WORKERS as f64 * 1e6 / work_us as f64;

    // One monitor: real CPU, memory, cgroup, PSI and runtime signals, plus a custom gauge
    // that simulates memory pressure in the memory phase.
    let simulated_memory = Arc::new(AtomicU64::new(40f64.to_bits()));
    let gauge = simulated_memory.clone();
    let file = file_config::load(args.config.as_deref())?;
    let mut builder = file
        .monitor_builder()?
        .unwrap_or_else(|| PressureMonitor::builder().interval(Duration::from_millis(250)))
        .gauge(
            "simulated_memory",
            Some(Thresholds::UTILISATION),
            move || f64::from_bits(gauge.load(Ordering::Relaxed)),
        );
    if args.simulated {
        // Real signals are still read and shown, but only the simulated gauge drives the
        // level: on a shared or busy host (CI) the phases then mean the same every run.
        for s in Signal::BUILTIN {
            builder = builder.observe_only(s);
        }
    }
    let monitor = builder.build()?;

    // Alerts: count them, print nothing but the summary.
    let alert_count = Arc::new(AtomicU64::new(0));
    let recent_alerts: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let (ac, ra) = (alert_count.clone(), recent_alerts.clone());
    let alerts = file
        .alerts_builder(&monitor)?
        .unwrap_or_else(AlertManager::builder)
        .monitor(monitor.clone())
        .tracing(false)
        .callback(move |a| {
            ac.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut r) = ra.lock() {
                if r.len() == 6 {
                    r.pop_front();
                }
                r.push_back(format!("{} {}", a.severity(), a.message()));
            }
        })
        .build()?;

    // Events: retries and breaker transitions, counted from the one bus.
    let retries = Arc::new(AtomicU64::new(0));
    let budget_refusals = Arc::new(AtomicU64::new(0));
    let transitions: Arc<Mutex<Vec<Transition>>> = Arc::default();
    let start = Instant::now();
    {
        let mut rx = monitor.events().subscribe();
        let (retries, refusals, transitions) = (
            retries.clone(),
            budget_refusals.clone(),
            transitions.clone(),
        );
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(Event::Retry(r)) => match r.kind {
                        RetryEventKind::Attempt { .. } => {
                            retries.fetch_add(1, Ordering::Relaxed);
                        }
                        RetryEventKind::BudgetExhausted { count } => {
                            refusals.fetch_add(count, Ordering::Relaxed);
                        }
                        _ => {}
                    },
                    Ok(Event::Breaker(b)) => {
                        if let BreakerEventKind::StateTransition { from, to, reason } = &b.kind
                            && let Ok(mut t) = transitions.lock()
                        {
                            t.push((
                                start.elapsed().as_secs_f64(),
                                *from,
                                *to,
                                reason.to_string(),
                            ));
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        });
    }

    // The backend: healthy, or (during the outage) a 503 for every call.
    let outage = Arc::new(AtomicBool::new(false));
    let backend_calls = Arc::new(AtomicU64::new(0));
    let (o, bc) = (outage.clone(), backend_calls.clone());
    let backend_app = Router::new().route(
        "/enrich",
        get(move || {
            let (o, bc) = (o.clone(), bc.clone());
            async move {
                bc.fetch_add(1, Ordering::Relaxed);
                if o.load(Ordering::Relaxed) {
                    (StatusCode::SERVICE_UNAVAILABLE, "outage")
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    (StatusCode::OK, "enrichment")
                }
            }
        }),
    );
    let backend_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = backend_listener.local_addr()?;
    tokio::spawn(async move { axum::serve(backend_listener, backend_app).await });

    // The outbound stack around a hyper-util client.
    let wait = if quick {
        Duration::from_millis(800)
    } else {
        Duration::from_secs(2)
    };
    let breaker = match file.breaker_builder(&monitor, wait)? {
        Some(b) => b,
        None => CircuitBreakerLayer::builder()
            .name("backend")
            .failure_threshold(5)
            .count_window(50)
            .minimum_calls(10)
            .wait_duration(wait)
            .permitted_calls_in_half_open(3)
            .success_threshold(3)
            .monitor(monitor.clone())
            .trip_at_level(PressureLevel::Emergency),
    }
    .build()?
    .classifier(ServerErrorsAsFailures);
    let breaker_handle = breaker.handle();
    file.attach_breaker(&breaker_handle);
    let retry = match file.retry_builder(&monitor)? {
        Some(b) => b,
        None => RetryLayer::http(monitor.clone())
            .name("backend")
            .max_attempts(3)
            .backoff(
                Backoff::exponential(Duration::from_millis(5), 2.0).max(Duration::from_millis(50)),
            )
            .time_bound(Duration::from_millis(500)),
    }
    .build()?;
    file.attach_retry(retry.handle());
    let outbound = ResilienceStack::outbound(monitor.clone())
        .breaker(breaker)
        .retry(retry)
        .timeout(file.timeout().unwrap_or(Duration::from_millis(300)));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let backend: Backend = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .resilience(outbound)
            .map_err(Into::<BoxError>::into)
            .service(client),
    );

    // The API: inbound stack, priorities from `x-priority`.
    let priority = HeaderPriority::new(http::HeaderName::from_static("x-priority"));
    let limiter = match file.limiter_builder(&monitor)? {
        Some(b) => b.classifier(priority).build()?,
        None => AdaptiveConcurrencyLayer::builder(monitor.clone())
            .name("api")
            .classifier(priority)
            .retry_after(Duration::from_millis(200))
            .build()?,
    };
    let limiter_handle = limiter.handle();
    let inbound = ResilienceStack::inbound(monitor.clone())
        .concurrency(limiter)
        .alert_manager(alerts.clone());
    let fallbacks = Arc::new(AtomicU64::new(0));
    let enriched = Arc::new(AtomicU64::new(0));
    let state = AppState {
        workers: Arc::new(Semaphore::new(WORKERS)),
        backend,
        backend_uri: format!("http://{backend_addr}/enrich").parse()?,
        fallbacks: fallbacks.clone(),
        enriched: enriched.clone(),
    };
    let app = Router::new()
        .route("/analyze", get(analyze))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .resilience(inbound.clone()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    if args.simulated {
        println!("pressure: simulated (real signals observed only; see --help)");
    }
    if let Some(line) = file.start(&monitor, &alerts) {
        println!("{line}");
    }
    println!(
        "tower-pressure demo: API http://{addr}/analyze, backend http://{backend_addr}/enrich, \
         {} s; capacity ~{capacity:.0} req/s ({WORKERS} workers x {work_us} us)",
        args.duration.as_secs()
    );
    println!(
        "{:>4} {:<15} {:<22} {:>5} {:>5} {:>6} {:>6} {:>8} {:<9} {:>7} {:>6}",
        "t",
        "phase",
        "pressure (driver)",
        "limit",
        "infl",
        "ok/s",
        "shed/s",
        "p99 ms",
        "breaker",
        "retries",
        "alerts"
    );

    // Open-loop load: one request every 1/rate seconds, each its own task, at most 512
    // outstanding (beyond that the generator drops and counts the request client-side).
    let tick: Arc<Mutex<Tick>> = Arc::default();
    let totals: Arc<Mutex<[Tick; 5]>> = Arc::default();
    let phase_now = Arc::new(AtomicUsize::new(0));
    let outstanding = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}/analyze").parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let (tick, totals, phase_now, outstanding, sent, stop) = (
            tick.clone(),
            totals.clone(),
            phase_now.clone(),
            outstanding.clone(),
            sent.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(42);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let phase = Phase::ALL[phase_now.load(Ordering::Relaxed)];
                let rate = (capacity * phase.load()).max(1.0);
                next += Duration::from_secs_f64(1.0 / rate);
                if next > Instant::now() {
                    tokio::time::sleep_until(next).await;
                } else if Instant::now() - next > Duration::from_millis(100) {
                    next = Instant::now(); // the generator itself fell behind; do not burst
                }
                let roll = rng.u32(0..100);
                let prio = match roll {
                    0..10 => Priority::Critical,
                    10..30 => Priority::High,
                    30..70 => Priority::Normal,
                    _ => Priority::Low,
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if outstanding.load(Ordering::Relaxed) >= 512 {
                    if let Ok(mut t) = tick.lock() {
                        t.dropped += 1;
                    }
                    continue;
                }
                outstanding.fetch_add(1, Ordering::Relaxed);
                let (http, uri, tick, totals, outstanding) = (
                    http.clone(),
                    uri.clone(),
                    tick.clone(),
                    totals.clone(),
                    outstanding.clone(),
                );
                let phase_idx = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
                tokio::spawn(async move {
                    let t0 = Instant::now();
                    let req = Request::get(uri)
                        .header("x-priority", prio.as_str())
                        .body(Empty::new());
                    let outcome = match req {
                        Ok(req) => {
                            match tokio::time::timeout(Duration::from_secs(5), http.request(req))
                                .await
                            {
                                Ok(Ok(res)) => {
                                    let status = res.status();
                                    let _ = res.into_body().collect().await;
                                    if status.is_success() {
                                        0
                                    } else if status == StatusCode::SERVICE_UNAVAILABLE
                                        || status == StatusCode::TOO_MANY_REQUESTS
                                    {
                                        1
                                    } else {
                                        2
                                    }
                                }
                                _ => 2,
                            }
                        }
                        Err(_) => 2,
                    };
                    let us = t0.elapsed().as_micros() as u64;
                    let record = |t: &mut Tick| match outcome {
                        0 => {
                            t.ok += 1;
                            t.latencies_us.push(us);
                        }
                        1 => t.shed += 1,
                        _ => t.errors += 1,
                    };
                    if let Ok(mut t) = tick.lock() {
                        record(&mut t);
                    }
                    if let Ok(mut t) = totals.lock() {
                        record(&mut t[phase_idx]);
                    }
                    outstanding.fetch_sub(1, Ordering::Relaxed);
                });
            }
        })
    };

    // The table, one line a second; phase changes drive the outage and the memory gauge.
    let mut rows: Vec<Row> = Vec::new();
    let mut max_level = PressureLevel::Normal;
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut last_print = Instant::now();
    let mut last_p99 = 0.0;
    loop {
        ticker.tick().await;
        let t = start.elapsed();
        if t >= args.duration {
            break;
        }
        let frac = t.as_secs_f64() / args.duration.as_secs_f64();
        let phase = Phase::at(frac);
        phase_now.store(
            Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0),
            Ordering::Relaxed,
        );
        outage.store(phase == Phase::Outage, Ordering::Relaxed);
        let mem = if phase == Phase::Memory {
            // Ramp from 60 % to 97 % over the phase: Elevated, High, then Critical about two
            // thirds in (which gives the breaker time to close after the outage).
            let into = ((frac - 0.60) / 0.20).clamp(0.0, 1.0);
            60.0 + 37.0 * into
        } else {
            40.0
        };
        simulated_memory.store(mem.to_bits(), Ordering::Relaxed);
        max_level = max_level.max(monitor.level());

        // A plot point every tick (100 ms); a printed line and a new p99 every second.
        let s = monitor.snapshot();
        let mut row = Row {
            t: t.as_secs_f64(),
            phase,
            level: s.level(),
            limit: limiter_handle.effective_limit(),
            in_flight: limiter_handle.in_flight(),
            ok: 0,
            shed: 0,
            p99_ms: last_p99,
            breaker: breaker_handle.state(),
        };
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let mut tk = match tick.lock() {
                Ok(mut g) => std::mem::take(&mut *g),
                Err(_) => Tick::default(),
            };
            last_p99 = percentile(&mut tk.latencies_us, 0.99) as f64 / 1000.0;
            row.p99_ms = last_p99;
            row.ok = tk.ok;
            row.shed = tk.shed;
            let pressure = format!("{} ({})", s.level(), monitor.signal_name(s.driver()));
            println!(
                "{:>3}s {:<15} {:<22} {:>5} {:>5} {:>6} {:>6} {:>8.1} {:<9} {:>7} {:>6}",
                t.as_secs(),
                phase.name(),
                pressure,
                row.limit,
                row.in_flight,
                row.ok,
                row.shed,
                row.p99_ms,
                row.breaker.as_str(),
                retries.load(Ordering::Relaxed),
                alert_count.load(Ordering::Relaxed)
            );
        }
        rows.push(row);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = generator.await;
    // Let outstanding requests finish (bounded).
    let drain = Instant::now();
    while outstanding.load(Ordering::Relaxed) > 0 && drain.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Summary.
    let totals = match totals.lock() {
        Ok(g) => g
            .iter()
            .map(|t| (t.ok, t.shed, t.errors, t.latencies_us.clone()))
            .collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    };
    let total_ok: u64 = totals.iter().map(|t| t.0).sum();
    let total_shed: u64 = totals.iter().map(|t| t.1).sum();
    let total_err: u64 = totals.iter().map(|t| t.2).sum();
    let mut lat: Vec<u64> = totals.iter().flat_map(|t| t.3.iter().copied()).collect();
    let p50 = percentile(&mut lat, 0.5) as f64 / 1000.0;
    let p99 = percentile(&mut lat, 0.99) as f64 / 1000.0;
    let secs = args.duration.as_secs_f64();
    let transitions = transitions.lock().map(|t| t.clone()).unwrap_or_default();
    let opened = transitions
        .iter()
        .filter(|t| t.2 == CircuitState::Open)
        .count();
    let closed_again = transitions
        .iter()
        .any(|t| t.1 == CircuitState::HalfOpen && t.2 == CircuitState::Closed);
    let recovery_ok = totals.get(4).map(|t| t.0).unwrap_or(0);
    let recovery_err = totals.get(4).map(|t| t.2).unwrap_or(0);

    println!();
    println!("summary ({:.0} s, capacity ~{capacity:.0} req/s)", secs);
    println!(
        "  requests   sent {}  ok {total_ok}  shed {total_shed}  errors {total_err}  dropped by generator {}",
        sent.load(Ordering::Relaxed),
        totals_dropped(&tick)
    );
    println!(
        "  goodput    {:.0} req/s overall; latency of served requests p50 {p50:.1} ms, p99 {p99:.1} ms",
        total_ok as f64 / secs
    );
    for (i, p) in Phase::ALL.iter().enumerate() {
        if let Some((ok, shed, err, l)) = totals.get(i) {
            let mut l = l.clone();
            println!(
                "  {:<15} ok {:>6}  shed {:>6}  errors {:>4}  p99 {:>7.1} ms",
                p.name(),
                ok,
                shed,
                err,
                percentile(&mut l, 0.99) as f64 / 1000.0
            );
        }
    }
    println!("  degradation  highest level {max_level}; level changes:");
    for c in monitor.level_history().iter().rev().take(8).rev() {
        println!(
            "      {:>5.1}s {} -> {} ({} = {:.1})",
            c.at.saturating_duration_since(start).as_secs_f64(),
            c.from,
            c.to,
            c.signal_name,
            c.value
        );
    }
    println!(
        "  concurrency  limit now {} (learned {}), shed: critical {} high {} normal {} low {}",
        limiter_handle.effective_limit(),
        limiter_handle.limit(),
        limiter_handle.shed_count(Priority::Critical),
        limiter_handle.shed_count(Priority::High),
        limiter_handle.shed_count(Priority::Normal),
        limiter_handle.shed_count(Priority::Low)
    );
    println!(
        "  retry        {} retries, {} refused by the budget",
        retries.load(Ordering::Relaxed),
        budget_refusals.load(Ordering::Relaxed)
    );
    println!(
        "  breaker      opened {opened} time(s), closed again: {closed_again}; now {}; backend calls {}, enriched {}, fallbacks {}",
        breaker_handle.state(),
        backend_calls.load(Ordering::Relaxed),
        enriched.load(Ordering::Relaxed),
        fallbacks.load(Ordering::Relaxed)
    );
    for (t, from, to, reason) in transitions.iter().take(10) {
        println!("      {t:>5.1}s {from} -> {to} ({reason})");
    }
    println!(
        "  alerts       {} raised",
        alert_count.load(Ordering::Relaxed)
    );
    if let Ok(r) = recent_alerts.lock() {
        for a in r.iter() {
            println!("      {a}");
        }
    }

    let svg_path = write_svg(&rows, capacity)?;
    println!("  plot         {svg_path}");

    if args.check {
        let mut failed = Vec::new();
        if total_shed == 0 {
            failed.push("no request was shed");
        }
        if opened == 0 {
            failed.push("the breaker never opened");
        }
        if !closed_again {
            failed.push("the breaker never closed again");
        }
        if recovery_ok == 0 || recovery_err > recovery_ok / 10 {
            failed.push("the recovery phase did not serve requests normally");
        }
        if failed.is_empty() {
            println!("check: ok (shedding, breaker opened and closed, recovery)");
        } else {
            println!("check: FAILED: {}", failed.join("; "));
            std::process::exit(1);
        }
    }
    Ok(())
}

fn totals_dropped(tick: &Arc<Mutex<Tick>>) -> u64 {
    tick.lock().map(|t| t.dropped).unwrap_or(0)
}

/// Writes `target/demo.svg`: four stacked charts over time.
fn write_svg(rows: &[Row], capacity: f64) -> Result<String, BoxError> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&dir)?;
    let path = format!("{dir}/demo.svg");
    let (w, h, pad) = (900.0, 150.0, 40.0);
    let t_max = rows.last().map(|r| r.t).unwrap_or(1.0).max(1.0);
    let x = |t: f64| pad + (w - 2.0 * pad) * t / t_max;
    let mut svg = String::new();
    let total_h = 4.0 * (h + 20.0) + 30.0;
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{total_h}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="{pad}" y="18" font-size="14">tower-pressure demo (capacity ~{capacity:.0} req/s)</text>"#
    );
    type Series<'a> = (&'a str, &'a str, Box<dyn Fn(&Row) -> f64 + 'a>);
    let charts: Vec<(&str, Vec<Series>)> = vec![
        (
            "adaptive limit / in-flight",
            vec![
                ("limit", "#1f77b4", Box::new(|r: &Row| r.limit as f64)),
                (
                    "in-flight",
                    "#ff7f0e",
                    Box::new(|r: &Row| r.in_flight as f64),
                ),
            ],
        ),
        (
            "p99 latency of served requests (ms)",
            vec![("p99", "#d62728", Box::new(|r: &Row| r.p99_ms))],
        ),
        (
            "pressure level (0 normal .. 4 emergency)",
            vec![(
                "level",
                "#9467bd",
                Box::new(|r: &Row| r.level.as_u8() as f64),
            )],
        ),
        (
            "breaker (0 closed, 1 half-open, 2 open)",
            vec![(
                "breaker",
                "#2ca02c",
                Box::new(|r: &Row| match r.breaker {
                    CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly => {
                        0.0
                    }
                    CircuitState::HalfOpen => 1.0,
                    CircuitState::Open | CircuitState::ForcedOpen => 2.0,
                }),
            )],
        ),
    ];
    for (i, (title, series)) in charts.iter().enumerate() {
        let top = 30.0 + i as f64 * (h + 20.0);
        let max = series
            .iter()
            .flat_map(|(_, _, f)| rows.iter().map(f))
            .fold(1.0f64, f64::max);
        let y = |v: f64| top + h - (h - 20.0) * v / max;
        let _ = write!(
            svg,
            r##"<rect x="{pad}" y="{top}" width="{}" height="{h}" fill="none" stroke="#ccc"/><text x="{}" y="{}">{title} (max {max:.0})</text>"##,
            w - 2.0 * pad,
            pad + 4.0,
            top + 12.0
        );
        // Phase boundaries.
        let mut last = None;
        for r in rows {
            if last != Some(r.phase) {
                let _ = write!(
                    svg,
                    r##"<line x1="{0}" x2="{0}" y1="{top}" y2="{1}" stroke="#eee"/><text x="{2}" y="{3}" fill="#999">{4}</text>"##,
                    x(r.t).max(pad),
                    top + h,
                    x(r.t).max(pad) + 2.0,
                    top + h - 4.0,
                    r.phase.name()
                );
                last = Some(r.phase);
            }
        }
        for (j, (name, color, f)) in series.iter().enumerate() {
            let pts: Vec<String> = rows
                .iter()
                .map(|r| format!("{:.1},{:.1}", x(r.t), y(f(r))))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{color}">{name}</text>"#,
                pts.join(" "),
                w - pad - 80.0,
                top + 14.0 + 12.0 * j as f64
            );
        }
    }
    svg.push_str("</svg>\n");
    std::fs::write(&path, svg)?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// `--config FILE` (with `--features config`; the demo's own settings otherwise)

#[cfg(feature = "config")]
mod file_config {
    use std::path::Path;
    use std::time::Duration;

    use std::sync::Mutex;
    use tower::BoxError;
    use tower_pressure::alert::{AlertManager, AlertManagerBuilder};

    use tower_pressure::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerHandle};
    use tower_pressure::concurrency::AdaptiveConcurrencyBuilder;
    use tower_pressure::config::{Config, ConfigHandle};
    use tower_pressure::pressure::{PressureMonitor, PressureMonitorBuilder};
    use tower_pressure::retry::http::HttpClassifier;
    use tower_pressure::retry::{RetryHandle, RetryLayerBuilder};

    pub(crate) struct FileConfig {
        config: Option<(Config, std::path::PathBuf)>,
        /// The layers built from the document, for the watched handle's reloads.
        breaker: Mutex<Option<CircuitBreakerHandle>>,
        retry: Mutex<Option<RetryHandle>>,
        /// Set when the document's breaker waits were scaled down to the run (see
        /// `breaker_builder`): what to print.
        scaled: Mutex<Option<String>>,
    }

    pub(crate) fn load(path: Option<&Path>) -> Result<FileConfig, BoxError> {
        Ok(FileConfig {
            config: match path {
                Some(p) => Some((Config::from_file(p)?, p.to_path_buf())),
                None => None,
            },
            breaker: Mutex::new(None),
            retry: Mutex::new(None),
            scaled: Mutex::new(None),
        })
    }

    impl FileConfig {
        fn get(&self) -> Option<&Config> {
            self.config.as_ref().map(|(c, _)| c)
        }
        pub(crate) fn monitor_builder(&self) -> Result<Option<PressureMonitorBuilder>, BoxError> {
            Ok(self.get().map(|c| c.monitor.builder()).transpose()?)
        }
        pub(crate) fn alerts_builder(
            &self,
            monitor: &PressureMonitor,
        ) -> Result<Option<AlertManagerBuilder>, BoxError> {
            Ok(self.get().map(|c| c.alerts.builder(monitor)).transpose()?)
        }
        /// The document's breaker. The demo compresses an incident into seconds (the outage
        /// phase of a 10 s quick run lasts about 2 s), so a breaker that waits longer than
        /// `wait` (the demo's own open wait for this run length: 0.8 s quick, 2 s otherwise)
        /// before probing could never show the recovery: its open wait is scaled down to
        /// `wait` (and its cap by the same factor) for this run, and the demo says so.
        /// Every other key is used as written. A production document keeps its 60 s.
        pub(crate) fn breaker_builder(
            &self,
            monitor: &PressureMonitor,
            wait: Duration,
        ) -> Result<Option<CircuitBreakerBuilder>, BoxError> {
            let Some(c) = self.get() else { return Ok(None) };
            let mut b = c.outbound.breaker.clone();
            let configured = b.wait_duration.get();
            if configured > wait {
                let factor = wait.as_secs_f64() / configured.as_secs_f64();
                let max = b.max_wait_duration.get().mul_f64(factor).max(wait);
                b.wait_duration = wait.into();
                b.max_wait_duration = max.into();
                if let Ok(mut s) = self.scaled.lock() {
                    *s = Some(format!(
                        "config: outbound.breaker.wait_duration {} scaled to {} (and \
                         max_wait_duration to {}) to fit this {} run; breaker settings are \
                         not reloaded from the file in this run",
                        c.outbound.breaker.wait_duration,
                        b.wait_duration,
                        b.max_wait_duration,
                        if wait < Duration::from_secs(1) {
                            "quick"
                        } else {
                            "short"
                        },
                    ));
                }
            }
            Ok(Some(b.builder(monitor)?))
        }
        /// Reloads of `outbound.breaker` reach `handle` (unless the waits were scaled).
        pub(crate) fn attach_breaker(&self, handle: &CircuitBreakerHandle) {
            let scaled = self.scaled.lock().map(|s| s.is_some()).unwrap_or(true);
            if self.get().is_some()
                && !scaled
                && let Ok(mut b) = self.breaker.lock()
            {
                *b = Some(handle.clone());
            }
        }
        /// Reloads of `outbound.retry` reach `handle`.
        pub(crate) fn attach_retry(&self, handle: RetryHandle) {
            if self.get().is_some()
                && let Ok(mut r) = self.retry.lock()
            {
                *r = Some(handle);
            }
        }
        pub(crate) fn retry_builder(
            &self,
            monitor: &PressureMonitor,
        ) -> Result<Option<RetryLayerBuilder<HttpClassifier>>, BoxError> {
            Ok(self
                .get()
                .map(|c| c.outbound.retry.builder(monitor))
                .transpose()?
                .map(|b| b.classifier(HttpClassifier::default())))
        }
        pub(crate) fn limiter_builder(
            &self,
            monitor: &PressureMonitor,
        ) -> Result<Option<AdaptiveConcurrencyBuilder>, BoxError> {
            Ok(self
                .get()
                .map(|c| c.inbound.concurrency.builder(monitor))
                .transpose()?)
        }
        pub(crate) fn timeout(&self) -> Option<Duration> {
            self.get().map(|c| c.outbound.timeout.get())
        }
        /// Starts watching the file; the line to print.
        pub(crate) fn start(
            &self,
            monitor: &PressureMonitor,
            alerts: &AlertManager,
        ) -> Option<String> {
            let (config, path) = self.config.as_ref()?;
            let mut handle = ConfigHandle::new(config.clone(), monitor.clone())
                .with_alert_manager(alerts.clone());
            let mut reloads = "thresholds, alert rules";
            if let Some(b) = self.breaker.lock().ok().and_then(|mut b| b.take()) {
                handle = handle.with_breaker(b);
                reloads = "thresholds, alert rules, breaker";
            }
            if let Some(r) = self.retry.lock().ok().and_then(|mut r| r.take()) {
                handle = handle.with_retry(r);
                reloads = if reloads.ends_with("breaker") {
                    "thresholds, alert rules, breaker and retry settings"
                } else {
                    "thresholds, alert rules and retry settings"
                };
            }
            if let Some(line) = self.scaled.lock().ok().and_then(|s| s.clone()) {
                println!("{line}");
            }
            let v = handle.version();
            // The task lives as long as the handle it holds weakly: keep one clone alive.
            let task = handle.watch_file(path.clone(), Duration::from_secs(1));
            std::mem::forget(handle);
            drop(task);
            Some(format!(
                "config: {} (version {}, hash {:016x}; {reloads} reload on change)",
                path.display(),
                v.version,
                v.hash
            ))
        }
    }
}

#[cfg(not(feature = "config"))]
mod file_config {
    use std::path::Path;
    use std::time::Duration;

    use tower::BoxError;
    use tower_pressure::alert::{AlertManager, AlertManagerBuilder};
    use tower_pressure::circuit_breaker::CircuitBreakerBuilder;
    use tower_pressure::concurrency::AdaptiveConcurrencyBuilder;
    use tower_pressure::pressure::{PressureMonitor, PressureMonitorBuilder};
    use tower_pressure::retry::RetryLayerBuilder;
    use tower_pressure::retry::http::HttpClassifier;

    pub(crate) struct FileConfig;

    pub(crate) fn load(path: Option<&Path>) -> Result<FileConfig, BoxError> {
        match path {
            Some(_) => Err("--config needs the `config` feature: \
                 cargo run --example demo --features config -- --config FILE"
                .into()),
            None => Ok(FileConfig),
        }
    }

    impl FileConfig {
        pub(crate) fn monitor_builder(&self) -> Result<Option<PressureMonitorBuilder>, BoxError> {
            Ok(None)
        }
        pub(crate) fn alerts_builder(
            &self,
            _: &PressureMonitor,
        ) -> Result<Option<AlertManagerBuilder>, BoxError> {
            Ok(None)
        }
        pub(crate) fn breaker_builder(
            &self,
            _: &PressureMonitor,
            _: Duration,
        ) -> Result<Option<CircuitBreakerBuilder>, BoxError> {
            Ok(None)
        }
        pub(crate) fn attach_breaker(
            &self,
            _: &tower_pressure::circuit_breaker::CircuitBreakerHandle,
        ) {
        }
        pub(crate) fn attach_retry(&self, _: tower_pressure::retry::RetryHandle) {}
        pub(crate) fn retry_builder(
            &self,
            _: &PressureMonitor,
        ) -> Result<Option<RetryLayerBuilder<HttpClassifier>>, BoxError> {
            Ok(None)
        }
        pub(crate) fn limiter_builder(
            &self,
            _: &PressureMonitor,
        ) -> Result<Option<AdaptiveConcurrencyBuilder>, BoxError> {
            Ok(None)
        }
        pub(crate) fn timeout(&self) -> Option<Duration> {
            None
        }
        pub(crate) fn start(&self, _: &PressureMonitor, _: &AlertManager) -> Option<String> {
            None
        }
    }
}
