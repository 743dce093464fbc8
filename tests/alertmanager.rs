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

use std::time::Duration;

use alertmanager_support::AlertmanagerServer;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::alert::{AlertManager, AlertmanagerSink};
use tower_pressure::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, CircuitState};
use tower_pressure::event::EventBus;

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
    Fut: std::future::Future<Output = Option<T>>,
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
