//! Active health checks against real servers on 127.0.0.1: a hyper HTTP server and a
//! tonic-health gRPC server, each switched unhealthy and healthy while a checker probes them;
//! the checker holds the dependency's breaker (a key of a per-key breaker) open, so a
//! `FallbackLayer` answers from the backup provider before any user request fails, and the
//! breaker goes through HALF_OPEN when the dependency recovers.
//!
//! These tests do real network I/O, so they run on real time with short intervals; every wait
//! is bounded (10 s, far above the 40 ms check interval) and the assertions are on states and
//! counts, never on speed. The hold rules without I/O run on a paused clock.

#![cfg(feature = "http")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use tower_pressure::event::{Event, HealthState};
use tower_pressure::fallback::{FallbackLayer, is_circuit_open};
use tower_pressure::health::{Check, Dependency, HealthChecker, HttpCheck};
use tower_pressure::status::StatusProvider;

/// A hyper server: `/healthz` answers `health` (a status code the test flips); any other path
/// answers 200 "primary" and counts the hit.
struct Server {
    addr: SocketAddr,
    health: Arc<AtomicU16>,
    work_hits: Arc<AtomicU64>,
    health_hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Arc::new(AtomicU16::new(200));
    let work_hits = Arc::new(AtomicU64::new(0));
    let health_hits = Arc::new(AtomicU64::new(0));
    let (h, w, hh) = (health.clone(), work_hits.clone(), health_hits.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (h, w, hh) = (h.clone(), w.clone(), hh.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (h, w, hh) = (h.clone(), w.clone(), hh.clone());
                    async move {
                        let res = if req.uri().path() == "/healthz" {
                            hh.fetch_add(1, Ordering::Relaxed);
                            let code = StatusCode::from_u16(h.load(Ordering::Relaxed)).unwrap();
                            Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::new()))
                        } else {
                            w.fetch_add(1, Ordering::Relaxed);
                            Response::builder().body(Full::new(Bytes::from_static(b"primary")))
                        };
                        Ok::<_, Infallible>(res.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        health,
        work_hits,
        health_hits,
        task,
    }
}

/// Waits (bounded, real time) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after 10 s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_holds_keyed_breaker_and_fallback_switches_before_a_request_fails() {
    let srv = server().await;
    let breakers = CircuitBreakerLayer::builder()
        .name("providers")
        .build()
        .unwrap()
        .per_key(|_: &String| Some("primary".to_string()));
    let handle = breakers.handle();
    let mut events = handle.events().subscribe();

    let checker = HealthChecker::builder()
        .interval(Duration::from_millis(40))
        .jitter(Duration::from_millis(10))
        .timeout(Duration::from_secs(2))
        .unhealthy_threshold(2)
        .healthy_threshold(3)
        .event_bus(handle.events().clone())
        .dependency(
            Dependency::new(
                "primary",
                HttpCheck::new(&format!("http://{}/healthz", srv.addr))
                    .unwrap()
                    .healthy_statuses(200..=204)
                    .unwrap(),
            )
            .breaker(handle.clone(), Some("primary")),
        )
        .build()
        .unwrap();

    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let work = format!("http://{}/work", srv.addr);
    let primary = service_fn(move |_: String| {
        let (client, uri) = (client.clone(), work.clone());
        async move {
            let res = client.get(uri.parse()?).await?;
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>(String::from_utf8_lossy(&body).into_owned())
        }
    });
    let backup = service_fn(|_: String| async { Ok::<_, BoxError>("backup".to_string()) });
    let svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::service(backup)
                .when(is_circuit_open)
                .build()
                .unwrap(),
        )
        .layer(breakers)
        .service(primary);

    until("healthy", || {
        checker.state("primary") == Some(HealthState::Healthy)
    })
    .await;
    assert_eq!(svc.clone().oneshot("q".into()).await.unwrap(), "primary");
    assert_eq!(srv.work_hits.load(Ordering::Relaxed), 1);

    // 503 is outside 200..=204: unhealthy after two checks, breaker key held open.
    srv.health.store(503, Ordering::Relaxed);
    until("unhealthy", || {
        checker.state("primary") == Some(HealthState::Unhealthy)
    })
    .await;
    assert_eq!(handle.state_of("primary"), Some(CircuitState::ForcedOpen));
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "the default breaker is untouched"
    );
    // The user request never reaches the primary: the fallback answers.
    for _ in 0..5 {
        assert_eq!(svc.clone().oneshot("q".into()).await.unwrap(), "backup");
    }
    assert_eq!(srv.work_hits.load(Ordering::Relaxed), 1);
    let dep = &checker.dependencies()[0];
    assert!(dep.held);
    assert!(dep.consecutive_failures >= 2);
    assert_eq!(dep.last_error.as_deref(), Some("status 503"));
    let section = checker.status().section();
    let entry = &section.entries[0];
    assert_eq!(entry.info_value("state"), Some("UNHEALTHY"));
    assert_eq!(entry.info_value("held"), Some("true"));
    assert_eq!(
        entry.metric_value("tower_pressure_health_state", &[("dependency", "primary")]),
        Some(2.0)
    );

    // Healthy again after three passes: the breaker goes HALF_OPEN, the next call probes the
    // primary and closes it.
    srv.health.store(204, Ordering::Relaxed);
    until("healthy again", || {
        checker.state("primary") == Some(HealthState::Healthy)
    })
    .await;
    assert_eq!(handle.state_of("primary"), Some(CircuitState::HalfOpen));
    assert!(!checker.dependencies()[0].held);
    for _ in 0..3 {
        assert_eq!(svc.clone().oneshot("q".into()).await.unwrap(), "primary");
    }
    assert_eq!(handle.state_of("primary"), Some(CircuitState::Closed));

    // The bus saw both health changes and the breaker's transitions with their reasons.
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        match &e {
            Event::Health(h) => kinds.push(format!("{}->{}", h.from, h.to)),
            Event::Breaker(_) => kinds.push(e.kind().to_string()),
            _ => {}
        }
    }
    for want in [
        "UNKNOWN->HEALTHY",
        "HEALTHY->UNHEALTHY",
        "UNHEALTHY->HEALTHY",
        "breaker_state_transition",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "{want} missing in {kinds:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_timeout_and_connection_refused_count_as_failures() {
    // A port with nothing listening: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A server that accepts and never answers: the timeout fails the check.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let checker = HealthChecker::builder()
        .interval(Duration::from_millis(20))
        .jitter(Duration::ZERO)
        .timeout(Duration::from_millis(100))
        .unhealthy_threshold(2)
        .dependency(Dependency::new(
            "refused",
            HttpCheck::new(&format!("http://127.0.0.1:{port}/")).unwrap(),
        ))
        .dependency(Dependency::new(
            "silent",
            HttpCheck::new(&format!("http://{silent_addr}/")).unwrap(),
        ))
        .build()
        .unwrap();
    until("both unhealthy", || {
        checker.state("refused") == Some(HealthState::Unhealthy)
            && checker.state("silent") == Some(HealthState::Unhealthy)
    })
    .await;
    let deps = checker.dependencies();
    let silent = deps.iter().find(|d| &*d.name == "silent").unwrap();
    assert!(
        silent.last_error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        silent.last_error
    );
    keep.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_checker_stops_the_checks_and_releases_the_hold() {
    let srv = server().await;
    srv.health.store(500, Ordering::Relaxed);
    let breakers = CircuitBreakerLayer::builder().name("b").build().unwrap();
    let handle = breakers.handle();
    let checks = srv.health_hits.clone();
    let counted = HttpCheck::new(&format!("http://{}/healthz", srv.addr)).unwrap();
    let checker = HealthChecker::builder()
        .interval(Duration::from_millis(20))
        .jitter(Duration::ZERO)
        .unhealthy_threshold(1)
        .dependency(Dependency::new("dep", counted).breaker(handle.clone(), None))
        .build()
        .unwrap();
    until("held", || handle.state() == CircuitState::ForcedOpen).await;
    drop(checker);
    assert_eq!(
        handle.state(),
        CircuitState::HalfOpen,
        "hold released on drop"
    );
    let after = checks.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        checks.load(Ordering::Relaxed) <= after + 1,
        "checks continued after drop"
    );
}

/// Hold rules without network I/O: paused clock.
#[tokio::test(start_paused = true)]
async fn max_hold_defers_to_probes_and_passive_trip_rearms_the_hold() {
    let breakers = CircuitBreakerLayer::builder()
        .name("b")
        .failure_threshold(1)
        .wait_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = breakers.handle();
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let check = Check::custom(move || {
        let ok = u.load(Ordering::Relaxed);
        async move { if ok { Ok(()) } else { Err("down".into()) } }
    });
    let checker = HealthChecker::builder()
        .interval(Duration::from_secs(1))
        .jitter(Duration::ZERO)
        .unhealthy_threshold(2)
        .healthy_threshold(2)
        .max_hold(Duration::from_secs(10))
        .dependency(Dependency::new("dep", check).breaker(handle.clone(), None))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(handle.state(), CircuitState::ForcedOpen);
    // After max_hold of failing checks alone, the breaker is handed to its probes.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(checker.state("dep"), Some(HealthState::Unhealthy));
    assert!(!checker.dependencies()[0].held);
    // A successful probe closes it, and the checker does not fight real traffic.
    let mut svc = ServiceBuilder::new()
        .layer(breakers.clone())
        .service(service_fn(|ok: bool| async move {
            if ok {
                Ok::<_, BoxError>(())
            } else {
                Err("fail".into())
            }
        }));
    svc.ready().await.unwrap().call(true).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        matches!(
            handle.state(),
            CircuitState::Closed | CircuitState::HalfOpen
        ),
        "{:?}",
        handle.state()
    );
    // Passive agrees (a real failure opens the breaker): the hold re-arms.
    while handle.state() == CircuitState::HalfOpen {
        let _ = svc.ready().await.unwrap().call(true).await;
    }
    let _ = svc.ready().await.unwrap().call(false).await;
    assert_eq!(handle.state(), CircuitState::Open);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.state(), CircuitState::ForcedOpen);
    assert!(checker.dependencies()[0].held);
    // A passing check alone does not close a breaker; recovery goes through HALF_OPEN.
    up.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(checker.state("dep"), Some(HealthState::Healthy));
    assert_eq!(handle.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn passive_trip_is_not_shortened_by_passing_checks() {
    let breakers = CircuitBreakerLayer::builder()
        .name("b")
        .failure_threshold(1)
        .wait_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    let handle = breakers.handle();
    let _checker = HealthChecker::builder()
        .interval(Duration::from_secs(1))
        .jitter(Duration::ZERO)
        .dependency(
            Dependency::new("dep", Check::custom(|| async { Ok(()) }))
                .breaker(handle.clone(), None),
        )
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(breakers)
        .service(service_fn(|_: ()| async {
            Err::<(), BoxError>("fail".into())
        }));
    let _ = svc.ready().await.unwrap().call(()).await;
    assert_eq!(handle.state(), CircuitState::Open);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        handle.state(),
        CircuitState::Open,
        "checks never close a passive trip"
    );
}

#[tokio::test]
async fn bad_configuration_is_a_typed_error() {
    let e = HealthChecker::builder()
        .interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "health.interval");
    let e = HealthChecker::builder()
        .healthy_threshold(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "health.healthy_threshold");
    let d = || Dependency::new("x", Check::custom(|| async { Ok(()) }));
    let e = HealthChecker::builder()
        .dependency(d())
        .dependency(d())
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "health.dependency.name");
    assert_eq!(
        HttpCheck::new("https://x/").unwrap_err().field(),
        "health.http.uri"
    );
    assert!(
        HttpCheck::new("http://x/")
            .unwrap()
            .healthy_statuses(0..=99)
            .is_err()
    );
}

/// A real tonic server with `tonic-health`'s service on 127.0.0.1, switched NOT_SERVING and
/// SERVING while a `GrpcCheck` probes it over HTTP/2.
#[cfg(feature = "grpc-health")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_check_follows_the_serving_status() {
    use tonic_health::ServingStatus;
    use tower_pressure::health::GrpcCheck;

    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("llm.Chat", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health_service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
    });
    let breakers = CircuitBreakerLayer::builder()
        .name("grpc")
        .build()
        .unwrap()
        .per_key(|_: &()| Some("chat".to_string()));
    let handle = breakers.handle();
    let checker = HealthChecker::builder()
        .interval(Duration::from_millis(40))
        .jitter(Duration::from_millis(10))
        .timeout(Duration::from_secs(2))
        .unhealthy_threshold(2)
        .healthy_threshold(2)
        .dependency(
            Dependency::new(
                "chat",
                GrpcCheck::new(&format!("http://{addr}"))
                    .unwrap()
                    .service("llm.Chat"),
            )
            .breaker(handle.clone(), Some("chat")),
        )
        .dependency(Dependency::new(
            "unknown-service",
            GrpcCheck::new(&format!("http://{addr}"))
                .unwrap()
                .service("no.Such"),
        ))
        .build()
        .unwrap();
    until("chat healthy", || {
        checker.state("chat") == Some(HealthState::Healthy)
    })
    .await;
    until("unknown service unhealthy", || {
        checker.state("unknown-service") == Some(HealthState::Unhealthy)
    })
    .await;

    reporter
        .set_service_status("llm.Chat", ServingStatus::NotServing)
        .await;
    until("chat unhealthy", || {
        checker.state("chat") == Some(HealthState::Unhealthy)
    })
    .await;
    assert_eq!(handle.state_of("chat"), Some(CircuitState::ForcedOpen));
    let dep = checker
        .dependencies()
        .into_iter()
        .find(|d| &*d.name == "chat")
        .unwrap();
    assert_eq!(dep.kind, "grpc");
    assert_eq!(dep.last_error.as_deref(), Some("NOT_SERVING"));

    reporter
        .set_service_status("llm.Chat", ServingStatus::Serving)
        .await;
    until("chat healthy again", || {
        checker.state("chat") == Some(HealthState::Healthy)
    })
    .await;
    assert_eq!(handle.state_of("chat"), Some(CircuitState::HalfOpen));
    server.abort();
}
