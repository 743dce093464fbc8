//! Which calls count as failures in an [`AlertLayer`](super::AlertLayer)'s metrics. Its own
//! module so the service and its future both use it and imports run one way.

/// Decides whether a call failed.
pub trait Classify<T, E> {
    /// `true` when `result` counts as a failure.
    fn is_failure(&self, result: &Result<T, E>) -> bool;
}

/// Every `Err` is a failure, every `Ok` a success (the default).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ErrorsAsFailures;

impl<T, E> Classify<T, E> for ErrorsAsFailures {
    #[inline]
    fn is_failure(&self, result: &Result<T, E>) -> bool {
        result.is_err()
    }
}

/// For HTTP: `Err` and responses with a 5xx status are failures.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ServerErrorsAsFailures;

impl<B, E> Classify<http::Response<B>, E> for ServerErrorsAsFailures {
    #[inline]
    fn is_failure(&self, result: &Result<http::Response<B>, E>) -> bool {
        match result {
            Ok(r) => r.status().is_server_error(),
            Err(_) => true,
        }
    }
}
