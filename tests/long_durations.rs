//! Issue 21, the same patterns elsewhere: a user-supplied period or wait that does not fit in
//! an `Instant` is refused by the builder (periodic tasks: tokio's `Interval` adds its period
//! unchecked at every tick) or saturates (one-off waits); nothing panics.
#![cfg(feature = "http")]

use std::time::Duration;

use tower::{Layer, ServiceExt, service_fn};
use tower_pressure::alert::AlertManager;
use tower_pressure::concurrency::limit::{Gradient2, LimitAlgorithm, WindowSample};
use tower_pressure::fallback::FallbackLayer;
use tower_pressure::pressure::{PressureMonitor, Signal};
use tower_pressure::retry::Retryable;

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn monitor_periods_above_a_day_are_refused() {
    let e = PressureMonitor::builder()
        .interval(Duration::MAX)
        .build_unstarted()
        .unwrap_err();
    assert_eq!(e.field(), "interval");
    let e = PressureMonitor::builder()
        .lag_probe_interval(Duration::MAX)
        .build_unstarted()
        .unwrap_err();
    assert_eq!(e.field(), "lag_probe_interval");
    assert!(
        PressureMonitor::builder()
            .interval(DAY)
            .lag_probe_interval(DAY)
            .build_unstarted()
            .is_ok()
    );
}

#[test]
fn a_gradient2_probe_interval_above_a_day_is_refused() {
    let e = Gradient2::builder()
        .probe_interval(Some(Duration::MAX))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "probe_interval");
    // The longest accepted interval schedules its probe without overflowing.
    let mut g = Gradient2::builder()
        .probe_interval(Some(DAY))
        .probe_jitter(1.0)
        .build()
        .unwrap();
    let s = WindowSample::new(Duration::from_millis(10), 20, 10, 0);
    g.update(&s, tokio::time::Instant::now());
    assert!(!g.is_probing());
}

#[tokio::test(start_paused = true)]
async fn an_alert_watch_interval_above_a_day_is_refused() {
    let (m, _) = PressureMonitor::manual();
    let e = AlertManager::builder()
        .monitor(m)
        .watch(Signal::Cpu, 70.0, 90.0)
        .watch_interval(Duration::MAX)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "watch_interval");
}

#[tokio::test(start_paused = true)]
async fn a_queue_fallback_with_unbounded_max_wait_does_not_panic_on_a_huge_retry_after() {
    let layer = FallbackLayer::queue(Duration::MAX, 10).build().unwrap();
    let svc = layer.layer(service_fn(|_: http::Request<()>| async {
        Err::<&str, tower::BoxError>(Retryable::after("busy", Duration::MAX).into())
    }));
    // The wait saturates (about 30 years): the request is still waiting an hour later.
    let out = tokio::time::timeout(
        Duration::from_secs(3600),
        svc.oneshot(http::Request::new(())),
    )
    .await;
    assert!(out.is_err(), "still queued");
}

/// Raises the limit by one every window, so that every window changes it.
#[derive(Debug)]
struct Up(u32);

impl LimitAlgorithm for Up {
    fn name(&self) -> &'static str {
        "up"
    }
    fn limit(&self) -> u32 {
        self.0
    }
    fn update(&mut self, _: &WindowSample, _: tokio::time::Instant) -> u32 {
        self.0 += 1;
        self.0
    }
}

#[tokio::test(start_paused = true)]
async fn a_limiter_event_interval_of_duration_max_means_one_event() {
    use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, WindowConfig};
    let (m, _) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(m)
        .algorithm(Up(10))
        .window(WindowConfig::new(Duration::from_millis(1), Duration::from_millis(10), 1).unwrap())
        .event_interval(Duration::MAX)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: http::Request<()>| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, std::convert::Infallible>("ok")
    }));
    // Every window changes the limit; the second change used to add `Duration::MAX` to the
    // first event's time and panic.
    for _ in 0..20 {
        assert_eq!(
            svc.clone().oneshot(http::Request::new(())).await.unwrap(),
            "ok"
        );
    }
    assert!(handle.limit() > 12, "limit {}", handle.limit());
}
