//! The degradation bench's cases, shared by `benches/degradation.rs` (timing) and
//! `benches/allocs.rs` (heap allocations per call). Included with
//! `#[path = "support/degradation_cases.rs"] mod degradation_cases;` next to
//! `support/visit.rs` as `mod visit`.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tower::{Layer, Service, service_fn};
use tower_pressure::degradation::DegradationLayer;
use tower_pressure::pressure::{ManualSource, PressureMonitor};

use crate::visit::Visit;

type Req = http::Request<()>;

fn handler(req: Req) -> Ready<Result<usize, Infallible>> {
    ready(Ok(black_box(&req).extensions().len()))
}

/// One request through `svc`: `poll_ready`, `call`, poll the (immediately ready) future.
#[inline]
fn call_once<S>(svc: &mut S) -> usize
where
    S: Service<Req, Response = usize, Error = Infallible>,
    S::Future: Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let _ = svc.poll_ready(&mut cx);
    let mut fut = svc.call(http::Request::new(()));
    match Pin::new(&mut fut).poll(&mut cx) {
        Poll::Ready(Ok(n)) => n,
        _ => unreachable!("service_fn with a ready future"),
    }
}

fn monitor_at(value: f64) -> (PressureMonitor, ManualSource) {
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(value);
    monitor.sample_now();
    (monitor, manual)
}

/// The cases, in order: `bare`, `layer_normal` (monitor at 10 %), `layer_critical` (90 %),
/// `monitor_level`, `monitor_snapshot`.
pub(crate) fn cases(v: &mut impl Visit) {
    let mut bare = service_fn(handler);
    v.case("bare", || {
        black_box(call_once(&mut bare));
    });

    let (normal, _m1) = monitor_at(10.0);
    let mut layered = DegradationLayer::new(normal.clone()).layer(service_fn(handler));
    v.case("layer_normal", || {
        black_box(call_once(&mut layered));
    });

    let (critical, _m2) = monitor_at(90.0);
    let mut layered_critical = DegradationLayer::new(critical).layer(service_fn(handler));
    v.case("layer_critical", || {
        black_box(call_once(&mut layered_critical));
    });

    v.case("monitor_level", || {
        black_box(black_box(&normal).level());
    });
    v.case("monitor_snapshot", || {
        black_box(black_box(&normal).snapshot());
    });
}
