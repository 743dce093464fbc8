//! When a fallback applies ([`Trigger`], the `is_*` predicates), the errors the layer itself
//! returns ([`FallbackFailed`]) or hands to strategies ([`FailedResponse`]), and how a
//! fallback response is marked ([`Mark`], [`FallbackUsed`]).

use std::error::Error;
use std::fmt;
use std::time::Duration;

use tower::BoxError;

use crate::outcome::circuit::CircuitOpen;
use crate::outcome::shed::Overloaded;
use crate::outcome::transient::{AttemptTimedOut, error_pushback, is_retryable};
use crate::outcome::{find, local_rejection};

/// Decides which failures of the primary service a fallback handles.
///
/// Implemented by [`AnyError`] (the default: every error, no response), by every closure
/// `Fn(&BoxError) -> bool` (errors only; see [`FallbackLayerBuilder::when`](super::FallbackLayerBuilder::when)),
/// and with the `http` feature by [`ServerErrors`](super::http::ServerErrors), which also
/// treats `5xx`/`429` *responses* as failures.
///
/// ```
/// use tower_pressure::fallback::{AnyError, Trigger, is_circuit_open};
/// let err: tower::BoxError = "boom".into();
/// assert!(Trigger::<()>::on_error(&AnyError, &err));
/// assert!(!Trigger::<()>::on_error(&is_circuit_open, &err));
/// ```
pub trait Trigger<Res>: Send + Sync + 'static {
    /// Whether the fallback handles this error of the primary service.
    fn on_error(&self, err: &BoxError) -> bool;

    /// Whether this *successful* answer of the primary is a failure to handle (an HTTP 503),
    /// described as a [`FailedResponse`]. When no strategy applies, the response itself is
    /// returned. Defaults to never.
    fn on_response(&self, res: &Res) -> Option<FailedResponse> {
        let _ = res;
        None
    }
}

/// Every error of the primary service triggers the fallback; responses never do.
///
/// ```
/// use tower_pressure::fallback::{AnyError, Trigger};
/// let err: tower::BoxError = "boom".into();
/// assert!(Trigger::<u8>::on_error(&AnyError, &err));
/// assert!(Trigger::<u8>::on_response(&AnyError, &7).is_none());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyError;

impl<Res> Trigger<Res> for AnyError {
    #[inline]
    fn on_error(&self, _: &BoxError) -> bool {
        true
    }
}

impl<F, Res> Trigger<Res> for F
where
    F: Fn(&BoxError) -> bool + Send + Sync + 'static,
{
    #[inline]
    fn on_error(&self, err: &BoxError) -> bool {
        self(err)
    }
}

/// A circuit breaker refused the call ([`CircuitOpen`] anywhere in the source chain).
///
/// ```
/// use tower_pressure::fallback::is_circuit_open;
/// let err: tower::BoxError = "boom".into();
/// assert!(!is_circuit_open(&err));
/// ```
pub fn is_circuit_open(err: &BoxError) -> bool {
    find::<CircuitOpen>(&**err).is_some()
}

/// A concurrency limiter shed the call ([`Overloaded`] anywhere in the source chain).
///
/// ```
/// use tower_pressure::fallback::is_overloaded;
/// let err: tower::BoxError = "boom".into();
/// assert!(!is_overloaded(&err));
/// ```
pub fn is_overloaded(err: &BoxError) -> bool {
    find::<Overloaded>(&**err).is_some()
}

/// The call timed out: tower's `Elapsed` (also raised by the crate's
/// [`timeout`](crate::timeout) layer) or the retry layer's [`AttemptTimedOut`].
///
/// ```
/// use tower_pressure::fallback::is_timeout;
/// let err: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// assert!(is_timeout(&err));
/// ```
pub fn is_timeout(err: &BoxError) -> bool {
    find::<tower::timeout::error::Elapsed>(&**err).is_some()
        || find::<AttemptTimedOut>(&**err).is_some()
}

/// A transient failure the [`RetryLayer`](crate::retry::RetryLayer) gave up on.
///
/// The retry layer never invents an error when it stops: it returns the last attempt's own
/// error. So "retry exhausted" means: an error the retry layer's default classifier calls
/// retryable ([`is_retryable`](crate::retry::is_retryable): `Retryable`, connection
/// refused/reset, timeouts) came out of it anyway.
///
/// ```
/// use tower_pressure::{fallback::is_retry_exhausted, retry::Retryable};
/// let err: tower::BoxError = Retryable::new("flaky").into();
/// assert!(is_retry_exhausted(&err));
/// ```
pub fn is_retry_exhausted(err: &BoxError) -> bool {
    is_retryable(&**err).is_some()
}

/// Any of the crate's own rejections or timeouts (what
/// [`Rejection::from_error`](crate::rejection::Rejection::from_error) recognises: circuit open, overloaded, quota exceeded, timeouts,
/// body too large), or a [`FailedResponse`]. Application errors do not match.
///
/// ```
/// use tower_pressure::fallback::is_rejection;
/// let err: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// assert!(is_rejection(&err));
/// let err: tower::BoxError = "validation failed".into();
/// assert!(!is_rejection(&err));
/// ```
pub fn is_rejection(err: &BoxError) -> bool {
    find::<FailedResponse>(&**err).is_some() || local_rejection(&**err).is_some()
}

/// How long the failure says to wait before trying again: a [`FailedResponse`]'s
/// `Retry-After`, the `retry_after()` of the crate's rejections (via
/// [`Rejection::from_error`](crate::rejection::Rejection::from_error)), or the pushback of [`Retryable::after`](crate::retry::Retryable::after).
///
/// ```
/// use std::time::Duration;
/// use tower_pressure::{fallback::retry_after, retry::Retryable};
/// let err: tower::BoxError = Retryable::after("busy", Duration::from_secs(2)).into();
/// assert_eq!(retry_after(&err), Some(Duration::from_secs(2)));
/// ```
pub fn retry_after(err: &BoxError) -> Option<Duration> {
    if let Some(f) = find::<FailedResponse>(&**err) {
        return f.retry_after();
    }
    if let Some(d) = local_rejection(&**err).and_then(|r| r.retry_after) {
        return Some(d);
    }
    // What the retry layer's default classifier reads as pushback: a `Retryable::after` on
    // an error it calls retryable.
    is_retryable(&**err).and_then(|_| error_pushback(&**err))
}

/// A successful answer of the primary that a [`Trigger`] called a failure (an HTTP `503`).
///
/// Strategies see it as the failure's error (so [`retry_after`] and value closures can read
/// it); the caller never does: when no strategy applies, the original response is returned.
///
/// ```
/// use std::time::Duration;
/// use tower_pressure::fallback::FailedResponse;
/// let f = FailedResponse::new(Some(503), Some(Duration::from_secs(1)));
/// assert_eq!(f.to_string(), "primary answered status 503");
/// assert_eq!(f.status(), Some(503));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedResponse {
    status: Option<u16>,
    retry_after: Option<Duration>,
}

impl FailedResponse {
    /// A failed response with its status code (if it has one) and server pushback.
    pub fn new(status: Option<u16>, retry_after: Option<Duration>) -> Self {
        Self {
            status,
            retry_after,
        }
    }
    /// The response's status code, if any.
    pub fn status(&self) -> Option<u16> {
        self.status
    }
    /// The server's pushback (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for FailedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "primary answered status {s}"),
            None => f.write_str("primary answered a failure"),
        }
    }
}

impl Error for FailedResponse {}

/// The primary failed, a fallback was tried, and it failed too.
///
/// `source()` is the primary's error, so [`Rejection::from_error`](crate::rejection::Rejection::from_error) and the `is_*` predicates
/// of an outer fallback layer still see why the primary failed; the fallback's own error is
/// [`fallback_error`](FallbackFailed::fallback_error).
///
/// ```
/// use tower_pressure::fallback::FallbackFailed;
/// let err = FallbackFailed::new("primary down".into(), "backup down".into(), "service");
/// assert_eq!(err.to_string(), "fallback service failed: backup down (primary: primary down)");
/// assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "primary down");
/// ```
#[derive(Debug)]
pub struct FallbackFailed {
    primary: BoxError,
    fallback: BoxError,
    strategy: &'static str,
}

impl FallbackFailed {
    /// Creates the error (the layer does; public for tests of error handling).
    pub fn new(primary: BoxError, fallback: BoxError, strategy: &'static str) -> Self {
        Self {
            primary,
            fallback,
            strategy,
        }
    }
    /// The primary service's error.
    pub fn primary_error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.primary
    }
    /// The fallback's error.
    pub fn fallback_error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.fallback
    }
    /// The strategy that failed (`"service"`, ...).
    pub fn strategy(&self) -> &'static str {
        self.strategy
    }
    /// The primary's server pushback, if any (see [`retry_after`]).
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.primary)
    }
    /// Unwraps into the primary's error.
    pub fn into_primary(self) -> BoxError {
        self.primary
    }
}

impl fmt::Display for FallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fallback {} failed: {} (primary: {})",
            self.strategy, self.fallback, self.primary
        )
    }
}

impl Error for FallbackFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.primary)
    }
}

/// What a fallback did for one response: handed to a [`Mark`], and inserted as a response
/// extension by [`FallbackHeader`](super::http::FallbackHeader).
///
/// ```
/// use tower_pressure::fallback::FallbackUsed;
/// let used = FallbackUsed::new("cache", Some(std::time::Duration::from_secs(3)));
/// assert_eq!(used.strategy(), "cache");
/// assert!(used.is_stale());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackUsed {
    strategy: &'static str,
    age: Option<Duration>,
}

impl FallbackUsed {
    /// `strategy` answered; `age` is how old a cached answer is (`None`: not cached).
    pub fn new(strategy: &'static str, age: Option<Duration>) -> Self {
        Self { strategy, age }
    }
    /// `"queue"`, `"cache"`, `"service"` or `"value"`.
    pub fn strategy(&self) -> &'static str {
        self.strategy
    }
    /// The age of a cached (stale) answer.
    pub fn age(&self) -> Option<Duration> {
        self.age
    }
    /// Whether the answer is a stale copy from the cache.
    pub fn is_stale(&self) -> bool {
        self.age.is_some()
    }
}

/// Marks a response that a fallback produced, so callers can tell (a stale cache entry, an
/// alternate provider's answer).
///
/// Implemented by `()` (no mark, the default), by closures `Fn(&mut Res, &FallbackUsed)`, and
/// with the `http` feature by [`FallbackHeader`](super::http::FallbackHeader)
/// (`x-fallback: cache` + a [`FallbackUsed`] extension).
///
/// ```
/// use tower_pressure::fallback::{FallbackUsed, Mark};
/// let mark = |res: &mut String, used: &FallbackUsed| res.push_str(&format!(" ({})", used.strategy()));
/// let mut res = String::from("cached answer");
/// mark.mark(&mut res, &FallbackUsed::new("cache", None));
/// assert_eq!(res, "cached answer (cache)");
/// ```
pub trait Mark<Res>: Send + Sync + 'static {
    /// Marks `res`, produced by a fallback as `used` says.
    fn mark(&self, res: &mut Res, used: &FallbackUsed);
}

impl<Res> Mark<Res> for () {
    #[inline]
    fn mark(&self, _: &mut Res, _: &FallbackUsed) {}
}

impl<F, Res> Mark<Res> for F
where
    F: Fn(&mut Res, &FallbackUsed) + Send + Sync + 'static,
{
    fn mark(&self, res: &mut Res, used: &FallbackUsed) {
        self(res, used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_walk_the_chain() {
        let inner: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        let wrapped: BoxError = Box::new(FallbackFailed::new(inner, "x".into(), "service"));
        assert!(is_timeout(&wrapped));
        assert!(is_rejection(&wrapped));
        assert!(!is_circuit_open(&wrapped));
        assert!(!is_overloaded(&wrapped));
        let resp: BoxError = Box::new(FailedResponse::new(Some(429), Some(Duration::from_secs(4))));
        assert!(is_rejection(&resp));
        assert_eq!(retry_after(&resp), Some(Duration::from_secs(4)));
        let plain: BoxError = "nope".into();
        assert_eq!(retry_after(&plain), None);
        assert!(!is_retry_exhausted(&plain));
    }
}
