//! The Prometheus exposition of a running server passes `promtool check metrics`.
//!
//! A real axum server on 127.0.0.1 serves `StatusService` with every provider of the crate
//! registered (monitor, alert layer with keys, alert manager with a webhook sink, adaptive
//! limiter, per-key breakers, retry, degradation, fallbacks, quotas), after real traffic went
//! through the layers. A real hyper client fetches `/status?format=prometheus`, and the body
//! is piped into `promtool check metrics`, which must exit 0 and print nothing.

use std::convert::Infallible;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::alert::{AlertLayer, AlertManager, WebhookSink};
use tower_pressure::circuit_breaker::CircuitBreakerLayer;
use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
use tower_pressure::degradation::DegradationLayer;
use tower_pressure::fallback::FallbackLayer;
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer};
use tower_pressure::retry::RetryLayer;
use tower_pressure::status::{StatusRegistry, StatusService};

fn promtool() -> &'static str {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "promtool not found: apt-get install -y prometheus (it ships promtool), or run scripts/test.sh"
    );
    "promtool"
}

/// Every provider of the crate, with some traffic through each.
async fn full_registry() -> StatusRegistry {
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(70.0);
    monitor.sample_now();
    let registry = StatusRegistry::new();
    registry.register(monitor.clone());

    // Alert layer with per-key metrics.
    let alert = AlertLayer::builder("api")
        .monitor(&monitor)
        .build()
        .unwrap()
        .key_by(|r: &http::Request<()>| Some(r.uri().path()));
    registry.register(alert.metrics());
    // Adaptive limiter.
    let limiter = AdaptiveConcurrencyLayer::builder(monitor.clone())
        .name("api")
        .build()
        .unwrap();
    registry.register(limiter.handle());
    // Per-key breakers.
    let breaker = CircuitBreakerLayer::builder()
        .name("backend")
        .failure_threshold(2)
        .build()
        .unwrap()
        .per_key(|req: &http::Request<()>| Some(req.uri().path().to_string()));
    registry.register(breaker.handle());
    let retry = RetryLayer::builder(monitor.clone())
        .name("backend")
        .build()
        .unwrap();
    registry.register(retry.clone());
    let degradation = DegradationLayer::new(monitor.clone());
    registry.register(degradation.clone());

    let svc = ServiceBuilder::new()
        .layer(alert)
        .layer(limiter)
        .layer(degradation)
        .layer(breaker)
        .service(service_fn(|req: http::Request<()>| async move {
            if req.uri().path() == "/fail" {
                Err::<&'static str, BoxError>("boom".into())
            } else {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok("ok")
            }
        }));
    for path in ["/a", "/b", "/fail", "/fail", "/fail", "/a"] {
        let req = http::Request::get(path).body(()).unwrap();
        let _ = svc.clone().oneshot(req).await;
    }

    // Alert manager with a webhook sink (sink counters, alert counters).
    let hook = WebhookSink::builder("http://127.0.0.1:9/hook")
        .allow_private_destinations(true)
        .build()
        .unwrap();
    let alerts = AlertManager::builder()
        .monitor(monitor.clone())
        .tracing(false)
        .sink(hook)
        .build()
        .unwrap();
    alerts.raise(
        "test",
        tower_pressure::alert::Alert::new(tower_pressure::alert::Severity::Warning, "t", "test"),
        Duration::from_secs(60),
    );
    registry.register(alerts);

    // Fallbacks.
    let queue = FallbackLayer::queue(Duration::from_secs(1), 4)
        .build()
        .unwrap();
    let last = FallbackLayer::value(|_: &BoxError| String::from("static"))
        .build()
        .unwrap();
    registry.register(queue.clone());
    registry.register(last.clone());
    let fb = ServiceBuilder::new()
        .layer(last)
        .service(service_fn(|_: u32| async {
            Err::<String, BoxError>("down".into())
        }));
    let _ = fb.oneshot(1).await;

    // Quotas.
    let quota = QuotaLayer::builder()
        .group(QuotaGroup::new("free").rate(Limit::tiers(5, 10, 10)))
        .build(HeaderKey::x_tenant())
        .unwrap();
    registry.register(quota.handle());
    let qsvc =
        ServiceBuilder::new()
            .layer(quota)
            .service(service_fn(|_: http::Request<()>| async {
                Ok::<_, Infallible>(())
            }));
    for _ in 0..3 {
        let req = http::Request::get("/")
            .header("x-tenant", "acme")
            .body(())
            .unwrap();
        let _ = qsvc.clone().oneshot(req).await;
    }
    registry
}

async fn fetch(url: &str) -> (http::StatusCode, Option<String>, String) {
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(url.parse().unwrap()))
        .await
        .expect("GET /status timed out")
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prometheus_output_passes_promtool_check_metrics() {
    let promtool = promtool();
    let registry = full_registry().await;
    let app = Router::new().route_service("/status", StatusService::new(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, ct, body) = fetch(&format!("http://{addr}/status?format=prometheus")).await;
    assert_eq!(status, 200);
    assert_eq!(
        ct.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lint = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && lint.trim().is_empty(),
        "promtool check metrics: {:?}\n{lint}\n--- exposition:\n{body}",
        out.status
    );
    // Every kind of family is there, so promtool sees all of them.
    for family in [
        "# TYPE tower_pressure_level gauge",
        "# TYPE tower_pressure_service_latency_seconds summary",
        "tower_pressure_service_latency_seconds_count{",
        "tower_pressure_service_latency_seconds_sum{",
        "# TYPE tower_pressure_concurrency_utilization_ratio gauge",
        "# TYPE tower_pressure_breaker_calls_total counter",
        "# TYPE tower_pressure_retry_requests_total counter",
        "# TYPE tower_pressure_degradation_level gauge",
        "# TYPE tower_pressure_alert_sink_delivered_total counter",
        "# TYPE tower_pressure_fallback_used_total counter",
        "# TYPE tower_pressure_quota_requests_total counter",
    ] {
        assert!(body.contains(family), "missing {family:?} in:\n{body}");
    }

    server.abort();
}
