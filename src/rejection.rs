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
//! | anything else | 500 | `INTERNAL` / `UNKNOWN` | `internal` |
//!
//! The message of an unknown error is logged, never sent to the client.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::circuit_breaker::CircuitOpen;
use crate::concurrency::Overloaded;
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

/// `d` as a `Retry-After` value in whole seconds: rounded up, at least 1 (a client told "0"
/// retries at once). Every layer's HTTP mapping uses this one rounding.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
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
}
