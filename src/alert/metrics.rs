//! Per-service metrics recorded by [`AlertLayer`](super::AlertLayer) without locks.
//!
//! # Recording
//!
//! A call costs one `fetch_add` when it starts (`started`) and two when it completes (one
//! latency histogram bucket and the latency sum), plus one more if it failed or was
//! cancelled. The service totals keep these counters per lane (`crate::lane`: one stripe
//! per lane, the calling thread's picked at each update, summed when read), so threads
//! recording through one layer do not write the same cache lines; per-key metrics have one
//! stripe. Every counter is monotonic and updated with `Relaxed`: each is an independent
//! statistic, nothing is published through them, and readers accept that a snapshot taken
//! while calls complete may be a few calls apart between counters (in-flight is computed as
//! `started - completed - cancelled` and saturates at zero). The peak is a `load` followed by a
//! `fetch_max` only when the call is slower than the peak seen.
//!
//! # The histogram
//!
//! Latencies (nanoseconds) go into a fixed log-linear histogram of 328 `AtomicU64` buckets
//! (2.6 KiB): values below 8 ns have their own bucket; above, each power of two is split into
//! 8 linear sub-buckets, so a bucket's width is at most 1/8 of its lower bound and a
//! percentile read from the bucket midpoint is within ±6.25 %. Values above 2^42 ns (73 min)
//! land in the last bucket.
//!
//! # Thresholds
//!
//! Error rate and latency thresholds are evaluated once per window, on the recording path but
//! off the common path: a completing call compares its timestamp with the window's due time
//! (one `Relaxed` load); the first call past it claims the evaluation with a
//! `compare_exchange` on that due time (`AcqRel`: the winner's reads of the previous window's
//! snapshot happen after the previous winner's writes), diffs the histogram against the
//! snapshot kept from the previous window, and emits a `ServiceEvent` when a threshold is
//! crossed or recovered. Losers skip. No lock anywhere.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{Event, EventBus, ServiceEvent, ServiceEventKind};
use crate::lane::Striped;

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const MAX_EXP: u32 = 42;
/// Number of histogram buckets.
pub(crate) const BUCKETS: usize = (MAX_EXP - SUB_BITS + 2) as usize * SUB;

/// The bucket index of a value (nanoseconds).
#[inline]
pub(crate) fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    if e > MAX_EXP {
        return BUCKETS - 1;
    }
    let shift = e - SUB_BITS;
    (e - SUB_BITS + 1) as usize * SUB + ((v >> shift) as usize & (SUB - 1))
}

/// The `[low, high)` range of a bucket.
pub(crate) fn bucket_range(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, i as u64 + 1);
    }
    let g = (i / SUB) as u32;
    let m = (i % SUB) as u64;
    let shift = g - 1;
    let low = (SUB as u64 + m) << shift;
    (low, low + (1u64 << shift))
}

/// A fixed-memory, lock-free latency histogram. See the [module docs](self).
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    pub(crate) fn record(&self, nanos: u64) {
        self.buckets[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn load(&self, out: &mut [u64; BUCKETS]) {
        for (o, b) in out.iter_mut().zip(self.buckets.iter()) {
            *o = b.load(Ordering::Relaxed);
        }
    }
}

/// The value at quantile `q` (0..=1) of bucket counts, as the bucket midpoint; 0 when empty.
pub(crate) fn quantile(counts: &[u64; BUCKETS], q: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut acc = 0;
    for (i, c) in counts.iter().enumerate() {
        acc += c;
        if acc >= rank {
            let (lo, hi) = bucket_range(i);
            return lo + (hi - lo) / 2;
        }
    }
    0
}

/// Threshold configuration shared by every [`Metrics`] of one layer.
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    pub(crate) bus: Option<EventBus>,
    pub(crate) window_ns: u64,
    pub(crate) min_calls: u64,
    pub(crate) error_rate: Option<f64>,
    pub(crate) latency: Option<(f64, Duration)>,
}

const ERR_BIT: u8 = 1;
const LAT_BIT: u8 = 2;

/// The counters every call writes: one stripe of a [`Metrics`].
struct Counters {
    started: AtomicU64,
    failures: AtomicU64,
    cancelled: AtomicU64,
    latency_sum: AtomicU64,
    hist: Histogram,
}

impl Counters {
    fn new() -> Self {
        Self {
            started: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            latency_sum: AtomicU64::new(0),
            hist: Histogram::new(),
        }
    }
}

/// Counters of one service or one key.
pub(crate) struct Metrics {
    pub(crate) name: Arc<str>,
    pub(crate) key: Option<Arc<str>>,
    /// One stripe per lane (see the module docs), summed when read.
    stripes: Striped<Counters>,
    /// Read on every completion, written only by a call slower than any before.
    peak: AtomicU64,
    /// Nanoseconds since the layer's epoch at which the next window evaluation is due.
    next_eval: AtomicU64,
    /// Owned by the evaluation winner: previous window's histogram and failure count.
    prev_hist: OnceLock<Box<[AtomicU64]>>,
    prev_failures: AtomicU64,
    /// Bit 0: error rate exceeded, bit 1: latency exceeded (as last reported).
    state: AtomicU8,
}

/// A point-in-time view of one service's (or key's) metrics: the seed's executor metrics.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The service name given to `AlertLayer::new`.
    pub service: String,
    /// The key (executor id, route), `None` for the whole service.
    pub executor_id: Option<String>,
    /// Calls started.
    pub total_executions: u64,
    /// Calls completed and classified as successes.
    pub successful_executions: u64,
    /// Calls completed and classified as failures.
    pub failed_executions: u64,
    /// Calls whose future was dropped before completing.
    pub cancelled_executions: u64,
    /// Calls in flight now.
    pub in_flight: u64,
    /// Successes over completed calls in percent (100 when none completed).
    pub success_rate_percent: f64,
    /// Mean latency of completed calls in milliseconds.
    pub avg_duration_ms: f64,
    /// Latency of every completed call added up, in milliseconds (the `_sum` of the
    /// Prometheus latency summary; its `_count` is successes plus failures).
    pub total_duration_ms: f64,
    /// Slowest completed call in milliseconds.
    pub peak_duration_ms: f64,
    /// Median latency (±6.25 %).
    pub p50_duration_ms: f64,
    /// 90th percentile latency (±6.25 %).
    pub p90_duration_ms: f64,
    /// 99th percentile latency (±6.25 %).
    pub p99_duration_ms: f64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl Metrics {
    /// Metrics with one stripe (a key's).
    pub(crate) fn new(name: Arc<str>, key: Option<Arc<str>>, window_ns: u64) -> Self {
        Self::striped(name, key, window_ns, 1)
    }

    /// Metrics with `stripes` stripes (rounded up to a power of two, at least 1).
    pub(crate) fn striped(
        name: Arc<str>,
        key: Option<Arc<str>>,
        window_ns: u64,
        stripes: usize,
    ) -> Self {
        Self {
            name,
            key,
            stripes: Striped::new(stripes, Counters::new),
            peak: AtomicU64::new(0),
            next_eval: AtomicU64::new(window_ns),
            prev_hist: OnceLock::new(),
            prev_failures: AtomicU64::new(0),
            state: AtomicU8::new(0),
        }
    }

    /// `f` of every stripe, summed.
    fn sum(&self, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.stripes
            .iter()
            .map(|c| f(c).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Every stripe's histogram, summed into `out`.
    fn load_hist(&self, out: &mut [u64; BUCKETS]) {
        *out = [0; BUCKETS];
        let mut one = [0u64; BUCKETS];
        for c in self.stripes.iter() {
            c.hist.load(&mut one);
            for (o, v) in out.iter_mut().zip(one) {
                *o = o.wrapping_add(v);
            }
        }
    }

    #[inline]
    pub(crate) fn start(&self, lane: usize) {
        self.stripes
            .get(lane)
            .started
            .fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn cancel(&self, lane: usize) {
        self.stripes
            .get(lane)
            .cancelled
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records a completed call in thread index `lane`'s stripe (the one the call started
    /// in); `now_ns` is nanoseconds since the layer's epoch.
    #[inline]
    pub(crate) fn complete(
        &self,
        lane: usize,
        latency_ns: u64,
        failed: bool,
        now_ns: u64,
        t: &Thresholds,
    ) {
        let c = self.stripes.get(lane);
        if failed {
            c.failures.fetch_add(1, Ordering::Relaxed);
        }
        c.latency_sum.fetch_add(latency_ns, Ordering::Relaxed);
        if latency_ns > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(latency_ns, Ordering::Relaxed);
        }
        c.hist.record(latency_ns);
        if now_ns >= self.next_eval.load(Ordering::Relaxed) {
            self.evaluate(now_ns, t);
        }
    }

    #[cold]
    #[inline(never)]
    fn evaluate(&self, now_ns: u64, t: &Thresholds) {
        let due = self.next_eval.load(Ordering::Acquire);
        if now_ns < due
            || self
                .next_eval
                .compare_exchange(
                    due,
                    now_ns + t.window_ns,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        // This thread owns `prev_*` until the next window is due.
        let prev = self
            .prev_hist
            .get_or_init(|| (0..BUCKETS).map(|_| AtomicU64::new(0)).collect());
        let mut delta = [0u64; BUCKETS];
        self.load_hist(&mut delta);
        let mut done = 0;
        for (d, p) in delta.iter_mut().zip(prev.iter()) {
            let cur = *d;
            let old = p.swap(cur, Ordering::Relaxed);
            *d = cur.saturating_sub(old);
            done += *d;
        }
        let failures = self.sum(|c| &c.failures);
        let failed = failures.saturating_sub(self.prev_failures.swap(failures, Ordering::Relaxed));
        if done < t.min_calls.max(1) {
            return;
        }
        let old = self.state.load(Ordering::Relaxed);
        let mut new = 0;
        let mut events = Vec::new();
        let rate = failed as f64 * 100.0 / done as f64;
        if let Some(th) = t.error_rate
            && rate >= th
        {
            new |= ERR_BIT;
            if old & ERR_BIT == 0 {
                events.push(ServiceEventKind::ErrorRateExceeded {
                    rate,
                    threshold: th,
                });
            }
        }
        if let Some((q, th)) = t.latency {
            let observed = Duration::from_nanos(quantile(&delta, q));
            if observed > th {
                new |= LAT_BIT;
                if old & LAT_BIT == 0 {
                    events.push(ServiceEventKind::LatencyExceeded {
                        observed,
                        threshold: th,
                    });
                }
            }
        }
        if old != 0 && new == 0 {
            events.push(ServiceEventKind::Recovered);
        }
        self.state.store(new, Ordering::Relaxed);
        if let Some(bus) = &t.bus {
            let at = Instant::now();
            for kind in events {
                bus.emit(Event::Service(ServiceEvent::new(
                    self.name.clone(),
                    self.key.clone(),
                    kind,
                    at,
                )));
            }
        }
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let mut counts = [0u64; BUCKETS];
        self.load_hist(&mut counts);
        let completed: u64 = counts.iter().sum();
        let started = self.sum(|c| &c.started);
        let failures = self.sum(|c| &c.failures).min(completed);
        let cancelled = self.sum(|c| &c.cancelled);
        let successes = completed - failures;
        let sum = self.sum(|c| &c.latency_sum);
        MetricsSnapshot {
            service: self.name.to_string(),
            executor_id: self.key.as_deref().map(str::to_string),
            total_executions: started.max(completed + cancelled),
            successful_executions: successes,
            failed_executions: failures,
            cancelled_executions: cancelled,
            in_flight: started.saturating_sub(completed + cancelled),
            success_rate_percent: if completed == 0 {
                100.0
            } else {
                successes as f64 * 100.0 / completed as f64
            },
            avg_duration_ms: if completed == 0 {
                0.0
            } else {
                ms(sum) / completed as f64
            },
            total_duration_ms: ms(sum),
            peak_duration_ms: ms(self.peak.load(Ordering::Relaxed)),
            p50_duration_ms: ms(quantile(&counts, 0.5)),
            p90_duration_ms: ms(quantile(&counts, 0.9)),
            p99_duration_ms: ms(quantile(&counts, 0.99)),
        }
    }
}

/// A bounded, insert-only, lock-free table of per-key metrics (open addressing over
/// `OnceLock` slots). A key is inserted once (one allocation); later lookups hash the key and
/// compare strings. When the table is full, further keys are counted in `overflow` and only
/// recorded in the service totals.
pub(crate) struct KeyTable {
    slots: Box<[OnceLock<Box<Metrics>>]>,
    pub(crate) overflow: AtomicU64,
}

/// Slot index meaning "no key / table full".
pub(crate) const NO_SLOT: u32 = u32::MAX;

impl KeyTable {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity).map(|_| OnceLock::new()).collect(),
            overflow: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn get(&self, slot: u32) -> Option<&Metrics> {
        self.slots.get(slot as usize)?.get().map(|b| &**b)
    }

    /// The slot of `key`, inserting it if there is room.
    pub(crate) fn slot(&self, key: &str, name: &Arc<str>, window_ns: u64) -> u32 {
        let n = self.slots.len();
        if n == 0 {
            return NO_SLOT;
        }
        let start = (fnv1a(key) % n as u64) as usize;
        for i in 0..n {
            let idx = (start + i) % n;
            let m = self.slots[idx].get_or_init(|| {
                Box::new(Metrics::new(name.clone(), Some(Arc::from(key)), window_ns))
            });
            if m.key.as_deref() == Some(key) {
                return idx as u32;
            }
        }
        self.overflow.fetch_add(1, Ordering::Relaxed);
        NO_SLOT
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Metrics> {
        self.slots.iter().filter_map(|s| s.get().map(|b| &**b))
    }

    pub(crate) fn find(&self, key: &str) -> Option<&Metrics> {
        self.iter().find(|m| m.key.as_deref() == Some(key))
    }
}

#[inline]
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_contain_their_values() {
        let mut last = 0;
        for v in (0..5000u64).chain([1 << 20, (1 << 20) + 12345, 1 << 41, (1 << 42) + 7]) {
            let i = bucket_of(v);
            assert!(i >= last || v < 5000, "{v}");
            if v < 5000 {
                last = i;
            }
            let (lo, hi) = bucket_range(i);
            if v < 1 << 43 {
                assert!(lo <= v && v < hi, "{v} in [{lo},{hi}) bucket {i}");
                assert!((hi - lo) * 8 <= lo.max(8), "width of bucket {i}");
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_range(BUCKETS - 1).0, 15 << 39);
    }

    #[test]
    fn quantiles_within_bucket_error() {
        let mut c = [0u64; BUCKETS];
        for v in 1..=1000u64 {
            c[bucket_of(v * 1000)] += 1;
        }
        let p50 = quantile(&c, 0.5) as f64;
        let p99 = quantile(&c, 0.99) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.07, "{p50}");
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.07, "{p99}");
    }

    #[test]
    fn striped_totals_are_exact_across_threads() {
        let m = Arc::new(Metrics::striped(Arc::from("svc"), None, u64::MAX, 4));
        assert_eq!(m.stripes.len(), 4);
        let t = Thresholds {
            bus: None,
            window_ns: u64::MAX,
            min_calls: 1,
            error_rate: None,
            latency: None,
        };
        let threads: Vec<_> = (0..4u64)
            .map(|i| {
                let (m, t) = (m.clone(), t.clone());
                std::thread::spawn(move || {
                    let lane = crate::lane::thread_index();
                    for n in 0..1000u64 {
                        m.start(lane);
                        if n % 10 == 0 {
                            m.cancel(lane);
                        } else {
                            m.complete(lane, 1000 * (i + 1), n % 10 == 1, 0, &t);
                        }
                    }
                })
            })
            .collect();
        for h in threads {
            h.join().expect("thread");
        }
        let s = m.snapshot();
        assert_eq!(s.total_executions, 4000);
        assert_eq!(s.cancelled_executions, 400);
        assert_eq!(s.failed_executions, 400);
        assert_eq!(s.successful_executions, 3200);
        assert_eq!(s.in_flight, 0);
        // 900 calls of 1, 2, 3 and 4 us each: mean 2.5 us, peak 4 us.
        assert!(
            (s.avg_duration_ms - 0.0025).abs() < 1e-12,
            "{}",
            s.avg_duration_ms
        );
        assert_eq!(s.peak_duration_ms, 0.004);
        assert_eq!(Metrics::new(Arc::from("k"), None, 1).stripes.len(), 1);
    }

    #[test]
    fn key_table_is_bounded() {
        let t = KeyTable::new(4);
        let name: Arc<str> = Arc::from("svc");
        let a = t.slot("a", &name, 1);
        assert_eq!(t.slot("a", &name, 1), a);
        for k in ["b", "c", "d"] {
            assert_ne!(t.slot(k, &name, 1), NO_SLOT);
        }
        assert_eq!(t.slot("e", &name, 1), NO_SLOT);
        assert_eq!(t.overflow.load(Ordering::Relaxed), 1);
        assert_eq!(t.iter().count(), 4);
        assert!(t.find("c").is_some());
    }
}
