//! Integration tests of the retry layer. Time-based tests run under paused tokio time.
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::event::{Event, RetryEventKind};
use tower_pressure::pressure::{ManualSource, PressureMonitor};
use tower_pressure::retry::http::{BufferBodyLayer, HttpClassifier};
use tower_pressure::retry::{AttemptTimedOut, Backoff, Jitter, RetryBudget, RetryLayer, Retryable};
use tower_pressure::{Constraints, PressureLevel};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn fixed(d: Duration) -> Backoff {
    Backoff::fixed(d).jitter(Jitter::None)
}

fn monitor() -> (PressureMonitor, ManualSource) {
    PressureMonitor::manual()
}

/// An inner service that fails with a retryable error `fail` times (an `io::Error`
/// `"flaky attempt <n>"` wrapped in `Retryable`), then answers `"ok"`, recording the
/// (virtual) time of every call.
#[derive(Clone)]
struct Flaky {
    fail: u32,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Flaky {
    fn new(fail: u32) -> Self {
        Self {
            fail,
            calls: Arc::default(),
        }
    }
    fn times(&self) -> Vec<Duration> {
        let c = self.calls.lock().unwrap();
        c.iter().map(|t| t.duration_since(c[0])).collect()
    }
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl<B> Service<Request<B>> for Flaky {
    type Response = &'static str;
    type Error = BoxError;
    type Future = std::future::Ready<Result<&'static str, BoxError>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<B>) -> Self::Future {
        let mut c = self.calls.lock().unwrap();
        c.push(Instant::now());
        let n = c.len() as u32;
        std::future::ready(if n <= self.fail {
            Err(Retryable::new(std::io::Error::other(format!("flaky attempt {n}"))).into())
        } else {
            Ok("ok")
        })
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_and_delays() {
    let (m, _) = monitor();
    let layer = RetryLayer::builder(m)
        .backoff(fixed(ms(100)))
        .build()
        .unwrap();
    let inner = Flaky::new(2);
    let res = layer
        .layer_svc(inner.clone())
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(res, "ok");
    assert_eq!(inner.times(), [ms(0), ms(100), ms(200)]);

    // Exhausted: the last error is returned as is.
    let inner = Flaky::new(10);
    let (m, _) = monitor();
    let layer = RetryLayer::builder(m)
        .backoff(Backoff::exponential(ms(100), 2.0).jitter(Jitter::None))
        .max_attempts(4)
        .build()
        .unwrap();
    let err = layer
        .layer_svc(inner.clone())
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert!(err.is::<Retryable>());
    assert_eq!(inner.times(), [ms(0), ms(100), ms(300), ms(700)]);
}

#[tokio::test(start_paused = true)]
async fn jitter_uses_injected_rng() {
    let (m, _) = monitor();
    let layer = RetryLayer::builder(m)
        .backoff(Backoff::fixed(ms(1000)).jitter(Jitter::Full))
        .rng(|| 0.25)
        .build()
        .unwrap();
    let inner = Flaky::new(2);
    layer
        .layer_svc(inner.clone())
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(inner.times(), [ms(0), ms(250), ms(500)]);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_are_not_retried() {
    let (m, _) = monitor();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let svc = RetryLayer::new(m).layer_svc(service_fn(move |_: Request<()>| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), BoxError>("bad input".into()) }
    }));
    assert!(svc.oneshot(Request::new(())).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn time_bound_stops_waiting() {
    let (m, _) = monitor();
    let layer = RetryLayer::builder(m)
        .backoff(fixed(ms(1000)))
        .max_attempts(10)
        .time_bound(ms(1500))
        .build()
        .unwrap();
    let inner = Flaky::new(100);
    let start = Instant::now();
    assert!(
        layer
            .layer_svc(inner.clone())
            .oneshot(Request::new(()))
            .await
            .is_err()
    );
    assert_eq!(inner.times(), [ms(0), ms(1000)]);
    assert_eq!(start.elapsed(), ms(1000), "never sleeps past the bound");
}

#[tokio::test(start_paused = true)]
async fn constraints_deadline_stops_waiting() {
    let (m, _) = monitor();
    let layer = RetryLayer::builder(m)
        .backoff(fixed(ms(400)))
        .max_attempts(10)
        .build()
        .unwrap();
    let inner = Flaky::new(100);
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(Constraints::unconstrained().with_deadline(Instant::now() + ms(1000)));
    assert!(layer.layer_svc(inner.clone()).oneshot(req).await.is_err());
    // 0, 400, 800; the next would start at 1200 > deadline.
    assert_eq!(inner.times(), [ms(0), ms(400), ms(800)]);
}

#[tokio::test(start_paused = true)]
async fn per_attempt_timeout() {
    let (m, _) = monitor();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let svc = RetryLayer::builder(m)
        .backoff(fixed(ms(10)))
        .attempt_timeout(ms(500))
        .build()
        .unwrap()
        .layer_svc(service_fn(move |_: Request<()>| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, Infallible>("ok")
            }
        }));
    let start = Instant::now();
    assert_eq!(svc.oneshot(Request::new(())).await.unwrap(), "ok");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), ms(510));

    // Every attempt times out: the typed error comes back.
    let (m, _) = monitor();
    let svc = RetryLayer::builder(m)
        .backoff(fixed(ms(10)))
        .attempt_timeout(ms(500))
        .build()
        .unwrap()
        .layer_svc(service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Infallible>("late")
        }));
    let start = Instant::now();
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    // Each attempt's timeout counts from that attempt: 500 + 10 + 500 + 10 + 500.
    assert_eq!(start.elapsed(), ms(1520));
    let t = err.downcast_ref::<AttemptTimedOut>().unwrap();
    assert_eq!(t.attempt(), 3);
    assert_eq!(t.to_string(), "attempt 3 timed out after 500ms");
}

/// `Duration::MAX` as an attempt timeout means "none": neither the first attempt nor a
/// retried one overflows the clock.
#[tokio::test(start_paused = true)]
async fn huge_attempt_timeout_means_none_on_every_attempt() {
    let (m, _) = monitor();
    let flaky = Flaky::new(2);
    let svc = RetryLayer::builder(m)
        .backoff(fixed(ms(10)))
        .attempt_timeout(Duration::MAX)
        .build()
        .unwrap()
        .layer_svc(flaky.clone());
    assert_eq!(svc.oneshot(Request::new(())).await.unwrap(), "ok");
    assert_eq!(flaky.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn pressure_suppresses_and_stretches() {
    let (m, manual) = monitor();
    let layer = RetryLayer::builder(m.clone())
        .backoff(fixed(ms(100)))
        .build()
        .unwrap();
    manual.set(90.0);
    m.sample_now();
    assert_eq!(m.level(), PressureLevel::Critical);
    let inner = Flaky::new(1);
    assert!(
        layer
            .layer_svc(inner.clone())
            .oneshot(Request::new(()))
            .await
            .is_err()
    );
    assert_eq!(inner.count(), 1, "no retry at Critical");

    // A fresh monitor (levels fall with hysteresis), at High.
    let (m, manual) = monitor();
    let layer = RetryLayer::builder(m.clone())
        .backoff(fixed(ms(100)))
        .build()
        .unwrap();
    manual.set(80.0);
    m.sample_now();
    assert_eq!(m.level(), PressureLevel::High);
    let inner = Flaky::new(1);
    assert_eq!(
        layer
            .layer_svc(inner.clone())
            .oneshot(Request::new(()))
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(inner.times(), [ms(0), ms(200)], "backoff doubled at High");
}

#[tokio::test(start_paused = true)]
async fn pressure_rising_during_the_wait_calls_the_retry_off() {
    let (m, manual) = monitor();
    let layer = RetryLayer::builder(m.clone())
        .backoff(fixed(ms(1000)))
        .build()
        .unwrap();
    let inner = Flaky::new(1);
    let fut = layer.layer_svc(inner.clone()).oneshot(Request::new(()));
    let task = tokio::spawn(fut);
    tokio::time::sleep(ms(500)).await;
    manual.set(96.0);
    m.sample_now();
    let res = task.await.unwrap();
    assert!(
        res.unwrap_err().is::<Retryable>(),
        "the previous error is returned"
    );
    assert_eq!(inner.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn events_are_reported() {
    let (m, _) = monitor();
    let mut rx = m.events().subscribe();
    let layer = RetryLayer::builder(m)
        .name("llm")
        .backoff(fixed(ms(100)))
        .build()
        .unwrap();
    let inner = Flaky::new(10);
    let _ = layer.layer_svc(inner).oneshot(Request::new(())).await;
    let mut kinds = Vec::new();
    while let Ok(Event::Retry(e)) = rx.try_recv() {
        assert_eq!(&*e.name, "llm");
        kinds.push(e.kind);
    }
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    match &kinds[0] {
        RetryEventKind::Attempt {
            attempt,
            delay,
            reason,
        } => {
            assert_eq!(
                (*attempt, *delay, &**reason),
                (2, ms(100), "retryable error")
            );
        }
        k => panic!("{k:?}"),
    }
    match &kinds[2] {
        RetryEventKind::Exhausted { attempts, reason } => {
            assert_eq!((*attempts, &**reason), (3, "max attempts reached"));
        }
        k => panic!("{k:?}"),
    }
}

#[allow(clippy::type_complexity)] // an `impl Service` with its associated types spelled out
fn http_503_then_200(
    first: Response<Full<Bytes>>,
) -> (
    impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send,
    > + Clone,
    Arc<Mutex<Vec<Instant>>>,
) {
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let c = calls.clone();
    let first = Arc::new(Mutex::new(Some(first)));
    let svc = service_fn(move |_: Request<Full<Bytes>>| {
        c.lock().unwrap().push(Instant::now());
        let r = first.lock().unwrap().take();
        async move { Ok::<_, Infallible>(r.unwrap_or_else(|| Response::new(Full::from("ok")))) }
    });
    (svc, calls)
}

fn status_with(status: u16, header: (&str, &str)) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header.0, header.1)
        .body(Full::default())
        .unwrap()
}

fn gaps(calls: &Arc<Mutex<Vec<Instant>>>) -> Vec<Duration> {
    let c = calls.lock().unwrap();
    c.iter().map(|t| t.duration_since(c[0])).collect()
}

async fn run_http(
    layer: RetryLayer<HttpClassifier>,
    first: Response<Full<Bytes>>,
) -> (StatusCode, Vec<Duration>) {
    let (svc, calls) = http_503_then_200(first);
    let res = layer
        .layer_svc(svc)
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    (res.status(), gaps(&calls))
}

fn wall() -> SystemTime {
    // Wed, 21 Oct 2015 07:27:50 GMT
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470)
}

#[tokio::test(start_paused = true)]
async fn retry_after_both_forms_garbage_and_huge() {
    let build = |max_pushback: Duration, bound: Option<Duration>| {
        let (m, _) = monitor();
        let b = RetryLayer::http(m)
            .classifier(HttpClassifier::new().wall_clock(wall))
            .backoff(fixed(ms(100)))
            .max_pushback(max_pushback);
        match bound {
            Some(t) => b.time_bound(t),
            None => b,
        }
        .build()
        .unwrap()
    };
    let big = Duration::from_secs(60);
    // delta-seconds
    let (s, g) = run_http(build(big, None), status_with(503, ("retry-after", "2"))).await;
    assert_eq!((s, g), (StatusCode::OK, vec![ms(0), ms(2000)]));
    // HTTP-date, 10 s after the injected wall clock
    let (s, g) = run_http(
        build(big, None),
        status_with(429, ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")),
    )
    .await;
    assert_eq!((s, g), (StatusCode::OK, vec![ms(0), ms(10_000)]));
    // garbage: ignored, the layer's own backoff applies
    let (s, g) = run_http(
        build(big, None),
        status_with(503, ("retry-after", "in a while")),
    )
    .await;
    assert_eq!((s, g), (StatusCode::OK, vec![ms(0), ms(100)]));
    // huge, above max_pushback: never retried before the server's time, so not at all
    let (s, g) = run_http(
        build(ms(5000), None),
        status_with(503, ("retry-after", "99999999999999999999")),
    )
    .await;
    assert_eq!((s, g), (StatusCode::SERVICE_UNAVAILABLE, vec![ms(0)]));
    // exactly max_pushback: waited in full
    let (s, g) = run_http(
        build(ms(5000), None),
        status_with(503, ("retry-after", "5")),
    )
    .await;
    assert_eq!((s, g), (StatusCode::OK, vec![ms(0), ms(5000)]));
    // huge, and longer than the time left: retrying ends at once with the 503
    let (s, g) = run_http(
        build(big, Some(ms(3000))),
        status_with(503, ("retry-after", "3600")),
    )
    .await;
    assert_eq!((s, g), (StatusCode::SERVICE_UNAVAILABLE, vec![ms(0)]));
    // gRPC pushback
    let (s, g) = run_http(
        build(big, None),
        status_with(503, ("grpc-retry-pushback-ms", "750")),
    )
    .await;
    assert_eq!((s, g), (StatusCode::OK, vec![ms(0), ms(750)]));
    // 4xx other than 408/429 is final
    let (s, g) = run_http(build(big, None), status_with(404, ("x", "y"))).await;
    assert_eq!((s, g), (StatusCode::NOT_FOUND, vec![ms(0)]));
}

#[tokio::test(start_paused = true)]
async fn post_needs_idempotency() {
    let (m, _) = monitor();
    let layer = RetryLayer::http(m).backoff(fixed(ms(100))).build().unwrap();
    let (svc, calls) = http_503_then_200(status_with(503, ("x", "y")));
    let post = Request::post("/").body(Full::default()).unwrap();
    let res = layer.layer_svc(svc).oneshot(post).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.lock().unwrap().len(), 1);

    let (svc, calls) = http_503_then_200(status_with(503, ("x", "y")));
    let post = Request::post("/")
        .header("idempotency-key", "k1")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        layer.layer_svc(svc).oneshot(post).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(calls.lock().unwrap().len(), 2);
}

/// 10 000 requests against a backend that always fails: the budget keeps total attempts
/// within (1 + ratio) x requests + floor x seconds; without it they would be 3x.
#[tokio::test(start_paused = true)]
async fn retry_storm_is_bounded_by_the_budget() {
    const REQUESTS: u64 = 10_000;
    async fn storm(layer: RetryLayer) -> (u64, Duration) {
        let attempts = Arc::new(AtomicU64::new(0));
        let a = attempts.clone();
        let mut svc = layer.layer_svc(service_fn(move |_: Request<()>| {
            a.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Err::<(), BoxError>(Retryable::new("down").into()))
        }));
        let start = Instant::now();
        for i in 0..REQUESTS {
            // 1 000 requests per (virtual) second.
            if i > 0 && i % 1000 == 0 {
                tokio::time::advance(Duration::from_secs(1)).await;
            }
            let _ = svc.ready().await.unwrap().call(Request::new(())).await;
        }
        (attempts.load(Ordering::Relaxed), start.elapsed())
    }
    let (m, _) = monitor();
    let bus = tower_pressure::event::EventBus::new(100_000);
    let budgeted = RetryLayer::builder(m)
        .backoff(fixed(ms(1)))
        .event_bus(bus.clone())
        .build()
        .unwrap();
    let mut rx = bus.subscribe();
    let (with, elapsed) = storm(budgeted.clone()).await;
    let seconds = elapsed.as_secs_f64().ceil() + 1.0; // + one budget slot of rounding
    let bound = 1.2 * REQUESTS as f64 + 10.0 * seconds;
    assert!(with as f64 <= bound, "{with} attempts > {bound}");
    assert!(with > REQUESTS, "some retries are allowed");
    // BudgetExhausted is aggregated: about one event per second, not one per refusal.
    let mut events = 0;
    let mut counted = 0;
    while let Ok(e) = rx.try_recv() {
        if let Event::Retry(r) = e
            && let RetryEventKind::BudgetExhausted { count } = r.kind
        {
            events += 1;
            counted += count;
        }
    }
    assert!(events <= 12, "{events} BudgetExhausted events");
    assert!(counted > 0 && counted <= budgeted.budget().unwrap().refused());

    let (m, _) = monitor();
    let unbudgeted = RetryLayer::builder(m)
        .backoff(fixed(ms(1)))
        .no_budget()
        .build()
        .unwrap();
    let (without, _) = storm(unbudgeted).await;
    assert_eq!(without, 3 * REQUESTS);
}

/// First attempts reach the budget in batches, but a layer's own retry flushes them first:
/// with ratio 1.0 and no floor, five successes pay for exactly the retries they allow, and
/// `stats()` counts every request.
#[tokio::test(start_paused = true)]
async fn a_layers_deposits_are_exact_when_it_retries() {
    let (m, _) = monitor();
    let budget = RetryBudget::builder()
        .ratio(1.0)
        .min_per_second(0)
        .build()
        .unwrap();
    let layer = RetryLayer::builder(m)
        .backoff(fixed(ms(1)))
        .max_attempts(10)
        .budget(budget)
        .build()
        .unwrap();
    let ok = Flaky::new(0);
    let mut svc = layer.clone().layer_svc(ok.clone());
    for _ in 0..5 {
        ServiceExt::<Request<()>>::ready(&mut svc)
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
    }
    // The sixth request fails 100 times: its own deposit plus the five earlier ones pay for
    // six retries, then the budget is empty.
    let failing = Flaky::new(100);
    let res = layer
        .clone()
        .layer_svc(failing.clone())
        .oneshot(Request::new(()))
        .await;
    assert_eq!(failing.count(), 7);
    // The budget refused the seventh attempt's retry: that attempt's own error is returned
    // (the inner service's `Retryable(io::Error)`), not an error of the retry layer's.
    let err = res.unwrap_err();
    let retryable = err
        .downcast_ref::<Retryable>()
        .unwrap_or_else(|| panic!("not the inner service's error: {err:?}"));
    let io = retryable
        .get_ref()
        .downcast_ref::<std::io::Error>()
        .expect("the io::Error the inner service wrapped");
    assert_eq!(io.kind(), std::io::ErrorKind::Other);
    assert_eq!(io.to_string(), "flaky attempt 7");
    assert_eq!(err.to_string(), "flaky attempt 7");
    let stats = layer.stats();
    assert_eq!((stats.requests, stats.retries), (6, 6));
    assert_eq!(stats.budget_available, Some(0.0));
}

/// Two clones of one layer (two routes, two clients) share one budget.
#[tokio::test(start_paused = true)]
async fn clones_share_one_budget() {
    let (m, _) = monitor();
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_second(1)
        .build()
        .unwrap();
    let layer = RetryLayer::builder(m)
        .backoff(fixed(ms(1)))
        .budget(budget)
        .build()
        .unwrap();
    let a = Flaky::new(100);
    let b = Flaky::new(100);
    let _ = layer
        .clone()
        .layer_svc(a.clone())
        .oneshot(Request::new(()))
        .await;
    let _ = layer.layer_svc(b.clone()).oneshot(Request::new(())).await;
    // One retry per second in total across both clones.
    assert_eq!(a.count() + b.count(), 3);
}

/// A two-route axum router behind one RetryLayer shares one budget; streaming bodies are
/// made replayable by BufferBodyLayer.
#[tokio::test(start_paused = true)]
async fn axum_two_routes_share_one_budget() {
    use axum::{Router, error_handling::HandleErrorLayer, routing::post};
    let (m, _) = monitor();
    let retry = RetryLayer::http(m).backoff(fixed(ms(10))).build().unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let handler = |hits: Arc<AtomicU32>| {
        move |body: String| {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            async move {
                if n.is_multiple_of(2) {
                    (StatusCode::SERVICE_UNAVAILABLE, String::new())
                } else {
                    (StatusCode::OK, body)
                }
            }
        }
    };
    let app = Router::new()
        .route("/a", post(handler(hits.clone())))
        .route("/b", post(handler(hits.clone())))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                }))
                .layer(BufferBodyLayer::new(1024))
                .layer(retry.clone()),
        );
    for path in ["/a", "/b"] {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("idempotency-key", "k")
            .body(axum::body::Body::from("payload"))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "payload"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert_eq!(
        retry.budget().unwrap().withdrawn(),
        2,
        "both routes drew on one budget"
    );

    // Past the buffer limit: a clear typed error, mapped by HandleErrorLayer.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/a")
        .body(axum::body::Body::from(vec![b'x'; 2048]))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let msg = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        msg,
        "request body exceeds the replay buffer limit of 1024 bytes"
    );
}

/// A real hyper server on 127.0.0.1 answering 503 + Retry-After, then 200.
#[tokio::test(start_paused = true)]
async fn real_server_retry_after_then_ok() {
    use axum::{Router, routing::any};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let hits: Arc<Mutex<Vec<(Method, Instant)>>> = Arc::default();
    let h = hits.clone();
    let app = Router::new().route(
        "/",
        any(move |method: Method| {
            let h = h.clone();
            async move {
                let mut v = h.lock().unwrap();
                v.push((method, Instant::now()));
                if v.len() % 2 == 1 {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "3")],
                        "busy",
                    )
                } else {
                    (StatusCode::OK, [("x-ok", "1")], "done")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (m, _) = monitor();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::http(m).backoff(fixed(ms(100))).build().unwrap())
        .service(client);

    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let res = svc
        .clone()
        .oneshot(Request::get(uri.clone()).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "done");
    {
        let v = hits.lock().unwrap();
        assert_eq!(v.len(), 2, "retried once");
        assert!(
            v[1].1.duration_since(v[0].1) >= Duration::from_secs(3),
            "after the header's delay"
        );
    }

    // A POST without idempotency is not retried: the 503 reaches the caller.
    let res = svc
        .oneshot(Request::post(uri).body(Full::from("x")).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(hits.lock().unwrap().len(), 3);
    assert_eq!(hits.lock().unwrap()[2].0, Method::POST);
    server.abort();
}

/// Helper: apply a layer without naming `tower::Layer` at every call site.
trait LayerExt<S>: tower::Layer<S> + Sized {
    fn layer_svc(&self, s: S) -> Self::Service {
        tower::Layer::layer(self, s)
    }
}
impl<S, L: tower::Layer<S>> LayerExt<S> for L {}

/// A service that counts its clones and refuses a call it was not driven to readiness for
/// (a clone starts not ready); fails the first `fail` calls of each request (by the
/// request's `u32` id), with a retryable error.
struct Counted {
    clones: Arc<AtomicU32>,
    ready: bool,
    fail: Arc<AtomicU32>,
    seen: Arc<Mutex<std::collections::HashMap<u32, u32>>>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::Relaxed);
        Self {
            clones: self.clones.clone(),
            ready: false,
            fail: self.fail.clone(),
            seen: self.seen.clone(),
        }
    }
}

impl Service<Request<u32>> for Counted {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.ready = true;
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<u32>) -> Self::Future {
        if !std::mem::take(&mut self.ready) {
            return std::future::ready(Err("called without poll_ready".into()));
        }
        let id = *req.body();
        let mut seen = self.seen.lock().unwrap();
        let n = seen.entry(id).or_default();
        *n += 1;
        std::future::ready(if *n <= self.fail.load(Ordering::Relaxed) {
            Err(Retryable::new(std::io::Error::other("flaky")).into())
        } else {
            Ok(*n)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_clones_the_lanes_copy_once_and_drives_it_to_readiness() {
    let (m, _) = monitor();
    let clones = Arc::new(AtomicU32::new(0));
    let inner = Counted {
        clones: clones.clone(),
        ready: false,
        fail: Arc::default(),
        seen: Arc::default(),
    };
    let layer = RetryLayer::builder(m)
        .max_attempts(3)
        .backoff(fixed(ms(10)))
        .no_budget()
        .build()
        .unwrap();
    let mut svc = tower::Layer::layer(&layer, inner);
    // `layer` keeps one copy per lane, at least one.
    let kept = clones.load(Ordering::Relaxed);
    assert!(kept >= 1, "{kept}");
    // Successful first attempts clone nothing: the future holds no service.
    for id in 0..100 {
        let n = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(id))
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    assert_eq!(clones.load(Ordering::Relaxed), kept);
    // A request that fails twice: both retries go to one clone of the lane's copy, driven to
    // readiness before each call (or `Counted` would refuse it).
    svc.get_ref().fail.store(2, Ordering::Relaxed);
    let n = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(1000))
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(clones.load(Ordering::Relaxed), kept + 1);
}

#[test]
fn service_and_future_are_send_for_a_send_but_not_sync_inner_service() {
    fn assert_send<T: Send>(_: &T) {}
    let (m, _) = monitor();
    // `BoxCloneService` is `Send` but not `Sync`: the per-lane copies retries clone sit
    // behind a mutex, so the layer adds no `Sync` bound.
    let inner = tower::util::BoxCloneService::new(service_fn(|_: Request<u32>| async {
        Ok::<_, BoxError>(1u32)
    }));
    let mut svc = tower::Layer::layer(&RetryLayer::new(m), inner);
    assert_send(&svc);
    let fut = svc.call(Request::new(1));
    assert_send(&fut);
}

/// `is_retryable` recognises the connect error of hyper-util's legacy client: a request to a
/// 127.0.0.1 port nothing listens on.
#[tokio::test]
async fn hyper_util_connect_error_is_retryable() {
    use tower_pressure::retry::{Verdict, classify_error, is_retryable};
    // A port that was free a moment ago and has no listener now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let req = Request::get(format!("http://127.0.0.1:{port}/"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let err = client.request(req).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(is_retryable(&err), Some("connect error"));
    // The same through a `BoxError`, as a service returns it, and through the classifier.
    let boxed: BoxError = err.into();
    assert_eq!(is_retryable(&*boxed), Some("connect error"));
    assert!(matches!(
        classify_error(&*boxed),
        Verdict::Retry {
            reason: "connect error",
            ..
        }
    ));
}
