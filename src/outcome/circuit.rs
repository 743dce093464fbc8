//! The error returned when the breaker refuses a call. Core, so other layers can recognise
//! an open breaker; re-exported by [`circuit_breaker`](crate::circuit_breaker).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::pressure::PressureLevel;

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The breaker is OPEN and its wait has not elapsed.
    Open,
    /// The breaker is HALF_OPEN and every probe slot is taken.
    HalfOpenFull,
    /// An operator forced the breaker open.
    ForcedOpen,
    /// The shared monitor's level is at or above the configured trip level.
    Pressure(PressureLevel),
    /// Memory use is above the configured threshold (`value` and `threshold` in the unit
    /// configured: percent or bytes).
    Memory {
        /// The reading.
        value: f64,
        /// The threshold it exceeds.
        threshold: f64,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Open => f.write_str("circuit open"),
            RejectReason::HalfOpenFull => f.write_str("half-open probe slots taken"),
            RejectReason::ForcedOpen => f.write_str("circuit forced open"),
            RejectReason::Pressure(l) => write!(f, "pressure level {l}"),
            RejectReason::Memory { value, threshold } => {
                write!(f, "memory {value:.1} above {threshold:.1}")
            }
        }
    }
}

/// The circuit breaker refused the call without calling the inner service.
///
/// Composed as [`tower::BoxError`]; test with `err.is::<CircuitOpen>()` and downcast to read
/// [`retry_after`](CircuitOpen::retry_after). The `http` feature maps it to
/// `503 Service Unavailable` with `Retry-After`
/// ([`http::circuit_open_response`](crate::circuit_breaker::http::circuit_open_response)).
#[derive(Debug, Clone)]
pub struct CircuitOpen {
    breaker: Arc<str>,
    key: Option<Arc<str>>,
    reason: RejectReason,
    retry_after: Duration,
}

impl CircuitOpen {
    pub(crate) fn new(
        breaker: Arc<str>,
        key: Option<Arc<str>>,
        reason: RejectReason,
        retry_after: Duration,
    ) -> Self {
        Self {
            breaker,
            key,
            reason,
            retry_after,
        }
    }

    /// How long until the breaker may admit a call again (an estimate for pressure trips:
    /// the monitor's sampling interval).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The breaker's name.
    pub fn breaker(&self) -> &str {
        &self.breaker
    }

    /// The key of a per-key breaker.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Why the call was refused.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker `{}`", self.breaker)?;
        if let Some(k) = &self.key {
            write!(f, " (key `{k}`)")?;
        }
        write!(f, " rejected the call: {}", self.reason)
    }
}

impl std::error::Error for CircuitOpen {}
