//! Outcomes one layer must recognise in another layer's error: the small error types of the
//! crate's local rejections (an open breaker, a shed request, a quota rejection, a quota store
//! outage, a timed-out attempt, a body too large to replay), the [`Retryable`](transient::Retryable)
//! marker, and server pushback parsing.
//!
//! This is core: it knows no layer. Each layer re-exports its own types from here, so their
//! public paths (`tower_pressure::circuit_breaker::CircuitOpen`,
//! `tower_pressure::concurrency::Overloaded`, `tower_pressure::quota::QuotaExceeded`,
//! `tower_pressure::retry::AttemptTimedOut`, ...) are unchanged, and a layer that must react
//! to another's outcome (the fallback layer's triggers, the retry layer's reroute) imports
//! this module, never the other layer. [`local_rejection`] recognises them in an error's
//! `source()` chain in one place; the glue's
//! [`Rejection::from_error`](crate::rejection::Rejection::from_error) maps the same errors to
//! HTTP and gRPC answers.

use std::error::Error;
use std::time::Duration;

#[cfg(feature = "http")]
pub(crate) mod body;
pub(crate) mod circuit;
pub(crate) mod pushback;
pub(crate) mod quota;
pub(crate) mod shed;
#[cfg(feature = "redis")]
pub(crate) mod store;
pub(crate) mod transient;

/// The first error of type `T` in `err`'s `source()` chain (at most 16 links).
pub(crate) fn find<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut cur = Some(err);
    for _ in 0..16 {
        let e = cur?;
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// One of the crate's local rejections or timeouts, as [`local_rejection`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalRejection {
    /// The stable reason code (`circuit_open`, `overloaded`, `quota_exceeded`,
    /// `quota_store_unavailable`, `timeout`, `body_too_large`), as
    /// [`Rejection::reason`](crate::rejection::Rejection::reason) names it.
    pub(crate) reason: &'static str,
    /// The rejection's own `retry_after`, if it has one.
    pub(crate) retry_after: Option<Duration>,
}

/// The first of the crate's local rejections in `err`'s `source()` chain, searched in the
/// same order and with the same result as
/// [`Rejection::from_error`](crate::rejection::Rejection::from_error) (a test in
/// `rejection.rs` keeps the two in step).
pub(crate) fn local_rejection(err: &(dyn Error + 'static)) -> Option<LocalRejection> {
    let hit = |reason, retry_after| {
        Some(LocalRejection {
            reason,
            retry_after,
        })
    };
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(open) = e.downcast_ref::<circuit::CircuitOpen>() {
            return hit("circuit_open", Some(open.retry_after()));
        }
        if let Some(o) = e.downcast_ref::<shed::Overloaded>() {
            return hit("overloaded", Some(o.retry_after()));
        }
        if let Some(q) = e.downcast_ref::<quota::QuotaExceeded>() {
            return hit("quota_exceeded", Some(q.retry_after()));
        }
        #[cfg(feature = "redis")]
        if e.is::<store::StoreError>() {
            return hit("quota_store_unavailable", None);
        }
        if e.is::<transient::AttemptTimedOut>() || e.is::<tower::timeout::error::Elapsed>() {
            return hit("timeout", None);
        }
        #[cfg(feature = "http")]
        if e.is::<body::BodyTooLarge>() {
            return hit("body_too_large", None);
        }
        cur = e.source();
    }
    None
}
