//! QuotaLayer: per-tenant quotas under paused time, and over a real axum server.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, StatusCode};
use tokio::time::{Instant, advance};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::event::{Event, EventBus, QuotaEventKind};
use tower_pressure::quota::{
    EnforcementAction, HeaderKey, Limit, QuotaExceeded, QuotaGroup, QuotaLayer, QuotaResource,
    QuotaState, QuotaStatus, QuotaUsage,
};
use tower_pressure::{Constraints, PressureLevel};

type Resp = (Option<QuotaStatus>, Option<Constraints>);

fn echo() -> impl Service<Request<()>, Response = Resp, Error = Infallible, Future: Send> + Clone {
    service_fn(|req: Request<()>| async move {
        Ok::<_, Infallible>((
            req.extensions().get::<QuotaStatus>().copied(),
            Constraints::from_request(&req),
        ))
    })
}

fn req(tenant: &str) -> Request<()> {
    Request::builder()
        .header("x-tenant", tenant)
        .body(())
        .unwrap()
}

fn layer(limit: Limit) -> QuotaLayer<HeaderKey> {
    QuotaLayer::builder()
        .group(QuotaGroup::new("free").rate(limit))
        .build(HeaderKey::x_tenant())
        .unwrap()
}

async fn send<S>(svc: &S, tenant: &str) -> Result<Resp, BoxError>
where
    S: Service<Request<()>, Response = Resp, Error = BoxError> + Clone,
{
    svc.clone().oneshot(req(tenant)).await
}

fn quota_err(e: BoxError) -> QuotaExceeded {
    e.downcast::<QuotaExceeded>()
        .map(|e| *e)
        .expect("QuotaExceeded")
}

#[tokio::test(start_paused = true)]
async fn soft_hard_and_burst() {
    let l = layer(Limit::tiers(2, 4, 6).action(EnforcementAction::Reject));
    let svc = ServiceBuilder::new().layer(l.clone()).service(echo());
    let mut states = Vec::new();
    for _ in 0..6 {
        states.push(send(&svc, "a").await.unwrap().0.map(|s| s.state));
    }
    assert_eq!(states[..2], [None, None]);
    assert_eq!(states[2..4], [Some(QuotaState::SoftLimitExceeded); 2]);
    assert_eq!(states[4..6], [Some(QuotaState::Burst); 2]);
    let e = quota_err(send(&svc, "a").await.unwrap_err());
    assert_eq!(
        (e.tenant(), e.resource(), e.limit()),
        ("a", QuotaResource::Rate, 6)
    );
    assert_eq!(e.retry_after(), Duration::from_millis(250));
    assert_eq!(e.status_code(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        e.to_string()
            .starts_with("tenant `a` exceeded its rate quota")
    );
    // Another tenant is unaffected.
    assert!(send(&svc, "b").await.is_ok());
    advance(Duration::from_millis(250)).await;
    assert!(send(&svc, "a").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn burst_window_is_bounded() {
    let l = QuotaLayer::builder()
        .group(
            QuotaGroup::new("g")
                .rate(Limit::tiers(2, 10, 20))
                .burst_window(Duration::from_secs(1)),
        )
        .build(HeaderKey::x_tenant())
        .unwrap();
    let svc = ServiceBuilder::new().layer(l).service(echo());
    for _ in 0..15 {
        send(&svc, "a").await.unwrap();
    }
    // Past the window, hard (10) applies again although burst room (20) remains.
    advance(Duration::from_millis(1100)).await;
    let mut ok = 0;
    while send(&svc, "a").await.is_ok() {
        ok += 1;
    }
    // 15 - 11 drained = 4 in the bucket; hard leaves room for 6.
    assert_eq!(ok, 6);
}

#[tokio::test(start_paused = true)]
async fn warn_lets_through_and_aggregates_events() {
    let bus = EventBus::new(64);
    let mut rx = bus.subscribe();
    let l = QuotaLayer::builder()
        .group(QuotaGroup::new("g").rate(Limit::tiers(1, 2, 2).action(EnforcementAction::Warn)))
        .events(bus)
        .build(HeaderKey::x_tenant())
        .unwrap();
    let svc = ServiceBuilder::new().layer(l).service(echo());
    for _ in 0..10 {
        send(&svc, "a").await.unwrap();
    }
    let last = send(&svc, "a").await.unwrap().0.unwrap();
    assert_eq!(last.state, QuotaState::HardLimitExceeded);
    advance(Duration::from_secs(2)).await;
    for _ in 0..3 {
        send(&svc, "a").await.unwrap();
    }
    let mut hard = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::Quota(q) = &e
            && let QuotaEventKind::HardLimitExceeded { count, .. } = q.kind
        {
            hard.push(count);
        }
    }
    // One event at the first crossing, one aggregating the rest.
    assert_eq!(hard, vec![1, 9]);
}

#[tokio::test(start_paused = true)]
async fn throttle_rejects_with_retry_after_or_delays() {
    let reject = layer(Limit::tiers(1, 1, 1).action(EnforcementAction::Throttle {
        max_delay: Duration::ZERO,
    }));
    let svc = ServiceBuilder::new().layer(reject).service(echo());
    send(&svc, "a").await.unwrap();
    let e = quota_err(send(&svc, "a").await.unwrap_err());
    assert_eq!(e.retry_after(), Duration::from_secs(1));

    let delay = layer(Limit::tiers(2, 2, 2).action(EnforcementAction::Throttle {
        max_delay: Duration::from_millis(500),
    }));
    let svc = ServiceBuilder::new().layer(delay).service(echo());
    send(&svc, "a").await.unwrap();
    send(&svc, "a").await.unwrap();
    let t0 = Instant::now();
    // Both decided at t0: the first fits with a 500 ms delay, the second would need 1 s.
    let (r3, r4) = tokio::join!(send(&svc, "a"), send(&svc, "a"));
    r3.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_millis(500));
    assert_eq!(
        quota_err(r4.unwrap_err()).retry_after(),
        Duration::from_secs(1)
    );
    // Deadline-aware: a request due in 100 ms is not delayed 500 ms.
    advance(Duration::from_secs(2)).await;
    send(&svc, "a").await.unwrap();
    send(&svc, "a").await.unwrap();
    let mut r = req("a");
    r.extensions_mut().insert(
        Constraints::unconstrained().with_deadline(Instant::now() + Duration::from_millis(100)),
    );
    assert!(svc.clone().oneshot(r).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn suspend_then_resume() {
    let bus = EventBus::new(64);
    let mut rx = bus.subscribe();
    let l = QuotaLayer::builder()
        .group(
            QuotaGroup::new("g").rate(Limit::new(1).action(EnforcementAction::Suspend {
                duration: Duration::from_secs(30),
            })),
        )
        .events(bus)
        .build(HeaderKey::x_tenant())
        .unwrap();
    let h = l.handle();
    let svc = ServiceBuilder::new().layer(l).service(echo());
    send(&svc, "a").await.unwrap();
    let e = quota_err(send(&svc, "a").await.unwrap_err());
    assert!(e.is_suspended());
    assert!(h.usage("a").unwrap().suspended);
    advance(Duration::from_secs(10)).await;
    let e = quota_err(send(&svc, "a").await.unwrap_err());
    assert_eq!(e.retry_after(), Duration::from_secs(20));
    advance(Duration::from_secs(20)).await;
    send(&svc, "a").await.unwrap();
    let kinds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| e.kind())
        .collect();
    assert!(kinds.contains(&"quota_suspended"));
    assert!(kinds.contains(&"quota_resumed"));
}

#[tokio::test(start_paused = true)]
async fn degrade_inserts_stricter_constraints() {
    let l = layer(Limit::new(1).action(EnforcementAction::Degrade(PressureLevel::Critical)));
    let svc = ServiceBuilder::new().layer(l).service(echo());
    assert_eq!(send(&svc, "a").await.unwrap().1, None);
    let mut r = req("a");
    r.extensions_mut()
        .insert(Constraints::for_level(PressureLevel::Elevated).with_skip_optional(false));
    let (status, c) = svc.clone().oneshot(r).await.unwrap();
    let c = c.unwrap();
    assert_eq!(status.unwrap().state, QuotaState::HardLimitExceeded);
    assert_eq!(c.level(), PressureLevel::Critical);
    assert_eq!(c.entity_limit(100), 50);
    assert!(c.should_use_simplified());
}

#[tokio::test(start_paused = true)]
async fn concurrency_permit_released_on_drop() {
    let l = QuotaLayer::builder()
        .group(QuotaGroup::new("g").concurrency(Limit::new(1)))
        .build(HeaderKey::x_tenant())
        .unwrap();
    let h = l.handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let svc = ServiceBuilder::new()
        .layer(l)
        .service(service_fn(move |_req: Request<()>| {
            let rx = rx.clone();
            async move {
                let r = rx.lock().await.take();
                if let Some(r) = r {
                    let _ = r.await;
                }
                Ok::<_, Infallible>(())
            }
        }));
    let mut first = Box::pin(svc.clone().oneshot(req("a")));
    assert!(futures_poll(&mut first).is_none());
    assert_eq!(h.usage("a").unwrap().in_flight, 1);
    let e = quota_err(svc.clone().oneshot(req("a")).await.unwrap_err());
    assert_eq!(e.resource(), QuotaResource::Concurrency);
    drop(first);
    drop(tx);
    assert_eq!(h.usage("a").unwrap().in_flight, 0);
    svc.clone().oneshot(req("a")).await.unwrap();
}

fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[tokio::test(start_paused = true)]
async fn units_reported_after_the_fact() {
    let l = QuotaLayer::builder()
        .group(QuotaGroup::new("g").units(Limit::tiers(500, 1000, 1000)))
        .build(HeaderKey::x_tenant())
        .unwrap();
    let h = l.handle();
    let svc = ServiceBuilder::new()
        .layer(l)
        .service(service_fn(|req: Request<()>| async move {
            req.extensions().get::<QuotaUsage>().unwrap().record(800);
            Ok::<_, Infallible>(())
        }));
    svc.clone().oneshot(req("a")).await.unwrap();
    svc.clone().oneshot(req("a")).await.unwrap();
    // 1600 units against 1000 per second: in debt, refused.
    let e = quota_err(svc.clone().oneshot(req("a")).await.unwrap_err());
    assert_eq!(e.resource(), QuotaResource::Units);
    assert_eq!(e.retry_after(), Duration::from_millis(600));
    advance(Duration::from_millis(600)).await;
    svc.clone().oneshot(req("a")).await.unwrap();
    assert_eq!(h.usage("a").unwrap().units_total, 2400);
}

#[tokio::test(start_paused = true)]
async fn registry_bounded_under_random_keys() {
    let l = QuotaLayer::builder()
        .group(QuotaGroup::new("g").rate(Limit::new(1000)))
        .max_tenants(8)
        .idle_timeout(Duration::from_secs(60))
        .build(HeaderKey::x_tenant())
        .unwrap();
    let h = l.handle();
    let svc = ServiceBuilder::new().layer(l).service(echo());
    for _ in 0..500 {
        send(&svc, &format!("t{}", fastrand_u64())).await.unwrap();
    }
    assert_eq!(h.tenants(), 8);
    advance(Duration::from_secs(61)).await;
    send(&svc, "fresh").await.unwrap();
    assert_eq!(h.tenants(), 8);
    assert!(h.usage("fresh").is_some());
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

#[tokio::test(start_paused = true)]
async fn analytics_and_recommendations() {
    let l = QuotaLayer::builder()
        .group(QuotaGroup::new("free").rate(Limit::tiers(5, 10, 10)))
        .group(QuotaGroup::new("premium").rate(Limit::tiers(50, 100, 100)))
        .build(HeaderKey::x_tenant())
        .unwrap();
    let h = l.handle();
    let svc = ServiceBuilder::new().layer(l).service(echo());
    for minute in 0..60 {
        // a: 12 per burst, over its hard limit in 12 of 60 minutes.
        let n = if minute % 5 == 0 { 12 } else { 3 };
        for _ in 0..n {
            let _ = send(&svc, "a").await;
        }
        if minute % 10 == 0 {
            send(&svc, "b").await.unwrap();
        }
        advance(Duration::from_secs(60)).await;
    }
    let a = h.usage("a").unwrap();
    assert_eq!(a.minutes, 59);
    assert_eq!(a.hard_minutes, 11);
    assert_eq!(a.peak_per_minute, 12);
    assert!((a.soft_minutes_pct - 100.0 * 11.0 / 59.0).abs() < 1e-9);
    let recs = h.recommendations();
    let text: Vec<_> = recs.iter().map(|r| r.message.as_str()).collect();
    assert!(text.contains(
        &"tenant a hit its hard limit in 11 of the last 59 minutes: raise rps from 10 to 15 or move it to group premium"
    ), "{text:?}");
    assert!(
        text.iter()
            .any(|t| t.starts_with("tenant b used < 10 % of its quota")),
        "{text:?}"
    );
    let prom = tower_pressure::status::StatusRegistry::new();
    prom.register(h.clone());
    let out = prom.snapshot().to_prometheus();
    assert!(
        out.contains("tower_pressure_quota_requests_total{group=\"free\",tenant=\"a\"}"),
        "{out}"
    );
}

#[test]
fn builder_validation_names_the_field() {
    let e = QuotaLayer::builder()
        .group(QuotaGroup::new("g").rate(Limit::tiers(5, 4, 6)))
        .build(HeaderKey::x_tenant())
        .unwrap_err();
    assert_eq!(e.field(), "groups[g].rate.soft_limit");
    let e = QuotaLayer::builder()
        .group(QuotaGroup::new("g").concurrency(Limit::tiers(1, 4, 3)))
        .build(HeaderKey::x_tenant())
        .unwrap_err();
    assert_eq!(e.field(), "groups[g].concurrency.burst_limit");
    let e = QuotaLayer::builder()
        .group(QuotaGroup::new("g").rate(Limit::new(0)))
        .build(HeaderKey::x_tenant())
        .unwrap_err();
    assert_eq!(e.field(), "groups[g].rate.hard_limit");
    let e = QuotaLayer::builder()
        .group(QuotaGroup::new("g"))
        .assign("a", "nope")
        .build(HeaderKey::x_tenant())
        .unwrap_err();
    assert_eq!(e.field(), "assign[a]");
    assert_eq!(
        QuotaLayer::builder()
            .build(HeaderKey::x_tenant())
            .unwrap_err()
            .field(),
        "groups"
    );
}

fn quota_response(e: BoxError) -> axum::response::Response {
    use axum::response::IntoResponse;
    match e.downcast_ref::<QuotaExceeded>() {
        Some(q) => (
            q.status_code(),
            [("retry-after", q.retry_after().as_secs().max(1).to_string())],
            q.to_string(),
        )
            .into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn router(l: QuotaLayer<HeaderKey>) -> axum::Router {
    axum::Router::new()
        .route("/one", axum::routing::get(|| async { "one" }))
        .route("/two", axum::routing::get(|| async { "two" }))
        .layer(
            ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |e: BoxError| async move { quota_response(e) },
                ))
                .layer(l),
        )
}

#[tokio::test(start_paused = true)]
async fn two_routes_share_one_state() {
    let l = layer(Limit::new(2));
    let app = router(l.clone());
    let get = |p: &str| {
        Request::builder()
            .uri(p)
            .header("x-tenant", "a")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.clone().oneshot(get("/one")).await.unwrap().status(),
        200
    );
    assert_eq!(
        app.clone().oneshot(get("/two")).await.unwrap().status(),
        200
    );
    assert_eq!(
        app.clone().oneshot(get("/one")).await.unwrap().status(),
        429
    );
    assert_eq!(l.handle().usage("a").unwrap().requests_total, 3);
}

#[tokio::test]
async fn real_server_throttles_one_tenant_only() {
    // The clock is real here: a one-hour period keeps tenant a's bucket from refilling.
    let l = QuotaLayer::builder()
        .group(
            QuotaGroup::new("g")
                .rate(Limit::new(2).action(EnforcementAction::Throttle {
                    max_delay: Duration::ZERO,
                }))
                .period(Duration::from_secs(3600)),
        )
        .build(HeaderKey::x_tenant())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(l)).await.unwrap();
    });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let get = |t: &str| {
        Request::builder()
            .uri(format!("http://{addr}/one"))
            .header("x-tenant", t)
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(client.request(get("a")).await.unwrap().status(), 200);
    }
    let r = client.request(get("a")).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let ra: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ra > 1000);
    assert_eq!(client.request(get("b")).await.unwrap().status(), 200);
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn throttle_with_an_unbounded_max_delay_delays_without_panicking() {
    // Issue 21: `max_delay: Duration::MAX` overflowed the tolerance sums (`tol + delay`).
    let delay = layer(Limit::tiers(2, 2, 2).action(EnforcementAction::Throttle {
        max_delay: Duration::MAX,
    }));
    let svc = ServiceBuilder::new().layer(delay).service(echo());
    send(&svc, "a").await.unwrap();
    send(&svc, "a").await.unwrap();
    let t0 = Instant::now();
    send(&svc, "a").await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_millis(500));
}
