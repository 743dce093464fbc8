//! The error of a refused request.

use std::fmt;
use std::time::Duration;

use super::policy::ShedReason;
use crate::pressure::PressureLevel;
use crate::priority::Priority;

/// A request was refused by an adaptive concurrency limiter. Returned at once, from the
/// response future, boxed into `tower::BoxError`: test with `err.is::<Overloaded>()`.
///
/// ```
/// use tower_pressure::concurrency::Overloaded;
/// fn status(err: &tower::BoxError) -> u16 {
///     if err.is::<Overloaded>() { 503 } else { 500 }
/// }
/// # let _ = status;
/// ```
#[derive(Debug, Clone)]
pub struct Overloaded {
    pub(crate) priority: Priority,
    pub(crate) limit: u32,
    pub(crate) in_flight: u32,
    pub(crate) level: PressureLevel,
    pub(crate) reason: ShedReason,
    pub(crate) retry_after: Duration,
    pub(crate) status: u16,
}

impl Overloaded {
    /// How long the client should wait before retrying.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The class of the refused request.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The effective (pressure-scaled) limit when the request was refused.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests in flight when the request was refused.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The pressure level when the request was refused.
    pub fn level(&self) -> PressureLevel {
        self.level
    }

    /// Why the request was refused.
    pub fn reason(&self) -> ShedReason {
        self.reason
    }

    /// The HTTP status configured for refusals (503 unless set to 429).
    pub fn status_code(&self) -> u16 {
        self.status
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "service overloaded: {} ({} priority, limit {}, {} in flight)",
            self.reason, self.priority, self.limit, self.in_flight
        )
    }
}

impl std::error::Error for Overloaded {}
