//! The inbound `ResilienceStack` on an axum router.
//!
//! Shows:
//! * `ResilienceStack::inbound(monitor)` (alert → degradation → adaptive concurrency) applied
//!   to the API routes, with `HandleErrorLayer::new(tower_pressure::rejection::handle_error)`
//!   turning a shed request into `503`/`429` + `Retry-After` + a JSON body;
//! * priority classes from the `x-priority` header (`critical`, `high`, `normal`, `low`):
//!   under pressure the low classes are refused first;
//! * handlers taking the `Constraints` extractor and doing less work under pressure;
//! * `/status` served by `StatusService` outside the stack (never shed): JSON, and Prometheus
//!   text with `?format=prometheus`.
//!
//! Pressure comes from the machine (CPU, memory, cgroup, PSI) plus a manual signal you can
//! set with `POST /simulate/{percent}` (65/75/85/95 = elevated/high/critical/emergency).
//! With `--quick` the monitor uses only the manual signal so the output is deterministic.
//!
//! ```text
//! cargo run --example axum_server                 # serves on 127.0.0.1:3000 until Ctrl-C
//! cargo run --example axum_server -- --port 8080
//! cargo run --example axum_server -- --quick      # self-test: a few requests, then exit 0
//!
//! curl -s localhost:3000/analyze -H 'x-priority: low'
//! curl -s -XPOST localhost:3000/simulate/80 ; curl -si localhost:3000/analyze -H 'x-priority: low'
//! curl -s localhost:3000/status ; curl -s 'localhost:3000/status?format=prometheus'
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
use tower_pressure::pressure::{ManualSource, PressureMonitor, Signal};
use tower_pressure::priority::HeaderPriority;
use tower_pressure::status::StatusService;
use tower_pressure::{Constraints, Priority, ResilienceStack};

#[derive(Clone)]
struct AppState {
    monitor: PressureMonitor,
    manual: ManualSource,
}

/// Analyses a document with as many entities as the current constraints allow.
async fn analyze(c: Constraints) -> axum::Json<Value> {
    let entities = c.entity_limit(100);
    // Stand-in for real work, proportional to what we are allowed to do.
    tokio::time::sleep(Duration::from_millis(entities as u64 / 10)).await;
    axum::Json(json!({
        "entities": entities,
        "level": c.level().to_string(),
        "skip_expensive": c.should_skip_expensive(),
        "simplified": c.should_use_simplified(),
    }))
}

/// Sets the manual pressure signal (0-100) and samples at once.
async fn simulate(State(s): State<AppState>, Path(percent): Path<f64>) -> String {
    s.manual.set(percent.clamp(0.0, 100.0));
    // Two samples: stepping down a level needs `dwell` (2) samples below the threshold.
    s.monitor.sample_now();
    s.monitor.sample_now();
    format!("manual signal = {percent}, level = {}\n", s.monitor.level())
}

struct Args {
    quick: bool,
    port: u16,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        port: 3000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--port" => {
                a.port = it
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("--port needs a number")?
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --quick, --port N)"
                ));
            }
        }
    }
    if a.quick {
        a.port = 0;
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let args = parse_args()?;
    let manual = ManualSource::new(0.0);
    let mut builder = PressureMonitor::builder().manual(Signal::Manual, manual.clone());
    if args.quick {
        builder = builder.without_system_sources();
    }
    let monitor = builder.build()?;

    let concurrency = AdaptiveConcurrencyLayer::builder(monitor.clone())
        .name("api")
        .classifier(
            HeaderPriority::new(http::HeaderName::from_static("x-priority"))
                .default_priority(Priority::Normal),
        )
        .build()?;
    let stack = ResilienceStack::inbound(monitor.clone()).concurrency(concurrency);
    // The monitor and every part of the stack (alert, degradation, the "api" limiter).
    let registry = stack.status_registry();

    let state = AppState {
        monitor: monitor.clone(),
        manual: manual.clone(),
    };
    let app = Router::new()
        .route("/analyze", get(analyze))
        // The stack is built once above; axum calls `layer()` per route, and every route
        // shares the stack's state.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    tower_pressure::rejection::handle_error,
                ))
                .layer(stack),
        )
        // Not behind the stack: operators and scrapers must see the status under overload.
        .route_service("/status", StatusService::new(registry))
        .route("/simulate/{percent}", post(simulate))
        .with_state(state);

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let addr = listener.local_addr()?;
    println!("axum_server listening on http://{addr}");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    if !args.quick {
        println!("try: curl -s {addr}/analyze -H 'x-priority: low'   (Ctrl-C to stop)");
        tokio::signal::ctrl_c().await?;
        server.abort();
        return Ok(());
    }

    // --quick: talk to ourselves with a hyper client, print what came back, exit.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get = |path: &str, priority: Option<&str>| {
        let mut b = http::Request::get(format!("http://{addr}{path}"));
        if let Some(p) = priority {
            b = b.header("x-priority", p);
        }
        let req = b.body(Empty::new());
        let client = client.clone();
        async move {
            let res = client.request(req?).await?;
            let status = res.status();
            let retry_after = res
                .headers()
                .get(http::header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap_or("?").to_owned());
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, tower::BoxError>((
                status,
                retry_after,
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
    };

    let (s, _, b) = get("/analyze", Some("low")).await?;
    println!("[normal]    GET /analyze x-priority=low  -> {s} {b}");

    manual.set(80.0);
    monitor.sample_now();
    println!("pressure set to {} (manual signal 80)", monitor.level());
    let (s, ra, b) = get("/analyze", Some("low")).await?;
    println!("[high]      GET /analyze x-priority=low  -> {s} retry-after={ra:?} {b}");
    assert_eq!(
        s,
        http::StatusCode::SERVICE_UNAVAILABLE,
        "low is shed at high"
    );
    let (s, _, b) = get("/analyze", Some("critical")).await?;
    println!("[high]      GET /analyze x-priority=critical -> {s} {b}");
    assert_eq!(s, http::StatusCode::OK, "critical is served, degraded");

    let (s, _, b) = get("/status", None).await?;
    let v: Value = serde_json::from_str(&b)?;
    let pressure = v["sections"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "pressure"))
        .cloned()
        .unwrap_or_default();
    println!(
        "[status]    GET /status -> {s}, {} bytes JSON, sections={:?}, pressure.info={}",
        b.len(),
        v["sections"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|s| s["name"].as_str())
                .collect::<Vec<_>>())
            .unwrap_or_default(),
        pressure["info"]
    );
    let (s, _, b) = get("/status?format=prometheus", None).await?;
    println!(
        "[status]    GET /status?format=prometheus -> {s}, {} lines, e.g.:",
        b.lines().count()
    );
    for line in b.lines().filter(|l| {
        l.starts_with("tower_pressure_level ")
            || l.starts_with("tower_pressure_driver_value")
            || l.starts_with("tower_pressure_concurrency_limit")
            || (l.starts_with("tower_pressure_concurrency_shed_total")
                && l.contains("class=\"low\""))
            || l.starts_with("tower_pressure_service_calls_total")
    }) {
        println!("              {line}");
    }
    server.abort();
    println!("quick run OK");
    Ok(())
}
