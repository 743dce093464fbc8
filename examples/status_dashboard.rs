//! A live dashboard of the `/status` endpoint: pressure, adaptive limit, in-flight and
//! circuit breaker states, drawn by a self-contained HTML page (inline JS + canvas, no CDN,
//! no external assets).
//!
//! Shows:
//! * one `StatusRegistry` (from `ResilienceStack::inbound(..).status_registry()`) served by
//!   `StatusService` at `/status` (JSON; `?format=prometheus` for scrapers), holding the
//!   adaptive limiter's own section plus one `StatusProvider` closure for the per-key breakers;
//! * a page at `/` that backfills from `/history` and then polls `/status` every second;
//! * a bounded background load through the inbound stack (`/api/work`, mixed `x-priority`)
//!   and through a per-key `CircuitBreakerLayer` guarding three fake dependencies that fail
//!   in turns, while a manual pressure signal follows a wave, so every chart moves.
//!
//! ```text
//! cargo run --example status_dashboard                      # http://127.0.0.1:3030/ until Ctrl-C
//! cargo run --example status_dashboard -- --port 8080
//! cargo run --example status_dashboard -- --seconds 20      # serve 20 s, then exit
//! cargo run --example status_dashboard -- --quick           # serve ~4 s, self-check, exit 0
//! cargo run --example status_dashboard -- --system          # add the machine's real signals
//! ```
//!
//! The load stops after 120 s (or at exit); the page keeps polling. `tests/dashboard_chromium.rs`
//! screenshots the page in headless Chromium (`docs/dashboard.png`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::time::Instant;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::ResilienceStack;
use tower_pressure::circuit_breaker::http::HeaderKey;
use tower_pressure::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, CircuitState};
use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
use tower_pressure::pressure::{ManualSource, PressureMonitor, Signal};
use tower_pressure::priority::HeaderPriority;
use tower_pressure::status::{StatusRegistry, StatusSection, StatusService};

const BACKENDS: [&str; 3] = ["search", "db", "llm"];

fn state_num(s: CircuitState) -> f64 {
    match s {
        CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open | CircuitState::ForcedOpen => 2.0,
    }
}

/// A fake dependency: backend `i` is down for 2.5 s of every 9 s, each at its own phase.
async fn dependency(req: http::Request<()>, started: Instant) -> Result<(), BoxError> {
    let t = started.elapsed().as_secs_f64();
    let key = req
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let idx = BACKENDS.iter().position(|b| *b == key).unwrap_or(0) as f64;
    tokio::time::sleep(Duration::from_millis(3)).await;
    if (t + 3.0 * idx).rem_euclid(9.0) > 6.5 {
        Err("backend down".into())
    } else {
        Ok(())
    }
}

/// Every keyed breaker as a status section with one entry per key.
fn breakers_section(h: &CircuitBreakerHandle) -> StatusSection {
    let mut s = StatusSection::new("breakers", "circuit_breaker");
    for m in h.all_metrics() {
        let Some(key) = m.key.as_deref() else {
            continue;
        };
        s = s
            .gauge(
                "tower_pressure_breaker_state",
                "0 closed, 1 half-open, 2 open.",
                &[("key", key)],
                state_num(m.state),
            )
            .entry(
                StatusSection::new(key, "breaker")
                    .info("state", m.state)
                    .info("failure_rate", format!("{:.1}", m.failure_rate))
                    .counter(
                        "tower_pressure_breaker_calls_total",
                        "Calls.",
                        &[("key", key)],
                        m.calls as f64,
                    )
                    .counter(
                        "tower_pressure_breaker_rejected_total",
                        "Rejected calls.",
                        &[("key", key)],
                        m.rejected as f64,
                    ),
            );
    }
    s
}

/// One chart point, extracted from a status snapshot (the page does the same in JS).
fn point(registry: &StatusRegistry, t: f64) -> Value {
    let v: Value = serde_json::from_str(&registry.snapshot().to_json()).unwrap_or_default();
    // The first section whose `field` is `value`. The limiter's section is named after the
    // limiter ("api"), so it is looked up by kind.
    let section = |field: &str, value: &str| {
        v["sections"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s[field] == value))
            .cloned()
            .unwrap_or_default()
    };
    let metric = |s: &Value, name: &str| {
        s["metrics"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["name"] == name))
            .map(|m| m["value"].clone())
            .unwrap_or(Value::Null)
    };
    let (p, c, b) = (
        section("name", "pressure"),
        section("kind", "concurrency"),
        section("name", "breakers"),
    );
    let mut breakers = serde_json::Map::new();
    for e in b["entries"].as_array().into_iter().flatten() {
        breakers.insert(
            e["name"].as_str().unwrap_or("?").into(),
            e["info"]["state"].clone(),
        );
    }
    json!({
        "t": t,
        "level": metric(&p, "tower_pressure_level"),
        "driver": metric(&p, "tower_pressure_driver_value"),
        "limit": metric(&c, "tower_pressure_concurrency_limit"),
        "effective": metric(&c, "tower_pressure_concurrency_effective_limit"),
        "inflight": metric(&c, "tower_pressure_concurrency_in_flight"),
        "breakers": breakers,
        "driverName": p["info"]["driver"],
    })
}

#[derive(Clone)]
struct App {
    history: Arc<Mutex<VecDeque<Value>>>,
}

async fn history(State(app): State<App>) -> axum::Json<Value> {
    let h = match app.history.lock() {
        Ok(h) => h.iter().cloned().collect::<Vec<_>>(),
        Err(p) => p.into_inner().iter().cloned().collect(),
    };
    axum::Json(Value::Array(h))
}

struct Args {
    quick: bool,
    port: u16,
    seconds: Option<u64>,
    system: bool,
    config: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        port: 3030,
        seconds: None,
        system: false,
        config: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| {
            it.next()
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--port" => a.port = u16::try_from(num("--port")?).map_err(|e| e.to_string())?,
            "--seconds" => a.seconds = Some(num("--seconds")?),
            "--system" => a.system = true,
            "--config" => a.config = Some(it.next().ok_or("--config needs a file")?),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --quick, --port N, --seconds N, --system, --config FILE)"
                ));
            }
        }
    }
    if a.quick {
        a.seconds = Some(4);
        if a.port == 3030 {
            a.port = 0;
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let started = Instant::now();
    let load_for = Duration::from_secs(args.seconds.unwrap_or(120).min(120));

    // Pressure: a manual "demo wave" signal (plus the machine's own signals with --system).
    let wave = ManualSource::new(20.0);
    let mut builder = PressureMonitor::builder()
        .interval(Duration::from_millis(250))
        .manual(Signal::Manual, wave.clone());
    if !args.system {
        builder = builder.without_system_sources();
    }
    let monitor = builder.build()?;

    let concurrency = AdaptiveConcurrencyLayer::builder(monitor.clone())
        .name("api")
        .classifier(HeaderPriority::new(http::HeaderName::from_static(
            "x-priority",
        )))
        .build()?;
    let stack = ResilienceStack::inbound(monitor.clone()).concurrency(concurrency);

    // Three dependencies behind one per-key breaker, failing in turns.
    let breaker = CircuitBreakerLayer::builder()
        .name("deps")
        .failure_threshold(4)
        .wait_duration(Duration::from_millis(1500))
        .permitted_calls_in_half_open(2)
        .success_threshold(2)
        .build()?
        .per_key(HeaderKey(http::HeaderName::from_static("x-backend")));
    let breakers = breaker.handle();
    let deps = ServiceBuilder::new()
        .layer(breaker)
        .service(service_fn(move |req| dependency(req, started)));

    // The monitor and every part of the stack (the "api" limiter's section included), plus
    // the per-key breakers, which sit outside the stack.
    let registry = stack.status_registry();
    let b = breakers.clone();
    registry.register(move || breakers_section(&b));
    register_config(&registry, &monitor, args.config.as_deref())?;

    // The API handler: latency grows with the work in flight (a saturating resource), and
    // it calls one dependency through the breaker.
    let busy = Arc::new(AtomicU32::new(0));
    let work = {
        let busy = busy.clone();
        move |headers: http::HeaderMap| {
            let busy = busy.clone();
            let deps = deps.clone();
            async move {
                let n = busy.fetch_add(1, Ordering::Relaxed) + 1;
                tokio::time::sleep(Duration::from_millis(5 + 2 * u64::from(n))).await;
                busy.fetch_sub(1, Ordering::Relaxed);
                let backend = headers.get("x-backend").cloned();
                let mut req = http::Request::new(());
                if let Some(b) = backend {
                    req.headers_mut().insert("x-backend", b);
                }
                match deps.oneshot(req).await {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("degraded: {e}"),
                }
            }
        }
    };

    let history_buf = Arc::new(Mutex::new(VecDeque::with_capacity(512)));
    let app = Router::new()
        .route("/api/work", get(work))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    tower_pressure::rejection::handle_error,
                ))
                .layer(stack),
        )
        .route("/", get(|| async { Html(PAGE) }))
        .route("/history", get(history))
        .route_service("/status", StatusService::new(registry.clone()))
        .with_state(App {
            history: history_buf.clone(),
        });

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("status_dashboard on http://{addr}/  (status: /status, /status?format=prometheus)");

    // Server-side history (2 points per second, last 4 minutes) so the page starts full.
    {
        let registry = registry.clone();
        let buf = history_buf.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let p = point(&registry, started.elapsed().as_secs_f64());
                let mut h = match buf.lock() {
                    Ok(h) => h,
                    Err(p) => p.into_inner(),
                };
                if h.len() == 480 {
                    h.pop_front();
                }
                h.push_back(p);
            }
        });
    }

    // The pressure wave: 20 → 97 → 20 over 16 s.
    {
        let wave = wave.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let t = started.elapsed().as_secs_f64();
                let x = (t * std::f64::consts::TAU / 16.0 - std::f64::consts::FRAC_PI_2).sin();
                wave.set(58.5 + 38.5 * x);
            }
        });
    }

    // Bounded load: 24 workers with mixed priorities, stopping after `load_for`.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let served = Arc::new(AtomicU32::new(0));
    let shed = Arc::new(AtomicU32::new(0));
    for w in 0..24u32 {
        let (client, served, shed) = (client.clone(), served.clone(), shed.clone());
        tokio::spawn(async move {
            let prio = ["low", "normal", "normal", "high", "critical", "low"][w as usize % 6];
            let backend = BACKENDS[w as usize % 3];
            let mut i = 0u64;
            while started.elapsed() < load_for {
                i += 1;
                // Workers join and leave over time so the offered load varies.
                let active =
                    8.0 + 16.0 * ((started.elapsed().as_secs_f64() / 5.0).sin() * 0.5 + 0.5);
                if f64::from(w) >= active {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                let req = http::Request::get(format!("http://{addr}/api/work?i={i}"))
                    .header("x-priority", prio)
                    .header("x-backend", backend)
                    .body(Empty::new());
                let Ok(req) = req else { break };
                match client.request(req).await {
                    Ok(res) if res.status().is_success() => served.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => {
                        // Shed: back off a little instead of hammering (a real client would
                        // honour Retry-After).
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        shed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => 0,
                };
            }
        });
    }

    let Some(secs) = args.seconds else {
        println!("background load for {load_for:?}; Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
        return Ok(());
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    for _ in 0..secs {
        tick.tick().await;
        let p = point(&registry, started.elapsed().as_secs_f64());
        println!(
            "t={:>4.1}s level={} driver={:>5.1} limit={} in_flight={} breakers={} served={} shed={}",
            p["t"].as_f64().unwrap_or(0.0),
            p["level"].as_f64().map_or(-1, |l| l as i64),
            p["driver"].as_f64().unwrap_or(f64::NAN),
            p["limit"],
            p["inflight"],
            p["breakers"],
            served.load(Ordering::Relaxed),
            shed.load(Ordering::Relaxed),
        );
    }
    if args.quick {
        // Self-check the three endpoints the page uses.
        let get = |path: &'static str| {
            let client = client.clone();
            async move {
                let req = http::Request::get(format!("http://{addr}{path}")).body(Empty::new())?;
                let res = client.request(req).await?;
                let status = res.status();
                let body = res.into_body().collect().await?.to_bytes();
                Ok::<_, BoxError>((status, body.len()))
            }
        };
        for path in ["/", "/status", "/status?format=prometheus", "/history"] {
            let (status, len) = get(path).await?;
            println!("GET {path} -> {status} ({len} bytes)");
            assert!(status.is_success());
        }
        assert!(
            served.load(Ordering::Relaxed) > 0,
            "the load reached the handler"
        );
        println!("quick run OK");
    }
    Ok(())
}

/// The dashboard: polls `/status` every second, draws with canvas 2D. No external assets.
const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>tower-pressure dashboard</title>
<style>
 body{margin:0;font:14px system-ui,sans-serif;background:#0f172a;color:#e2e8f0}
 header{display:flex;gap:16px;align-items:center;padding:10px 18px;background:#1e293b}
 h1{font-size:17px;margin:0;font-weight:600}
 .badge{padding:3px 10px;border-radius:10px;font-weight:600;color:#0f172a}
 .muted{color:#94a3b8}
 main{display:grid;grid-template-columns:1fr 1fr;gap:12px;padding:12px}
 .card{background:#1e293b;border-radius:8px;padding:8px 12px}
 .card h2{font-size:14px;margin:2px 0 6px;font-weight:600}
 canvas{width:100%;height:260px;display:block}
 .legend span{margin-right:14px;font-size:12px}
 .legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
</style></head><body>
<header><h1>tower-pressure</h1>
 <span>level <span id="level" class="badge">?</span></span>
 <span>driver <b id="driverName">?</b> = <b id="driver">?</b></span>
 <span>limit <b id="limit">?</b> / in-flight <b id="inflight">?</b></span>
 <span>config <b id="config">built in code</b></span>
 <span class="muted" id="updated">waiting for /status…</span></header>
<main>
 <div class="card"><h2>Pressure: driver value (%) and level</h2><canvas id="c1"></canvas>
  <div class="legend"><span><i style="background:#38bdf8"></i>driver value</span><span><i style="background:#f472b6"></i>level ×25</span><span class="muted">bands: elevated 65 / high 75 / critical 85 / emergency 95</span></div></div>
 <div class="card"><h2>Adaptive concurrency</h2><canvas id="c2"></canvas>
  <div class="legend"><span><i style="background:#a3e635"></i>learned limit</span><span><i style="background:#facc15"></i>effective limit</span><span><i style="background:#fb923c"></i>in flight</span></div></div>
 <div class="card" style="grid-column:1 / span 2"><h2>Circuit breakers</h2><canvas id="c3" style="height:150px"></canvas>
  <div class="legend"><span><i style="background:#22c55e"></i>CLOSED</span><span><i style="background:#f59e0b"></i>HALF_OPEN</span><span><i style="background:#ef4444"></i>OPEN</span></div></div>
</main>
<script>
"use strict";
const WINDOW = 60;            // seconds shown
const LEVELS = ["normal","elevated","high","critical","emergency"];
const LEVEL_COLORS = ["#22c55e","#a3e635","#facc15","#fb923c","#ef4444"];
const STATE_COLORS = {CLOSED:"#22c55e",HALF_OPEN:"#f59e0b",OPEN:"#ef4444",FORCED_OPEN:"#b91c1c",DISABLED:"#64748b",METRICS_ONLY:"#64748b"};
let points = [];
let t0 = null;

function metric(section, name) {
  if (!section) return null;
  const m = (section.metrics || []).find(m => m.name === name);
  return m ? m.value : null;
}
function toPoint(status, t) {
  const sec = (field, value) => (status.sections || []).find(s => s[field] === value);
  // The limiter's section is named after the limiter ("api"): found by kind.
  const p = sec("name", "pressure"), c = sec("kind", "concurrency"), b = sec("name", "breakers");
  const breakers = {};
  for (const e of (b && b.entries) || []) breakers[e.name] = e.info.state;
  const driverName = p && p.info ? p.info.driver : null;
  return { t, driverName, level: metric(p, "tower_pressure_level"), driver: metric(p, "tower_pressure_driver_value"),
           limit: metric(c, "tower_pressure_concurrency_limit"), effective: metric(c, "tower_pressure_concurrency_effective_limit"),
           inflight: metric(c, "tower_pressure_concurrency_in_flight"), breakers };
}
function setup(canvas) {
  const r = canvas.getBoundingClientRect(), d = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(r.width * d)) { canvas.width = Math.round(r.width * d); canvas.height = Math.round(r.height * d); }
  const g = canvas.getContext("2d"); g.setTransform(d, 0, 0, d, 0, 0);
  g.clearRect(0, 0, r.width, r.height);
  return { g, w: r.width, h: r.height };
}
function frame(g, w, h, tmax, ymax, pad) {
  g.strokeStyle = "#334155"; g.fillStyle = "#94a3b8"; g.font = "11px system-ui"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (h - pad.t - pad.b) * i / 4;
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
    g.fillText(String(Math.round(ymax * (1 - i / 4))), 4, y + 4);
  }
  for (let s = 0; s <= WINDOW; s += 10) {
    const x = pad.l + (w - pad.l - pad.r) * s / WINDOW;
    g.fillText((s - WINDOW) + "s", x - 10, h - 4);
  }
}
function xy(w, h, pad, tmax, ymax) {
  return (t, v) => [pad.l + (w - pad.l - pad.r) * (1 - (tmax - t) / WINDOW), pad.t + (h - pad.t - pad.b) * (1 - v / ymax)];
}
function line(g, pts, key, color, map, step) {
  g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
  let started = false, prevY = null;
  for (const p of pts) {
    const v = typeof key === "function" ? key(p) : p[key];
    if (v === null || v === undefined || !isFinite(v)) { started = false; continue; }
    const [x, y] = map(p.t, v);
    if (!started) { g.moveTo(x, y); started = true; }
    else { if (step) g.lineTo(x, prevY); g.lineTo(x, y); }
    prevY = y;
  }
  g.stroke();
}
function draw() {
  if (!points.length) return;
  const tmax = points[points.length - 1].t;
  const pts = points.filter(p => p.t >= tmax - WINDOW);
  const pad = { l: 34, r: 8, t: 8, b: 18 };
  { // pressure
    const { g, w, h } = setup(document.getElementById("c1"));
    const map = xy(w, h, pad, tmax, 100);
    [[65, 75, "rgba(163,230,53,.08)"], [75, 85, "rgba(250,204,21,.10)"], [85, 95, "rgba(251,146,60,.12)"], [95, 100, "rgba(239,68,68,.15)"]]
      .forEach(([a, b, c]) => { const ya = map(0, a)[1], yb = map(0, b)[1]; g.fillStyle = c; g.fillRect(pad.l, yb, w - pad.l - pad.r, ya - yb); });
    frame(g, w, h, tmax, 100, pad);
    line(g, pts, "driver", "#38bdf8", map, false);
    line(g, pts, p => p.level === null ? null : p.level * 25, "#f472b6", map, true);
  }
  { // concurrency
    const { g, w, h } = setup(document.getElementById("c2"));
    let ymax = 10;
    for (const p of pts) ymax = Math.max(ymax, p.limit || 0, p.inflight || 0, p.effective || 0);
    ymax = Math.ceil(ymax * 1.15 / 4) * 4;
    const map = xy(w, h, pad, tmax, ymax);
    frame(g, w, h, tmax, ymax, pad);
    line(g, pts, "limit", "#a3e635", map, true);
    line(g, pts, "effective", "#facc15", map, true);
    line(g, pts, "inflight", "#fb923c", map, false);
  }
  { // breakers: one state strip per key
    const { g, w, h } = setup(document.getElementById("c3"));
    const keys = [...new Set(pts.flatMap(p => Object.keys(p.breakers || {})))].sort();
    const bpad = { l: 70, r: 8, t: 6, b: 18 };
    const rowH = Math.min(34, (h - bpad.t - bpad.b) / Math.max(1, keys.length));
    const X = t => bpad.l + (w - bpad.l - bpad.r) * (1 - (tmax - t) / WINDOW);
    g.font = "12px system-ui";
    keys.forEach((k, i) => {
      const y = bpad.t + i * rowH;
      g.fillStyle = "#e2e8f0"; g.fillText(k, 6, y + rowH / 2 + 4);
      for (let j = 0; j < pts.length; j++) {
        const s = pts[j].breakers && pts[j].breakers[k];
        if (!s) continue;
        const x0 = X(pts[j].t), x1 = j + 1 < pts.length ? X(pts[j + 1].t) : X(tmax) + 3;
        g.fillStyle = STATE_COLORS[s] || "#64748b";
        g.fillRect(x0, y + 3, Math.max(1, x1 - x0) + 0.8, rowH - 6);
      }
    });
    g.fillStyle = "#94a3b8"; g.font = "11px system-ui";
    for (let s = 0; s <= WINDOW; s += 10) g.fillText((s - WINDOW) + "s", X(tmax - WINDOW + s) - 10, h - 4);
  }
  const last = pts[pts.length - 1];
  const lv = document.getElementById("level");
  lv.textContent = LEVELS[last.level] || "?"; lv.style.background = LEVEL_COLORS[last.level] || "#64748b";
  document.getElementById("driverName").textContent = last.driverName || "?";
  document.getElementById("driver").textContent = last.driver === null ? "?" : last.driver.toFixed(1);
  document.getElementById("limit").textContent = last.limit ?? "?";
  document.getElementById("inflight").textContent = last.inflight ?? "?";
}
async function backfill() {
  try {
    const r = await fetch("/history");
    const h = await r.json();
    if (h.length) { points = h; t0 = performance.now() / 1000 - h[h.length - 1].t; }
  } catch (e) { /* live data only */ }
  draw();
}
async function poll() {
  try {
    const r = await fetch("/status", { cache: "no-store" });
    const s = await r.json();
    const now = performance.now() / 1000;
    if (t0 === null) t0 = now;
    points.push(toPoint(s, now - t0));
    if (points.length > 2000) points.splice(0, points.length - 2000);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    // The live configuration version (a `config` section when a ConfigHandle is registered).
    const cfg = (s.sections || []).find(x => x.kind === "config");
    if (cfg) document.getElementById("config").textContent =
      "v" + cfg.info.version + " (" + cfg.info.hash.slice(0, 8) + ")" + (cfg.info.last_error ? " – last reload refused" : "");
    draw();
  } catch (e) {
    document.getElementById("updated").textContent = "status unavailable: " + e;
  }
}
backfill().then(() => { poll(); setInterval(poll, 1000); });
window.addEventListener("resize", draw);
</script></body></html>
"##;

/// `--config FILE`: its thresholds and alert rules are watched and reloaded, and the page
/// header shows the live version (needs `--features config`).
#[cfg(feature = "config")]
fn register_config(
    registry: &StatusRegistry,
    monitor: &PressureMonitor,
    path: Option<&str>,
) -> Result<(), BoxError> {
    use tower_pressure::config::{Config, ConfigHandle};
    let Some(path) = path else { return Ok(()) };
    // The layers here are built in code; the file's thresholds apply to the monitor, and
    // later edits of thresholds and alert rules reload.
    let config = Config::from_file(path)?;
    config.monitor.apply_thresholds(monitor)?;
    let handle = ConfigHandle::new(config, monitor.clone());
    let _watch = handle.watch_file(path, Duration::from_secs(1));
    registry.register(handle);
    Ok(())
}

#[cfg(not(feature = "config"))]
fn register_config(
    _: &StatusRegistry,
    _: &PressureMonitor,
    path: Option<&str>,
) -> Result<(), BoxError> {
    match path {
        Some(_) => Err("--config needs `--features config`".into()),
        None => Ok(()),
    }
}
