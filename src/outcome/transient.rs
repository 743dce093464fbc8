//! Errors of the retry layer. The layer never invents an error when it stops retrying: the
//! last attempt's own result is returned. These types describe failures the layer itself
//! produces (an attempt timing out) and the marker users wrap their errors in.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// One attempt took longer than the configured per-attempt timeout. Retryable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTimedOut {
    timeout: Duration,
    attempt: u32,
}

impl AttemptTimedOut {
    pub(crate) fn new(timeout: Duration, attempt: u32) -> Self {
        Self { timeout, attempt }
    }
    /// The per-attempt timeout that elapsed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// Which attempt timed out (1 = first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// No server hint is known: `None`.
    pub fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempt {} timed out after {:?}",
            self.attempt, self.timeout
        )
    }
}

impl Error for AttemptTimedOut {}

/// Marks an inner service's error as safe to retry.
///
/// Inner services return `Retryable::new(err).into()` (as a `tower::BoxError`) for failures
/// where a second attempt may succeed. The default classifiers look for it anywhere in the
/// error's `source()` chain, next to `io::ErrorKind::{ConnectionRefused, ConnectionReset,
/// ConnectionAborted, TimedOut}`, tower's `timeout::error::Elapsed`, [`AttemptTimedOut`] and
/// `hyper_util` connect errors.
///
/// ```
/// use tower_pressure::retry::{Retryable, is_retryable};
/// let err: tower::BoxError = Retryable::new(std::fmt::Error).into();
/// assert!(is_retryable(&*err).is_some());
/// ```
#[derive(Debug)]
pub struct Retryable {
    inner: tower::BoxError,
    retry_after: Option<Duration>,
}

impl Retryable {
    /// Wraps `err`.
    pub fn new(err: impl Into<tower::BoxError>) -> Self {
        Self {
            inner: err.into(),
            retry_after: None,
        }
    }
    /// Wraps `err` with a server hint: wait at least `after` before retrying.
    pub fn after(err: impl Into<tower::BoxError>, after: Duration) -> Self {
        Self {
            inner: err.into(),
            retry_after: Some(after),
        }
    }
    /// The hint given with [`Retryable::after`].
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    /// The wrapped error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.inner
    }
    /// Unwraps the error.
    pub fn into_inner(self) -> tower::BoxError {
        self.inner
    }
}

impl fmt::Display for Retryable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Transparent: the wrapped error's message is what users want to see.
        fmt::Display::fmt(&self.inner, f)
    }
}

impl Error for Retryable {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.inner)
    }
}

/// Why an error is retryable, if it is: walks the `source()` chain (at most 16 links) looking
/// for the markers listed on [`Retryable`]. Returns a short static reason.
pub fn is_retryable(err: &(dyn Error + 'static)) -> Option<&'static str> {
    let mut cur = Some(err);
    let mut depth = 0;
    while let Some(e) = cur {
        if e.is::<Retryable>() {
            return Some("retryable error");
        }
        if e.is::<AttemptTimedOut>() {
            return Some("attempt timed out");
        }
        if e.is::<tower::timeout::error::Elapsed>() {
            return Some("timed out");
        }
        let mut next = e.source();
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return Some("connection refused"),
                ConnectionReset => return Some("connection reset"),
                ConnectionAborted => return Some("connection aborted"),
                TimedOut => return Some("timed out"),
                _ => {}
            }
            // `io::Error::source` skips the wrapped error itself; look at it directly.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
            }
        }
        #[cfg(feature = "http")]
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>()
            && h.is_connect()
        {
            return Some("connect error");
        }
        depth += 1;
        if depth >= 16 {
            break;
        }
        cur = next;
    }
    None
}

/// The server's pushback hint carried by an error (from [`Retryable::after`]).
pub(crate) fn error_pushback(err: &(dyn Error + 'static)) -> Option<Duration> {
    let mut cur = Some(err);
    let mut depth = 0;
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<Retryable>() {
            return r.retry_after();
        }
        depth += 1;
        if depth >= 16 {
            break;
        }
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn io_kinds() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(is_retryable(&e), Some("connection refused"));
        let e = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(is_retryable(&e), None);
    }

    #[test]
    fn nested_and_marked() {
        let inner = io::Error::other(Retryable::after(
            io::Error::other("x"),
            Duration::from_secs(2),
        ));
        assert_eq!(is_retryable(&inner), Some("retryable error"));
        assert_eq!(error_pushback(&inner), Some(Duration::from_secs(2)));
        let t = AttemptTimedOut::new(Duration::from_secs(1), 2);
        assert_eq!(t.to_string(), "attempt 2 timed out after 1s");
        assert_eq!(is_retryable(&t), Some("attempt timed out"));
        assert_eq!(
            is_retryable(&tower::timeout::error::Elapsed::new()),
            Some("timed out")
        );
    }
}
