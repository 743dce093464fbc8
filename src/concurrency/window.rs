//! Sample windows: per-request latencies are aggregated in a few atomics, and the limit
//! algorithm runs once per window, on the request that closes it.
//!
//! Netflix's `WindowedLimit` does the same: an algorithm fed every sample costs a lock per
//! request and reacts to noise. A window closes when it is at least `min_window` old (or
//! `2 x` the average latency, capped at `max_window`) *and* holds at least `min_samples`
//! samples; or at `max_window` with any samples at all.
//!
//! # The accumulator word
//!
//! ```text
//!  63             44 43                                  0
//! +-----------------+-------------------------------------+
//! | samples (20 b)  | sum of latencies in µs (44 b)       |
//! +-----------------+-------------------------------------+
//! ```
//!
//! One `fetch_add((1 << 44) + micros)` records a sample. Latencies are clamped to 2^24 µs
//! (16.7 s) so the sum cannot carry into the count before the count itself (2^20 samples per
//! window) would wrap; a window closes long before either. The minimum latency is a separate
//! `fetch_min`, done only when the sample is lower than the current minimum; drops are a
//! separate counter touched only by failed requests. The closer swaps the fields out one by
//! one: a sample landing between two swaps is attributed to the next window, which only
//! blurs the window boundary by one sample.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::limit::WindowSample;
use crate::error::ConfigError;
use crate::sync::{AtomicU32, AtomicU64};

const COUNT_SHIFT: u32 = 44;
const SUM_MASK: u64 = (1 << COUNT_SHIFT) - 1;
const MAX_SAMPLE_US: u64 = 1 << 24;
/// `window_end` while the closer updates the limit.
const CLOSING: u64 = u64::MAX;

/// When a sample window closes. Netflix's windowed limit uses 1 s windows of at least 10
/// samples; the default here is `max(100 ms, 2 x rtt)` capped at 1 s, at least 10 samples,
/// so the limit reacts within a few hundred milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    pub(crate) min_window: Duration,
    pub(crate) max_window: Duration,
    pub(crate) min_samples: u32,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            min_window: Duration::from_millis(100),
            max_window: Duration::from_secs(1),
            min_samples: 10,
        }
    }
}

impl WindowConfig {
    /// A window of at least `min_window` and `min_samples` samples, at most `max_window`.
    ///
    /// # Errors
    /// When `min_window` is zero, `max_window < min_window`, or `min_samples` is zero.
    pub fn new(
        min_window: Duration,
        max_window: Duration,
        min_samples: u32,
    ) -> Result<Self, ConfigError> {
        if min_window.is_zero() {
            return Err(ConfigError::new(
                "window.min_window",
                min_window,
                "must be positive",
            ));
        }
        if max_window < min_window {
            return Err(ConfigError::new(
                "window.max_window",
                max_window,
                format!("must be at least min_window ({min_window:?})"),
            ));
        }
        if min_samples == 0 {
            return Err(ConfigError::new(
                "window.min_samples",
                0,
                "must be at least 1",
            ));
        }
        Ok(Self {
            min_window,
            max_window,
            min_samples,
        })
    }

    /// The length of the next window after one with average latency `rtt`.
    pub(crate) fn next_len(&self, rtt: Duration) -> Duration {
        (rtt * 2).clamp(self.min_window, self.max_window)
    }
}

/// The atomic accumulator of one window.
#[derive(Debug)]
pub(crate) struct Window {
    acc: AtomicU64,
    min_us: AtomicU64,
    max_in_flight: AtomicU32,
    drops: AtomicU32,
    /// Nanoseconds since the limiter's epoch when the window may close; `CLOSING` while the
    /// closer runs (so exactly one request closes a window).
    end: AtomicU64,
    /// Nanoseconds since the epoch when the window opened (written by the closer only).
    start: AtomicU64,
}

impl Window {
    pub(crate) fn new(end_nanos: u64) -> Self {
        Self {
            acc: AtomicU64::new(0),
            min_us: AtomicU64::new(u64::MAX),
            max_in_flight: AtomicU32::new(0),
            drops: AtomicU32::new(0),
            end: AtomicU64::new(end_nanos),
            start: AtomicU64::new(0),
        }
    }

    /// Notes the in-flight count seen by an admission. A plain load first: the RMW only
    /// happens when the count is a new maximum (rare once the window has warmed up).
    #[inline]
    pub(crate) fn observe_in_flight(&self, n: u32) {
        // Relaxed: a statistic; the closer's swap reads whatever was last written.
        if n > self.max_in_flight.load(Ordering::Relaxed) {
            self.max_in_flight.fetch_max(n, Ordering::Relaxed);
        }
    }

    /// Records one completed request. Returns `true` when the caller should try to close
    /// the window (see [`Window::try_claim`]): the window is due and holds `min_samples`, or
    /// it is older than `max_window`.
    #[inline]
    pub(crate) fn record(
        &self,
        latency: Duration,
        dropped: bool,
        now_nanos: u64,
        cfg: &WindowConfig,
    ) -> bool {
        let us = (latency.as_micros() as u64).min(MAX_SAMPLE_US);
        // Relaxed: the counters are statistics; the closer needs no ordering with them.
        let prev = self
            .acc
            .fetch_add((1 << COUNT_SHIFT) + us, Ordering::Relaxed);
        if us < self.min_us.load(Ordering::Relaxed) {
            self.min_us.fetch_min(us, Ordering::Relaxed);
        }
        if dropped {
            self.drops.fetch_add(1, Ordering::Relaxed);
        }
        let end = self.end.load(Ordering::Relaxed);
        if end == CLOSING || now_nanos < end {
            return false;
        }
        (prev >> COUNT_SHIFT) + 1 >= u64::from(cfg.min_samples)
            || now_nanos
                >= self
                    .start
                    .load(Ordering::Relaxed)
                    .saturating_add(cfg.max_window.as_nanos() as u64)
    }

    /// Counts a drop of a request whose latency was not timed.
    pub(crate) fn record_drop(&self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }

    /// Claims the right to close the window: one compare-exchange on `end`, so exactly one
    /// request runs the limit update. Acquire on success pairs with the Release in
    /// [`Window::reopen`] by the previous closer, so this closer sees its algorithm state.
    pub(crate) fn try_claim(&self) -> bool {
        let end = self.end.load(Ordering::Relaxed);
        end != CLOSING
            && self
                .end
                .compare_exchange(end, CLOSING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Takes the window's aggregate (after a successful claim), resetting the counters.
    pub(crate) fn take(&self, now_nanos: u64) -> Option<WindowSample> {
        let acc = self.acc.swap(0, Ordering::Relaxed);
        let min_us = self.min_us.swap(u64::MAX, Ordering::Relaxed);
        let max_in_flight = self.max_in_flight.swap(0, Ordering::Relaxed);
        let drops = self.drops.swap(0, Ordering::Relaxed);
        let start = self.start.swap(now_nanos, Ordering::Relaxed);
        let count = (acc >> COUNT_SHIFT) as u32;
        if count == 0 {
            return None;
        }
        let avg = Duration::from_micros((acc & SUM_MASK) / u64::from(count));
        let min = Duration::from_micros(if min_us == u64::MAX { 0 } else { min_us });
        Some(
            WindowSample::new(avg, max_in_flight, count, drops)
                .with_min_rtt(min)
                .with_duration(Duration::from_nanos(now_nanos.saturating_sub(start))),
        )
    }

    /// Opens the next window, ending at `end_nanos`. Release: publishes the closer's
    /// algorithm update to the next closer (see [`Window::try_claim`]).
    pub(crate) fn reopen(&self, end_nanos: u64) {
        self.end
            .store(end_nanos.min(CLOSING - 1), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_and_closes_once() {
        let w = Window::new(100);
        w.observe_in_flight(3);
        w.observe_in_flight(7);
        w.observe_in_flight(5);
        let cfg = WindowConfig::new(Duration::from_nanos(100), Duration::from_secs(1), 2).unwrap();
        assert!(!w.record(Duration::from_millis(10), false, 50, &cfg)); // too early
        assert!(w.record(Duration::from_millis(30), true, 150, &cfg));
        assert!(w.try_claim());
        assert!(!w.try_claim(), "a window is closed by exactly one request");
        let s = w.take(150).unwrap();
        assert_eq!(s.rtt, Duration::from_millis(20));
        assert_eq!(s.min_rtt, Duration::from_millis(10));
        assert_eq!(s.max_in_flight, 7);
        assert_eq!((s.samples, s.drops), (2, 1));
        w.reopen(300);
        assert!(w.take(300).is_none());
    }

    #[test]
    fn config_validation() {
        let ms = Duration::from_millis;
        assert_eq!(
            WindowConfig::new(ms(0), ms(1), 1).unwrap_err().field(),
            "window.min_window"
        );
        assert_eq!(
            WindowConfig::new(ms(10), ms(1), 1).unwrap_err().field(),
            "window.max_window"
        );
        assert_eq!(
            WindowConfig::new(ms(10), ms(10), 0).unwrap_err().field(),
            "window.min_samples"
        );
        let c = WindowConfig::default();
        assert_eq!(c.next_len(ms(20)), ms(100));
        assert_eq!(c.next_len(ms(300)), ms(600));
        assert_eq!(c.next_len(ms(900)), ms(1000));
    }
}
