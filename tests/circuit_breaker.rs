//! Integration tests of the circuit breaker through tower, axum and a real hyper server.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::circuit_breaker::http::{
    HeaderKey, ObserveBody, ServerErrorsAsFailures, circuit_open_response,
};
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitOpen, CircuitState, Outcome};

fn fast_layer() -> tower_pressure::circuit_breaker::CircuitBreakerBuilder {
    CircuitBreakerLayer::builder()
        .name("test")
        .failure_threshold(3)
        .wait_duration(Duration::from_secs(10))
        .permitted_calls_in_half_open(2)
        .success_threshold(2)
}

#[tokio::test(start_paused = true)]
async fn tower_cycle_under_paused_time() {
    let layer = fast_layer().build().unwrap();
    let h = layer.handle();
    let healthy = Arc::new(AtomicBool::new(false));
    let hc = healthy.clone();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |_: ()| {
            let ok = hc.load(Ordering::SeqCst);
            async move { if ok { Ok::<_, &str>("ok") } else { Err("down") } }
        }));
    for _ in 0..3 {
        assert!(
            !svc.ready()
                .await
                .unwrap()
                .call(())
                .await
                .unwrap_err()
                .is::<CircuitOpen>()
        );
    }
    assert_eq!(h.state(), CircuitState::Open);
    let e = svc.ready().await.unwrap().call(()).await.unwrap_err();
    let open = e.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(
        (open.breaker(), open.retry_after()),
        ("test", Duration::from_secs(10))
    );
    assert!(e.to_string().starts_with("circuit breaker `test`"));
    tokio::time::advance(Duration::from_secs(10)).await;
    healthy.store(true, Ordering::SeqCst);
    svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(h.state(), CircuitState::HalfOpen);
    svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
    let m = h.metrics();
    assert_eq!((m.calls, m.failures, m.rejected), (5, 3, 1));
}

#[tokio::test(start_paused = true)]
async fn classifier_closure_ignores_some_errors() {
    let layer = fast_layer()
        .build()
        .unwrap()
        .classifier(|r: &Result<(), &'static str>| match r {
            Err("not found") => Outcome::Ignore,
            Err(_) => Outcome::Failure,
            Ok(()) => Outcome::Success,
        });
    let h = layer.handle();
    let mut svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|e: &'static str| async move {
                if e.is_empty() { Ok(()) } else { Err(e) }
            }));
    for _ in 0..10 {
        let _ = svc.ready().await.unwrap().call("not found").await;
    }
    assert_eq!((h.state(), h.metrics().calls), (CircuitState::Closed, 0));
    for _ in 0..3 {
        let _ = svc.ready().await.unwrap().call("boom").await;
    }
    assert_eq!(h.state(), CircuitState::Open);
}

/// Dropping in-flight probe futures at random points never wedges HALF_OPEN.
#[tokio::test(start_paused = true)]
async fn cancelled_probes_never_wedge_half_open() {
    let layer = fast_layer()
        .permitted_calls_in_half_open(3)
        .build()
        .unwrap();
    let h = layer.handle();
    let fail = Arc::new(AtomicBool::new(true));
    let f2 = fail.clone();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(move |delay_ms: u64| {
            let fail = f2.load(Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                if fail { Err("down") } else { Ok(()) }
            }
        }));
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..3 {
        let _ = svc.clone().oneshot(0).await;
    }
    for round in 0..200 {
        tokio::time::advance(Duration::from_secs(31)).await; // past wait and half-open deadline
        // Start up to 3 probes, poll a random subset once, drop them all at random points.
        let mut futs: Vec<_> = (0..3)
            .map(|_| Box::pin(svc.clone().oneshot(1000)))
            .collect();
        for f in futs.iter_mut() {
            if rng.bool() {
                let _ = tokio_test::task::spawn(f.as_mut()).poll();
            }
        }
        while !futs.is_empty() {
            futs.swap_remove(rng.usize(..futs.len()));
        }
        // Never wedged: a probe is admitted right away (each round re-opens with a failure).
        let r = svc.clone().oneshot(0).await;
        assert!(
            !r.unwrap_err().is::<CircuitOpen>(),
            "round {round}: {:?}",
            h.metrics()
        );
    }
    fail.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(31)).await;
    svc.clone().oneshot(0).await.unwrap();
    svc.clone().oneshot(0).await.unwrap();
    assert_eq!(h.state(), CircuitState::Closed);
}

#[test]
fn two_threads_hammering_one_breaker_totals_add_up() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(0)
        .failure_rate_threshold(100.0)
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|i: u64| async move {
            if i.is_multiple_of(4) {
                Err("x")
            } else {
                Ok(())
            }
        }));
    const N: u64 = 50_000;
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut svc = svc.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for i in 0..N {
                        let _ = svc.ready().await.unwrap().call(i).await;
                    }
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let m = h.metrics();
    assert_eq!(h.state(), CircuitState::Closed);
    assert_eq!(
        (m.calls, m.failures, m.successes, m.rejected),
        (2 * N, 2 * N / 4, 2 * N * 3 / 4, 0)
    );
    assert_eq!(m.window_calls, 100);
}

#[tokio::test(start_paused = true)]
async fn per_key_breakers_are_independent_and_bounded() {
    let layer = fast_layer()
        .max_keys(2)
        .idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .classifier(ServerErrorsAsFailures)
        .per_key(HeaderKey(http::HeaderName::from_static("x-provider")));
    let h = layer.handle();
    let svc = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: http::Request<()>| async move {
            let status = if req.headers()["x-provider"] == "bad" {
                500
            } else {
                200
            };
            Ok::<_, Infallible>(http::Response::builder().status(status).body(()).unwrap())
        },
    ));
    let req = |k: &str| {
        http::Request::builder()
            .header("x-provider", k)
            .body(())
            .unwrap()
    };
    for _ in 0..3 {
        svc.clone().oneshot(req("bad")).await.unwrap();
    }
    let e = svc.clone().oneshot(req("bad")).await.unwrap_err();
    assert_eq!(e.downcast_ref::<CircuitOpen>().unwrap().key(), Some("bad"));
    svc.clone().oneshot(req("good")).await.unwrap();
    assert_eq!(h.state_of("bad"), Some(CircuitState::Open));
    assert_eq!(h.state_of("good"), Some(CircuitState::Closed));
    assert!(h.can_execute(Some("bad")).is_err());
    // Full: a third key shares the default breaker until a key has been idle long enough.
    svc.clone().oneshot(req("third")).await.unwrap();
    assert_eq!(h.state_of("third"), None);
    assert_eq!(h.metrics().calls, 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    svc.clone().oneshot(req("good")).await.unwrap(); // "good" used recently; "bad" idle
    svc.clone().oneshot(req("third")).await.unwrap();
    assert_eq!(h.state_of("third"), Some(CircuitState::Closed));
    assert_eq!(h.state_of("bad"), None);
    assert_eq!(h.keys().len(), 2);
    assert!(h.reset_key("good"));
    assert_eq!(h.reset_all(), 3);
}

/// A body that yields one chunk, then an error: the response head was fine.
struct Truncated(u8);
impl hyper::body::Body for Truncated {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0 += 1;
        Poll::Ready(Some(if self.0 == 1 {
            Ok(hyper::body::Frame::data(Bytes::from_static(b"partial")))
        } else {
            Err(std::io::Error::other("connection reset"))
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn truncated_bodies_count_as_failures() {
    let layer = fast_layer()
        .build()
        .unwrap()
        .classifier(ObserveBody(ServerErrorsAsFailures));
    let h = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_: ()| async {
            Ok::<_, Infallible>(http::Response::new(Truncated(0)))
        }));
    for i in 0..3 {
        let res = svc.clone().oneshot(()).await.unwrap();
        assert_eq!(h.metrics().calls, i); // not yet: the body has not ended
        assert!(res.into_body().collect().await.is_err());
    }
    assert_eq!((h.state(), h.metrics().failures), (CircuitState::Open, 3));
}

async fn handler(healthy: Arc<AtomicBool>) -> http::Response<Full<Bytes>> {
    let status = if healthy.load(Ordering::SeqCst) {
        200
    } else {
        500
    };
    http::Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(b"hi")))
        .unwrap()
}

fn to_response(r: Result<http::Response<Full<Bytes>>, BoxError>) -> http::Response<Full<Bytes>> {
    r.unwrap_or_else(|e| {
        circuit_open_response(&*e).unwrap_or_else(|| {
            http::Response::builder()
                .status(500)
                .body(Full::default())
                .unwrap()
        })
    })
}

#[tokio::test(start_paused = true)]
async fn axum_two_routes_share_one_breaker() {
    use axum::routing::get;
    let layer = fast_layer()
        .build()
        .unwrap()
        .classifier(ServerErrorsAsFailures);
    let h = layer.handle();
    let healthy = Arc::new(AtomicBool::new(false));
    let (h1, h2) = (healthy.clone(), healthy.clone());
    let app = axum::Router::new()
        .route("/a", get(move || handler(h1.clone())))
        .route("/b", get(move || handler(h2.clone())))
        .layer(
            ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |e: BoxError| async move {
                        circuit_open_response::<axum::body::Body>(&*e).unwrap_or_else(|| {
                            http::Response::builder()
                                .status(500)
                                .body(axum::body::Body::empty())
                                .unwrap()
                        })
                    },
                ))
                .layer(layer),
        );
    let get = |p: &str| {
        http::Request::get(p)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(app.clone().oneshot(get("/a")).await.unwrap().status(), 500);
    }
    // Route /b never failed, yet it sees the breaker /a opened: one shared breaker.
    let res = app.clone().oneshot(get("/b")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "10");
    assert_eq!(h.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn real_hyper_server_fails_then_recovers() {
    use hyper_util::rt::TokioIo;
    let layer = fast_layer()
        .build()
        .unwrap()
        .classifier(ServerErrorsAsFailures);
    let h = layer.handle();
    let mut events = h.events().subscribe();
    let healthy = Arc::new(AtomicBool::new(false));
    let hc = healthy.clone();
    let breaker = ServiceBuilder::new().layer(layer).service(service_fn(
        move |_: http::Request<hyper::body::Incoming>| {
            let hc = hc.clone();
            async move { Ok::<_, Infallible>(handler(hc).await) }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let s2 = served.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let b = breaker.clone();
            let s2 = s2.clone();
            let svc = hyper::service::service_fn(move |req| {
                s2.fetch_add(1, Ordering::SeqCst);
                let fut = b.clone().oneshot(req);
                async move { Ok::<_, Infallible>(to_response(fut.await)) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    let request = || async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .header("host", "127.0.0.1")
            .body(Full::<Bytes>::default())
            .unwrap();
        tx.send_request(req).await.unwrap()
    };
    for _ in 0..3 {
        assert_eq!(request().await.status(), 500);
    }
    let res = request().await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "10");
    assert_eq!(h.state(), CircuitState::Open);
    healthy.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(request().await.status(), 200); // probe 1
    assert_eq!(h.state(), CircuitState::HalfOpen);
    assert_eq!(request().await.status(), 200); // probe 2 closes
    assert_eq!(h.state(), CircuitState::Closed);
    assert_eq!(served.load(Ordering::SeqCst), 6);
    let mut transitions = vec![];
    while let Ok(e) = events.try_recv() {
        if let tower_pressure::event::Event::Breaker(b) = e
            && let tower_pressure::event::BreakerEventKind::StateTransition { to, .. } = b.kind
        {
            transitions.push(to);
        }
    }
    assert_eq!(
        transitions,
        [
            CircuitState::Open,
            CircuitState::HalfOpen,
            CircuitState::Closed
        ]
    );
}
