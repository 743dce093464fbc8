//! Limit algorithms: how the concurrency limit is learned from observed latency.
//!
//! Every algorithm implements [`LimitAlgorithm`]: it is fed one aggregated [`WindowSample`]
//! per sample window (see [`WindowConfig`](super::WindowConfig)), never one call per request,
//! and answers the new limit. The update runs on whichever request closes the window, under
//! an uncontended mutex that only that request takes: the per-request path only adds the
//! sample to a few atomics.
//!
//! Three algorithms ship, following Netflix's `concurrency-limits` (the rules and defaults
//! are in each module's docs): [`Gradient2`] (the default), [`Vegas`] and [`Aimd`]. Users may
//! plug their own:
//!
//! ```
//! use tower_pressure::concurrency::limit::{LimitAlgorithm, WindowSample};
//! use tokio::time::Instant;
//!
//! /// Halves on drops, otherwise adds one.
//! #[derive(Debug)]
//! struct Halve(u32);
//! impl LimitAlgorithm for Halve {
//!     fn name(&self) -> &'static str { "halve" }
//!     fn limit(&self) -> u32 { self.0 }
//!     fn update(&mut self, s: &WindowSample, _now: Instant) -> u32 {
//!         self.0 = if s.drops > 0 { (self.0 / 2).max(1) } else { self.0 + 1 };
//!         self.0
//!     }
//! }
//! let mut h = Halve(10);
//! let s = WindowSample::new(std::time::Duration::from_millis(5), 8, 10, 1);
//! assert_eq!(h.update(&s, Instant::now()), 5);
//! ```

pub mod aimd;
pub mod gradient2;
pub mod vegas;

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

pub use aimd::{Aimd, AimdBuilder};
pub use gradient2::{Gradient2, Gradient2Builder};
pub use vegas::{Vegas, VegasBuilder};

/// What a sample window observed: the input of every [`LimitAlgorithm::update`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct WindowSample {
    /// The average latency of the requests completed in the window (at least 1 µs).
    pub rtt: Duration,
    /// The smallest latency observed in the window.
    pub min_rtt: Duration,
    /// The highest number of requests in flight seen at admission during the window.
    pub max_in_flight: u32,
    /// Requests completed in the window (successes and drops).
    pub samples: u32,
    /// Requests that failed or timed out in the window: congestion signals.
    pub drops: u32,
    /// How long the window lasted.
    pub duration: Duration,
}

impl WindowSample {
    /// A window with average (and minimum) latency `rtt`, `max_in_flight`, `samples` and
    /// `drops`, lasting one second. For tests and custom algorithms.
    pub fn new(rtt: Duration, max_in_flight: u32, samples: u32, drops: u32) -> Self {
        Self {
            rtt: rtt.max(Duration::from_micros(1)),
            min_rtt: rtt.max(Duration::from_micros(1)),
            max_in_flight,
            samples,
            drops,
            duration: Duration::from_secs(1),
        }
    }

    /// Sets the minimum latency.
    pub fn with_min_rtt(mut self, min_rtt: Duration) -> Self {
        self.min_rtt = min_rtt.max(Duration::from_micros(1));
        self
    }

    /// Sets the window's duration.
    pub fn with_duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }

    /// `true` when at least one request of the window was dropped.
    pub fn did_drop(&self) -> bool {
        self.drops > 0
    }
}

/// A concurrency limit algorithm. See the [module docs](self).
///
/// Implementations hold their own state; the limiter calls [`update`](Self::update) once per
/// window, from one request at a time, with the window's aggregated sample. Time is passed
/// in, so implementations are testable without a runtime.
pub trait LimitAlgorithm: fmt::Debug + Send + 'static {
    /// A short name used in events (`"gradient2"`).
    fn name(&self) -> &'static str;

    /// The current limit (the initial limit before the first update).
    fn limit(&self) -> u32;

    /// Feeds one window and returns the new limit (at least 1; the limiter clamps 0 to 1).
    fn update(&mut self, sample: &WindowSample, now: Instant) -> u32;
}

impl LimitAlgorithm for Box<dyn LimitAlgorithm> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn limit(&self) -> u32 {
        (**self).limit()
    }
    fn update(&mut self, sample: &WindowSample, now: Instant) -> u32 {
        (**self).update(sample, now)
    }
}

/// Netflix's `Log10RootIntFunction`: `max(1, floor(log10(x)))`.
pub(crate) fn log10_floor(x: f64) -> f64 {
    if x < 10.0 {
        1.0
    } else {
        x.log10().floor().max(1.0)
    }
}

/// Nanoseconds of a duration as `f64`.
pub(crate) fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}

/// An exponential moving average with a simple-average warm-up, Netflix's
/// `ExpAvgMeasurement(window, warmup)`: the first `warmup` values are averaged, then each
/// value moves the average by `2 / (window + 1)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExpAvg {
    value: f64,
    window: u32,
    warmup: u32,
    count: u32,
}

impl ExpAvg {
    pub(crate) fn new(window: u32, warmup: u32) -> Self {
        Self {
            value: 0.0,
            window: window.max(1),
            warmup,
            count: 0,
        }
    }

    pub(crate) fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.value += (sample - self.value) / self.count as f64;
        } else {
            let f = 2.0 / (self.window as f64 + 1.0);
            self.value = self.value * (1.0 - f) + sample * f;
        }
        self.value
    }

    /// Adds a value that stands for `weight` ordinary values (a window `weight` times as
    /// long as the reference): the average moves as far as `weight` successive `add`s of
    /// the same value would, `1 - (1 - 2 / (window + 1))^weight`. A warm-up value counts
    /// once whatever its weight.
    pub(crate) fn add_weighted(&mut self, sample: f64, weight: f64) -> f64 {
        if self.count < self.warmup {
            return self.add(sample);
        }
        let keep = 1.0 - 2.0 / (self.window as f64 + 1.0);
        let f = 1.0 - keep.powf(weight.max(0.0));
        self.value = self.value * (1.0 - f) + sample * f;
        self.value
    }

    pub(crate) fn get(&self) -> f64 {
        self.value
    }

    pub(crate) fn set(&mut self, v: f64) {
        self.value = v;
    }

    pub(crate) fn reset_to(&mut self, v: f64) {
        self.value = v;
        self.count = self.warmup;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log10_floor_matches_netflix_table() {
        assert_eq!(log10_floor(1.0), 1.0);
        assert_eq!(log10_floor(9.0), 1.0);
        assert_eq!(log10_floor(20.0), 1.0);
        assert_eq!(log10_floor(100.0), 2.0);
        assert_eq!(log10_floor(999.0), 2.0);
        assert_eq!(log10_floor(1000.0), 3.0);
    }

    #[test]
    fn exp_avg_warms_up_then_smooths() {
        let mut m = ExpAvg::new(3, 2);
        assert_eq!(m.add(10.0), 10.0);
        assert_eq!(m.add(20.0), 15.0);
        // factor 2 / (3 + 1) = 0.5
        assert_eq!(m.add(25.0), 20.0);
        // Weight 2 = two adds of the same value: 20 -> 30 -> 35.
        let mut w = m;
        m.add(40.0);
        m.add(40.0);
        w.add_weighted(40.0, 2.0);
        assert!((w.get() - m.get()).abs() < 1e-9);
        assert_eq!(w.get(), 35.0);
        // Weight 1 is a plain add; weight 0 changes nothing.
        let (mut a, mut b) = (m, m);
        assert_eq!(a.add(10.0), b.add_weighted(10.0, 1.0));
        assert_eq!(a.add_weighted(99.0, 0.0), a.get());
    }
}
