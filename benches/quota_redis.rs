//! The Redis store's request path against the in-process store, in the same run, and the
//! Redis round trips per 1000 requests. Starts its own `redis-server` on a free loopback
//! port (exits non-zero, saying how to install it, when the binary is missing).
//!
//! ```text
//! cargo bench --features redis --bench quota_redis -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Both variants run the same `QuotaLayer` configuration (rate + concurrency limits, tenant
//! from the `x-tenant` header) over a `service_fn`; the Redis variant spends leases with
//! atomics while a background task on a tokio runtime refills them.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use tower::{Layer, Service, service_fn};
use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer, QuotaStore, RedisStore};

type Req = http::Request<()>;

fn handler(req: Req) -> Ready<Result<usize, Infallible>> {
    ready(Ok(black_box(&req).extensions().len()))
}

fn call_once<S: Service<Req>>(svc: &mut S, tenant: &'static str) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let _ = svc.poll_ready(&mut cx);
    let req = http::Request::builder()
        .header("x-tenant", tenant)
        .body(())
        .unwrap_or_default();
    let fut = std::pin::pin!(svc.call(req));
    matches!(fut.poll(&mut cx), Poll::Ready(Ok(_)))
}

fn layer(store: QuotaStore, rate: u64) -> QuotaLayer<HeaderKey> {
    QuotaLayer::builder()
        .group(
            QuotaGroup::new("g")
                .rate(Limit::new(rate))
                .concurrency(Limit::new(1_000)),
        )
        .store(store)
        .build(HeaderKey::x_tenant())
        .unwrap_or_else(|e| panic!("{e}"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"));
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
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redis-server not found ({e}): apt-get install -y redis-server");
            std::process::exit(2);
        }
    };
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            eprintln!("redis-server did not answer on port {port} within 10 s");
            std::process::exit(2);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, format!("redis://127.0.0.1:{port}/"))
}

fn redis_store(url: &str) -> QuotaStore {
    RedisStore::new(url)
        .unwrap_or_else(|e| panic!("{e}"))
        .expected_replicas(3)
        .into()
}

/// Nanoseconds per call over `n` calls.
fn per_call<S: Service<Req>>(svc: &mut S, n: u32) -> f64 {
    let t0 = Instant::now();
    for _ in 0..n {
        black_box(call_once(svc, "a"));
    }
    t0.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let (_server, url) = start_redis();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let _guard = rt.enter();

    // Request path: a limit so large that every request is admitted from the lease.
    let big = u64::MAX / 4;
    let mut local = layer(QuotaStore::InProcess, big).layer(service_fn(handler));
    let fleet_layer = layer(redis_store(&url), big);
    let fleet_handle = fleet_layer.handle();
    let mut fleet = fleet_layer.layer(service_fn(handler));
    // The first request is decided on the local share and asks for a lease.
    call_once(&mut fleet, "a");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fleet_handle.store_status().leased == 0 {
        assert!(
            Instant::now() < deadline,
            "no lease from Redis: {}",
            fleet_handle.store_status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("quota_store");
        g.bench_function("in_process", |b| b.iter(|| call_once(&mut local, "a")));
        g.bench_function("redis_leases", |b| b.iter(|| call_once(&mut fleet, "a")));
        g.finish();
    }

    // The same comparison by hand, interleaved, so the ratio is printed.
    let mut ratios = Vec::new();
    for _ in 0..5 {
        let a = per_call(&mut local, 200_000);
        let b = per_call(&mut fleet, 200_000);
        ratios.push(b / a);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "request path: redis store / in-process store = {:.2}x (median of 5 interleaved runs of 200k calls; target <= 1.5x)",
        ratios[2]
    );

    // Round trips per 1000 requests at a realistic limit: 20 000/s (leases of 2 % = 400
    // cells), 10 000 requests sent at ~10 000/s, all admitted.
    let paced = layer(redis_store(&url), 20_000);
    let h = paced.handle();
    let mut paced = paced.layer(service_fn(handler));
    let before = h.store_status().round_trips;
    let mut admitted = 0u32;
    for _ in 0..100 {
        for _ in 0..100 {
            admitted += u32::from(call_once(&mut paced, "b"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let trips = h.store_status().round_trips - before;
    println!(
        "round trips: {trips} for 10000 requests ({:.1} per 1000; {admitted} admitted) at 20000/s with 2 % leases",
        trips as f64 / 10.0
    );
    println!("request path round trips: 0 (the request path only touches atomics)");
    c.final_summary();
}
