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
//! `rtt_noload` is replaced by any lower window latency, and re-measured periodically so
//! that a baseline measured when the backend was faster does not hold the limit down
//! forever: after `jitter * probe_multiplier * L` windows (`jitter` uniform in `[0.5, 1)`).
//!
//! # The baseline is re-measured at low concurrency
//!
//! Netflix's `VegasLimit` takes the latency of the next window, whatever the load, as the
//! new no-load latency. Under overload that window's latency is a queued one: the queue
//! estimate drops to zero, the limit grows by `beta` and stays far above capacity (issue 21:
//! with a backend halved from 20 to 10 workers the limit was coming down, 26 to 15, then
//! jumped to 21 and stayed there, about 2x capacity). As Gradient2's probe (and Envoy's
//! adaptive-concurrency filter) do, a re-probe here holds the limit at `probe_concurrency`
//! (default 3, or the limit if lower) until two consecutive windows have admitted nothing
//! beyond twice that: the first lets requests admitted before the probe (with queued
//! latencies) drain, the second's average latency, all of it measured at low concurrency, is
//! the new no-load latency. The previous limit is then restored, and the queue estimate,
//! now measured against a true baseline, brings it down. A probe gives up after 10 windows
//! without two such windows (baseline and limit unchanged).
//!
//! Defaults (Netflix's): initial 20, min 1, max 1000, smoothing 1.0, probe multiplier 30;
//! probe concurrency 3 (Gradient2's).

use tokio::time::Instant;

use super::aimd::check_bounds;
use super::{LimitAlgorithm, WindowSample, log10_floor, nanos};
use crate::error::{ConfigError, check_range};

/// Windows after which a baseline probe that found no quiet windows gives up.
const PROBE_GIVE_UP: u32 = 10;

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
    probe_concurrency: u32,
    /// `Some((windows, quiet))` while a baseline probe runs: windows seen, and whether the
    /// previous one was quiet (admitted nothing beyond twice the probe concurrency).
    probing: Option<(u32, bool)>,
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
            probe_concurrency: 3,
            probing: None,
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

    /// `true` while a baseline probe holds the limit at the probe concurrency.
    pub fn is_probing(&self) -> bool {
        self.probing.is_some()
    }

    /// The limit held during a probe: the probe concurrency, or the limit if lower.
    fn probe_limit(&self) -> u32 {
        self.probe_concurrency.min(self.limit as u32).max(1)
    }

    /// Ends a probe (or the wait for one) and draws the jitter of the next.
    fn schedule_probe(&mut self) {
        self.probing = None;
        self.probe_jitter = 0.5 + self.rng.f64() * 0.5;
        self.probe_count = 0;
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
    /// The limit held while the no-load baseline is re-measured (default 3; at least 1).
    pub fn probe_concurrency(mut self, v: u32) -> Self {
        self.v.probe_concurrency = v;
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
    /// zero probe multiplier or probe concurrency.
    pub fn build(self) -> Result<Vegas, ConfigError> {
        let mut v = self.v;
        check_bounds(self.initial, v.min, v.max)?;
        check_range("smoothing", v.smoothing, f64::MIN_POSITIVE, 1.0)?;
        if v.probe_concurrency == 0 {
            return Err(ConfigError::new(
                "probe_concurrency",
                0,
                "must be at least 1",
            ));
        }
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
        match self.probing {
            Some(_) => self.probe_limit(),
            None => self.limit as u32,
        }
    }

    fn update(&mut self, s: &WindowSample, _now: Instant) -> u32 {
        let rtt = nanos(s.rtt).max(1.0);
        // The baseline probe (see the module docs): never a loaded window's latency.
        if let Some((windows, was_quiet)) = self.probing {
            let quiet = s.max_in_flight > 0 && s.max_in_flight <= 2 * self.probe_limit();
            if quiet && was_quiet {
                self.rtt_noload = rtt;
                self.schedule_probe();
            } else if windows + 1 >= PROBE_GIVE_UP {
                self.schedule_probe();
            } else {
                self.probing = Some((windows + 1, quiet));
            }
            return self.limit();
        }
        self.probe_count += 1;
        let probe_after = self.probe_jitter * f64::from(self.probe_multiplier) * self.limit;
        if self.probe_count as f64 >= probe_after && self.rtt_noload > 0.0 {
            self.probing = Some((0, false));
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
        // The backend got permanently slower: within L * multiplier windows a probe runs at
        // low concurrency and the baseline follows.
        let mut probed = false;
        for _ in 0..40 {
            let inflight = v.limit();
            probed |= v.is_probing();
            v.update(&w(30_000, inflight, 0), now);
        }
        assert!(probed);
        assert_eq!(v.rtt_noload(), Duration::from_millis(30));
    }

    /// A saturated backend of `workers` workers and `base_ms` per request: `n` in flight
    /// wait `n / workers` service times on average once `n > workers`.
    fn backend(n: u32, workers: u32, base_ms: f64) -> WindowSample {
        let queued = (f64::from(n) / f64::from(workers)).max(1.0);
        let rtt = Duration::from_secs_f64(base_ms * queued / 1e3);
        WindowSample::new(rtt, n, n.max(1) * 5, 0)
            .with_min_rtt(rtt.mul_f64(0.9))
            .with_duration(Duration::from_millis(100))
    }

    #[test]
    fn reconverges_after_capacity_halves() {
        // Issue 21: capacity 20 -> 10 workers under sustained overload (every admitted slot
        // is used). The periodic re-probe used to take a queued window's latency as the
        // no-load latency, and the limit jumped back to about 2x capacity and stayed there.
        let mut v = Vegas::builder().seed(7).build().unwrap();
        let mut now = Instant::now();
        let mut run = |v: &mut Vegas, workers: u32, windows: usize| -> Vec<u32> {
            (0..windows)
                .map(|_| {
                    now += Duration::from_millis(100);
                    let s = backend(v.limit(), workers, 20.0);
                    v.update(&s, now);
                    v.limit()
                })
                .collect()
        };
        let before = run(&mut v, 20, 3000);
        let after = run(&mut v, 10, 6000);
        // After the drop, the limit settles at capacity plus Vegas's alpha..beta (3..6 at
        // these limits) queued requests, outside probes (limit 3), and stays there.
        let late = &after[1000..];
        assert!(
            late.iter().all(|l| (10..=16).contains(l) || *l <= 3),
            "stuck above capacity 10: max {:?}, last {:?}",
            late.iter().max(),
            &late[late.len() - 10..]
        );
        // Before it, 20 + 3..6.
        assert!(
            before[2000..]
                .iter()
                .all(|l| (20..=26).contains(l) || *l <= 3),
            "{:?}",
            &before[2000..2100]
        );
        // Several probes happened (one every 0.5..1 x 30 x L windows), and every one kept
        // the baseline at the unloaded 20 ms.
        let probes = after.windows(2).filter(|p| p[0] > 3 && p[1] <= 3).count();
        assert!(probes >= 5, "{probes} probes");
        assert_eq!(v.rtt_noload(), Duration::from_millis(20));
    }

    #[test]
    fn a_probe_gives_up_without_quiet_windows() {
        let now = Instant::now();
        let mut v = Vegas::builder()
            .probe_multiplier(1)
            .seed(3)
            .build()
            .unwrap();
        v.update(&w(10_000, 20, 0), now);
        // Guaranteed shares keep admitting far beyond the probe limit: no window is quiet.
        for _ in 0..100 {
            if v.is_probing() {
                break;
            }
            v.update(&w(10_000, 20, 0), now);
        }
        assert!(v.is_probing(), "a probe within L x multiplier windows");
        let mut windows = 0;
        while v.is_probing() && windows < 100 {
            v.update(&w(50_000, 40, 0), now);
            windows += 1;
        }
        assert_eq!(windows, PROBE_GIVE_UP);
        assert_eq!(
            v.rtt_noload(),
            Duration::from_millis(10),
            "baseline untouched"
        );
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
        assert_eq!(
            Vegas::builder()
                .probe_concurrency(0)
                .build()
                .unwrap_err()
                .field(),
            "probe_concurrency"
        );
    }
}
