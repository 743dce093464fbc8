//! The tower glue: find the provider of a request, read its response's headers.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::Shared;
use super::future::ResponseFuture;
use crate::circuit_breaker::KeyExtractor;
use crate::circuit_breaker::http::HostKey;
use crate::quota::QuotaUsage;

/// Reads LLM rate-limit headers of the responses of the wrapped client into a
/// [`ProviderLimits`](super::ProviderLimits) table; made by
/// [`ProviderLimits::layer`](super::ProviderLimits::layer).
///
/// ```
/// # fn main() -> Result<(), tower_pressure::ConfigError> {
/// use tower::ServiceBuilder;
/// use tower_pressure::provider_limits::ProviderLimits;
/// let limits = ProviderLimits::builder().provider("openai", "api.openai.com").build()?;
/// let client = ServiceBuilder::new()
///     .layer(limits.layer())
///     .service(tower::service_fn(|_: http::Request<()>| async {
///         Ok::<_, tower::BoxError>(http::Response::new(()))
///     }));
/// # let _ = client;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProviderLimitsLayer {
    pub(super) shared: Arc<Shared>,
}

impl<S> Layer<S> for ProviderLimitsLayer {
    type Service = ProviderLimitsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProviderLimitsService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of a [`ProviderLimitsLayer`].
///
/// ```
/// # fn main() -> Result<(), tower_pressure::ConfigError> {
/// use tower::Layer;
/// use tower_pressure::provider_limits::ProviderLimits;
/// let limits = ProviderLimits::builder().provider("openai", "api.openai.com").build()?;
/// let svc = limits.layer().layer(tower::service_fn(|_: http::Request<()>| async {
///     Ok::<_, tower::BoxError>(http::Response::new(()))
/// }));
/// let _inner = svc.get_ref();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProviderLimitsService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ProviderLimitsService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<http::Request<B>> for ProviderLimitsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let provider = HostKey.key(&req).and_then(|k| self.shared.index_of(&k));
        let quota = provider.and_then(|_| req.extensions().get::<QuotaUsage>().cloned());
        let observe = provider.map(|i| (self.shared.clone(), i, quota));
        ResponseFuture::new(self.inner.call(req), observe)
    }
}
