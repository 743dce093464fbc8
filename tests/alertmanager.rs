//! The Alertmanager sink against a real Prometheus Alertmanager (`prometheus-alertmanager`,
//! started here on a free loopback port, see `tests/alertmanager_support/`): three replicas
//! firing the same alert form one alert group; the alerts resolve when the condition clears;
//! active alerts are resent on the resend interval; labels, annotations and `generatorURL`
//! arrive as the sink's docs say.
//!
//! Each replica is a whole stack of its own: a circuit breaker named `db` on its own event
//! bus, an `AlertManager` consuming that bus, and an `AlertmanagerSink` with its own
//! `instance` label. The condition is real: failed calls open the breaker; an operator reset
//! closes it.
//!
//! Real time (real network I/O): every wait is bounded, assertions are on outcomes only.

mod alertmanager_support;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use alertmanager_support::AlertmanagerServer;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::alert::{
    Alert, AlertLayer, AlertManager, AlertmanagerError, AlertmanagerSink, Severity,
};
use tower_pressure::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, CircuitState};
use tower_pressure::event::EventBus;
use tower_pressure::status::StatusRegistry;

/// `GET url` on the Alertmanager, parsed as JSON (bounded: 10 s).
async fn get_json(url: &str) -> Value {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = url.parse().expect("uri");
    let fut = async {
        let resp = client.get(uri).await.expect("GET alertmanager");
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&body).expect("alertmanager answers JSON")
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("GET alertmanager within 10 s")
}

/// Polls `probe` every 100 ms until it returns `Some` (bounded: 30 s, real time).
async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not reached within 30 s");
}

/// One replica's stack.
struct Replica {
    breaker: CircuitBreakerHandle,
    layer: CircuitBreakerLayer,
    sink: AlertmanagerSink,
    _alerts: AlertManager,
}

fn replica(am: &str, i: usize, resend: Duration) -> Replica {
    let bus = EventBus::new(256);
    let layer = CircuitBreakerLayer::builder()
        .name("db")
        .failure_threshold(2)
        .wait_duration(Duration::from_secs(3600))
        .event_bus(bus.clone())
        .build()
        .expect("breaker");
    let sink = AlertmanagerSink::builder(am)
        .service("checkout")
        .instance(format!("replica-{i}"))
        .label("cluster", "test")
        .generator_url(format!("http://replica-{i}.checkout:8080/status"))
        .resend_interval(resend)
        .allow_private_destinations(true)
        .backoff(Duration::from_millis(10))
        .build()
        .expect("sink");
    let alerts = AlertManager::builder()
        .tracing(false)
        .event_bus(bus)
        .sink(sink.clone())
        .build()
        .expect("alert manager");
    Replica {
        breaker: layer.handle(),
        layer,
        sink,
        _alerts: alerts,
    }
}

/// Two failed calls through the replica's breaker: it opens.
async fn fail_calls(r: &Replica) {
    let mut svc = ServiceBuilder::new()
        .layer(r.layer.clone())
        .service(service_fn(|_: ()| async { Err::<(), _>("db down") }));
    for _ in 0..2 {
        let _ = svc.ready().await.expect("ready").call(()).await;
    }
    assert_eq!(r.breaker.state(), CircuitState::Open);
}

fn label<'a>(a: &'a Value, k: &str) -> &'a str {
    a["labels"][k].as_str().unwrap_or("")
}

/// The alerts Alertmanager holds named `breaker_opened`.
async fn breaker_alerts(am: &AlertmanagerServer, filter: &str) -> Vec<Value> {
    let all = get_json(&format!("{}/api/v2/alerts{filter}", am.url())).await;
    all.as_array()
        .expect("a JSON array of alerts")
        .iter()
        .filter(|a| label(a, "alertname") == "breaker_opened")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_form_one_group_that_resolves() {
    let am = AlertmanagerServer::start();
    // A long resend interval: active alerts carry endsAt = now + 4 min, so they can only
    // leave Alertmanager within this test because a resolved post ended them.
    let replicas: Vec<Replica> = (0..3)
        .map(|i| replica(&am.url(), i, Duration::from_secs(60)))
        .collect();
    for r in &replicas {
        fail_calls(r).await;
    }

    // One group (alertname + service) holding the three replicas' alerts.
    let groups_url = format!("{}/api/v2/alerts/groups", am.url());
    let groups = wait_for("three alerts in one group", || async {
        let g = get_json(&groups_url).await;
        let n: usize = g
            .as_array()?
            .iter()
            .map(|g| g["alerts"].as_array().map_or(0, Vec::len))
            .sum();
        (n == 3).then_some(g)
    })
    .await;
    let groups = groups.as_array().expect("groups");
    assert_eq!(groups.len(), 1, "one group for the fleet: {groups:#?}");
    let group = &groups[0];
    assert_eq!(group["labels"]["alertname"], "breaker_opened");
    assert_eq!(group["labels"]["service"], "checkout");
    let alerts = group["alerts"].as_array().expect("alerts");
    let mut instances: Vec<&str> = alerts.iter().map(|a| label(a, "instance")).collect();
    instances.sort_unstable();
    assert_eq!(instances, ["replica-0", "replica-1", "replica-2"]);

    // Labels, annotations and generatorURL as documented in `alert::alertmanager`.
    for a in alerts {
        let inst = label(a, "instance");
        let mut names: Vec<&str> = a["labels"]
            .as_object()
            .expect("labels")
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "alertname",
                "cluster",
                "instance",
                "key",
                "rule",
                "service",
                "severity"
            ],
            "{a:#}"
        );
        assert_eq!(label(a, "severity"), "warning");
        assert_eq!(label(a, "key"), "db");
        assert_eq!(label(a, "rule"), "breaker_opened");
        assert_eq!(label(a, "cluster"), "test");
        let summary = a["annotations"]["summary"].as_str().expect("summary");
        assert!(
            summary.starts_with("circuit breaker db opened"),
            "{summary}"
        );
        let description = a["annotations"]["description"]
            .as_str()
            .expect("description");
        assert!(description.starts_with(summary), "{description}");
        assert!(description.contains("breaker=db"), "{description}");
        assert!(
            description.contains("to=OPEN") || description.contains("to=open"),
            "{description}"
        );
        assert_eq!(
            a["generatorURL"],
            format!("http://{inst}.checkout:8080/status"),
            "{a:#}"
        );
        assert_eq!(a["status"]["state"], "active");
        assert!(
            a["startsAt"]
                .as_str()
                .is_some_and(|s| s < a["endsAt"].as_str().unwrap_or(""))
        );
    }
    for r in &replicas {
        assert_eq!(r.sink.active(), 1);
        assert!(r.sink.stats().delivered >= 1, "{:?}", r.sink.stats());
        assert_eq!(r.sink.stats().failed, 0, "{:?}", r.sink.stats());
        assert_eq!(r.sink.last_error(), None);
    }

    // The condition clears on every replica: each posts its alert once more with endsAt.
    for r in &replicas {
        r.breaker.reset();
        assert_eq!(r.breaker.state(), CircuitState::Closed);
    }
    wait_for("the alerts resolved", || async {
        breaker_alerts(&am, "?active=true")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    // Ended alerts are not listed at all, nor in a group.
    assert!(breaker_alerts(&am, "").await.is_empty());
    let groups = get_json(&groups_url).await;
    let left: usize = groups
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["alerts"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(left, 0, "{groups:#}");
    for r in &replicas {
        assert_eq!(r.sink.active(), 0);
        let s = r.sink.stats();
        assert_eq!((s.failed, s.queued), (0, 0), "{s:?}");
        // The firing post and the resolved post (at least).
        assert!(s.delivered >= 2, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_alert_is_resent_on_the_interval() {
    let am = AlertmanagerServer::start();
    let r = replica(&am.url(), 0, Duration::from_secs(1));
    fail_calls(&r).await;
    let first = wait_for("the alert in Alertmanager", || async {
        breaker_alerts(&am, "?active=true").await.pop()
    })
    .await;
    let posts = r.sink.posts();
    // Alertmanager stamps updatedAt on every post it receives; endsAt (now + 4 x the
    // interval) moves on with each resend; startsAt stays the first firing.
    let resent = wait_for("a resend", || {
        let first = first.clone();
        let am = &am;
        async move {
            let a = breaker_alerts(am, "?active=true").await.pop()?;
            (a["updatedAt"] != first["updatedAt"] && a["endsAt"] != first["endsAt"]).then_some(a)
        }
    })
    .await;
    assert_eq!(resent["startsAt"], first["startsAt"]);
    assert!(
        resent["endsAt"].as_str() > first["endsAt"].as_str(),
        "{first:#} {resent:#}"
    );
    assert!(r.sink.posts() > posts);
    assert_eq!(r.sink.stats().failed, 0);
    assert_eq!(r.sink.active(), 1);
    // Still one alert: a resend is the same alert again, not a new one.
    assert_eq!(breaker_alerts(&am, "").await.len(), 1);
}

// ------------------------------------------------- error paths against loopback servers

/// How the fake Alertmanager answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// `200`, the body recorded.
    Ok = 0,
    /// `500 Internal Server Error`, the body recorded.
    Error = 1,
    /// Bytes that are not HTTP, then the connection closed.
    Garbage = 2,
    /// Accepts and reads, never answers.
    Hang = 3,
}

/// A real hyper server on 127.0.0.1 answering as its `Mode` (switchable); sends every
/// request body it answered (200 or 500) to the receiver, with the status it gave.
struct FakeAm {
    addr: std::net::SocketAddr,
    mode: Arc<AtomicU8>,
    bodies: mpsc::UnboundedReceiver<(u16, Value)>,
    connections: Arc<AtomicUsize>,
}

impl FakeAm {
    fn set(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }
}

async fn fake_alertmanager(mode: Mode) -> FakeAm {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let m = Arc::new(AtomicU8::new(mode as u8));
    let connections = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let (mode2, conns) = (m.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let (tx, mode) = (tx.clone(), mode2.clone());
            tokio::spawn(async move {
                match mode.load(Ordering::SeqCst) {
                    2 => {
                        let mut buf = [0u8; 4096];
                        let _ = stream.read(&mut buf).await;
                        let _ = stream.write_all(b"this is not HTTP at all\r\n\r\n").await;
                        return;
                    }
                    3 => {
                        let mut buf = [0u8; 4096];
                        let _ = stream.read(&mut buf).await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    _ => {}
                }
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (tx, mode) = (tx.clone(), mode.clone());
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let status = if mode.load(Ordering::SeqCst) == Mode::Error as u8 {
                                500
                            } else {
                                200
                            };
                            let _ = tx.send((status, json));
                            let mut resp = http::Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() =
                                http::StatusCode::from_u16(status).expect("status");
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    FakeAm {
        addr,
        mode: m,
        bodies: rx,
        connections,
    }
}

/// A sink to `base` with one attempt per post and a short timeout, an `AlertManager`
/// delivering to it, and a status registry showing both.
fn failing_stack(
    base: String,
    resend: Duration,
) -> (AlertmanagerSink, AlertManager, StatusRegistry) {
    let sink = AlertmanagerSink::builder(base)
        .service("checkout")
        .instance("replica-0")
        .resend_interval(resend)
        .allow_private_destinations(true)
        .max_attempts(1)
        .timeout(Duration::from_millis(300))
        .build()
        .expect("sink");
    let alerts = AlertManager::builder()
        .tracing(false)
        .sink(sink.clone())
        .build()
        .expect("alert manager");
    let registry = StatusRegistry::new();
    registry.register(alerts.clone());
    (sink, alerts, registry)
}

fn disk_full(key: &str) -> Alert {
    Alert::new(Severity::Error, "disk_full", "disk full").with_key(key.to_string())
}

/// A request through an `AlertLayer` completes on its first poll (the sink's trouble never
/// reaches the request path).
fn request_completes_at_once() {
    let mut svc = ServiceBuilder::new()
        .layer(AlertLayer::new("protected"))
        .service(service_fn(|x: u32| async move { Ok::<_, Infallible>(x) }));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = std::pin::pin!(svc.call(7));
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(7))));
}

/// The next error the sink broadcasts (bounded: 30 s).
async fn next_error(rx: &mut broadcast::Receiver<AlertmanagerError>) -> AlertmanagerError {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("an error within 30 s")
        .expect("error channel open")
}

/// `tower_pressure_alert_sink_failed_total{sink="alertmanager"}` on the status page.
fn failed_metric(registry: &StatusRegistry) -> Option<f64> {
    registry.snapshot().section("alerts")?.metric_value(
        "tower_pressure_alert_sink_failed_total",
        &[("sink", "alertmanager")],
    )
}

#[tokio::test]
async fn status_500_is_a_typed_error_counted_and_never_blocks_a_request() {
    let mut am = fake_alertmanager(Mode::Error).await;
    let (sink, alerts, registry) =
        failing_stack(format!("http://{}", am.addr), Duration::from_secs(3600));
    let mut errors = sink.errors();
    assert!(alerts.raise("disk", disk_full("/var"), Duration::ZERO));
    request_completes_at_once();
    let e = next_error(&mut errors).await;
    assert_eq!(
        e,
        AlertmanagerError::Status {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            alerts: 1
        }
    );
    assert!(e.to_string().contains("500"), "{e}");
    assert_eq!(sink.last_error(), Some(e));
    // The post did reach the server, as a v2 postableAlert list.
    let (status, body) = am.bodies.recv().await.expect("a post");
    assert_eq!(status, 500);
    assert_eq!(body[0]["labels"]["alertname"], "disk_full");
    let s = sink.stats();
    assert_eq!((s.delivered, s.failed), (0, 1), "{s:?}");
    // Not dropped: still active, to be resent.
    assert_eq!(sink.active(), 1);
    assert_eq!(s.queued, 1, "{s:?}");
    assert_eq!(failed_metric(&registry), Some(1.0));
    request_completes_at_once();
}

#[tokio::test]
async fn garbage_reply_is_a_transport_error_without_credentials() {
    let am = fake_alertmanager(Mode::Garbage).await;
    let (sink, alerts, registry) = failing_stack(
        format!("http://ops:s3cret@{}", am.addr),
        Duration::from_secs(3600),
    );
    let mut errors = sink.errors();
    assert!(alerts.raise("disk", disk_full("/var"), Duration::ZERO));
    request_completes_at_once();
    let e = next_error(&mut errors).await;
    let AlertmanagerError::Transport { message, alerts: n } = &e else {
        panic!("expected a transport error, got {e:?}");
    };
    assert_eq!(*n, 1);
    assert!(!message.is_empty());
    let shown = format!("{e} {e:?} {sink:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("ops:"),
        "{shown}"
    );
    assert!(am.connections.load(Ordering::SeqCst) >= 1);
    assert_eq!(sink.stats().failed, 1);
    assert_eq!(sink.active(), 1);
    assert_eq!(failed_metric(&registry), Some(1.0));
}

#[tokio::test]
async fn hanging_alertmanager_times_out_as_a_transport_error() {
    let am = fake_alertmanager(Mode::Hang).await;
    let (sink, alerts, registry) =
        failing_stack(format!("http://{}", am.addr), Duration::from_secs(3600));
    let mut errors = sink.errors();
    assert!(alerts.raise("disk", disk_full("/var"), Duration::ZERO));
    // While the post hangs, requests are not held.
    request_completes_at_once();
    let e = next_error(&mut errors).await;
    let AlertmanagerError::Transport { message, alerts: 1 } = &e else {
        panic!("expected a transport error for one alert, got {e:?}");
    };
    assert!(
        message.contains("timed out") || message.contains("timeout"),
        "{message}"
    );
    assert_eq!(sink.stats().failed, 1);
    assert_eq!(failed_metric(&registry), Some(1.0));
    request_completes_at_once();
}

#[tokio::test]
async fn failed_resolved_alert_is_kept_and_sent_with_the_next_post() {
    let mut am = fake_alertmanager(Mode::Error).await;
    let (sink, alerts, _registry) =
        failing_stack(format!("http://{}", am.addr), Duration::from_secs(3600));
    let mut errors = sink.errors();
    assert!(alerts.raise("disk", disk_full("/var"), Duration::ZERO));
    next_error(&mut errors).await;
    assert!(alerts.resolve("disk", Some("/var")));
    // The resolved post fails too...
    let e = next_error(&mut errors).await;
    assert!(
        matches!(e, AlertmanagerError::Status { alerts: 1, .. }),
        "{e:?}"
    );
    // ...and is kept, not dropped, and not retried in a loop: with nothing new to send and
    // the resend tick an hour away, the sink makes no further post.
    let posts = sink.posts();
    assert_eq!(posts, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.posts(),
        posts,
        "a failed resolved alert was retried in a loop"
    );
    let s = sink.stats();
    assert_eq!((s.failed, s.dropped, s.queued), (2, 0, 1), "{s:?}");
    assert_eq!(sink.active(), 0);

    // Alertmanager is back; the next post (a new alert) carries the resolved one along.
    am.set(Mode::Ok);
    assert!(alerts.raise("disk", disk_full("/data"), Duration::ZERO));
    let body = loop {
        let (status, body) = tokio::time::timeout(Duration::from_secs(30), am.bodies.recv())
            .await
            .expect("a post within 30 s")
            .expect("server running");
        if status == 200 {
            break body;
        }
    };
    let posted = body.as_array().expect("a list of alerts");
    assert_eq!(posted.len(), 2, "{body:#}");
    let resolved = posted
        .iter()
        .find(|a| a["labels"]["key"] == "/var")
        .expect("the resolved alert");
    let active = posted
        .iter()
        .find(|a| a["labels"]["key"] == "/data")
        .expect("the new alert");
    // The resolved one ended in the past (as it cleared); the active one is valid for 4 h
    // (4 x the resend interval): its endsAt is later.
    assert!(
        resolved["endsAt"].as_str() < active["endsAt"].as_str(),
        "{body:#}"
    );
    assert!(resolved["startsAt"].as_str() <= resolved["endsAt"].as_str());
    // The reply reaches the sink after the server recorded the body.
    let s = wait_for("the post counted", || async {
        let s = sink.stats();
        (s.delivered == 2).then_some(s)
    })
    .await;
    assert_eq!(
        (s.delivered, s.failed, s.dropped, s.queued),
        (2, 2, 0, 1),
        "{s:?}"
    );
}
