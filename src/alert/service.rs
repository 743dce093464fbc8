use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::clock::CallScope;
use tower_service::Service;

use super::classify::Classify;
use super::future::{Recording, ResponseFuture};
use super::metrics::NO_SLOT;
use super::shared::Shared;
use crate::lane::Lanes;

/// The service built by [`AlertLayer`](super::AlertLayer).
#[derive(Clone)]
pub struct AlertService<S, K, C> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Lanes<Shared>>,
    pub(crate) key: K,
    pub(crate) classify: C,
}

impl<S: fmt::Debug, K, C> fmt::Debug for AlertService<S, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertService")
            .field("name", &self.shared.total.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, C> AlertService<S, K, C> {
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

/// Reads a metrics key (executor id, route) from a request without allocating.
pub trait KeyExtractor<Req> {
    /// The key of `req`, or `None` to record it in the totals only.
    fn key<'a>(&self, req: &'a Req) -> Option<&'a str>;
}

/// No per-key metrics (the default).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct NoKey;

impl<Req> KeyExtractor<Req> for NoKey {
    #[inline]
    fn key<'a>(&self, _: &'a Req) -> Option<&'a str> {
        None
    }
}

/// A key extractor from a function; see [`AlertLayer::key_by`](super::AlertLayer::key_by).
#[derive(Clone, Copy)]
pub struct FnKey<F>(pub F);

impl<F> fmt::Debug for FnKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnKey")
    }
}

impl<Req, F> KeyExtractor<Req> for FnKey<F>
where
    F: for<'a> Fn(&'a Req) -> Option<&'a str>,
{
    #[inline]
    fn key<'a>(&self, req: &'a Req) -> Option<&'a str> {
        (self.0)(req)
    }
}

/// Keys HTTP requests by the value of a header (say `x-executor-id`).
#[derive(Debug, Clone)]
pub struct HeaderKey(pub http::HeaderName);

impl<B> KeyExtractor<http::Request<B>> for HeaderKey {
    #[inline]
    fn key<'a>(&self, req: &'a http::Request<B>) -> Option<&'a str> {
        req.headers().get(&self.0).and_then(|v| v.to_str().ok())
    }
}

impl<S, Req, K, C> Service<Req> for AlertService<S, K, C>
where
    S: Service<Req>,
    K: KeyExtractor<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let slot = match self.key.key(&req) {
            Some(k) => self.shared.slot(k),
            None => NO_SLOT,
        };
        // One thread-local read picks this call's lane and stripes.
        let lane = crate::lane::thread_index();
        self.shared.start(slot, lane);
        // One clock read shared with the timing layers this call reaches (`crate::clock`).
        let scope = CallScope::enter();
        let rec = Recording {
            // This thread's lane: its reference count is not written by other threads.
            shared: self.shared.lane_at(lane),
            lane,
            slot,
            start: scope.stamp(),
            done: false,
        };
        let inner = self.inner.call(req);
        drop(scope);
        ResponseFuture::new(inner, rec, self.classify.clone())
    }
}
