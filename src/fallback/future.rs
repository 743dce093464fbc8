//! Response futures of [`Fallback`](super::Fallback) and of its strategies. Hand-written, no
//! `Box::pin`: the success path polls the primary's future in place.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::BoxError;
use tower::util::Oneshot;
use tower_service::Service;

use super::shared::Shared;
use super::strategy::{QueueSlot, Strategy};
use super::trigger::{FallbackFailed, FallbackUsed, Mark, Trigger};

pin_project! {
    /// The response future of [`Fallback`](super::Fallback): the primary's future, then, if
    /// it failed and the strategy applies, the strategy's future. Dropping it at any point
    /// drops whatever runs (a queue place is released).
    pub struct ResponseFuture<S, St, T, M, Req>
    where
        S: Service<Req>,
        St: Strategy<S, Req>,
    {
        #[pin]
        state: State<S::Future, St::Future>,
        kept: Option<St::Kept>,
        // The primary's failure (an error, or a response the trigger called a failure),
        // kept while the fallback runs: returned or wrapped if the fallback fails. (A failed
        // HTTP response keeps its connection until then; its body is usually tiny.)
        original: Option<Result<S::Response, BoxError>>,
        age: Option<Duration>,
        shared: Arc<Shared<St, T, M>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, G> {
        Primary { #[pin] fut: F },
        Fallback { #[pin] fut: G },
        Done,
    }
}

impl<S, St, T, M, Req> fmt::Debug for ResponseFuture<S, St, T, M, Req>
where
    S: Service<Req>,
    St: Strategy<S, Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Primary { .. } => "primary",
            State::Fallback { .. } => "fallback",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("strategy", &self.shared.strategy.kind())
            .finish()
    }
}

impl<S, St, T, M, Req> ResponseFuture<S, St, T, M, Req>
where
    S: Service<Req>,
    St: Strategy<S, Req>,
{
    pub(crate) fn new(fut: S::Future, kept: St::Kept, shared: Arc<Shared<St, T, M>>) -> Self {
        Self {
            state: State::Primary { fut },
            kept: Some(kept),
            original: None,
            age: None,
            shared,
        }
    }
}

impl<S, St, T, M, Req> Future for ResponseFuture<S, St, T, M, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    St: Strategy<S, Req>,
    T: Trigger<S::Response>,
    M: Mark<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.state.as_mut().project() {
            StateProj::Primary { fut } => {
                let result = ready!(fut.poll(cx)).map_err(Into::into);
                let shared = &**this.shared;
                // The failure as an error for the strategy, and a failed response (returned
                // as is when no fallback answers).
                let (failure, response): (BoxError, Option<S::Response>) = match result {
                    Ok(res) => match shared.trigger.on_response(&res) {
                        None => {
                            if let Some(kept) = this.kept.take() {
                                shared.strategy.succeeded(kept, &res);
                            }
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(res));
                        }
                        Some(failed) => (Box::new(failed), Some(res)),
                    },
                    Err(e) => {
                        if !shared.trigger.on_error(&e) {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e));
                        }
                        (e, None)
                    }
                };
                let started = match this.kept.take() {
                    Some(kept) => shared.strategy.start(kept, &failure),
                    // Unreachable: `kept` is only taken here, once.
                    None => Err("polled after completion"),
                };
                match started {
                    Ok((fut, age)) => {
                        shared.used(&failure);
                        *this.age = age;
                        *this.original = Some(response.ok_or(failure));
                        this.state.set(State::Fallback { fut });
                    }
                    Err(why) => {
                        shared.declined(why);
                        this.state.set(State::Done);
                        // The original failure, never swallowed.
                        return Poll::Ready(response.ok_or(failure));
                    }
                }
            }
            StateProj::Fallback { .. } => {}
            StateProj::Done => {
                return Poll::Ready(Err("fallback future polled after completion".into()));
            }
        }
        let StateProj::Fallback { fut } = this.state.as_mut().project() else {
            return Poll::Pending; // unreachable: set just above
        };
        let result = ready!(fut.poll(cx));
        this.state.set(State::Done);
        let shared = &**this.shared;
        let kind = shared.strategy.kind();
        let original = this.original.take();
        Poll::Ready(match result {
            Ok(mut res) => {
                // A queued retry (or an alternate provider) may answer a failure again: hand it
                // over unmarked, and count the fallback as failed.
                if shared.trigger.on_response(&res).is_none() {
                    shared
                        .marker
                        .mark(&mut res, &FallbackUsed::new(kind, *this.age));
                } else {
                    shared.failed();
                }
                Ok(res)
            }
            Err(e) => {
                shared.failed();
                if kind == "queue" {
                    // The primary's own fresh error, not a fallback's.
                    Err(e)
                } else {
                    match original {
                        // A failed response stays the answer.
                        Some(Ok(res)) => Ok(res),
                        Some(Err(primary)) => Err(FallbackFailed::new(primary, e, kind).into()),
                        None => Err(e),
                    }
                }
            }
        })
    }
}

pin_project! {
    /// The future of [`ServiceFallback`](super::ServiceFallback): the alternate service driven
    /// to readiness, then called; its error boxed.
    pub struct ServiceFuture<F, Req>
    where
        F: Service<Req>,
    {
        #[pin]
        inner: Oneshot<F, Req>,
    }
}

impl<F: Service<Req>, Req> ServiceFuture<F, Req> {
    pub(crate) fn new(inner: Oneshot<F, Req>) -> Self {
        Self { inner }
    }
}

impl<F: Service<Req>, Req> fmt::Debug for ServiceFuture<F, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceFuture").finish_non_exhaustive()
    }
}

impl<F, Req> Future for ServiceFuture<F, Req>
where
    F: Service<Req>,
    F::Error: Into<BoxError>,
{
    type Output = Result<F::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(Into::into)
    }
}

pin_project! {
    /// The future of [`QueueFallback`](super::QueueFallback): waits, holding a queue place,
    /// then drives the primary to readiness and calls it once more.
    pub struct QueueFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        sleep: Sleep,
        #[pin]
        call: Option<S::Future>,
        service: S,
        req: Option<Req>,
        slot: Option<QueueSlot>,
    }
}

impl<S: Service<Req>, Req> QueueFuture<S, Req> {
    pub(crate) fn new(wake: Instant, service: S, req: Req, slot: QueueSlot) -> Self {
        Self {
            sleep: tokio::time::sleep_until(wake),
            call: None,
            service,
            req: Some(req),
            slot: Some(slot),
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for QueueFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueFuture")
            .field("waiting", &self.slot.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, Req> Future for QueueFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(fut) = this.call.as_mut().as_pin_mut() {
            return fut.poll(cx).map_err(Into::into);
        }
        if this.slot.is_some() {
            ready!(this.sleep.poll(cx));
            // The wait is over: free the place for another request.
            *this.slot = None;
        }
        ready!(this.service.poll_ready(cx)).map_err(Into::into)?;
        let Some(req) = this.req.take() else {
            return Poll::Ready(Err("queued request already sent".into()));
        };
        let fut = this.service.call(req);
        this.call.set(Some(fut));
        match this.call.as_pin_mut() {
            Some(fut) => fut.poll(cx).map_err(Into::into),
            None => Poll::Pending, // unreachable: set just above
        }
    }
}
