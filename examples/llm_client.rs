//! An outbound `ResilienceStack` around a hyper-util client calling two (mock) OpenAI-style
//! chat providers.
//!
//! Shows:
//! * two local mock providers (`POST /v1/chat/completions`, JSON) on 127.0.0.1, answering
//!   from a fault plan the driver scripts per request: `429` + `Retry-After`, `500`, `503`,
//!   slow answers;
//! * `RetryLayer::http(..)` retrying 429/503/timeouts, honouring `Retry-After`; the POSTs
//!   are replayable because they carry an `Idempotency-Key` header;
//! * one breaker per provider (`CircuitBreakerLayer::per_key(HostKey)` with
//!   `ServerErrorsAsFailures`); each request names the other provider as its fallback
//!   (`route::FallbackKeys`), so while the first's breaker is open the retry layer sends the
//!   attempt at once to the second (`route::RouteKey`, which the encoder turns into that
//!   provider's URL); the half-open probe closes the first's breaker again later;
//! * a `DegradationPolicy` attaching a `MaxTokens` extension per pressure level, which the
//!   request encoder (inside the stack) applies to the JSON body: `max_tokens` shrinks when a
//!   `ManualSource` raises the pressure mid-run; at `Critical` the retry layer stops retrying.
//!
//! * each provider reports its token budget in OpenAI's `x-ratelimit-*-tokens` headers;
//!   `ProviderLimitsLayer` turns it into the `llm_budget_used:<provider>` pressure signal, so
//!   `max_tokens` shrinks as the budget runs down, and opens the provider's breaker until the
//!   reset when the budget is nearly spent: the call goes to the other provider before a 429;
//! * a `HealthChecker` probes each provider's `GET /healthz`; while B's check fails it holds
//!   B's breaker open so calls to B go to A at once, and releases it (HALF_OPEN) on recovery.
//!
//! The two providers are `api.provider-a.test` and `api.provider-b.test`: the client's DNS
//! resolver maps `*.test` to 127.0.0.1 (and refuses anything else), so the breakers are
//! keyed by distinct hosts while everything stays on loopback.
//!
//! ```text
//! cargo run --example llm_client               # about 20 s
//! cargo run --example llm_client -- --quick    # a few seconds (CI)
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::PressureLevel;
use tower_pressure::ResilienceStack;
use tower_pressure::circuit_breaker::http::{HostKey, ServerErrorsAsFailures};
use tower_pressure::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use tower_pressure::degradation::{DegradationLayer, DegradationPolicy};
use tower_pressure::event::{BreakerEventKind, Event, HealthState, RetryEventKind};
use tower_pressure::health::{Dependency, HealthChecker, HttpCheck};
use tower_pressure::pressure::{ManualSource, PressureMonitor, Signal};
use tower_pressure::provider_limits::ProviderLimits;
use tower_pressure::rejection::Rejection;
use tower_pressure::retry::{Backoff, Jitter, RetryLayer};
use tower_pressure::route::{FallbackKeys, RouteKey};

const HOST_A: &str = "api.provider-a.test";
const HOST_B: &str = "api.provider-b.test";

// ---------------------------------------------------------------------------------------
// The mock provider

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 429 with `Retry-After: n` seconds.
    TooMany(u64),
    /// 500.
    ServerError,
    /// 503 (retryable).
    Unavailable,
    /// Answers after this long.
    Slow(Duration),
}

#[derive(Clone)]
struct Provider {
    name: &'static str,
    plan: Arc<Mutex<VecDeque<Fault>>>,
    hits: Arc<AtomicU32>,
    /// Tokens left in the budget the provider reports (of `BUDGET`).
    budget: Arc<AtomicU32>,
    /// Status `GET /healthz` answers.
    health: Arc<AtomicU16>,
    /// The budget's reset, as OpenAI formats it (`"20s"`).
    reset: &'static str,
}

const BUDGET: u32 = 10_000;
/// Tokens each answer costs the budget.
const COST: u32 = 42;

impl Provider {
    fn new(name: &'static str, reset: &'static str) -> Self {
        Self {
            name,
            plan: Arc::default(),
            hits: Arc::default(),
            budget: Arc::new(AtomicU32::new(BUDGET)),
            health: Arc::new(AtomicU16::new(200)),
            reset,
        }
    }
    fn script(&self, faults: &[Fault]) {
        let mut p = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        p.clear();
        p.extend(faults.iter().copied());
    }
    fn hits(&self) -> u32 {
        self.hits.load(Ordering::Relaxed)
    }
}

async fn completions(State(p): State<Provider>, body: String) -> http::Response<Body> {
    p.hits.fetch_add(1, Ordering::Relaxed);
    let fault = p.plan.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
    let error = |status: u16, msg: &str| {
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"error": {"message": msg, "type": "mock"}}).to_string(),
            ))
    };
    let res = match fault {
        Some(Fault::TooMany(secs)) => error(429, "rate limit reached").map(|mut r| {
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
            r
        }),
        Some(Fault::ServerError) => error(500, "internal error"),
        Some(Fault::Unavailable) => error(503, "overloaded"),
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            Ok(answer(&p, &body))
        }
        None => Ok(answer(&p, &body)),
    };
    res.unwrap_or_else(|_| http::Response::new(Body::empty()))
}

fn answer(p: &Provider, body: &str) -> http::Response<Body> {
    let req: Value = serde_json::from_str(body).unwrap_or_default();
    let max_tokens = req["max_tokens"].as_u64().unwrap_or(0);
    let reply = json!({
        "id": format!("chatcmpl-{}", p.hits()),
        "object": "chat.completion",
        "model": req["model"],
        "choices": [{"index": 0, "message": {"role": "assistant",
            "content": format!("({}) here is a summary", p.name)}, "finish_reason": "stop"}],
        "usage": {"completion_tokens": max_tokens.min(42), "max_tokens_seen": max_tokens},
    });
    let left = p
        .budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some(b.saturating_sub(COST))
        })
        .map_or(0, |b| b.saturating_sub(COST));
    let mut res = http::Response::new(Body::from(reply.to_string()));
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert("x-ratelimit-limit-tokens", http::HeaderValue::from(BUDGET));
    h.insert(
        "x-ratelimit-remaining-tokens",
        http::HeaderValue::from(left),
    );
    h.insert(
        "x-ratelimit-reset-tokens",
        http::HeaderValue::from_static(p.reset),
    );
    res
}

async fn healthz(State(p): State<Provider>) -> http::StatusCode {
    http::StatusCode::from_u16(p.health.load(Ordering::Relaxed))
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}

async fn start_provider(p: Provider) -> Result<SocketAddr, BoxError> {
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/healthz", axum::routing::get(healthz))
        .with_state(p);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

// ---------------------------------------------------------------------------------------
// The client

/// A chat request before encoding: `Clone`, so the retry layer can replay it.
#[derive(Debug, Clone)]
struct Chat {
    model: &'static str,
    prompt: String,
    max_tokens: u32,
}

/// Set by the `DegradationPolicy` per pressure level; applied by [`encode`].
#[derive(Debug, Clone, Copy)]
struct MaxTokens(u32);

/// Innermost step of the client: the provider's URL for the attempt's `RouteKey` (set by
/// the caller, or by the retry layer when it reroutes to a fallback), and the JSON body, with
/// `max_tokens` capped by the level's `MaxTokens` extension. Runs per attempt, so a retry
/// after pressure rose is smaller too.
fn encode(urls: &Urls, mut req: http::Request<Chat>) -> http::Request<Full<Bytes>> {
    if let Some(url) = req
        .extensions()
        .get::<RouteKey>()
        .and_then(|k| urls.iter().find(|(host, _)| *host == k.as_str()))
        .and_then(|(_, url)| url.parse().ok())
    {
        *req.uri_mut() = url;
    }
    let cap = req
        .extensions()
        .get::<MaxTokens>()
        .map_or(u32::MAX, |m| m.0);
    req.map(|c| {
        let body = json!({
            "model": c.model,
            "messages": [{"role": "user", "content": c.prompt}],
            "max_tokens": c.max_tokens.min(cap),
        });
        Full::new(Bytes::from(body.to_string()))
    })
}

/// Each provider's host (its breaker and route key) and URL.
type Urls = Arc<[(&'static str, String); 2]>;

/// Resolves `*.test` to 127.0.0.1 and refuses every other name: the example never leaves
/// loopback.
async fn loopback_resolver(name: Name) -> std::io::Result<std::iter::Once<SocketAddr>> {
    if name.as_str().ends_with(".test") {
        Ok(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))))
    } else {
        Err(std::io::Error::other(format!(
            "{name}: only *.test names (loopback) are resolved in this example"
        )))
    }
}

fn breaker_states(h: &CircuitBreakerHandle) -> String {
    let s = |host| {
        h.state_of(host)
            .map_or_else(|| "-".to_owned(), |s| s.to_string())
    };
    format!("A={} B={}", s(HOST_A), s(HOST_B))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (pause, retry_after, breaker_wait) = if quick {
        (Duration::from_millis(50), 1, Duration::from_millis(1200))
    } else {
        (Duration::from_millis(1200), 2, Duration::from_secs(5))
    };

    let (reset, reset_wait): (&'static str, _) = if quick {
        ("2s", Duration::from_secs(2))
    } else {
        ("8s", Duration::from_secs(8))
    };
    let (provider_a, provider_b) = (
        Provider::new("provider-a", reset),
        Provider::new("provider-b", reset),
    );
    let port_a = start_provider(provider_a.clone()).await?.port();
    let port_b = start_provider(provider_b.clone()).await?.port();
    let url = |host: &str, port: u16| format!("http://{host}:{port}/v1/chat/completions");
    let (url_a, url_b) = (url(HOST_A, port_a), url(HOST_B, port_b));
    println!("mock providers: {url_a} and {url_b} (both 127.0.0.1)");

    // Each provider's token budget, read from its responses, is a pressure signal; a budget
    // nearly spent opens that provider's breaker (below) until the reset.
    let limits = ProviderLimits::builder()
        .provider("provider-a", HOST_A)
        .provider("provider-b", HOST_B);
    // Pressure: a manual signal and the budgets only, so the run is deterministic.
    let manual = ManualSource::new(0.0);
    let bus = tower_pressure::event::EventBus::default();
    let monitor_builder = PressureMonitor::builder()
        .without_system_sources()
        .event_bus(bus.clone())
        .manual(Signal::Manual, manual.clone());

    let policy = DegradationPolicy::default()
        .extension(PressureLevel::Normal, MaxTokens(1024))
        .extension(PressureLevel::High, MaxTokens(512))
        .extension(PressureLevel::Critical, MaxTokens(256))
        .extension(PressureLevel::Emergency, MaxTokens(64));
    let breaker = CircuitBreakerLayer::builder()
        .name("llm")
        .event_bus(bus.clone()) // the monitor's bus: one event stream for the run
        .failure_threshold(3)
        .wait_duration(breaker_wait)
        .permitted_calls_in_half_open(1)
        .success_threshold(1)
        .build()?
        .classifier(ServerErrorsAsFailures)
        .per_key(HostKey);
    let breakers = breaker.handle();
    let limits = limits.breaker(breakers.clone()).build()?;
    let monitor = limits.gauges(monitor_builder).build_unstarted()?;
    let set_pressure = |v: f64| {
        manual.set(v);
        // Rising is immediate; falling steps down one level per `dwell` (2) samples.
        for _ in 0..10 {
            monitor.sample_now();
        }
    };
    let stack = ResilienceStack::outbound(monitor.clone())
        .degradation(DegradationLayer::with_policy(monitor.clone(), policy))
        .retry(
            RetryLayer::http(monitor.clone())
                .name("llm")
                .max_attempts(4)
                .backoff(
                    Backoff::exponential(Duration::from_millis(100), 2.0)
                        .max(Duration::from_secs(2))
                        .jitter(Jitter::None),
                )
                .max_pushback(Duration::from_secs(5))
                .build()?,
        )
        .breaker(breaker)
        .timeout(Duration::from_millis(600));

    let connector = HttpConnector::new_with_resolver(service_fn(loopback_resolver));
    let http_client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let urls: Urls = Arc::new([(HOST_A, url_a.clone()), (HOST_B, url_b.clone())]);
    let client = ServiceBuilder::new()
        .layer(stack)
        .map_request(move |req| encode(&urls, req))
        .layer(limits.layer()) // reads each attempt's rate-limit headers
        .service(http_client);

    // Active health checks on each provider's /healthz, holding its breaker key open while
    // it fails (the checks run on their own tasks, never on a request).
    let health_url = |port: u16| format!("http://127.0.0.1:{port}/healthz");
    let checker = HealthChecker::builder()
        .interval(Duration::from_millis(100))
        .jitter(Duration::from_millis(20))
        .timeout(Duration::from_millis(500))
        .unhealthy_threshold(2)
        .healthy_threshold(2)
        .event_bus(monitor.events().clone())
        .dependency(
            Dependency::new("provider-a", HttpCheck::new(&health_url(port_a))?)
                .breaker(breakers.clone(), Some(HOST_A)),
        )
        .dependency(
            Dependency::new("provider-b", HttpCheck::new(&health_url(port_b))?)
                .breaker(breakers.clone(), Some(HOST_B)),
        )
        .build()?;

    let mut events = monitor.events().subscribe();
    let mut n = 0u32;
    let mut step = |what: &'static str| {
        n += 1;
        println!("\n#{n} {what}");
    };

    // One chat call to `primary`, naming the other provider as its fallback: the stack
    // reroutes to it at once when `primary`'s breaker is open.
    let chat = |prompt: &str, max_tokens: u32, primary: &'static str| {
        let client = client.clone();
        let (url, fallback) = if primary == HOST_A {
            (url_a.clone(), HOST_B)
        } else {
            (url_b.clone(), HOST_A)
        };
        let prompt = prompt.to_owned();
        let breakers = breakers.clone();
        async move {
            let t = Instant::now();
            let mut req = http::Request::post(url)
                .header("content-type", "application/json")
                // POST is not idempotent: this header makes it replayable.
                .header("idempotency-key", format!("req-{}", fastrand::u32(..)))
                .body(Chat {
                    model: "gpt-mock",
                    prompt,
                    max_tokens,
                })?;
            req.extensions_mut().insert(RouteKey::new(primary));
            req.extensions_mut().insert(FallbackKeys::new([fallback]));
            let res = client.oneshot(req).await;
            let elapsed = t.elapsed();
            match res {
                Ok(res) => {
                    let status = res.status();
                    let body = res.into_body().collect().await?.to_bytes();
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let mt = &v["usage"]["max_tokens_seen"];
                    let used = v["choices"][0]["message"]["content"]
                        .as_str()
                        .and_then(|c| c.strip_prefix('(')?.split_once(')'))
                        .map_or("-", |(name, _)| name)
                        .to_owned();
                    println!(
                        "   => {used}: {status} in {:.2}s, max_tokens sent={}, breakers {}",
                        elapsed.as_secs_f64(),
                        if mt.is_null() {
                            "-".to_owned()
                        } else {
                            mt.to_string()
                        },
                        breaker_states(&breakers)
                    );
                }
                Err(e) => println!(
                    "   => error after {:.2}s: {} ({}); breakers {}",
                    elapsed.as_secs_f64(),
                    Rejection::from_error(&*e).reason(),
                    e,
                    breaker_states(&breakers)
                ),
            }
            Ok::<_, BoxError>(())
        }
    };
    // What the layers reported while the call ran.
    let report = |events: &mut tokio::sync::broadcast::Receiver<Event>, hits: (u32, u32)| {
        while let Ok(ev) = events.try_recv() {
            match ev {
                Event::Retry(r) => match r.kind {
                    RetryEventKind::Attempt {
                        attempt,
                        delay,
                        reason,
                    } => println!(
                        "   retry: attempt {attempt} after waiting {:.2}s ({reason})",
                        delay.as_secs_f64()
                    ),
                    RetryEventKind::Exhausted { attempts, reason } => {
                        println!("   retry: gave up after {attempts} attempt(s): {reason}")
                    }
                    RetryEventKind::BudgetExhausted { count } => {
                        println!("   retry: budget refused {count} retries")
                    }
                    _ => {}
                },
                Event::Breaker(b) => {
                    if let BreakerEventKind::StateTransition { from, to, reason } = b.kind {
                        println!(
                            "   breaker {}: {from} -> {to} ({reason})",
                            b.key.as_deref().unwrap_or("-")
                        );
                    }
                }
                Event::PressureChanged(p) => println!(
                    "   pressure: {} -> {} (driven by {} = {:.1})",
                    p.from, p.to, p.signal_name, p.value
                ),
                Event::Health(h) => println!(
                    "   health {}: {} -> {}{}{}",
                    h.dependency,
                    h.from,
                    h.to,
                    h.last_error
                        .as_deref()
                        .map_or_else(String::new, |e| format!(" (last check: {e})")),
                    if h.held {
                        ", breaker held open by the checker"
                    } else {
                        ""
                    }
                ),
                _ => {}
            }
        }
        println!(
            "   attempts reaching the providers: A={} B={}",
            provider_a.hits() - hits.0,
            provider_b.hits() - hits.1
        );
    };
    let hits = || (provider_a.hits(), provider_b.hits());

    step("normal call");
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    report(&mut events, h);
    tokio::time::sleep(pause).await;

    step("provider A rate-limits once (429, Retry-After)");
    provider_a.script(&[Fault::TooMany(retry_after)]);
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    report(&mut events, h);
    tokio::time::sleep(pause).await;

    step("provider A is slow once (1.5 s > 600 ms per-attempt timeout)");
    provider_a.script(&[Fault::Slow(Duration::from_millis(1500))]);
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    report(&mut events, h);
    tokio::time::sleep(pause).await;

    step("provider A answers 500 (a failure for the breaker, not retried)");
    provider_a.script(&[Fault::ServerError]);
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    report(&mut events, h);
    tokio::time::sleep(pause).await;

    step("provider A answers 503 repeatedly: retries trip its breaker, the retry reroutes to B");
    provider_a.script(&[Fault::Unavailable; 2]);
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    report(&mut events, h);
    tokio::time::sleep(pause).await;

    step("pressure rises to high: max_tokens shrinks; A still open, rerouted at once to B");
    set_pressure(80.0);
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    report(&mut events, h);
    tokio::time::sleep(pause).await;

    step("pressure critical: B rate-limits, and no retry is made under critical pressure");
    set_pressure(88.0);
    provider_b.script(&[Fault::TooMany(retry_after)]);
    let h = hits();
    chat("summarise the report", 1024, HOST_B).await?;
    report(&mut events, h);

    step("pressure back to normal, A's wait elapsed: the half-open probe closes A's breaker");
    set_pressure(10.0);
    provider_a.script(&[]);
    provider_b.script(&[]);
    tokio::time::sleep(breaker_wait + Duration::from_millis(100)).await;
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    report(&mut events, h);

    step("provider A's token budget is nearly spent (x-ratelimit-remaining-tokens)");
    provider_a.budget.store(COST + 60, Ordering::Relaxed);
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    monitor.sample_now();
    report(&mut events, h);
    println!(
        "   budget A: {:.1} % used, below its 1 % reserve before the reset ({reset}): pressure high, max_tokens 512 from now",
        limits.used_percent("provider-a").unwrap_or(0.0)
    );

    step("A's breaker is open until its budget resets: the call goes to B before any 429");
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    report(&mut events, h);

    step("A's budget reset passed: the signal decays to 0, max_tokens grows back");
    provider_a.budget.store(BUDGET, Ordering::Relaxed);
    tokio::time::sleep(reset_wait + Duration::from_millis(200)).await;
    set_pressure(10.0);
    let h = hits();
    chat("summarise the report", 1024, HOST_A).await?;
    report(&mut events, h);

    step("provider B's health check fails (/healthz 503): B is held out before a call fails");
    provider_b.health.store(503, Ordering::Relaxed);
    let t = Instant::now();
    while checker.state("provider-b") != Some(HealthState::Unhealthy)
        && t.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let h = hits();
    chat("summarise the report", 1024, HOST_B).await?;
    report(&mut events, h);

    step("B's health check passes again: the checker releases B's breaker to HALF_OPEN");
    provider_b.health.store(200, Ordering::Relaxed);
    let t = Instant::now();
    while checker.state("provider-b") != Some(HealthState::Healthy)
        && t.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let h = hits();
    chat("summarise the report", 1024, HOST_B).await?;
    report(&mut events, h);
    drop(checker);

    let a = breakers.metrics_of(HOST_A);
    println!(
        "\nsummary: provider A calls={} failures={} rejected={}; provider B hits={}; breakers {}",
        a.as_ref().map_or(0, |m| m.calls),
        a.as_ref().map_or(0, |m| m.failures),
        a.as_ref().map_or(0, |m| m.rejected),
        provider_b.hits(),
        breaker_states(&breakers)
    );
    if quick {
        println!("quick run OK");
    }
    Ok(())
}
