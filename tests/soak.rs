//! Soak: steady overload through the full in-process stack with attacker-chosen keys.
//!
//! 64 tasks send requests back to back for `SOAK_SECS` seconds (default 15; CI budget) through
//! `DegradationLayer -> AlertLayer (per executor key) -> RetryLayer -> CircuitBreakerLayer
//! (per tenant key) -> a backend failing half the time`, at Critical pressure, with an
//! `AlertManager` consuming the shared event bus. Every request carries fresh random keys.
//!
//! Asserted: resident memory stays flat after warm-up (median of the last readings within 5 %
//! of the median of the first readings after warm-up) and every per-key registry and history
//! stays within its bound. Real time by necessity; nothing is asserted on speed.
#![cfg(all(feature = "http", target_os = "linux"))]

mod reliability_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, Request};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::alert::{AlertLayer, AlertManager};
use tower_pressure::circuit_breaker::CircuitBreakerLayer;
use tower_pressure::circuit_breaker::http::HeaderKey;
use tower_pressure::degradation::DegradationLayer;
use tower_pressure::event::EventBus;
use tower_pressure::pressure::{ManualSource, PressureMonitor, Signal};
use tower_pressure::retry::{Backoff, RetryLayer, Retryable};

const BREAKER_KEYS: usize = 128;
const ALERT_KEYS: usize = 64;
const HISTORY: usize = 100;
const TASKS: usize = 64;

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    tower_pressure::__fuzz::vm_rss(&s).expect("VmRSS") / 1024
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

fn backend() -> impl Service<Request<()>, Response = (), Error = BoxError, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_req: Request<()>| async {
        tokio::task::yield_now().await;
        if fastrand::bool() {
            Ok(())
        } else {
            Err(BoxError::from(Retryable::new(std::io::Error::other(
                "overloaded",
            ))))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_memory_flat_and_registries_bounded() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
        .max(6);
    let total = Duration::from_secs(secs);
    let warm_up = total / 3;

    let bus = EventBus::default();
    let memory = ManualSource::new(90.0); // Critical: the overload the stack exists for
    let monitor = PressureMonitor::builder()
        .without_system_sources()
        .manual(Signal::Memory, memory.clone())
        .event_bus(bus.clone())
        .build()
        .unwrap();
    monitor.sample_now();
    let manager = AlertManager::builder()
        .monitor(monitor.clone())
        .event_bus(bus.clone())
        .history_capacity(HISTORY)
        .build()
        .unwrap();

    let alert = AlertLayer::builder("soak")
        .event_bus(bus.clone())
        .max_keys(ALERT_KEYS)
        .build()
        .unwrap()
        .key_by(|req: &Request<()>| {
            req.headers()
                .get("x-executor")
                .and_then(|v| v.to_str().ok())
        });
    let alert_metrics = alert.metrics();
    let breaker = CircuitBreakerLayer::builder()
        .event_bus(bus.clone())
        .failure_threshold(5)
        .wait_duration(Duration::from_millis(20))
        .max_keys(BREAKER_KEYS)
        .idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .per_key(HeaderKey(HeaderName::from_static("x-tenant")));
    let breakers = breaker.handle();
    let retry = RetryLayer::builder(monitor.clone())
        .event_bus(bus.clone())
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(DegradationLayer::new(monitor.clone()))
        .layer(alert)
        .layer(retry)
        .layer(breaker)
        .service(backend());

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (stack, stop, sent) = (stack.clone(), stop.clone(), sent.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Attacker-chosen keys: mostly fresh random ones, a few stable ones.
                let tenant = if fastrand::u8(..) < 16 {
                    format!("tenant-{}", fastrand::u8(..4))
                } else {
                    format!("evil-{:016x}", fastrand::u64(..))
                };
                let req = Request::get("/")
                    .header("x-tenant", tenant)
                    .header("x-executor", format!("exec-{:016x}", fastrand::u64(..)))
                    .body(())
                    .unwrap();
                let _ = stack.clone().oneshot(req).await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let start = tokio::time::Instant::now();
    let mut readings = Vec::new();
    let (mut max_breakers, mut max_alert_keys, mut max_history) = (0, 0, 0);
    while start.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(250)).await;
        max_breakers = max_breakers.max(breakers.keys().len());
        max_alert_keys = max_alert_keys.max(alert_metrics.keys().len());
        max_history = max_history.max(manager.history().len());
        if start.elapsed() >= warm_up {
            readings.push(rss_kb());
        }
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.expect("no panic under overload");
    }

    let n = (readings.len() / 4).clamp(3, 8);
    let first = median(&readings[..n]);
    let last = median(&readings[readings.len() - n..]);
    let growth = (last as f64 - first as f64) / first as f64 * 100.0;
    let sent = sent.load(Ordering::Relaxed);
    let stats = manager.stats();
    reliability_support::record(
        "soak",
        &format!(
            "{secs}s, {sent} requests with random keys; RSS after warm-up {first} kB -> {last} kB \
             ({growth:+.2} %, medians of {n} of {} readings); max breaker keys {max_breakers}/{BREAKER_KEYS}, \
             alert keys {max_alert_keys}/{ALERT_KEYS} ({} untracked calls), alert history {max_history}/{HISTORY}, \
             {} events processed",
            readings.len(),
            alert_metrics.untracked_keys(),
            stats.events_processed,
        ),
    );
    assert!(sent > 0);
    assert!(
        growth < 5.0,
        "RSS grew {growth:.2} % ({first} kB -> {last} kB)"
    );
    assert!(
        max_breakers <= BREAKER_KEYS,
        "breaker registry exceeded its bound"
    );
    assert!(
        max_alert_keys <= ALERT_KEYS,
        "alert key table exceeded its bound"
    );
    assert!(max_history <= HISTORY, "alert history exceeded its bound");
    assert_eq!(alert_metrics.snapshot().in_flight, 0);
}
