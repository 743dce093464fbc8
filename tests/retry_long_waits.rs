//! Issue 21, bugs 1 and 4: waits that do not fit in an `Instant` never panic a request, and a
//! server pushback longer than the layer may wait is not retried early but handed back.
//! Paused tokio time throughout.
#![cfg(feature = "http")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{BoxError, Layer, ServiceExt, service_fn};
use tower_pressure::PressureLevel;
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::retry::{Backoff, Jitter, MAX_WAIT, RetryLayer, Retryable};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A service failing with `fail(n)` for the first `fails` calls, then answering "ok";
/// records the (virtual) time of each call.
fn flaky(
    fails: usize,
    fail: fn() -> BoxError,
) -> (
    impl tower::Service<
        http::Request<()>,
        Response = &'static str,
        Error = BoxError,
        Future: Send,
    > + Clone,
    Arc<Mutex<Vec<Instant>>>,
) {
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let c = calls.clone();
    let svc = service_fn(move |_: http::Request<()>| {
        let mut v = c.lock().unwrap();
        v.push(Instant::now());
        let n = v.len();
        async move { if n <= fails { Err(fail()) } else { Ok("ok") } }
    });
    (svc, calls)
}

#[test]
fn unwaitable_backoffs_and_pushback_caps_are_refused_by_the_builder() {
    let (m, _) = PressureMonitor::manual();
    let e = RetryLayer::builder(m.clone())
        .backoff(Backoff::fixed(Duration::MAX))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "backoff.initial");
    let e = RetryLayer::builder(m.clone())
        .backoff(Backoff::exponential(ms(1), 2.0).max(Duration::MAX))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "backoff.max");
    let e = RetryLayer::builder(m.clone())
        .max_pushback(Duration::MAX)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_pushback");
    assert!(e.to_string().contains("max_pushback"), "{e}");
    // The longest accepted waits build.
    assert!(
        RetryLayer::builder(m)
            .backoff(Backoff::fixed(MAX_WAIT))
            .max_pushback(MAX_WAIT)
            .build()
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn a_time_bound_of_duration_max_means_no_bound() {
    let (m, _) = PressureMonitor::manual();
    let layer = RetryLayer::builder(m)
        .backoff(Backoff::fixed(ms(100)).jitter(Jitter::None))
        .time_bound(Duration::MAX)
        .attempt_timeout(Duration::MAX)
        .no_budget()
        .build()
        .unwrap();
    let (svc, calls) = flaky(1, || Retryable::new("flaky").into());
    let out = layer.layer(svc).oneshot(http::Request::new(())).await;
    assert_eq!(out.unwrap(), "ok");
    assert_eq!(calls.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_longest_backoff_is_waited_without_panicking() {
    let (m, _) = PressureMonitor::manual();
    let layer = RetryLayer::builder(m)
        .backoff(Backoff::fixed(MAX_WAIT).jitter(Jitter::None))
        .no_budget()
        .build()
        .unwrap();
    let (svc, calls) = flaky(1, || Retryable::new("flaky").into());
    let out = layer.layer(svc).oneshot(http::Request::new(())).await;
    assert_eq!(out.unwrap(), "ok");
    let c = calls.lock().unwrap();
    assert_eq!(c[1] - c[0], MAX_WAIT);
}

#[tokio::test(start_paused = true)]
async fn a_huge_stretch_at_high_pressure_saturates_at_the_cap() {
    let (m, manual) = PressureMonitor::manual();
    let layer = RetryLayer::builder(m.clone())
        .backoff(Backoff::fixed(ms(100)).jitter(Jitter::None))
        .stretch_at_high(1e300)
        .max_pushback(ms(3000))
        .no_budget()
        .build()
        .unwrap();
    manual.set(80.0);
    m.sample_now();
    assert_eq!(m.level(), PressureLevel::High);
    let (svc, calls) = flaky(1, || Retryable::new("flaky").into());
    let out = layer.layer(svc).oneshot(http::Request::new(())).await;
    assert_eq!(out.unwrap(), "ok");
    let c = calls.lock().unwrap();
    // Stretched without bound, capped at max(max_pushback, backoff.max).
    assert_eq!(c[1] - c[0], ms(3000));
}
