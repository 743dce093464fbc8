//! Vegas: TCP Vegas's queue estimate (Netflix `VegasLimit`).
//!
//! With `L` the current limit, `rtt` the window's average latency and `rtt_noload` the
//! lowest latency seen (the no-load baseline), per window:
//!
//! ```text
//! queue     = ceil(L * (1 - rtt_noload / rtt))         estimated requests waiting
//! log       = max(1, floor(log10(L)))
//! alpha     = 3 * log,  beta = 6 * log,  threshold = log
//! if drops > 0:              new = L - log
//! else if in_flight * 2 < L: new = L                    (application limited: no signal)
//! else if queue <= threshold: new = L + beta
//! else if queue <  alpha:     new = L + log
//! else if queue >  beta:      new = L - log
//! else                        new = L
//! L = (1 - smoothing) * L + smoothing * clamp(new, min_limit, max_limit)
//! ```
//!
//! `rtt_noload` is replaced by any lower window latency, and re-measured periodically: after
//! `jitter * probe_multiplier * L` windows (`jitter` uniform in `[0.5, 1)`), the next
//! window's latency becomes the new baseline, so a baseline measured when the backend was
//! faster does not hold the limit down forever.
//!
//! Defaults (Netflix's): initial 20, min 1, max 1000, smoothing 1.0, probe multiplier 30.

use tokio::time::Instant;

use super::aimd::check_bounds;
use super::{LimitAlgorithm, WindowSample, log10_floor, nanos};
use crate::error::{ConfigError, check_range};

/// The Vegas limit. See the [module docs](crate::concurrency::limit).
///
/// ```
/// use std::time::Duration;
/// use tower_pressure::concurrency::limit::{LimitAlgorithm, Vegas, WindowSample};
/// let mut v = Vegas::builder().build().unwrap();
/// let now = tokio::time::Instant::now();
/// let ms = Duration::from_millis;
/// v.update(&WindowSample::new(ms(10), 20, 10, 0), now); // first window: baseline only
/// // No queue (rtt = baseline): L + beta = 20 + 6.
/// assert_eq!(v.update(&WindowSample::new(ms(10), 20, 10, 0), now), 26);
/// ```
#[derive(Debug, Clone)]
pub struct Vegas {
    limit: f64,
    min: u32,
    max: u32,
    smoothing: f64,
    probe_multiplier: u32,
    rtt_noload: f64,
    probe_count: u64,
    probe_jitter: f64,
    rng: fastrand::Rng,
}

impl Default for Vegas {
    fn default() -> Self {
        let mut rng = fastrand::Rng::with_seed(0x5eed_fe9a);
        let probe_jitter = 0.5 + rng.f64() * 0.5;
        Self {
            limit: 20.0,
            min: 1,
            max: 1000,
            smoothing: 1.0,
            probe_multiplier: 30,
            rtt_noload: 0.0,
            probe_count: 0,
            probe_jitter,
            rng,
        }
    }
}

impl Vegas {
    /// Starts from Netflix's defaults.
    pub fn builder() -> VegasBuilder {
        VegasBuilder {
            v: Vegas::default(),
            initial: 20,
        }
    }

    /// The current no-load latency baseline (zero before the first window).
    pub fn rtt_noload(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.rtt_noload as u64)
    }

    fn update_limit(&self, rtt: f64, in_flight: u32, drop: bool) -> Option<f64> {
        let l = self.limit;
        let log = log10_floor(l);
        let new = if drop {
            l - log
        } else if f64::from(in_flight) * 2.0 < l {
            return None;
        } else {
            let queue = (l * (1.0 - self.rtt_noload / rtt)).ceil();
            let (alpha, beta, threshold) = (3.0 * log, 6.0 * log, log);
            if queue <= threshold {
                l + beta
            } else if queue < alpha {
                l + log
            } else if queue > beta {
                l - log
            } else {
                return None;
            }
        };
        let new = new.clamp(f64::from(self.min), f64::from(self.max));
        Some((1.0 - self.smoothing) * l + self.smoothing * new)
    }
}

/// Builder of [`Vegas`].
#[derive(Debug, Clone)]
pub struct VegasBuilder {
    v: Vegas,
    initial: u32,
}

impl VegasBuilder {
    /// The limit before the first window (default 20).
    pub fn initial_limit(mut self, v: u32) -> Self {
        self.initial = v;
        self
    }
    /// The lowest limit (default 1).
    pub fn min_limit(mut self, v: u32) -> Self {
        self.v.min = v;
        self
    }
    /// The highest limit (Netflix's `maxConcurrency`, default 1000).
    pub fn max_limit(mut self, v: u32) -> Self {
        self.v.max = v;
        self
    }
    /// Weight of the new limit, in `(0, 1]` (default 1.0: no smoothing).
    pub fn smoothing(mut self, v: f64) -> Self {
        self.v.smoothing = v;
        self
    }
    /// Windows between baseline probes, times the limit (default 30).
    pub fn probe_multiplier(mut self, v: u32) -> Self {
        self.v.probe_multiplier = v;
        self
    }
    /// Seeds the probe jitter, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.v.rng = fastrand::Rng::with_seed(seed);
        self.v.probe_jitter = 0.5 + self.v.rng.f64() * 0.5;
        self
    }
    /// Validates the configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field for bad bounds, smoothing outside `(0, 1]` or a
    /// zero probe multiplier.
    pub fn build(self) -> Result<Vegas, ConfigError> {
        let mut v = self.v;
        check_bounds(self.initial, v.min, v.max)?;
        check_range("smoothing", v.smoothing, f64::MIN_POSITIVE, 1.0)?;
        if v.probe_multiplier == 0 {
            return Err(ConfigError::new(
                "probe_multiplier",
                0,
                "must be at least 1",
            ));
        }
        v.limit = f64::from(self.initial);
        Ok(v)
    }
}

impl LimitAlgorithm for Vegas {
    fn name(&self) -> &'static str {
        "vegas"
    }

    fn limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, s: &WindowSample, _now: Instant) -> u32 {
        let rtt = nanos(s.rtt).max(1.0);
        self.probe_count += 1;
        let probe_after = self.probe_jitter * f64::from(self.probe_multiplier) * self.limit;
        if self.probe_count as f64 >= probe_after {
            self.probe_jitter = 0.5 + self.rng.f64() * 0.5;
            self.probe_count = 0;
            self.rtt_noload = rtt;
            return self.limit();
        }
        if self.rtt_noload == 0.0 || rtt < self.rtt_noload {
            self.rtt_noload = rtt;
            return self.limit();
        }
        if let Some(l) = self.update_limit(rtt, s.max_in_flight, s.did_drop()) {
            self.limit = l;
        }
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn w(rtt_us: u64, inflight: u32, drops: u32) -> WindowSample {
        WindowSample::new(Duration::from_micros(rtt_us), inflight, 10, drops)
    }

    #[test]
    fn hand_computed_rule() {
        let now = Instant::now();
        let mut v = Vegas::builder().build().unwrap();
        // First window sets rtt_noload = 10 ms, limit unchanged.
        assert_eq!(v.update(&w(10_000, 20, 0), now), 20);
        assert_eq!(v.rtt_noload(), Duration::from_millis(10));
        // rtt 11 ms: queue = ceil(20 * (1 - 10/11)) = ceil(1.82) = 2; 1 < 2 < 3: +log10 = 21.
        assert_eq!(v.update(&w(11_000, 20, 0), now), 21);
        // rtt 10 ms: queue 0 <= 1: + beta (6) = 27.
        assert_eq!(v.update(&w(10_000, 27, 0), now), 27);
        // rtt 20 ms: queue = ceil(27 * 0.5) = 14 > 6: 27 - 1 = 26.
        assert_eq!(v.update(&w(20_000, 27, 0), now), 26);
        // rtt 12.5 ms: queue = ceil(26 * 0.2) = 6: within [alpha, beta]: unchanged.
        assert_eq!(v.update(&w(12_500, 26, 0), now), 26);
        // App limited: 2 * 10 < 26.
        assert_eq!(v.update(&w(10_000, 10, 0), now), 26);
        // Drop: 26 - 1.
        assert_eq!(v.update(&w(10_000, 26, 2), now), 25);
    }

    #[test]
    fn smoothing_blends() {
        let now = Instant::now();
        let mut v = Vegas::builder().smoothing(0.5).build().unwrap();
        v.update(&w(10_000, 20, 0), now);
        // new = 26, blended 0.5 * 20 + 0.5 * 26 = 23.
        assert_eq!(v.update(&w(10_000, 20, 0), now), 23);
    }

    #[test]
    fn baseline_is_reprobed() {
        let now = Instant::now();
        let mut v = Vegas::builder()
            .probe_multiplier(1)
            .seed(1)
            .build()
            .unwrap();
        v.update(&w(10_000, 20, 0), now);
        // The backend got permanently slower: within L * multiplier windows the baseline
        // follows.
        for _ in 0..40 {
            v.update(&w(30_000, 20, 0), now);
        }
        assert_eq!(v.rtt_noload(), Duration::from_millis(30));
    }

    #[test]
    fn builder_names_fields() {
        assert_eq!(
            Vegas::builder().smoothing(0.0).build().unwrap_err().field(),
            "smoothing"
        );
        assert_eq!(
            Vegas::builder()
                .probe_multiplier(0)
                .build()
                .unwrap_err()
                .field(),
            "probe_multiplier"
        );
    }
}
