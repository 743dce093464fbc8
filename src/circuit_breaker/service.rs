use std::sync::Arc;
use std::task::{Context, Poll};

use tower::BoxError;
use tower_service::Service;

use super::classify::Complete;
use super::future::{Permit, ResponseFuture};
use super::registry::KeyExtractor;
use super::shared::Shared;
use super::state::Now;

/// The service built by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// `poll_ready` only propagates the inner service's readiness; the breaker decides in
/// `call` and fails fast with [`CircuitOpen`](super::CircuitOpen).
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S, C, K> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
    pub(crate) key: K,
}

impl<S, C, K> CircuitBreaker<S, C, K> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req, C, K> Service<Req> for CircuitBreaker<S, C, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Complete<S::Response, S::Error> + Clone,
    K: KeyExtractor<Req>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let mut now = Now::lazy(self.shared.epoch);
        // Called inside another timing layer's call: that layer owns the completion time.
        let owner = !crate::clock::in_scope();
        let key = self.key.key(&req);
        let core = self.shared.breaker(key.as_deref(), &mut now);
        match core.try_acquire(&mut now) {
            Ok(ticket) => {
                let permit = Permit::new(core.lane(), ticket);
                drop(key);
                ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone(), owner)
            }
            Err(r) => ResponseFuture::rejected(core.error(r)),
        }
    }
}
