//! The whole-stack bench's services, shared by `benches/stack.rs` (timing) and
//! `benches/allocs.rs` (heap allocations per call). Included with
//! `#[macro_use] #[path = "support/stack_cases.rs"] mod stack_cases;` (the crate root must
//! name it `stack_cases`: [`with_service!`] refers to it by that path).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::time::Duration;

use tower::{Service, ServiceBuilder, ServiceExt};
use tower_pressure::pressure::{ManualSource, PressureMonitor};

pub(crate) type Req = http::Request<()>;

/// The handler: reads the request's extensions (as a handler reading `Constraints` would) and
/// answers at once.
fn handler(req: Req) -> Ready<Result<usize, Infallible>> {
    ready(Ok(black_box(&req).extensions().len()))
}

pub(crate) type Bare = tower::util::ServiceFn<fn(Req) -> Ready<Result<usize, Infallible>>>;

pub(crate) fn bare() -> Bare {
    tower::service_fn(handler as fn(Req) -> _)
}

/// A monitor at a normal level (10 %), with no background task.
pub(crate) fn monitor() -> (PressureMonitor, ManualSource) {
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(10.0);
    monitor.sample_now();
    (monitor, manual)
}

/// tower's `Retry` policy that keeps a copy of the request (as any replaying policy must)
/// and never retries.
#[derive(Clone)]
pub(crate) struct NeverRetry;

impl<Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = Ready<()>;
    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }
    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

type TrError = tower_resilience::circuitbreaker::CircuitBreakerError<
    tower_resilience::bulkhead::BulkheadServiceError<
        tower_resilience::adaptive::AdaptiveError<Infallible>,
    >,
>;

/// The benched cases. Every service is `Clone + Send` so the two-thread case can clone it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Case {
    Bare,
    Inbound,
    Outbound,
    /// The outbound stack with the coarse clock (`CoarseClock`, 1 ms) running.
    OutboundCoarse,
    Tower,
    TowerResilience,
}

impl Case {
    pub(crate) const ALL: [Case; 6] = [
        Case::Bare,
        Case::Inbound,
        Case::Outbound,
        Case::OutboundCoarse,
        Case::Tower,
        Case::TowerResilience,
    ];

    pub(crate) fn id(self) -> &'static str {
        match self {
            Case::Bare => "bare",
            Case::Inbound => "inbound",
            Case::Outbound => "outbound",
            Case::OutboundCoarse => "outbound_coarse",
            Case::Tower => "tower",
            Case::TowerResilience => "tower_resilience",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Case::Bare => "bare service_fn",
            Case::Inbound => "ResilienceStack::inbound",
            Case::Outbound => "ResilienceStack::outbound",
            Case::OutboundCoarse => "ResilienceStack::outbound, CoarseClock 1 ms",
            Case::Tower => "tower LoadShed>Timeout>ConcLimit>Retry",
            Case::TowerResilience => "tower-resilience Retry>CB>Bulkhead>Adaptive",
        }
    }
}

/// Evaluates `$body` with `$svc` bound to the case's service (the services have different
/// types, hence a macro).
macro_rules! with_service {
    ($case:expr, |$svc:ident| $body:expr) => {{
        use tower::Layer as _;
        use $crate::stack_cases::{Case, bare};
        let (monitor, _manual) = $crate::stack_cases::monitor();
        match $case {
            Case::Bare => {
                let $svc = bare();
                $body
            }
            Case::Inbound => {
                let $svc = tower_pressure::ResilienceStack::inbound(monitor.clone()).layer(bare());
                $body
            }
            Case::Outbound => {
                let $svc = tower_pressure::ResilienceStack::outbound(monitor.clone()).layer(bare());
                $body
            }
            Case::OutboundCoarse => {
                // The coarse clock runs while the case is measured, and stops after.
                let _coarse =
                    tower_pressure::clock::CoarseClock::start(std::time::Duration::from_millis(1))
                        .expect("valid resolution");
                let $svc = tower_pressure::ResilienceStack::outbound(monitor.clone()).layer(bare());
                $body
            }
            Case::Tower => {
                let $svc = $crate::stack_cases::tower_stack();
                $body
            }
            Case::TowerResilience => {
                let $svc = $crate::stack_cases::tower_resilience_stack();
                $body
            }
        }
    }};
}

pub(crate) fn tower_stack() -> impl Service<Req, Response = usize> + Clone + Send + 'static {
    ServiceBuilder::new()
        .load_shed()
        .timeout(Duration::from_secs(30))
        .concurrency_limit(1_000_000)
        .retry(NeverRetry)
        .service(bare())
}

pub(crate) fn tower_resilience_stack()
-> impl Service<Req, Response = usize> + Clone + Send + 'static {
    use tower_resilience::adaptive::{AdaptiveLimiterLayer, Aimd};
    use tower_resilience::bulkhead::BulkheadLayer;
    use tower_resilience::circuitbreaker::CircuitBreakerLayer;
    use tower_resilience::retry::RetryLayer;

    let retry = RetryLayer::<Req, usize, TrError>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(100))
        .build();
    let breaker = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .build()
        .expect("valid breaker config");
    let bulkhead = BulkheadLayer::builder()
        .max_concurrent_calls(10_000)
        .build()
        .expect("valid bulkhead config");
    let aimd = Aimd::builder()
        .initial_limit(1_000)
        .max_limit(10_000)
        .latency_threshold(Duration::from_millis(100))
        .build()
        .expect("valid aimd config");
    ServiceBuilder::new()
        .layer(retry)
        .layer(breaker)
        .layer(bulkhead)
        .layer(AdaptiveLimiterLayer::new(aimd))
        .service(bare())
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `n` calls through `ready` + `call`, each with a fresh `http::Request::new(())`, awaited;
/// every call must succeed.
pub(crate) async fn drive<S: Service<Req>>(svc: &mut S, n: u64) {
    drive_requests(svc, (0..n).map(|_| http::Request::new(()))).await
}

/// The same with the given requests (e.g. built beforehand, extensions already populated).
pub(crate) async fn drive_requests<S: Service<Req>>(
    svc: &mut S,
    reqs: impl IntoIterator<Item = Req>,
) {
    for req in reqs {
        let ok = match svc.ready().await {
            Ok(s) => s.call(req).await.is_ok(),
            Err(_) => false,
        };
        assert!(black_box(ok), "the benched services always succeed");
    }
}
