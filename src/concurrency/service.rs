use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::future::ResponseFuture;
#[cfg(feature = "http")]
use super::mode::BodyEnd;
use super::mode::ResponseEnd;
use super::state::{Admission, Shared};
use crate::priority::PriorityClassifier;

/// The service built by [`AdaptiveConcurrencyLayer`](super::AdaptiveConcurrencyLayer).
#[derive(Debug, Clone)]
pub struct AdaptiveConcurrency<S, C, M = ResponseEnd> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
    pub(crate) _mode: M,
}

impl<S, C, M> AdaptiveConcurrency<S, C, M> {
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

/// Admission for one request: classify, then the inline common case (pressure `Normal`,
/// below the limit: one compare-exchange), else the full decision out of line.
///
/// A queued Critical request calls the inner service at once but polls its future only once
/// a slot is granted: services whose `call` does work eagerly should not use the queue.
#[inline]
pub(crate) fn admit<S, C, Req, M>(
    inner: &mut S,
    shared: &Arc<Shared>,
    classifier: &C,
    req: Req,
) -> ResponseFuture<S::Future, M>
where
    S: Service<Req>,
    C: PriorityClassifier<Req>,
{
    let class = classifier.classify(&req);
    if let Some(permit) = shared.try_acquire(class) {
        return ResponseFuture::admitted(inner.call(req), permit);
    }
    match shared.acquire(class) {
        Admission::Admitted(permit) => ResponseFuture::admitted(inner.call(req), permit),
        Admission::Wait(rx, err) => {
            ResponseFuture::waiting(inner.call(req), rx, err, shared.clone())
        }
        Admission::Refused(err) => ResponseFuture::rejected(err),
    }
}

impl<S, C, Req> Service<Req> for AdaptiveConcurrency<S, C, ResponseEnd>
where
    S: Service<Req>,
    S::Error: Into<tower::BoxError>,
    C: PriorityClassifier<Req>,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = ResponseFuture<S::Future, ResponseEnd>;

    /// The inner service's readiness only: capacity is decided in `call`.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        admit(&mut self.inner, &self.shared, &self.classifier, req)
    }
}

#[cfg(feature = "http")]
impl<S, C, ReqBody, ResBody> Service<http::Request<ReqBody>> for AdaptiveConcurrency<S, C, BodyEnd>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Error: Into<tower::BoxError>,
    C: PriorityClassifier<http::Request<ReqBody>>,
    ResBody: http_body::Body,
{
    type Response = http::Response<super::body::PermitBody<ResBody>>;
    type Error = tower::BoxError;
    type Future = ResponseFuture<S::Future, BodyEnd>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        admit(&mut self.inner, &self.shared, &self.classifier, req)
    }
}
