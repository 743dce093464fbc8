//! Response futures.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::error::Overloaded;
use super::policy::ShedReason;
use super::service::ResponseEnd;
use super::state::{Permit, Shared};

/// Turns the inner response into the layer's response, deciding how long the permit lives.
pub trait Finish<R>: sealed::Sealed {
    /// The response type.
    type Output;
    #[doc(hidden)]
    fn finish(res: R, permit: Permit) -> Self::Output;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ResponseEnd {}
    #[cfg(feature = "http")]
    impl Sealed for super::super::service::BodyEnd {}
}

impl<R> Finish<R> for ResponseEnd {
    type Output = R;
    fn finish(res: R, mut permit: Permit) -> R {
        permit.completed_now();
        permit.finish(false);
        drop(permit);
        res
    }
}

pin_project! {
    /// A Critical request waiting in the queue (boxed: the slow path only).
    struct Wait {
        rx: oneshot::Receiver<Permit>,
        #[pin]
        sleep: Sleep,
        shared: Arc<Shared>,
    }
}

pin_project! {
    /// The response future of [`AdaptiveConcurrency`](super::AdaptiveConcurrency): the
    /// permit lives in it, so dropping the future at any point returns the slot.
    pub struct ResponseFuture<F, M = ResponseEnd> {
        #[pin]
        fut: Option<F>,
        permit: Option<Permit>,
        wait: Option<Pin<Box<Wait>>>,
        error: Option<Overloaded>,
        _mode: PhantomData<fn() -> M>,
    }
}

impl<F, M> fmt::Debug for ResponseFuture<F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("permit", &self.permit)
            .field("waiting", &self.wait.is_some())
            .field("error", &self.error)
            .finish()
    }
}

impl<F, M> ResponseFuture<F, M> {
    pub(crate) fn admitted(fut: F, permit: Permit) -> Self {
        Self {
            fut: Some(fut),
            permit: Some(permit),
            wait: None,
            error: None,
            _mode: PhantomData,
        }
    }

    pub(crate) fn waiting(
        fut: F,
        rx: oneshot::Receiver<Permit>,
        err: Overloaded,
        shared: Arc<Shared>,
    ) -> Self {
        let timeout = shared.queue_timeout();
        Self {
            fut: Some(fut),
            permit: None,
            wait: Some(Box::pin(Wait {
                rx,
                sleep: tokio::time::sleep(timeout),
                shared,
            })),
            error: Some(err),
            _mode: PhantomData,
        }
    }

    pub(crate) fn rejected(err: Overloaded) -> Self {
        Self {
            fut: None,
            permit: None,
            wait: None,
            error: Some(err),
            _mode: PhantomData,
        }
    }
}

impl<F, M, R, E> Future for ResponseFuture<F, M>
where
    F: Future<Output = Result<R, E>>,
    E: Into<tower::BoxError>,
    M: Finish<R>,
{
    type Output = Result<M::Output, tower::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(w) = this.wait.as_mut() {
            let w = w.as_mut();
            match poll_wait(w, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(permit)) => {
                    *this.permit = Some(permit);
                    *this.wait = None;
                    *this.error = None;
                }
                Poll::Ready(None) => {
                    *this.wait = None;
                    this.fut.set(None);
                    let err = this.error.take();
                    return Poll::Ready(Err(match err {
                        Some(e) => e.into(),
                        None => "adaptive concurrency future polled after completion".into(),
                    }));
                }
            }
        }
        if let Some(e) = this.error.take() {
            return Poll::Ready(Err(e.into()));
        }
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(
                "adaptive concurrency future polled after completion".into()
            ));
        };
        if this.permit.as_ref().is_some_and(Permit::timed) {
            crate::clock::before_poll();
        }
        let res = ready!(fut.poll(cx));
        this.fut.set(None);
        let permit = this.permit.take();
        Poll::Ready(match (res, permit) {
            (Ok(r), Some(p)) => Ok(M::finish(r, p)),
            (Err(e), Some(mut p)) => {
                p.completed_now();
                let as_drop = p.errors_as_drops();
                p.finish(as_drop);
                Err(e.into())
            }
            // Invariant: `fut` is only Some together with a permit once `wait` is resolved.
            (Ok(_), None) | (Err(_), None) => {
                Err("adaptive concurrency future lost its permit".into())
            }
        })
    }
}

/// `Some(permit)` when granted, `None` on timeout; counts the timeout as a shed.
fn poll_wait(w: Pin<&mut Wait>, cx: &mut Context<'_>) -> Poll<Option<Permit>> {
    let proj = w.project();
    if let Poll::Ready(r) = Pin::new(proj.rx).poll(cx) {
        return Poll::Ready(r.ok());
    }
    ready!(proj.sleep.poll(cx));
    proj.shared
        .count_shed(crate::Priority::Critical, ShedReason::QueueTimeout);
    Poll::Ready(None)
}
