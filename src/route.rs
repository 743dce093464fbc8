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

use crate::circuit_breaker::KeyExtractor;
use crate::constraints::HasExtensions;
use crate::target::route_key;
pub use crate::target::{FallbackKeys, RouteKey};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_route_key_reads_the_extension() {
        let mut req = http::Request::new(());
        assert_eq!(ByRouteKey.key(&req), None);
        req.extensions_mut().insert(RouteKey::new("p"));
        assert_eq!(ByRouteKey.key(&req).as_deref(), Some("p"));
    }
}
