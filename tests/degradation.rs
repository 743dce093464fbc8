//! DegradationLayer end to end: constraints reach a plain `service_fn` and a real axum handler
//! served over 127.0.0.1, two routes share one layer, and the `x-degraded` header explains why.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::degradation::{DegradationLayer, DegradationPolicy};
use tower_pressure::pressure::{ManualSource, PressureMonitor, Signal};
use tower_pressure::{Constraints, PressureLevel, Priority};

fn memory_monitor() -> (PressureMonitor, ManualSource) {
    let m = ManualSource::new(10.0);
    let monitor = PressureMonitor::builder()
        .without_system_sources()
        .manual(Signal::Memory, m.clone())
        .build_unstarted()
        .expect("valid config");
    (monitor, m)
}

#[tokio::test]
async fn constraints_reach_a_plain_service_fn() {
    let (monitor, memory) = memory_monitor();
    let svc = ServiceBuilder::new()
        .layer(DegradationLayer::new(monitor.clone()))
        .service(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Constraints::from_request(&req))
        }));

    let c = svc
        .clone()
        .oneshot(Request::new(()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.level(), PressureLevel::Normal);
    assert_eq!(c.entity_limit(100), 100);
    assert!(!c.is_degraded());

    memory.set(96.0);
    monitor.sample_now();
    let mut req = Request::new(());
    req.extensions_mut().insert(Priority::Critical);
    let c = svc.oneshot(req).await.unwrap().unwrap();
    assert_eq!(c.level(), PressureLevel::Emergency);
    assert_eq!(c.entity_limit(100), 30);
    assert!(c.should_use_simplified());
    assert_eq!(c.priority(), Priority::Critical);
    assert_eq!(c.cause().signal, Signal::Memory);
    assert_eq!(c.cause().value, 96.0);
}

/// A request type that is not HTTP at all, carrying extensions through `HasExtensions`.
struct Job {
    ext: http::Extensions,
}

impl tower_pressure::constraints::HasExtensions for Job {
    fn extensions(&self) -> &http::Extensions {
        &self.ext
    }
    fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.ext
    }
}

#[tokio::test]
async fn non_http_requests_get_constraints() {
    let (monitor, memory) = memory_monitor();
    memory.set(80.0);
    monitor.sample_now();
    let svc = DegradationLayer::new(monitor);
    let svc = tower::Layer::layer(
        &svc,
        service_fn(|job: Job| async move {
            Ok::<_, Infallible>(Constraints::from_request(&job).map(|c| c.should_skip_optional()))
        }),
    );
    let skip = svc
        .oneshot(Job {
            ext: http::Extensions::new(),
        })
        .await
        .unwrap();
    assert_eq!(skip, Some(true));
}

#[derive(Clone, Debug, PartialEq)]
struct MaxTokens(u32);

#[tokio::test(start_paused = true)]
async fn policy_extensions_and_deadline() {
    let (monitor, memory) = memory_monitor();
    let policy = DegradationPolicy::default()
        .extension(PressureLevel::Normal, MaxTokens(2048))
        .extension(PressureLevel::Critical, MaxTokens(256));
    let svc = ServiceBuilder::new()
        .layer(
            DegradationLayer::with_policy(monitor.clone(), policy).deadline(Duration::from_secs(2)),
        )
        .service(service_fn(|req: Request<()>| async move {
            let c = Constraints::from_request(&req).unwrap();
            let left = c.remaining(tokio::time::Instant::now()).unwrap();
            Ok::<_, Infallible>((req.extensions().get::<MaxTokens>().cloned(), left))
        }));
    let (tokens, left) = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(tokens, Some(MaxTokens(2048)));
    assert_eq!(left, Duration::from_secs(2));
    memory.set(90.0);
    monitor.sample_now();
    let (tokens, _) = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(tokens, Some(MaxTokens(256)));
}

/// `Duration::MAX` as the deadline means "none in practice": no overflow on the request path,
/// and the handler sees decades left.
#[tokio::test(start_paused = true)]
async fn huge_deadline_does_not_overflow() {
    let (monitor, _memory) = memory_monitor();
    let svc = ServiceBuilder::new()
        .layer(DegradationLayer::new(monitor).deadline(Duration::MAX))
        .service(service_fn(|req: Request<()>| async move {
            let c = Constraints::from_request(&req).unwrap();
            Ok::<_, Infallible>(c.remaining(tokio::time::Instant::now()).unwrap())
        }));
    let left = svc.oneshot(Request::new(())).await.unwrap();
    assert!(left > Duration::from_secs(86_400 * 365 * 29), "{left:?}");
}

async fn describe(c: Constraints) -> String {
    format!(
        "level={} entities={} skip_optional={}",
        c.level(),
        c.entity_limit(100),
        c.should_skip_optional()
    )
}

async fn get_text(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>>,
    url: String,
) -> (StatusCode, http::HeaderMap, String) {
    let res = client
        .get(url.parse().unwrap())
        .await
        .expect("request on loopback");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn real_axum_server_two_routes_share_one_layer() {
    let (monitor, memory) = memory_monitor();
    let app = Router::new()
        .route("/a", get(describe))
        .route("/b", get(describe))
        .route("/plain", get(|| async { "no constraints needed" }))
        .layer(DegradationLayer::new(monitor.clone()).degraded_header());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();

    let (status, headers, body) = get_text(&client, format!("http://{addr}/a")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "level=normal entities=100 skip_optional=false");
    assert!(headers.get("x-degraded").is_none());

    // One monitor change is seen by both routes: the layer's state is not copied per route.
    memory.set(78.0);
    monitor.sample_now();
    for path in ["a", "b"] {
        let (status, headers, body) = get_text(&client, format!("http://{addr}/{path}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "level=high entities=80 skip_optional=true");
        assert_eq!(
            headers.get("x-degraded").unwrap(),
            "level=high; cause=memory"
        );
    }
    server.abort();
}

#[tokio::test]
async fn extractor_without_layer_is_a_clear_500() {
    let app = Router::new().route("/a", get(describe));
    let res = app
        .oneshot(Request::get("/a").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("DegradationLayer"), "{text}");
}
