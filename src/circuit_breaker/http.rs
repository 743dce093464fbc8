//! HTTP awareness: status classification, body-end observation, keys, and the
//! `CircuitOpen` → `503 Service Unavailable` + `Retry-After` mapping.

use std::borrow::Cow;

use http::{HeaderName, HeaderValue, StatusCode};
use http_body::Body;

use super::classify::{Classify, Complete, Outcome};
use super::error::CircuitOpen;
use super::future::Permit;
use super::registry::KeyExtractor;

/// `5xx` and `429 Too Many Requests` are failures, every other status (4xx included) a
/// success; transport errors are failures.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerErrorsAsFailures;

impl<B, E> Classify<http::Response<B>, E> for ServerErrorsAsFailures {
    #[inline]
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(r)
                if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS =>
            {
                Outcome::Failure
            }
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// Classifies the response head with `C`; when the head is a success, the outcome waits for
/// the end of the body: a body that errors counts as a failure, one that ends as a success,
/// one dropped before its end (the client went away) is not counted.
///
/// ```
/// # fn main() -> Result<(), tower_pressure::ConfigError> {
/// use tower_pressure::circuit_breaker::{CircuitBreakerLayer, http::{ObserveBody, ServerErrorsAsFailures}};
/// let layer = CircuitBreakerLayer::builder().build()?.classifier(ObserveBody(ServerErrorsAsFailures));
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ObserveBody<C>(pub C);

impl<B, E> Complete<http::Response<B>, E> for ServerErrorsAsFailures {
    type Response = http::Response<B>;
    #[inline]
    fn complete(
        &self,
        result: Result<http::Response<B>, E>,
        permit: Permit,
    ) -> Result<Self::Response, E> {
        super::classify::record_now(self, result, permit)
    }
}

impl<C, B, E> Complete<http::Response<B>, E> for ObserveBody<C>
where
    C: Classify<http::Response<B>, E>,
    B: Body,
{
    type Response = http::Response<ObservedBody<B>>;

    fn complete(
        &self,
        result: Result<http::Response<B>, E>,
        permit: Permit,
    ) -> Result<Self::Response, E> {
        let outcome = self.0.classify(&result);
        let res = result?;
        let permit = if outcome == Outcome::Success && !res.body().is_end_stream() {
            Some(permit)
        } else {
            permit.record(outcome);
            None
        };
        Ok(res.map(|inner| ObservedBody::new(inner, permit)))
    }
}

/// A response body that records the call's outcome when it ends (see [`ObserveBody`]):
/// success at its end, failure on a body error, and nothing (the permit is released) when it
/// is dropped unfinished.
pub type ObservedBody<B> = crate::body::GuardedBody<B, Permit>;

impl crate::body::sealed::Sealed for Permit {}

impl crate::body::BodyGuard for Permit {
    fn body_ended(self, errored: bool) {
        if errored {
            self.failure();
        } else {
            self.success();
        }
    }
}

/// Keys requests by host: the request's [`RouteKey`](crate::route::RouteKey) if it has one,
/// else the URI's authority host, else the `Host` header.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostKey;

impl<B> KeyExtractor<http::Request<B>> for HostKey {
    fn key<'a>(&self, req: &'a http::Request<B>) -> Option<Cow<'a, str>> {
        if let Some(k) = crate::target::route_key(req.extensions()) {
            return Some(k);
        }
        if let Some(h) = req.uri().host() {
            return Some(Cow::Borrowed(h));
        }
        let h = req.headers().get(http::header::HOST)?.to_str().ok()?;
        Some(Cow::Borrowed(
            h.rsplit_once(':').map_or(h, |(host, _)| host),
        ))
    }
}

/// Keys requests by authority (`host:port`): the request's
/// [`RouteKey`](crate::route::RouteKey) if it has one, else the URI's authority, else the
/// `Host` header.
/// Unlike [`HostKey`], two providers on one host but different ports get their own breakers.
///
/// ```
/// use tower_pressure::circuit_breaker::{KeyExtractor, http::AuthorityKey};
/// let req = http::Request::get("http://127.0.0.1:8081/v1/chat").body(()).unwrap();
/// assert_eq!(AuthorityKey.key(&req).as_deref(), Some("127.0.0.1:8081"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorityKey;

impl<B> KeyExtractor<http::Request<B>> for AuthorityKey {
    fn key<'a>(&self, req: &'a http::Request<B>) -> Option<Cow<'a, str>> {
        if let Some(k) = crate::target::route_key(req.extensions()) {
            return Some(k);
        }
        if let Some(a) = req.uri().authority() {
            return Some(Cow::Borrowed(a.as_str()));
        }
        req.headers()
            .get(http::header::HOST)?
            .to_str()
            .ok()
            .map(Cow::Borrowed)
    }
}

/// Keys requests by the value of a header (say `x-provider` or `x-executor-id`); a request's
/// [`RouteKey`](crate::route::RouteKey) takes precedence.
#[derive(Debug, Clone)]
pub struct HeaderKey(pub HeaderName);

impl<B> KeyExtractor<http::Request<B>> for HeaderKey {
    fn key<'a>(&self, req: &'a http::Request<B>) -> Option<Cow<'a, str>> {
        if let Some(k) = crate::target::route_key(req.extensions()) {
            return Some(k);
        }
        req.headers().get(&self.0)?.to_str().ok().map(Cow::Borrowed)
    }
}

/// `503 Service Unavailable` with `Retry-After` (whole seconds, rounded up, at least 1) for
/// a [`CircuitOpen`].
pub fn open_response<B: Default>(open: &CircuitOpen) -> http::Response<B> {
    let secs = crate::outcome::pushback::retry_after_secs(open.retry_after());
    let mut res = http::Response::new(B::default());
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    res.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// Maps an error to `503` + `Retry-After` when it is a [`CircuitOpen`] (for axum's
/// `HandleErrorLayer` or a hyper service): `None` for any other error.
pub fn circuit_open_response<B: Default>(
    err: &(dyn std::error::Error + Send + Sync + 'static),
) -> Option<http::Response<B>> {
    err.downcast_ref::<CircuitOpen>().map(open_response)
}
