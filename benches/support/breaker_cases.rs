//! The circuit breaker bench's services, shared by `benches/circuit_breaker.rs` (timing, one
//! and two threads, and the `CB_CALLS` mode) and `benches/allocs.rs` (heap allocations per
//! call). Included with `#[path = "support/breaker_cases.rs"] mod breaker_cases;` next to
//! `support/visit.rs` as `mod visit`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower::{Service, ServiceBuilder, service_fn};
use tower_pressure::circuit_breaker::CircuitBreakerLayer;

use crate::visit::Visit;

/// Polls to completion with a no-op waker (every service here is ready at once or spins).
fn block<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

pub(crate) fn call<S: Service<u64>>(svc: &mut S, i: u64) {
    let mut cx = Context::from_waker(Waker::noop());
    while svc.poll_ready(&mut cx).is_pending() {}
    let _ = black_box(block(svc.call(black_box(i))));
}

type Bare =
    tower::util::ServiceFn<fn(u64) -> std::future::Ready<Result<u64, std::convert::Infallible>>>;

fn ready_ok(x: u64) -> std::future::Ready<Result<u64, std::convert::Infallible>> {
    std::future::ready(Ok(x))
}

pub(crate) fn bare() -> Bare {
    service_fn(ready_ok as fn(u64) -> _)
}

pub(crate) fn ours() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    let layer = CircuitBreakerLayer::builder().build().expect("valid");
    ServiceBuilder::new().layer(layer).service(bare())
}

pub(crate) fn ours_time_window() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    let layer = CircuitBreakerLayer::builder()
        .time_window(60)
        .build()
        .expect("valid");
    ServiceBuilder::new().layer(layer).service(bare())
}

pub(crate) fn limit() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    ServiceBuilder::new()
        .concurrency_limit(1_000_000)
        .service(bare())
}

/// tower-resilience's breaker: build it inside a tokio runtime context (its layer needs one).
pub(crate) fn resilience() -> impl Service<u64, Response = u64> + Clone + Send + 'static {
    let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .expect("valid");
    ServiceBuilder::new().layer(layer).service(bare())
}

/// The one-thread cases, in order: `bare`, `tower_pressure` (count window),
/// `tower_pressure_time_window`, `concurrency_limit`, `tower_resilience`. Call it inside a
/// tokio runtime context (for tower-resilience).
pub(crate) fn one_thread(v: &mut impl Visit) {
    fn calls<S: Service<u64>>(mut svc: S) -> impl FnMut() {
        move || call(&mut svc, 1)
    }
    v.case("bare", calls(bare()));
    v.case("tower_pressure", calls(ours()));
    v.case("tower_pressure_time_window", calls(ours_time_window()));
    v.case("concurrency_limit", calls(limit()));
    v.case("tower_resilience", calls(resilience()));
}
