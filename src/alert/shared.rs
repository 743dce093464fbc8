//! The metrics an [`AlertLayer`](super::AlertLayer) shares with every service it builds (and
//! with its [`ServiceMetrics`](super::ServiceMetrics) handle). Its own module so imports run
//! one way: `layer.rs` -> `service.rs` -> `future.rs`, each using this.

use tokio::time::Instant;

use super::metrics::{KeyTable, Metrics, NO_SLOT, Thresholds};
use crate::clock::Stamp;

pub(crate) struct Shared {
    pub(crate) total: Metrics,
    pub(crate) keys: KeyTable,
    pub(crate) thresholds: Thresholds,
    pub(crate) epoch: Instant,
}

impl Shared {
    #[inline]
    pub(crate) fn slot(&self, key: &str) -> u32 {
        self.keys
            .slot(key, &self.total.name, self.thresholds.window_ns)
    }

    #[inline]
    pub(crate) fn start(&self, slot: u32, lane: usize) {
        self.total.start(lane);
        if slot != NO_SLOT
            && let Some(m) = self.keys.get(slot)
        {
            m.start(lane);
        }
    }

    #[inline]
    pub(crate) fn complete(&self, slot: u32, lane: usize, start: Stamp, failed: bool) {
        // The completion time a timing layer inside this one already read, or a read.
        let now = start.done();
        let start = start.at;
        let latency = now.saturating_duration_since(start).as_nanos() as u64;
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.total
            .complete(lane, latency, failed, now_ns, &self.thresholds);
        if slot != NO_SLOT
            && let Some(m) = self.keys.get(slot)
        {
            m.complete(lane, latency, failed, now_ns, &self.thresholds);
        }
    }

    #[inline]
    pub(crate) fn cancel(&self, slot: u32, lane: usize) {
        self.total.cancel(lane);
        if slot != NO_SLOT
            && let Some(m) = self.keys.get(slot)
        {
            m.cancel(lane);
        }
    }
}
