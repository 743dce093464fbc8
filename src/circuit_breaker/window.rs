//! Lock-free sliding windows: the last N calls, or the calls of the last N seconds.
//!
//! Both windows keep their totals so that reading a rate costs O(1) (count window) or O(N
//! buckets) (time window, read only when a failure or slow call is recorded), and recording a
//! call costs a constant number of atomic operations whatever the number of calls in the
//! window.
//!
//! # Count window layout
//!
//! A ring of `n` one-byte slots, each an [`AtomicU8`] holding one call's outcome bits
//! (`RECORDED = 1`, `FAILURE = 2`, `SLOW = 4`; 0 = empty), a `head` counter choosing the slot
//! to overwrite, and a `totals` word packing three 21-bit counters:
//!
//! ```text
//!  63    63 62        42 41        21 20         0
//! [unused ][ slow calls ][ failures  ][ calls     ]
//! ```
//!
//! Recording swaps the new outcome into its slot and adds `packed(new) - packed(old)` to
//! `totals` with one wrapping `fetch_add` (skipped when both are equal).
//!
//! A success (not slow) recorded while `totals` reads "`n` calls, no failure, no slow call"
//! writes nothing at all: the window holds `n` successes, and pushing one more while dropping
//! the oldest leaves the same `n` successes, so the last-`n`-calls content is exactly what
//! a sequential window would hold; only which slot the next failure overwrites differs, and
//! all slots are alike. This is the healthy steady state, and it costs one load of a word
//! that nobody writes, so threads hammering one breaker do not contend on the window. (A
//! concurrent failure whose delta is not yet in `totals` is simply ordered after the
//! skipped success.) Once the window holds a failure or slow call, every call moves `head`
//! again until that outcome has slid out. Every slot value that enters
//! the ring by a swap is added once and subtracted once by whoever swaps it out, so `totals`
//! is exact once in-flight recordings finish; modular arithmetic on the whole word keeps it
//! exact even when two recorders of the same slot apply their deltas out of order (a reader
//! may then see a transient value, which [`CountWindow::totals`] discards when a field is out
//! of range). Clearing swaps every slot to 0 and subtracts what it took, so it composes with
//! concurrent recorders the same way.
//!
//! Orderings: all `Relaxed`. The window is a statistic: no other memory is published through
//! it, and each read-modify-write is atomic on its own.
//!
//! # Time window layout
//!
//! One bucket per second of the span, indexed by `second % n`; each bucket is an
//! [`AtomicU64`] packing the second it counts (20 bits, modulo 2^20 s ≈ 12 days) with two
//! 22-bit counters:
//!
//! ```text
//!  63          44 43        22 21         0
//! [ second tag  ][ failures  ][ calls     ]
//! ```
//!
//! Slow calls live in a second array of buckets (`tag | slow count`), touched only when a
//! call is slow.
//!
//! Every lane (see [`super::lane`]) has its own copy of both arrays, in one allocation with
//! 128 bytes of gap between lanes, so threads on different lanes never write the same cache
//! line; totals sum the buckets of every lane (reading `2 * n * lanes` words, on failures,
//! slow calls and metrics reads only). The counts are exact: a call lands in exactly one
//! lane's bucket. Recording into a bucket whose tag is the current second is one `fetch_add`;
//! a stale bucket is reset and recorded in one compare-exchange (whoever wins starts the new
//! second, losers retry and add). Totals sum the buckets whose tag lies in the last `n`
//! seconds, so calls older than the span are forgotten without any sweep. Counters saturate
//! by design at 4 Mi calls per second per bucket (far above one breaker's traffic); a bucket
//! unused for exactly a multiple of 2^20 s could be misread as current once.

use std::sync::atomic::Ordering::Relaxed;

use crate::sync::{AtomicU8, AtomicU64};

/// The largest count window (21-bit counters).
pub(crate) const MAX_COUNT: u32 = (1 << 20) - 1;

const RECORDED: u8 = 1;
const FAILURE: u8 = 2;
const SLOW: u8 = 4;
const FIELD: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD) - 1;

/// Calls, failures and slow calls currently in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Totals {
    pub(crate) fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.failures as f64 * 100.0 / self.calls as f64
        }
    }
    pub(crate) fn slow_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.slow as f64 * 100.0 / self.calls as f64
        }
    }
}

/// Either window.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// A window; a time window gets `lanes` copies of its buckets.
    pub(crate) fn new(kind: super::config::WindowKind, lanes: usize) -> Self {
        match kind {
            super::config::WindowKind::Count(n) => Window::Count(CountWindow::new(n)),
            super::config::WindowKind::Time(n) => Window::Time(TimeWindow::new(n, lanes)),
        }
    }

    /// Records one call through `lane` (any value; used modulo the lanes). `now_nanos` is
    /// read only by the time window.
    #[inline]
    pub(crate) fn record(
        &self,
        failure: bool,
        slow: bool,
        lane: usize,
        now_nanos: impl FnOnce() -> u64,
    ) {
        match self {
            Window::Count(w) => w.record(failure, slow),
            Window::Time(w) => w.record_in(lane, now_nanos() / 1_000_000_000, failure, slow),
        }
    }

    pub(crate) fn totals(&self, now_nanos: impl FnOnce() -> u64) -> Totals {
        match self {
            Window::Count(w) => w.totals(),
            Window::Time(w) => w.totals(now_nanos() / 1_000_000_000),
        }
    }

    pub(crate) fn clear(&self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
        }
    }
}

/// The last `n` calls.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    head: AtomicU64,
    totals: AtomicU64,
}

#[inline]
fn packed(v: u8) -> u64 {
    (v & RECORDED) as u64
        | ((((v & FAILURE) >> 1) as u64) << FIELD)
        | ((((v & SLOW) >> 2) as u64) << (2 * FIELD))
}

impl CountWindow {
    pub(crate) fn new(n: u32) -> Self {
        Self {
            slots: (0..n.max(1)).map(|_| AtomicU8::new(0)).collect(),
            head: AtomicU64::new(0),
            totals: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn record(&self, failure: bool, slow: bool) {
        if !(failure || slow) && self.totals.load(Relaxed) == self.slots.len() as u64 {
            // Full of successes: one more success leaves the last `n` calls exactly as they
            // are, so nothing is written (the healthy steady state costs one shared read).
            return;
        }
        let v = RECORDED | if failure { FAILURE } else { 0 } | if slow { SLOW } else { 0 };
        let i = self.head.fetch_add(1, Relaxed) % self.slots.len() as u64;
        let old = self.slots[i as usize].swap(v, Relaxed);
        if old != v {
            self.totals
                .fetch_add(packed(v).wrapping_sub(packed(old)), Relaxed);
        }
    }

    /// Calls that moved the ring so far (tests: shows when a record wrote nothing).
    #[cfg(test)]
    pub(crate) fn head(&self) -> u64 {
        self.head.load(Relaxed)
    }

    pub(crate) fn totals(&self) -> Totals {
        let t = self.totals.load(Relaxed);
        let n = self.slots.len() as u64;
        let calls = t & FIELD_MASK;
        let failures = (t >> FIELD) & FIELD_MASK;
        let slow = (t >> (2 * FIELD)) & FIELD_MASK;
        if calls > n || failures > calls || slow > calls || t >> (3 * FIELD) != 0 {
            // Transient: two recorders of one slot applied their deltas out of order.
            return Totals::default();
        }
        Totals {
            calls,
            failures,
            slow,
        }
    }

    pub(crate) fn clear(&self) {
        for s in self.slots.iter() {
            let old = s.swap(0, Relaxed);
            if old != 0 {
                self.totals
                    .fetch_add(0u64.wrapping_sub(packed(old)), Relaxed);
            }
        }
    }
}

const TAG_BITS: u32 = 20;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const TAG_SHIFT: u32 = 44;
const CNT_BITS: u32 = 22;
const CNT_MASK: u64 = (1 << CNT_BITS) - 1;

/// The calls one second's bucket is sure to hold (one lane's 22-bit counter): a time window
/// of `n` seconds can hold at least `n` times this many calls.
pub(crate) const BUCKET_CALLS: u64 = CNT_MASK;

/// Words between the starts of two lanes' buckets beyond the `2 * n` buckets: 128 bytes.
const LANE_GAP: usize = 16;

/// The calls of the last `n` seconds.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    /// Lane `l` owns `words[l * stride..]`: `n` call buckets, then `n` slow buckets.
    words: Box<[AtomicU64]>,
    n: usize,
    stride: usize,
    /// A power of two.
    lanes: usize,
}

#[inline]
fn tag_of(sec: u64) -> u64 {
    sec & TAG_MASK
}

impl TimeWindow {
    pub(crate) fn new(secs: u32, lanes: usize) -> Self {
        let n = secs.max(1) as usize;
        let lanes = lanes.max(1).next_power_of_two();
        let stride = 2 * n + LANE_GAP;
        // Tag 0 with zero counts is indistinguishable from an empty bucket: harmless.
        Self {
            words: (0..lanes * stride).map(|_| AtomicU64::new(0)).collect(),
            n,
            stride,
            lanes,
        }
    }

    /// Lane `lane`'s call buckets and slow buckets.
    #[inline]
    fn lane(&self, lane: usize) -> (&[AtomicU64], &[AtomicU64]) {
        // `lanes` is a power of two, so `start + 2 * n <= lanes * stride = words.len()`.
        let start = (lane & (self.lanes - 1)) * self.stride;
        let (calls, rest) = self.words[start..start + 2 * self.n].split_at(self.n);
        (calls, rest)
    }

    #[cfg(test)]
    pub(crate) fn record(&self, sec: u64, failure: bool, slow: bool) {
        self.record_in(0, sec, failure, slow)
    }

    #[inline]
    fn add(bucket: &AtomicU64, sec: u64, delta: u64) {
        let tag = tag_of(sec) << TAG_SHIFT;
        let mut cur = bucket.load(Relaxed);
        loop {
            if cur & (TAG_MASK << TAG_SHIFT) == tag {
                bucket.fetch_add(delta, Relaxed);
                return;
            }
            match bucket.compare_exchange_weak(cur, tag | delta, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Records one call of second `sec` in `lane`'s buckets (`lane` is taken modulo the
    /// lanes).
    #[inline]
    pub(crate) fn record_in(&self, lane: usize, sec: u64, failure: bool, slow: bool) {
        let (buckets, slows) = self.lane(lane);
        let i = (sec % self.n as u64) as usize;
        let delta = 1 | if failure { 1 << CNT_BITS } else { 0 };
        Self::add(&buckets[i], sec, delta);
        if slow {
            Self::add(&slows[i], sec, 1);
        }
    }

    fn live(&self, word: u64, sec: u64) -> bool {
        let age = tag_of(sec).wrapping_sub(word >> TAG_SHIFT) & TAG_MASK;
        age < self.n as u64
    }

    pub(crate) fn totals(&self, sec: u64) -> Totals {
        let mut t = Totals::default();
        for l in 0..self.lanes {
            let (buckets, slows) = self.lane(l);
            for (b, s) in buckets.iter().zip(slows.iter()) {
                let w = b.load(Relaxed);
                if self.live(w, sec) {
                    t.calls += w & CNT_MASK;
                    t.failures += (w >> CNT_BITS) & CNT_MASK;
                }
                let w = s.load(Relaxed);
                if self.live(w, sec) {
                    t.slow += w & ((1 << TAG_SHIFT) - 1);
                }
            }
        }
        t.slow = t.slow.min(t.calls);
        t
    }

    pub(crate) fn clear(&self) {
        for b in self.words.iter() {
            // A far-away tag: never live again until written (gap words too: harmless).
            b.store((TAG_MASK / 2) << TAG_SHIFT, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_slides() {
        let w = CountWindow::new(100);
        for _ in 0..1000 {
            w.record(false, false);
        }
        assert_eq!(
            w.totals(),
            Totals {
                calls: 100,
                failures: 0,
                slow: 0
            }
        );
        for i in 1..=50 {
            w.record(true, i % 2 == 0);
        }
        let t = w.totals();
        assert_eq!((t.calls, t.failures, t.slow), (100, 50, 25));
        assert_eq!(t.failure_rate(), 50.0);
        w.clear();
        assert_eq!(w.totals(), Totals::default());
        w.record(true, false);
        assert_eq!(w.totals().failures, 1);
    }

    #[test]
    fn time_window_forgets_old_seconds() {
        let w = TimeWindow::new(10, 1);
        for s in 0..5 {
            for _ in 0..100 {
                w.record(s, s % 2 == 0, false);
            }
        }
        assert_eq!(w.totals(4).calls, 500);
        assert_eq!(w.totals(4).failures, 300);
        // At second 12, seconds 0..=2 are older than the span (3..=12 live).
        assert_eq!(w.totals(12).calls, 200);
        // Far in the future: everything forgotten, even though no call swept the buckets.
        assert_eq!(w.totals(1000), Totals::default());
        w.record(1000, true, true);
        assert_eq!(
            w.totals(1000),
            Totals {
                calls: 1,
                failures: 1,
                slow: 1
            }
        );
        w.clear();
        assert_eq!(w.totals(1000), Totals::default());
    }

    #[test]
    fn time_window_cost_is_per_bucket_not_per_call() {
        // Each record touches exactly one bucket (and one slow bucket): after a million calls
        // the state is still `n` words, and totals read `2n` words.
        let w = TimeWindow::new(60, 1);
        for i in 0..1_000_000u64 {
            w.record(i / 20_000, false, false);
        }
        assert_eq!(w.words.len(), 2 * 60 + LANE_GAP);
        assert_eq!(w.totals(49).calls, 1_000_000);
        assert_eq!(w.totals(60 + 49).calls, 0);
    }

    #[test]
    fn time_window_lanes_add_up_and_forget_together() {
        let w = TimeWindow::new(10, 4);
        for lane in 0..8 {
            for _ in 0..10 {
                w.record_in(lane, 3, lane % 2 == 0, lane == 1);
            }
        }
        assert_eq!(
            w.totals(5),
            Totals {
                calls: 80,
                failures: 40,
                slow: 10
            }
        );
        w.record_in(7, 14, true, false);
        assert_eq!(w.totals(14).calls, 1);
        w.clear();
        assert_eq!(w.totals(14), Totals::default());
    }
}
