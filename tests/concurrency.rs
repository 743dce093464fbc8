//! Integration tests of the adaptive concurrency layer.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::concurrency::limit::{Gradient2, LimitAlgorithm, WindowSample};
use tower_pressure::concurrency::{
    AdaptiveConcurrencyLayer, Overloaded, PressureDecision, Shares, ShedReason, overloaded_response,
};
use tower_pressure::event::{ConcurrencyEventKind, Event};
use tower_pressure::pressure::{ManualSource, PressureMonitor, Signal};
use tower_pressure::priority::HeaderPriority;
use tower_pressure::{PressureLevel, Priority};

/// A limit that never moves, so admission tests are exact.
#[derive(Debug)]
struct Fixed(u32);

impl LimitAlgorithm for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn limit(&self) -> u32 {
        self.0
    }
    fn update(&mut self, _: &WindowSample, _: Instant) -> u32 {
        self.0
    }
}

fn req(p: Priority) -> http::Request<()> {
    let mut r = http::Request::new(());
    r.extensions_mut().insert(p);
    r
}

fn ok_service()
-> impl Service<http::Request<()>, Response = &'static str, Error = Infallible, Future: Send> + Clone
{
    service_fn(|_r: http::Request<()>| async { Ok::<_, Infallible>("ok") })
}

#[tokio::test(start_paused = true)]
async fn limit_grows_on_fast_backend_and_shrinks_when_it_slows() {
    let (monitor, _m) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(
            Gradient2::builder()
                .min_limit(5)
                .initial_limit(20)
                .probe_interval(None)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let h = layer.handle();
    let latency_ms = Arc::new(AtomicU64::new(20));
    let lat = latency_ms.clone();
    let svc = layer.layer(service_fn(move |_r: http::Request<()>| {
        let d = Duration::from_millis(lat.load(Ordering::Relaxed));
        async move {
            tokio::time::sleep(d).await;
            Ok::<_, Infallible>(())
        }
    }));

    async fn drive<S>(svc: S, clients: usize, for_: Duration)
    where
        S: Service<http::Request<()>, Error = BoxError> + Clone + Send + 'static,
        S::Future: Send,
    {
        let end = Instant::now() + for_;
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    if svc.clone().oneshot(req(Priority::Normal)).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    drive(svc.clone(), 80, Duration::from_secs(5)).await;
    let grown = h.limit();
    assert!(
        grown >= 40,
        "limit grew from 20 to {grown} on a fast backend"
    );

    latency_ms.store(200, Ordering::Relaxed);
    drive(svc.clone(), 80, Duration::from_secs(10)).await;
    let shrunk = h.limit();
    assert!(
        shrunk * 2 <= grown,
        "limit fell from {grown} to {shrunk} when the backend slowed"
    );
    assert_eq!(h.in_flight(), 0);
    assert!(!h.limit_history().is_empty());
}

#[tokio::test]
async fn priority_shedding_order_at_each_pressure_level() {
    let (monitor, manual) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor.clone())
        .algorithm(Fixed(100))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(ok_service());
    let cases = [
        (0.0, PressureLevel::Normal, &Priority::ALL[..], 100),
        (70.0, PressureLevel::Elevated, &Priority::ALL[..], 90),
        (80.0, PressureLevel::High, &Priority::ALL[1..], 75),
        (90.0, PressureLevel::Critical, &Priority::ALL[2..], 50),
        (96.0, PressureLevel::Emergency, &Priority::ALL[3..], 25),
    ];
    for (value, level, admitted, eff) in cases {
        manual.set(value);
        monitor.sample_now();
        assert_eq!(monitor.level(), level);
        assert_eq!(h.effective_limit(), eff, "limit scaled at {level}");
        for p in Priority::ALL {
            let res = svc.clone().oneshot(req(p)).await;
            if admitted.contains(&p) {
                assert!(res.is_ok(), "{p} should pass at {level}");
            } else {
                let err = res.unwrap_err();
                let o = err.downcast_ref::<Overloaded>().expect("Overloaded");
                assert_eq!(o.reason(), ShedReason::Pressure(level));
                assert_eq!(o.priority(), p);
                assert_eq!(o.level(), level);
                assert_eq!(o.limit(), eff);
                assert_eq!(o.retry_after(), Duration::from_secs(1));
                assert!(o.to_string().starts_with("service overloaded"));
            }
        }
    }
    assert_eq!(h.shed_count(Priority::Low), 3);
    assert_eq!(h.shed_count(Priority::Normal), 2);
    assert_eq!(h.shed_count(Priority::High), 1);
    assert_eq!(h.shed_count(Priority::Critical), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admission_never_exceeds_the_limit() {
    let (monitor, _m) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(Fixed(8))
        .build()
        .unwrap();
    let h = layer.handle();
    let current = Arc::new(AtomicU32::new(0));
    let max = Arc::new(AtomicU32::new(0));
    let (c, m) = (current.clone(), max.clone());
    let svc = layer.layer(service_fn(move |_r: http::Request<()>| {
        let (c, m) = (c.clone(), m.clone());
        async move {
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            c.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(())
        }
    }));
    let admitted = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..4000u32 {
        let svc = svc.clone();
        let admitted = admitted.clone();
        let class = Priority::from_index((i % 4) as usize).unwrap();
        tasks.push(tokio::spawn(async move {
            if svc.oneshot(req(class)).await.is_ok() {
                admitted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        max.load(Ordering::SeqCst) <= 8,
        "max concurrency {}",
        max.load(Ordering::SeqCst)
    );
    assert!(admitted.load(Ordering::Relaxed) >= 8);
    assert_eq!(h.in_flight(), 0);
    for p in Priority::ALL {
        assert_eq!(h.in_flight_of(p), 0);
    }
}

#[tokio::test]
async fn dropped_futures_return_their_slot() {
    let (monitor, _m) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(Fixed(3))
        .build()
        .unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(service_fn(|_r: http::Request<()>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(())
    }));
    let mut futs = Vec::new();
    for p in [Priority::Low, Priority::High, Priority::Critical] {
        svc.ready().await.unwrap();
        futs.push(svc.call(req(p)));
    }
    assert_eq!(h.in_flight(), 3);
    assert_eq!(h.in_flight_of(Priority::High), 1);
    // The limit is reached: the next one is refused at once.
    svc.ready().await.unwrap();
    let err = svc.call(req(Priority::Normal)).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Overloaded>().unwrap().reason(),
        ShedReason::LimitReached
    );
    // One future polled (parked inside the inner future) then dropped, two never polled.
    let mut first = Box::pin(futs.remove(0));
    assert!(futures_poll_once(first.as_mut()).await);
    drop(first);
    drop(futs);
    assert_eq!(h.in_flight(), 0);
    svc.ready().await.unwrap();
    let _again = svc.call(req(Priority::Low));
    assert_eq!(h.in_flight(), 1);
}

/// Polls once; `true` when pending.
async fn futures_poll_once<F: std::future::Future + ?Sized>(f: std::pin::Pin<&mut F>) -> bool {
    let mut f = Some(f);
    std::future::poll_fn(move |cx| {
        let pending = f.take().unwrap().poll(cx).is_pending();
        std::task::Poll::Ready(pending)
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn critical_queue_is_lifo_and_times_out() {
    let (monitor, _m) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(Fixed(1))
        .critical_queue(4, Duration::from_millis(100))
        .build()
        .unwrap();
    let h = layer.handle();
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let svc = layer.layer(service_fn(move |r: http::Request<()>| {
        let g = g.clone();
        async move {
            if r.extensions().get::<Priority>() == Some(&Priority::Low) {
                g.acquire().await.unwrap().forget();
            }
            Ok::<_, Infallible>(*r.extensions().get::<Priority>().unwrap())
        }
    }));
    let low = tokio::spawn(svc.clone().oneshot(req(Priority::Low)));
    tokio::task::yield_now().await;
    assert_eq!(h.in_flight(), 1);
    // Low is refused at the limit, Critical waits.
    assert!(svc.clone().oneshot(req(Priority::Low)).await.is_err());
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..2 {
        let (svc, order) = (svc.clone(), order.clone());
        waiters.push(tokio::spawn(async move {
            let r = svc.oneshot(req(Priority::Critical)).await;
            order.lock().unwrap().push(i);
            r
        }));
        tokio::task::yield_now().await;
    }
    assert_eq!(h.queued(), 2);
    gate.add_permits(1);
    low.await.unwrap().unwrap();
    // The freshest waiter (1) got the slot first, then 0.
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), Priority::Critical);
    }
    assert_eq!(*order.lock().unwrap(), [1, 0]);
    assert_eq!(h.in_flight(), 0);

    // With the slot held for longer than the timeout, a Critical waiter gives up.
    let low = tokio::spawn(svc.clone().oneshot(req(Priority::Low)));
    tokio::task::yield_now().await;
    let started = Instant::now();
    let err = svc
        .clone()
        .oneshot(req(Priority::Critical))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(
        err.downcast_ref::<Overloaded>().unwrap().reason(),
        ShedReason::QueueTimeout
    );
    assert_eq!(h.shed_count(Priority::Critical), 1);
    gate.add_permits(1);
    low.await.unwrap().unwrap();
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn shed_events_are_aggregated_and_limit_changes_reported() {
    let (monitor, manual) = PressureMonitor::manual();
    let mut rx = monitor.events().subscribe();
    let layer = AdaptiveConcurrencyLayer::builder(monitor.clone())
        .name("api")
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_r: http::Request<()>| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, Infallible>(())
    }));
    manual.set(96.0);
    monitor.sample_now();
    for _ in 0..100 {
        assert!(svc.clone().oneshot(req(Priority::Low)).await.is_err());
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(svc.clone().oneshot(req(Priority::Low)).await.is_err());
    let mut sheds = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::Concurrency(c) = e
            && let ConcurrencyEventKind::Shed {
                priority,
                count,
                reason,
            } = c.kind
        {
            assert_eq!(&*c.name, "api");
            assert_eq!(priority, Priority::Low);
            assert_eq!(&*reason, "pressure emergency: class refused");
            sheds.push(count);
        }
    }
    assert_eq!(sheds, [1, 100], "101 sheds reported in two events");

    // Many windows of limit growth give at most one LimitChanged per second.
    manual.set(0.0);
    // The level steps down one level per dwell (hysteresis).
    for _ in 0..50 {
        monitor.sample_now();
    }
    assert_eq!(monitor.level(), PressureLevel::Normal);
    let end = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                if svc.clone().oneshot(req(Priority::Normal)).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut changes = 0;
    while let Ok(e) = rx.try_recv() {
        if let Event::Concurrency(c) = e
            && let ConcurrencyEventKind::LimitChanged { algorithm, .. } = c.kind
        {
            assert_eq!(algorithm, "gradient2");
            changes += 1;
        }
    }
    assert!(
        (1..=4).contains(&changes),
        "{changes} LimitChanged events in 3 s"
    );
    assert!(
        layer.handle().limit_history().len() > 10,
        "many windows closed"
    );
}

#[tokio::test(start_paused = true)]
async fn cpu_pressure_not_caused_by_us_is_not_shed() {
    let psi = ManualSource::new(0.0);
    let monitor = PressureMonitor::builder()
        .without_system_sources()
        .manual(Signal::PsiCpu, psi.clone())
        .build_unstarted()
        .unwrap();
    let layer = AdaptiveConcurrencyLayer::builder(monitor.clone())
        .algorithm(Fixed(50))
        .build()
        .unwrap();
    let h = layer.handle();
    let svc = layer.layer(service_fn(|_r: http::Request<()>| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, Infallible>(())
    }));
    // Sequential traffic: ~100 req/s x 10 ms = capacity 1.
    for _ in 0..30 {
        svc.clone().oneshot(req(Priority::Normal)).await.unwrap();
    }
    assert!(h.bbr_capacity() >= 1);
    psi.set(70.0); // CPU PSI Critical
    monitor.sample_now();
    assert_eq!(monitor.level(), PressureLevel::Critical);
    let d = h.decision(Priority::Low);
    assert!(matches!(d, PressureDecision::NotOurLoad { .. }), "{d:?}");
    assert!(d.reason().contains("not caused by this service"));
    svc.clone().oneshot(req(Priority::Low)).await.unwrap();
    assert_eq!(h.not_our_load_count(), 1);
    // With the check off the same request is shed.
    let strict = AdaptiveConcurrencyLayer::builder(monitor.clone())
        .bbr_check(false)
        .build()
        .unwrap()
        .layer(ok_service());
    assert!(strict.oneshot(req(Priority::Low)).await.is_err());
}

#[tokio::test]
async fn body_mode_holds_the_slot_until_the_body_ends() {
    let (monitor, _m) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::new(monitor).hold_until_body_end();
    let h = layer.handle();
    let svc = layer.layer(service_fn(|_r: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
            bytes::Bytes::from_static(b"streamed"),
        )))
    }));
    let res = svc.oneshot(req(Priority::Normal)).await.unwrap();
    assert_eq!(h.in_flight(), 1, "the body still holds the slot");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"streamed");
    assert_eq!(h.in_flight(), 0);
}

fn handle_error(err: BoxError) -> http::Response<axum::body::Body> {
    overloaded_response(&err).unwrap_or_else(|| {
        let mut r = http::Response::new(axum::body::Body::from(err.to_string()));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

#[tokio::test]
async fn two_route_router_shares_one_limiter() {
    let (monitor, _m) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(Fixed(1))
        .too_many_requests()
        .build()
        .unwrap();
    let h = layer.handle();
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let app = Router::new()
        .route(
            "/a",
            get(move || async move {
                g.acquire().await.unwrap().forget();
                "a"
            }),
        )
        .route("/b", get(|| async { "b" }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    handle_error(e)
                }))
                .layer(layer),
        );
    let get = |uri: &str| {
        http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let a = tokio::spawn(app.clone().oneshot(get("/a")));
    while h.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    // /a holds the only slot of the shared limiter, so /b is refused.
    let b = app.clone().oneshot(get("/b")).await.unwrap();
    assert_eq!(b.status(), 429);
    assert_eq!(b.headers()["retry-after"], "1");
    gate.add_permits(1);
    assert_eq!(a.await.unwrap().unwrap().status(), 200);
    assert_eq!(app.oneshot(get("/b")).await.unwrap().status(), 200);
    assert_eq!(h.shed_count(Priority::Normal), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_sheds_with_503_and_retry_after_while_critical_succeeds() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let (monitor, _m) = PressureMonitor::manual();
    let layer = AdaptiveConcurrencyLayer::builder(monitor)
        .algorithm(Fixed(8))
        .classifier(HeaderPriority::new(http::HeaderName::from_static(
            "x-priority",
        )))
        .shares(Shares::none().with(Priority::Critical, 0.5).unwrap())
        .build()
        .unwrap();
    let h = layer.handle();
    // Non-critical work parks until the test opens the gate: the flood is deterministic.
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let app = Router::new()
        .route(
            "/work",
            get(move |headers: http::HeaderMap| async move {
                if headers.get("x-priority").is_none_or(|v| v != "critical") {
                    g.acquire().await.unwrap().forget();
                }
                "done"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    handle_error(e)
                }))
                .layer(layer),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let send = move |prio: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::get(format!("http://{addr}/work"))
                .header("x-priority", prio)
                .body(http_body_util::Empty::new())
                .unwrap();
            let res = client.request(req).await.unwrap();
            let retry = res.headers().get("retry-after").cloned();
            (res.status(), retry)
        }
    };

    // A bounded flood: 60 low/normal requests, then 20 critical ones.
    let mut flood = Vec::new();
    for i in 0..60 {
        let prio = if i % 2 == 0 { "low" } else { "normal" };
        flood.push(tokio::spawn(send(prio)));
    }
    let mut shed = 0;
    // Wait until every flood request has reached the limiter: 8 hold the full limit and
    // the other 52 were shed. Opening the gate any earlier would let a flood request still
    // on the wire find a free slot (CI saw 15 of them run).
    while h.in_flight() < 8 || h.shed_count(Priority::Low) + h.shed_count(Priority::Normal) < 52 {
        tokio::task::yield_now().await;
    }
    // Critical requests use their guaranteed share (ceil(8 x 0.5) = 4) beyond the full limit.
    for _ in 0..20 {
        let (status, _) = send("critical").await;
        assert_eq!(status, 200, "critical requests succeed during the flood");
    }
    gate.add_permits(1000);
    let mut ok = 0;
    for f in flood {
        let (status, retry) = f.await.unwrap();
        match status.as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(retry.unwrap(), "1");
                shed += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(ok, 8, "exactly the limit's worth of flood requests ran");
    assert_eq!(shed, 52);
    assert_eq!(
        h.shed_count(Priority::Low) + h.shed_count(Priority::Normal),
        52
    );
    assert_eq!(h.shed_count(Priority::Critical), 0);
    server.abort();
}
