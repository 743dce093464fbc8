//! gRPC calls replayed by the retry layer, against a real tonic server on 127.0.0.1.
//!
//! The client stack is the one the `tonic_server` example and the `retry::http` docs show:
//! `BufferBodyLayer` (tonic's streaming request body -> `Full<Bytes>`, so the request can
//! be cloned) -> `RetryLayer` with `HttpClassifier::new().grpc()` -> the body wrapped back
//! into `tonic::body::Body` -> a tonic `Channel`, under the generated `AnalysisClient`.
//!
//! Every test runs under paused tokio time, like `real_server_retry_after_then_ok` in
//! `tests/retry.rs`: the runtime's clock only moves when every task waits on a timer, so
//! waits are exact (the pushback test measures one) and nothing depends on wall-clock
//! speed. The only timer in play is the retry layer's wait: neither the tonic server nor
//! the channel sets a timeout or keep-alive here.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::time::Instant;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tower::ServiceBuilder;
use tower_pressure::pressure::PressureMonitor;
use tower_pressure::retry::http::{BufferBodyLayer, HttpClassifier, Idempotent};
use tower_pressure::retry::{Backoff, Jitter, RetryLayer};

// The example's generated code (client and server), checked in: rustfmt leaves it alone.
#[rustfmt::skip]
#[allow(missing_docs, unreachable_pub, missing_debug_implementations, dead_code)]
#[path = "../examples/tonic_server/analysis.rs"]
mod analysis;

use analysis::analysis_client::AnalysisClient;
use analysis::analysis_server::{Analysis, AnalysisServer};
use analysis::{AnalyzeReply, AnalyzeRequest};

/// A handler that answers the scripted statuses first (one per call), then OK; records
/// every request message it decoded and when (virtual time).
#[derive(Clone, Default)]
struct Scripted {
    failures: Arc<Mutex<VecDeque<Status>>>,
    seen: Arc<Mutex<Vec<(AnalyzeRequest, Instant)>>>,
}

impl Scripted {
    fn failing_with(statuses: impl IntoIterator<Item = Status>) -> Self {
        let s = Self::default();
        s.failures.lock().unwrap().extend(statuses);
        s
    }
    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn messages(&self) -> Vec<AnalyzeRequest> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }
    fn gap(&self) -> Duration {
        let v = self.seen.lock().unwrap();
        v[1].1.duration_since(v[0].1)
    }
}

#[tonic::async_trait]
impl Analysis for Scripted {
    async fn analyze(
        &self,
        request: Request<AnalyzeRequest>,
    ) -> Result<Response<AnalyzeReply>, Status> {
        self.seen
            .lock()
            .unwrap()
            .push((request.get_ref().clone(), Instant::now()));
        if let Some(status) = self.failures.lock().unwrap().pop_front() {
            return Err(status);
        }
        Ok(Response::new(AnalyzeReply {
            entities: request.get_ref().document.split_whitespace().count() as u32,
            level: "normal".into(),
            simplified: false,
        }))
    }
}

/// Serves `handler` on 127.0.0.1:0 and connects a channel to it.
async fn serve(handler: Scripted) -> (Channel, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        Server::builder()
            .add_service(AnalysisServer::new(handler))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, server)
}

/// The retry layer of these tests: gRPC-aware classifier, a fixed 10 ms backoff without
/// jitter (so a longer gap can only come from the server's pushback), 3 attempts.
fn grpc_retry_layer() -> RetryLayer<HttpClassifier> {
    let (monitor, _) = PressureMonitor::manual();
    RetryLayer::http(monitor)
        .classifier(HttpClassifier::new().grpc())
        .backoff(Backoff::fixed(Duration::from_millis(10)).jitter(Jitter::None))
        .build()
        .unwrap()
}

/// The generated client over the replaying stack (the pattern the docs show).
fn replaying_client(
    layer: &RetryLayer<HttpClassifier>,
    channel: Channel,
) -> AnalysisClient<
    impl tonic::client::GrpcService<
        tonic::body::Body,
        ResponseBody = tonic::body::Body,
        Error = tower::BoxError,
    >,
> {
    let stack = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(64 * 1024))
        .layer(layer.clone())
        .map_request(|r: http::Request<Full<Bytes>>| r.map(tonic::body::Body::new))
        .service(channel);
    AnalysisClient::new(stack)
}

fn message() -> AnalyzeRequest {
    AnalyzeRequest {
        document: "the quick brown fox jumps over the lazy dog".into(),
        executor: "D3-Q3".into(),
    }
}

/// A call marked replayable: gRPC calls are all POSTs, which `HttpClassifier` replays only
/// with the `Idempotent` extension (tonic moves the call's extensions into the HTTP
/// request).
fn idempotent_call() -> Request<AnalyzeRequest> {
    let mut req = Request::new(message());
    req.extensions_mut().insert(Idempotent);
    req
}

#[tokio::test(start_paused = true)]
async fn unavailable_is_retried_with_the_same_message() {
    let handler = Scripted::failing_with([Status::unavailable("warming up")]);
    let (channel, server) = serve(handler.clone()).await;
    let layer = grpc_retry_layer();
    let mut client = replaying_client(&layer, channel);

    let reply = client
        .analyze(idempotent_call())
        .await
        .expect("the retry succeeds")
        .into_inner();
    assert_eq!(reply.entities, 9);

    assert_eq!(handler.calls(), 2, "one UNAVAILABLE, one OK");
    let seen = handler.messages();
    assert_eq!(seen[0], message(), "first attempt decoded intact");
    assert_eq!(seen[1], seen[0], "the replayed body is the same message");
    let stats = layer.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.gave_up, 0);
    assert!(
        handler.gap() >= Duration::from_millis(10),
        "after the backoff"
    );
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn invalid_argument_is_not_retried() {
    let handler = Scripted::failing_with([Status::invalid_argument("bad document")]);
    let (channel, server) = serve(handler.clone()).await;
    let layer = grpc_retry_layer();
    let mut client = replaying_client(&layer, channel);

    let status = client.analyze(idempotent_call()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "bad document");
    assert_eq!(handler.calls(), 1);
    let stats = layer.stats();
    assert_eq!((stats.requests, stats.retries, stats.gave_up), (1, 0, 0));
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn a_call_not_marked_idempotent_is_not_replayed() {
    // The classifier's safety rule: a gRPC call is a POST, and UNAVAILABLE from a handler
    // does not prove that nothing happened, so it is replayed only when the caller says so.
    let handler = Scripted::failing_with([Status::unavailable("warming up")]);
    let (channel, server) = serve(handler.clone()).await;
    let layer = grpc_retry_layer();
    let mut client = replaying_client(&layer, channel);

    let status = client.analyze(message()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(handler.calls(), 1);
    let stats = layer.stats();
    assert_eq!((stats.requests, stats.retries), (1, 0));
    server.abort();
}

fn unavailable_with_pushback(ms: &'static str) -> Status {
    let mut status = Status::unavailable("overloaded");
    status
        .metadata_mut()
        .insert("grpc-retry-pushback-ms", ms.parse().unwrap());
    status
}

#[tokio::test(start_paused = true)]
async fn grpc_retry_pushback_ms_sets_the_wait() {
    // Trailers-only response: the pushback metadata travels in the response headers,
    // next to `grpc-status: 14`. The layer's own backoff is 10 ms; the server asks for 30 s.
    let handler = Scripted::failing_with([unavailable_with_pushback("30000")]);
    let (channel, server) = serve(handler.clone()).await;
    let layer = grpc_retry_layer();
    let mut client = replaying_client(&layer, channel);

    client.analyze(idempotent_call()).await.expect("retried");
    assert_eq!(handler.calls(), 2);
    let gap = handler.gap();
    assert!(
        gap >= Duration::from_secs(30),
        "waited the server's pushback, not the 10 ms backoff: {gap:?}"
    );
    assert_eq!(layer.stats().retries, 1);
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn negative_grpc_retry_pushback_ms_means_do_not_retry() {
    // gRFC A6: a negative pushback is the server saying "do not retry".
    let handler = Scripted::failing_with([unavailable_with_pushback("-1")]);
    let (channel, server) = serve(handler.clone()).await;
    let layer = grpc_retry_layer();
    let mut client = replaying_client(&layer, channel);

    let status = client.analyze(idempotent_call()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(handler.calls(), 1);
    let stats = layer.stats();
    assert_eq!((stats.retries, stats.gave_up), (0, 1));
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn a_message_over_the_buffer_limit_fails_before_the_server() {
    // The replay buffer bounds the memory a retry may hold: past it the call fails with
    // `BodyTooLarge` (surfaced by tonic as UNKNOWN with the error's message), unsent.
    let handler = Scripted::default();
    let (channel, server) = serve(handler.clone()).await;
    let (monitor, _) = PressureMonitor::manual();
    let layer = RetryLayer::http(monitor)
        .classifier(HttpClassifier::new().grpc())
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(BufferBodyLayer::new(16))
        .layer(layer.clone())
        .map_request(|r: http::Request<Full<Bytes>>| r.map(tonic::body::Body::new))
        .service(channel);
    let mut client = AnalysisClient::new(stack);

    let status = client.analyze(idempotent_call()).await.unwrap_err();
    assert!(
        status
            .message()
            .contains("exceeds the replay buffer limit of 16 bytes"),
        "{status:?}"
    );
    assert_eq!(handler.calls(), 0);
    assert_eq!(layer.stats().requests, 0);
    server.abort();
}
