//! HTTP and gRPC awareness for the retry layer (feature `http`).
//!
//! * [`HttpClassifier`]: retries 502, 503, 504, 429 and 408 (never another 4xx), honours
//!   `Retry-After` and `grpc-retry-pushback-ms`, optionally gRPC `UNAVAILABLE` (status 14) in
//!   response headers, and replays only idempotent requests: GET, HEAD, OPTIONS, PUT, DELETE,
//!   or any request with an `Idempotency-Key` header or the [`Idempotent`] extension.
//! * [`BufferBodyLayer`]: makes requests with streaming bodies replayable by buffering the
//!   body (up to a limit) into `Full<Bytes>`; past the limit the request fails with
//!   [`BodyTooLarge`] before reaching the inner service. This is the fix for "`http::Request`
//!   is not `Clone`" (tower #790, tonic #733).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::pressure::PressureMonitor;
//! use tower_pressure::retry::{RetryLayer, http::{BodyTooLarge, BufferBodyLayer}};
//!
//! let (monitor, _) = PressureMonitor::manual();
//! let calls = Arc::new(AtomicU32::new(0));
//! let c = calls.clone();
//! let client = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new(64 * 1024))       // any body -> Full<Bytes>
//!     .layer(RetryLayer::http(monitor).build()?)    // replays Request<Full<Bytes>>
//!     .service(service_fn(move |req: http::Request<Full<Bytes>>| {
//!         // The backend answers 503 once, then echoes the body.
//!         let status = if c.fetch_add(1, Ordering::SeqCst) == 0 { 503 } else { 200 };
//!         async move {
//!             let mut res = http::Response::new(req.into_body());
//!             *res.status_mut() = http::StatusCode::from_u16(status)?;
//!             Ok::<_, tower::BoxError>(res)
//!         }
//!     }));
//! let res = client.clone().oneshot(http::Request::new(String::from("hello"))).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "hello");
//! assert_eq!(calls.load(Ordering::SeqCst), 2); // the buffered body was sent twice
//!
//! // Past the limit the request fails before it reaches the backend.
//! let big = http::Request::new("x".repeat(100 * 1024));
//! let err = client.oneshot(big).await.unwrap_err();
//! assert!(err.is::<BodyTooLarge>());
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # Ok(()) }
//! ```
//!
//! # gRPC (tonic)
//!
//! A tonic `Channel` is a `Service<http::Request<tonic::body::Body>>`, and tonic's request
//! body streams, so the same two layers make gRPC calls replayable; a `map_request` hands
//! the buffered body back to the channel as a `tonic::body::Body`, and the generated client
//! takes the whole stack (it accepts any `GrpcService`):
//!
//! * [`HttpClassifier::grpc`] retries `grpc-status: 14` (`UNAVAILABLE`) found in the
//!   response headers. That is where a unary call's error status arrives when the server
//!   fails it before any message (a "trailers-only" response, which is what tonic sends for
//!   a handler's `Err(Status)`). A status sent in the trailers after a response message has
//!   started streaming is not seen: the response was already returned to the caller.
//! * `grpc-retry-pushback-ms` sets the wait; a wait above the layer's `max_pushback` or
//!   a negative value stops retrying (gRFC A6: never retry before the server's time).
//! * Every gRPC call is a POST, so a call is replayed only when marked: insert the
//!   [`Idempotent`] extension in the `tonic::Request` (tonic moves a call's extensions into
//!   the HTTP request), or, when every method of the channel is safe to replay, insert it in
//!   a `map_request` placed before the [`RetryLayer`]. `UNAVAILABLE` from a handler does not
//!   prove that nothing happened, hence the opt-in.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::ServiceBuilder;
//! use tower_pressure::pressure::PressureMonitor;
//! use tower_pressure::retry::{RetryLayer, http::{BufferBodyLayer, HttpClassifier, Idempotent}};
//!
//! let (monitor, _) = PressureMonitor::manual();
//! let retry = RetryLayer::http(monitor)
//!     .classifier(HttpClassifier::new().grpc())
//!     .build()?;
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
//! let stack = ServiceBuilder::new()
//!     .layer(BufferBodyLayer::new(64 * 1024))
//!     .layer(retry.clone())
//!     .map_request(|r: http::Request<Full<Bytes>>| r.map(tonic::body::Body::new))
//!     .service(channel);
//! // With generated code: `let mut client = MyServiceClient::new(stack);`, then per call
//! // `let mut req = tonic::Request::new(msg); req.extensions_mut().insert(Idempotent);`.
//! let grpc = tonic::client::Grpc::new(stack);
//! # fn generated_client_bounds<T>(_: &tonic::client::Grpc<T>)
//! # where
//! #     T: tonic::client::GrpcService<tonic::body::Body>,
//! #     T::Error: Into<tower::BoxError>,
//! #     T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
//! #     <T::ResponseBody as http_body::Body>::Error: Into<tower::BoxError> + Send,
//! # {}
//! # generated_client_bounds(&grpc);
//! # let _ = Idempotent;
//! # Ok(()) }
//! ```
//!
//! `tests/grpc_retry.rs` runs this stack against a real tonic server.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use super::classify::{Classify, Verdict, classify_error};
use super::layer::{RetryLayer, RetryLayerBuilder};
use super::pushback::{Pushback, parse_grpc_pushback, parse_retry_after};
use crate::pressure::PressureMonitor;

/// Request extension: this request may be replayed whatever its method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Idempotent;

/// `true` when `req` may be replayed: an idempotent method (GET, HEAD, OPTIONS, PUT, DELETE),
/// an `Idempotency-Key` header, or the [`Idempotent`] extension.
pub fn is_idempotent<B>(req: &Request<B>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    ) || req.headers().contains_key("idempotency-key")
        || req.extensions().get::<Idempotent>().is_some()
}

/// Classifies HTTP (and gRPC) results; see the [module docs](self).
#[derive(Clone, Copy)]
pub struct HttpClassifier {
    grpc: bool,
    wall_clock: fn() -> SystemTime,
}

impl fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClassifier")
            .field("grpc", &self.grpc)
            .finish()
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClassifier {
    /// Statuses 502/503/504/429/408, `Retry-After`, idempotent requests only.
    pub fn new() -> Self {
        Self {
            grpc: false,
            wall_clock: SystemTime::now,
        }
    }

    /// Also retries gRPC `UNAVAILABLE` (`grpc-status: 14` in the response headers, as in a
    /// trailers-only response). Costs one header lookup per successful response.
    ///
    /// gRPC calls are POSTs: mark the ones that may be replayed with [`Idempotent`]. See
    /// [the module docs](self#grpc-tonic) for the whole client stack.
    pub fn grpc(mut self) -> Self {
        self.grpc = true;
        self
    }

    /// The wall clock used to turn `Retry-After` HTTP-dates into delays (tests inject one).
    pub fn wall_clock(mut self, now: fn() -> SystemTime) -> Self {
        self.wall_clock = now;
        self
    }

    /// The pushback carried by response headers.
    pub fn pushback(&self, headers: &http::HeaderMap) -> Pushback {
        if let Some(v) = headers.get("grpc-retry-pushback-ms") {
            return parse_grpc_pushback(v.as_bytes());
        }
        match headers.get(http::header::RETRY_AFTER) {
            Some(v) => parse_retry_after(v.as_bytes(), (self.wall_clock)())
                .map_or(Pushback::None, Pushback::After),
            None => Pushback::None,
        }
    }

    /// The verdict on a response.
    pub fn classify_response<B>(&self, res: &Response<B>) -> Verdict {
        let reason = match res.status() {
            StatusCode::BAD_GATEWAY => "status 502",
            StatusCode::SERVICE_UNAVAILABLE => "status 503",
            StatusCode::GATEWAY_TIMEOUT => "status 504",
            StatusCode::TOO_MANY_REQUESTS => "status 429",
            StatusCode::REQUEST_TIMEOUT => "status 408",
            _ => {
                if self.grpc
                    && res
                        .headers()
                        .get("grpc-status")
                        .is_some_and(|v| v.as_bytes() == b"14")
                {
                    "grpc unavailable"
                } else {
                    return Verdict::Done;
                }
            }
        };
        Verdict::Retry {
            reason,
            pushback: self.pushback(res.headers()),
        }
    }
}

impl<B, RB> Classify<Request<B>, Response<RB>> for HttpClassifier
where
    B: 'static,
    RB: 'static,
{
    #[inline]
    fn may_retry(&self, req: &Request<B>) -> bool {
        is_idempotent(req)
    }

    #[inline]
    fn classify(&self, result: &Result<Response<RB>, BoxError>) -> Verdict {
        match result {
            Ok(res) => self.classify_response(res),
            Err(e) => classify_error(&**e),
        }
    }
}

impl RetryLayer {
    /// A builder with the [`HttpClassifier`] and every other default of
    /// [`RetryLayer::builder`].
    pub fn http(monitor: PressureMonitor) -> RetryLayerBuilder<HttpClassifier> {
        RetryLayer::builder(monitor).classifier(HttpClassifier::new())
    }
}

pub use crate::outcome::body::BodyTooLarge;

fn map_body_error(e: BoxError, limit: usize) -> BoxError {
    if e.is::<LengthLimitError>() {
        Box::new(BodyTooLarge::new(limit))
    } else {
        e
    }
}

/// Buffers `req`'s body (up to `limit` bytes) so the request can be cloned and replayed.
///
/// # Errors
/// [`BodyTooLarge`] past the limit, or the body's own error.
pub async fn buffer_request<B>(
    req: Request<B>,
    limit: usize,
) -> Result<Request<Full<Bytes>>, BoxError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let collected = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| map_body_error(e, limit))?;
    Ok(Request::from_parts(parts, Full::new(collected.to_bytes())))
}

/// Layer that buffers request bodies into `Full<Bytes>` (up to a limit) so that
/// [`RetryLayer`] can replay them. See the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct BufferBodyLayer {
    limit: usize,
}

impl BufferBodyLayer {
    /// Buffers bodies of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BufferBodyLayer {
    type Service = BufferBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BufferBody {
            inner,
            limit: self.limit,
        }
    }
}

/// The service built by [`BufferBodyLayer`].
#[derive(Debug, Clone)]
pub struct BufferBody<S> {
    inner: S,
    limit: usize,
}

impl<S> BufferBody<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for BufferBody<S>
where
    S: Service<Request<Full<Bytes>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BufferFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service goes into the future (it is called after the body is read).
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        let too_large = body.size_hint().lower() > self.limit as u64;
        let state = if too_large {
            BufState::Failed {
                err: Some(Box::new(BodyTooLarge::new(self.limit))),
            }
        } else {
            BufState::Collecting {
                collect: Limited::new(body, self.limit).collect(),
            }
        };
        BufferFuture {
            state,
            service: Some(service),
            parts: Some(parts),
            limit: self.limit,
        }
    }
}

pin_project! {
    /// Response future of [`BufferBody`].
    pub struct BufferFuture<S, B>
    where
        S: Service<Request<Full<Bytes>>>,
        B: Body,
        Limited<B>: Body,
    {
        #[pin]
        state: BufState<S::Future, B>,
        service: Option<S>,
        parts: Option<http::request::Parts>,
        limit: usize,
    }
}

pin_project! {
    #[project = BufProj]
    enum BufState<F, B>
    where
        B: Body,
        Limited<B>: Body,
    {
        Collecting { #[pin] collect: Collect<Limited<B>> },
        Called { #[pin] fut: F },
        Failed { err: Option<BoxError> },
    }
}

impl<S, B> fmt::Debug for BufferFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
    B: Body,
    Limited<B>: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferFuture")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<S, B> Future for BufferFuture<S, B>
where
    S: Service<Request<Full<Bytes>>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                BufProj::Collecting { collect } => {
                    let body = match ready!(collect.poll(cx)) {
                        Ok(c) => Full::new(c.to_bytes()),
                        Err(e) => return Poll::Ready(Err(map_body_error(e, *this.limit))),
                    };
                    let (Some(parts), Some(mut service)) = (this.parts.take(), this.service.take())
                    else {
                        return Poll::Ready(Err("buffer future polled after completion".into()));
                    };
                    let fut = service.call(Request::from_parts(parts, body));
                    this.state.set(BufState::Called { fut });
                }
                BufProj::Called { fut } => return fut.poll(cx).map_err(Into::into),
                BufProj::Failed { err } => {
                    return Poll::Ready(Err(err
                        .take()
                        .unwrap_or_else(|| "buffer future polled after completion".into())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn req(method: Method) -> Request<()> {
        Request::builder().method(method).body(()).unwrap()
    }

    #[test]
    fn idempotency_rule() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_idempotent(&req(m)));
        }
        assert!(!is_idempotent(&req(Method::POST)));
        assert!(!is_idempotent(&req(Method::PATCH)));
        let mut r = req(Method::POST);
        r.headers_mut()
            .insert("idempotency-key", "abc".parse().unwrap());
        assert!(is_idempotent(&r));
        let mut r = req(Method::POST);
        r.extensions_mut().insert(Idempotent);
        assert!(is_idempotent(&r));
    }

    fn res(status: u16, headers: &[(&'static str, &'static str)]) -> Response<()> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn statuses() {
        let c = HttpClassifier::new();
        for s in [502, 503, 504, 429, 408] {
            assert!(
                matches!(c.classify_response(&res(s, &[])), Verdict::Retry { .. }),
                "{s}"
            );
        }
        for s in [200, 201, 400, 401, 403, 404, 409, 413, 422, 500, 501] {
            assert_eq!(c.classify_response(&res(s, &[])), Verdict::Done, "{s}");
        }
        let grpc = [("grpc-status", "14")];
        assert_eq!(c.classify_response(&res(200, &grpc)), Verdict::Done);
        assert_eq!(
            c.grpc().classify_response(&res(200, &grpc)),
            Verdict::retry("grpc unavailable")
        );
    }

    #[test]
    fn pushback_headers() {
        let fixed = || SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        let c = HttpClassifier::new().wall_clock(fixed);
        let v = c.classify_response(&res(
            503,
            &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
        ));
        assert_eq!(
            v,
            Verdict::Retry {
                reason: "status 503",
                pushback: Pushback::After(Duration::from_secs(10))
            }
        );
        let v = c.classify_response(&res(503, &[("retry-after", "tomorrow")]));
        assert_eq!(v, Verdict::retry("status 503"));
        let v = c.classify_response(&res(429, &[("grpc-retry-pushback-ms", "-1")]));
        assert_eq!(
            v,
            Verdict::Retry {
                reason: "status 429",
                pushback: Pushback::Stop
            }
        );
    }

    #[tokio::test]
    async fn buffering() {
        let r = buffer_request(Request::new(Full::new(Bytes::from_static(b"abc"))), 3)
            .await
            .unwrap();
        assert_eq!(r.body().clone().collect().await.unwrap().to_bytes(), "abc");
        let e = buffer_request(Request::new(String::from("abcd")), 3)
            .await
            .unwrap_err();
        assert_eq!(
            e.downcast_ref::<BodyTooLarge>().map(BodyTooLarge::limit),
            Some(3)
        );
    }
}
