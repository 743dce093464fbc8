//! The adaptive concurrency bench's services, shared by `benches/concurrency.rs` (timing, one
//! and two threads, and the `CONC_COUNT` modes) and `benches/allocs.rs` (heap allocations
//! per call). Included with `#[path = "support/concurrency_cases.rs"] mod
//! concurrency_cases;` next to `support/visit.rs` as `mod visit`.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tower::{Layer, Service, service_fn};
use tower_pressure::Priority;
use tower_pressure::concurrency::limit::Gradient2;
use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, WindowConfig};
use tower_pressure::pressure::PressureMonitor;

use crate::visit::Visit;

/// One request through `svc`: poll_ready, call, poll the response to completion.
#[inline]
pub(crate) fn one<S: Service<u32>>(svc: &mut S, cx: &mut Context<'_>) {
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

pub(crate) fn bare()
-> impl Service<u32, Response = u32, Error = Infallible, Future: Send> + Clone + Send {
    service_fn(|x: u32| std::future::ready(Ok::<_, Infallible>(x)))
}

/// The layer under test, warmed up for 300 ms so its latency sampling has adapted to the
/// call rate (it times every request until the first window closes).
pub(crate) fn ours() -> impl Service<u32, Response = u32, Future: Send> + Clone + Send {
    let mut svc = ours_cold(WindowConfig::default());
    warm(&mut svc, Duration::from_millis(300));
    svc
}

pub(crate) fn warm<S: Service<u32>>(svc: &mut S, d: Duration) {
    let mut cx = Context::from_waker(Waker::noop());
    let t = Instant::now();
    while t.elapsed() < d {
        one(svc, &mut cx);
    }
}

pub(crate) fn ours_cold(
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

pub(crate) fn tower_limit() -> impl Service<u32, Response = u32, Future: Send> + Clone + Send {
    tower::limit::ConcurrencyLimitLayer::new(100).layer(bare())
}

pub(crate) fn resilience() -> impl Service<u32, Response = u32, Future: Send> + Clone + Send {
    use tower_resilience::adaptive::{AdaptiveLimiterLayer, Aimd};
    let algo = Aimd::builder()
        .initial_limit(100)
        .max_limit(1000)
        .latency_threshold(Duration::from_millis(100))
        .build()
        .unwrap();
    AdaptiveLimiterLayer::new(algo).layer(bare())
}

/// The one-thread cases, in order: `bare`, `adaptive (ours)` (warmed, see [`ours`]),
/// `tower ConcurrencyLimit`, `tower-resilience AdaptiveLimiter`. Each service is built once,
/// before its case runs.
pub(crate) fn one_thread(v: &mut impl Visit) {
    fn calls<S: Service<u32>>(mut svc: S) -> impl FnMut() {
        let mut cx = Context::from_waker(Waker::noop());
        move || one(&mut svc, &mut cx)
    }
    v.case("bare", calls(bare()));
    v.case("adaptive (ours)", calls(ours()));
    v.case("tower ConcurrencyLimit", calls(tower_limit()));
    v.case("tower-resilience AdaptiveLimiter", calls(resilience()));
}
