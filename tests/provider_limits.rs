//! LLM provider rate-limit headers as pressure, against a fake provider on 127.0.0.1 (a real
//! hyper server) that reports a shrinking token budget and then answers 429: the pressure
//! signal rises, the degradation constraint (`max_tokens`) tightens, the tokens spent are
//! charged to the tenant's quota, and the client switches to the backup provider before the
//! provider ever sends its 429.
//!
//! The network test runs on real time (real sockets) with no timing assertion; the decay of
//! the signal after the reset runs on a paused clock without I/O.

#![cfg(feature = "http")]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::circuit_breaker::http::{HostKey, ServerErrorsAsFailures};
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use tower_pressure::degradation::{DegradationLayer, DegradationPolicy};
use tower_pressure::fallback::{FallbackLayer, is_circuit_open};
use tower_pressure::provider_limits::ProviderLimits;
use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer};
use tower_pressure::{PressureLevel, PressureMonitor};

#[derive(Clone, Copy, Debug, PartialEq)]
struct MaxTokens(u32);

/// The fake provider: request `n` (from 0) reports `1000 - 300 n` tokens remaining (floor 0)
/// of 1000, resetting in 30 s; from the fifth request on it answers 429.
async fn fake_provider() -> (std::net::SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let sent_429 = Arc::new(AtomicU64::new(0));
    let (h, s) = (hits.clone(), sent_429.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (h, s) = (h.clone(), s.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let n = h.fetch_add(1, Ordering::Relaxed);
                    let s = s.clone();
                    async move {
                        let remaining = 1000u64.saturating_sub(300 * n);
                        let mut b = Response::builder()
                            .header("x-ratelimit-limit-tokens", "1000")
                            .header("x-ratelimit-remaining-tokens", remaining.to_string())
                            .header("x-ratelimit-reset-tokens", "30s")
                            .header("x-ratelimit-limit-requests", "100")
                            .header("x-ratelimit-remaining-requests", (99 - n).to_string())
                            .header("x-ratelimit-reset-requests", "1m0s");
                        if n >= 4 {
                            s.fetch_add(1, Ordering::Relaxed);
                            b = b
                                .status(StatusCode::TOO_MANY_REQUESTS)
                                .header("retry-after", "30");
                        }
                        Ok::<_, Infallible>(b.body(Full::new(Bytes::from_static(b"{}"))).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits, sent_429)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_becomes_pressure_tightens_max_tokens_and_switches_before_429() {
    let (addr, hits, sent_429) = fake_provider().await;
    let breakers = CircuitBreakerLayer::builder()
        .name("llm")
        .build()
        .unwrap()
        .classifier(ServerErrorsAsFailures)
        .per_key(HostKey);
    let handle = breakers.handle();
    let limits = ProviderLimits::builder()
        .provider("provider-a", "127.0.0.1")
        .breaker(handle.clone())
        .build()
        .unwrap();
    let monitor = limits
        .gauges(PressureMonitor::builder().without_system_sources())
        .build_unstarted()
        .unwrap();
    let policy = DegradationPolicy::default()
        .extension(PressureLevel::Normal, MaxTokens(1024))
        .extension(PressureLevel::Elevated, MaxTokens(768))
        .extension(PressureLevel::High, MaxTokens(256));
    let quota = QuotaLayer::builder()
        .group(QuotaGroup::new("llm").units(Limit::tiers(100_000, 200_000, 300_000)))
        .assign("acme", "llm")
        .build(HeaderKey::x_tenant())
        .unwrap();

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let send = service_fn(move |req: Request<Empty<Bytes>>| {
        s.lock()
            .unwrap()
            .push(req.extensions().get::<MaxTokens>().copied());
        let client = client.clone();
        async move { client.request(req).await }
    });
    let b = seen.clone();
    let backup = service_fn(move |req: Request<Empty<Bytes>>| {
        b.lock()
            .unwrap()
            .push(req.extensions().get::<MaxTokens>().copied());
        async {
            Ok::<_, BoxError>(
                Response::builder()
                    .header("x-provider", "backup")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        }
    });
    let primary = ServiceBuilder::new()
        .layer(breakers)
        .layer(limits.layer())
        .map_response(|r: Response<Incoming>| r.map(|_| Full::new(Bytes::new())))
        .map_err(BoxError::from)
        .service(send);
    let svc = ServiceBuilder::new()
        .layer(quota.clone())
        .layer(DegradationLayer::with_policy(monitor.clone(), policy))
        .layer(
            FallbackLayer::service(backup)
                .when(is_circuit_open)
                .build()
                .unwrap(),
        )
        .service(primary);

    let uri = format!("http://{addr}/v1/chat/completions");
    let req = || {
        Request::get(&uri)
            .header("x-tenant", "acme")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let mut trace = Vec::new();
    for _ in 0..6 {
        let res = svc.clone().oneshot(req()).await.unwrap();
        monitor.sample_now();
        let from = res
            .headers()
            .get("x-provider")
            .map_or("provider-a", |_| "backup");
        trace.push((
            res.status().as_u16(),
            from,
            limits.used_percent("provider-a").unwrap(),
            monitor.level(),
        ));
    }
    // Used 1 % (one request of 100) -> 30 -> 60 -> 90 (tokens): Normal, Normal, Elevated, High (the
    // budget alone never goes past High by default). The fourth response
    // leaves 100 tokens, less than the 300 the last request spent: the provider's breaker key
    // opens until the reset and the backup answers the fifth and sixth requests; the
    // provider's 429 is never reached.
    assert_eq!(
        trace,
        vec![
            (200, "provider-a", 1.0, PressureLevel::Normal),
            (200, "provider-a", 30.0, PressureLevel::Normal),
            (200, "provider-a", 60.0, PressureLevel::Elevated),
            (200, "provider-a", 90.0, PressureLevel::High),
            (200, "backup", 90.0, PressureLevel::High),
            (200, "backup", 90.0, PressureLevel::High),
        ],
        "(status, provider, used %, level) per request"
    );
    assert_eq!(hits.load(Ordering::Relaxed), 4);
    assert_eq!(
        sent_429.load(Ordering::Relaxed),
        0,
        "switched before the 429"
    );
    assert_eq!(handle.state_of("127.0.0.1"), Some(CircuitState::Open));
    // max_tokens tightened with the level (the level is read when each request is sent).
    assert_eq!(
        *seen.lock().unwrap(),
        [1024, 1024, 1024, 768, 256, 256].map(|m| Some(MaxTokens(m)))
    );
    // 1000 -> 700 -> 400 -> 100: 900 tokens charged to the tenant as quota units.
    let b = &limits.budgets()[0];
    assert_eq!(b.tokens_charged, 900);
    assert_eq!(b.tokens.unwrap().remaining, 100);
    assert_eq!(b.requests.unwrap().remaining, 96);
    assert_eq!(quota.handle().usage("acme").unwrap().units_total, 900);
    let section = tower_pressure::status::StatusProvider::section(&limits);
    let e = &section.entries[0];
    assert_eq!(e.info_value("tokens"), Some("100/1000 left"));
    assert_eq!(
        e.metric_value(
            "tower_pressure_provider_budget_used_percent",
            &[("provider", "provider-a"), ("budget", "tokens")]
        ),
        Some(90.0)
    );
    assert_eq!(
        e.metric_value(
            "tower_pressure_provider_near_exhausted_total",
            &[("provider", "provider-a")]
        ),
        Some(1.0)
    );
}

fn limited(remaining: &'static str, reset: &'static str) -> Response<()> {
    Response::builder()
        .header("anthropic-ratelimit-tokens-limit", "1000")
        .header("anthropic-ratelimit-tokens-remaining", remaining)
        .header("anthropic-ratelimit-tokens-reset", reset)
        .body(())
        .unwrap()
}

/// Anthropic headers (RFC 3339 reset), a paused clock: after the reset the signal decays to 0
/// and the breaker goes through HALF_OPEN as after any trip.
#[tokio::test(start_paused = true)]
async fn signal_decays_after_reset_and_breaker_half_opens() {
    let breakers = CircuitBreakerLayer::builder()
        .name("llm")
        .build()
        .unwrap()
        .per_key(HostKey);
    let handle = breakers.handle();
    let limits = ProviderLimits::builder()
        .provider("anthropic", "api.anthropic.com")
        .breaker(handle.clone())
        .max_open(Duration::from_secs(5))
        .build()
        .unwrap();
    let reset = httpdate_rfc3339(std::time::SystemTime::now() + Duration::from_secs(60));
    let reset: &'static str = Box::leak(reset.into_boxed_str());
    let svc = ServiceBuilder::new()
        .layer(breakers)
        .layer(limits.layer())
        .service(service_fn(move |_: Request<()>| async move {
            Ok::<_, BoxError>(limited("0", reset))
        }));
    let req = || {
        Request::get("https://api.anthropic.com/v1/messages")
            .body(())
            .unwrap()
    };
    svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(limits.used_percent("anthropic"), Some(100.0));
    // Open for min(reset, max_open) = 5 s.
    assert_eq!(
        handle.state_of("api.anthropic.com"),
        Some(CircuitState::Open)
    );
    let err = svc.clone().oneshot(req()).await.unwrap_err();
    assert!(tower_pressure::fallback::is_circuit_open(&err), "{err}");
    tokio::time::advance(Duration::from_secs(6)).await;
    // The breaker lets a probe through (HALF_OPEN); the provider still says 0 left, so it
    // opens again.
    svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(
        handle.state_of("api.anthropic.com"),
        Some(CircuitState::Open)
    );
    // Past the provider's reset time the signal is 0 whatever the last response said.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(limits.used_percent("anthropic"), Some(0.0));
}

/// Malformed and contradictory headers are ignored: nothing panics, the signal stays 0.
#[tokio::test]
async fn malformed_headers_are_ignored() {
    let limits = ProviderLimits::builder()
        .provider("p", "api.p.test")
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(limits.layer())
        .service(service_fn(|n: Request<()>| async move {
            let r = match n.uri().path() {
                "/1" => limited("lots", "tomorrow"),
                "/2" => limited("2000", "2026-12-06T13:05:30Z"),
                "/3" => Response::builder()
                    .header("x-ratelimit-limit-tokens", "-1")
                    .header("x-ratelimit-remaining-tokens", "5")
                    .header("x-ratelimit-reset-tokens", "-3s")
                    .body(())
                    .unwrap(),
                _ => Response::builder()
                    .header("x-ratelimit-remaining-requests", "5")
                    .body(())
                    .unwrap(),
            };
            Ok::<_, BoxError>(r)
        }));
    for p in ["/1", "/2", "/3", "/4"] {
        let req = Request::get(format!("http://api.p.test{p}"))
            .body(())
            .unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    assert_eq!(limits.used_percent("p"), Some(0.0));
    assert!(limits.budgets()[0].tokens.is_none());
    assert_eq!(
        ProviderLimits::builder()
            .reserve_percent(f64::NAN)
            .build()
            .unwrap_err()
            .field(),
        "provider_limits.reserve_percent"
    );
}

/// Formats a time as RFC 3339 UTC (seconds), as Anthropic sends it.
fn httpdate_rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
