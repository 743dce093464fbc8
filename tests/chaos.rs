//! Chaos over loopback: a real hyper server on 127.0.0.1 injects latency spikes, error bursts
//! (503), connection resets, stalled responses and slow bodies on a deterministic schedule
//! (by arrival number). A bounded load loop (2 000 requests, one per 2.5 ms, at most 32 at a time) goes through the
//! full outbound stack:
//!
//! `DegradationLayer -> RetryLayer -> AdaptiveConcurrencyLayer -> CircuitBreakerLayer ->
//! tower Timeout -> hyper-util client`
//!
//! and the server runs the inbound stack `AlertLayer -> DegradationLayer -> handler`.
//!
//! Accounting must close exactly (sent = ok + typed rejections + typed failures), no request
//! may outlive its time bound, and in-flight counts return to zero. Real time is used (real
//! sockets), but nothing is asserted on speed: the bounds are hang detectors, far above the
//! configured timeouts.
#![cfg(feature = "http")]

mod reliability_support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::timeout::TimeoutLayer;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_pressure::alert::AlertLayer;
use tower_pressure::circuit_breaker::http::ServerErrorsAsFailures;
use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitOpen};
use tower_pressure::concurrency::limit::Aimd;
use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, Overloaded};
use tower_pressure::degradation::DegradationLayer;
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::retry::{AttemptTimedOut, Backoff, RetryLayer};
use tower_pressure::{Constraints, PressureLevel};

const REQUESTS: usize = 2_000;
const CONCURRENCY: usize = 32;
const PACE: Duration = Duration::from_micros(2_500);
/// Per attempt (tower timeout under the breaker).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);
/// Whole-request deadline (degradation layer -> constraints -> retry).
const DEADLINE: Duration = Duration::from_secs(2);
/// Hang detector: far above DEADLINE + one attempt.
const HANG: Duration = Duration::from_secs(15);

/// What the server does with arrival number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    None,
    Latency,
    ErrorBurst,
    Reset,
    Stall,
    SlowBody,
    Pressure,
}

fn schedule(n: u64) -> Fault {
    match n % 200 {
        // An error burst long enough to open the breaker.
        20..=34 => Fault::ErrorBurst,
        // A few resets in a row.
        60..=62 => Fault::Reset,
        100 | 101 => Fault::Stall,
        140..=149 => Fault::Pressure,
        _ if n % 23 == 5 => Fault::Latency,
        _ if n % 29 == 7 => Fault::SlowBody,
        _ => Fault::None,
    }
}

/// A body of `left` 16-byte chunks, one every `every`.
struct SlowBody {
    left: u32,
    sleep: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.left -= 1;
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            b"slow-body-chunk\n",
        )))))
    }
}

use std::future::Future;

type ResBody = BoxBody<Bytes, BoxError>;
type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

fn full(status: StatusCode, body: &'static str) -> Result<Response<ResBody>, BoxError> {
    let body = Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|e: Infallible| -> BoxError { match e {} })
        .boxed();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    Ok(r)
}

type Faults = Arc<std::sync::Mutex<BTreeMap<Fault, u64>>>;

/// The server's handler: applies the fault schedule.
fn handler(
    faults: Faults,
    arrivals: Arc<AtomicU64>,
) -> impl Service<
    Request<hyper::body::Incoming>,
    Response = Response<ResBody>,
    Error = BoxError,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |req: Request<hyper::body::Incoming>| {
        let n = arrivals.fetch_add(1, Ordering::SeqCst);
        let fault = schedule(n);
        *faults.lock().unwrap().entry(fault).or_insert(0) += 1;
        let degraded = Constraints::from_request(&req)
            .map(|c| c.level() > PressureLevel::Normal)
            .unwrap_or(false);
        let fut: BoxFut<Response<ResBody>> = Box::pin(async move {
            match fault {
                Fault::None | Fault::Pressure => full(
                    StatusCode::OK,
                    if degraded { "ok (degraded)" } else { "ok" },
                ),
                Fault::Latency => {
                    tokio::time::sleep(Duration::from_millis(120)).await;
                    full(StatusCode::OK, "ok (late)")
                }
                Fault::ErrorBurst => full(StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                // An error from the service makes hyper drop the connection mid-request.
                Fault::Reset => Err(BoxError::from("injected connection reset")),
                Fault::Stall => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    full(StatusCode::OK, "too late")
                }
                Fault::SlowBody => Ok(Response::new(
                    SlowBody {
                        left: 4,
                        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
                        every: Duration::from_millis(15),
                    }
                    .boxed(),
                )),
            }
        });
        fut
    })
}

struct Server {
    faults: Arc<std::sync::Mutex<BTreeMap<Fault, u64>>>,
    arrivals: Arc<AtomicU64>,
    in_flight: tower_pressure::alert::ServiceMetrics,
    conns: JoinSet<()>,
}

async fn start_server() -> (
    std::net::SocketAddr,
    Server,
    tokio::task::JoinHandle<JoinSet<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (monitor, manual) = PressureMonitor::manual();
    let alert = AlertLayer::new("chaos-server");
    let metrics = alert.metrics();
    let faults = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let arrivals = Arc::new(AtomicU64::new(0));
    let handler = handler(faults.clone(), arrivals.clone());
    let svc = ServiceBuilder::new()
        .layer(alert)
        .layer(DegradationLayer::new(monitor.clone()))
        .service(handler);
    // Server-side pressure follows the schedule: raised during `Pressure` windows.
    let pressure = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            loop {
                let n = arrivals.load(Ordering::Relaxed);
                manual.set(if schedule(n) == Fault::Pressure {
                    90.0
                } else {
                    10.0
                });
                monitor.sample_now();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let acceptor = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let (stream, _) =
                match tokio::time::timeout(Duration::from_secs(60), listener.accept()).await {
                    Ok(Ok(s)) => s,
                    _ => break,
                };
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            conns.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
            if conns.len() > 256 {
                while conns.try_join_next().is_some() {}
            }
        }
        pressure.abort();
        conns
    });
    (
        addr,
        Server {
            faults,
            arrivals,
            in_flight: metrics,
            conns: JoinSet::new(),
        },
        acceptor,
    )
}

/// The outbound stack (built in a plain fn: rustc's `Send` inference on nested async closures
/// otherwise trips over `BoxError`'s higher-ranked `From`).
fn client_stack() -> (
    impl Service<Request<()>, Response = Response<Bytes>, Error = BoxError, Future = impl Send>
    + Clone
    + Send
    + 'static,
    tower_pressure::circuit_breaker::CircuitBreakerHandle,
    tower_pressure::concurrency::AdaptiveConcurrencyHandle,
) {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build_http::<Full<Bytes>>();

    let (client_monitor, _) = PressureMonitor::manual();
    let breaker = CircuitBreakerLayer::builder()
        .failure_threshold(5)
        .wait_duration(Duration::from_millis(50))
        .permitted_calls_in_half_open(2)
        .success_threshold(2)
        .build()
        .unwrap()
        .classifier(ServerErrorsAsFailures);
    let breaker_handle = breaker.handle();
    let retry = RetryLayer::http(client_monitor.clone())
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(5), 2.0))
        .build()
        .unwrap();
    let aimd = Aimd::builder()
        .initial_limit(16)
        .min_limit(4)
        .max_limit(24)
        .build()
        .unwrap();
    let limiter = AdaptiveConcurrencyLayer::builder(client_monitor.clone())
        .algorithm(aimd)
        .build()
        .unwrap();
    let limiter_handle = limiter.handle();
    let transport = service_fn(move |req: Request<()>| {
        let client = client.clone();
        let fut: BoxFut<Response<Bytes>> = Box::pin(async move {
            let (parts, ()) = req.into_parts();
            let res = client
                .request(Request::from_parts(parts, Full::new(Bytes::new())))
                .await
                .map_err(BoxError::from)?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await.map_err(BoxError::from)?.to_bytes();
            Ok(Response::from_parts(parts, body))
        });
        fut
    });
    let stack = ServiceBuilder::new()
        .layer(DegradationLayer::new(client_monitor.clone()).deadline(DEADLINE))
        .layer(retry)
        .layer(limiter)
        .layer(breaker)
        .layer(TimeoutLayer::new(ATTEMPT_TIMEOUT))
        .service(transport);

    (stack, breaker_handle, limiter_handle)
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    ok_degraded: u64,
    rejected_open: u64,
    rejected_overloaded: u64,
    failed_5xx: u64,
    failed_timeout: u64,
    failed_connection: u64,
    other: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_accounting_closes() {
    let (addr, server, acceptor) = start_server().await;
    let (stack, breaker_handle, limiter_handle) = client_stack();

    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    let started = std::time::Instant::now();
    // Paced load (one request per PACE, at most CONCURRENCY in flight), so that rejections,
    // which return in microseconds, do not drain the whole load while the breaker is open.
    let mut pace = tokio::time::interval(PACE);
    for i in 0..REQUESTS {
        pace.tick().await;
        let permit = slots.clone().acquire_owned().await.unwrap();
        let svc = stack.clone();
        let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
        tasks.spawn(async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max_in_flight.fetch_max(now, Ordering::SeqCst);
            let req = Request::get(format!("http://{addr}/item/{i}"))
                .body(())
                .unwrap();
            let t0 = std::time::Instant::now();
            let out = tokio::time::timeout(HANG, svc.oneshot(req)).await;
            let took = t0.elapsed();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            (out, took)
        });
    }
    let mut tally = Tally::default();
    let mut slowest = Duration::ZERO;
    while let Some(joined) = tasks.join_next().await {
        let (out, took) = joined.expect("no panic in a request task");
        slowest = slowest.max(took);
        let res = out.expect("a request outlived its time bound (hang)");
        match res {
            Ok(r) if r.status().is_success() => {
                tally.ok += 1;
                if r.body().as_ref() == b"ok (degraded)" {
                    tally.ok_degraded += 1;
                }
            }
            Ok(r) if r.status().is_server_error() => tally.failed_5xx += 1,
            Ok(r) => tally.other.push(format!("status {}", r.status())),
            Err(e) if e.is::<CircuitOpen>() => tally.rejected_open += 1,
            Err(e) if e.is::<Overloaded>() => tally.rejected_overloaded += 1,
            Err(e) if e.is::<tower::timeout::error::Elapsed>() || e.is::<AttemptTimedOut>() => {
                tally.failed_timeout += 1
            }
            Err(e) if e.is::<hyper_util::client::legacy::Error>() || e.is::<hyper::Error>() => {
                tally.failed_connection += 1
            }
            Err(e) => tally.other.push(format!("{e:?}")),
        }
    }
    let elapsed = started.elapsed();

    // Shut the server down: dropping the connections cancels the stalled handlers.
    drop(stack);
    let arrivals = server.arrivals.load(Ordering::SeqCst);
    acceptor.abort();
    let _ = acceptor.await;
    let mut conns = server.conns;
    conns.shutdown().await;
    // The acceptor owned the connection tasks; aborting it dropped them. Give the runtime a
    // moment to run their destructors, then check the inbound alert layer.
    let mut server_in_flight = u64::MAX;
    for _ in 0..200 {
        server_in_flight = server.in_flight.snapshot().in_flight;
        if server_in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let faults = server.faults.lock().unwrap().clone();
    let injected: u64 = faults
        .iter()
        .filter(|(f, _)| **f != Fault::None)
        .map(|(_, n)| n)
        .sum();
    let accounted = tally.ok
        + tally.rejected_open
        + tally.rejected_overloaded
        + tally.failed_5xx
        + tally.failed_timeout
        + tally.failed_connection
        + tally.other.len() as u64;
    let breaker = breaker_handle.metrics();
    let line = format!(
        "{REQUESTS} requests sent, {accounted} accounted = {} ok ({} degraded) + {} rejected ({} circuit open, {} overloaded) + {} failed (5xx {}, timeout {}, connection {}); \
         {arrivals} server arrivals, {injected} faults injected {faults:?}; breaker rejected {} calls; \
         max in flight {}, slowest request {:?} (bound {HANG:?}), wall {:?}",
        tally.ok,
        tally.ok_degraded,
        tally.rejected_open + tally.rejected_overloaded,
        tally.rejected_open,
        tally.rejected_overloaded,
        tally.failed_5xx + tally.failed_timeout + tally.failed_connection,
        tally.failed_5xx,
        tally.failed_timeout,
        tally.failed_connection,
        breaker.rejected,
        max_in_flight.load(Ordering::SeqCst),
        slowest,
        elapsed,
    );
    reliability_support::record("chaos", &line);

    assert!(
        tally.other.is_empty(),
        "untyped outcomes: {:?}",
        &tally.other[..tally.other.len().min(5)]
    );
    assert_eq!(accounted, REQUESTS as u64, "accounting must close");
    assert_eq!(
        in_flight.load(Ordering::SeqCst),
        0,
        "client in-flight returns to 0"
    );
    assert!(max_in_flight.load(Ordering::SeqCst) <= CONCURRENCY);
    assert_eq!(server_in_flight, 0, "server in-flight returns to 0");
    assert_eq!(
        limiter_handle.in_flight(),
        0,
        "limiter in-flight returns to 0"
    );
    for f in [
        Fault::Latency,
        Fault::ErrorBurst,
        Fault::Reset,
        Fault::Stall,
        Fault::SlowBody,
        Fault::Pressure,
    ] {
        assert!(
            faults.get(&f).copied().unwrap_or(0) > 0,
            "{f:?} was never injected"
        );
    }
    assert!(tally.ok > 0 && tally.ok_degraded > 0);
    // Stalled attempts time out and are retried (the retry may then succeed), so stalls need
    // not surface as request failures; the breaker records them as failures.
    assert!(breaker.failures > 0);
    assert!(tally.rejected_open > 0, "error bursts open the breaker");
    let _ = &mut conns;
}
