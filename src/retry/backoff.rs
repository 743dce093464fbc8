//! Backoff: how long to wait before retry number `n`. Pure code: no clock, no runtime;
//! randomness comes from an injected [`Rng`] so sequences are reproducible in tests.
//!
//! Three kinds (seed 004's Fixed, Linear and Exponential), each combined with one of four
//! [`Jitter`] modes from the AWS Architecture Blog's "Exponential Backoff and Jitter":
//!
//! | jitter | delay for base `b` (capped at `max`) |
//! |---|---|
//! | `None` | `b` |
//! | `Full` | uniform in `[0, b)` |
//! | `Equal` | `b/2 +` uniform in `[0, b/2)` |
//! | `Decorrelated` | uniform in `[initial, 3 x previous delay)`, capped at `max` |
//!
//! ```
//! use std::time::Duration;
//! use tower_pressure::retry::{Backoff, Jitter};
//!
//! let b = Backoff::exponential(Duration::from_millis(100), 2.0)
//!     .max(Duration::from_secs(1))
//!     .jitter(Jitter::None);
//! b.validate().unwrap();
//! let rng = || 0.5;
//! let delays: Vec<_> = (1..=5).map(|n| b.delay(n, Duration::ZERO, &rng)).collect();
//! assert_eq!(delays, [100, 200, 400, 800, 1000].map(Duration::from_millis));
//! ```

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

/// The longest wait a retry layer accepts for a backoff delay or for server pushback
/// (`max_pushback`): one day, the upper bound Polly puts on its retry delays. A longer wait
/// is not a retry but a scheduled job; builders refuse it with a [`ConfigError`] naming the
/// field, so that no delay can overflow the clock on the request path.
pub const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// A source of uniform random numbers in `[0, 1)`, shared by every request of a layer.
///
/// Takes `&self` so one instance serves all clones without a lock. The default,
/// [`FastRng`], uses `fastrand`'s thread-local generator; closures `Fn() -> f64` implement
/// it too, which is how tests inject fixed sequences.
pub trait Rng: Send + Sync + 'static {
    /// A number in `[0, 1)`. Values outside are clamped by the callers.
    fn next_f64(&self) -> f64;
}

impl<F> Rng for F
where
    F: Fn() -> f64 + Send + Sync + 'static,
{
    fn next_f64(&self) -> f64 {
        self()
    }
}

/// The default [`Rng`]: `fastrand`'s thread-local generator (no lock, no syscall).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct FastRng;

impl Rng for FastRng {
    fn next_f64(&self) -> f64 {
        fastrand::f64()
    }
}

/// How a backoff delay is randomised: see [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// The base delay exactly.
    None,
    /// Uniform in `[0, base)`: spreads retries the most (the default).
    #[default]
    Full,
    /// Half the base plus uniform in `[0, base/2)`: never shorter than half the base.
    Equal,
    /// Uniform in `[initial, 3 x previous delay)`: each delay depends on the previous one.
    Decorrelated,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Fixed,
    Linear { step: Duration },
    Exponential { multiplier: f64 },
}

/// A backoff schedule: a kind (fixed, linear, exponential), a cap and a [`Jitter`].
#[derive(Clone, Copy, PartialEq)]
pub struct Backoff {
    kind: Kind,
    initial: Duration,
    max: Duration,
    jitter: Jitter,
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("kind", &self.kind)
            .field("initial", &self.initial)
            .field("max", &self.max)
            .field("jitter", &self.jitter)
            .finish()
    }
}

impl Default for Backoff {
    /// Exponential from 50 ms, doubling, capped at 5 s, full jitter.
    fn default() -> Self {
        Self::exponential(Duration::from_millis(50), 2.0).max(Duration::from_secs(5))
    }
}

impl Backoff {
    /// The same `delay` before every retry. Jitter defaults to [`Jitter::Full`].
    pub fn fixed(delay: Duration) -> Self {
        Self {
            kind: Kind::Fixed,
            initial: delay,
            max: delay,
            jitter: Jitter::Full,
        }
    }

    /// `initial`, then `initial + step`, `initial + 2 step`, ... capped by [`Backoff::max`]
    /// (default 30 s).
    pub fn linear(initial: Duration, step: Duration) -> Self {
        Self {
            kind: Kind::Linear { step },
            initial,
            max: Duration::from_secs(30),
            jitter: Jitter::Full,
        }
    }

    /// `initial`, then `initial x multiplier`, `initial x multiplier^2`, ... capped by
    /// [`Backoff::max`] (default 30 s).
    pub fn exponential(initial: Duration, multiplier: f64) -> Self {
        Self {
            kind: Kind::Exponential { multiplier },
            initial,
            max: Duration::from_secs(30),
            jitter: Jitter::Full,
        }
    }

    /// Caps every delay.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets the jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before the first retry, before jitter.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The cap.
    pub fn max_delay(&self) -> Duration {
        self.max
    }

    /// The jitter mode.
    pub fn jitter_mode(&self) -> Jitter {
        self.jitter
    }

    /// Checks the configuration; called by the layer's `build()`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `backoff.multiplier` (must be finite and >= 1),
    /// `backoff.initial` or `backoff.max` (at most [`MAX_WAIT`]; the cap must be >= the
    /// initial delay).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_pressure::retry::Backoff;
    /// let e = Backoff::fixed(Duration::MAX).validate().unwrap_err();
    /// assert_eq!(e.field(), "backoff.initial");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.initial > MAX_WAIT {
            return Err(ConfigError::new(
                "backoff.initial",
                self.initial,
                format!("must be at most {MAX_WAIT:?} (retry::MAX_WAIT)"),
            ));
        }
        if self.max > MAX_WAIT {
            return Err(ConfigError::new(
                "backoff.max",
                self.max,
                format!("must be at most {MAX_WAIT:?} (retry::MAX_WAIT)"),
            ));
        }
        if let Kind::Exponential { multiplier } = self.kind
            && (!multiplier.is_finite() || multiplier < 1.0)
        {
            return Err(ConfigError::new(
                "backoff.multiplier",
                multiplier,
                "must be a finite number >= 1",
            ));
        }
        if self.max < self.initial {
            return Err(ConfigError::new(
                "backoff.max",
                self.max,
                format!("must be >= the initial delay {:?}", self.initial),
            ));
        }
        Ok(())
    }

    /// The base (un-jittered) delay before retry number `retry` (1 = first retry), capped.
    pub fn base(&self, retry: u32) -> Duration {
        let n = retry.max(1) - 1;
        let base = match self.kind {
            Kind::Fixed => self.initial,
            Kind::Linear { step } => self.initial.saturating_add(step.saturating_mul(n)),
            Kind::Exponential { multiplier } => {
                // powi saturates to +inf for large n; from_secs_f64 would panic on it, so the
                // cap is applied in f64 first.
                let secs =
                    self.initial.as_secs_f64() * multiplier.powi(n.min(i32::MAX as u32) as i32);
                if secs.is_finite() && secs < self.max.as_secs_f64() {
                    Duration::from_secs_f64(secs)
                } else {
                    self.max
                }
            }
        };
        base.min(self.max)
    }

    /// The jittered delay before retry number `retry` (1 = first retry). `previous` is the
    /// delay used before the previous retry (only [`Jitter::Decorrelated`] reads it; pass
    /// `Duration::ZERO` for the first retry).
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, previous: Duration, rng: &R) -> Duration {
        let u = || {
            let v = rng.next_f64();
            if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        match self.jitter {
            Jitter::None => self.base(retry),
            Jitter::Full => self.base(retry).mul_f64(u()),
            Jitter::Equal => {
                let half = self.base(retry) / 2;
                half + half.mul_f64(u())
            }
            Jitter::Decorrelated => {
                let lo = self.initial;
                let prev = if previous.is_zero() {
                    self.initial
                } else {
                    previous
                };
                let hi = prev.saturating_mul(3).min(self.max).max(lo);
                (lo + (hi - lo).mul_f64(u())).min(self.max)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A deterministic RNG cycling through `values`.
    fn seq(values: &'static [f64]) -> impl Rng {
        let i = AtomicUsize::new(0);
        move || values[i.fetch_add(1, Ordering::Relaxed) % values.len()]
    }

    fn run(b: Backoff, rng: &dyn Rng, n: u32) -> Vec<Duration> {
        let mut prev = Duration::ZERO;
        (1..=n)
            .map(|i| {
                prev = b.delay(i, prev, rng);
                prev
            })
            .collect()
    }

    #[test]
    fn fixed_sequences() {
        let b = Backoff::fixed(ms(100));
        assert_eq!(run(b.jitter(Jitter::None), &seq(&[0.5]), 3), [ms(100); 3]);
        assert_eq!(run(b, &seq(&[0.0, 0.5, 0.99]), 3), [ms(0), ms(50), ms(99)]);
        assert_eq!(
            run(b.jitter(Jitter::Equal), &seq(&[0.0, 0.5]), 2),
            [ms(50), ms(75)]
        );
    }

    #[test]
    fn linear_sequences() {
        let b = Backoff::linear(ms(100), ms(50))
            .max(ms(220))
            .jitter(Jitter::None);
        assert_eq!(
            run(b, &seq(&[0.3]), 5),
            [ms(100), ms(150), ms(200), ms(220), ms(220)]
        );
        let full = run(b.jitter(Jitter::Full), &seq(&[0.5]), 3);
        assert_eq!(full, [ms(50), ms(75), ms(100)]);
        let equal = run(b.jitter(Jitter::Equal), &seq(&[0.5]), 3);
        assert_eq!(
            equal,
            [ms(75), ms(112) + Duration::from_micros(500), ms(150)]
        );
    }

    #[test]
    fn exponential_sequences() {
        let b = Backoff::exponential(ms(100), 2.0)
            .max(ms(1000))
            .jitter(Jitter::None);
        assert_eq!(
            run(b, &seq(&[0.0]), 6),
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        let full = run(b.jitter(Jitter::Full), &seq(&[0.25, 0.5, 1.0]), 3);
        assert_eq!(full, [ms(25), ms(100), ms(400)]);
        let equal = run(b.jitter(Jitter::Equal), &seq(&[0.0, 0.5]), 2);
        assert_eq!(equal, [ms(50), ms(150)]);
        // Huge retry numbers saturate at the cap instead of overflowing.
        assert_eq!(b.base(u32::MAX), ms(1000));
    }

    #[test]
    fn decorrelated_sequences() {
        let b = Backoff::exponential(ms(100), 2.0)
            .max(ms(1000))
            .jitter(Jitter::Decorrelated);
        // prev 0 -> range [100, 300); u = 0.5 -> 200; then [100, 600) -> 350; then [100, 1000) -> 550
        assert_eq!(run(b, &seq(&[0.5]), 3), [ms(200), ms(350), ms(550)]);
        // u = 1.0 climbs to the cap and stays there.
        assert_eq!(
            run(b, &seq(&[1.0]), 4),
            [ms(300), ms(900), ms(1000), ms(1000)]
        );
        // u = 0 stays at the initial delay.
        assert_eq!(run(b, &seq(&[0.0]), 3), [ms(100); 3]);
    }

    #[test]
    fn bad_rng_values_are_clamped() {
        let b = Backoff::fixed(ms(100));
        assert_eq!(b.delay(1, Duration::ZERO, &|| f64::NAN), ms(0));
        assert_eq!(b.delay(1, Duration::ZERO, &|| 7.0), ms(100));
        assert_eq!(b.delay(1, Duration::ZERO, &|| -1.0), ms(0));
    }

    #[test]
    fn validation_names_the_field() {
        let e = Backoff::exponential(ms(1), 0.5).validate().unwrap_err();
        assert_eq!(e.field(), "backoff.multiplier");
        let e = Backoff::exponential(ms(10), f64::NAN)
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "backoff.multiplier");
        let e = Backoff::linear(ms(10), ms(1))
            .max(ms(5))
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "backoff.max");
        assert!(Backoff::default().validate().is_ok());
        // Waits that cannot be waited are refused (issue 21: they panicked the request).
        let e = Backoff::fixed(Duration::MAX).validate().unwrap_err();
        assert_eq!(e.field(), "backoff.initial");
        let e = Backoff::exponential(ms(10), 2.0)
            .max(Duration::MAX)
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "backoff.max");
        assert!(Backoff::fixed(MAX_WAIT).validate().is_ok());
    }
}
