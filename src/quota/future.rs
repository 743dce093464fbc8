//! The response future of [`Quota`](super::Quota).
//!
//! A throttled request admitted with a delay has its slot reserved in the bucket at `call`
//! time; the inner future is created then too but is not polled until the delay elapses
//! (lazy futures such as axum handlers do no work before their first poll). The tenant's
//! in-flight permit is released when the inner future completes or the response future is
//! dropped (not at the end of a streamed response body).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::BoxError;

use super::state::{Permit, Refused};

pin_project! {
    #[project = DelayProj]
    enum Delay {
        None,
        Sleep { #[pin] sleep: Sleep },
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] fut: F },
        Rejected { err: Option<Refused> },
    }
}

pin_project! {
    /// The response future: the inner call (after a throttle delay, if any), holding the
    /// tenant's in-flight permit until it completes or is dropped; or the rejection.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        #[pin]
        delay: Delay,
        permit: Option<Permit>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(fut: F, permit: Permit, sleep: Option<Sleep>) -> Self {
        Self {
            kind: Kind::Called { fut },
            delay: match sleep {
                Some(sleep) => Delay::Sleep { sleep },
                None => Delay::None,
            },
            permit: Some(permit),
        }
    }

    pub(crate) fn rejected(err: Refused) -> Self {
        Self {
            kind: Kind::Rejected { err: Some(err) },
            delay: Delay::None,
            permit: None,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let DelayProj::Sleep { sleep } = this.delay.as_mut().project() {
            ready!(sleep.poll(cx));
            this.delay.set(Delay::None);
        }
        match this.kind.project() {
            KindProj::Called { fut } => {
                let out = ready!(fut.poll(cx));
                this.permit.take();
                Poll::Ready(out.map_err(Into::into))
            }
            KindProj::Rejected { err } => Poll::Ready(Err(match err.take() {
                Some(e) => e.into(),
                None => "quota future polled after completion".into(),
            })),
        }
    }
}
