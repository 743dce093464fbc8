use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::BoxError;
use tower_service::Service;

use super::classify::Classify;
use super::future::ResponseFuture;
use super::shared::{Prototype, Shared};
use crate::constraints::HasExtensions;
use crate::lane::Lanes;

/// The service built by [`RetryLayer`](super::RetryLayer).
///
/// Requests must be `Clone` (to be replayed) and carry extensions (for the `Constraints`
/// deadline). `http::Request<B>` is `Clone` when `B` is, e.g. `Full<Bytes>`; for streaming
/// bodies put [`BufferBodyLayer`](super::http::BufferBodyLayer) in front.
///
/// # Which service a retry calls
///
/// A first attempt is called on this service's `inner` (after [`poll_ready`]), so the
/// response future holds no service of its own: most requests never retry, and cloning the
/// inner service for each one (as tower's `Retry` does) costs two atomic reference-count
/// updates per `Arc` inside it, on cache lines that every thread calling the service
/// writes. A retry instead clones a copy of `inner` that [`Layer::layer`] kept for its
/// thread (one per lane, see the crate's `lane` module), drives that clone to readiness
/// and calls it; a later retry of the same request reuses the same clone. So retries go to
/// a clone of the service as it was when the layer wrapped it: for the services one
/// retries (hyper and tonic clients, `Buffer`, `service_fn`, the crate's layers) every
/// clone is an equal handle to the same connections or state, so this changes nothing;
/// changes made through [`get_mut`](Self::get_mut) reach first attempts only.
///
/// [`poll_ready`]: Service::poll_ready
/// [`Layer::layer`]: tower_layer::Layer::layer
pub struct Retry<S, C> {
    pub(crate) inner: S,
    pub(crate) lanes: Arc<Lanes<Shared<C>, Prototype<S>>>,
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            lanes: self.lanes.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("name", &self.lanes.name)
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
        let arc = self.lanes.lane_at(lane);
        let shared = &**self.lanes;
        // One atomic add: counts the request and deposits it (in a batch) into the budget.
        shared.tally.record(lane, shared.budget.as_ref());
        // The clock is read only when a total time bound or a per-attempt timeout needs the
        // call time (from the stack's shared read when there is one: `crate::clock`).
        let start = shared.needs_start.then(crate::clock::call_time);
        // The copy first (from the request as the caller gave it), then the call.
        let replays = shared.policy.replays();
        let request = if replays && shared.classifier.may_retry(&req) {
            replay_copy(&req)
        } else if replays {
            reroute_copy(&req)
        } else {
            None
        };
        let fut = self.inner.call(req);
        // Unlike tower's `Retry`, no clone of the service for the future: a retry clones its
        // lane's copy (see the type's docs).
        ResponseFuture::new(fut, arc, request, start)
    }
}

/// `Some` copy of `req`. Out of line on purpose: called with the destination as its return
/// slot, the clone is written in place, where `Some(req.clone())` inline in one branch of
/// `call` was cloned into a temporary and copied (one more `memcpy` of the request per call).
#[inline(never)]
fn replay_copy<Req: Clone>(req: &Req) -> Option<Req> {
    Some(req.clone())
}

/// A request the classifier will not replay: a copy only if it names a fallback, to reroute
/// it after a local rejection (it never reached its target then; see `crate::route`). The
/// future asks the classifier's `may_retry` again on the copy before any other retry.
#[cold]
#[inline(never)]
fn reroute_copy<Req: Clone + HasExtensions>(req: &Req) -> Option<Req> {
    if crate::target::has_fallback(req) {
        Some(req.clone())
    } else {
        None
    }
}
