//! Where an attempt goes: the key of its target, and the targets a retry may switch to.
//!
//! A per-key [circuit breaker](crate::circuit_breaker) answers `CircuitOpen` at once while
//! its key's breaker is open, and the [adaptive limiter](crate::concurrency) answers
//! `Overloaded` while the process sheds. Retrying such a rejection against the same target is
//! pointless: it was refused locally and will be refused again. So the
//! [`RetryLayer`](crate::retry::RetryLayer) retries these two errors **only when the request
//! names a fallback**: a [`FallbackKeys`] extension listing other targets (providers, hosts,
//! regions) in order of preference. The retry then sends the next attempt at once (no
//! backoff: the rejected attempt never reached the target) with a [`RouteKey`] extension
//! naming the fallback, still spending an attempt and a budget token and still bound by
//! pressure, the time bound and the deadline.
//!
//! A [`RouteKey`] on a request overrides the breaker's key extractor
//! ([`HostKey`](crate::circuit_breaker::http::HostKey),
//! [`AuthorityKey`](crate::circuit_breaker::http::AuthorityKey),
//! [`HeaderKey`](crate::circuit_breaker::http::HeaderKey) and [`ByRouteKey`]), so the
//! rerouted attempt is judged by the fallback's own breaker. The client below the breaker
//! reads the same extension to send the attempt to that target.
//!
//! Because the rejected attempt was never sent, a request the classifier would not replay
//! (a `POST` without idempotency key) is still rerouted after a local rejection; it is never
//! retried after an error of the target itself.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};
//! use tower_pressure::route::{ByRouteKey, FallbackKeys, RouteKey};
//! use tower_pressure::{pressure::PressureMonitor, retry::RetryLayer};
//!
//! let (monitor, _manual) = PressureMonitor::manual();
//! let breakers = CircuitBreakerLayer::builder().build()?.per_key(ByRouteKey);
//! let handle = breakers.handle();
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(monitor))
//!     .layer(breakers)
//!     // The client picks its provider from the route key.
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let to = req.extensions().get::<RouteKey>().map_or("primary", |k| k.as_str());
//!         Ok::<_, tower::BoxError>(format!("answered by {to}"))
//!     }));
//!
//! let request = || {
//!     let mut req = http::Request::new(());
//!     req.extensions_mut().insert(RouteKey::new("primary"));
//!     req.extensions_mut().insert(FallbackKeys::new(["secondary"]));
//!     req
//! };
//! assert_eq!(client.clone().oneshot(request()).await?, "answered by primary");
//! handle.set_key("primary", CircuitState::ForcedOpen);
//! assert_eq!(client.oneshot(request()).await?, "answered by secondary");
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::circuit_breaker::KeyExtractor;
use crate::constraints::HasExtensions;

/// The key of the target (provider, host, region) this attempt is for: a request extension.
///
/// Set by the caller, or by the [`RetryLayer`](crate::retry::RetryLayer) when it reroutes an
/// attempt to a [`FallbackKeys`] entry. The crate's breaker key extractors use it instead of
/// what they would read from the request; the client underneath should send the attempt to
/// the target it names.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RouteKey(Arc<str>);

impl RouteKey {
    /// A route key.
    ///
    /// ```
    /// let k = tower_pressure::route::RouteKey::new("openai");
    /// assert_eq!(k.as_str(), "openai");
    /// ```
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RouteKey").field(&&*self.0).finish()
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The targets a request may be rerouted to, in order, when its current target rejects it
/// locally (`CircuitOpen`, `Overloaded`): a request extension. See the [module docs](self).
///
/// Each reroute takes the next key; cloning is cheap (the list is shared).
#[derive(Clone, PartialEq, Eq)]
pub struct FallbackKeys {
    keys: Arc<[Arc<str>]>,
    next: usize,
}

impl FallbackKeys {
    /// Fallbacks in order of preference. Empty keys are kept as given (a key is whatever the
    /// breaker's extractor and the client understand).
    ///
    /// ```
    /// use tower_pressure::route::FallbackKeys;
    /// let f = FallbackKeys::new(["anthropic", "local-llm"]);
    /// assert_eq!(f.remaining().collect::<Vec<_>>(), ["anthropic", "local-llm"]);
    /// ```
    pub fn new<I>(keys: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Arc<str>>,
    {
        Self {
            keys: keys.into_iter().map(Into::into).collect(),
            next: 0,
        }
    }

    /// The fallbacks not tried yet, in order.
    pub fn remaining(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().skip(self.next).map(|k| &**k)
    }

    /// Takes the next fallback, if any.
    pub(crate) fn take_next(&mut self) -> Option<Arc<str>> {
        let k = self.keys.get(self.next)?.clone();
        self.next += 1;
        Some(k)
    }
}

impl fmt::Debug for FallbackKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.remaining()).finish()
    }
}

/// Points `req` at its next fallback: sets its [`RouteKey`] and advances its
/// [`FallbackKeys`]. `false` (and `req` unchanged) when it has none left.
pub(crate) fn reroute<Req: HasExtensions>(req: &mut Req) -> bool {
    let ext = req.extensions_mut();
    let Some(next) = ext
        .get_mut::<FallbackKeys>()
        .and_then(FallbackKeys::take_next)
    else {
        return false;
    };
    ext.insert(RouteKey(next));
    true
}

/// Whether `req` names a fallback it has not tried yet.
pub(crate) fn has_fallback<Req: HasExtensions>(req: &Req) -> bool {
    req.extensions()
        .get::<FallbackKeys>()
        .is_some_and(|f| f.remaining().next().is_some())
}

/// Keys breakers by the request's [`RouteKey`] extension (`None`, the layer's default
/// breaker, without one). For request types that carry no host or header to key by.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByRouteKey;

impl<Req: HasExtensions> KeyExtractor<Req> for ByRouteKey {
    #[inline]
    fn key<'a>(&self, req: &'a Req) -> Option<Cow<'a, str>> {
        route_key(req.extensions())
    }
}

/// The [`RouteKey`] in `ext`, borrowed.
#[inline]
pub(crate) fn route_key(ext: &http::Extensions) -> Option<Cow<'_, str>> {
    ext.get::<RouteKey>().map(|k| Cow::Borrowed(k.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reroute_walks_the_fallbacks_in_order_then_stops() {
        let mut req = http::Request::new(());
        assert!(!has_fallback(&req));
        assert!(!reroute(&mut req));
        req.extensions_mut().insert(FallbackKeys::new(["b", "c"]));
        assert!(has_fallback(&req));
        assert!(reroute(&mut req));
        assert_eq!(
            req.extensions().get::<RouteKey>(),
            Some(&RouteKey::new("b"))
        );
        assert!(reroute(&mut req));
        assert_eq!(
            req.extensions().get::<RouteKey>(),
            Some(&RouteKey::new("c"))
        );
        assert!(!has_fallback(&req));
        assert!(!reroute(&mut req));
        assert_eq!(
            req.extensions().get::<RouteKey>(),
            Some(&RouteKey::new("c"))
        );
    }

    #[test]
    fn clones_advance_independently() {
        let a = FallbackKeys::new(["x", "y"]);
        let mut b = a.clone();
        assert_eq!(b.take_next().as_deref(), Some("x"));
        assert_eq!(a.remaining().count(), 2);
        assert_eq!(format!("{b:?}"), r#"["y"]"#);
    }

    #[test]
    fn by_route_key_reads_the_extension() {
        let mut req = http::Request::new(());
        assert_eq!(ByRouteKey.key(&req), None);
        req.extensions_mut().insert(RouteKey::new("p"));
        assert_eq!(ByRouteKey.key(&req).as_deref(), Some("p"));
    }
}
