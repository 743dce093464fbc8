//! The tokio runtime's own load: scheduling lag, global queue depth, alive tasks.
//!
//! Host and cgroup figures say how loaded the machine is; they do not say whether *this*
//! executor keeps up. The SRE book's "executor load" for an async runtime is how late work
//! starts, so this source runs a tiny probe task on the monitor's runtime: it sleeps
//! `lag_probe_interval` (default 100 ms) and records how late the timer actually fired.
//! A runtime whose workers are busy polling (or blocked by a stray synchronous call) wakes the
//! probe late, whatever the CPU figures say.
//!
//! | signal | meaning | default |
//! |---|---|---|
//! | [`Signal::SchedulingLag`] | the largest probe lateness since the previous sample, in ms | thresholds [`Thresholds::SCHEDULING_LAG_MS`] |
//! | [`Signal::RuntimeGlobalQueue`] | `RuntimeMetrics::global_queue_depth` | observed only |
//! | [`Signal::RuntimeAliveTasks`] | `RuntimeMetrics::num_alive_tasks` | observed only |
//!
//! The two metrics are the stable part of tokio's `RuntimeMetrics` (no `tokio_unstable`
//! needed). tokio's timer has millisecond granularity, so an idle runtime shows a lag of
//! 0-1 ms. If the probe is overdue when a sample is taken (its timer has not fired yet), the
//! time it is overdue so far counts too, so a runtime stalled longer than the sampling
//! interval does not read as zero lag.
//!
//! # Lifetime and unstarted monitors
//!
//! The probe holds only a `Weak` reference to the shared lag cell, which the source owns:
//! when the monitor (and so the source) is dropped, the probe's next wake-up finds the cell
//! gone and the task ends. The source exists only for monitors built with
//! [`build()`](crate::pressure::PressureMonitorBuilder::build) inside a runtime; a monitor from
//! [`build_unstarted()`](crate::pressure::PressureMonitorBuilder::build_unstarted) has no
//! runtime to measure or spawn the probe on, so it reports no runtime signals at all (rather
//! than metrics of whichever runtime happens to call `sample_now`).
//!
//! [`Thresholds::SCHEDULING_LAG_MS`]: crate::pressure::Thresholds::SCHEDULING_LAG_MS

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeMetrics};
use tokio::time::Instant;

use super::Source;
use crate::pressure::Signal;

/// Shared between the source (strong) and the probe task (weak).
#[derive(Debug)]
struct LagCell {
    epoch: Instant,
    /// Largest lateness seen since the last sample, in µs. The probe `fetch_max`es into it
    /// and the sampler `swap`s it to 0: both `Relaxed`, it is a lone statistic that orders
    /// nothing else.
    max_late_us: AtomicU64,
    /// When the probe's pending timer is due, in µs since `epoch` (`u64::MAX`: none pending).
    /// `Relaxed` for the same reason.
    due_us: AtomicU64,
}

impl LagCell {
    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// The lag to report at `now`: the largest lateness recorded since the previous call, or
    /// how overdue the pending timer already is, whichever is larger. Resets the window.
    fn take(&self, now: Instant) -> f64 {
        let recorded = self.max_late_us.swap(0, Ordering::Relaxed);
        let due = self.due_us.load(Ordering::Relaxed);
        let overdue = self.micros(now).saturating_sub(due);
        recorded.max(overdue) as f64 / 1000.0
    }
}

async fn probe(cell: Weak<LagCell>, every: Duration) {
    loop {
        let due = crate::clock::deadline(Instant::now(), every);
        {
            // Upgrade only briefly: the probe must not keep the cell alive while sleeping.
            let Some(c) = cell.upgrade() else { break };
            c.due_us.store(c.micros(due), Ordering::Relaxed);
        }
        tokio::time::sleep_until(due).await;
        let late = Instant::now().saturating_duration_since(due);
        let Some(c) = cell.upgrade() else { break };
        c.due_us.store(u64::MAX, Ordering::Relaxed);
        let late_us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        c.max_late_us.fetch_max(late_us, Ordering::Relaxed);
    }
    tracing::trace!(target: "tower_pressure::pressure", "scheduling-lag probe stopped");
}

/// Reports [`Signal::SchedulingLag`], [`Signal::RuntimeGlobalQueue`] and
/// [`Signal::RuntimeAliveTasks`] for one runtime.
pub(crate) struct RuntimeSource {
    metrics: RuntimeMetrics,
    cell: Arc<LagCell>,
}

impl std::fmt::Debug for RuntimeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeSource")
            .field("workers", &self.metrics.num_workers())
            .finish()
    }
}

impl RuntimeSource {
    /// Reads `runtime`'s metrics and spawns the lag probe on it, waking every `every`.
    pub(crate) fn spawn(runtime: &Handle, every: Duration) -> RuntimeSource {
        let cell = Arc::new(LagCell {
            epoch: Instant::now(),
            max_late_us: AtomicU64::new(0),
            due_us: AtomicU64::new(u64::MAX),
        });
        runtime.spawn(probe(Arc::downgrade(&cell), every));
        RuntimeSource {
            metrics: runtime.metrics(),
            cell,
        }
    }
}

impl Source for RuntimeSource {
    fn name(&self) -> &str {
        "tokio"
    }

    fn signals(&self) -> Vec<Signal> {
        vec![
            Signal::SchedulingLag,
            Signal::RuntimeGlobalQueue,
            Signal::RuntimeAliveTasks,
        ]
    }

    fn sample(&mut self, out: &mut [f64]) {
        let values = [
            self.cell.take(Instant::now()),
            self.metrics.global_queue_depth() as f64,
            self.metrics.num_alive_tasks() as f64,
        ];
        for (slot, v) in out.iter_mut().zip(values) {
            *slot = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_window_is_max_or_overdue() {
        let epoch = Instant::now();
        let cell = LagCell {
            epoch,
            max_late_us: AtomicU64::new(0),
            due_us: AtomicU64::new(u64::MAX),
        };
        assert_eq!(cell.take(epoch + Duration::from_secs(5)), 0.0);
        cell.max_late_us.fetch_max(3_500, Ordering::Relaxed);
        cell.max_late_us.fetch_max(1_000, Ordering::Relaxed);
        assert_eq!(cell.take(epoch), 3.5);
        assert_eq!(cell.take(epoch), 0.0, "the window resets");
        // The pending timer was due at 1 s; at 1.25 s it is 250 ms overdue.
        cell.due_us.store(1_000_000, Ordering::Relaxed);
        assert_eq!(cell.take(epoch + Duration::from_millis(1250)), 250.0);
        assert_eq!(cell.take(epoch + Duration::from_millis(500)), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn probe_reports_and_stops_when_source_dropped() {
        let handle = Handle::current();
        let baseline = handle.metrics().num_alive_tasks();
        let mut src = RuntimeSource::spawn(&handle, Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(350)).await;
        let mut out = [f64::NAN; 3];
        src.sample(&mut out);
        // Paused time: the timer fires exactly on time.
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], 0.0);
        assert_eq!(out[2], (baseline + 1) as f64);
        drop(src);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(handle.metrics().num_alive_tasks(), baseline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_runtime_shows_lag() {
        let mut src = RuntimeSource::spawn(&Handle::current(), Duration::from_millis(10));
        tokio::task::yield_now().await; // let the probe arm its timer
        // Time moves on while the (single) worker does not poll the probe.
        tokio::time::advance(Duration::from_millis(60)).await;
        let mut out = [f64::NAN; 3];
        src.sample(&mut out);
        assert!(out[0] >= 50.0, "{out:?}");
    }
}
