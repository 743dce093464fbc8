//! The retry bench's services, shared by `benches/retry.rs` (timing, interleaved ratios and
//! the `RETRY_BENCH_LOOP` modes) and `benches/allocs.rs` (heap allocations per call).
//! Included with `#[macro_use] #[path = "support/retry_cases.rs"] mod retry_cases;` next to
//! `support/visit.rs` as `mod visit` (the crate root must name it `retry_cases`:
//! [`services!`] refers to it by that path).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower::Service;

use crate::visit::Visit;

pub(crate) type Req = http::Request<()>;

/// tower's `Retry` with a policy that keeps a copy of the request (as any replaying policy
/// must) and never retries.
#[derive(Clone)]
pub(crate) struct NeverRetry;

impl<Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = std::future::Ready<()>;
    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's `Retry` with a budget, as tower's docs build one: the policy holds an
/// `Arc<TpsBudget>` (cloned into every response future), deposits on success and withdraws
/// before a retry. The like-for-like tower equivalent of our budgeted layer.
#[derive(Clone)]
pub(crate) struct TowerBudgeted(pub(crate) std::sync::Arc<tower::retry::budget::TpsBudget>);

impl TowerBudgeted {
    pub(crate) fn new() -> Self {
        Self(std::sync::Arc::new(tower::retry::budget::TpsBudget::new(
            std::time::Duration::from_secs(10),
            10,
            0.2,
        )))
    }
}

impl<Res, E> tower::retry::Policy<Req, Res, E> for TowerBudgeted {
    type Future = std::future::Ready<()>;
    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        use tower::retry::budget::Budget as _;
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| std::future::ready(())),
        }
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// The least any retry with state shared across requests can cost on top of
/// [`NeverRetry`]: the response future holds an `Arc` of the shared state (one atomic
/// increment and one decrement) and the request is counted with one atomic add. No budget
/// arithmetic, no classification: a floor, not a usable policy.
#[derive(Clone)]
pub(crate) struct SharedFloor(pub(crate) std::sync::Arc<std::sync::atomic::AtomicU64>);

impl<Res, E> tower::retry::Policy<Req, Res, E> for SharedFloor {
    type Future = std::future::Ready<()>;
    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(req.clone())
    }
}

/// Polls a future that is ready at once (the inner service answers immediately).
fn run<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the benched services answer at once"),
    }
}

pub(crate) fn call<S: Service<Req>>(svc: &mut S) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => unreachable!("always ready"),
    }
    run(svc.call(black_box(http::Request::new(()))))
}

/// Builds every benched service as a local binding (a macro: the types are unnameable).
macro_rules! services {
    ($bare:ident, $tower_retry:ident, $tower_budgeted:ident, $shared_floor:ident, $ours:ident, $ours_no_budget:ident, $ours_http:ident) => {
        // No runtime is entered: with tokio's `test-util` feature (unified in from the
        // dev-dependencies) `Instant::now()` inside a runtime takes the mock clock's mutex, which
        // production builds never do. Outside a runtime it is the plain monotonic clock.
        use tower::Layer as _;
        let (monitor, _manual) = tower_pressure::pressure::PressureMonitor::manual();
        let inner = tower::service_fn(|_: $crate::retry_cases::Req| {
            std::future::ready(Ok::<_, std::convert::Infallible>(200u16))
        });

        let mut $bare = inner;
        let mut $tower_budgeted =
            tower::retry::RetryLayer::new($crate::retry_cases::TowerBudgeted::new()).layer(inner);
        let mut $shared_floor = tower::retry::RetryLayer::new($crate::retry_cases::SharedFloor(
            std::sync::Arc::default(),
        ))
        .layer(inner);
        let _ = (&mut $tower_budgeted, &mut $shared_floor);
        let mut $tower_retry =
            tower::retry::RetryLayer::new($crate::retry_cases::NeverRetry).layer(inner);
        let mut $ours = tower_pressure::retry::RetryLayer::new(monitor.clone()).layer(inner);
        let mut $ours_no_budget = tower_pressure::retry::RetryLayer::builder(monitor.clone())
            .no_budget()
            .build()
            .unwrap()
            .layer(inner);
        #[cfg(feature = "http")]
        let mut $ours_http = {
            let inner = tower::service_fn(|_: $crate::retry_cases::Req| {
                std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
            });
            tower_pressure::retry::RetryLayer::http(monitor.clone())
                .build()
                .unwrap()
                .layer(inner)
        };
    };
}

/// The cases, in order: `bare`, `tower_retry_never`, `tower_retry_budgeted` (tower's
/// `TpsBudget`), `floor_arc_and_count` (see [`SharedFloor`]), `retry_layer`, `retry_layer_no_budget`
/// and (with the `http` feature) `retry_layer_http`; every call succeeds on its first attempt.
pub(crate) fn cases(v: &mut impl Visit) {
    services!(
        bare,
        tower_retry,
        tower_budgeted,
        shared_floor,
        ours,
        ours_no_budget,
        ours_http
    );
    v.case("bare", || {
        let _ = black_box(call(&mut bare));
    });
    v.case("tower_retry_never", || {
        let _ = black_box(call(&mut tower_retry));
    });
    v.case("tower_retry_budgeted", || {
        let _ = black_box(call(&mut tower_budgeted));
    });
    v.case("floor_arc_and_count", || {
        let _ = black_box(call(&mut shared_floor));
    });
    v.case("retry_layer", || {
        let _ = black_box(call(&mut ours));
    });
    v.case("retry_layer_no_budget", || {
        let _ = black_box(call(&mut ours_no_budget));
    });
    #[cfg(feature = "http")]
    v.case("retry_layer_http", || {
        let _ = black_box(call(&mut ours_http));
    });
}
