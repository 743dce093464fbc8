//! Cancellation: every layer's future dropped at every await point.
//!
//! [`DropAfter`] polls a future at most `n` times and then drops it. Each scenario is driven
//! for `n = 0, 1, 2, ...` until the call completes without being cut; after every cut the
//! handles' metrics must show nothing left behind: no half-open probe slot, no in-flight
//! count, no inner future still alive, no retry token spent without an attempt. Time is
//! paused, so waits elapse instantly and deterministically.

mod reliability_support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_pressure::alert::AlertLayer;
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use tower_pressure::degradation::DegradationLayer;
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::retry::{Backoff, RetryBudget, RetryLayer, Retryable};
use tower_pressure::{Constraints, PressureLevel};

pin_project_lite::pin_project! {
    /// Polls the inner future at most `polls` times, then drops it (`None`).
    struct DropAfter<F> { #[pin] inner: Option<F>, polls: usize }
}

impl<F: Future> Future for DropAfter<F> {
    type Output = Option<F::Output>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if *this.polls == 0 {
            this.inner.set(None); // cancellation: the future is dropped here
            return Poll::Ready(None);
        }
        *this.polls -= 1;
        match this.inner.as_mut().as_pin_mut() {
            Some(f) => f.poll(cx).map(Some),
            None => Poll::Ready(None),
        }
    }
}

fn drop_after<F>(f: F, polls: usize) -> DropAfter<F> {
    DropAfter {
        inner: Some(f),
        polls,
    }
}

/// The backend: counts calls and live futures; each attempt yields at two await points
/// (a sleep and a yield), fails the first `fail` attempts of every request (retryably).
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<AtomicU64>,
    live: Arc<AtomicUsize>,
    fail_first: u64,
}

struct Live(Arc<AtomicUsize>);
impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Service<Request<()>> for Backend {
    type Response = &'static str;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<&'static str, BoxError>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<()>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.live.fetch_add(1, Ordering::SeqCst);
        let live = Live(self.live.clone());
        let fail = n < self.fail_first;
        let degraded = Constraints::from_request(&req).is_some();
        Box::pin(async move {
            let _live = live;
            tokio::time::sleep(Duration::from_millis(10)).await;
            tokio::task::yield_now().await;
            let _ = degraded;
            if fail {
                Err(Retryable::new(std::io::Error::other("flaky")).into())
            } else {
                Ok("ok")
            }
        })
    }
}

/// Drives `make()`'s future for n = 0.. until it completes uncut; calls `check` after every
/// cut. Returns how many cuts were made (the await points reached).
async fn every_cut<F, Fut, T>(mut make: F, mut check: impl FnMut(usize)) -> usize
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    for n in 0..1000 {
        match drop_after(make(), n).await {
            Some(_) => return n,
            None => check(n),
        }
    }
    panic!("the call never completed");
}

#[tokio::test(start_paused = true)]
async fn breaker_probe_slot_is_returned_on_every_cut() {
    let layer = CircuitBreakerLayer::builder()
        .permitted_calls_in_half_open(1)
        .success_threshold(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let backend = Backend::default();
    let svc = layer.layer(backend.clone());
    let mut cuts = 0;
    let polls = every_cut(
        || {
            handle.set_all(CircuitState::HalfOpen);
            svc.clone().oneshot(Request::new(()))
        },
        |n| {
            cuts += 1;
            assert_eq!(handle.state(), CircuitState::HalfOpen, "cut {n}");
            assert!(
                handle.can_execute(None).is_ok(),
                "probe slot leaked at cut {n}"
            );
            assert_eq!(
                handle.metrics().calls,
                0,
                "a cancelled probe is not an outcome"
            );
            assert_eq!(backend.live.load(Ordering::SeqCst), 0);
        },
    )
    .await;
    assert!(
        cuts >= 3,
        "cut before the call, in the sleep and in the yield"
    );
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "the uncut probe closed it"
    );
    report("breaker", polls);
}

#[tokio::test(start_paused = true)]
async fn alert_in_flight_returns_to_zero_on_every_cut() {
    let layer = AlertLayer::new("svc");
    let metrics = layer.metrics();
    let backend = Backend::default();
    let svc = layer.layer(backend.clone());
    let mut cut = 0u64;
    let polls = every_cut(
        || svc.clone().oneshot(Request::new(())),
        |n| {
            cut += 1;
            let s = metrics.snapshot();
            assert_eq!(s.in_flight, 0, "cut {n}");
            assert_eq!(backend.live.load(Ordering::SeqCst), 0);
        },
    )
    .await;
    let s = metrics.snapshot();
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.successful_executions, 1);
    // Cuts before the first poll never started an execution; the others were cancelled.
    assert!(s.cancelled_executions >= 1 && s.cancelled_executions <= cut);
    report("alert", polls);
}

#[tokio::test(start_paused = true)]
async fn degradation_leaves_nothing_behind() {
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(90.0);
    monitor.sample_now();
    assert_eq!(monitor.level(), PressureLevel::Critical);
    let backend = Backend::default();
    let svc = DegradationLayer::new(monitor.clone())
        .deadline(Duration::from_secs(1))
        .layer(backend.clone());
    let polls = every_cut(
        || svc.clone().oneshot(Request::new(())),
        |n| assert_eq!(backend.live.load(Ordering::SeqCst), 0, "cut {n}"),
    )
    .await;
    assert_eq!(backend.live.load(Ordering::SeqCst), 0);
    report("degradation", polls);
}

/// The full outbound stack: retry (waits and attempts) over a breaker over the alert layer.
/// Every attempt fails once then succeeds, so cuts land in the first attempt, the backoff
/// wait and the second attempt.
#[tokio::test(start_paused = true)]
async fn retry_waits_and_attempts_leave_nothing_behind() {
    let (monitor, _) = PressureMonitor::manual();
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_second(1000)
        .build()
        .unwrap();
    let retry = RetryLayer::builder(monitor.clone())
        .backoff(Backoff::fixed(Duration::from_millis(50)))
        .budget(budget.clone())
        .max_attempts(3)
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::builder()
        .permitted_calls_in_half_open(1)
        .success_threshold(1)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let alert = AlertLayer::new("backend");
    let metrics = alert.metrics();
    let mut n_cut = 0;
    let live = Arc::new(AtomicUsize::new(0));
    let mut budget_before = budget.withdrawn();
    let mut calls_seen = Vec::new();
    for n in 0..1000 {
        let before = budget.withdrawn();
        // A fresh backend per call so each request fails exactly once.
        let backend = Backend {
            fail_first: 1,
            live: live.clone(),
            ..Backend::default()
        };
        handle.set_all(CircuitState::Closed);
        let fut = ServiceBuilder::new()
            .layer(retry.clone())
            .layer(breaker.clone())
            .layer(alert.clone())
            .service(backend.clone())
            .oneshot(Request::new(()));
        let out = drop_after(fut, n).await;
        let calls = backend.calls.load(Ordering::SeqCst);
        let retries = budget.withdrawn() - before;
        assert_eq!(
            backend.live.load(Ordering::SeqCst),
            0,
            "cut {n}: inner future alive"
        );
        assert_eq!(
            metrics.snapshot().in_flight,
            0,
            "cut {n}: in-flight left behind"
        );
        assert!(handle.can_execute(None).is_ok(), "cut {n}");
        // A token is withdrawn only for a retry that is then waited for or started.
        assert!(
            retries <= 1 && retries <= calls,
            "cut {n}: {retries} tokens, {calls} calls"
        );
        calls_seen.push(calls);
        if let Some(res) = out {
            assert_eq!(res.unwrap(), "ok");
            assert_eq!(calls, 2);
            n_cut = n;
            break;
        }
    }
    budget_before = budget.withdrawn() - budget_before;
    assert!(
        calls_seen.contains(&1) && calls_seen.contains(&2),
        "{calls_seen:?}"
    );
    assert!(budget_before >= 1);
    report("retry+breaker+alert", n_cut);
}

fn report(what: &str, polls: usize) {
    reliability_support::record(
        &format!("cancellation: {what}"),
        &format!("dropped after 0..{polls} polls ({polls} cut points), nothing left behind"),
    );
}

/// The adaptive limiter: a permit held by a dropped future is released at every cut.
#[tokio::test(start_paused = true)]
async fn limiter_slot_is_released_on_every_cut() {
    use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
    use tower_pressure::concurrency::limit::Aimd;
    let (monitor, _) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(
            Aimd::builder()
                .initial_limit(1)
                .min_limit(1)
                .max_limit(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let handle = layer.handle();
    let backend = Backend::default();
    let svc = layer.layer(backend.clone());
    let polls = every_cut(
        || svc.clone().oneshot(Request::new(())),
        |n| {
            assert_eq!(handle.in_flight(), 0, "slot leaked at cut {n}");
            assert_eq!(backend.live.load(Ordering::SeqCst), 0);
        },
    )
    .await;
    assert_eq!(handle.in_flight(), 0);
    assert_eq!(
        handle.shed_count(tower_pressure::Priority::Normal),
        0,
        "limit 1 never refused a lone caller"
    );
    report("limiter", polls);
}
