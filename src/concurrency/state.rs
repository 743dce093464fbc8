//! The limiter's shared state: the packed in-flight word, the window, the limit updater, the
//! permit guard, the Critical wait queue and the handle.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::clock::Stamp;

use super::error::Overloaded;
use super::limit::{LimitAlgorithm, WindowSample};
use super::partition::{MAX_LIMIT, Shares, class_count, lane, total, try_reserve};
use super::policy::{PressureDecision, PressurePolicy, ShedReason, decide};
use super::window::{Window, WindowConfig};
use crate::event::{ConcurrencyEvent, ConcurrencyEventKind, Event, EventBus};
use crate::pressure::PressureLevel;
use crate::pressure::PressureMonitor;
use crate::priority::Priority;
use crate::sync::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Mutex, MutexGuard};

/// Entries kept in the limit history.
const HISTORY: usize = 512;
/// Latency is measured on about this many requests per window at most (see `sample_mask`).
const MEASURED_PER_WINDOW: u32 = 40;
/// The sparsest latency sampling: one request in this many (a power of two).
const MAX_SAMPLE_EVERY: u32 = 256;

thread_local! {
    /// Per-thread request counter choosing which requests are timed: no shared write.
    static TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The start of a timed request (out of line: at most one request in 256 is timed).
#[cold]
#[inline(never)]
fn timed_start() -> Stamp {
    crate::clock::stamp()
}

/// `true` for one request in `mask + 1` (a power of two) on this thread: a mask, not a
/// modulo, since an integer division costs more than the rest of the decision.
#[inline]
fn measure_this(mask: u32) -> bool {
    mask == 0
        || TICK.with(|t| {
            let v = t.get().wrapping_add(1);
            t.set(v);
            v & mask == 0
        })
}

/// The sampling rate for the next window: about `MEASURED_PER_WINDOW` timed requests out of
/// `completions`, as a power of two in `1..=MAX_SAMPLE_EVERY` (rounded down: a little more
/// timing rather than too few samples).
fn sample_every_for(completions: u32) -> u32 {
    let every = (completions / MEASURED_PER_WINDOW).clamp(1, MAX_SAMPLE_EVERY);
    1 << (31 - every.leading_zeros())
}

/// Windows over which the BBR estimate takes its maximum throughput and minimum latency.
const BBR_WINDOWS: usize = 10;

pub(crate) struct Config {
    pub(crate) name: Arc<str>,
    pub(crate) policy: PressurePolicy,
    pub(crate) shares: Shares,
    pub(crate) bbr_check: bool,
    pub(crate) window: WindowConfig,
    pub(crate) errors_as_drops: bool,
    pub(crate) retry_after: Duration,
    pub(crate) status: u16,
    pub(crate) event_interval: Duration,
    pub(crate) queue: Option<(usize, Duration)>,
}

/// One point of the limit history.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LimitPoint {
    /// When the window closed.
    pub at: Instant,
    /// The learned limit after the update.
    pub limit: u32,
    /// The window's average latency.
    pub rtt: Duration,
    /// The window's highest in-flight count.
    pub max_in_flight: u32,
    /// Requests completed in the window.
    pub samples: u32,
    /// Requests dropped in the window.
    pub drops: u32,
}

struct Updater {
    algorithm: Box<dyn LimitAlgorithm>,
    history: VecDeque<LimitPoint>,
    last_emitted: u32,
    last_emit_at: Option<Instant>,
    bbr: [(f64, f64); BBR_WINDOWS],
    bbr_next: usize,
}

/// `repr(C)` with the in-flight word first, then the per-call reads (`eff`, `sample_mask`):
/// they share a cache line with the `Arc`'s reference counts. Every admission touches all of
/// them (the permit clones the `Arc`), so when threads contend one line moves between cores
/// per call instead of two, as with tower's `ConcurrencyLimit` (whose semaphore sits beside
/// its `Arc` counts). Two threads on one limiter, `cargo bench --bench concurrency -- 2-threads`,
/// two runs each: this layout 1.04x and 0.72x `ConcurrencyLimit`; the word padded onto a line
/// of its own 0.90x and 1.31x (direct loop 1.06x and 1.96x).
#[repr(C)]
pub(crate) struct Shared {
    /// Per-class in-flight counts, one 16-bit lane each (see `partition.rs`). Every access
    /// is `Relaxed`: the word guards no other memory, it only counts, and read-modify-writes
    /// of one location are totally ordered whatever their ordering, so no two reservations
    /// can both take the last slot.
    word: AtomicU64,
    /// The effective limit at each pressure level (learned limit x factor), recomputed by
    /// the window closer so admission is one indexed load. `Relaxed`: a request may see a
    /// limit one window old, which is harmless.
    eff: [AtomicU32; 5],
    /// Latency is timed on one request in `sample_mask + 1` (a power of two, per thread),
    /// set by the window closer so that about `MEASURED_PER_WINDOW` requests per window are
    /// timed: reading the clock twice per request costs more than the whole admission where
    /// `clock_gettime` is slow (virtual machines), and a window average needs no more. At
    /// low rates every request is timed. Drops are always counted. `Relaxed`.
    sample_mask: AtomicU32,
    /// `guaranteed[level][class]`: the class's guaranteed share of `eff[level]`
    /// (`Shares::guaranteed`), recomputed with `eff`; read only at the limit. `Relaxed`, as
    /// `eff`.
    guaranteed: [[AtomicU32; 4]; 5],
    limit: AtomicU32,
    /// `ceil(max throughput x min rtt)` over recent windows (0 = unknown). `Relaxed`.
    bbr_capacity: AtomicU32,
    window: Window,
    shed: [AtomicU64; 4],
    shed_reason: [AtomicU8; 4],
    shed_reported: [AtomicU64; 4],
    shed_next_emit: AtomicU64,
    not_our_load: AtomicU64,
    updater: Mutex<Updater>,
    queue: Option<WaitQueue>,
    pub(crate) cfg: Config,
    monitor: PressureMonitor,
    bus: EventBus,
    algorithm_name: &'static str,
    epoch: Instant,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveConcurrency")
            .field("name", &self.cfg.name)
            .field("algorithm", &self.algorithm_name)
            .field("limit", &self.limit.load(Ordering::Relaxed))
            .field("in_flight", &total(self.word.load(Ordering::Relaxed)))
            .finish()
    }
}

pub(crate) enum Admission {
    Admitted(Permit),
    Wait(oneshot::Receiver<Permit>, Overloaded),
    Refused(Overloaded),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Shared {
    pub(crate) fn new(
        cfg: Config,
        algorithm: Box<dyn LimitAlgorithm>,
        monitor: PressureMonitor,
        bus: EventBus,
    ) -> Arc<Self> {
        let epoch = Instant::now();
        let initial = algorithm.limit().clamp(1, MAX_LIMIT);
        let algorithm_name = algorithm.name();
        let queue = cfg.queue.map(|(cap, timeout)| WaitQueue {
            cap,
            timeout,
            len: AtomicUsize::new(0),
            waiters: Mutex::new(Vec::with_capacity(cap)),
        });
        let s = Arc::new(Self {
            word: AtomicU64::new(0),
            eff: Default::default(),
            guaranteed: Default::default(),
            limit: AtomicU32::new(initial),
            bbr_capacity: AtomicU32::new(0),
            sample_mask: AtomicU32::new(0),
            window: Window::new(cfg.window.min_window.as_nanos() as u64),
            shed: Default::default(),
            shed_reason: Default::default(),
            shed_reported: Default::default(),
            shed_next_emit: AtomicU64::new(0),
            not_our_load: AtomicU64::new(0),
            updater: Mutex::new(Updater {
                algorithm,
                history: VecDeque::with_capacity(HISTORY),
                last_emitted: initial,
                last_emit_at: None,
                bbr: [(0.0, f64::INFINITY); BBR_WINDOWS],
                bbr_next: 0,
            }),
            queue,
            cfg,
            monitor,
            bus,
            algorithm_name,
            epoch,
        });
        s.publish_limit(initial);
        s
    }

    pub(crate) fn queue_timeout(&self) -> Duration {
        self.queue.as_ref().map_or(Duration::ZERO, |q| q.timeout)
    }

    #[inline]
    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn publish_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Relaxed);
        for l in PressureLevel::ALL {
            let eff = self.cfg.policy.scaled(l, limit);
            self.eff[l.index()].store(eff, Ordering::Relaxed);
            for class in Priority::ALL {
                self.guaranteed[l.index()][class.index()]
                    .store(self.cfg.shares.guaranteed(class, eff), Ordering::Relaxed);
            }
        }
    }

    /// The pressure check for `class` right now.
    #[inline]
    fn pressure(&self, class: Priority, word: u64) -> PressureDecision {
        let (level, signal, _) = self.monitor.level_and_cause();
        if level == PressureLevel::Normal {
            return PressureDecision::Apply(level);
        }
        decide(
            &self.cfg.policy,
            self.cfg.bbr_check,
            level,
            signal,
            class,
            total(word),
            self.bbr_capacity.load(Ordering::Relaxed),
        )
    }

    /// The common case of admission, inline and straight: pressure `Normal` and the word
    /// below the limit. One load of the monitor's level, one of the limit, one of the
    /// word, the compare-exchange, a load for the in-flight maximum and the sampling
    /// decision. `None` sends the request to [`Shared::acquire`], which decides everything
    /// else (pressure, shares, the queue, refusals) and may still admit it.
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>, class: Priority) -> Option<Permit> {
        if self.monitor.level() != PressureLevel::Normal {
            return None;
        }
        let limit = self.eff[PressureLevel::Normal.index()].load(Ordering::Relaxed);
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if total(word) >= limit {
                return None;
            }
            // Relaxed on both paths: see the field's comment.
            match self.word.compare_exchange_weak(
                word,
                word + lane(class),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.admitted(class, word + lane(class))),
                Err(actual) => word = actual,
            }
        }
    }

    /// The permit of a reservation that made the word `new`.
    #[inline]
    fn admitted(self: &Arc<Self>, class: Priority, new: u64) -> Permit {
        self.window.observe_in_flight(total(new));
        let measure = measure_this(self.sample_mask.load(Ordering::Relaxed));
        Permit::new(self.clone(), class, measure)
    }

    /// Admission: the pressure check, then one compare-exchange reservation on the word.
    /// Out of line: [`Shared::try_acquire`] takes the common case.
    #[inline(never)]
    pub(crate) fn acquire(self: &Arc<Self>, class: Priority) -> Admission {
        let mut word = self.word.load(Ordering::Relaxed);
        let level = match self.monitor.level() {
            PressureLevel::Normal => PressureLevel::Normal,
            _ => match self.under_pressure(class, word) {
                Ok(level) => level,
                Err(refused) => return refused,
            },
        };
        let limit = self.eff[level.index()].load(Ordering::Relaxed);
        loop {
            let guaranteed =
                || self.guaranteed[level.index()][class.index()].load(Ordering::Relaxed);
            let Some(new) = try_reserve(word, class, limit, guaranteed) else {
                return self.full(class, word, level);
            };
            // Relaxed on both paths: see the field's comment.
            match self
                .word
                .compare_exchange_weak(word, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Admission::Admitted(self.admitted(class, new)),
                Err(actual) => word = actual,
            }
        }
    }

    /// The pressure check when the level is above `Normal`: the level to admit at, or the
    /// refusal.
    #[inline(never)]
    fn under_pressure(&self, class: Priority, word: u64) -> Result<PressureLevel, Admission> {
        match self.pressure(class, word) {
            PressureDecision::Apply(level) => Ok(level),
            PressureDecision::NotOurLoad { .. } => {
                self.not_our_load.fetch_add(1, Ordering::Relaxed);
                Ok(PressureLevel::Normal)
            }
            PressureDecision::Shed(reason) => Err(Admission::Refused(self.refuse(
                class,
                reason,
                word,
                self.monitor.level(),
            ))),
        }
    }

    /// The limit is reached: a Critical request may wait in the queue, others are refused.
    #[inline(never)]
    fn full(self: &Arc<Self>, class: Priority, word: u64, level: PressureLevel) -> Admission {
        if class == Priority::Critical
            && let Some(rx) = self.queue.as_ref().and_then(WaitQueue::enqueue)
        {
            let err = self.overloaded(class, ShedReason::QueueTimeout, word, level);
            return Admission::Wait(rx, err);
        }
        Admission::Refused(self.refuse(class, ShedReason::LimitReached, word, level))
    }

    fn overloaded(
        &self,
        class: Priority,
        reason: ShedReason,
        word: u64,
        level: PressureLevel,
    ) -> Overloaded {
        Overloaded {
            priority: class,
            limit: self.eff[level.index()].load(Ordering::Relaxed),
            in_flight: total(word),
            level,
            reason,
            retry_after: self.cfg.retry_after,
            status: self.cfg.status,
        }
    }

    #[cold]
    fn refuse(
        &self,
        class: Priority,
        reason: ShedReason,
        word: u64,
        level: PressureLevel,
    ) -> Overloaded {
        self.count_shed(class, reason);
        self.overloaded(class, reason, word, level)
    }

    /// Counts a shed request and reports the counts at most once per event interval.
    pub(crate) fn count_shed(&self, class: Priority, reason: ShedReason) {
        self.shed[class.index()].fetch_add(1, Ordering::Relaxed);
        self.shed_reason[class.index()].store(reason.code(), Ordering::Relaxed);
        self.maybe_emit_shed(Instant::now());
    }

    fn maybe_emit_shed(&self, now: Instant) {
        let n = self.nanos(now);
        let next = self.shed_next_emit.load(Ordering::Relaxed);
        if n < next {
            return;
        }
        let due = n.saturating_add(self.cfg.event_interval.as_nanos() as u64);
        // One winner per interval; Relaxed: the counters read below are statistics.
        if self
            .shed_next_emit
            .compare_exchange(next, due, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        for class in Priority::ALL {
            let i = class.index();
            let count = self.shed[i].load(Ordering::Relaxed);
            let before = self.shed_reported[i].swap(count, Ordering::Relaxed);
            if count > before {
                let reason = ShedReason::from_code(self.shed_reason[i].load(Ordering::Relaxed));
                self.bus.emit(Event::Concurrency(ConcurrencyEvent {
                    name: self.cfg.name.clone(),
                    kind: ConcurrencyEventKind::Shed {
                        priority: class,
                        count: count - before,
                        reason: Arc::from(reason.as_str()),
                    },
                    at: now,
                }));
            }
        }
    }

    /// Returns a slot: records the sample, hands the slot to a queued Critical request if
    /// any, else frees it; closes the window when due.
    fn release(
        self: &Arc<Self>,
        class: Priority,
        start: Option<Instant>,
        end: Option<Instant>,
        outcome: Outcome,
    ) {
        let mut close = None;
        if let (Some(start), Outcome::Success | Outcome::Dropped) = (start, outcome) {
            let now = end.unwrap_or_else(Instant::now);
            let due = self.window.record(
                now.saturating_duration_since(start),
                outcome == Outcome::Dropped,
                self.nanos(now),
                &self.cfg.window,
            );
            if due {
                close = Some(now);
            }
        } else if outcome == Outcome::Dropped {
            self.window.record_drop();
        }
        let handed = match &self.queue {
            // Relaxed: a waiter enqueued concurrently is picked up by the next release.
            Some(q) if q.len.load(Ordering::Relaxed) > 0 => self.handoff(q, class),
            _ => false,
        };
        if !handed {
            self.word.fetch_sub(lane(class), Ordering::Relaxed);
        }
        if let Some(now) = close {
            self.close_window(now);
        }
    }

    /// LIFO hand-off of a freed slot to the freshest queued Critical request.
    #[cold]
    fn handoff(self: &Arc<Self>, q: &WaitQueue, class: Priority) -> bool {
        let word = self.word.load(Ordering::Relaxed);
        if total(word) > self.eff[self.monitor.level().index()].load(Ordering::Relaxed) {
            return false; // the limit fell: shrink instead of handing over
        }
        // Moves the slot from `class`'s lane to Critical's: lane(class) >= 1 here, so the
        // wrapping add never borrows across lanes.
        let delta = lane(Priority::Critical).wrapping_sub(lane(class));
        loop {
            let Some(tx) = q.pop() else {
                return false;
            };
            self.word.fetch_add(delta, Ordering::Relaxed);
            match tx.send(Permit::handed_off(self.clone())) {
                Ok(()) => return true,
                Err(mut p) => {
                    // The waiter gave up meanwhile: undo, and let this permit vanish quietly.
                    self.word.fetch_sub(delta, Ordering::Relaxed);
                    p.outcome = Outcome::Disarmed;
                }
            }
        }
    }

    /// Runs the limit algorithm on the closed window (one request per window gets here).
    #[cold]
    fn close_window(&self, now: Instant) {
        if !self.window.try_claim() {
            return;
        }
        let n = self.nanos(now);
        let sample = self.window.take(n);
        let mut next_len = self.cfg.window.min_window;
        if let Some(mut s) = sample {
            // Scale the timed samples back to all completions, and pick the next rate.
            let every = self.sample_mask.load(Ordering::Relaxed).saturating_add(1);
            s.samples = s.samples.saturating_mul(every);
            let next_every = sample_every_for(s.samples);
            self.sample_mask.store(next_every - 1, Ordering::Relaxed);
            let mut up = lock(&self.updater);
            let new = up.algorithm.update(&s, now).clamp(1, MAX_LIMIT);
            if new != self.limit.load(Ordering::Relaxed) {
                self.publish_limit(new);
            }
            self.update_bbr(&mut up, &s);
            if up.history.len() == HISTORY {
                up.history.pop_front();
            }
            up.history.push_back(LimitPoint {
                at: now,
                limit: new,
                rtt: s.rtt,
                max_in_flight: s.max_in_flight,
                samples: s.samples,
                drops: s.drops,
            });
            let due = up
                .last_emit_at
                .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.event_interval);
            if new != up.last_emitted && due {
                let from = up.last_emitted;
                up.last_emitted = new;
                up.last_emit_at = Some(now);
                drop(up);
                self.bus.emit(Event::Concurrency(ConcurrencyEvent {
                    name: self.cfg.name.clone(),
                    kind: ConcurrencyEventKind::LimitChanged {
                        from,
                        to: new,
                        algorithm: self.algorithm_name,
                    },
                    at: now,
                }));
            }
            next_len = self.cfg.window.next_len(s.rtt);
        }
        self.window
            .reopen(n.saturating_add(next_len.as_nanos() as u64));
        self.maybe_emit_shed(now);
    }

    fn update_bbr(&self, up: &mut Updater, s: &WindowSample) {
        let secs = s.duration.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let i = up.bbr_next;
        up.bbr[i] = (f64::from(s.samples) / secs, s.min_rtt.as_secs_f64());
        up.bbr_next = (i + 1) % BBR_WINDOWS;
        let max_qps = up.bbr.iter().map(|b| b.0).fold(0.0, f64::max);
        let min_rtt = up.bbr.iter().map(|b| b.1).fold(f64::INFINITY, f64::min);
        if min_rtt.is_finite() {
            let cap = (max_qps * min_rtt).ceil().clamp(1.0, f64::from(MAX_LIMIT));
            self.bbr_capacity.store(cap as u32, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not finished: a drop now means the caller gave up; no sample is recorded.
    Pending,
    Success,
    Dropped,
    /// Handed back without releasing (a failed queue hand-off).
    Disarmed,
}

/// A reserved concurrency slot. Dropping it returns the slot; if the request finished
/// its latency is recorded as a sample. A permit dropped while
/// the request is unfinished (the caller gave up) records nothing.
pub struct Permit {
    shared: Arc<Shared>,
    class: Priority,
    /// `None` when this request's latency is not timed (see `Shared::sample_every`).
    start: Option<Stamp>,
    outcome: Outcome,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("class", &self.class)
            .field("start", &self.start)
            .finish()
    }
}

impl Permit {
    #[inline]
    fn new(shared: Arc<Shared>, class: Priority, measure: bool) -> Self {
        Self {
            shared,
            class,
            // The call time shared with the layers around this one (`crate::clock`).
            start: if measure { Some(timed_start()) } else { None },
            outcome: Outcome::Pending,
        }
    }

    /// A slot handed to a queued Critical request by a release. Timed from now on a clock
    /// read of its own: a release may run inside another request's `call`, whose shared
    /// call time (`crate::clock`) belongs to that request.
    fn handed_off(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            class: Priority::Critical,
            start: Some(Stamp::solo(Instant::now())),
            outcome: Outcome::Pending,
        }
    }

    /// Marks the request finished; `dropped` counts it as a congestion signal.
    pub(crate) fn finish(&mut self, dropped: bool) {
        self.outcome = if dropped {
            Outcome::Dropped
        } else {
            Outcome::Success
        };
    }

    /// Whether this request's latency is timed.
    #[inline]
    pub(crate) fn timed(&self) -> bool {
        self.start.is_some()
    }

    /// Finishes the request in the poll where its response future completed: a timed one
    /// records its latency to the completion time shared along the stack (`crate::clock`).
    #[inline]
    pub(crate) fn complete(mut self, dropped: bool) {
        self.finish(dropped);
        if self.start.is_some() {
            self.complete_timed();
        }
    }

    // Out of line: one request in up to 256 is timed, and inlining this grows every poll.
    #[cold]
    #[inline(never)]
    fn complete_timed(&mut self) {
        if let Some(s) = self.start {
            let end = s.done();
            self.shared
                .release(self.class, Some(s.at), Some(end), self.outcome);
            self.outcome = Outcome::Disarmed;
        }
    }

    pub(crate) fn errors_as_drops(&self) -> bool {
        self.shared.cfg.errors_as_drops
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        match self.outcome {
            Outcome::Disarmed => {}
            // The common case inline: an untimed request that did not fail, and no queued
            // Critical request to hand the slot to: only the slot to return (Relaxed, see
            // `Shared::word`; a waiter enqueued concurrently is picked up by the next
            // release, as in `Shared::release`).
            Outcome::Pending | Outcome::Success
                if self.start.is_none()
                    && self
                        .shared
                        .queue
                        .as_ref()
                        .is_none_or(|q| q.len.load(Ordering::Relaxed) == 0) =>
            {
                self.shared
                    .word
                    .fetch_sub(lane(self.class), Ordering::Relaxed);
            }
            _ => {
                let start = self.start.map(|s| s.at);
                self.shared.release(self.class, start, None, self.outcome);
            }
        }
    }
}

pub(crate) struct WaitQueue {
    cap: usize,
    pub(crate) timeout: Duration,
    /// Mirror of `waiters.len()` so releases check for waiters without the lock.
    len: AtomicUsize,
    waiters: Mutex<Vec<oneshot::Sender<Permit>>>,
}

impl WaitQueue {
    /// Slow path only (a Critical request at the limit): allocates a channel, takes the lock.
    fn enqueue(&self) -> Option<oneshot::Receiver<Permit>> {
        let mut w = lock(&self.waiters);
        w.retain(|tx| !tx.is_closed());
        if w.len() >= self.cap {
            self.len.store(w.len(), Ordering::Relaxed);
            return None;
        }
        let (tx, rx) = oneshot::channel();
        w.push(tx);
        self.len.store(w.len(), Ordering::Relaxed);
        Some(rx)
    }

    /// The freshest live waiter (LIFO).
    fn pop(&self) -> Option<oneshot::Sender<Permit>> {
        let mut w = lock(&self.waiters);
        let mut found = None;
        while let Some(tx) = w.pop() {
            if !tx.is_closed() {
                found = Some(tx);
                break;
            }
        }
        self.len.store(w.len(), Ordering::Relaxed);
        found
    }
}

/// A read-only view of a limiter for status pages and tests. Cheap to clone.
///
/// ```
/// use tower_pressure::{Priority, concurrency::AdaptiveConcurrencyLayer, pressure::PressureMonitor};
/// let (monitor, _) = PressureMonitor::manual();
/// let layer = AdaptiveConcurrencyLayer::new(monitor);
/// let h = layer.handle();
/// assert_eq!(h.limit(), 20); // Gradient2's initial limit
/// assert_eq!(h.in_flight(), 0);
/// assert_eq!(h.shed_count(Priority::Low), 0);
/// ```
#[derive(Clone)]
pub struct AdaptiveConcurrencyHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for AdaptiveConcurrencyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl AdaptiveConcurrencyHandle {
    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    /// The algorithm's name.
    pub fn algorithm(&self) -> &'static str {
        self.shared.algorithm_name
    }

    /// The learned limit.
    pub fn limit(&self) -> u32 {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// The limit applied right now: the learned limit scaled for the current pressure level.
    pub fn effective_limit(&self) -> u32 {
        self.shared.eff[self.shared.monitor.level().index()].load(Ordering::Relaxed)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        total(self.shared.word.load(Ordering::Relaxed))
    }

    /// Requests of `class` in flight.
    pub fn in_flight_of(&self, class: Priority) -> u32 {
        class_count(self.shared.word.load(Ordering::Relaxed), class)
    }

    /// Requests of `class` shed since the limiter was built.
    pub fn shed_count(&self, class: Priority) -> u64 {
        self.shared.shed[class.index()].load(Ordering::Relaxed)
    }

    /// Requests admitted despite CPU pressure because the BBR check found the load was not
    /// ours.
    pub fn not_our_load_count(&self) -> u64 {
        self.shared.not_our_load.load(Ordering::Relaxed)
    }

    /// `ceil(max throughput x min latency)` over the last windows (0 until measured).
    pub fn bbr_capacity(&self) -> u32 {
        self.shared.bbr_capacity.load(Ordering::Relaxed)
    }

    /// What the pressure check would decide for `class` right now, with its reason.
    pub fn decision(&self, class: Priority) -> PressureDecision {
        self.shared
            .pressure(class, self.shared.word.load(Ordering::Relaxed))
    }

    /// Critical requests waiting in the queue.
    pub fn queued(&self) -> usize {
        self.shared
            .queue
            .as_ref()
            .map_or(0, |q| q.len.load(Ordering::Relaxed))
    }

    /// The last limit updates, oldest first (at most 512; allocates).
    pub fn limit_history(&self) -> Vec<LimitPoint> {
        lock(&self.shared.updater).history.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::concurrency::AdaptiveConcurrencyLayer;

    #[test]
    fn sampling_rate_is_a_power_of_two() {
        assert_eq!(sample_every_for(0), 1);
        assert_eq!(sample_every_for(79), 1);
        assert_eq!(sample_every_for(80), 2);
        assert_eq!(sample_every_for(40 * 100), 64);
        assert_eq!(sample_every_for(40 * 128), 128);
        assert_eq!(sample_every_for(u32::MAX), MAX_SAMPLE_EVERY);
        // Every request is timed at mask 0; one in four at mask 3.
        assert!((0..8).all(|_| measure_this(0)));
        assert_eq!((0..64).filter(|_| measure_this(3)).count(), 16);
    }

    #[test]
    fn sampling_thins_out_at_high_rates() {
        let (monitor, _m) = PressureMonitor::manual();
        let layer = AdaptiveConcurrencyLayer::new(monitor);
        let shared = layer.shared.clone();
        let end = std::time::Instant::now() + Duration::from_millis(350);
        let mut n = 0u64;
        while std::time::Instant::now() < end {
            if let Admission::Admitted(mut p) = shared.acquire(Priority::Normal) {
                p.finish(false);
            }
            n += 1;
        }
        let every = shared.sample_mask.load(Ordering::Relaxed) + 1;
        assert!(
            every > 1 && every.is_power_of_two(),
            "{n} requests, sample every {every}, history {:?}",
            layer.handle().limit_history().len()
        );
    }
}
