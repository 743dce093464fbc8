//! What is retried: a [`Classify`] looks at each attempt's result and says whether it is
//! final or worth another attempt, with the server's pushback hint if any.
//!
//! [`DefaultClassifier`] retries errors [`is_retryable`](super::is_retryable) recognises and
//! never retries a response. With the `http` feature,
//! [`HttpClassifier`](super::http::HttpClassifier) adds status codes, `Retry-After`, the
//! idempotency rule and (opt-in) gRPC status.

use tower::BoxError;

use super::error::{error_pushback, is_retryable};
use super::pushback::Pushback;

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Final: return this result.
    Done,
    /// Worth another attempt.
    Retry {
        /// Why, e.g. `"status 503"` (used in events).
        reason: &'static str,
        /// What the server said about when to retry.
        pushback: Pushback,
    },
}

impl Verdict {
    /// A retry without pushback.
    pub const fn retry(reason: &'static str) -> Self {
        Verdict::Retry {
            reason,
            pushback: Pushback::None,
        }
    }
}

/// Decides which results are retried. Shared by every request of a layer (`&self`).
pub trait Classify<Req, Res>: Send + Sync + 'static {
    /// Whether `req` may be retried at all. Checked once, before the first attempt; when it
    /// returns `false` the request is not even cloned. Defaults to `true`.
    fn may_retry(&self, req: &Req) -> bool {
        let _ = req;
        true
    }

    /// The verdict on one attempt's result.
    fn classify(&self, result: &Result<Res, BoxError>) -> Verdict;
}

/// Retries errors marked retryable (see [`Retryable`](super::Retryable)); responses are final.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct DefaultClassifier;

impl<Req, Res> Classify<Req, Res> for DefaultClassifier {
    #[inline]
    fn classify(&self, result: &Result<Res, BoxError>) -> Verdict {
        match result {
            Ok(_) => Verdict::Done,
            Err(e) => classify_error(&**e),
        }
    }
}

/// The default verdict on an error: retry when [`is_retryable`] says so.
pub fn classify_error(err: &(dyn std::error::Error + 'static)) -> Verdict {
    match is_retryable(err) {
        Some(reason) => Verdict::Retry {
            reason,
            pushback: error_pushback(err).map_or(Pushback::None, Pushback::After),
        },
        None => Verdict::Done,
    }
}

/// Retries every error (still subject to the budget, pressure and deadlines). For inner
/// services whose errors are all transient.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RetryAllErrors;

impl<Req, Res> Classify<Req, Res> for RetryAllErrors {
    #[inline]
    fn classify(&self, result: &Result<Res, BoxError>) -> Verdict {
        match result {
            Ok(_) => Verdict::Done,
            Err(e) => Verdict::Retry {
                reason: "error",
                pushback: error_pushback(&**e).map_or(Pushback::None, Pushback::After),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Retryable;
    use std::time::Duration;

    #[test]
    fn default_classifier() {
        let c = DefaultClassifier;
        let ok: Result<u8, BoxError> = Ok(1);
        assert_eq!(Classify::<(), u8>::classify(&c, &ok), Verdict::Done);
        let e: Result<u8, BoxError> =
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
        assert_eq!(
            Classify::<(), u8>::classify(&c, &e),
            Verdict::retry("connection refused")
        );
        let e: Result<u8, BoxError> = Err("plain".into());
        assert_eq!(Classify::<(), u8>::classify(&c, &e), Verdict::Done);
        let e: Result<u8, BoxError> = Err(Retryable::after("x", Duration::from_secs(1)).into());
        assert_eq!(
            Classify::<(), u8>::classify(&c, &e),
            Verdict::Retry {
                reason: "retryable error",
                pushback: Pushback::After(Duration::from_secs(1))
            }
        );
        let e: Result<u8, BoxError> = Err("plain".into());
        assert_eq!(
            Classify::<(), u8>::classify(&RetryAllErrors, &e),
            Verdict::retry("error")
        );
    }
}
