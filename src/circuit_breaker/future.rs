//! The response future and the permit guard.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::BoxError;

use super::classify::Complete;
use super::error::CircuitOpen;
use super::lane::Lane;
use super::state::{Now, Outcome, Ticket, TicketKind};

/// An admitted call's claim on the breaker: its outcome is recorded through it, and dropping
/// it without an outcome (a cancelled call) records nothing and gives a HALF_OPEN probe slot
/// back. A permit belongs to the state generation it was issued in: a late outcome from an
/// earlier open cycle can neither close nor re-open the current one.
pub struct Permit {
    /// The breaker's core through the calling thread's lane (it dereferences to the core):
    /// no reference count that every thread shares is touched per call (see `lane.rs`).
    core: Arc<Lane>,
    ticket: Ticket,
    done: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.core.cfg.name)
            .field("kind", &self.ticket.kind)
            .field("generation", &self.ticket.generation)
            .finish()
    }
}

impl Permit {
    pub(crate) fn new(core: Arc<Lane>, ticket: Ticket) -> Self {
        Self {
            core,
            ticket,
            done: false,
        }
    }

    /// Records the outcome.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        let mut now = Now::lazy(self.core.epoch);
        self.core.on_result(self.ticket, outcome, &mut now);
    }

    /// Records a success.
    pub fn success(self) {
        self.record(Outcome::Success)
    }

    /// Records a failure.
    pub fn failure(self) {
        self.record(Outcome::Failure)
    }

    /// Whether this is a HALF_OPEN probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.kind == TicketKind::Probe
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.core.release(self.ticket);
        }
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](super::CircuitBreaker): the inner future with
    /// its permit, or an immediate rejection. No allocation when admitted.
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = Proj]
    #[derive(Debug)]
    enum State<F, C> {
        Called {
            #[pin]
            fut: F,
            permit: Option<Permit>,
            classifier: C,
            // Whether this call owns the shared completion time (`crate::clock`).
            owner: bool,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(fut: F, permit: Permit, classifier: C, owner: bool) -> Self {
        Self {
            state: State::Called {
                fut,
                permit: Some(permit),
                classifier,
                owner,
            },
        }
    }
    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Complete<Res, E>,
{
    type Output = Result<C::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Proj::Called {
                fut,
                permit,
                classifier,
                owner,
            } => {
                crate::clock::before_poll();
                let res = ready!(fut.poll(cx));
                match permit.take() {
                    Some(p) => {
                        // Recording now reads the completion time shared along the stack.
                        let _section = crate::clock::Completing::enter(*owner);
                        Poll::Ready(classifier.complete(res, p).map_err(Into::into))
                    }
                    None => {
                        Poll::Ready(Err("circuit breaker future polled after completion".into()))
                    }
                }
            }
            Proj::Rejected { error } => match error.take() {
                Some(e) => Poll::Ready(Err(Box::new(e))),
                None => Poll::Ready(Err("circuit breaker future polled after completion".into())),
            },
        }
    }
}
