//! AIMD: additive increase, multiplicative decrease (Netflix `AIMDLimit`).
//!
//! Per window, with `L` the current limit:
//!
//! ```text
//! if drops > 0 or rtt > timeout:   L = floor(L * backoff_ratio)   (backoff_ratio = 0.9)
//! else if max_in_flight * 2 >= L:  L = L + 1                       (only when near the limit)
//! L = clamp(L, min_limit, max_limit)
//! ```
//!
//! Defaults (Netflix's): initial 20, min 20, max 200, backoff ratio 0.9, timeout 5 s.
//! AIMD only reacts to drops and timeouts, not to a slow rise of latency: pick a `timeout`
//! near your latency SLO.

use std::time::Duration;

use tokio::time::Instant;

use super::{LimitAlgorithm, WindowSample};
use crate::error::{ConfigError, check_range};

/// The AIMD limit. See the [module docs](crate::concurrency::limit).
///
/// ```
/// use std::time::Duration;
/// use tower_pressure::concurrency::limit::{Aimd, LimitAlgorithm, WindowSample};
/// let mut aimd = Aimd::builder().initial_limit(20).build().unwrap();
/// let now = tokio::time::Instant::now();
/// // 15 in flight, 2 * 15 >= 20: additive increase.
/// assert_eq!(aimd.update(&WindowSample::new(Duration::from_millis(10), 15, 10, 0), now), 21);
/// ```
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: u32,
    min: u32,
    max: u32,
    backoff: f64,
    timeout: Duration,
}

impl Default for Aimd {
    fn default() -> Self {
        Self {
            limit: 20,
            min: 20,
            max: 200,
            backoff: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl Aimd {
    /// Starts from Netflix's defaults.
    pub fn builder() -> AimdBuilder {
        AimdBuilder { a: Aimd::default() }
    }
}

/// Builder of [`Aimd`].
#[derive(Debug, Clone)]
pub struct AimdBuilder {
    a: Aimd,
}

impl AimdBuilder {
    /// The limit before the first window (default 20).
    pub fn initial_limit(mut self, v: u32) -> Self {
        self.a.limit = v;
        self
    }
    /// The lowest limit (default 20).
    pub fn min_limit(mut self, v: u32) -> Self {
        self.a.min = v;
        self
    }
    /// The highest limit (default 200).
    pub fn max_limit(mut self, v: u32) -> Self {
        self.a.max = v;
        self
    }
    /// The factor applied on a drop or timeout, in `(0, 1)` (default 0.9).
    pub fn backoff_ratio(mut self, v: f64) -> Self {
        self.a.backoff = v;
        self
    }
    /// A window whose average latency exceeds this counts as a drop (default 5 s).
    pub fn timeout(mut self, v: Duration) -> Self {
        self.a.timeout = v;
        self
    }
    /// Validates the configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field when a bound is 0, `min > max`, the initial limit
    /// is outside the bounds, the ratio is outside `(0, 1)` or the timeout is zero.
    pub fn build(self) -> Result<Aimd, ConfigError> {
        let a = self.a;
        check_bounds(a.limit, a.min, a.max)?;
        check_range("backoff_ratio", a.backoff, f64::MIN_POSITIVE, 0.999_999)?;
        if a.timeout.is_zero() {
            return Err(ConfigError::new("timeout", a.timeout, "must be positive"));
        }
        Ok(a)
    }
}

/// Checks `min <= initial <= max` and `min >= 1`.
pub(crate) fn check_bounds(initial: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    if min == 0 {
        return Err(ConfigError::new("min_limit", min, "must be at least 1"));
    }
    if max < min {
        return Err(ConfigError::new(
            "max_limit",
            max,
            format!("must be at least min_limit ({min})"),
        ));
    }
    if initial < min || initial > max {
        return Err(ConfigError::new(
            "initial_limit",
            initial,
            format!("must be within min_limit..=max_limit ({min}..={max})"),
        ));
    }
    Ok(())
}

impl LimitAlgorithm for Aimd {
    fn name(&self) -> &'static str {
        "aimd"
    }

    fn limit(&self) -> u32 {
        self.limit
    }

    fn update(&mut self, s: &WindowSample, _now: Instant) -> u32 {
        let mut l = self.limit;
        if s.did_drop() || s.rtt > self.timeout {
            l = (l as f64 * self.backoff) as u32;
        } else if u64::from(s.max_in_flight) * 2 >= u64::from(l) {
            l = l.saturating_add(1);
        }
        self.limit = l.clamp(self.min, self.max);
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(rtt_ms: u64, inflight: u32, drops: u32) -> WindowSample {
        WindowSample::new(Duration::from_millis(rtt_ms), inflight, 10, drops)
    }

    #[test]
    fn hand_computed_rule() {
        let now = Instant::now();
        let mut a = Aimd::builder()
            .initial_limit(50)
            .min_limit(10)
            .build()
            .unwrap();
        // Near the limit: +1.
        assert_eq!(a.update(&w(10, 25, 0), now), 51);
        // App limited (2 * 20 < 51): unchanged.
        assert_eq!(a.update(&w(10, 20, 0), now), 51);
        // Drop: floor(51 * 0.9) = 45.
        assert_eq!(a.update(&w(10, 51, 1), now), 45);
        // Timeout (6 s > 5 s): floor(45 * 0.9) = 40.
        assert_eq!(a.update(&w(6000, 45, 0), now), 40);
        // Clamped at min.
        for _ in 0..30 {
            a.update(&w(10, 40, 3), now);
        }
        assert_eq!(a.limit(), 10);
    }

    #[test]
    fn builder_names_fields() {
        assert_eq!(
            Aimd::builder().min_limit(0).build().unwrap_err().field(),
            "min_limit"
        );
        assert_eq!(
            Aimd::builder().max_limit(5).build().unwrap_err().field(),
            "max_limit"
        );
        assert_eq!(
            Aimd::builder()
                .initial_limit(500)
                .build()
                .unwrap_err()
                .field(),
            "initial_limit"
        );
        assert_eq!(
            Aimd::builder()
                .backoff_ratio(1.5)
                .build()
                .unwrap_err()
                .field(),
            "backoff_ratio"
        );
        assert_eq!(
            Aimd::builder()
                .timeout(Duration::ZERO)
                .build()
                .unwrap_err()
                .field(),
            "timeout"
        );
    }
}
