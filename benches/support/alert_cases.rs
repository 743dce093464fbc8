//! The alert bench's cases, shared by `benches/alert.rs` (timing) and `benches/allocs.rs`
//! (heap allocations per call). Included with `#[path = "support/alert_cases.rs"] mod
//! alert_cases;` next to `support/visit.rs` as `mod visit`.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower::{Layer, Service};
use tower_pressure::alert::AlertLayer;

use crate::visit::Visit;

#[derive(Clone, Copy)]
struct Bare;

impl Service<u64> for Bare {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, x: u64) -> Self::Future {
        ready(Ok(x))
    }
}

#[inline(always)]
fn once<S: Service<u64>>(svc: &mut S, cx: &mut Context<'_>, x: u64) {
    let _ = svc.poll_ready(cx);
    let fut = pin!(svc.call(x));
    black_box(fut.poll(cx).is_ready());
}

/// One call of `svc` per call of the closure, with the request counting up from 1.
fn calls<S: Service<u64>>(mut svc: S) -> impl FnMut() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut i = 0u64;
    move || {
        i += 1;
        once(&mut svc, &mut cx, i)
    }
}

/// The cases, in order: `bare`, `alert_layer`, `alert_layer_keyed` (four keys, in turn),
/// and the two clock reads for reference, `tokio_instant_now` and `std_instant_now`.
pub(crate) fn cases(v: &mut impl Visit) {
    v.case("bare", calls(Bare));
    v.case("alert_layer", calls(AlertLayer::new("bench").layer(Bare)));
    let keys = ["D3-Q3", "D4-Q2", "D2-Q3", "D1-Q1"];
    let keyed = AlertLayer::new("bench-keyed")
        .key_by(move |x: &u64| Some(keys[(*x % 4) as usize]))
        .layer(Bare);
    v.case("alert_layer_keyed", calls(keyed));
    v.case("tokio_instant_now", || {
        black_box(tokio::time::Instant::now());
    });
    v.case("std_instant_now", || {
        black_box(std::time::Instant::now());
    });
}
