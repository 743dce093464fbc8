//! Gradient2: the ratio of a long-term latency average to the current latency (Netflix
//! `Gradient2Limit`), with two fixes.
//!
//! With `L` the (fractional) estimated limit, `short` the window's average latency and
//! `long` an exponential average of window latencies over `long_window` one-second windows
//! (simple average for the first 10), per window of duration `d`:
//!
//! ```text
//! f         = 1 - (1 - 2 / (long_window + 1))^(d / 1 s)
//! long      = long * (1 - f) + short * f
//! if long / short > 2:            long_ema *= 0.95     (fast decay after a load spike)
//! if drops > 0:                   gradient = drop_gradient            (fix 1, see below)
//! else if in_flight < L / 2:      return L             (application limited: no growth)
//! else:                           gradient = clamp(rtt_tolerance * long / short, 0.5, 1.0)
//! new = L * gradient + queue_size
//! L   = clamp(L * (1 - smoothing) + new * smoothing, min_limit, max_limit)
//! ```
//!
//! Defaults (Netflix's): initial 20, min 20, max 200, smoothing 0.2, queue size 4, long
//! window 600, RTT tolerance 1.5.
//!
//! # The long window is a time horizon
//!
//! Netflix's `longWindow` (600) counts the samples its `WindowedLimit` feeds the algorithm,
//! one per window of 1 s by default: a 10-minute horizon. Windows here last 100 ms to 1 s
//! (see [`WindowConfig`](crate::concurrency::WindowConfig)), so counting windows would
//! shrink the horizon to as little as 1 minute, and under sustained queueing `long` would
//! drift up to the queued latency ten times faster than Netflix's (in the overload
//! simulation: p99 2.09x the unloaded p99 at 4x load instead of 1.73x, and no convergence
//! after the capacity halves). So a window weighs its duration in seconds (`f` above): a
//! 1 s window is one Netflix sample, a 100 ms window a tenth of one. The fast decay stays
//! once per window: it only speeds up the return to steady state after a spike.
//!
//! # Fix 1: drops are congestion
//!
//! Netflix's Gradient2 ignores `didDrop` (concurrency-limits issue 176): a backend that
//! answers errors or timeouts fast looks *faster* and the limit grows. Here a window with
//! drops uses `gradient = drop_gradient` (default 0.5, the rule's own floor), which with the
//! default smoothing is about a 10 % decrease per window, even when application limited.
//!
//! # Fix 2: the baseline is re-measured at low concurrency
//!
//! `long` follows the latency it is fed, so under sustained queueing it drifts up to the
//! queued latency and the limit stops falling (the drift Envoy saw in its own gradient
//! controller, envoy issue 11579). As Envoy's adaptive-concurrency filter does, every
//! `probe_interval` (default 60 s) plus a random jitter of up to `probe_jitter` (default 15 %)
//! the limit drops to `probe_concurrency` (default 3) until a window completes whose
//! admissions never exceeded twice that (slack for guaranteed shares admitted beyond the
//! limit); that window's *minimum* latency (its average may still
//! include requests admitted before the probe, with queued latencies) is the no-load latency
//! and resets `long`; the previous estimate is then restored. A probe gives up after 10 windows
//! without such a window (the previous estimate is restored, `long` untouched).

use std::time::Duration;

use tokio::time::Instant;

use super::aimd::check_bounds;
use super::{ExpAvg, LimitAlgorithm, WindowSample, nanos};
use crate::error::{ConfigError, check_range};

const PROBE_GIVE_UP: u32 = 10;
/// The window length one long-window sample stands for: Netflix's `WindowedLimit` default
/// (1 s windows).
const LONG_WINDOW_UNIT_S: f64 = 1.0;

/// The Gradient2 limit (the default algorithm). See the [module docs](crate::concurrency::limit).
///
/// ```
/// use std::time::Duration;
/// use tower_pressure::concurrency::limit::{Gradient2, LimitAlgorithm, WindowSample};
/// let mut g = Gradient2::builder().build().unwrap();
/// let now = tokio::time::Instant::now();
/// // No queueing: L = 20 * 0.8 + (20 * 1.0 + 4) * 0.2 = 20.8.
/// g.update(&WindowSample::new(Duration::from_millis(10), 20, 10, 0), now);
/// assert!((g.estimate() - 20.8).abs() < 1e-9);
/// ```
#[derive(Debug, Clone)]
pub struct Gradient2 {
    limit: f64,
    min: u32,
    max: u32,
    smoothing: f64,
    queue_size: f64,
    tolerance: f64,
    drop_gradient: f64,
    long: ExpAvg,
    probe_interval: Option<Duration>,
    probe_jitter: f64,
    probe_concurrency: u32,
    next_probe: Option<Instant>,
    probing: Option<u32>,
    rng: fastrand::Rng,
}

impl Default for Gradient2 {
    fn default() -> Self {
        Self {
            limit: 20.0,
            min: 20,
            max: 200,
            smoothing: 0.2,
            queue_size: 4.0,
            tolerance: 1.5,
            drop_gradient: 0.5,
            long: ExpAvg::new(600, 10),
            probe_interval: Some(Duration::from_secs(60)),
            probe_jitter: 0.15,
            probe_concurrency: 3,
            next_probe: None,
            probing: None,
            rng: fastrand::Rng::with_seed(0x9d1e_47a2),
        }
    }
}

impl Gradient2 {
    /// Starts from Netflix's defaults plus the two fixes (see the [module docs](crate::concurrency::limit)).
    pub fn builder() -> Gradient2Builder {
        Gradient2Builder {
            g: Gradient2::default(),
            initial: 20,
            long_window: 600,
        }
    }

    /// The fractional estimate behind [`LimitAlgorithm::limit`].
    pub fn estimate(&self) -> f64 {
        self.limit
    }

    /// The long-term latency average (the baseline).
    pub fn long_rtt(&self) -> Duration {
        Duration::from_nanos(self.long.get() as u64)
    }

    /// `true` while a baseline probe holds the limit at the probe concurrency.
    pub fn is_probing(&self) -> bool {
        self.probing.is_some()
    }

    fn schedule_probe(&mut self, now: Instant) {
        if let Some(every) = self.probe_interval {
            let jitter = 1.0 + self.rng.f64() * self.probe_jitter;
            // Saturating (`Duration::mul_f64` and `Instant + Duration` panic on overflow),
            // though `build()` bounds the interval.
            let wait =
                Duration::try_from_secs_f64(every.as_secs_f64() * jitter).unwrap_or(Duration::MAX);
            self.next_probe = Some(crate::clock::deadline(now, wait));
        }
    }
}

/// Builder of [`Gradient2`].
#[derive(Debug, Clone)]
pub struct Gradient2Builder {
    g: Gradient2,
    initial: u32,
    long_window: u32,
}

impl Gradient2Builder {
    /// The limit before the first window (default 20).
    pub fn initial_limit(mut self, v: u32) -> Self {
        self.initial = v;
        self
    }
    /// The lowest limit (default 20).
    pub fn min_limit(mut self, v: u32) -> Self {
        self.g.min = v;
        self
    }
    /// The highest limit (default 200).
    pub fn max_limit(mut self, v: u32) -> Self {
        self.g.max = v;
        self
    }
    /// Weight of each new limit, in `(0, 1]` (default 0.2).
    pub fn smoothing(mut self, v: f64) -> Self {
        self.g.smoothing = v;
        self
    }
    /// Requests allowed to queue, the additive growth term (default 4).
    pub fn queue_size(mut self, v: f64) -> Self {
        self.g.queue_size = v;
        self
    }
    /// Windows in the long-term latency average (default 600).
    pub fn long_window(mut self, v: u32) -> Self {
        self.long_window = v;
        self
    }
    /// How much slower than the long average a window may be before the limit shrinks,
    /// at least 1 (default 1.5).
    pub fn rtt_tolerance(mut self, v: f64) -> Self {
        self.g.tolerance = v;
        self
    }
    /// The gradient used for a window with drops, in `[0.5, 1]` (default 0.5).
    pub fn drop_gradient(mut self, v: f64) -> Self {
        self.g.drop_gradient = v;
        self
    }
    /// How often the no-load baseline is re-measured (default 60 s, at most 1 day; `None`
    /// disables).
    pub fn probe_interval(mut self, v: Option<Duration>) -> Self {
        self.g.probe_interval = v;
        self
    }
    /// Random extra delay of each probe, as a fraction of the interval (default 0.15).
    pub fn probe_jitter(mut self, v: f64) -> Self {
        self.g.probe_jitter = v;
        self
    }
    /// The limit held during a probe (default 3).
    pub fn probe_concurrency(mut self, v: u32) -> Self {
        self.g.probe_concurrency = v;
        self
    }
    /// Seeds the probe jitter, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.g.rng = fastrand::Rng::with_seed(seed);
        self
    }
    /// Validates the configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field for bad bounds, smoothing outside `(0, 1]`, a
    /// negative queue size, a tolerance below 1, a drop gradient outside `[0.5, 1]`, a zero
    /// long window, probe interval (or one above 1 day) or probe concurrency, or a jitter outside `[0, 1]`.
    pub fn build(self) -> Result<Gradient2, ConfigError> {
        let mut g = self.g;
        check_bounds(self.initial, g.min, g.max)?;
        check_range("smoothing", g.smoothing, f64::MIN_POSITIVE, 1.0)?;
        check_range("queue_size", g.queue_size, 0.0, f64::from(u32::MAX))?;
        check_range("rtt_tolerance", g.tolerance, 1.0, 1e6)?;
        check_range("drop_gradient", g.drop_gradient, 0.5, 1.0)?;
        check_range("probe_jitter", g.probe_jitter, 0.0, 1.0)?;
        if self.long_window == 0 {
            return Err(ConfigError::new("long_window", 0, "must be at least 1"));
        }
        if let Some(d) = g.probe_interval {
            crate::clock::check_period("probe_interval", d)?;
        }
        if g.probe_concurrency == 0 {
            return Err(ConfigError::new(
                "probe_concurrency",
                0,
                "must be at least 1",
            ));
        }
        g.limit = f64::from(self.initial);
        g.long = ExpAvg::new(self.long_window, 10);
        Ok(g)
    }
}

impl LimitAlgorithm for Gradient2 {
    fn name(&self) -> &'static str {
        "gradient2"
    }

    fn limit(&self) -> u32 {
        match self.probing {
            Some(_) => self.probe_concurrency,
            None => self.limit as u32,
        }
    }

    fn update(&mut self, s: &WindowSample, now: Instant) -> u32 {
        let short = nanos(s.rtt).max(1.0);

        // Fix 2: the baseline probe.
        if let Some(windows) = self.probing {
            if s.max_in_flight > 0 && s.max_in_flight <= 2 * self.probe_concurrency {
                // The window's *minimum*: requests admitted before the probe may still
                // complete in it with queued latencies, and must not become the baseline.
                self.long.reset_to(nanos(s.min_rtt).max(1.0));
                self.probing = None;
                self.schedule_probe(now);
            } else if windows + 1 >= PROBE_GIVE_UP {
                self.probing = None;
                self.schedule_probe(now);
            } else {
                self.probing = Some(windows + 1);
            }
            return self.limit();
        }
        match self.next_probe {
            None => self.schedule_probe(now),
            Some(at) if now >= at => {
                self.probing = Some(0);
                return self.limit();
            }
            Some(_) => {}
        }

        // Netflix counts the long window in samples of its `WindowedLimit`, whose windows
        // last 1 s: 600 samples are a 10-minute horizon. Our windows last 100 ms to 1 s, so
        // a window weighs its duration in seconds and the horizon stays 10 minutes.
        let long = self
            .long
            .add_weighted(short, s.duration.as_secs_f64() / LONG_WINDOW_UNIT_S);
        if long / short > 2.0 {
            self.long.set(long * 0.95);
        }
        let gradient = if s.did_drop() {
            self.drop_gradient
        } else if f64::from(s.max_in_flight) < self.limit / 2.0 {
            return self.limit();
        } else {
            (self.tolerance * long / short).clamp(0.5, 1.0)
        };
        let new = self.limit * gradient + self.queue_size;
        let new = self.limit * (1.0 - self.smoothing) + new * self.smoothing;
        self.limit = new.clamp(f64::from(self.min), f64::from(self.max));
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(rtt_ms: u64, inflight: u32, drops: u32) -> WindowSample {
        WindowSample::new(Duration::from_millis(rtt_ms), inflight, 10, drops)
    }

    fn g() -> Gradient2 {
        Gradient2::builder()
            .min_limit(1)
            .probe_interval(None)
            .build()
            .unwrap()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn hand_computed_rule() {
        let now = Instant::now();
        let mut g = g();
        // long = 10, gradient = min(1, 1.5) = 1: 20 * 0.8 + 24 * 0.2 = 20.8.
        g.update(&w(10, 20, 0), now);
        close(g.estimate(), 20.8);
        // Again: 20.8 * 0.8 + 24.8 * 0.2 = 21.6.
        g.update(&w(10, 20, 0), now);
        close(g.estimate(), 21.6);
        // rtt 100: long = (10 + 10 + 100) / 3 = 40, gradient = 1.5 * 40 / 100 = 0.6;
        // new = 21.6 * 0.6 + 4 = 16.96; 21.6 * 0.8 + 16.96 * 0.2 = 20.672.
        g.update(&w(100, 20, 0), now);
        close(g.estimate(), 20.672);
        // App limited (5 < 20.672 / 2): unchanged, but long still learns.
        assert_eq!(g.update(&w(10, 5, 0), now), 20);
        close(g.estimate(), 20.672);
    }

    #[test]
    fn gradient_floor_and_long_decay() {
        let now = Instant::now();
        let mut g = g();
        for _ in 0..10 {
            g.update(&w(10, 20, 0), now);
        }
        let before = g.estimate();
        // rtt 1000: gradient = 1.5 * long / 1000 is tiny, floored at 0.5:
        // L * 0.8 + (L * 0.5 + 4) * 0.2 = 0.9 L + 0.8.
        g.update(&w(1000, 30, 0), now);
        close(g.estimate(), before * 0.9 + 0.8);
        // Long latency then back to 10 ms: long / short > 2, so long decays by 5 % at once.
        let mut g = super::tests::g();
        for _ in 0..10 {
            g.update(&w(100, 20, 0), now);
        }
        let long = g.long_rtt().as_nanos() as f64;
        g.update(&w(10, 30, 0), now);
        let f = 2.0 / 601.0;
        let expected = (long * (1.0 - f) + 10e6 * f) * 0.95;
        assert!((g.long_rtt().as_nanos() as f64 - expected).abs() < 2.0);
    }

    #[test]
    fn long_window_is_a_time_horizon() {
        let now = Instant::now();
        let (mut short_windows, mut netflix_windows) = (g(), g());
        let ms = Duration::from_millis;
        for _ in 0..10 {
            short_windows.update(&w(10, 20, 0).with_duration(ms(100)), now);
            netflix_windows.update(&w(10, 20, 0), now);
        }
        // 100 windows of sustained queueing at 50 ms. One-second windows (Netflix's):
        // long = 10 + 40 x (1 - (599/601)^100) = 21.3 ms. 100 ms windows are 10 s in all,
        // a tenth of the weight: long = 10 + 40 x (1 - (599/601)^10) = 11.3 ms.
        for _ in 0..100 {
            short_windows.update(&w(50, 20, 0).with_duration(ms(100)), now);
            netflix_windows.update(&w(50, 20, 0), now);
        }
        let f: f64 = 2.0 / 601.0;
        let expect = |n: i32| 10e6 + 40e6 * (1.0 - (1.0 - f).powi(n));
        let long = |g: &Gradient2| g.long_rtt().as_nanos() as f64;
        assert!((long(&netflix_windows) - expect(100)).abs() < 1e3);
        assert!((long(&short_windows) - expect(10)).abs() < 1e3);
    }

    #[test]
    fn drops_are_congestion() {
        let now = Instant::now();
        let mut g = g();
        g.update(&w(10, 20, 0), now); // 20.8
        // A drop with *fast* latency, even app limited: 20.8 * 0.8 + (20.8 * 0.5 + 4) * 0.2.
        g.update(&w(1, 2, 3), now);
        close(g.estimate(), 20.8 * 0.8 + (20.8 * 0.5 + 4.0) * 0.2);
    }

    #[test]
    fn probe_remeasures_baseline() {
        let t0 = Instant::now();
        let mut g = Gradient2::builder()
            .min_limit(1)
            .probe_interval(Some(Duration::from_secs(10)))
            .probe_jitter(0.0)
            .build()
            .unwrap();
        // Sustained queueing at 50 ms: the long average drifts up to 50 ms.
        for i in 0..100u64 {
            g.update(&w(50, 40, 0), t0 + Duration::from_millis(i * 90));
        }
        assert!(g.long_rtt() > Duration::from_millis(45));
        let est = g.limit();
        // t0 + 10 s: the probe starts and holds the limit at 3.
        assert_eq!(g.update(&w(50, 40, 0), t0 + Duration::from_secs(10)), 3);
        assert!(g.is_probing());
        // A draining window (in-flight still 40) is not a measurement.
        assert_eq!(g.update(&w(50, 40, 0), t0 + Duration::from_secs(11)), 3);
        // A window at concurrency 3 measures the no-load latency, 10 ms, from its minimum
        // (its average, 30 ms, still holds drained requests).
        let probe = w(30, 3, 0).with_min_rtt(Duration::from_millis(10));
        assert_eq!(g.update(&probe, t0 + Duration::from_secs(12)), est);
        assert!(!g.is_probing());
        assert_eq!(g.long_rtt(), Duration::from_millis(10));
    }

    #[test]
    fn builder_names_fields() {
        let b = Gradient2::builder;
        assert_eq!(
            b().rtt_tolerance(0.5).build().unwrap_err().field(),
            "rtt_tolerance"
        );
        assert_eq!(
            b().drop_gradient(0.1).build().unwrap_err().field(),
            "drop_gradient"
        );
        assert_eq!(
            b().long_window(0).build().unwrap_err().field(),
            "long_window"
        );
        assert_eq!(
            b().probe_concurrency(0).build().unwrap_err().field(),
            "probe_concurrency"
        );
        assert_eq!(
            b().probe_interval(Some(Duration::ZERO))
                .build()
                .unwrap_err()
                .field(),
            "probe_interval"
        );
        assert_eq!(
            b().initial_limit(5).build().unwrap_err().field(),
            "initial_limit"
        );
    }
}
