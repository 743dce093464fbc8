//! The response future of [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::BoxError;
use tower_service::Service;

use super::classify::{Classify, Verdict};
use super::error::AttemptTimedOut;
use super::policy::{Failed, StopReason};
use super::pushback::Pushback;
use super::shared::{Prototype, Shared};
use crate::constraints::Constraints;
use crate::constraints::HasExtensions;
use crate::event::{Event, RetryEvent, RetryEventKind};
use crate::lane::Lane;
use crate::outcome::circuit::CircuitOpen;
use crate::outcome::find;
use crate::outcome::shed::Overloaded;

pin_project! {
    /// The response future of [`Retry`](super::Retry): drives attempts, waits and pushback.
    /// Everything that only a retry or a per-attempt timeout needs (the timer, armed for the
    /// attempt's deadline or the backoff; the failed result kept while waiting; the previous
    /// delay; the service retries call) lives in one box, created for the first backoff wait
    /// or for a per-attempt timeout on an attempt that is still pending after its first
    /// poll, and reused for the rest of the request. A first attempt that succeeds without
    /// waiting on a timer allocates nothing, and the future stays small (it is moved through
    /// every layer around it). Dropping it at any point cancels the attempt in flight and
    /// the wait; nothing is held elsewhere.
    #[project = Proj]
    pub struct ResponseFuture<S, C, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        slow: Option<Pin<Box<Slow<S::Response, S>>>>,
        shared: Arc<Lane<Shared<C>, Prototype<S>>>,
        // A copy for the next attempt; `None` when the request may not be retried.
        request: Option<Req>,
        // The call time, when a total time bound or a per-attempt timeout needs it.
        start: Option<Instant>,
        attempts: u32,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] fut: F },
        // Waiting for the backoff (the failed result is in `Slow::last`).
        Waiting,
        // Waiting for the service to be ready for the next attempt.
        Retrying,
    }
}

pin_project! {
    /// The part of the future only retries and per-attempt timeouts need (see
    /// [`ResponseFuture`]).
    struct Slow<R, S> {
        // Armed for the attempt's deadline while an attempt runs (with a per-attempt
        // timeout), for the backoff while waiting.
        #[pin]
        timer: Sleep,
        // The failed result, returned if retrying is called off while waiting.
        last: Option<Result<R, BoxError>>,
        previous: Duration,
        // The service retries call: a clone of the lane's copy, made for the first retry
        // (see `Retry`).
        service: Option<S>,
    }
}

impl<R, S> Slow<R, S> {
    fn boxed(at: Instant) -> Pin<Box<Self>> {
        Box::pin(Slow {
            timer: tokio::time::sleep_until(at),
            last: None,
            previous: Duration::ZERO,
            service: None,
        })
    }
}

impl<S, C, Req> fmt::Debug for ResponseFuture<S, C, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Waiting => "waiting",
            State::Retrying => "retrying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl<S, C, Req> ResponseFuture<S, C, Req>
where
    S: Service<Req>,
    Req: Clone,
{
    /// The future of an attempt already called: `fut`, with `request` kept for retries. The
    /// caller builds the copy and the inner future as locals first, as tower's `Retry` does. Instruction counts when this was chosen (callgrind,
    /// `benches/retry.rs`'s loop mode, before the future was slimmed): 660 per successful
    /// call this way; 709 with the copy (by a closure) and the inner call both inside this
    /// function, 743 with both inside and a flag for the copy. Which moves of the request
    /// the optimiser keeps depends on this shape more than on what is moved.
    #[inline(always)]
    pub(crate) fn new(
        fut: S::Future,
        shared: Arc<Lane<Shared<C>, Prototype<S>>>,
        request: Option<Req>,
        start: Option<Instant>,
    ) -> Self {
        Self {
            state: State::Called { fut },
            slow: None,
            shared,
            request,
            start,
            attempts: 1,
        }
    }
}

impl<C> Shared<C> {
    fn emit(&self, kind: RetryEventKind, at: Instant) {
        self.events.emit(Event::Retry(RetryEvent {
            name: self.name.clone(),
            kind,
            at,
        }));
    }

    fn exhausted(&self, attempts: u32, reason: StopReason, at: Instant) {
        // Relaxed: a statistic (see `Counters`).
        self.counters.gave_up.fetch_add(1, Ordering::Relaxed);
        // Only after at least one retry: a first failure that is not retried is not an event
        // (under pressure that would be one event per request).
        if attempts >= 2 {
            self.emit(
                RetryEventKind::Exhausted {
                    attempts,
                    reason: Arc::from(reason.as_str()),
                },
                at,
            );
        }
    }
}

impl<S, C, Req> Future for ResponseFuture<S, C, Req>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone + HasExtensions,
    C: Classify<Req, S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    /// The success path is this function alone: poll the attempt, classify, return. Attempt
    /// timeouts, failures, waits and retries are in out-of-line functions, so this one stays
    /// small enough to inline and keeps a small stack frame.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let result = match this.state.project() {
                StateProj::Called { fut } => match fut.poll(cx) {
                    Poll::Ready(r) => r.map_err(Into::into),
                    Poll::Pending if this.shared.attempt_timeout.is_none() => {
                        return Poll::Pending;
                    }
                    Poll::Pending => ready!(self.as_mut().poll_attempt_timeout(cx)),
                },
                _ => {
                    if let Some(out) = ready!(self.as_mut().poll_between(cx)) {
                        return Poll::Ready(out);
                    }
                    continue;
                }
            };
            match self.shared.classifier.classify(&result) {
                Verdict::Done if result.is_ok() => return Poll::Ready(result),
                // An error the classifier calls final may be a local rejection (an open
                // breaker, shedding) the request names a fallback for.
                Verdict::Done => {
                    if let Some(out) = self.as_mut().rejected(result) {
                        return Poll::Ready(out);
                    }
                }
                Verdict::Retry { reason, pushback } => {
                    if let Some(out) = self.as_mut().failed(result, reason, pushback, false) {
                        return Poll::Ready(out);
                    }
                }
            }
        }
    }
}

impl<S, C, Req> ResponseFuture<S, C, Req>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    Req: Clone + HasExtensions,
    C: Classify<Req, S::Response>,
{
    /// An attempt is pending and a per-attempt timeout is set: its error once it fires.
    #[inline(never)]
    fn poll_attempt_timeout(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Response, BoxError>> {
        let this = self.project();
        let timeout = this.shared.attempt_timeout.unwrap_or_default();
        let slow = this.slow.get_or_insert_with(|| {
            // The first attempt, still pending: its deadline counts from the call (`start`
            // is read whenever a per-attempt timeout is set).
            let deadline = crate::clock::deadline(this.start.unwrap_or_else(Instant::now), timeout);
            Slow::boxed(deadline)
        });
        // Armed for this attempt's deadline: here at the first attempt, by the retry for
        // later ones.
        ready!(slow.as_mut().project().timer.poll(cx));
        Poll::Ready(Err(AttemptTimedOut::new(timeout, *this.attempts).into()))
    }

    /// An attempt failed with an error the classifier does not retry: if it is a local
    /// rejection (`CircuitOpen`, `Overloaded`) and the request names a fallback it has not
    /// tried, the next attempt goes there at once (see `crate::route`); otherwise the result
    /// is returned.
    #[inline(never)]
    fn rejected(
        mut self: Pin<&mut Self>,
        result: Result<S::Response, BoxError>,
    ) -> Option<Result<S::Response, BoxError>> {
        let reason = match &result {
            Err(e) => local_rejection(e),
            Ok(_) => None,
        };
        let Some(reason) = reason else {
            return Some(result);
        };
        let this = self.as_mut().project();
        if !this.request.as_mut().is_some_and(crate::target::reroute) {
            return Some(result);
        }
        self.failed(result, reason, Pushback::None, true)
    }

    /// An attempt failed with a retryable `result` (or, `reroute`, a local rejection whose
    /// copy now points at a fallback): either the result to return (retrying stops) or
    /// `None` with the wait before the next attempt set up.
    #[inline(never)]
    fn failed(
        self: Pin<&mut Self>,
        result: Result<S::Response, BoxError>,
        reason: &'static str,
        pushback: Pushback,
        reroute: bool,
    ) -> Option<Result<S::Response, BoxError>> {
        let mut this = self.project();
        let shared = &**this.shared;
        let copy = match this.request.as_ref() {
            // A copy the classifier would not replay was kept for reroutes only (see
            // `Retry::call`): the target's own errors are final for this request.
            Some(req) if !reroute && !shared.classifier.may_retry(req) => None,
            copy => copy,
        };
        let Some(req) = copy else {
            // No copy kept: the request may not be replayed, or this was the last allowed
            // attempt.
            if *this.attempts >= shared.policy.load().max_attempts {
                shared.exhausted(*this.attempts, StopReason::MaxAttempts, Instant::now());
            }
            return Some(result);
        };
        let now = Instant::now();
        let failed = Failed {
            attempts: *this.attempts,
            now,
            start: this.start.unwrap_or(now),
            deadline: Constraints::from_request(req).and_then(|c| c.deadline()),
            level: shared.monitor.level(),
            pushback,
            previous: this.slow.as_ref().map_or(Duration::ZERO, |s| s.previous),
            immediate: reroute,
        };
        let delay = match shared.policy.load().next_delay(&failed, &*shared.rng) {
            Ok(d) => d,
            Err(stop) => {
                shared.exhausted(*this.attempts, stop, now);
                return Some(result);
            }
        };
        if let Some(budget) = &shared.budget {
            // This layer's pending first attempts reach the budget before it is asked.
            shared.tally.flush(Some(budget), Some(now));
            if !budget.withdraw_at(now) {
                if let Some(count) = budget.note_refusal(now) {
                    shared.emit(RetryEventKind::BudgetExhausted { count }, now);
                }
                shared.exhausted(*this.attempts, StopReason::Budget, now);
                // The original result, not a new error.
                return Some(result);
            }
        }
        shared.emit(
            RetryEventKind::Attempt {
                attempt: *this.attempts + 1,
                delay,
                reason: Arc::from(reason),
            },
            now,
        );
        // Saturating: the builder bounds every configured wait, but a delay is never added
        // to an `Instant` unchecked on the request path.
        let wake = crate::clock::deadline(now, delay);
        let slow = match this.slow {
            Some(slow) => {
                slow.as_mut().project().timer.reset(wake);
                slow
            }
            None => this.slow.insert(Slow::boxed(wake)),
        };
        let slow = slow.as_mut().project();
        *slow.previous = delay;
        *slow.last = Some(result);
        this.state.set(State::Waiting);
        None
    }

    /// Waiting for the backoff, then for the service, then the next attempt: `Some` result to
    /// return when retrying is called off, `None` once the next attempt is called.
    #[inline(never)]
    fn poll_between(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<S::Response, BoxError>>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { .. } => return Poll::Ready(None),
                StateProj::Waiting => {
                    let shared = &**this.shared;
                    let last = match this.slow.as_mut() {
                        Some(slow) => {
                            let slow = slow.as_mut().project();
                            ready!(slow.timer.poll(cx));
                            slow.last
                        }
                        // Unreachable: `Waiting` is only entered with the box made. Fail
                        // rather than panic.
                        None => return Poll::Ready(Some(Err("retry lost its wait".into()))),
                    };
                    let level = shared.monitor.level();
                    if level >= shared.policy.load().no_retry_at {
                        // Pressure rose while waiting: call the retry off.
                        shared.exhausted(
                            *this.attempts,
                            StopReason::Pressure(level),
                            Instant::now(),
                        );
                        if let Some(last) = last.take() {
                            return Poll::Ready(Some(last));
                        }
                    }
                    // Release the failed response (a connection, a body) before retrying.
                    *last = None;
                    this.state.set(State::Retrying);
                }
                StateProj::Retrying => {
                    let Some(slow) = this.slow.as_mut() else {
                        // Unreachable: `Retrying` is only entered from `Waiting`, which has
                        // the box. Fail rather than panic.
                        return Poll::Ready(Some(Err("retry lost its wait".into())));
                    };
                    let mut slow = slow.as_mut().project();
                    let service = slow
                        .service
                        .get_or_insert_with(|| this.shared.local().get());
                    if let Err(e) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    let Some(req) = this.request.take() else {
                        // Unreachable: `Waiting` is only entered with a request kept. Fail
                        // rather than panic.
                        return Poll::Ready(Some(Err("retry lost its request".into())));
                    };
                    *this.attempts += 1;
                    this.shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                    if *this.attempts < this.shared.policy.load().max_attempts {
                        *this.request = Some(req.clone());
                    }
                    if let Some(t) = this.shared.attempt_timeout {
                        // The backoff's timer is re-armed for this attempt.
                        let deadline = crate::clock::deadline(Instant::now(), t);
                        slow.timer.as_mut().reset(deadline);
                    }
                    let fut = service.call(req);
                    this.state.set(State::Called { fut });
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// Which of the crate's local rejections `err` is, if any (anywhere in its `source()`
/// chain, as the fallback layer's triggers look for them).
fn local_rejection(err: &BoxError) -> Option<&'static str> {
    if find::<CircuitOpen>(&**err).is_some() {
        Some("circuit open: rerouted to a fallback")
    } else if find::<Overloaded>(&**err).is_some() {
        Some("overloaded: rerouted to a fallback")
    } else {
        None
    }
}
