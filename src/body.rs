//! [`GuardedBody`]: a response body that holds a guard until the body ends.
//!
//! A streamed response (an LLM answer, a large download) keeps using the backend for seconds
//! after its head arrives. The layers that measure that use (the circuit breaker's outcome,
//! the adaptive limiter's slot) hand their guard to the body, which gives it back when the
//! body ends: cleanly, with an error, or by being dropped unfinished.
//!
//! [`circuit_breaker::http::ObservedBody`](crate::circuit_breaker::http::ObservedBody) and
//! [`concurrency::PermitBody`](crate::concurrency::PermitBody) are this type with their
//! layer's permit.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// What a [`GuardedBody`] holds until its end. Sealed: implemented by the crate's permits.
pub trait BodyGuard: sealed::Sealed {
    /// The body ended: cleanly, or with an error (`errored`). A guard dropped without this
    /// call (the body was dropped unfinished) handles that in its own `Drop`.
    #[doc(hidden)]
    fn body_ended(self, errored: bool);
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

pin_project! {
    /// A response body that holds a [`BodyGuard`] until the body ends (see the
    /// [module docs](self)).
    #[derive(Debug)]
    pub struct GuardedBody<B, G> {
        #[pin]
        inner: B,
        guard: Option<G>,
    }
}

impl<B, G> GuardedBody<B, G> {
    /// Wraps `inner`; `guard` is `None` when there is nothing left to hold (the body had
    /// already ended when the head arrived).
    pub(crate) fn new(inner: B, guard: Option<G>) -> Self {
        Self { inner, guard }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: Body, G: BodyGuard> Body for GuardedBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let errored = match &frame {
            None => false,
            Some(Err(_)) => true,
            Some(Ok(_)) => return Poll::Ready(frame),
        };
        if let Some(g) = this.guard.take() {
            g.body_ended(errored);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
