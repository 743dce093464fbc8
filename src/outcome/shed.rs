//! The error of a request the adaptive concurrency limiter refused, and why it was refused.
//! Core, so other layers can recognise a shed request; re-exported by
//! [`concurrency`](crate::concurrency).

use std::fmt;
use std::time::Duration;

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

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShedReason {
    /// The (pressure-scaled) limit was reached and the class has no free guaranteed share.
    LimitReached,
    /// The pressure level refuses this class.
    Pressure(PressureLevel),
    /// A `Critical` request waited in the queue until its timeout.
    QueueTimeout,
}

impl ShedReason {
    /// A short lowercase description, e.g. `"pressure high: class refused"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ShedReason::LimitReached => "limit reached",
            ShedReason::Pressure(PressureLevel::Normal) => "pressure normal: class refused",
            ShedReason::Pressure(PressureLevel::Elevated) => "pressure elevated: class refused",
            ShedReason::Pressure(PressureLevel::High) => "pressure high: class refused",
            ShedReason::Pressure(PressureLevel::Critical) => "pressure critical: class refused",
            ShedReason::Pressure(PressureLevel::Emergency) => "pressure emergency: class refused",
            ShedReason::QueueTimeout => "queue timeout",
        }
    }

    pub(crate) const fn code(self) -> u8 {
        match self {
            ShedReason::LimitReached => 0,
            ShedReason::Pressure(l) => 1 + l.as_u8(),
            ShedReason::QueueTimeout => 6,
        }
    }

    pub(crate) const fn from_code(c: u8) -> ShedReason {
        match c {
            0 => ShedReason::LimitReached,
            1..=5 => ShedReason::Pressure(PressureLevel::from_u8(c - 1)),
            _ => ShedReason::QueueTimeout,
        }
    }
}

impl fmt::Display for ShedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
