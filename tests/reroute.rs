//! The retry layer and the crate's own rejections: an open breaker's `CircuitOpen` and the
//! limiter's `Overloaded` are retried only when the request names a fallback
//! (`route::FallbackKeys`), and then at once, to the fallback (`route::RouteKey`), judged by
//! the fallback's own breaker. Paused clock throughout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::circuit_breaker::http::HostKey;
use tower_pressure::circuit_breaker::{
    CircuitBreakerLayer, CircuitOpen, CircuitState, ErrorsAsFailures, KeyExtractor,
};
use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, Overloaded};
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::retry::RetryLayer;
use tower_pressure::retry::http::HttpClassifier;
use tower_pressure::route::{ByRouteKey, FallbackKeys, RouteKey};

type Req = http::Request<()>;

/// Which target served each attempt (its `RouteKey`, or "primary" without one).
#[derive(Clone, Default)]
struct Served(Arc<Mutex<Vec<String>>>);

impl Served {
    fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn target(req: &Req) -> String {
    req.extensions()
        .get::<RouteKey>()
        .map_or("primary", RouteKey::as_str)
        .to_string()
}

/// A client that answers `status` from every target except those in `failing`, which answer
/// 503.
fn client(
    served: &Served,
    failing: &'static [&'static str],
) -> impl Service<Req, Response = http::Response<()>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ 'static {
    let served = served.clone();
    service_fn(move |req: Req| {
        let to = target(&req);
        served.0.lock().unwrap().push(to.clone());
        let status = if failing.contains(&to.as_str()) {
            503
        } else {
            200
        };
        async move {
            Ok::<_, BoxError>(
                http::Response::builder()
                    .status(status)
                    .body(())
                    .expect("valid"),
            )
        }
    })
}

fn request(route: &str, fallbacks: &[&'static str]) -> Req {
    let mut req = http::Request::get("http://api.test/v1").body(()).unwrap();
    req.extensions_mut().insert(RouteKey::new(route));
    if !fallbacks.is_empty() {
        req.extensions_mut()
            .insert(FallbackKeys::new(fallbacks.iter().copied()));
    }
    req
}

type Client = BoxCloneService<Req, http::Response<()>, BoxError>;

/// `retry` over `breakers` over [`client`]; the breakers of `opened` are created (one call
/// each) and forced open, and what those calls served is forgotten.
async fn stack<K>(
    retry: RetryLayer<HttpClassifier>,
    breakers: &CircuitBreakerLayer<ErrorsAsFailures, K>,
    served: &Served,
    failing: &'static [&'static str],
    opened: &[&str],
) -> Client
where
    K: KeyExtractor<Req> + Clone + Send + Sync + 'static,
{
    let mut svc = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(retry)
            .layer(breakers.clone())
            .service(client(served, failing)),
    );
    for key in opened {
        let mut warm = http::Request::new(());
        warm.extensions_mut().insert(RouteKey::new(*key));
        call(&mut svc, warm).await.unwrap();
        assert!(breakers.handle().set_key(key, CircuitState::ForcedOpen));
    }
    served.0.lock().unwrap().clear();
    svc
}

async fn call(svc: &mut Client, req: Req) -> Result<http::Response<()>, BoxError> {
    svc.ready().await?.call(req).await
}

fn by_route_key() -> CircuitBreakerLayer<ErrorsAsFailures, ByRouteKey> {
    CircuitBreakerLayer::builder()
        .build()
        .unwrap()
        .per_key(ByRouteKey)
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_reroutes_at_once_to_the_fallback() {
    let (monitor, _m) = PressureMonitor::manual();
    let served = Served::default();
    let breakers = CircuitBreakerLayer::builder()
        .build()
        .unwrap()
        .per_key(HostKey);
    let retry = RetryLayer::http(monitor).build().unwrap();
    let mut svc = stack(retry.clone(), &breakers, &served, &[], &["primary"]).await;

    let t = Instant::now();
    let res = call(&mut svc, request("primary", &["secondary"]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The open breaker answered without calling the client; the fallback served.
    assert_eq!(served.list(), ["secondary"]);
    // No backoff: the rejected attempt never left the process.
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(retry.stats().retries, 1);
    // The secondary's own breaker judged the attempt (a `RouteKey` overrides `HostKey`).
    let handle = breakers.handle();
    assert_eq!(handle.metrics_of("secondary").map(|m| m.successes), Some(1));
}

#[tokio::test(start_paused = true)]
async fn without_a_fallback_circuit_open_is_returned_and_not_retried() {
    let (monitor, _m) = PressureMonitor::manual();
    let served = Served::default();
    let retry = RetryLayer::http(monitor).build().unwrap();
    let mut svc = stack(retry.clone(), &by_route_key(), &served, &[], &["primary"]).await;

    let err = call(&mut svc, request("primary", &[])).await.unwrap_err();
    let open = err
        .downcast_ref::<CircuitOpen>()
        .expect("the breaker's own error");
    assert_eq!(open.key(), Some("primary"));
    assert!(served.list().is_empty(), "the client was not called");
    assert_eq!(retry.stats().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn fallbacks_are_tried_in_order_within_max_attempts() {
    let (monitor, _m) = PressureMonitor::manual();
    let served = Served::default();
    let breakers = by_route_key();
    let retry = RetryLayer::http(monitor.clone()).build().unwrap();
    let opened = ["primary", "secondary"];
    let mut svc = stack(retry, &breakers, &served, &[], &opened).await;

    // Three attempts (the default): primary and secondary refuse, tertiary serves.
    let res = call(&mut svc, request("primary", &["secondary", "tertiary"]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(served.list(), ["tertiary"]);

    // Two attempts allowed: the second refusal is returned as it is.
    let two = RetryLayer::http(monitor).max_attempts(2).build().unwrap();
    let mut svc = stack(two, &breakers, &served, &[], &[]).await;
    let err = call(&mut svc, request("primary", &["secondary", "tertiary"]))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<CircuitOpen>().and_then(CircuitOpen::key),
        Some("secondary")
    );
    assert!(served.list().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_post_is_rerouted_after_a_local_rejection_but_never_after_its_targets_error() {
    let (monitor, _m) = PressureMonitor::manual();
    let served = Served::default();
    let retry = RetryLayer::http(monitor).build().unwrap();
    let failing = &["secondary"];
    let mut svc = stack(retry, &by_route_key(), &served, failing, &["primary"]).await;

    let mut post = request("primary", &["secondary", "tertiary"]);
    *post.method_mut() = http::Method::POST;
    // Primary's breaker refused it locally: rerouted to secondary, whose 503 is final for a
    // POST without idempotency (it may have been processed).
    let res = call(&mut svc, post).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(served.list(), ["secondary"]);

    // A GET is replayed after the 503 too (to the same target: the fallback is for local
    // rejections).
    served.0.lock().unwrap().clear();
    let res = call(&mut svc, request("secondary", &["tertiary"]))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(served.list(), ["secondary", "secondary", "secondary"]);
}

#[tokio::test(start_paused = true)]
async fn no_reroute_at_critical_pressure() {
    let (monitor, manual) = PressureMonitor::manual();
    let served = Served::default();
    let retry = RetryLayer::http(monitor.clone()).build().unwrap();
    let mut svc = stack(retry, &by_route_key(), &served, &[], &["primary"]).await;
    manual.set(97.0);
    monitor.sample_now();
    assert!(monitor.level() >= tower_pressure::PressureLevel::Critical);

    let err = call(&mut svc, request("primary", &["secondary"]))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert!(served.list().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_shedding_limiter_reroutes_to_another_provider() {
    // Each provider has its own limiter; the primary's sheds everything but Critical.
    let (retry_monitor, _r) = PressureMonitor::manual();
    let (pressed, pressed_feed) = PressureMonitor::manual();
    pressed_feed.set(99.0);
    pressed.sample_now();
    let served = Served::default();
    let primary = AdaptiveConcurrencyLayer::new(pressed).layer(client(&served, &[]));
    let secondary = client(&served, &[]);
    let router = service_fn(move |req: Req| {
        let to_secondary = target(&req) == "secondary";
        let (p, s) = (primary.clone(), secondary.clone());
        async move {
            if to_secondary {
                s.oneshot(req).await
            } else {
                p.oneshot(req).await
            }
        }
    });
    let retry = RetryLayer::http(retry_monitor).build().unwrap();
    let stats = retry.clone();
    let svc = retry.layer(router);

    let res = svc
        .clone()
        .oneshot(request("primary", &["secondary"]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(served.list(), ["secondary"]);
    assert_eq!(stats.stats().retries, 1);

    // Without a fallback the limiter's `Overloaded` comes back as it is.
    let err = svc.oneshot(request("primary", &[])).await.unwrap_err();
    assert!(err.is::<Overloaded>(), "{err}");
}
