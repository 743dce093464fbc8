//! HTTP awareness: `5xx`/`429` responses as failures ([`ServerErrors`]), and the
//! `x-fallback` header on fallback answers ([`FallbackHeader`]).

use std::time::SystemTime;

use http::{HeaderName, HeaderValue, StatusCode};
use tower::BoxError;

use super::trigger::{FailedResponse, FallbackUsed, Mark, Trigger};
use crate::outcome::pushback::parse_retry_after;

/// The header [`FallbackHeader`] sets: `x-fallback: cache` (or `queue`, `service`, `value`).
pub const X_FALLBACK: HeaderName = HeaderName::from_static("x-fallback");

/// Every error, and `5xx` and `429 Too Many Requests` responses (with their `Retry-After`,
/// delta-seconds or HTTP-date), trigger the fallback. Other responses, 4xx included, are
/// answers.
///
/// ```
/// use tower_pressure::fallback::{Trigger, http::ServerErrors};
/// let res = http::Response::builder().status(503).header("retry-after", "2").body(()).unwrap();
/// let failed = ServerErrors.on_response(&res).unwrap();
/// assert_eq!(failed.retry_after(), Some(std::time::Duration::from_secs(2)));
/// assert!(ServerErrors.on_response(&http::Response::new(())).is_none());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerErrors;

impl<B> Trigger<http::Response<B>> for ServerErrors {
    #[inline]
    fn on_error(&self, _: &BoxError) -> bool {
        true
    }

    #[inline]
    fn on_response(&self, res: &http::Response<B>) -> Option<FailedResponse> {
        let status = res.status();
        if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
            return None;
        }
        let retry_after = res
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now()));
        Some(FailedResponse::new(Some(status.as_u16()), retry_after))
    }
}

/// Marks fallback answers with `x-fallback: <strategy>` and a [`FallbackUsed`] extension
/// (which tells a cached answer's age).
///
/// ```
/// use tower_pressure::fallback::{FallbackUsed, Mark, http::FallbackHeader};
/// let mut res = http::Response::new(());
/// FallbackHeader.mark(&mut res, &FallbackUsed::new("cache", Some(std::time::Duration::from_secs(4))));
/// assert_eq!(res.headers()["x-fallback"], "cache");
/// assert!(res.extensions().get::<FallbackUsed>().unwrap().is_stale());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct FallbackHeader;

impl<B> Mark<http::Response<B>> for FallbackHeader {
    fn mark(&self, res: &mut http::Response<B>, used: &FallbackUsed) {
        // The built-in strategy names are valid header values; a user-made name that is not
        // is left out rather than panicking.
        if let Ok(v) = HeaderValue::from_str(used.strategy()) {
            res.headers_mut().insert(X_FALLBACK, v);
        }
        res.extensions_mut().insert(*used);
    }
}
