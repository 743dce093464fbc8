//! Deciding what counts as a failure.

use super::future::Permit;
pub use super::state::Outcome;

/// Decides how a call's result counts: [`Outcome::Success`], [`Outcome::Failure`] or
/// [`Outcome::Ignore`] (not counted at all, like Resilience4j's `ignoreExceptions`).
///
/// Implemented by [`ErrorsAsFailures`] (the default), by
/// [`ServerErrorsAsFailures`](super::http::ServerErrorsAsFailures) with the `http` feature, and
/// by every closure `Fn(&Result<Res, E>) -> Outcome`:
///
/// ```
/// use tower_pressure::circuit_breaker::{Classify, Outcome};
/// let ignore_not_found = |r: &Result<u16, std::io::Error>| match r {
///     Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Ignore,
///     Err(_) => Outcome::Failure,
///     Ok(_) => Outcome::Success,
/// };
/// let err = Err(std::io::Error::from(std::io::ErrorKind::NotFound));
/// assert_eq!(ignore_not_found.classify(&err), Outcome::Ignore);
/// ```
pub trait Classify<Res, E> {
    /// How `result` counts.
    fn classify(&self, result: &Result<Res, E>) -> Outcome;
}

/// The default: `Err` is a failure, `Ok` a success.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsAsFailures;

impl<Res, E> Classify<Res, E> for ErrorsAsFailures {
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}

/// Completes a call: records its outcome through the [`Permit`] now, or later (the `http`
/// feature's [`ObserveBody`](super::http::ObserveBody) moves the permit into the response
/// body and records when the body ends).
///
/// Implemented by [`ErrorsAsFailures`], by closures `Fn(&Result<Res, E>) -> Outcome`, by
/// [`Classified`] (wrap any other [`Classify`] in it), and with the `http` feature by
/// `ServerErrorsAsFailures` and `ObserveBody`.
pub trait Complete<Res, E> {
    /// The response handed to the caller.
    type Response;
    /// Records (or arranges to record) the outcome and returns the response.
    fn complete(&self, result: Result<Res, E>, permit: Permit) -> Result<Self::Response, E>;
}

/// Records `classifier`'s verdict at once and hands the result back.
#[inline]
pub(crate) fn record_now<C: Classify<Res, E>, Res, E>(
    c: &C,
    result: Result<Res, E>,
    permit: Permit,
) -> Result<Res, E> {
    permit.record(c.classify(&result));
    result
}

/// Uses any [`Classify`] as a [`Complete`] that records when the response head arrives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Classified<C>(pub C);

impl<C: Classify<Res, E>, Res, E> Complete<Res, E> for Classified<C> {
    type Response = Res;
    #[inline]
    fn complete(&self, result: Result<Res, E>, permit: Permit) -> Result<Res, E> {
        record_now(&self.0, result, permit)
    }
}

impl<Res, E> Complete<Res, E> for ErrorsAsFailures {
    type Response = Res;
    #[inline]
    fn complete(&self, result: Result<Res, E>, permit: Permit) -> Result<Res, E> {
        record_now(self, result, permit)
    }
}

impl<F, Res, E> Complete<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    type Response = Res;
    #[inline]
    fn complete(&self, result: Result<Res, E>, permit: Permit) -> Result<Res, E> {
        record_now(self, result, permit)
    }
}
