//! ResilienceStack end to end: the inbound stack on a real axum server over 127.0.0.1 sheds
//! by priority with 503 + Retry-After + JSON through `rejection::handle_error`; the outbound
//! stack's breaker opens on a failing backend and its `CircuitOpen` maps to 503; parts can be
//! replaced and removed; the status registry lists every part; the documented layer order
//! is observed through behaviour; every `ServiceBuilderExt` method adds a working layer.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitOpen, CircuitState};
use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, Overloaded};
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::priority::HeaderPriority;
use tower_pressure::rejection::{GrpcCode, Rejection, error_response, handle_error};
use tower_pressure::retry::RetryLayer;
use tower_pressure::{Constraints, PressureLevel, Priority, ResilienceStack, ServiceBuilderExt};

async fn handler(c: Constraints) -> String {
    format!("{} {}", c.level(), c.priority())
}

#[tokio::test]
async fn inbound_stack_on_axum_sheds_low_priority_with_503_json() {
    let (monitor, manual) = PressureMonitor::manual();
    let limiter = AdaptiveConcurrencyLayer::builder(monitor.clone())
        .classifier(HeaderPriority::new(http::HeaderName::from_static(
            "x-priority",
        )))
        .build()
        .unwrap();
    let handle = limiter.handle();
    let stack = ResilienceStack::inbound(monitor.clone()).concurrency(limiter);
    let app = Router::new()
        .route("/a", get(handler))
        .route("/b", get(handler))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_error))
                .resilience(stack.clone()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let get = |path: &str, prio: &str| {
        Request::get(format!("http://{addr}{path}"))
            .header("x-priority", prio)
            .body(http_body_util::Empty::new())
            .unwrap()
    };

    let res = client.request(get("/a", "low")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // High pressure: Low is refused at once, Critical still served, on both routes.
    manual.set(80.0);
    monitor.sample_now();
    assert_eq!(monitor.level(), PressureLevel::High);
    for path in ["/a", "/b"] {
        let res = client.request(get(path, "low")).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key("retry-after"));
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "overloaded");
        let res = client.request(get(path, "critical")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Both routes used the one limiter of the stack.
    assert_eq!(handle.shed_count(Priority::Low), 2);

    let status = stack.status_registry().snapshot();
    assert!(status.section("pressure").is_some());
    let prom = status.to_prometheus();
    assert!(
        prom.contains("tower_pressure_concurrency_shed_total"),
        "{prom}"
    );
    assert!(prom.contains("tower_pressure_level"), "{prom}");
    let json: serde_json::Value = serde_json::from_str(&status.to_json()).unwrap();
    let kinds: Vec<&str> = json["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    for kind in ["pressure", "concurrency", "degradation"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn outbound_stack_breaker_opens_and_maps_to_503() {
    let (monitor, _manual) = PressureMonitor::manual();
    let breaker = CircuitBreakerLayer::builder()
        .name("backend")
        .failure_threshold(3)
        .wait_duration(Duration::from_secs(30))
        .monitor(monitor.clone())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let stack = ResilienceStack::outbound(monitor.clone())
        .breaker(breaker)
        .retry(
            RetryLayer::builder(monitor.clone())
                .max_attempts(1)
                .build()
                .unwrap(),
        )
        .timeout(Duration::from_secs(1));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let backend = service_fn(move |_req: Request<()>| {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move { Err::<Response<()>, BoxError>("backend down".into()) }
    });
    let client = ServiceBuilder::new().resilience(stack).service(backend);

    for _ in 0..3 {
        let err = client.clone().oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(Rejection::from_error(&*err).reason(), "internal");
    }
    assert_eq!(handle.state(), CircuitState::Open);
    let err = client.clone().oneshot(Request::new(())).await.unwrap_err();
    assert!(err.is::<CircuitOpen>() || Rejection::from_error(&*err).reason() == "circuit_open");
    let res = error_response(&*err);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "30");
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "open breaker did not call"
    );
}

#[tokio::test(start_paused = true)]
async fn outbound_timeout_counts_as_failure_and_maps_to_504() {
    let (monitor, _manual) = PressureMonitor::manual();
    let stack = ResilienceStack::outbound(monitor.clone())
        .without_retry()
        .timeout(Duration::from_millis(100));
    let client =
        ServiceBuilder::new()
            .resilience(stack)
            .service(service_fn(|_req: Request<()>| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, Infallible>(Response::new(()))
            }));
    let err = client.oneshot(Request::new(())).await.unwrap_err();
    let r = Rejection::from_error(&*err);
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.reason(), "timeout");
}

#[tokio::test]
async fn a_removed_limiter_sheds_nothing_and_is_absent_from_the_registry() {
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(99.0);
    monitor.sample_now();
    // Without the limiter, Emergency pressure sheds nothing; constraints still arrive.
    let stack = ResilienceStack::inbound(monitor.clone()).without_concurrency();
    let metrics_before = stack.status_registry().len();
    let svc =
        ServiceBuilder::new()
            .layer(stack)
            .service(service_fn(|req: Request<()>| async move {
                let c = Constraints::from_request(&req).unwrap();
                Ok::<_, Infallible>(Response::new(c.level()))
            }));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(*res.body(), PressureLevel::Emergency);
    // Monitor, alert metrics and degradation; the removed limiter is not listed.
    assert_eq!(metrics_before, 3);
}

#[test]
fn overloaded_maps_to_resource_exhausted() {
    // Overloaded has no public constructor: take one from a limiter at Emergency pressure.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (monitor, manual) = PressureMonitor::manual();
        manual.set(99.0);
        monitor.sample_now();
        let svc = ServiceBuilder::new()
            .adaptive_concurrency(AdaptiveConcurrencyLayer::new(monitor))
            .service(service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(())
            }));
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        assert!(err.is::<Overloaded>());
        let r = Rejection::from_error(&*err);
        assert_eq!(r.reason(), "overloaded");
        assert_eq!(r.grpc_code(), GrpcCode::ResourceExhausted);
        // `to_grpc_status` exists only with the `tonic` feature.
        #[cfg(feature = "tonic")]
        {
            let status = tower_pressure::rejection::to_grpc_status(&*err);
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            assert!(status.metadata().get("grpc-retry-pushback-ms").is_some());
        }
    });
}

#[tokio::test(start_paused = true)]
async fn outbound_http_keeps_one_breaker_per_authority() {
    use http_body_util::Full;
    let (monitor, _manual) = PressureMonitor::manual();
    let stack = ResilienceStack::outbound_http(monitor);
    // Provider on :1 always answers 503; provider on :2 answers 200.
    let backend = service_fn(|req: Request<Full<bytes::Bytes>>| async move {
        let status = if req.uri().port_u16() == Some(1) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
    });
    let client = ServiceBuilder::new().resilience(stack).service(backend);
    let get = |port: u16| {
        Request::get(format!("http://127.0.0.1:{port}/v1/models"))
            .body(Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let mut open_seen = false;
    for _ in 0..40 {
        match client.clone().oneshot(get(1)).await {
            Ok(res) => assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE),
            Err(e) => {
                assert_eq!(Rejection::from_error(&*e).reason(), "circuit_open");
                open_seen = true;
                break;
            }
        }
    }
    assert!(open_seen, "the failing authority's breaker opened");
    // The other authority is unaffected.
    let res = client.clone().oneshot(get(2)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// Work that takes `d` without yielding: the paused clock moves forward inside the same
/// poll, as it would during CPU-bound work after a client call completed.
async fn busy_for(d: Duration) {
    let mut advance = std::pin::pin!(tokio::time::advance(d));
    // The first poll moves the clock, then the future would yield: finish in this poll.
    std::future::poll_fn(|cx| {
        let _ = advance.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
}

/// The layers of a stack share one clock read per request (`crate::clock`): a handler that
/// awaits an outbound stack and then keeps working in the same poll is timed to its own end, not to the end
/// of the client call it made, and each stack's alert layer sees its own latency.
#[tokio::test(start_paused = true)]
async fn shared_clock_times_each_stack_to_its_own_end() {
    use tower_pressure::alert::AlertLayer;
    let (monitor, _manual) = PressureMonitor::manual();

    let out_alert = AlertLayer::new("client");
    let out_metrics = out_alert.metrics();
    let client = ServiceBuilder::new()
        .resilience(ResilienceStack::outbound(monitor.clone()).alert(out_alert))
        .service(service_fn(|_req: Request<()>| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, BoxError>(Response::new(()))
        }));

    let in_alert = AlertLayer::new("server");
    let in_metrics = in_alert.metrics();
    let server = ServiceBuilder::new()
        .resilience(ResilienceStack::inbound(monitor.clone()).alert(in_alert))
        .service(service_fn(move |_req: Request<()>| {
            let client = client.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                client.oneshot(Request::new(())).await?;
                busy_for(Duration::from_millis(20)).await;
                Ok::<_, BoxError>(Response::new(()))
            }
        }));

    for _ in 0..5 {
        server.clone().oneshot(Request::new(())).await.unwrap();
    }
    let (inb, out) = (in_metrics.snapshot(), out_metrics.snapshot());
    assert_eq!((inb.total_executions, out.total_executions), (5, 5));
    // Timer deadlines round up to the next millisecond, so allow one per sleep.
    assert!(
        (60.0..63.0).contains(&inb.peak_duration_ms) && inb.avg_duration_ms >= 60.0,
        "server timed to its own end: {inb:?}"
    );
    assert!(
        (10.0..11.0).contains(&out.peak_duration_ms) && out.avg_duration_ms >= 10.0,
        "client timed alone: {out:?}"
    );
}

/// Degradation sits inside retry in the outbound stack; a deadline already on the request is
/// kept (the earlier one wins), so every attempt sees the caller's deadline.
#[tokio::test(start_paused = true)]
async fn outbound_attempts_keep_the_callers_earlier_deadline() {
    use tower_pressure::degradation::DegradationLayer;
    let (monitor, _manual) = PressureMonitor::manual();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let client =
        ServiceBuilder::new()
            .resilience(ResilienceStack::outbound(monitor.clone()).degradation(
                DegradationLayer::new(monitor.clone()).deadline(Duration::from_secs(1)),
            ))
            .service(service_fn(move |req: Request<()>| {
                s.lock()
                    .unwrap()
                    .push(Constraints::from_request(&req).and_then(|c| c.deadline()));
                async { Ok::<_, BoxError>(Response::new(())) }
            }));

    let t0 = tokio::time::Instant::now();
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(Constraints::default().with_deadline(t0 + Duration::from_millis(50)));
    client.clone().oneshot(req).await.unwrap();
    // Without one, the layer's own 1 s deadline applies.
    client.oneshot(Request::new(())).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            Some(t0 + Duration::from_millis(50)),
            Some(t0 + Duration::from_secs(1))
        ]
    );
}

// The documented order (`src/stack.rs`, "# Order"), observed through behaviour.

/// Outbound: `Alert → Retry → Degradation → Breaker → timeout`. An inner service that fails
/// retryably twice, then succeeds: the alert layer (outside retry) sees one request, the
/// breaker (inside retry) judges all three attempts, and degradation (inside retry) gives each
/// attempt the constraints of the pressure when it is sent.
#[tokio::test(start_paused = true)]
async fn outbound_order_alert_sees_the_request_breaker_and_degradation_each_attempt() {
    use tower_pressure::alert::AlertLayer;
    use tower_pressure::retry::{Backoff, Jitter, Retryable};
    let (monitor, manual) = PressureMonitor::manual();
    let alert = AlertLayer::new("client");
    let alert_metrics = alert.metrics();
    let breaker = CircuitBreakerLayer::builder()
        .name("backend")
        .monitor(monitor.clone())
        .build()
        .unwrap();
    let breaker_handle = breaker.handle();
    let retry = RetryLayer::builder(monitor.clone())
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(10)).jitter(Jitter::None))
        .build()
        .unwrap();
    let stack = ResilienceStack::outbound(monitor.clone())
        .alert(alert)
        .breaker(breaker)
        .retry(retry.clone());

    let levels = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicU32::new(0));
    let (l, c, m) = (levels.clone(), calls.clone(), monitor.clone());
    let backend = service_fn(move |req: Request<()>| {
        l.lock()
            .unwrap()
            .push(Constraints::from_request(&req).map(|c| c.level()));
        let n = c.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            // The pressure rises to High while the first attempt runs.
            manual.set(80.0);
            m.sample_now();
        }
        async move {
            if n < 2 {
                Err::<Response<u32>, BoxError>(Retryable::new("busy").into())
            } else {
                Ok(Response::new(n + 1))
            }
        }
    });
    let client = ServiceBuilder::new().resilience(stack).service(backend);
    let res = client.oneshot(Request::new(())).await.unwrap();
    assert_eq!(*res.body(), 3, "answered by the third attempt");

    // Alert outside retry: one request, which succeeded.
    let a = alert_metrics.snapshot();
    assert_eq!(
        (
            a.total_executions,
            a.successful_executions,
            a.failed_executions
        ),
        (1, 1, 0),
        "{a:?}"
    );
    // Breaker inside retry: three calls, two failures and the success.
    let b = breaker_handle.metrics();
    assert_eq!((b.calls, b.failures, b.successes), (3, 2, 1), "{b:?}");
    let r = retry.stats();
    assert_eq!((r.requests, r.retries), (1, 2));
    // Degradation inside retry: the retries were sent under High pressure and say so.
    assert_eq!(
        *levels.lock().unwrap(),
        [
            Some(PressureLevel::Normal),
            Some(PressureLevel::High),
            Some(PressureLevel::High)
        ]
    );
}

/// Outbound: the timeout sits inside the breaker, so a hung dependency is a failure the
/// breaker counts (a timeout outside it would cancel the breaker's call, which is not
/// counted) and one hung call opens a breaker with threshold 1.
#[tokio::test(start_paused = true)]
async fn outbound_order_a_timeout_is_a_breaker_failure() {
    let (monitor, _manual) = PressureMonitor::manual();
    let breaker = CircuitBreakerLayer::builder()
        .name("backend")
        .failure_threshold(1)
        .monitor(monitor.clone())
        .build()
        .unwrap();
    let handle = breaker.handle();
    let stack = ResilienceStack::outbound(monitor)
        .without_retry()
        .breaker(breaker)
        .timeout(Duration::from_millis(100));
    let client = ServiceBuilder::new()
        .resilience(stack)
        .service(service_fn(|_req: Request<()>| {
            std::future::pending::<Result<Response<()>, BoxError>>()
        }));
    let t0 = tokio::time::Instant::now();
    let err = client.oneshot(Request::new(())).await.unwrap_err();
    assert!(
        err.is::<tower_pressure::timeout::Elapsed>(),
        "the timeout's error passes the breaker unchanged: {err:?}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(100));
    let m = handle.metrics();
    assert_eq!((m.calls, m.failures), (1, 1), "{m:?}");
    assert_eq!(handle.state(), CircuitState::Open);
}

/// Inbound: `Alert → Degradation → AdaptiveConcurrency`. A request the limiter sheds already
/// carries the constraints degradation inserted (the limiter's classifier sees them), and the
/// alert layer, outermost, counts the shed as a failed request.
#[tokio::test(start_paused = true)]
async fn inbound_order_a_shed_request_is_constrained_and_counted_by_the_alert_layer() {
    use tower_pressure::alert::AlertLayer;
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(80.0);
    monitor.sample_now();
    assert_eq!(monitor.level(), PressureLevel::High);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    // Every request is Low, which the default policy sheds at High pressure.
    let limiter = AdaptiveConcurrencyLayer::builder(monitor.clone())
        .classifier(move |req: &Request<()>| {
            s.lock()
                .unwrap()
                .push(Constraints::from_request(req).map(|c| c.level()));
            Priority::Low
        })
        .build()
        .unwrap();
    let alert = AlertLayer::new("server");
    let alert_metrics = alert.metrics();
    let stack = ResilienceStack::inbound(monitor)
        .alert(alert)
        .concurrency(limiter);
    let handled = Arc::new(AtomicU32::new(0));
    let h = handled.clone();
    let svc =
        ServiceBuilder::new()
            .resilience(stack)
            .service(service_fn(move |_req: Request<()>| {
                h.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(())) }
            }));

    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert!(err.is::<Overloaded>(), "{err:?}");
    assert_eq!(handled.load(Ordering::SeqCst), 0, "shed before the handler");
    assert_eq!(*seen.lock().unwrap(), [Some(PressureLevel::High)]);
    let a = alert_metrics.snapshot();
    assert_eq!(
        (
            a.total_executions,
            a.successful_executions,
            a.failed_executions
        ),
        (1, 0, 1),
        "{a:?}"
    );
}

// Every `ServiceBuilderExt` method adds a layer that works (`adaptive_concurrency` and
// `resilience` are exercised by the tests above).

#[tokio::test(start_paused = true)]
async fn service_builder_alerts_records_every_call() {
    use tower_pressure::alert::AlertLayer;
    let alert = AlertLayer::new("api");
    let metrics = alert.metrics();
    let svc =
        ServiceBuilder::new()
            .alerts(alert)
            .service(service_fn(|req: Request<bool>| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if *req.body() {
                    Ok(Response::new(()))
                } else {
                    Err::<Response<()>, BoxError>("backend down".into())
                }
            }));
    svc.clone().oneshot(Request::new(true)).await.unwrap();
    svc.clone().oneshot(Request::new(true)).await.unwrap();
    svc.oneshot(Request::new(false)).await.unwrap_err();
    let s = metrics.snapshot();
    assert_eq!(s.service, "api");
    assert_eq!(
        (
            s.total_executions,
            s.successful_executions,
            s.failed_executions,
            s.in_flight
        ),
        (3, 2, 1, 0),
        "{s:?}"
    );
    assert!(s.peak_duration_ms >= 5.0, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn service_builder_circuit_breaker_opens_after_failures() {
    let breaker = CircuitBreakerLayer::builder()
        .name("db")
        .failure_threshold(2)
        .wait_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = breaker.handle();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let svc = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .service(service_fn(move |_req: Request<()>| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<Response<()>, BoxError>("db down".into()) }
        }));
    for _ in 0..2 {
        let err = svc.clone().oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(err.to_string(), "db down");
    }
    assert_eq!(handle.state(), CircuitState::Open);
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("CircuitOpen");
    assert_eq!(open.breaker(), "db");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the open breaker did not call"
    );
}

/// `.retries(layer)` in method-call syntax, and `retry` by path: tower's own
/// `ServiceBuilder::retry(policy)` is an inherent method, so `.retry(layer)` resolves to it
/// (building `tower::retry::Retry<RetryLayer, _>`, which is not a service).
#[tokio::test(start_paused = true)]
async fn service_builder_retry_retries_a_retryable_error() {
    use tower_pressure::retry::Retryable;
    let (monitor, _manual) = PressureMonitor::manual();
    let calls = Arc::new(AtomicU32::new(0));
    let flaky = |calls: &Arc<AtomicU32>| {
        let c = calls.clone();
        service_fn(move |_req: Request<()>| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n.is_multiple_of(2) {
                    Err::<&str, BoxError>(Retryable::new("flaky").into())
                } else {
                    Ok("done")
                }
            }
        })
    };
    let by_method = ServiceBuilder::new()
        .retries(RetryLayer::new(monitor.clone()))
        .service(flaky(&calls));
    assert_eq!(by_method.oneshot(Request::new(())).await.unwrap(), "done");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let by_path = ServiceBuilderExt::retry(ServiceBuilder::new(), RetryLayer::new(monitor))
        .service(flaky(&calls));
    assert_eq!(by_path.oneshot(Request::new(())).await.unwrap(), "done");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn service_builder_degradation_inserts_constraints() {
    use tower_pressure::degradation::DegradationLayer;
    let (monitor, manual) = PressureMonitor::manual();
    manual.set(80.0);
    monitor.sample_now();
    let svc = ServiceBuilder::new()
        .degradation(DegradationLayer::new(monitor))
        .service(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Constraints::from_request(&req).map(|c| c.level()))
        }));
    assert_eq!(
        svc.oneshot(Request::new(())).await.unwrap(),
        Some(PressureLevel::High)
    );
}
