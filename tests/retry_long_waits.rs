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

/// A service failing with `fail()` for the first `fails` calls, then answering "ok";
/// records the (virtual) time of each call.
fn flaky(
    fails: usize,
    fail: fn() -> BoxError,
) -> (
    impl tower::Service<http::Request<()>, Response = &'static str, Error = BoxError, Future: Send>
    + Clone,
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

// ---------------------------------------------------------------------------------------------
// Bug 4: a pushback beyond what the layer may wait is not retried early, and stays visible.

type Res = http::Response<http_body_util::Full<bytes::Bytes>>;

/// An HTTP service answering `first` once, then 200; records the time of each call.
#[allow(clippy::type_complexity)] // an `impl Service` with its associated types spelled out
fn http_once(
    first: Res,
) -> (
    impl tower::Service<
        http::Request<http_body_util::Full<bytes::Bytes>>,
        Response = Res,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone,
    Arc<Mutex<Vec<Instant>>>,
) {
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let c = calls.clone();
    let first = Arc::new(Mutex::new(Some(first)));
    let svc = service_fn(move |_: http::Request<_>| {
        c.lock().unwrap().push(Instant::now());
        let r = first.lock().unwrap().take();
        async move { Ok(r.unwrap_or_else(|| http::Response::new("ok".into()))) }
    });
    (svc, calls)
}

fn unavailable_for(secs: &str) -> Res {
    http::Response::builder()
        .status(503)
        .header("retry-after", secs)
        .body(Default::default())
        .unwrap()
}

fn http_retry(max_pushback: Duration) -> RetryLayer<tower_pressure::retry::http::HttpClassifier> {
    let (m, _) = PressureMonitor::manual();
    RetryLayer::http(m)
        .max_pushback(max_pushback)
        .no_budget()
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_max_pushback_returns_the_response_at_once_with_its_header() {
    let (svc, calls) = http_once(unavailable_for("3600"));
    let start = Instant::now();
    let res = http_retry(Duration::from_secs(60))
        .layer(svc)
        .oneshot(http::Request::new(Default::default()))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.headers()["retry-after"],
        "3600",
        "the server's time reaches the caller"
    );
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "not retried 59 minutes early"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "and not held back either");
}

#[tokio::test(start_paused = true)]
async fn retry_after_within_max_pushback_is_waited_in_full() {
    let (svc, calls) = http_once(unavailable_for("60"));
    let res = http_retry(Duration::from_secs(60))
        .layer(svc)
        .oneshot(http::Request::new(Default::default()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let c = calls.lock().unwrap();
    assert_eq!(c[1] - c[0], Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn retry_after_past_the_deadline_returns_the_response() {
    let (svc, calls) = http_once(unavailable_for("30"));
    let mut req = http::Request::new(Default::default());
    req.extensions_mut().insert(
        tower_pressure::Constraints::unconstrained()
            .with_deadline(Instant::now() + Duration::from_secs(10)),
    );
    let res = http_retry(Duration::from_secs(60))
        .layer(svc)
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "30");
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_error_pushback_beyond_max_pushback_is_returned_with_its_time() {
    let (m, _) = PressureMonitor::manual();
    let layer = RetryLayer::builder(m)
        .max_pushback(MAX_WAIT)
        .no_budget()
        .build()
        .unwrap();
    // Issue 21: `Retryable::after(.., Duration::MAX)` panicked with a large max_pushback.
    let (svc, calls) = flaky(1, || Retryable::after("rate limited", Duration::MAX).into());
    let start = Instant::now();
    let err = layer
        .layer(svc)
        .oneshot(http::Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    let r = err.downcast_ref::<Retryable>().expect("the original error");
    assert_eq!(r.retry_after(), Some(Duration::MAX));
    assert_eq!(
        tower_pressure::fallback::retry_after(&err),
        Some(Duration::MAX)
    );
}

#[tokio::test(start_paused = true)]
async fn a_queue_fallback_outside_the_retry_waits_out_the_servers_time() {
    use tower_pressure::fallback::{FallbackLayer, http::ServerErrors};
    let (svc, calls) = http_once(unavailable_for("3600"));
    let stack = FallbackLayer::queue(Duration::from_secs(2 * 3600), 10)
        .trigger(ServerErrors)
        .build()
        .unwrap()
        .layer(http_retry(Duration::from_secs(60)).layer(svc));
    let res = stack
        .oneshot(http::Request::new(Default::default()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let c = calls.lock().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(
        c[1] - c[0],
        Duration::from_secs(3600),
        "the server's time, not 60 s"
    );
}
