//! The retry decision, as pure code: given what happened so far, the time, the pressure level
//! and the server's pushback, either a delay before the next attempt or why retrying stops.
//! No clock, no runtime: every input is an argument, so it is tested without tokio.

use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{Backoff, Rng};
use super::pushback::Pushback;
use crate::pressure::PressureLevel;

/// The layer's retry rules (built by [`RetryLayerBuilder`](super::RetryLayerBuilder)).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) time_bound: Option<Duration>,
    pub(crate) max_pushback: Duration,
    pub(crate) no_retry_at: PressureLevel,
    pub(crate) stretch_at_high: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::default(),
            attempt_timeout: None,
            time_bound: None,
            max_pushback: Duration::from_secs(60),
            no_retry_at: PressureLevel::Critical,
            stretch_at_high: 2.0,
        }
    }
}

/// Why retrying stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// `max_attempts` were made.
    MaxAttempts,
    /// The pressure level is at or above the configured level.
    Pressure(PressureLevel),
    /// The next attempt would start at or after the request's `Constraints` deadline.
    Deadline,
    /// The next attempt would start after the total time bound.
    TimeBound,
    /// The server's pushback is longer than `max_pushback`, the time bound's remainder or
    /// the time left before the deadline: the layer does not retry before the server's time,
    /// so it does not retry at all.
    PushbackTooLong,
    /// The server said not to retry (gRPC pushback).
    ServerSaidStop,
    /// The retry budget is empty.
    Budget,
}

impl StopReason {
    /// A short lowercase description.
    pub const fn as_str(self) -> &'static str {
        match self {
            StopReason::MaxAttempts => "max attempts reached",
            StopReason::Pressure(PressureLevel::Emergency) => "pressure emergency",
            StopReason::Pressure(_) => "pressure critical",
            StopReason::Deadline => "deadline would pass",
            StopReason::TimeBound => "time bound would pass",
            StopReason::PushbackTooLong => "server pushback exceeds time left",
            StopReason::ServerSaidStop => "server said not to retry",
            StopReason::Budget => "retry budget exhausted",
        }
    }
}

/// The state of one request when an attempt failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failed {
    /// Attempts made so far (1 after the first).
    pub(crate) attempts: u32,
    pub(crate) now: Instant,
    /// When the first attempt started.
    pub(crate) start: Instant,
    /// The request's `Constraints` deadline, if any.
    pub(crate) deadline: Option<Instant>,
    pub(crate) level: PressureLevel,
    pub(crate) pushback: Pushback,
    /// The delay before the previous retry (zero before the first).
    pub(crate) previous: Duration,
    /// A reroute to a fallback after a local rejection: no wait (the rejected attempt never
    /// reached its target), the other limits as for any retry.
    pub(crate) immediate: bool,
}

impl RetryPolicy {
    /// Attempts per request, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The backoff schedule.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }
    /// The per-attempt timeout.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }
    /// The bound on the whole request, retries and waits included.
    pub fn time_bound(&self) -> Option<Duration> {
        self.time_bound
    }
    /// The cap on server pushback.
    pub fn max_pushback(&self) -> Duration {
        self.max_pushback
    }
    /// No retries at or above this level.
    pub fn no_retry_at(&self) -> PressureLevel {
        self.no_retry_at
    }

    /// The delay before the next attempt, or why there is none. Does not touch the budget
    /// (the caller withdraws only once every other check passed).
    pub(crate) fn next_delay<R: Rng + ?Sized>(
        &self,
        f: &Failed,
        rng: &R,
    ) -> Result<Duration, StopReason> {
        if f.attempts >= self.max_attempts {
            return Err(StopReason::MaxAttempts);
        }
        if f.level >= self.no_retry_at {
            return Err(StopReason::Pressure(f.level));
        }
        let (delay, pushed) = match f.pushback {
            _ if f.immediate => (Duration::ZERO, false),
            Pushback::Stop => return Err(StopReason::ServerSaidStop),
            // Never before the server's time (Polly, gRFC A6): a pushback the layer may not
            // wait for ends retrying, and the failure goes back to the caller as it came.
            Pushback::After(d) if d > self.max_pushback => {
                return Err(StopReason::PushbackTooLong);
            }
            Pushback::After(d) => (d, true),
            Pushback::None => {
                let d = self.backoff.delay(f.attempts, f.previous, rng);
                if f.level >= PressureLevel::High {
                    // Stretch: back off harder while the process is pressed.
                    // Saturating: `Duration::mul_f64` panics on overflow.
                    let stretched =
                        Duration::try_from_secs_f64(d.as_secs_f64() * self.stretch_at_high)
                            .unwrap_or(Duration::MAX);
                    (
                        stretched.min(self.max_pushback.max(self.backoff.max_delay())),
                        false,
                    )
                } else {
                    (d, false)
                }
            }
        };
        let at = f.now.checked_add(delay);
        if let Some(bound) = self.time_bound {
            // Saturating: a `Duration::MAX` bound means "no bound", not a panic.
            let end = crate::clock::deadline(f.start, bound);
            if at.is_none_or(|at| at > end) {
                return Err(if pushed {
                    StopReason::PushbackTooLong
                } else {
                    StopReason::TimeBound
                });
            }
        }
        if let Some(deadline) = f.deadline
            && at.is_none_or(|at| at >= deadline)
        {
            return Err(if pushed {
                StopReason::PushbackTooLong
            } else {
                StopReason::Deadline
            });
        }
        Ok(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Jitter;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::exponential(ms(100), 2.0)
                .max(ms(1000))
                .jitter(Jitter::None),
            ..RetryPolicy::default()
        }
    }

    fn failed(now: Instant, attempts: u32) -> Failed {
        Failed {
            attempts,
            now,
            start: now,
            deadline: None,
            level: PressureLevel::Normal,
            pushback: Pushback::None,
            previous: Duration::ZERO,
            immediate: false,
        }
    }

    #[test]
    fn a_reroute_waits_nothing_but_keeps_every_limit() {
        let p = RetryPolicy {
            time_bound: Some(ms(500)),
            ..policy()
        };
        let now = Instant::now();
        let rng = || 0.0;
        let reroute = |f: Failed| Failed {
            immediate: true,
            ..f
        };
        assert_eq!(
            p.next_delay(&reroute(failed(now, 1)), &rng),
            Ok(Duration::ZERO)
        );
        // Not stretched at High either.
        let high = Failed {
            level: PressureLevel::High,
            ..reroute(failed(now, 1))
        };
        assert_eq!(p.next_delay(&high, &rng), Ok(Duration::ZERO));
        assert_eq!(
            p.next_delay(&reroute(failed(now, 3)), &rng),
            Err(StopReason::MaxAttempts)
        );
        let critical = Failed {
            level: PressureLevel::Critical,
            ..reroute(failed(now, 1))
        };
        assert_eq!(
            p.next_delay(&critical, &rng),
            Err(StopReason::Pressure(PressureLevel::Critical))
        );
        let late = Failed {
            start: now,
            now: now + ms(501),
            ..reroute(failed(now, 1))
        };
        assert_eq!(p.next_delay(&late, &rng), Err(StopReason::TimeBound));
        let past_deadline = Failed {
            deadline: Some(now),
            ..reroute(failed(now, 1))
        };
        assert_eq!(
            p.next_delay(&past_deadline, &rng),
            Err(StopReason::Deadline)
        );
    }

    #[test]
    fn attempts_and_backoff() {
        let p = policy();
        let now = Instant::now();
        let rng = || 0.0;
        assert_eq!(p.next_delay(&failed(now, 1), &rng), Ok(ms(100)));
        assert_eq!(p.next_delay(&failed(now, 2), &rng), Ok(ms(200)));
        assert_eq!(
            p.next_delay(&failed(now, 3), &rng),
            Err(StopReason::MaxAttempts)
        );
    }

    #[test]
    fn pressure() {
        let p = policy();
        let now = Instant::now();
        let rng = || 0.0;
        let mut f = failed(now, 1);
        f.level = PressureLevel::High;
        assert_eq!(p.next_delay(&f, &rng), Ok(ms(200)), "stretched x2 at high");
        f.level = PressureLevel::Critical;
        assert_eq!(
            p.next_delay(&f, &rng),
            Err(StopReason::Pressure(PressureLevel::Critical))
        );
        assert_eq!(
            StopReason::Pressure(PressureLevel::Critical).as_str(),
            "pressure critical"
        );
    }

    #[test]
    fn bounds_and_pushback() {
        let p = RetryPolicy {
            time_bound: Some(ms(500)),
            max_pushback: ms(2000),
            ..policy()
        };
        let now = Instant::now();
        let rng = || 0.0;
        let mut f = failed(now, 1);
        f.start = now - ms(450);
        assert_eq!(p.next_delay(&f, &rng), Err(StopReason::TimeBound));
        f.start = now;
        f.pushback = Pushback::After(ms(400));
        assert_eq!(p.next_delay(&f, &rng), Ok(ms(400)));
        f.pushback = Pushback::After(Duration::MAX);
        assert_eq!(p.next_delay(&f, &rng), Err(StopReason::PushbackTooLong));
        f.pushback = Pushback::Stop;
        assert_eq!(p.next_delay(&f, &rng), Err(StopReason::ServerSaidStop));
        // A pushback beyond max_pushback is not retried early (issue 21): retrying stops.
        let p = RetryPolicy {
            max_pushback: ms(2000),
            ..policy()
        };
        f.pushback = Pushback::After(Duration::MAX);
        assert_eq!(p.next_delay(&f, &rng), Err(StopReason::PushbackTooLong));
        f.pushback = Pushback::After(ms(2001));
        assert_eq!(p.next_delay(&f, &rng), Err(StopReason::PushbackTooLong));
        f.pushback = Pushback::After(ms(2000));
        assert_eq!(p.next_delay(&f, &rng), Ok(ms(2000)));
        // Deadline.
        f.pushback = Pushback::None;
        f.deadline = Some(now + ms(100));
        assert_eq!(p.next_delay(&f, &rng), Err(StopReason::Deadline));
        f.deadline = Some(now + ms(101));
        assert_eq!(p.next_delay(&f, &rng), Ok(ms(100)));
    }
}
