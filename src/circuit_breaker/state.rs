//! The lock-free state machine of one breaker. Pure code: time is passed in as nanoseconds
//! since the breaker's epoch (through [`Now`]), so every transition is tested without tokio.
//!
//! # State word layout
//!
//! One [`AtomicU64`] holds everything a call must agree on:
//!
//! ```text
//!  63              40 39          24 23           8 7        0
//! [ generation (24) ][ successes(16) ][ probes (16) ][ state(8) ]
//! ```
//!
//! * `state`: the [`CircuitState`] code.
//! * `probes`: HALF_OPEN probe permits currently out (each is a guard; dropping it without
//!   an outcome gives the slot back).
//! * `successes`: successful probes of this HALF_OPEN period.
//! * `generation`: bumped (wrapping) by every transition. Every ticket remembers the
//!   generation it was issued in; an outcome from another generation (a late probe of an
//!   earlier open cycle, a closed-state call that finished after the breaker opened) counts in
//!   the cumulative metrics but can never move the state or fill the current window.
//!
//! Admission in CLOSED is one `Acquire` load of the word. Probe permits and probe successes
//! change the word by compare-exchange (`AcqRel`). Transitions are rare and are serialised by
//! a mutex (off the request path): under it the side data of the new state (`open_until`,
//! `state_since`, cleared window) is written `Relaxed` and then published by the
//! compare-exchange of the word (`Release`); a reader that `Acquire`-loads the word sees the
//! side data of that state or of a later one (and then its own compare-exchange fails).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use super::error::{CircuitOpen, RejectReason};
use super::lane::{Padded, Striped, thread_index};
use super::window::{Totals, Window};
use crate::event::{BreakerEvent, BreakerEventKind, CircuitState, Event, EventBus};
use crate::pressure::{PressureMonitor, Signal};
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Mutex, MutexGuard};

const STATE_MASK: u64 = 0xff;
const PROBE_SHIFT: u32 = 8;
const SUCC_SHIFT: u32 = 24;
const GEN_SHIFT: u32 = 40;
const U16: u64 = 0xffff;
const NANOS: u64 = 1_000_000_000;

const fn code(s: CircuitState) -> u64 {
    match s {
        CircuitState::Closed => 0,
        CircuitState::Open => 1,
        CircuitState::HalfOpen => 2,
        CircuitState::Disabled => 3,
        CircuitState::ForcedOpen => 4,
        CircuitState::MetricsOnly => 5,
    }
}

const fn decode(w: u64) -> CircuitState {
    match w & STATE_MASK {
        0 => CircuitState::Closed,
        1 => CircuitState::Open,
        2 => CircuitState::HalfOpen,
        3 => CircuitState::Disabled,
        4 => CircuitState::ForcedOpen,
        _ => CircuitState::MetricsOnly,
    }
}

#[inline]
const fn generation(w: u64) -> u32 {
    (w >> GEN_SHIFT) as u32
}
#[inline]
const fn probes(w: u64) -> u64 {
    (w >> PROBE_SHIFT) & U16
}
#[inline]
const fn successes(w: u64) -> u64 {
    (w >> SUCC_SHIFT) & U16
}
const fn pack(s: CircuitState, generation: u32) -> u64 {
    code(s) | ((generation as u64 & 0xff_ffff) << GEN_SHIFT)
}

/// The current time, read lazily: at most one clock read however often it is asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    nanos: u64,
    epoch: Option<Instant>,
}

impl Now {
    /// A fixed time (tests).
    #[cfg(test)]
    pub(crate) fn fixed(nanos: u64) -> Self {
        Self { nanos, epoch: None }
    }
    /// Reads the time on first use: the shared request clock (`crate::clock::shared_now`),
    /// which inside a stack is a time another layer already read.
    #[inline]
    pub(crate) fn lazy(epoch: Instant) -> Self {
        Self {
            nanos: 0,
            epoch: Some(epoch),
        }
    }
    #[inline]
    pub(crate) fn get(&mut self) -> u64 {
        if let Some(e) = self.epoch.take() {
            self.nanos = crate::clock::shared_now()
                .saturating_duration_since(e)
                .as_nanos() as u64;
        }
        self.nanos
    }
}

/// What a caller holds between admission and outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketKind {
    /// Admitted in CLOSED: outcome fills the window and may open the breaker.
    Closed,
    /// A HALF_OPEN probe: holds a probe slot until its outcome or drop.
    Probe,
    /// DISABLED or METRICS_ONLY: recorded, never moves the state.
    Record,
}

/// An admitted call (the permit guard in `future.rs` owns one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    pub(crate) kind: TicketKind,
    pub(crate) generation: u32,
    /// Start time in nanos (at least 1), read only when slow-call detection is on; 0 when
    /// it was off at admission (the call is then never slow, even if a reload turns the
    /// detection on before it ends).
    pub(crate) start: u64,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counts as a success.
    Success,
    /// Counts as a failure.
    Failure,
    /// Not counted at all (Resilience4j's `ignoreExceptions`): a probe slot is given back.
    Ignore,
}

/// One breaker's state, window and metrics.
pub(crate) struct Core {
    /// The settings as built: only the fixed parts (name, window) are read from here; the
    /// settings in force are in `live` (see `settings.rs`).
    pub(crate) cfg: Arc<BreakerConfig>,
    pub(crate) live: Arc<super::settings::Live>,
    /// Read by every call, written only by probes and transitions: alone in its lines so
    /// that window and counter writes do not evict it from the other cores' caches.
    word: Padded<AtomicU64>,
    consecutive: AtomicU32,
    window: Window,
    /// Cumulative calls, one stripe per lane (see [`super::lane`]).
    stripes: Striped<AtomicU64>,
    failures: AtomicU64,
    slow: AtomicU64,
    rejected: AtomicU64,
    rejected_pending: AtomicU64,
    last_reject_event: AtomicU64,
    last_failure: AtomicU64,
    state_since: AtomicU64,
    open_until: AtomicU64,
    reopens: AtomicU32,
    rate_flag: AtomicBool,
    pub(crate) last_used: AtomicU64,
    key: Mutex<Option<Arc<str>>>,
    transition: Mutex<()>,
    bus: EventBus,
    monitor: Option<PressureMonitor>,
    pub(crate) epoch: Instant,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.cfg.name)
            .field("state", &self.state_raw())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these mutexes leaves no broken invariant (they guard plain
    // stores), so a poisoned lock is simply taken over.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A rejection before it becomes a [`CircuitOpen`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejection {
    pub(crate) reason: RejectReason,
    pub(crate) retry_after: Duration,
}

impl Core {
    pub(crate) fn new(
        live: Arc<super::settings::Live>,
        key: Option<Arc<str>>,
        bus: EventBus,
        monitor: Option<PressureMonitor>,
        epoch: Instant,
        lanes: usize,
    ) -> Self {
        let lanes = lanes.max(1).next_power_of_two();
        let cfg: Arc<BreakerConfig> = live.load_full();
        Self {
            window: Window::new(cfg.window, lanes),
            cfg,
            live,
            word: Padded(AtomicU64::new(pack(CircuitState::Closed, 0))),
            consecutive: AtomicU32::new(0),
            stripes: Striped::new(lanes, || AtomicU64::new(0)),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            rejected_pending: AtomicU64::new(0),
            last_reject_event: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
            state_since: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            reopens: AtomicU32::new(0),
            rate_flag: AtomicBool::new(false),
            last_used: AtomicU64::new(0),
            key: Mutex::new(key),
            transition: Mutex::new(()),
            bus,
            monitor,
            epoch,
        }
    }

    /// The number of lanes (and stripes) of this breaker.
    pub(crate) fn lanes(&self) -> usize {
        self.stripes.len()
    }

    /// Cumulative calls, summed over the stripes.
    fn calls(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub(crate) fn key(&self) -> Option<Arc<str>> {
        lock(&self.key).clone()
    }

    pub(crate) fn state_raw(&self) -> CircuitState {
        decode(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn error(&self, r: Rejection) -> CircuitOpen {
        CircuitOpen::new(self.cfg.name.clone(), self.key(), r.reason, r.retry_after)
    }

    /// Pressure-based refusal, if configured and active.
    #[inline]
    fn resource_check(&self, hot: super::settings::Hot) -> Option<Rejection> {
        if !hot.resource() {
            return None;
        }
        let m = self.monitor.as_ref()?;
        let (trip_level, memory_percent, memory_bytes) = self
            .live
            .with(|c| (c.trip_level, c.memory_percent, c.memory_bytes));
        let retry_after = m.interval();
        if let Some(at) = trip_level {
            let l = m.level();
            if l >= at {
                return Some(Rejection {
                    reason: RejectReason::Pressure(l),
                    retry_after,
                });
            }
        }
        for (threshold, signal) in [
            (memory_percent, Signal::Memory),
            (memory_bytes, Signal::MemoryBytes),
        ] {
            if let (Some(t), Some(v)) = (threshold, threshold.and_then(|_| m.reading(signal)))
                && v > t
            {
                return Some(Rejection {
                    reason: RejectReason::Memory {
                        value: v,
                        threshold: t,
                    },
                    retry_after,
                });
            }
        }
        None
    }

    /// Decides whether a call may go ahead. Closed state: one atomic load (plus the pressure
    /// check when configured, plus one clock read when slow-call detection is on).
    #[inline]
    pub(crate) fn try_acquire(&self, now: &mut Now) -> Result<Ticket, Rejection> {
        // The settings of the healthy path, read once per call (see `settings.rs`).
        let hot = self.live.hot();
        let slow = hot.slow_nanos() != 0;
        loop {
            let w = self.word.load(Ordering::Acquire);
            let g = generation(w);
            let start = |now: &mut Now| if slow { now.get().max(1) } else { 0 };
            match decode(w) {
                CircuitState::Closed => {
                    if let Some(r) = self.resource_check(hot) {
                        return Err(self.reject(r, now));
                    }
                    return Ok(Ticket {
                        kind: TicketKind::Closed,
                        generation: g,
                        start: start(now),
                    });
                }
                CircuitState::Disabled | CircuitState::MetricsOnly => {
                    return Ok(Ticket {
                        kind: TicketKind::Record,
                        generation: g,
                        start: start(now),
                    });
                }
                CircuitState::ForcedOpen => {
                    let r = Rejection {
                        reason: RejectReason::ForcedOpen,
                        retry_after: self.live.with(|c| c.wait_duration),
                    };
                    return Err(self.reject(r, now));
                }
                CircuitState::Open => {
                    let t = now.get();
                    let until = self.open_until.load(Ordering::Relaxed);
                    if t < until {
                        let r = Rejection {
                            reason: RejectReason::Open,
                            retry_after: Duration::from_nanos(until - t),
                        };
                        return Err(self.reject(r, now));
                    }
                    self.transition(Some(w), CircuitState::HalfOpen, t, || {
                        "wait duration elapsed".into()
                    });
                }
                CircuitState::HalfOpen => {
                    if let Some(r) = self.resource_check(hot) {
                        return Err(self.reject(r, now));
                    }
                    let (permitted, max_wait) = self.live.with(|c| {
                        (
                            c.permitted_calls_in_half_open as u64,
                            c.max_wait_in_half_open,
                        )
                    });
                    if probes(w) + successes(w) < permitted {
                        let nw = w + (1 << PROBE_SHIFT);
                        if self
                            .word
                            .compare_exchange(w, nw, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                        {
                            return Ok(Ticket {
                                kind: TicketKind::Probe,
                                generation: g,
                                start: start(now),
                            });
                        }
                        continue;
                    }
                    let t = now.get();
                    let deadline = self
                        .state_since
                        .load(Ordering::Relaxed)
                        .saturating_add(max_wait.as_nanos() as u64);
                    if t >= deadline {
                        self.transition(Some(w), CircuitState::Open, t, || {
                            "probes did not finish within max_wait_in_half_open".into()
                        });
                        continue;
                    }
                    let r = Rejection {
                        reason: RejectReason::HalfOpenFull,
                        retry_after: Duration::from_nanos(deadline - t),
                    };
                    return Err(self.reject(r, now));
                }
            }
        }
    }

    /// Whether a call would be admitted now, without taking a probe slot or moving the state.
    pub(crate) fn peek(&self, now: &mut Now) -> Result<(), Rejection> {
        let w = self.word.load(Ordering::Acquire);
        let st = decode(w);
        if matches!(st, CircuitState::Disabled | CircuitState::MetricsOnly) {
            return Ok(());
        }
        if let Some(r) = self.resource_check(self.live.hot()) {
            return Err(r);
        }
        let (wait, permitted) = self
            .live
            .with(|c| (c.wait_duration, c.permitted_calls_in_half_open as u64));
        match st {
            CircuitState::ForcedOpen => Err(Rejection {
                reason: RejectReason::ForcedOpen,
                retry_after: wait,
            }),
            CircuitState::Open => {
                let t = now.get();
                let until = self.open_until.load(Ordering::Relaxed);
                if t < until {
                    Err(Rejection {
                        reason: RejectReason::Open,
                        retry_after: Duration::from_nanos(until - t),
                    })
                } else {
                    Ok(())
                }
            }
            CircuitState::HalfOpen if probes(w) + successes(w) >= permitted => Err(Rejection {
                reason: RejectReason::HalfOpenFull,
                retry_after: Duration::ZERO,
            }),
            _ => Ok(()),
        }
    }

    /// Counts a rejection; emits the aggregated `CallsRejected` at most once per second.
    fn reject(&self, r: Rejection, now: &mut Now) -> Rejection {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.rejected_pending.fetch_add(1, Ordering::Relaxed);
        let t = now.get();
        let last = self.last_reject_event.load(Ordering::Relaxed);
        if t.saturating_sub(last) >= NANOS
            && self
                .last_reject_event
                .compare_exchange(last, t.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.flush_rejected(t);
        }
        r
    }

    fn flush_rejected(&self, t: u64) {
        let n = self.rejected_pending.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.emit(BreakerEventKind::CallsRejected { count: n }, t);
        }
    }

    fn emit(&self, kind: BreakerEventKind, t: u64) {
        self.bus.emit(Event::Breaker(BreakerEvent {
            breaker: self.cfg.name.clone(),
            key: self.key(),
            kind,
            at: self.epoch + Duration::from_nanos(t),
        }));
    }

    /// A permit was dropped without an outcome (cancelled): give a probe slot back.
    pub(crate) fn release(&self, ticket: Ticket) {
        if ticket.kind == TicketKind::Probe {
            self.probe_done(ticket.generation, None, &mut Now::lazy(self.epoch));
        }
    }

    /// Records the outcome of an admitted call.
    #[inline]
    pub(crate) fn on_result(&self, ticket: Ticket, outcome: Outcome, now: &mut Now) {
        let failure = match outcome {
            Outcome::Ignore => return self.release(ticket),
            Outcome::Failure => true,
            Outcome::Success => false,
        };
        // A call admitted while slow-call detection was off has no start time and is never
        // slow (no settings read at all on that path); else the duration in force now.
        let slow = ticket.start != 0
            && match self.live.hot().slow_nanos() {
                0 => false,
                d => now.get().saturating_sub(ticket.start) >= d,
            };
        let lane = thread_index();
        self.stripes.get(lane).fetch_add(1, Ordering::Relaxed);
        if failure {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.last_failure
                .store(now.get().saturating_add(1), Ordering::Relaxed);
        }
        if slow {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
        if ticket.kind == TicketKind::Probe {
            return self.probe_done(ticket.generation, Some(!(failure || slow)), now);
        }
        let w = self.word.load(Ordering::Acquire);
        if generation(w) != ticket.generation {
            return; // admitted in an earlier state: metrics only
        }
        self.window.record(failure, slow, lane, || now.get());
        let consecutive = if failure {
            self.consecutive
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1)
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            0
        };
        if failure || slow {
            self.evaluate(w, consecutive, now);
        }
    }

    /// After a failure or slow call: open if a threshold is reached.
    #[cold]
    fn evaluate(&self, w: u64, consecutive: u32, now: &mut Now) {
        let st = decode(w);
        let cfg = self.live.load();
        let c = &**cfg;
        if st == CircuitState::Closed
            && c.failure_threshold > 0
            && consecutive >= c.failure_threshold
        {
            let t = now.get();
            self.transition(Some(w), CircuitState::Open, t, || {
                format!(
                    "{consecutive} consecutive failures >= {}",
                    c.failure_threshold
                )
                .into()
            });
            return;
        }
        let totals: Totals = self.window.totals(|| now.get());
        if totals.calls < c.minimum_calls.max(1) as u64 {
            return;
        }
        let (fr, sr) = (totals.failure_rate(), totals.slow_rate());
        let exceeded = fr >= c.failure_rate_threshold
            || (c.slow_call_duration.is_some() && sr >= c.slow_call_rate_threshold);
        if !exceeded {
            self.rate_flag.store(false, Ordering::Relaxed);
            return;
        }
        let t = now.get();
        match st {
            CircuitState::Closed => {
                self.emit(
                    BreakerEventKind::FailureRateExceeded {
                        failure_rate: fr,
                        slow_call_rate: sr,
                    },
                    t,
                );
                self.transition(Some(w), CircuitState::Open, t, || {
                    if fr >= c.failure_rate_threshold {
                        format!("failure rate {fr:.1}% >= {:.1}%", c.failure_rate_threshold).into()
                    } else {
                        format!(
                            "slow call rate {sr:.1}% >= {:.1}%",
                            c.slow_call_rate_threshold
                        )
                        .into()
                    }
                });
            }
            CircuitState::MetricsOnly if !self.rate_flag.swap(true, Ordering::Relaxed) => {
                self.emit(
                    BreakerEventKind::FailureRateExceeded {
                        failure_rate: fr,
                        slow_call_rate: sr,
                    },
                    t,
                );
            }
            _ => {}
        }
    }

    /// A probe of generation `g` finished: `Some(true)` success, `Some(false)` failure,
    /// `None` cancelled.
    fn probe_done(&self, g: u32, ok: Option<bool>, now: &mut Now) {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if decode(w) != CircuitState::HalfOpen || generation(w) != g || probes(w) == 0 {
                return; // a late probe of another cycle: it can neither close nor re-open this one
            }
            let nw = match ok {
                None => w - (1 << PROBE_SHIFT),
                Some(true) => w - (1 << PROBE_SHIFT) + (1 << SUCC_SHIFT),
                Some(false) => {
                    let t = now.get();
                    self.transition(Some(w), CircuitState::Open, t, || "probe failed".into());
                    return;
                }
            };
            match self
                .word
                .compare_exchange(w, nw, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if ok == Some(true)
                        && successes(nw) >= self.live.with(|c| c.success_threshold) as u64
                    {
                        let t = now.get();
                        let n = successes(nw);
                        self.transition(Some(nw), CircuitState::Closed, t, || {
                            format!("{n} probe successes").into()
                        });
                    }
                    return;
                }
                Err(a) => w = a,
            }
        }
    }

    /// Moves to `to` if the word is still `expect` (ignoring probe counts when the state and
    /// generation match), or unconditionally when `expect` is `None`. Returns whether it moved.
    pub(crate) fn transition(
        &self,
        expect: Option<u64>,
        to: CircuitState,
        t: u64,
        reason: impl FnOnce() -> Arc<str>,
    ) -> bool {
        let guard = lock(&self.transition);
        let mut w = self.word.load(Ordering::Acquire);
        let from = decode(w);
        if let Some(e) = expect
            && (decode(e) != from || generation(e) != generation(w))
        {
            return false;
        }
        match to {
            CircuitState::Open => {
                let reopens = if from == CircuitState::HalfOpen {
                    self.reopens
                        .fetch_add(1, Ordering::Relaxed)
                        .saturating_add(1)
                } else {
                    self.reopens.store(0, Ordering::Relaxed);
                    0
                };
                let wait = self.live.with(|c| c.open_wait(reopens));
                self.open_until
                    .store(t.saturating_add(wait.as_nanos() as u64), Ordering::Relaxed);
            }
            CircuitState::Closed => {
                self.window.clear();
                self.consecutive.store(0, Ordering::Relaxed);
                self.reopens.store(0, Ordering::Relaxed);
                self.rate_flag.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
        self.state_since.store(t, Ordering::Relaxed);
        loop {
            let nw = pack(to, generation(w).wrapping_add(1));
            match self
                .word
                .compare_exchange(w, nw, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                // Only probe counts change without the mutex: retry with the new counts.
                Err(a) => w = a,
            }
        }
        drop(guard);
        self.flush_rejected(t);
        if from != to || expect.is_none() {
            self.emit(
                BreakerEventKind::StateTransition {
                    from,
                    to,
                    reason: reason(),
                },
                t,
            );
        }
        true
    }

    /// Operator reset: CLOSED with an empty window.
    pub(crate) fn reset(&self, t: u64) {
        self.transition(None, CircuitState::Closed, t, || "reset by operator".into());
        self.emit(BreakerEventKind::Reset, t);
    }

    /// Sets the end of the current OPEN wait to `until` (nanoseconds since the epoch). Used
    /// right after a transition to OPEN by `CircuitBreakerHandle::open_for` (`super::hold`),
    /// when the caller knows better than the configured wait (a provider's budget reset); a
    /// call racing it may see the configured wait instead, which is harmless either way.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn set_open_until(&self, until: u64) {
        self.open_until.store(until, Ordering::Relaxed);
    }

    /// Forgets everything and takes a new key (registry eviction).
    pub(crate) fn rekey(&self, key: Arc<str>, t: u64) {
        *lock(&self.key) = Some(key);
        let _g = lock(&self.transition);
        self.window.clear();
        for s in self.stripes.iter() {
            s.store(0, Ordering::Relaxed);
        }
        for a in [
            &self.failures,
            &self.slow,
            &self.rejected,
            &self.rejected_pending,
            &self.last_failure,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.consecutive.store(0, Ordering::Relaxed);
        self.reopens.store(0, Ordering::Relaxed);
        self.state_since.store(t, Ordering::Relaxed);
        self.last_used.store(t, Ordering::Relaxed);
        let w = self.word.load(Ordering::Acquire);
        self.word.store(
            pack(CircuitState::Closed, generation(w).wrapping_add(1)),
            Ordering::Release,
        );
    }

    /// Whether a probe is out (registry eviction skips such breakers).
    pub(crate) fn busy(&self) -> bool {
        let w = self.word.load(Ordering::Acquire);
        probes(w) > 0
    }

    pub(crate) fn metrics(&self, now: &mut Now) -> super::handle::BreakerMetrics {
        let t = now.get();
        let totals = self.window.totals(|| t);
        let calls = self.calls();
        let failures = self.failures.load(Ordering::Relaxed);
        let last = self.last_failure.load(Ordering::Relaxed);
        super::handle::BreakerMetrics {
            name: self.cfg.name.clone(),
            key: self.key(),
            state: self.state_raw(),
            calls,
            successes: calls.saturating_sub(failures),
            failures,
            slow_calls: self.slow.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            window_calls: totals.calls,
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_rate(),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            time_in_state: Duration::from_nanos(
                t.saturating_sub(self.state_since.load(Ordering::Relaxed)),
            ),
            last_failure: (last != 0).then(|| self.epoch + Duration::from_nanos(last - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer};
    use crate::pressure::ManualSource;
    use crate::pressure::PressureLevel;

    const S: u64 = NANOS;
    const MS: u64 = 1_000_000;

    fn core(b: CircuitBreakerBuilder) -> Arc<super::super::lane::Breaker> {
        b.build().expect("valid config").shared.default.clone()
    }

    fn call(c: &Core, t: u64, fail: bool) -> Result<(), Rejection> {
        let tk = c.try_acquire(&mut Now::fixed(t))?;
        c.on_result(
            tk,
            if fail {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            &mut Now::fixed(t),
        );
        Ok(())
    }

    fn base() -> CircuitBreakerBuilder {
        CircuitBreakerLayer::builder()
            .failure_threshold(3)
            .minimum_calls(1000)
            .wait_duration(Duration::from_secs(10))
            .permitted_calls_in_half_open(2)
            .success_threshold(2)
            .max_wait_in_half_open(Duration::from_secs(5))
    }

    #[test]
    fn closed_open_half_open_closed() {
        let c = core(base());
        assert!(call(&c, 0, true).is_ok());
        assert!(call(&c, 0, false).is_ok()); // resets the consecutive count
        for _ in 0..3 {
            assert!(call(&c, S, true).is_ok());
        }
        assert_eq!(c.state_raw(), CircuitState::Open);
        let r = call(&c, 3 * S, false).unwrap_err();
        assert_eq!(r.reason, RejectReason::Open);
        assert_eq!(r.retry_after, Duration::from_secs(8));
        // Wait elapsed: the next call moves to HALF_OPEN and is a probe.
        let t = 11 * S;
        let p1 = c.try_acquire(&mut Now::fixed(t)).unwrap();
        assert_eq!(
            (p1.kind, c.state_raw()),
            (TicketKind::Probe, CircuitState::HalfOpen)
        );
        let p2 = c.try_acquire(&mut Now::fixed(t)).unwrap();
        assert_eq!(
            c.try_acquire(&mut Now::fixed(t)).unwrap_err().reason,
            RejectReason::HalfOpenFull
        );
        c.on_result(p1, Outcome::Success, &mut Now::fixed(t));
        assert_eq!(c.state_raw(), CircuitState::HalfOpen);
        c.on_result(p2, Outcome::Success, &mut Now::fixed(t));
        assert_eq!(c.state_raw(), CircuitState::Closed);
        let m = c.metrics(&mut Now::fixed(t));
        assert_eq!(
            (m.calls, m.failures, m.rejected, m.window_calls),
            (7, 4, 2, 0)
        );
        assert_eq!(m.last_failure, Some(c.epoch + Duration::from_secs(1)));
    }

    #[test]
    fn probe_failure_reopens_with_exponential_jittered_wait() {
        let c = core(
            base()
                .exponential_wait(2.0, Duration::from_secs(35))
                .jitter(0.5)
                .rng(|| 1.0), // factor 1 + 0.5 * (2*1 - 1) = 1.5, capped at 35 s
        );
        for _ in 0..3 {
            call(&c, 0, true).unwrap();
        }
        let open_for = |t: u64| c.try_acquire(&mut Now::fixed(t)).unwrap_err().retry_after;
        assert_eq!(open_for(0), Duration::from_secs(15)); // 10 * 1.5
        let mut t = 15 * S;
        for expected in [30, 35, 35] {
            call(&c, t, true).unwrap(); // probe fails: re-open, wait doubles
            assert_eq!(c.state_raw(), CircuitState::Open);
            assert_eq!(open_for(t), Duration::from_secs(expected));
            t += expected * S;
        }
        // Closing resets the growth.
        call(&c, t, false).unwrap();
        call(&c, t, false).unwrap();
        assert_eq!(c.state_raw(), CircuitState::Closed);
        for _ in 0..3 {
            call(&c, t, true).unwrap();
        }
        assert_eq!(open_for(t), Duration::from_secs(15));
    }

    #[test]
    fn wait_cap_and_base() {
        let cfg = base()
            .exponential_wait(3.0, Duration::from_secs(100))
            .build()
            .unwrap()
            .shared
            .cfg
            .clone();
        let w: Vec<u64> = (0..4).map(|n| cfg.base_wait(n).as_secs()).collect();
        assert_eq!(w, [10, 30, 90, 100]);
    }

    #[test]
    fn half_open_max_wait_reopens_when_probes_never_finish() {
        let c = core(base());
        for _ in 0..3 {
            call(&c, 0, true).unwrap();
        }
        let t = 10 * S;
        let p1 = c.try_acquire(&mut Now::fixed(t)).unwrap();
        let _p2 = c.try_acquire(&mut Now::fixed(t)).unwrap();
        let r = c.try_acquire(&mut Now::fixed(t + S)).unwrap_err();
        assert_eq!(
            (r.reason, r.retry_after),
            (RejectReason::HalfOpenFull, Duration::from_secs(4))
        );
        // Deadline passed: the stuck probes are abandoned and the breaker re-opens.
        assert_eq!(
            c.try_acquire(&mut Now::fixed(t + 5 * S))
                .unwrap_err()
                .reason,
            RejectReason::Open
        );
        assert_eq!(c.state_raw(), CircuitState::Open);
        // The late probe of the earlier cycle cannot close or re-open the new one.
        c.on_result(p1, Outcome::Success, &mut Now::fixed(t + 6 * S));
        assert_eq!(c.state_raw(), CircuitState::Open);
    }

    #[test]
    fn stale_probe_cannot_move_a_later_cycle() {
        let c = core(base().permitted_calls_in_half_open(3));
        for _ in 0..3 {
            call(&c, 0, true).unwrap();
        }
        let t = 10 * S;
        let old = c.try_acquire(&mut Now::fixed(t)).unwrap();
        call(&c, t, true).unwrap(); // another probe fails: re-open (generation bumps)
        let t = 30 * S;
        let fresh = c.try_acquire(&mut Now::fixed(t)).unwrap();
        assert_eq!(c.state_raw(), CircuitState::HalfOpen);
        c.on_result(old, Outcome::Failure, &mut Now::fixed(t)); // late failure: ignored
        assert_eq!(c.state_raw(), CircuitState::HalfOpen);
        c.on_result(fresh, Outcome::Success, &mut Now::fixed(t));
        call(&c, t, false).unwrap();
        assert_eq!(c.state_raw(), CircuitState::Closed);
    }

    #[test]
    fn cancelled_probes_free_their_slots() {
        let c = core(base());
        for _ in 0..3 {
            call(&c, 0, true).unwrap();
        }
        let t = 10 * S;
        for _ in 0..100 {
            let a = c.try_acquire(&mut Now::fixed(t)).unwrap();
            let b = c.try_acquire(&mut Now::fixed(t)).unwrap();
            c.release(a);
            c.on_result(b, Outcome::Ignore, &mut Now::fixed(t));
        }
        call(&c, t, false).unwrap();
        call(&c, t, false).unwrap();
        assert_eq!(c.state_raw(), CircuitState::Closed);
    }

    #[test]
    fn count_window_slides_1000_successes_then_50_failures() {
        let c = core(
            base()
                .failure_threshold(0)
                .minimum_calls(20)
                .count_window(100),
        );
        for _ in 0..1000 {
            call(&c, 0, false).unwrap();
        }
        let mut failures = 0;
        while c.state_raw() == CircuitState::Closed {
            call(&c, 0, true).unwrap();
            failures += 1;
        }
        assert_eq!(failures, 50);
    }

    /// The healthy steady state writes nothing every thread shares: once the count window is
    /// full of successes, a success neither moves the ring nor touches the state word or the
    /// consecutive counter; the calls still add up (in the caller's stripe).
    #[test]
    fn steady_state_successes_write_only_the_callers_stripe() {
        let c = core(base().count_window(100));
        let Window::Count(w) = &c.window else {
            panic!("count window expected")
        };
        call(&c, 0, true).unwrap();
        for _ in 0..100 {
            call(&c, 0, false).unwrap();
        }
        let (head, word) = (w.head(), c.word.load(Ordering::Relaxed));
        assert_eq!(head, 101);
        for _ in 0..1000 {
            call(&c, 0, false).unwrap();
        }
        assert_eq!((w.head(), c.word.load(Ordering::Relaxed)), (head, word));
        assert_eq!(c.consecutive.load(Ordering::Relaxed), 0);
        let m = c.metrics(&mut Now::fixed(0));
        assert_eq!((m.calls, m.failures, m.window_calls), (1101, 1, 100));
        // The next failure is still the newest of exactly the last 100 calls.
        call(&c, 0, true).unwrap();
        let m = c.metrics(&mut Now::fixed(0));
        assert_eq!((m.window_calls, m.failure_rate), (100, 1.0));
        let stripes_used = c
            .stripes
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) > 0)
            .count();
        assert_eq!(stripes_used, 1);
    }

    #[test]
    fn time_window_trips_and_forgets() {
        let c = core(
            base()
                .failure_threshold(0)
                .minimum_calls(10)
                .time_window(10)
                .failure_rate_threshold(50.0),
        );
        // 9 failures at second 0, then 100 successes: old failures forgotten after 10 s.
        for _ in 0..9 {
            call(&c, 0, true).unwrap();
        }
        for _ in 0..100 {
            call(&c, 5 * S, false).unwrap();
        }
        let m = c.metrics(&mut Now::fixed(12 * S));
        assert_eq!(m.window_calls, 100);
        // At second 16 everything is forgotten: 10 failures open again (>= minimum_calls).
        for i in 0..10 {
            assert_eq!(c.state_raw(), CircuitState::Closed, "failure {i}");
            call(&c, 16 * S, true).unwrap();
        }
        assert_eq!(c.state_raw(), CircuitState::Open);
    }

    #[test]
    fn slow_calls_trip_on_rate() {
        let c = core(
            base()
                .failure_threshold(0)
                .minimum_calls(10)
                .slow_call_duration(Duration::from_millis(100))
                .slow_call_rate_threshold(50.0),
        );
        let mut t = 0;
        let mut i = 0;
        while c.state_raw() == CircuitState::Closed {
            let tk = c.try_acquire(&mut Now::fixed(t)).unwrap();
            t += if i % 2 == 0 { 150 * MS } else { 10 * MS };
            c.on_result(tk, Outcome::Success, &mut Now::fixed(t));
            i += 1;
        }
        // Slow, fast, slow, ...: the 9th call is the 5th slow one of 9 (>= 50 %, >= 9 calls
        // needed only once the 10-call minimum is met: the 11th call, 6 slow of 11).
        let m = c.metrics(&mut Now::fixed(t));
        assert_eq!((m.calls, m.slow_calls, m.failures), (11, 6, 0));
    }

    #[test]
    fn forced_states() {
        let c = core(base());
        c.transition(None, CircuitState::ForcedOpen, 0, || "test".into());
        assert_eq!(
            call(&c, 100 * S, false).unwrap_err().reason,
            RejectReason::ForcedOpen
        );
        c.transition(None, CircuitState::Disabled, 0, || "test".into());
        for _ in 0..10 {
            call(&c, 0, true).unwrap();
        }
        assert_eq!(c.state_raw(), CircuitState::Disabled);
        c.transition(None, CircuitState::MetricsOnly, 0, || "test".into());
        for _ in 0..10 {
            call(&c, 0, true).unwrap();
        }
        assert_eq!(c.state_raw(), CircuitState::MetricsOnly);
        assert_eq!(c.metrics(&mut Now::fixed(0)).failures, 20);
        c.reset(0);
        assert_eq!(c.state_raw(), CircuitState::Closed);
        assert_eq!(c.metrics(&mut Now::fixed(0)).window_calls, 0);
    }

    #[test]
    fn resource_trip_by_level_and_memory() {
        let (monitor, manual) = crate::pressure::PressureMonitor::manual();
        let c = core(
            base()
                .monitor(monitor.clone())
                .trip_at_level(PressureLevel::Critical),
        );
        call(&c, 0, false).unwrap();
        manual.set(90.0);
        monitor.sample_now();
        assert_eq!(
            call(&c, 0, false).unwrap_err().reason,
            RejectReason::Pressure(PressureLevel::Critical)
        );
        manual.set(10.0);
        for _ in 0..5 {
            monitor.sample_now(); // hysteresis: the level falls after its dwell
        }
        call(&c, 0, false).unwrap(); // resumes by itself
        assert_eq!(c.state_raw(), CircuitState::Closed);

        let bytes = ManualSource::new(1000.0 * 1048576.0);
        let monitor = crate::pressure::PressureMonitor::builder()
            .without_system_sources()
            .manual(Signal::MemoryBytes, bytes.clone())
            .build_unstarted()
            .unwrap();
        let c = core(base().monitor(monitor.clone()).memory_threshold_mb(2048.0));
        call(&c, 0, false).unwrap();
        bytes.set(3000.0 * 1048576.0);
        monitor.sample_now();
        assert!(matches!(
            call(&c, 0, false).unwrap_err().reason,
            RejectReason::Memory { .. }
        ));
        bytes.set(100.0);
        for _ in 0..5 {
            monitor.sample_now();
        }
        call(&c, 0, false).unwrap();
    }

    #[test]
    fn rejections_are_aggregated_into_few_events() {
        let bus = EventBus::new(1024);
        let mut rx = bus.subscribe();
        let c = core(base().event_bus(bus.clone()));
        for _ in 0..3 {
            call(&c, 0, true).unwrap();
        }
        for i in 0..1000u64 {
            let _ = call(&c, S + i * MS, false); // 1000 rejections over one second
        }
        let mut rejected_events = 0;
        let mut rejected = 0;
        let mut kinds = vec![];
        while let Ok(e) = rx.try_recv() {
            if let Event::Breaker(b) = &e
                && let BreakerEventKind::CallsRejected { count } = b.kind
            {
                rejected_events += 1;
                rejected += count;
            }
            kinds.push(e.kind());
        }
        assert!(rejected_events <= 2, "{kinds:?}");
        assert!(kinds.contains(&"breaker_state_transition"));
        // The remainder is flushed on the next transition.
        call(&c, 20 * S, false).unwrap();
        while let Ok(e) = rx.try_recv() {
            if let Event::Breaker(BreakerEvent {
                kind: BreakerEventKind::CallsRejected { count },
                ..
            }) = e
            {
                rejected += count;
            }
        }
        assert_eq!(rejected, 1000);
    }

    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::VecDeque;

        /// The reference: the obvious sequential breaker.
        #[derive(Debug)]
        struct Model {
            state: CircuitState,
            window: VecDeque<bool>,
            consecutive: u32,
            open_until: u64,
            successes: u32,
        }

        const N: usize = 10;
        const MIN: usize = 5;
        const THR: u32 = 4;
        const WAIT: u64 = 5 * S;

        impl Model {
            fn call(&mut self, t: u64, fail: bool) -> bool {
                match self.state {
                    CircuitState::Open if t < self.open_until => return false,
                    CircuitState::Open => {
                        self.state = CircuitState::HalfOpen;
                        self.successes = 0;
                    }
                    _ => {}
                }
                if self.state == CircuitState::HalfOpen {
                    if fail {
                        self.open(t);
                    } else {
                        self.successes += 1;
                        if self.successes >= 2 {
                            self.state = CircuitState::Closed;
                            self.window.clear();
                            self.consecutive = 0;
                        }
                    }
                    return true;
                }
                if self.window.len() == N {
                    self.window.pop_front();
                }
                self.window.push_back(fail);
                if fail {
                    self.consecutive += 1;
                    let failures = self.window.iter().filter(|f| **f).count();
                    if self.consecutive >= THR
                        || (self.window.len() >= MIN && failures * 2 >= self.window.len())
                    {
                        self.open(t);
                    }
                } else {
                    self.consecutive = 0;
                }
                true
            }
            fn open(&mut self, t: u64) {
                self.state = CircuitState::Open;
                self.open_until = t + WAIT;
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn matches_reference(ops in prop::collection::vec((any::<bool>(), 0u64..3000), 1..300)) {
                let c = core(
                    CircuitBreakerLayer::builder()
                        .failure_threshold(THR)
                        .count_window(N as u32)
                        .minimum_calls(MIN as u32)
                        .failure_rate_threshold(50.0)
                        .wait_duration(Duration::from_nanos(WAIT))
                        .permitted_calls_in_half_open(2)
                        .success_threshold(2),
                );
                let mut m = Model { state: CircuitState::Closed, window: VecDeque::new(), consecutive: 0, open_until: 0, successes: 0 };
                let mut t = 0;
                for (fail, advance_ms) in ops {
                    t += advance_ms * MS;
                    let admitted = call(&c, t, fail).is_ok();
                    prop_assert_eq!(admitted, m.call(t, fail));
                    prop_assert_eq!(c.state_raw(), m.state);
                }
            }
        }
    }
}
