//! One place that turns any of the crate's errors into the right answer for a client.
//!
//! Every layer fails with its own small error type ([`CircuitOpen`], [`Overloaded`],
//! [`AttemptTimedOut`], ...), composed as [`tower::BoxError`] and possibly wrapped by other
//! layers. [`Rejection::from_error`] walks the error's `source()` chain, finds the first of
//! ours, and says what to answer: the HTTP status, `Retry-After`, a stable reason code, and the
//! gRPC code. [`error_response`] and [`handle_error`] build the HTTP response for axum's
//! `HandleErrorLayer`; [`to_grpc_status`] (feature `tonic`) builds a `tonic::Status`.
//!
//! | error | HTTP | gRPC | reason |
//! |---|---|---|---|
//! | [`CircuitOpen`] | 503 + `Retry-After` | `UNAVAILABLE` | `circuit_open` |
//! | [`Overloaded`] | 503 or 429 + `Retry-After` | `RESOURCE_EXHAUSTED` | `overloaded` |
//! | [`QuotaExceeded`] | 429 + `Retry-After` | `RESOURCE_EXHAUSTED` | `quota_exceeded` |
//! | [`AttemptTimedOut`], `tower::timeout::error::Elapsed` | 504 | `DEADLINE_EXCEEDED` | `timeout` |
//! | [`BodyTooLarge`](crate::retry::http::BodyTooLarge) (feature `http`) | 413 | `RESOURCE_EXHAUSTED` | `body_too_large` |
//! | `quota::StoreError` (feature `redis`: Redis down, fallback fail-closed) | 503 | `UNAVAILABLE` | `quota_store_unavailable` |
//! | anything else | 500 | `INTERNAL` / `UNKNOWN` | `internal` |
//!
//! The message of an unknown error is logged, never sent to the client.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::circuit_breaker::CircuitOpen;
use crate::concurrency::Overloaded;
use crate::outcome::pushback::retry_after_secs;
use crate::quota::QuotaExceeded;
use crate::retry::AttemptTimedOut;

/// What a client should be told about a failed request.
///
/// ```
/// use tower_pressure::rejection::Rejection;
/// let err: tower::BoxError = "boom".into();
/// let r = Rejection::from_error(&*err);
/// assert_eq!(r.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
/// assert_eq!(r.reason(), "internal");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    status: http::StatusCode,
    retry_after: Option<Duration>,
    reason: &'static str,
    message: String,
    grpc: GrpcCode,
}

/// The gRPC status code of a [`Rejection`] (a subset of the gRPC codes, numbered as gRPC does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 2.
    Unknown = 2,
    /// 4.
    DeadlineExceeded = 4,
    /// 8.
    ResourceExhausted = 8,
    /// 13.
    Internal = 13,
    /// 14.
    Unavailable = 14,
}

impl Rejection {
    /// Classifies `err` (searching its `source()` chain for one of the crate's errors).
    pub fn from_error(err: &(dyn Error + 'static)) -> Rejection {
        let mut cur: Option<&(dyn Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(open) = e.downcast_ref::<CircuitOpen>() {
                return Rejection {
                    status: http::StatusCode::SERVICE_UNAVAILABLE,
                    retry_after: Some(open.retry_after()),
                    reason: "circuit_open",
                    message: open.to_string(),
                    grpc: GrpcCode::Unavailable,
                };
            }
            if let Some(o) = e.downcast_ref::<Overloaded>() {
                let status = http::StatusCode::from_u16(o.status_code())
                    .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE);
                return Rejection {
                    status,
                    retry_after: Some(o.retry_after()),
                    reason: "overloaded",
                    message: o.to_string(),
                    grpc: GrpcCode::ResourceExhausted,
                };
            }
            if let Some(q) = e.downcast_ref::<QuotaExceeded>() {
                return Rejection {
                    status: q.status_code(),
                    retry_after: Some(q.retry_after()),
                    reason: "quota_exceeded",
                    message: q.to_string(),
                    grpc: GrpcCode::ResourceExhausted,
                };
            }
            #[cfg(feature = "redis")]
            if let Some(q) = e.downcast_ref::<crate::quota::StoreError>() {
                return Rejection {
                    status: q.status_code(),
                    retry_after: None,
                    reason: "quota_store_unavailable",
                    message: q.to_string(),
                    grpc: GrpcCode::Unavailable,
                };
            }
            if let Some(t) = e.downcast_ref::<AttemptTimedOut>() {
                return Rejection {
                    status: http::StatusCode::GATEWAY_TIMEOUT,
                    retry_after: None,
                    reason: "timeout",
                    message: t.to_string(),
                    grpc: GrpcCode::DeadlineExceeded,
                };
            }
            if e.is::<tower::timeout::error::Elapsed>() {
                return Rejection {
                    status: http::StatusCode::GATEWAY_TIMEOUT,
                    retry_after: None,
                    reason: "timeout",
                    message: e.to_string(),
                    grpc: GrpcCode::DeadlineExceeded,
                };
            }
            #[cfg(feature = "http")]
            if let Some(b) = e.downcast_ref::<crate::retry::http::BodyTooLarge>() {
                return Rejection {
                    status: http::StatusCode::PAYLOAD_TOO_LARGE,
                    retry_after: None,
                    reason: "body_too_large",
                    message: b.to_string(),
                    grpc: GrpcCode::ResourceExhausted,
                };
            }
            cur = e.source();
        }
        Rejection {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            retry_after: None,
            reason: "internal",
            message: "internal error".to_owned(),
            grpc: GrpcCode::Internal,
        }
    }

    /// The HTTP status to answer.
    pub fn status(&self) -> http::StatusCode {
        self.status
    }
    /// How long the client should wait, if the layer knows.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    /// A stable, machine-readable reason (`"circuit_open"`, `"overloaded"`, `"timeout"`,
    /// `"quota_exceeded"`, `"body_too_large"`, `"internal"`).
    pub fn reason(&self) -> &'static str {
        self.reason
    }
    /// A human-readable message (generic for unknown errors).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The gRPC code.
    pub fn grpc_code(&self) -> GrpcCode {
        self.grpc
    }
    /// `Retry-After` in whole seconds, rounded up (at least 1 when set).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(retry_after_secs)
    }

    /// The JSON body: `{"error":"<reason>","message":"...","retry_after_secs":N}`.
    pub fn json(&self) -> String {
        let mut s = String::with_capacity(96);
        s.push_str("{\"error\":\"");
        s.push_str(self.reason);
        s.push_str("\",\"message\":");
        json_string(&mut s, &self.message);
        if let Some(secs) = self.retry_after_secs() {
            s.push_str(",\"retry_after_secs\":");
            s.push_str(&secs.to_string());
        }
        s.push('}');
        s
    }

    /// The HTTP response: status, `Retry-After` when known, `content-type: application/json`.
    pub fn into_response(self) -> http::Response<String> {
        let mut res = http::Response::new(self.json());
        *res.status_mut() = self.status;
        let h = res.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_secs() {
            h.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        res
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.reason, self.message)
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The HTTP response for any error of the crate's layers (500 with a generic body for
/// errors that are not ours; their message is logged at `warn`).
///
/// ```
/// use tower_pressure::rejection::error_response;
/// let err: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// let res = error_response(&*err);
/// assert_eq!(res.status(), 504);
/// assert!(res.body().contains("\"error\":\"timeout\""));
/// ```
///
/// An open breaker answers `503` with `Retry-After` (its remaining wait) and the reason in the
/// JSON body; a tenant over its rate quota answers `429` with the wait until its next request:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_pressure::ServiceBuilderExt;
/// use tower_pressure::circuit_breaker::CircuitBreakerLayer;
/// use tower_pressure::quota::{HeaderKey, Limit, QuotaGroup, QuotaLayer};
/// use tower_pressure::rejection::error_response;
///
/// let ok = service_fn(|_req: http::Request<()>| async { Ok::<_, tower::BoxError>("ok") });
///
/// // A breaker forced open by an operator refuses every call.
/// let breaker = CircuitBreakerLayer::builder()
///     .name("llm")
///     .wait_duration(Duration::from_secs(30))
///     .build()?;
/// breaker.handle().force_open();
/// let client = ServiceBuilder::new().circuit_breaker(breaker).service(ok.clone());
/// let err = client.oneshot(http::Request::new(())).await.unwrap_err();
/// let res = error_response(&*err);
/// assert_eq!(res.status(), 503);
/// assert_eq!(res.headers()["retry-after"], "30");
/// assert_eq!(res.headers()["content-type"], "application/json");
/// let body: serde_json::Value = serde_json::from_str(res.body())?;
/// assert_eq!(body["error"], "circuit_open");
/// assert_eq!(body["retry_after_secs"], 30);
/// assert_eq!(body["message"], "circuit breaker `llm` rejected the call: circuit forced open");
///
/// // One request per second per tenant: the second request at once is over the quota.
/// let quota = QuotaLayer::builder()
///     .group(QuotaGroup::new("free").rate(Limit::new(1)))
///     .build(HeaderKey::x_tenant())?;
/// let server = ServiceBuilder::new().layer(quota).service(ok);
/// let req = || http::Request::builder().header("x-tenant", "acme").body(());
/// assert_eq!(server.clone().oneshot(req()?).await?, "ok");
/// let err = server.oneshot(req()?).await.unwrap_err();
/// let res = error_response(&*err);
/// assert_eq!(res.status(), 429);
/// assert_eq!(res.headers()["retry-after"], "1");
/// let body: serde_json::Value = serde_json::from_str(res.body())?;
/// assert_eq!(body["error"], "quota_exceeded");
/// assert_eq!(body["retry_after_secs"], 1);
/// # Ok(()) }
/// ```
pub fn error_response(err: &(dyn Error + 'static)) -> http::Response<String> {
    let r = Rejection::from_error(err);
    if r.reason == "internal" {
        tracing::warn!(target: "tower_pressure::rejection", error = %err, "unclassified error answered with 500");
    }
    r.into_response()
}

/// For axum's `HandleErrorLayer`: `HandleErrorLayer::new(tower_pressure::rejection::handle_error)`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let res = tower_pressure::rejection::handle_error("boom".into()).await;
/// assert_eq!(res.status(), 500);
/// # }
/// ```
pub async fn handle_error(err: tower::BoxError) -> http::Response<String> {
    error_response(&*err)
}

/// The `tonic::Status` for any error of the crate's layers, with `grpc-retry-pushback-ms`
/// metadata when a retry delay is known (gRPC's own pushback convention, honoured by
/// [`RetryLayer`](crate::retry::RetryLayer)).
///
/// ```
/// let err: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// let status = tower_pressure::rejection::to_grpc_status(&*err);
/// assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
/// assert!(status.metadata().get("grpc-retry-pushback-ms").is_none());
/// ```
///
/// An open breaker is `UNAVAILABLE` and a shed request `RESOURCE_EXHAUSTED`, both with the
/// delay in `grpc-retry-pushback-ms`:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_pressure::ServiceBuilderExt;
/// use tower_pressure::circuit_breaker::CircuitBreakerLayer;
/// use tower_pressure::concurrency::{AdaptiveConcurrencyLayer, Overloaded};
/// use tower_pressure::pressure::PressureMonitor;
/// use tower_pressure::rejection::to_grpc_status;
///
/// let ok = service_fn(|_req: http::Request<()>| async { Ok::<_, tower::BoxError>("ok") });
///
/// let breaker = CircuitBreakerLayer::builder()
///     .wait_duration(Duration::from_secs(30))
///     .build()?;
/// breaker.handle().force_open();
/// let client = ServiceBuilder::new().circuit_breaker(breaker).service(ok.clone());
/// let err = client.oneshot(http::Request::new(())).await.unwrap_err();
/// let status = to_grpc_status(&*err);
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "30000");
///
/// // At Emergency pressure the limiter admits only Critical requests (default policy).
/// let (monitor, gauge) = PressureMonitor::manual();
/// gauge.set(99.0);
/// monitor.sample_now();
/// let limiter = AdaptiveConcurrencyLayer::builder(monitor)
///     .retry_after(Duration::from_millis(2500))
///     .build()?;
/// let server = ServiceBuilder::new().adaptive_concurrency(limiter).service(ok);
/// let err = server.oneshot(http::Request::new(())).await.unwrap_err();
/// assert!(err.is::<Overloaded>());
/// let status = to_grpc_status(&*err);
/// assert_eq!(status.code(), tonic::Code::ResourceExhausted);
/// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "2500");
/// # Ok(()) }
/// ```
#[cfg(feature = "tonic")]
pub fn to_grpc_status(err: &(dyn Error + 'static)) -> tonic::Status {
    let r = Rejection::from_error(err);
    let code = match r.grpc {
        GrpcCode::Unknown => tonic::Code::Unknown,
        GrpcCode::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        GrpcCode::ResourceExhausted => tonic::Code::ResourceExhausted,
        GrpcCode::Internal => tonic::Code::Internal,
        GrpcCode::Unavailable => tonic::Code::Unavailable,
    };
    if r.reason == "internal" {
        tracing::warn!(target: "tower_pressure::rejection", error = %err, "unclassified error answered with INTERNAL");
    }
    let mut status = tonic::Status::new(code, r.message.clone());
    if let Some(d) = r.retry_after {
        let ms = d.as_millis().min(u64::MAX as u128) as u64;
        if let Ok(v) = ms.to_string().parse() {
            status.metadata_mut().insert("grpc-retry-pushback-ms", v);
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(tower::BoxError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn finds_errors_in_the_source_chain() {
        let inner: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        let err = Wrapper(inner);
        let r = Rejection::from_error(&err);
        assert_eq!(r.status(), http::StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(r.grpc_code(), GrpcCode::DeadlineExceeded);
    }

    #[test]
    fn json_is_escaped_and_valid() {
        let r = Rejection {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some(Duration::from_millis(1500)),
            reason: "circuit_open",
            message: "a \"quoted\"\nline\u{1}".into(),
            grpc: GrpcCode::Unavailable,
        };
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["error"], "circuit_open");
        assert_eq!(v["retry_after_secs"], 2);
        assert_eq!(v["message"], "a \"quoted\"\nline\u{1}");
        let res = r.into_response();
        assert_eq!(res.headers()["retry-after"], "2");
        assert_eq!(res.status(), 503);
    }

    #[test]
    fn unknown_errors_do_not_leak_their_message() {
        let err: tower::BoxError = "secret database password wrong".into();
        let res = error_response(&*err);
        assert_eq!(res.status(), 500);
        assert!(!res.body().contains("secret"));
    }

    #[test]
    fn the_cores_recognition_agrees_with_from_error() {
        use crate::outcome::local_rejection;
        use crate::pressure::PressureLevel;
        use crate::priority::Priority;
        let secs = |s| Duration::from_secs(s);
        #[allow(unused_mut)] // pushed to only with the `redis` and `http` features
        let mut errors: Vec<tower::BoxError> = vec![
            Box::new(CircuitOpen::new(
                "b".into(),
                None,
                crate::circuit_breaker::RejectReason::Open,
                secs(3),
            )),
            Box::new(Overloaded {
                priority: Priority::Normal,
                limit: 1,
                in_flight: 1,
                level: PressureLevel::High,
                reason: crate::concurrency::ShedReason::LimitReached,
                retry_after: secs(2),
                status: 503,
            }),
            Box::new(QuotaExceeded::new(
                "t".into(),
                crate::quota::QuotaResource::Rate,
                5,
                secs(4),
                false,
            )),
            Box::new(AttemptTimedOut::new(secs(1), 1)),
            Box::new(tower::timeout::error::Elapsed::new()),
            Box::new(Wrapper(Box::new(CircuitOpen::new(
                "w".into(),
                Some("k".into()),
                crate::circuit_breaker::RejectReason::ForcedOpen,
                secs(7),
            )))),
            "application error".into(),
        ];
        #[cfg(feature = "redis")]
        errors.push(Box::new(crate::quota::StoreError::unavailable("down")));
        #[cfg(feature = "http")]
        errors.push(Box::new(crate::retry::http::BodyTooLarge::new(10)));
        for err in &errors {
            let r = Rejection::from_error(&**err);
            match local_rejection(&**err) {
                Some(l) => {
                    assert_eq!(l.reason, r.reason(), "{err}");
                    assert_eq!(l.retry_after, r.retry_after(), "{err}");
                }
                None => assert_eq!(r.reason(), "internal", "{err}"),
            }
        }
    }
}
