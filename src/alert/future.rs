//! The response future of [`AlertService`](super::AlertService).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crate::clock::{self, Stamp};
use crate::lane::Lane;
use pin_project_lite::pin_project;

use super::classify::Classify;
use super::shared::Shared;

/// Records the call's outcome when it completes, or a cancellation when dropped first.
pub(crate) struct Recording {
    pub(crate) shared: Arc<Lane<Shared>>,
    pub(crate) slot: u32,
    /// The thread index the call started on: its stripe of the totals.
    pub(crate) lane: usize,
    pub(crate) start: Stamp,
    pub(crate) done: bool,
}

impl Drop for Recording {
    fn drop(&mut self) {
        if !self.done {
            self.shared.cancel(self.slot, self.lane);
        }
    }
}

pin_project! {
    /// Response future of [`AlertService`](super::AlertService): records latency and outcome
    /// when the inner future completes; a future dropped before completing counts as cancelled.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        rec: Recording,
        classify: C,
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, rec: Recording, classify: C) -> Self {
        Self {
            inner,
            rec,
            classify,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        clock::before_poll();
        let out = ready!(this.inner.poll(cx));
        if !this.rec.done {
            this.rec.done = true;
            let failed = this.classify.is_failure(&out);
            this.rec
                .shared
                .complete(this.rec.slot, this.rec.lane, this.rec.start, failed);
        }
        Poll::Ready(out)
    }
}
