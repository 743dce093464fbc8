//! Integration tests of the fallback layer. Time-based tests run under paused tokio time.
#![cfg(feature = "http")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitOpen};
use tower_pressure::event::{Event, EventBus};
use tower_pressure::fallback::http::{FallbackHeader, ServerErrors};
use tower_pressure::fallback::{
    FallbackFailed, FallbackLayer, FallbackUsed, is_circuit_open, is_rejection,
};
use tower_pressure::retry::Retryable;
use tower_pressure::status::StatusRegistry;
use tower_pressure::{Constraints, PressureLevel};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}

/// One scripted answer: a body, or a function making the error.
type Step = Result<&'static str, fn() -> BoxError>;

/// A primary whose answers are scripted per call: `Ok(body)` or `Err(error)`; the last entry
/// repeats. Records call times.
#[derive(Clone)]
struct Scripted {
    script: Arc<Vec<Step>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    fn new(script: Vec<Step>) -> Self {
        Self {
            script: Arc::new(script),
            calls: Arc::default(),
        }
    }
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
    fn times(&self) -> Vec<Duration> {
        let c = self.calls.lock().unwrap();
        c.iter().map(|t| t.duration_since(c[0])).collect()
    }
}

impl<R> Service<R> for Scripted {
    type Response = String;
    type Error = BoxError;
    type Future = std::future::Ready<Result<String, BoxError>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: R) -> Self::Future {
        let mut c = self.calls.lock().unwrap();
        c.push(Instant::now());
        let i = (c.len() - 1).min(self.script.len() - 1);
        std::future::ready(match &self.script[i] {
            Ok(s) => Ok((*s).to_string()),
            Err(f) => Err(f()),
        })
    }
}

fn down() -> BoxError {
    "primary down".into()
}
fn limited_2s() -> BoxError {
    Retryable::after("rate limited", secs(2)).into()
}
fn limited_30s() -> BoxError {
    Retryable::after("rate limited", secs(30)).into()
}
fn elapsed() -> BoxError {
    Box::new(tower::timeout::error::Elapsed::new())
}

fn backup(
    calls: Arc<AtomicU32>,
) -> impl Service<Request<()>, Response = String, Error = BoxError, Future = impl Send>
+ Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |req: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(format!("backup {}", req.uri().path())) }
    })
}

#[tokio::test]
async fn switch_provider_takes_over_and_reports() {
    let bus = EventBus::default();
    let mut rx = bus.subscribe();
    let calls = Arc::new(AtomicU32::new(0));
    let layer = FallbackLayer::service(backup(calls.clone()))
        .name("llm")
        .events(bus.clone())
        .build()
        .unwrap();
    let primary = Scripted::new(vec![Ok("primary"), Err(down)]);
    let mut svc = layer.layer(primary.clone());

    let r = svc
        .ready()
        .await
        .unwrap()
        .call(Request::get("/a").body(()).unwrap());
    assert_eq!(r.await.unwrap(), "primary");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "backup untouched on success"
    );
    for _ in 0..3 {
        let r = svc
            .ready()
            .await
            .unwrap()
            .call(Request::get("/a").body(()).unwrap());
        assert_eq!(r.await.unwrap(), "backup /a");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let st = layer.stats();
    assert_eq!((st.used, st.declined, st.failed), (3, 0, 0));

    // One counted event for the first use; the next two fall in the same second.
    let Event::Fallback(e) = rx.try_recv().unwrap() else {
        panic!("not a fallback event")
    };
    assert_eq!(
        (&*e.name, e.strategy, &*e.reason, e.count),
        ("llm", "service", "error", 1)
    );
    assert!(rx.try_recv().is_err());
    assert_eq!(Event::Fallback(e).kind(), "fallback_used");
}

#[tokio::test(start_paused = true)]
async fn events_are_aggregated_per_second() {
    let bus = EventBus::default();
    let mut rx = bus.subscribe();
    let layer = FallbackLayer::value(|_: &BoxError| String::from("n/a"))
        .events(bus)
        .build()
        .unwrap();
    let svc = layer.layer(Scripted::new(vec![Err(elapsed)]));
    for _ in 0..5 {
        svc.clone().oneshot(()).await.unwrap();
    }
    tokio::time::advance(secs(1)).await;
    svc.clone().oneshot(()).await.unwrap();
    let counts: Vec<(u64, String)> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| match e {
            Event::Fallback(f) => (f.count, f.reason.to_string()),
            _ => panic!(),
        })
        .collect();
    assert_eq!(counts, [(1, "timeout".into()), (5, "timeout".into())]);
}

#[tokio::test]
async fn predicate_decides_and_other_errors_pass_unchanged() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = FallbackLayer::service(backup(calls.clone()))
        .when(is_circuit_open)
        .build()
        .unwrap();
    // An application error: returned as is, the backup is not called.
    let err = layer
        .layer(Scripted::new(vec![Err(down)]))
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "primary down");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(layer.stats().used, 0);

    // A real breaker forced open: its CircuitOpen triggers the fallback.
    let breaker = CircuitBreakerLayer::builder().build().unwrap();
    breaker.handle().force_open();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(breaker)
        .service(Scripted::new(vec![Ok("primary")]));
    let res = svc
        .oneshot(Request::get("/x").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res, "backup /x");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Without the fallback the same stack fails with the typed error.
    let breaker = CircuitBreakerLayer::builder().build().unwrap();
    breaker.handle().force_open();
    let err = ServiceBuilder::new()
        .layer(
            FallbackLayer::value(|_: &BoxError| String::new())
                .when(|_: &BoxError| false)
                .build()
                .unwrap(),
        )
        .layer(breaker)
        .service(Scripted::new(vec![Ok("primary")]))
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
}

#[tokio::test]
async fn failing_fallback_keeps_the_primary_error() {
    let dead = service_fn(|_: Request<()>| async { Err::<String, BoxError>("backup down".into()) });
    let layer = FallbackLayer::service(dead).build().unwrap();
    let err = layer
        .layer(Scripted::new(vec![Err(elapsed)]))
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    let f = err
        .downcast_ref::<FallbackFailed>()
        .expect("FallbackFailed");
    assert_eq!(f.strategy(), "service");
    assert_eq!(f.fallback_error().to_string(), "backup down");
    assert!(f.primary_error().is::<tower::timeout::error::Elapsed>());
    // The primary's reason still reaches the rejection mapping: 504, not 500.
    assert_eq!(
        tower_pressure::rejection::error_response(&*err).status(),
        504
    );
    assert!(is_rejection(&err));
    assert_eq!(layer.stats().failed, 1);
}

/// The value strategy keeps nothing: requests need not be `Clone`.
#[tokio::test]
async fn value_degrades_without_cloning() {
    struct NotClone(u32);
    let layer = FallbackLayer::value(|e: &BoxError| format!("degraded: {e}"))
        .mark(|res: &mut String, used: &FallbackUsed| {
            res.push_str(&format!(" [{}]", used.strategy()))
        })
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|r: NotClone| async move {
        if r.0 == 0 {
            Err::<String, BoxError>("zero".into())
        } else {
            Ok(r.0.to_string())
        }
    }));
    assert_eq!(svc.clone().oneshot(NotClone(7)).await.unwrap(), "7");
    assert_eq!(
        svc.oneshot(NotClone(0)).await.unwrap(),
        "degraded: zero [value]"
    );
}

fn path_key(r: &Request<()>) -> Option<String> {
    Some(r.uri().path().to_owned())
}

#[tokio::test(start_paused = true)]
async fn cache_serves_stale_until_max_age() {
    let layer = FallbackLayer::cache(path_key, 16, secs(60))
        .trigger(ServerErrors)
        .mark(FallbackHeader)
        .build()
        .unwrap();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fail.clone();
    let n = Arc::new(AtomicU32::new(0));
    let svc = layer.layer(service_fn(move |r: Request<()>| {
        let failing = f.load(Ordering::SeqCst);
        let v = n.fetch_add(1, Ordering::SeqCst);
        async move {
            let res = if failing {
                Response::builder()
                    .status(503)
                    .body(String::from("down"))
                    .unwrap()
            } else {
                Response::new(format!("{} v{v}", r.uri().path()))
            };
            Ok::<_, BoxError>(res)
        }
    }));
    let get = |p: &str| svc.clone().oneshot(Request::get(p).body(()).unwrap());

    assert_eq!(get("/a").await.unwrap().body(), "/a v0");
    // Within `store_every` (1 s): sampled out, the cache keeps v0.
    assert_eq!(get("/a").await.unwrap().body(), "/a v1");
    tokio::time::advance(secs(2)).await;
    assert_eq!(get("/a").await.unwrap().body(), "/a v2"); // stored
    fail.store(true, Ordering::SeqCst);
    tokio::time::advance(secs(10)).await;

    let res = get("/a").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "/a v2");
    assert_eq!(res.headers()["x-fallback"], "cache");
    let used = res.extensions().get::<FallbackUsed>().unwrap();
    assert_eq!(used.age(), Some(secs(10)));

    // Another key was never cached: the original 503 response, unmarked.
    let res = get("/b").await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("x-fallback").is_none());

    // Past max_age the entry is not served.
    tokio::time::advance(secs(50)).await;
    let res = get("/a").await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.body(), "down");
    let st = layer.stats();
    assert_eq!((st.used, st.declined), (1, 2));
}

#[tokio::test]
async fn config_errors_name_the_field() {
    let e = FallbackLayer::cache::<_, String>(path_key, 0, secs(1))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "capacity");
    let e = FallbackLayer::cache::<_, String>(path_key, 1, Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_age");
    let e = FallbackLayer::cache::<_, String>(path_key, 1, secs(1))
        .store_every(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "store_every");
    let e = FallbackLayer::queue(Duration::ZERO, 1).build().unwrap_err();
    assert_eq!(e.field(), "max_wait");
}

#[tokio::test(start_paused = true)]
async fn queue_waits_the_retry_after_then_tries_again() {
    let layer = FallbackLayer::queue(secs(5), 8).build().unwrap();
    let primary = Scripted::new(vec![Err(limited_2s), Ok("ok")]);
    let res = layer
        .layer(primary.clone())
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(res, "ok");
    assert_eq!(primary.times(), [ms(0), secs(2)]);
    assert_eq!(layer.strategy().queued(), 0);

    // The second try fails again: its own error, once (no loop).
    let primary = Scripted::new(vec![Err(limited_2s)]);
    let err = layer
        .layer(primary.clone())
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert!(err.is::<Retryable>(), "{err}");
    assert_eq!(primary.count(), 2);

    // Too long a wait, or none given: declined at once with the original error.
    for script in [Err(limited_30s as fn() -> BoxError), Err(down)] {
        let primary = Scripted::new(vec![script, Ok("ok")]);
        let start = Instant::now();
        let err = layer
            .layer(primary.clone())
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        assert!(!err.is::<FallbackFailed>());
        assert_eq!(primary.count(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
    let st = layer.stats();
    assert_eq!((st.used, st.declined, st.failed), (2, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn queue_respects_the_deadline() {
    let layer = FallbackLayer::queue(secs(5), 8).build().unwrap();
    let req = |deadline: Duration| {
        let mut r = Request::new(());
        r.extensions_mut().insert(
            Constraints::for_level(PressureLevel::Normal).with_deadline(Instant::now() + deadline),
        );
        r
    };
    let primary = Scripted::new(vec![Err(limited_2s), Ok("ok")]);
    let err = layer
        .layer(primary.clone())
        .oneshot(req(secs(1)))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "rate limited");
    assert_eq!(primary.count(), 1, "no wait past the deadline");
    let primary = Scripted::new(vec![Err(limited_2s), Ok("ok")]);
    assert_eq!(
        layer.layer(primary).oneshot(req(secs(3))).await.unwrap(),
        "ok"
    );
}

#[tokio::test(start_paused = true)]
async fn queue_is_bounded() {
    let layer = FallbackLayer::queue(secs(5), 2).build().unwrap();
    let primary = Scripted::new(vec![
        Err(limited_2s),
        Err(limited_2s),
        Err(limited_2s),
        Ok("ok"),
    ]);
    let svc = layer.layer(primary.clone());
    let mut waiting: Vec<_> = (0..3)
        .map(|_| Box::pin(svc.clone().oneshot(Request::new(()))))
        .collect();
    // Poll each once: the first two take the queue's places, the third is refused at once.
    let mut outputs = Vec::new();
    for f in &mut waiting {
        outputs.push(futures_poll_once(f).await);
    }
    assert_eq!(layer.strategy().queued(), 2);
    assert!(outputs[0].is_none() && outputs[1].is_none(), "two wait");
    let third = outputs
        .pop()
        .unwrap()
        .expect("the third is answered at once");
    assert!(
        third.unwrap_err().is::<Retryable>(),
        "refused with the original error"
    );
    waiting.pop();
    // Dropping a waiting request frees its place.
    drop(waiting.pop());
    assert_eq!(layer.strategy().queued(), 1);
    assert_eq!(waiting.pop().unwrap().await.unwrap(), "ok");
    assert_eq!(layer.strategy().queued(), 0);
    assert_eq!(layer.stats().declined, 1);
}

/// Polls a future once; returns its output if ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn chain_least_disruptive_first() {
    type Req = Request<()>;
    let backup_calls = Arc::new(AtomicU32::new(0));
    let bc = backup_calls.clone();
    let backup_up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let bu = backup_up.clone();
    let backup = service_fn(move |_: Req| {
        bc.fetch_add(1, Ordering::SeqCst);
        let up = bu.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(String::from("backup"))
            } else {
                Err::<String, BoxError>("backup down".into())
            }
        }
    });
    let queue = FallbackLayer::queue(secs(3), 8).build().unwrap();
    let cache = FallbackLayer::cache(path_key, 8, secs(60)).build().unwrap();
    let alt = FallbackLayer::service(backup).build().unwrap();
    let last = FallbackLayer::value(|_: &BoxError| String::from("static"))
        .build()
        .unwrap();
    let registry = StatusRegistry::new();
    registry.register(queue.clone());
    registry.register(cache.clone());
    registry.register(alt.clone());
    registry.register(last.clone());
    let primary = Scripted::new(vec![
        Ok("fresh"), // 1: cached
        Err(limited_2s),
        Ok("again"),      // 2: queue
        Err(limited_30s), // 3: queue declines, cache answers
        Err(limited_30s), // 4 on /other: no cache, backup answers
        Err(down),        // 5 on /other, backup down: static
    ]);
    let svc = ServiceBuilder::new()
        .layer(last.clone())
        .layer(alt.clone())
        .layer(cache.clone())
        .layer(queue.clone())
        .service(primary.clone());
    let get = |p: &str| svc.clone().oneshot(Request::get(p).body(()).unwrap());
    assert_eq!(get("/a").await.unwrap(), "fresh");
    assert_eq!(get("/a").await.unwrap(), "again");
    assert_eq!(get("/a").await.unwrap(), "fresh");
    assert_eq!(get("/other").await.unwrap(), "backup");
    backup_up.store(false, Ordering::SeqCst);
    assert_eq!(get("/other").await.unwrap(), "static");
    assert_eq!(backup_calls.load(Ordering::SeqCst), 2);
    let used = |l: u64| l;
    assert_eq!(
        [
            queue.stats().used,
            cache.stats().used,
            alt.stats().used,
            last.stats().used
        ]
        .map(used),
        [1, 1, 2, 1]
    );
    let text = registry.snapshot().to_prometheus();
    assert!(
        text.contains(
            "tower_pressure_fallback_used_total{fallback=\"cache\",strategy=\"cache\"} 1\n"
        ),
        "{text}"
    );
    assert!(text.contains(
        "tower_pressure_fallback_failed_total{fallback=\"service\",strategy=\"service\"} 1\n"
    ));
    assert!(
        text.contains(
            "tower_pressure_fallback_cache_keys{fallback=\"cache\",strategy=\"cache\"} 2\n"
        )
    );
    assert!(
        text.contains("tower_pressure_fallback_queued{fallback=\"queue\",strategy=\"queue\"} 0\n")
    );
    #[cfg(feature = "serde")]
    {
        let json: serde_json::Value = serde_json::from_str(&registry.snapshot().to_json()).unwrap();
        assert_eq!(json["sections"][0]["kind"], "fallback");
        assert_eq!(json["sections"][0]["info"]["strategy"], "queue");
    }
}

/// A two-route axum router behind one FallbackLayer shares one state (the counters; an
/// axum body is not `Clone`, so the value strategy answers).
#[tokio::test]
async fn axum_two_routes_share_one_state() {
    use axum::{
        Router, error_handling::HandleErrorLayer, response::Response as AxumResponse, routing::get,
    };
    let fallback =
        FallbackLayer::value(|_: &BoxError| AxumResponse::new(axum::body::Body::from("fallback")))
            .trigger(ServerErrors)
            .mark(FallbackHeader)
            .build()
            .unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let handler = |hits: Arc<AtomicU32>| {
        move || {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    (StatusCode::OK, "fresh")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "down")
                }
            }
        }
    };
    let app = Router::new()
        .route("/a", get(handler(hits.clone())))
        .route("/b", get(handler(hits.clone())))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                }))
                .layer(fallback.clone()),
        );
    let call = |p: &'static str| {
        app.clone()
            .oneshot(Request::get(p).body(axum::body::Body::empty()).unwrap())
    };
    for p in ["/a", "/b"] {
        let res = call(p).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("x-fallback").is_none());
    }
    for p in ["/a", "/b"] {
        let res = call(p).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-fallback"], "value");
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "fallback"
        );
    }
    assert_eq!(
        fallback.stats().used,
        2,
        "both routes count in one layer state"
    );
}

/// A real hyper server on 127.0.0.1: the primary path answers 503, the alternate provider's
/// path answers 200; the alternate takes over and the answer is marked.
#[tokio::test(start_paused = true)]
async fn real_server_503_switches_to_the_alternate_provider() {
    use axum::{Router, routing::get};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let app = Router::new()
        .route(
            "/primary",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "60")],
                    "busy",
                )
            }),
        )
        .route(
            "/alternate",
            get(|| async { (StatusCode::OK, "from the alternate") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // The alternate provider: the same client, pointed at the alternate path.
    let alt_client = client.clone();
    let alternate = tower::util::MapRequestLayer::new(move |mut r: Request<Full<Bytes>>| {
        *r.uri_mut() = format!("http://{addr}/alternate").parse().unwrap();
        r
    })
    .layer(alt_client);
    let layer = FallbackLayer::service(alternate)
        .trigger(ServerErrors)
        .mark(FallbackHeader)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        // The queue sits inside: a 60 s Retry-After is above its max_wait, so it declines.
        .layer(
            FallbackLayer::queue(secs(5), 8)
                .trigger(ServerErrors)
                .build()
                .unwrap(),
        )
        .service(client.clone());

    let uri: http::Uri = format!("http://{addr}/primary").parse().unwrap();
    let res = svc
        .clone()
        .oneshot(Request::get(uri.clone()).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-fallback"], "service");
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "from the alternate"
    );
    assert_eq!(layer.stats().used, 1);

    // No fallback applies (the trigger only takes errors): the 503 itself comes back.
    let res = FallbackLayer::value(|_: &BoxError| {
        Response::new(http_body_util::combinators::UnsyncBoxBody::default())
    })
    .build()
    .unwrap()
    .layer(
        client
            .clone()
            .map_response(|r| r.map(|b| b.map_err(BoxError::from).boxed_unsync())),
    )
    .oneshot(Request::get(uri).body(Full::default()).unwrap())
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "60");
    server.abort();
}

/// An alternate provider that answers a failure (a 503 of its own) is handed over unmarked
/// and counted as a failed fallback (it was used, and it failed).
#[tokio::test]
async fn alternate_answering_a_failure_counts_as_failed_and_is_unmarked() {
    let down = |_: Request<()>| async {
        Ok::<_, BoxError>(
            Response::builder()
                .status(503)
                .body(String::from("down"))
                .unwrap(),
        )
    };
    let layer = FallbackLayer::service(service_fn(down))
        .trigger(ServerErrors)
        .mark(FallbackHeader)
        .build()
        .unwrap();
    let res = layer
        .layer(service_fn(down))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("x-fallback").is_none(), "not marked");
    let st = layer.stats();
    assert_eq!((st.used, st.failed), (1, 1));
}
