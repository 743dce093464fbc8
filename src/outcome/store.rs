//! The error of the Redis quota store (feature `redis`). Core, so other layers can recognise
//! a store outage; re-exported by [`quota`](crate::quota).

use std::fmt;
use std::sync::Arc;

/// What went wrong with the Redis store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// Could not connect, or the connection broke.
    Unreachable,
    /// Redis did not answer within the store's timeout.
    Timeout,
    /// A key holds something the store did not write (wrong type, not a number).
    BadState,
    /// A reply of the wrong shape.
    BadReply,
    /// Any other error reply from Redis.
    Server,
    /// The store is degraded and the fallback mode is fail-closed: the request was refused.
    Unavailable,
}

impl StoreErrorKind {
    /// A short name (`"unreachable"`, `"timeout"`, `"bad_state"`, `"bad_reply"`, `"server"`,
    /// `"unavailable"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::BadState => "bad_state",
            Self::BadReply => "bad_reply",
            Self::Server => "server",
            Self::Unavailable => "unavailable",
        }
    }
}

/// An error of the Redis quota store: a failed round trip (kept as
/// [`QuotaHandle::store_error`](crate::quota::QuotaHandle::store_error)), or a request
/// refused because the store is degraded and the fallback is
/// [`FallbackMode::FailClosed`] (composed as [`tower::BoxError`]; `503`).
///
/// ```
/// use tower_pressure::quota::{StoreError, StoreErrorKind};
/// let e: tower::BoxError = StoreError::unavailable("connection refused").into();
/// let e = e.downcast_ref::<StoreError>().unwrap();
/// assert_eq!(e.kind(), StoreErrorKind::Unavailable);
/// assert_eq!(e.status_code(), http::StatusCode::SERVICE_UNAVAILABLE);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: Arc<str>,
}

impl StoreError {
    pub(crate) fn new(kind: StoreErrorKind, message: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// A fail-closed refusal, with the reason the store is degraded.
    pub fn unavailable(reason: &str) -> Self {
        Self::new(StoreErrorKind::Unavailable, reason)
    }
    /// What went wrong.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
    /// The details (Redis's error text, or what was expected).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// `503 Service Unavailable`.
    pub fn status_code(&self) -> http::StatusCode {
        http::StatusCode::SERVICE_UNAVAILABLE
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == StoreErrorKind::Unavailable {
            write!(f, "quota store unavailable (fail-closed): {}", self.message)
        } else {
            write!(
                f,
                "quota store error ({}): {}",
                self.kind.as_str(),
                self.message
            )
        }
    }
}

impl std::error::Error for StoreError {}
