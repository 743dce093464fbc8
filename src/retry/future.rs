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
use super::layer::Shared;
use super::policy::{Failed, StopReason};
use crate::Constraints;
use crate::constraints::HasExtensions;
use crate::event::{Event, RetryEvent, RetryEventKind};

pin_project! {
    /// The response future of [`Retry`](super::Retry): drives attempts, waits and pushback
    /// without allocating. Dropping it at any point cancels the attempt in flight and the
    /// wait; nothing is held elsewhere.
    pub struct ResponseFuture<S, C, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        // The per-attempt timeout while an attempt runs, the backoff while waiting.
        #[pin]
        timer: Option<Sleep>,
        service: S,
        shared: Arc<Shared<C>>,
        // A copy for the next attempt; `None` when the request may not be retried.
        request: Option<Req>,
        // The failed result kept while waiting, returned if retrying is called off.
        last: Option<Result<S::Response, BoxError>>,
        attempts: u32,
        start: Option<Instant>,
        previous: Duration,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] fut: F },
        Waiting,
        Retrying,
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
{
    pub(crate) fn new(
        fut: S::Future,
        service: S,
        shared: Arc<Shared<C>>,
        request: Option<Req>,
        start: Option<Instant>,
    ) -> Self {
        let timer = shared.policy.attempt_timeout.map(tokio::time::sleep);
        Self {
            state: State::Called { fut },
            timer,
            service,
            shared,
            request,
            last: None,
            attempts: 1,
            start,
            previous: Duration::ZERO,
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
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: Clone + HasExtensions,
    C: Classify<Req, S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { fut } => {
                    let result = match fut.poll(cx) {
                        Poll::Ready(r) => r.map_err(Into::into),
                        Poll::Pending => match this.timer.as_mut().as_pin_mut() {
                            Some(t) => {
                                ready!(t.poll(cx));
                                let timeout =
                                    this.shared.policy.attempt_timeout.unwrap_or_default();
                                Err(AttemptTimedOut::new(timeout, *this.attempts).into())
                            }
                            None => return Poll::Pending,
                        },
                    };
                    let shared = &**this.shared;
                    let (reason, pushback) = match shared.classifier.classify(&result) {
                        Verdict::Done => return Poll::Ready(result),
                        Verdict::Retry { reason, pushback } => (reason, pushback),
                    };
                    let Some(req) = this.request.as_ref() else {
                        // No copy kept: the request may not be replayed, or this was the
                        // last allowed attempt.
                        if *this.attempts >= shared.policy.max_attempts {
                            shared.exhausted(
                                *this.attempts,
                                StopReason::MaxAttempts,
                                Instant::now(),
                            );
                        }
                        return Poll::Ready(result);
                    };
                    let now = Instant::now();
                    let failed = Failed {
                        attempts: *this.attempts,
                        now,
                        start: this.start.unwrap_or(now),
                        deadline: Constraints::from_request(req).and_then(|c| c.deadline()),
                        level: shared.monitor.level(),
                        pushback,
                        previous: *this.previous,
                    };
                    let delay = match shared.policy.next_delay(&failed, &*shared.rng) {
                        Ok(d) => d,
                        Err(stop) => {
                            shared.exhausted(*this.attempts, stop, now);
                            return Poll::Ready(result);
                        }
                    };
                    if let Some(budget) = &shared.budget
                        && !budget.withdraw_at(now)
                    {
                        if let Some(count) = budget.note_refusal(now) {
                            shared.emit(RetryEventKind::BudgetExhausted { count }, now);
                        }
                        shared.exhausted(*this.attempts, StopReason::Budget, now);
                        // The original result, not a new error.
                        return Poll::Ready(result);
                    }
                    shared.emit(
                        RetryEventKind::Attempt {
                            attempt: *this.attempts + 1,
                            delay,
                            reason: Arc::from(reason),
                        },
                        now,
                    );
                    *this.previous = delay;
                    *this.last = Some(result);
                    let wake = now + delay;
                    match this.timer.as_mut().as_pin_mut() {
                        Some(t) => t.reset(wake),
                        None => this.timer.set(Some(tokio::time::sleep_until(wake))),
                    }
                    this.state.set(State::Waiting);
                }
                StateProj::Waiting => {
                    if let Some(t) = this.timer.as_mut().as_pin_mut() {
                        ready!(t.poll(cx));
                    }
                    let shared = &**this.shared;
                    let level = shared.monitor.level();
                    if level >= shared.policy.no_retry_at {
                        // Pressure rose while waiting: call the retry off.
                        shared.exhausted(
                            *this.attempts,
                            StopReason::Pressure(level),
                            Instant::now(),
                        );
                        if let Some(last) = this.last.take() {
                            return Poll::Ready(last);
                        }
                    }
                    // Release the failed response (a connection, a body) before retrying.
                    *this.last = None;
                    this.state.set(State::Retrying);
                }
                StateProj::Retrying => {
                    ready!(this.service.poll_ready(cx)).map_err(Into::into)?;
                    let Some(req) = this.request.take() else {
                        // Unreachable: `Waiting` is only entered with a request kept. Fail
                        // rather than panic.
                        return Poll::Ready(Err("retry lost its request".into()));
                    };
                    *this.attempts += 1;
                    this.shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                    if *this.attempts < this.shared.policy.max_attempts {
                        *this.request = Some(req.clone());
                    }
                    match this.shared.policy.attempt_timeout {
                        Some(t) => match this.timer.as_mut().as_pin_mut() {
                            Some(timer) => timer.reset(Instant::now() + t),
                            None => this.timer.set(Some(tokio::time::sleep(t))),
                        },
                        None => this.timer.set(None),
                    }
                    let fut = this.service.call(req);
                    this.state.set(State::Called { fut });
                }
            }
        }
    }
}
