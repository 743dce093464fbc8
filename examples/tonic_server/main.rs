//! A gRPC service (the `Analysis` service of `examples/proto/analysis.proto`) behind the
//! inbound `ResilienceStack`, with the crate's errors mapped to gRPC statuses.
//!
//! Shows:
//! * the stack applied to every gRPC service of the server with tonic's
//!   `Server::builder().layer(..)`;
//! * priority classes from the `x-priority` request metadata (an HTTP/2 header);
//! * the handler reading `Constraints` from the request extensions (tonic keeps the HTTP
//!   request's extensions) and analysing fewer entities under pressure;
//! * errors mapped with `tower_pressure::rejection::to_grpc_status`: a layer's error becomes a
//!   `tonic::Status` (boxed as `BoxError`), which tonic's own `RecoverError` middleware turns
//!   into a proper gRPC response (`Status::try_from_error` downcasts a boxed `Status`).
//!   A shed request answers `RESOURCE_EXHAUSTED`, an open breaker `UNAVAILABLE`, both with
//!   `grpc-retry-pushback-ms` metadata;
//! * the client side: the generated `AnalysisClient` over a stack that replays calls the
//!   server answers `UNAVAILABLE`. tonic's request body streams, so `BufferBodyLayer`
//!   buffers it into `Full<Bytes>` (clonable), `RetryLayer` with
//!   `HttpClassifier::new().grpc()` retries on `grpc-status: 14` in the response headers
//!   (where tonic puts a unary call's error status, trailers-only) and honours
//!   `grpc-retry-pushback-ms`, and a `map_request` wraps the body back into
//!   `tonic::body::Body` for the `Channel`. A gRPC call is a POST, so it is replayed only
//!   when marked with the `Idempotent` extension (tonic moves a call's extensions into the
//!   HTTP request). In the `--quick` run the handler fails one call with `UNAVAILABLE`
//!   ("warming up"): the plain client gets the error, then the replaying client gets OK
//!   after one retry, and the server's call count and the layer's `stats()` are printed.
//!
//! ```text
//! cargo run --example tonic_server --features tonic                 # 127.0.0.1:50051 until Ctrl-C
//! cargo run --example tonic_server --features tonic -- --quick      # self-test, exits 0
//! ```
//!
//! The generated code (`analysis.rs`) is checked in, so no `protoc` is needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tower::{BoxError, ServiceBuilder};
use tower_pressure::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
use tower_pressure::pressure::{ManualSource, PressureMonitor, Signal};
use tower_pressure::priority::HeaderPriority;
use tower_pressure::rejection::to_grpc_status;
use tower_pressure::retry::RetryLayer;
use tower_pressure::retry::http::{BufferBodyLayer, HttpClassifier, Idempotent};
use tower_pressure::{Constraints, ResilienceStack};

// Generated code, checked in as generated: rustfmt leaves it alone.
#[rustfmt::skip]
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
mod analysis;

use analysis::analysis_client::AnalysisClient;
use analysis::analysis_server::{Analysis, AnalysisServer};
use analysis::{AnalyzeReply, AnalyzeRequest};

#[derive(Debug, Default)]
struct Analyzer {
    /// Calls the handler received.
    calls: AtomicU32,
    /// How many of the next calls fail with `UNAVAILABLE` (a replica warming up).
    fail_next: AtomicU32,
}

#[tonic::async_trait]
impl Analysis for Analyzer {
    async fn analyze(
        &self,
        request: Request<AnalyzeRequest>,
    ) -> Result<Response<AnalyzeReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self
            .fail_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Status::unavailable("analysis replica warming up"));
        }
        // Inserted by the stack's DegradationLayer into the HTTP request; tonic keeps the
        // extensions when it decodes the message.
        let c = request
            .extensions()
            .get::<Constraints>()
            .copied()
            .unwrap_or_default();
        let words = request.get_ref().document.split_whitespace().count();
        let entities = c.entity_limit(words.max(1) * 10);
        tokio::time::sleep(Duration::from_millis(entities as u64 / 10)).await;
        Ok(Response::new(AnalyzeReply {
            entities: entities as u32,
            level: c.level().to_string(),
            simplified: c.should_use_simplified(),
        }))
    }
}

/// The crate's errors (composed as `BoxError`) → a boxed `tonic::Status`, which tonic turns
/// into a gRPC response. Without this, tonic answers an unknown error by dropping the stream.
fn grpc_error(err: BoxError) -> BoxError {
    Box::new(to_grpc_status(&*err))
}

/// The generated client over a stack that replays calls answered `UNAVAILABLE` (see the
/// header): buffer the body (up to 64 KiB), retry, hand the body back to tonic's channel.
fn replaying_client(
    retry: RetryLayer<HttpClassifier>,
    channel: Channel,
) -> AnalysisClient<
    impl tonic::client::GrpcService<
        tonic::body::Body,
        ResponseBody = tonic::body::Body,
        Error = BoxError,
    >,
> {
    AnalysisClient::new(
        ServiceBuilder::new()
            .layer(BufferBodyLayer::new(64 * 1024))
            .layer(retry)
            .map_request(|r: http::Request<Full<Bytes>>| r.map(tonic::body::Body::new))
            .service(channel),
    )
}

fn parse_args() -> Result<(bool, u16), String> {
    let (mut quick, mut port) = (false, 50051);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--port" => {
                port = it
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
    Ok((quick, if quick { 0 } else { port }))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (quick, port) = parse_args()?;
    let manual = ManualSource::new(0.0);
    let mut builder = PressureMonitor::builder().manual(Signal::Manual, manual.clone());
    if quick {
        builder = builder.without_system_sources();
    }
    let monitor = builder.build()?;

    let stack = ResilienceStack::inbound(monitor.clone()).concurrency(
        AdaptiveConcurrencyLayer::builder(monitor.clone())
            .name("grpc")
            .classifier(HeaderPriority::new(http::HeaderName::from_static(
                "x-priority",
            )))
            .build()?,
    );
    // A breaker in front of the handlers (say, guarding the database they all need); here
    // an operator forces it open to show the UNAVAILABLE mapping.
    let breaker = CircuitBreakerLayer::builder()
        .name("analysis-db")
        .monitor(monitor.clone())
        .wait_duration(Duration::from_secs(5))
        .build()?;
    let breaker_handle = breaker.handle();

    let analyzer = Arc::new(Analyzer::default());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        // Outermost first: map errors, then the stack, then the breaker, then the routes.
        .layer(
            ServiceBuilder::new()
                .map_err(grpc_error)
                .layer(stack)
                .layer(breaker)
                .into_inner(),
        )
        .add_service(AnalysisServer::from_arc(analyzer.clone()))
        .serve_with_incoming(TcpIncoming::from(listener));
    let server = tokio::spawn(server);
    println!("tonic_server listening on http://{addr}");

    if !quick {
        println!(
            "call it with the generated client, or grpcurl (no reflection: pass the proto). Ctrl-C to stop."
        );
        tokio::signal::ctrl_c().await?;
        server.abort();
        return Ok(());
    }

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = AnalysisClient::new(channel.clone());
    let call = |priority: &'static str| {
        let mut req = Request::new(AnalyzeRequest {
            document: "the quick brown fox jumps over the lazy dog".into(),
            executor: "D3-Q3".into(),
        });
        req.metadata_mut()
            .insert("x-priority", priority.parse().expect("ascii"));
        req
    };
    let show = |what: &str, r: Result<Response<AnalyzeReply>, Status>| match r {
        Ok(res) => {
            let r = res.into_inner();
            println!(
                "{what} -> OK entities={} level={} simplified={}",
                r.entities, r.level, r.simplified
            );
            Ok(())
        }
        Err(s) => {
            let pushback = s
                .metadata()
                .get("grpc-retry-pushback-ms")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            println!(
                "{what} -> {:?} \"{}\" grpc-retry-pushback-ms={pushback}",
                s.code(),
                s.message()
            );
            Err(s.code())
        }
    };

    assert!(
        show(
            "[normal]    Analyze x-priority=low     ",
            client.analyze(call("low")).await
        )
        .is_ok()
    );

    // The replica is warming up: its next call fails with UNAVAILABLE. The plain client gets
    // the error; the replaying client (same channel) gets OK after one retry.
    analyzer.fail_next.store(1, Ordering::Relaxed);
    let before = analyzer.calls.load(Ordering::Relaxed);
    let plain = show(
        "[flaky]     Analyze plain client       ",
        client.analyze(call("low")).await,
    );
    assert_eq!(plain, Err(tonic::Code::Unavailable));
    analyzer.fail_next.store(1, Ordering::Relaxed);
    let retry = RetryLayer::http(monitor.clone())
        .name("analysis-client")
        .classifier(HttpClassifier::new().grpc())
        .build()?;
    let mut retrying = replaying_client(retry.clone(), channel);
    let mut req = call("low");
    // Analyze has no side effects: safe to replay.
    req.extensions_mut().insert(Idempotent);
    assert!(
        show(
            "[flaky]     Analyze replaying client   ",
            retrying.analyze(req).await
        )
        .is_ok()
    );
    let stats = retry.stats();
    let calls = analyzer.calls.load(Ordering::Relaxed) - before;
    println!(
        "            server saw {calls} calls (plain 1, replaying 2: UNAVAILABLE, then OK for the replayed request); retry stats: requests={} retries={}",
        stats.requests, stats.retries
    );
    assert_eq!((calls, stats.requests, stats.retries), (3, 1, 1));

    manual.set(96.0);
    monitor.sample_now();
    println!("pressure set to {} (manual signal 96)", monitor.level());
    assert!(
        show(
            "[emergency] Analyze x-priority=critical",
            client.analyze(call("critical")).await
        )
        .is_ok()
    );
    let shed = show(
        "[emergency] Analyze x-priority=low     ",
        client.analyze(call("low")).await,
    );
    assert_eq!(shed, Err(tonic::Code::ResourceExhausted));

    manual.set(0.0);
    monitor.sample_now();
    monitor.sample_now();
    open_breaker(&breaker_handle);
    let open = show(
        "[breaker]   Analyze x-priority=critical",
        client.analyze(call("critical")).await,
    );
    assert_eq!(open, Err(tonic::Code::Unavailable));

    server.abort();
    println!("quick run OK");
    Ok(())
}

fn open_breaker(h: &CircuitBreakerHandle) {
    h.force_open();
    println!("breaker 'analysis-db' forced open (state {:?})", h.state());
}
