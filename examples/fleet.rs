//! Three replicas sharing one tenant's quota through Redis, printing per-replica and fleet
//! totals each second.
//!
//! ```text
//! cargo run --example fleet --features redis            # starts a local redis-server
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run --example fleet --features redis
//! ```
//!
//! Each replica is its own `QuotaLayer` with its own Redis connection, as three pods would
//! be; the tenant `acme` may send 300 requests per second fleet-wide, and each replica
//! receives about 500 per second. Stop redis-server while it runs (or kill it) to watch the
//! replicas fall back to their local share (100/s each) and resume when it is back.

use std::convert::Infallible;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::quota::{HeaderKey, Limit, QuotaExceeded, QuotaGroup, QuotaLayer, RedisStore};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn local_redis() -> Result<(Option<Server>, String), BoxError> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((None, url));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "redis-server not found ({e}): apt-get install -y redis-server, or set REDIS_URL"
            )
        })?;
    let server = Server(child);
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            println!("redis-server pid {} on 127.0.0.1:{port}", server.0.id());
            return Ok((Some(server), format!("redis://127.0.0.1:{port}/")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("redis-server did not answer within 10 s".into())
}

#[derive(Default)]
struct Totals {
    admitted: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (_server, url) = local_redis()?;
    let seconds: u64 = std::env::var("SECONDS_TO_RUN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut replicas = Vec::new();
    for i in 0..3 {
        let layer = QuotaLayer::builder()
            .group(QuotaGroup::new("free").rate(Limit::new(300)))
            .store(
                RedisStore::new(&url)?
                    .expected_replicas(3)
                    .replica_id(&format!("replica-{i}")),
            )
            .build(HeaderKey::x_tenant())?;
        let handle = layer.handle();
        let svc =
            ServiceBuilder::new()
                .layer(layer)
                .service(service_fn(|_r: http::Request<()>| async {
                    Ok::<_, Infallible>("ok")
                }));
        let totals = Arc::new(Totals::default());
        let t = totals.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            loop {
                tick.tick().await;
                let req = http::Request::builder()
                    .header("x-tenant", "acme")
                    .body(())?;
                match svc.clone().oneshot(req).await {
                    Ok(_) => t.admitted.fetch_add(1, Ordering::Relaxed),
                    Err(e) if e.is::<QuotaExceeded>() => t.rejected.fetch_add(1, Ordering::Relaxed),
                    Err(_) => t.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            #[allow(unreachable_code)]
            Ok::<_, http::Error>(())
        });
        replicas.push((handle, totals));
    }
    let mut last = [0u64; 3];
    for s in 1..=seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut fleet = 0;
        let mut line = format!("t={s:>3}s");
        for (i, (h, t)) in replicas.iter().enumerate() {
            let a = t.admitted.load(Ordering::Relaxed);
            let d = a - last[i];
            last[i] = a;
            fleet += d;
            line += &format!(
                " | replica {i}: {d:>4} admitted/s ({} rejected, {} failed total) store {}",
                t.rejected.load(Ordering::Relaxed),
                t.failed.load(Ordering::Relaxed),
                h.store_status()
            );
        }
        println!(
            "{line} | fleet: {fleet} admitted/s (quota 300/s; the first second also spends the 300 of GCRA tolerance)"
        );
    }
    Ok(())
}
