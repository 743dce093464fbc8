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
use super::mode::ResponseEnd;
use super::policy::ShedReason;
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
    impl Sealed for crate::concurrency::mode::BodyEnd {}
}

impl<R> Finish<R> for ResponseEnd {
    type Output = R;
    #[inline]
    fn finish(res: R, permit: Permit) -> R {
        permit.complete(false);
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

/// Where a [`ResponseFuture`] stands. One enum rather than an `Option` per part keeps the
/// future small (it is moved into place on every call) and its drop to one match.
enum State {
    /// Admitted: the permit is held until the inner future completes.
    Admitted(Permit),
    /// A Critical request waiting in the queue; `err` is answered on timeout.
    Waiting {
        wait: Pin<Box<Wait>>,
        err: Overloaded,
    },
    /// Refused: answered at the first poll.
    Refused(Overloaded),
    /// Completed.
    Done,
}

pin_project! {
    /// The response future of [`AdaptiveConcurrency`](super::AdaptiveConcurrency): the
    /// permit lives in it, so dropping the future at any point returns the slot.
    pub struct ResponseFuture<F, M = ResponseEnd> {
        // Declared first so that it is dropped before the permit.
        #[pin]
        fut: Option<F>,
        state: State,
        _mode: PhantomData<fn() -> M>,
    }
}

impl<F, M> fmt::Debug for ResponseFuture<F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        match &self.state {
            State::Admitted(p) => d.field("permit", p),
            State::Waiting { err, .. } => d.field("waiting", &true).field("error", err),
            State::Refused(err) => d.field("error", err),
            State::Done => d.field("done", &true),
        };
        d.finish()
    }
}

impl<F, M> ResponseFuture<F, M> {
    #[inline]
    pub(crate) fn admitted(fut: F, permit: Permit) -> Self {
        Self {
            fut: Some(fut),
            state: State::Admitted(permit),
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
            state: State::Waiting {
                wait: Box::pin(Wait {
                    rx,
                    sleep: tokio::time::sleep(timeout),
                    shared,
                }),
                err,
            },
            _mode: PhantomData,
        }
    }

    pub(crate) fn rejected(err: Overloaded) -> Self {
        Self {
            fut: None,
            state: State::Refused(err),
            _mode: PhantomData,
        }
    }
}

const POLLED_AFTER_COMPLETION: &str = "adaptive concurrency future polled after completion";

impl<F, M, R, E> Future for ResponseFuture<F, M>
where
    F: Future<Output = Result<R, E>>,
    E: Into<tower::BoxError>,
    M: Finish<R>,
{
    type Output = Result<M::Output, tower::BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.state {
            State::Admitted(_) => {}
            State::Waiting { wait, .. } => match poll_wait(wait.as_mut(), cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(permit)) => *this.state = State::Admitted(permit),
                Poll::Ready(None) => {
                    this.fut.set(None);
                    return Poll::Ready(Err(match std::mem::replace(this.state, State::Done) {
                        State::Waiting { err, .. } => err.into(),
                        _ => POLLED_AFTER_COMPLETION.into(),
                    }));
                }
            },
            State::Refused(_) => {
                return Poll::Ready(Err(match std::mem::replace(this.state, State::Done) {
                    State::Refused(err) => err.into(),
                    _ => POLLED_AFTER_COMPLETION.into(),
                }));
            }
            State::Done => return Poll::Ready(Err(POLLED_AFTER_COMPLETION.into())),
        }
        // Invariant: `fut` is Some while the state is `Admitted` (both are replaced
        // together below).
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(POLLED_AFTER_COMPLETION.into()));
        };
        if matches!(this.state, State::Admitted(p) if p.timed()) {
            crate::clock::before_poll();
        }
        let res = ready!(fut.poll(cx));
        this.fut.set(None);
        let State::Admitted(permit) = std::mem::replace(this.state, State::Done) else {
            return Poll::Ready(Err("adaptive concurrency future lost its permit".into()));
        };
        Poll::Ready(match res {
            Ok(r) => Ok(M::finish(r, permit)),
            Err(e) => {
                let as_drop = permit.errors_as_drops();
                permit.complete(as_drop);
                Err(e.into())
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
    proj.shared.count_shed(
        crate::priority::Priority::Critical,
        ShedReason::QueueTimeout,
    );
    Poll::Ready(None)
}
