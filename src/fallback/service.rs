use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::BoxError;
use tower_service::Service;

use super::future::ResponseFuture;
use super::shared::Shared;
use super::strategy::{Strategy, StrategyInfo};
use super::trigger::{Mark, Trigger};

/// The service built by [`FallbackLayer`](super::FallbackLayer).
///
/// ```
/// # fn main() -> Result<(), tower_pressure::ConfigError> {
/// use tower::Layer;
/// use tower_pressure::fallback::FallbackLayer;
/// let svc = FallbackLayer::value(|_: &tower::BoxError| 0u8).build()?
///     .layer(tower::service_fn(|_: ()| async { Ok::<u8, tower::BoxError>(1) }));
/// let _inner = svc.get_ref();
/// # Ok(()) }
/// ```
pub struct Fallback<S, St, T, M> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<St, T, M>>,
}

impl<S: Clone, St, T, M> Clone for Fallback<S, St, T, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, St: StrategyInfo, T, M> fmt::Debug for Fallback<S, St, T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .field("strategy", &self.shared.strategy.kind())
            .finish()
    }
}

impl<S, St, T, M> Fallback<S, St, T, M> {
    /// The primary service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The primary service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    /// Consumes the wrapper, returning the primary service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, St, T, M, Req> Service<Req> for Fallback<S, St, T, M>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    St: Strategy<S, Req>,
    T: Trigger<S::Response>,
    M: Mark<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, St, T, M, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Only the primary's readiness: an alternate provider is driven to readiness by the
        // fallback future, when (and only when) it is used.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let kept = self.shared.strategy.keep(&req, &self.inner);
        let fut = self.inner.call(req);
        ResponseFuture::new(fut, kept, self.shared.clone())
    }
}
