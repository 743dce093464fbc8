//! The state a [`FallbackLayer`](super::FallbackLayer) shares with every service it builds:
//! the strategy, the trigger, the marker and the counters. Its own module so imports run one
//! way: `layer.rs` -> `service.rs` -> `future.rs`, each using this.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;
use tower::BoxError;

use super::strategy::StrategyInfo;
use super::trigger::FailedResponse;
use crate::event::{Event, EventBus, FallbackEvent};
use crate::outcome::local_rejection;

/// Nanoseconds between two event reports.
const REPORT_NS: u64 = 1_000_000_000;

pub(crate) struct Shared<St, T, M> {
    pub(crate) name: Arc<str>,
    pub(crate) strategy: St,
    pub(crate) trigger: T,
    pub(crate) marker: M,
    pub(crate) events: EventBus,
    pub(crate) epoch: Instant,
    /// Cumulative counters. Every update is a `Relaxed` `fetch_add`: they are statistics,
    /// publish no other memory and are read as independent snapshots. None is touched on
    /// the success path.
    pub(crate) used: AtomicU64,
    pub(crate) declined: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// `used` at the last event report.
    pub(crate) reported: AtomicU64,
    /// Nanoseconds since `epoch` + 1 of the last event report, 0 = never. A `Relaxed`
    /// compare-exchange elects the one caller that reports (at most one per second).
    pub(crate) last_report: AtomicU64,
}

impl<St: StrategyInfo, T, M> Shared<St, T, M> {
    /// A fallback answered (or is answering) a failure: count it; report a counted event at
    /// most once per second (the first use at once).
    pub(crate) fn used(&self, failure: &BoxError) {
        let n = self.used.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let t = now
            .saturating_duration_since(self.epoch)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
            + 1;
        let last = self.last_report.load(Ordering::Relaxed);
        if last != 0 && t.saturating_sub(last) < REPORT_NS {
            return;
        }
        if self
            .last_report
            .compare_exchange(last, t, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let prev = self.reported.swap(n, Ordering::Relaxed);
        self.events.emit(Event::Fallback(FallbackEvent {
            name: self.name.clone(),
            strategy: self.strategy.kind(),
            reason: failure_reason(failure),
            count: n.saturating_sub(prev).max(1),
            at: now,
        }));
    }

    /// The failure was not handled (no retry-after, cache miss, queue full, ...).
    pub(crate) fn declined(&self, why: &'static str) {
        self.declined.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "tower_pressure::fallback", name = %self.name, strategy = self.strategy.kind(), why, "fallback declined");
    }

    /// The fallback itself failed.
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A short reason for events: `"status 503"`, or the
/// [`Rejection`](crate::rejection::Rejection) reason (`"circuit_open"`,
/// `"overloaded"`, `"timeout"`, ...), or `"error"` for application errors.
fn failure_reason(failure: &BoxError) -> Arc<str> {
    if let Some(f) = failure.downcast_ref::<FailedResponse>() {
        return Arc::from(f.to_string().trim_start_matches("primary answered "));
    }
    match local_rejection(&**failure) {
        None => Arc::from("error"),
        Some(r) => Arc::from(r.reason),
    }
}
