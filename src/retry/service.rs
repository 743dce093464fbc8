use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::BoxError;
use tower_service::Service;

use super::classify::Classify;
use super::future::ResponseFuture;
use super::layer::Shared;
use crate::constraints::HasExtensions;
use crate::lane::Lanes;

/// The service built by [`RetryLayer`](super::RetryLayer).
///
/// Requests must be `Clone` (to be replayed) and carry extensions (for the `Constraints`
/// deadline). `http::Request<B>` is `Clone` when `B` is, e.g. `Full<Bytes>`; for streaming
/// bodies put [`BufferBodyLayer`](super::http::BufferBodyLayer) in front.
pub struct Retry<S, C> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Lanes<Shared<C>>>,
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish()
    }
}

impl<S, C> Retry<S, C> {
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

impl<S, C, Req> Service<Req> for Retry<S, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone + HasExtensions,
    C: Classify<Req, S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, C, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // The two atomic increments first, back to back: a locked instruction waits for
        // every pending store, and few are pending yet (after the request's copy, many).
        // Both on this thread's lane (`crate::lane`): cache lines other threads do not write.
        let lane = crate::lane::thread_index();
        let arc = self.shared.lane_at(lane);
        let shared = &**self.shared;
        // One atomic add: counts the request and deposits it (in a batch) into the budget.
        shared.tally.record(lane, shared.budget.as_ref());
        // The clock is read only when a total time bound or a per-attempt timeout needs the
        // call time (from the stack's shared read when there is one: `crate::clock`).
        let start = shared.needs_start.then(crate::clock::call_time);
        // The copy first (from the request as the caller gave it), then the call.
        let request = if shared.replays && shared.classifier.may_retry(&req) {
            Some(req.clone())
        } else {
            None
        };
        let fut = self.inner.call(req);
        // As tower's `Retry`: the called (ready) service stays here; the future gets a clone
        // that it drives to readiness before each retry.
        ResponseFuture::new(fut, self.inner.clone(), arc, request, start)
    }
}
