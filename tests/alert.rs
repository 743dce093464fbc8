//! Integration tests of the alert module: AlertLayer metrics and thresholds, the manager on
//! the bus, webhooks against a real hyper server on 127.0.0.1, and the status endpoint.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::alert::{AlertLayer, AlertManager, WebhookSink};
use tower_pressure::circuit_breaker::CircuitState;
use tower_pressure::degradation::DegradationLayer;
use tower_pressure::event::{CustomEvent, Event, EventBus, ServiceEventKind};
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::status::{StatusRegistry, StatusService};

// ---------------------------------------------------------------- AlertLayer

#[tokio::test(start_paused = true)]
async fn layer_counts_outcomes_latency_and_in_flight() {
    let layer = AlertLayer::new("svc");
    let metrics = layer.metrics();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if ms == 13 { Err("unlucky") } else { Ok(ms) }
        }));
    for ms in [10, 20, 30, 13] {
        let _ = svc.ready().await.unwrap().call(ms).await;
    }
    // One call in flight, one cancelled.
    let pending = svc.ready().await.unwrap().call(1000);
    let cancelled = svc.ready().await.unwrap().call(1000);
    drop(cancelled);
    let m = metrics.snapshot();
    assert_eq!(m.total_executions, 6);
    assert_eq!(m.successful_executions, 3);
    assert_eq!(m.failed_executions, 1);
    assert_eq!(m.cancelled_executions, 1);
    assert_eq!(m.in_flight, 1);
    assert!((m.success_rate_percent - 75.0).abs() < 1e-9);
    assert!(
        (m.avg_duration_ms - 18.25).abs() < 0.5,
        "{}",
        m.avg_duration_ms
    );
    assert!(
        (m.peak_duration_ms - 30.0).abs() < 0.5,
        "{}",
        m.peak_duration_ms
    );
    assert!(
        (m.p50_duration_ms - 13.0).abs() / 13.0 < 0.07,
        "{}",
        m.p50_duration_ms
    );
    assert!(
        (m.p99_duration_ms - 30.0).abs() / 30.0 < 0.07,
        "{}",
        m.p99_duration_ms
    );
    assert_eq!(pending.await, Ok(1000));
    assert_eq!(metrics.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn per_key_metrics_are_bounded() {
    let layer = AlertLayer::builder("exec").max_keys(2).build().unwrap();
    let metrics = layer.metrics();
    let layer = layer.key_by(|req: &(String, bool)| Some(req.0.as_str()));
    let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |(_, ok): (String, bool)| async move { if ok { Ok(()) } else { Err("failed") } },
    ));
    for (k, ok) in [
        ("D3-Q3", true),
        ("D3-Q3", false),
        ("D4-Q2", true),
        ("other", true),
    ] {
        let _ = svc.ready().await.unwrap().call((k.to_string(), ok)).await;
    }
    let d3 = metrics.executor_metrics("D3-Q3").unwrap();
    assert_eq!(d3.executor_id.as_deref(), Some("D3-Q3"));
    assert_eq!((d3.total_executions, d3.failed_executions), (2, 1));
    assert_eq!(metrics.keys().len(), 2);
    assert!(metrics.executor_metrics("other").is_none());
    assert_eq!(metrics.untracked_keys(), 1);
    assert_eq!(metrics.snapshot().total_executions, 4);
}

#[tokio::test(start_paused = true)]
async fn thresholds_emit_service_events_and_alerts() {
    let bus = EventBus::new(64);
    let mut rx = bus.subscribe();
    let alerts = AlertManager::builder()
        .tracing(false)
        .event_bus(bus.clone())
        .build()
        .unwrap();
    let layer = AlertLayer::builder("api")
        .event_bus(bus.clone())
        .window(Duration::from_secs(10))
        .min_calls(10)
        .error_rate_threshold(Some(50.0))
        .latency_threshold(0.9, Duration::from_millis(100))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|fail: bool| async move {
            tokio::time::sleep(Duration::from_millis(if fail { 200 } else { 1 })).await;
            if fail { Err("boom") } else { Ok(()) }
        }));
    // Window 1: 12 calls, 8 failing and slow.
    for i in 0..12 {
        let _ = svc.ready().await.unwrap().call(i < 8).await;
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let _ = svc.ready().await.unwrap().call(false).await; // closes the window
    let mut kinds = Vec::new();
    while let Ok(Event::Service(e)) = rx.try_recv() {
        kinds.push(e.kind.clone());
    }
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, ServiceEventKind::ErrorRateExceeded { rate, .. } if *rate > 60.0)),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, ServiceEventKind::LatencyExceeded { .. })),
        "{kinds:?}"
    );
    // Window 2: healthy calls recover.
    for _ in 0..12 {
        let _ = svc.ready().await.unwrap().call(false).await;
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let _ = svc.ready().await.unwrap().call(false).await;
    let mut recovered = false;
    while let Ok(e) = rx.try_recv() {
        recovered |=
            matches!(e, Event::Service(ref s) if matches!(s.kind, ServiceEventKind::Recovered));
    }
    assert!(recovered);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let kinds: Vec<_> = alerts
        .history()
        .iter()
        .map(|a| a.kind().to_string())
        .collect();
    assert!(kinds.contains(&"error_rate_exceeded".into()), "{kinds:?}");
    assert!(kinds.contains(&"latency_exceeded".into()), "{kinds:?}");
}

#[tokio::test]
async fn two_route_axum_router_shares_one_layer_state() {
    let layer = AlertLayer::new("router");
    let metrics = layer.metrics();
    let app = axum::Router::new()
        .route("/a", axum::routing::get(|| async { "a" }))
        .route("/b", axum::routing::get(|| async { "b" }))
        .layer(layer);
    for p in ["/a", "/b", "/a"] {
        let req = http::Request::get(p)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(metrics.snapshot().successful_executions, 3);
}

// ---------------------------------------------------------------- history

#[tokio::test(start_paused = true)]
async fn history_summary_windows() {
    let m = AlertManager::builder()
        .tracing(false)
        .recent_alerts(3)
        .build()
        .unwrap();
    let ev = |k: &str| Event::Custom(CustomEvent::new("note", "n").with_key(k.to_string()));
    m.process_event(&ev("a"));
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    m.process_event(&ev("b"));
    m.process_event(&ev("c"));
    tokio::time::advance(Duration::from_secs(30 * 60)).await;
    m.process_event(&ev("d"));
    let s = m.summary();
    assert_eq!((s.total_alerts, s.last_hour, s.last_24_hours), (4, 3, 4));
    assert_eq!(s.by_severity.info, 4);
    assert_eq!(s.recent_alerts.len(), 3);
    assert_eq!(s.recent_alerts[0].key.as_deref(), Some("d"));
    tokio::time::advance(Duration::from_secs(22 * 3600)).await;
    let s = m.summary();
    // "a" is now more than 24 h old; b, c (22h30m) and d (22h) are not; none in the hour.
    assert_eq!((s.total_alerts, s.last_hour, s.last_24_hours), (4, 0, 3));
    let json: serde_json::Value = serde_json::to_value(&s).unwrap();
    for k in [
        "total_alerts",
        "last_hour",
        "last_24_hours",
        "by_severity",
        "recent_alerts",
    ] {
        assert!(json.get(k).is_some(), "{k}");
    }
    assert_eq!(json["by_severity"]["info"], 4);
}

// ---------------------------------------------------------------- webhooks

type Received = mpsc::UnboundedReceiver<(http::HeaderMap, serde_json::Value)>;

/// A real hyper server on 127.0.0.1 that records every POST; `delay` holds each response.
async fn hook_server(delay: Option<Duration>) -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            if let Some(d) = delay {
                                tokio::time::sleep(d).await;
                            }
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let json =
                                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                            let _ = tx.send((parts.headers, json));
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// Waits (in real time, bounded) for network I/O to reach a state; asserts nothing on speed.
async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 10 s");
}

#[tokio::test]
async fn webhook_posts_json_to_a_real_server() {
    let (addr, mut rx) = hook_server(None).await;
    let hook = WebhookSink::builder(format!("http://alice:pw@{addr}/hook?token=t"))
        .allow_private_destinations(true)
        .build()
        .unwrap();
    let m = AlertManager::builder()
        .tracing(false)
        .sink(hook)
        .build()
        .unwrap();
    let ev = Event::Custom(CustomEvent::new("deploy", "v2 rolled out").with_key("api"));
    assert_eq!(m.process_event(&ev).len(), 1);
    let (headers, json) = rx.recv().await.unwrap();
    assert_eq!(json["severity"], "info");
    assert_eq!(json["kind"], "deploy");
    assert_eq!(json["key"], "api");
    assert_eq!(json["message"], "v2 rolled out");
    assert_eq!(json["source"], "tower-pressure");
    assert_eq!(headers["content-type"], "application/json");
    // alice:pw
    assert_eq!(headers["authorization"], "Basic YWxpY2U6cHc=");
    wait_until(|| m.sink_stats()[0].1.delivered == 1).await;
}

#[tokio::test]
async fn slow_webhook_never_delays_requests_and_drops_oldest() {
    // A server that holds every response for an hour: the worker is stuck on one post.
    let (addr, _rx) = hook_server(Some(Duration::from_secs(3600))).await;
    let hook = WebhookSink::builder(format!("http://{addr}/hook"))
        .allow_private_destinations(true)
        .queue_capacity(4)
        .timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let bus = EventBus::new(4096);
    let alerts = AlertManager::builder()
        .tracing(false)
        .event_bus(bus.clone())
        .sink(hook)
        .rate_limit("custom", Duration::ZERO)
        .build()
        .unwrap();
    let registry = StatusRegistry::new();
    registry.register(alerts.clone());

    let mut svc = ServiceBuilder::new()
        .layer(
            AlertLayer::builder("protected")
                .event_bus(bus.clone())
                .build()
                .unwrap(),
        )
        .service(service_fn(|x: u32| async move { Ok::<_, Infallible>(x) }));
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    for i in 0..100u32 {
        // Flood the sink with alerts...
        alerts.process_event(&Event::Custom(
            CustomEvent::new("flood", "x").with_key(i.to_string()),
        ));
        // ...and every request still completes on its first poll.
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut fut = std::pin::pin!(svc.call(i));
        assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(x)) if x == i));
    }
    wait_until(|| alerts.sink_stats()[0].1.dropped >= 95).await;
    let st = alerts.sink_stats()[0].1;
    // 100 alerts: at most one in flight at the server, at most 4 queued, the rest dropped.
    assert!(st.queued <= 4, "{st:?}");
    assert!(st.dropped >= 95, "{st:?}");
    assert_eq!(st.delivered, 0);
    let status = registry.snapshot();
    let dropped = status.section("alerts").unwrap().metric_value(
        "tower_pressure_alert_sink_dropped_total",
        &[("sink", "webhook")],
    );
    assert_eq!(dropped, Some(st.dropped as f64));
}

#[tokio::test]
async fn dead_webhook_fails_counted_and_requests_proceed() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let hook = WebhookSink::builder(format!("http://{addr}/hook"))
        .allow_private_destinations(true)
        .retries(2)
        .backoff(Duration::from_millis(1))
        .queue_capacity(2)
        .build()
        .unwrap();
    let alerts = AlertManager::builder()
        .tracing(false)
        .sink(hook)
        .rate_limit("custom", Duration::ZERO)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(AlertLayer::new("protected"))
        .service(service_fn(|x: u32| async move { Ok::<_, Infallible>(x) }));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for i in 0..10u32 {
        alerts.process_event(&Event::Custom(
            CustomEvent::new("x", "x").with_key(i.to_string()),
        ));
        let mut fut = std::pin::pin!(svc.call(i));
        assert!(fut.as_mut().poll(&mut cx).is_ready());
    }
    wait_until(|| {
        let s = alerts.sink_stats()[0].1;
        s.failed + s.dropped == 10 && s.queued == 0
    })
    .await;
    let s = alerts.sink_stats()[0].1;
    assert!(s.dropped >= 7, "{s:?}");
    // The first delivery is retried twice; later ones may be refused by the breaker.
    assert!(s.retried >= 2, "{s:?}");
}

/// A real hyper server on 127.0.0.1 answering `503` to the first `fail` requests and `200`
/// after; records every request.
async fn flaky_server(fail: usize) -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tx, seen) = (tx.clone(), seen.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (tx, seen) = (tx.clone(), seen.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let json =
                                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                            let _ = tx.send((parts.headers, json));
                            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let mut resp = http::Response::new(Full::new(Bytes::new()));
                            if n < fail {
                                *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn webhook_503_is_retried_through_the_retry_layer_with_one_idempotency_key() {
    let (addr, mut rx) = flaky_server(1).await;
    let hook = WebhookSink::builder(format!("http://{addr}/hook"))
        .allow_private_destinations(true)
        .backoff(Duration::from_millis(1))
        .build()
        .unwrap();
    let (breaker, retry) = (hook.breaker(), hook.retry());
    let m = AlertManager::builder()
        .tracing(false)
        .sink(hook)
        .rate_limit("custom", Duration::ZERO)
        .build()
        .unwrap();
    m.process_event(&Event::Custom(CustomEvent::new("deploy", "v3")));
    let (h1, first) = rx.recv().await.unwrap();
    let (h2, second) = rx.recv().await.unwrap();
    wait_until(|| m.sink_stats()[0].1.delivered == 1).await;
    // The same alert twice: same id in the body and in the Idempotency-Key header.
    assert_eq!(first, second);
    assert_eq!(second["message"], "v3");
    let key = h1["idempotency-key"].to_str().unwrap();
    assert_eq!(h2["idempotency-key"], key);
    assert_eq!(second["id"], key);
    let st = m.sink_stats()[0].1;
    assert_eq!(
        (st.delivered, st.failed, st.retried, st.rejected),
        (1, 0, 1, 0)
    );
    let rs = retry.stats();
    assert_eq!((rs.requests, rs.retries, rs.budget_granted), (1, 1, 1));
    // The breaker saw one failure (the 503) and one success, and stayed closed.
    let bm = breaker.metrics();
    assert_eq!((bm.failures, bm.successes), (1, 1));
    assert_eq!(breaker.state(), CircuitState::Closed);
    // A second alert gets another key.
    m.process_event(&Event::Custom(CustomEvent::new("deploy", "v4")));
    let (h3, _) = rx.recv().await.unwrap();
    assert_ne!(h3["idempotency-key"], key);
}

#[tokio::test]
async fn dead_webhook_opens_the_breaker_then_fails_fast_without_connecting() {
    // Accepts every connection and drops it at once: each attempt fails; count them.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acc = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            acc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let count = || accepted.load(std::sync::atomic::Ordering::SeqCst);
    let hook = WebhookSink::builder(format!("http://{addr}/hook"))
        .allow_private_destinations(true)
        .max_attempts(1)
        .breaker_failure_threshold(3)
        .breaker_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let breaker = hook.breaker();
    let registry = StatusRegistry::new();
    registry.register(breaker.clone()).register(hook.retry());
    let alerts = AlertManager::builder()
        .tracing(false)
        .sink(hook)
        .rate_limit("custom", Duration::ZERO)
        .build()
        .unwrap();
    registry.register(alerts.clone());
    let stats = || alerts.sink_stats()[0].1;
    let send = |i: usize| {
        alerts.process_event(&Event::Custom(
            CustomEvent::new("x", "x").with_key(i.to_string()),
        ));
    };
    // Three failed deliveries, one connection each, open the breaker.
    for i in 0..3 {
        send(i);
        wait_until(|| stats().failed == i as u64 + 1).await;
    }
    wait_until(|| count() == 3).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(stats().rejected, 0);

    // From here on no connection succeeds or fails by timing: freeze the clock so the
    // breaker's 60 s wait cannot elapse while deliveries fail fast.
    tokio::time::pause();
    for i in 3..8 {
        send(i);
        wait_until(|| stats().failed == i as u64 + 1).await;
    }
    let s = stats();
    assert_eq!(s.rejected, 5, "{s:?}");
    assert_eq!(count(), 3, "a rejected delivery connected");

    // After the wait one probe connects; it fails, so the breaker opens again. Real time
    // again for the network I/O (paused time would fire the attempt timeout early).
    tokio::time::advance(Duration::from_secs(60)).await;
    tokio::time::resume();
    send(8);
    wait_until(|| stats().failed == 9).await;
    wait_until(|| count() == 4).await;
    assert_eq!(breaker.state(), CircuitState::Open);
    let s = stats();
    assert_eq!((s.delivered, s.rejected), (0, 5), "{s:?}");

    let text = registry.snapshot().to_prometheus();
    let samples = parse_prometheus(&text);
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.2)
    };
    assert_eq!(
        value("tower_pressure_breaker_open", &[("breaker", "webhook")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            "tower_pressure_alert_sink_rejected_total",
            &[("sink", "webhook")]
        ),
        Some(stats().rejected as f64)
    );
    assert_eq!(
        value(
            "tower_pressure_breaker_rejected_total",
            &[("breaker", "webhook")]
        ),
        Some(5.0)
    );
    assert_eq!(
        value(
            "tower_pressure_retry_requests_total",
            &[("retry", "webhook")]
        ),
        Some(stats().failed as f64)
    );
}

#[tokio::test]
async fn non_http_schemes_are_rejected_at_build() {
    for url in [
        "ftp://example.com/",
        "file:///etc/passwd",
        "unix:/run/x.sock",
        "javascript:alert(1)",
        "example.com/hook",
    ] {
        let err = WebhookSink::builder(url).build().unwrap_err();
        assert_eq!(err.field(), "url", "{url}");
    }
    // https needs a TLS client given explicitly.
    let err = WebhookSink::builder("https://example.com/hook")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "url");
    assert!(err.reason().contains("TLS"));
}

#[tokio::test]
async fn private_destinations_are_refused_in_every_numeric_spelling() {
    let (addr, mut rx) = hook_server(None).await;
    let port = addr.port();
    // Control: the numeric form does reach the loopback server when allowed.
    let ok = WebhookSink::builder(format!("http://2130706433:{port}/control"))
        .allow_private_destinations(true)
        .build()
        .unwrap();
    let m = AlertManager::builder()
        .tracing(false)
        .sink(ok)
        .build()
        .unwrap();
    m.process_event(&Event::Custom(CustomEvent::new("t", "control")));
    let (_, json) = rx.recv().await.unwrap();
    assert_eq!(json["message"], "control");

    for host in [
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "[::ffff:127.0.0.1]",
        "localhost",
    ] {
        let hook = WebhookSink::builder(format!("http://{host}:{port}/hook"))
            .retries(0)
            .build()
            .unwrap();
        let m = AlertManager::builder()
            .tracing(false)
            .sink(hook)
            .build()
            .unwrap();
        m.process_event(&Event::Custom(CustomEvent::new("t", host)));
        wait_until(|| m.sink_stats()[0].1.failed == 1).await;
        assert!(rx.try_recv().is_err(), "{host} reached the server");
    }
}

// ---------------------------------------------------------------- status

type Sample = (String, Vec<(String, String)>, f64);

/// A small parser of Prometheus text format 0.0.4; panics on anything invalid.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    fn name_ok(n: &str, colon: bool) -> bool {
        let mut cs = n.chars();
        matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    let mut samples = Vec::new();
    let mut typed = std::collections::HashMap::new();
    let mut finished = std::collections::HashSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        assert!(!line.is_empty(), "empty line");
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap();
            let name = parts.next().expect("metric name").to_string();
            assert!(name_ok(&name, true), "bad name {name}");
            match kw {
                "HELP" => {}
                "TYPE" => {
                    let t = parts.next().unwrap();
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&t));
                    assert!(
                        typed.insert(name.clone(), t.to_string()).is_none(),
                        "TYPE twice for {name}"
                    );
                }
                other => panic!("unknown keyword {other}"),
            }
            if current.as_deref() != Some(&name) {
                if let Some(c) = current.take() {
                    finished.insert(c);
                }
                assert!(!finished.contains(&name), "family {name} not contiguous");
                current = Some(name);
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("value");
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value {v}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = Vec::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert!(name_ok(&key, false), "bad label {key}");
                    assert_eq!(chars.next(), Some('"'));
                    let mut val = String::new();
                    loop {
                        match chars.next().expect("unterminated label value") {
                            '\\' => match chars.next().unwrap() {
                                'n' => val.push('\n'),
                                c @ ('\\' | '"') => val.push(c),
                                c => panic!("bad escape \\{c}"),
                            },
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.push((key, val));
                    match chars.next() {
                        None => break,
                        Some(',') => {}
                        Some(c) => panic!("unexpected {c}"),
                    }
                }
                (n.to_string(), labels)
            }
        };
        assert!(name_ok(&name, true), "bad name {name}");
        // A summary's `_sum` and `_count` samples belong to the summary's family.
        let family = ["_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| typed.get(*b).map(String::as_str) == Some("summary"))
            })
            .unwrap_or(&name)
            .to_string();
        assert!(typed.contains_key(&family), "sample before TYPE: {name}");
        assert_eq!(
            current.as_deref(),
            Some(family.as_str()),
            "family {name} not contiguous"
        );
        samples.push((name, labels, value));
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_from_a_stack_under_load_parses_as_json_and_prometheus() {
    let (monitor, manual) = PressureMonitor::manual();
    let alerts = AlertManager::builder()
        .tracing(false)
        .monitor(monitor.clone())
        .build()
        .unwrap();
    let layer = AlertLayer::builder("llm \"api\"\nv2")
        .monitor(&monitor)
        .build()
        .unwrap();
    let metrics = layer.metrics();
    let layer = layer.key_by(|req: &http::Request<String>| Some(req.uri().path()));
    let svc = ServiceBuilder::new()
        .layer(layer)
        .layer(DegradationLayer::new(monitor.clone()))
        .service(service_fn(|req: http::Request<String>| async move {
            tokio::task::yield_now().await;
            if req.uri().path() == "/fail" {
                Err("failed")
            } else {
                Ok::<_, &str>(req.into_body())
            }
        }));
    let registry = StatusRegistry::new();
    registry
        .register(monitor.clone())
        .register(metrics.clone())
        .register(alerts.clone());

    manual.set(96.0);
    monitor.sample_now();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let path = if i % 10 == 0 {
                "/fail"
            } else if i % 2 == 0 {
                "/a"
            } else {
                "/b"
            };
            let req = http::Request::get(path).body(format!("{i}")).unwrap();
            let _ = svc.oneshot(req).await;
        }));
    }
    // Snapshots taken while the load runs parse too.
    let app = axum::Router::new().route_service("/status", StatusService::new(registry.clone()));
    for _ in 0..5 {
        let req = http::Request::get("/status")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let _: serde_json::Value = serde_json::from_slice(&body).unwrap();
    }
    for t in tasks {
        t.await.unwrap();
    }

    let req = http::Request::get("/status")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let sections = json["sections"].as_array().unwrap();
    assert_eq!(sections[0]["info"]["level"], "emergency");
    assert_eq!(sections[1]["kind"], "service");
    assert_eq!(sections[2]["name"], "alerts");
    let snap = metrics.snapshot();
    assert_eq!(snap.total_executions, 200);
    assert_eq!(snap.failed_executions, 20);
    assert_eq!(metrics.executor_metrics("/a").unwrap().total_executions, 80);

    let req = http::Request::get("/status?format=prometheus")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&body).unwrap();
    let samples = parse_prometheus(text);
    let find = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.2)
    };
    assert_eq!(find("tower_pressure_level", &[]), Some(4.0));
    assert_eq!(
        find(
            "tower_pressure_service_calls_total",
            &[("outcome", "failure"), ("key", "")]
        ),
        Some(20.0)
    );
    assert_eq!(
        find(
            "tower_pressure_service_calls_total",
            &[("outcome", "success"), ("key", "/b")]
        ),
        Some(100.0)
    );
    assert_eq!(
        find(
            "tower_pressure_service_in_flight",
            &[("service", "llm \"api\"\nv2"), ("key", "")]
        ),
        Some(0.0)
    );

    let req = http::Request::post("/status")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 405);
}

#[tokio::test(start_paused = true)]
async fn every_layer_reports_to_one_status_page() {
    use tower_pressure::circuit_breaker::CircuitBreakerLayer;
    use tower_pressure::retry::{RetryLayer, Retryable};

    let (monitor, manual) = PressureMonitor::manual();
    let degradation = DegradationLayer::new(monitor.clone());
    let retry = RetryLayer::builder(monitor.clone())
        .name("backend")
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::builder()
        .name("backend")
        .failure_threshold(2)
        .build()
        .unwrap()
        .per_key(|req: &http::Request<()>| Some(req.uri().path().to_string()));
    let registry = StatusRegistry::new();
    registry
        .register(monitor.clone())
        .register(degradation.clone())
        .register(retry.clone())
        .register(breaker.handle());

    let svc = ServiceBuilder::new()
        .layer(degradation)
        .layer(retry)
        .layer(breaker)
        .service(service_fn(|req: http::Request<()>| async move {
            if req.uri().path() == "/down" {
                Err(Retryable::new("down"))
            } else {
                Ok(())
            }
        }));
    manual.set(80.0); // High
    monitor.sample_now();
    for path in ["/up", "/down", "/up", "/down"] {
        let req = http::Request::get(path).body(()).unwrap();
        let _ = svc.clone().oneshot(req).await;
    }

    let status = registry.snapshot();
    let json: serde_json::Value = serde_json::from_str(&status.to_json()).unwrap();
    let kinds: Vec<_> = json["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["pressure", "degradation", "retry", "circuit_breaker"]
    );
    assert_eq!(json["sections"][1]["info"]["level"], "high");
    assert_eq!(json["sections"][1]["info"]["active"], "true");
    let keys: Vec<_> = json["sections"][3]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["info"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(keys.contains(&("/down", "OPEN")), "{keys:?}");
    assert!(keys.contains(&("/up", "CLOSED")), "{keys:?}");

    let samples = parse_prometheus(&status.to_prometheus());
    let find = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.2)
    };
    assert_eq!(find("tower_pressure_degradation_level", &[]), Some(2.0));
    assert_eq!(
        find(
            "tower_pressure_retry_requests_total",
            &[("retry", "backend")]
        ),
        Some(4.0)
    );
    // "/down": two failed attempts opened its breaker, the third attempt and the second
    // call were rejected (a rejection is not retried).
    assert_eq!(
        find(
            "tower_pressure_breaker_state",
            &[("breaker", "backend"), ("key", "/down")]
        ),
        Some(1.0)
    );
    assert_eq!(
        find(
            "tower_pressure_breaker_rejected_total",
            &[("breaker", "backend"), ("key", "/down")]
        ),
        Some(2.0)
    );
    assert!(
        find(
            "tower_pressure_retry_budget_available",
            &[("retry", "backend")]
        )
        .is_some()
    );
    assert_eq!(
        find("tower_pressure_breakers_open", &[("breaker", "backend")]),
        Some(1.0)
    );
}
