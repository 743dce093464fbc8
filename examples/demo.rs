//! The tower-pressure demo: a real axum service on 127.0.0.1 whose handler reads
//! `Constraints` and does less work as pressure rises.
//!
//! A bounded load loop drives the service through phases (normal, CPU burn with real busy
//! threads, memory pressure through a custom gauge, recovery) while a table prints, once per
//! second, the pressure level, the signal driving it, and the constraints handlers saw.
//!
//! ```text
//! cargo run --example demo                 # about 30 s
//! cargo run --example demo -- --quick      # about 8 s (CI)
//! cargo run --example demo -- --duration 60
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_pressure::degradation::DegradationLayer;
use tower_pressure::pressure::{PressureMonitor, Signal, Thresholds};
use tower_pressure::{Constraints, PressureLevel};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Normal,
    CpuBurn,
    MemoryPressure,
    Recovery,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Normal => "normal",
            Phase::CpuBurn => "cpu-burn",
            Phase::MemoryPressure => "memory-pressure",
            Phase::Recovery => "recovery",
        }
    }
}

struct Args {
    duration: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut duration = Duration::from_secs(30);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => duration = Duration::from_secs(8),
            "--duration" => {
                let v = it.next().ok_or("--duration needs a number of seconds")?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--duration: {v:?} is not a whole number of seconds"))?;
                if !(4..=3600).contains(&secs) {
                    return Err(format!("--duration: {secs} must be within 4..=3600"));
                }
                duration = Duration::from_secs(secs);
            }
            "-h" | "--help" => {
                println!("usage: demo [--quick] [--duration SECONDS]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Args { duration })
}

/// Real CPU work proportional to the number of entities the constraints allow.
fn analyse(c: &Constraints) -> (usize, u64) {
    let entities = c.entity_limit(200);
    let rounds = if c.should_skip_expensive() { 200 } else { 800 };
    let mut h = 0xcbf29ce484222325u64;
    for e in 0..entities {
        for r in 0..rounds {
            h ^= (e * 31 + r) as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    (entities, h)
}

async fn handler(c: Constraints) -> String {
    let (entities, h) = tokio::task::block_in_place(|| analyse(&c));
    format!("{} {} {}", c.level(), entities, h & 1)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(2);
        }
    };
    let quarter = args.duration / 4;

    // Memory pressure is simulated by a custom gauge so the demo never endangers the machine.
    let simulated_memory = Arc::new(AtomicU64::new(40f64.to_bits()));
    let gauge = simulated_memory.clone();
    let monitor = PressureMonitor::builder()
        .interval(Duration::from_millis(250))
        .gauge(
            "simulated_memory",
            Some(Thresholds::UTILISATION),
            move || f64::from_bits(gauge.load(Ordering::Relaxed)),
        )
        .build()?;

    let app = Router::new()
        .route("/analyze", get(handler))
        .layer(DegradationLayer::new(monitor.clone()).degraded_header());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!(
        "tower-pressure demo: axum on http://{addr}/analyze, {} s",
        args.duration.as_secs()
    );
    println!(
        "{:>4} {:<16} {:<10} {:<18} {:>8} {:>6} {:>6} {:>9} {:>6}",
        "t", "phase", "level", "driver", "value", "cpu%", "mem%", "req/s", "ents"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let entity_sum = Arc::new(AtomicU64::new(0));
    let degraded = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));

    // Bounded load loop: 4 clients, each one request at a time, until `stop`.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut loaders = Vec::new();
    for _ in 0..4 {
        let (client, stop, done, entity_sum, degraded, errors) = (
            client.clone(),
            stop.clone(),
            done.clone(),
            entity_sum.clone(),
            degraded.clone(),
            errors.clone(),
        );
        let uri: http::Uri = format!("http://{addr}/analyze").parse()?;
        loaders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(uri.clone()).await {
                    Ok(res) => {
                        if res.headers().contains_key("x-degraded") {
                            degraded.fetch_add(1, Ordering::Relaxed);
                        }
                        match res.into_body().collect().await {
                            Ok(b) => {
                                let text = String::from_utf8_lossy(&b.to_bytes()).into_owned();
                                let ents: u64 = text
                                    .split(' ')
                                    .nth(1)
                                    .and_then(|s| s.parse().ok())
                                    .unwrap_or(0);
                                entity_sum.fetch_add(ents, Ordering::Relaxed);
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }

    // CPU burners for the cpu-burn phase: real busy threads, bounded by the phase.
    let burn = Arc::new(AtomicBool::new(false));
    let mut burners = Vec::new();
    for _ in 0..4 {
        let burn = burn.clone();
        let stop = stop.clone();
        burners.push(std::thread::spawn(move || {
            let mut x = 1u64;
            while !stop.load(Ordering::Relaxed) {
                if burn.load(Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }));
    }

    let start = tokio::time::Instant::now();
    let mut last_done = 0;
    let mut last_ents = 0;
    let mut max_level = PressureLevel::Normal;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let t = start.elapsed();
        if t >= args.duration {
            break;
        }
        let p = match (t.as_secs_f64() / quarter.as_secs_f64()) as u32 {
            0 => Phase::Normal,
            1 => Phase::CpuBurn,
            2 => Phase::MemoryPressure,
            _ => Phase::Recovery,
        };
        phase.store(p as u64, Ordering::Relaxed);
        burn.store(p == Phase::CpuBurn, Ordering::Relaxed);
        let mem = match p {
            Phase::MemoryPressure => {
                // Ramp from 70 % to 97 % over the phase.
                let into = (t - quarter * 2).as_secs_f64() / quarter.as_secs_f64();
                70.0 + 27.0 * into.min(1.0)
            }
            _ => 40.0,
        };
        simulated_memory.store(mem.to_bits(), Ordering::Relaxed);

        let s = monitor.snapshot();
        max_level = max_level.max(s.level());
        let d = done.load(Ordering::Relaxed);
        let e = entity_sum.load(Ordering::Relaxed);
        let rps = d - last_done;
        let ents = (e - last_ents).checked_div(rps).unwrap_or(0);
        last_done = d;
        last_ents = e;
        let driver = monitor.signal_name(s.driver());
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
        println!(
            "{:>3}s {:<16} {:<10} {:<18} {:>8.1} {:>6} {:>6} {:>9} {:>6}",
            t.as_secs(),
            p.name(),
            s.level().as_str(),
            driver,
            s.value(),
            fmt(s.cpu_percent()),
            fmt(s.memory_percent()),
            rps,
            ents
        );
    }
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        let _ = l.await;
    }
    for b in burners {
        let _ = b.join();
    }

    let d = done.load(Ordering::Relaxed);
    println!();
    println!("summary");
    println!("  requests served       {d}");
    println!(
        "  served degraded       {}",
        degraded.load(Ordering::Relaxed)
    );
    println!("  transport errors      {}", errors.load(Ordering::Relaxed));
    println!("  highest level         {max_level}");
    println!("  level changes:");
    for c in monitor.level_history() {
        println!(
            "    {:>6.1}s {} -> {} ({} = {:.1})",
            c.at.duration_since(start).as_secs_f64(),
            c.from,
            c.to,
            c.signal_name,
            c.value
        );
    }
    let psi = monitor.reading(Signal::PsiCpu);
    println!(
        "  psi cpu some avg10    {}",
        psi.map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "not available".into())
    );
    Ok(())
}
