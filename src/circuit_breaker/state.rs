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

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use super::error::{CircuitOpen, RejectReason};
use super::window::{Totals, Window};
use crate::event::{BreakerEvent, BreakerEventKind, CircuitState, Event, EventBus};
use crate::pressure::{PressureMonitor, Signal};

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
    /// Reads `tokio::time::Instant::now()` on first use.
    #[inline]
    pub(crate) fn lazy(epoch: Instant) -> Self {
        Self { nanos: 0, epoch: Some(epoch) }
    }
    #[inline]
    pub(crate) fn get(&mut self) -> u64 {
        if let Some(e) = self.epoch.take() {
            self.nanos = Instant::now().saturating_duration_since(e).as_nanos() as u64;
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
    /// Start time in nanos, read only when slow-call detection is on.
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
    pub(crate) cfg: Arc<BreakerConfig>,
    word: AtomicU64,
    consecutive: AtomicU32,
    window: Window,
    calls: AtomicU64,
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
        cfg: Arc<BreakerConfig>,
        key: Option<Arc<str>>,
        bus: EventBus,
        monitor: Option<PressureMonitor>,
        epoch: Instant,
    ) -> Self {
        Self {
            window: Window::new(cfg.window),
            cfg,
            word: AtomicU64::new(pack(CircuitState::Closed, 0)),
            consecutive: AtomicU32::new(0),
            calls: AtomicU64::new(0),
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
    fn resource_check(&self) -> Option<Rejection> {
        if !self.cfg.has_resource_trip() {
            return None;
        }
        let m = self.monitor.as_ref()?;
        let retry_after = m.interval();
        if let Some(at) = self.cfg.trip_level {
            let l = m.level();
            if l >= at {
                return Some(Rejection { reason: RejectReason::Pressure(l), retry_after });
            }
        }
        for (threshold, signal) in [
            (self.cfg.memory_percent, Signal::Memory),
            (self.cfg.memory_bytes, Signal::MemoryBytes),
        ] {
            if let (Some(t), Some(v)) = (threshold, threshold.and_then(|_| m.reading(signal)))
                && v > t
            {
                return Some(Rejection {
                    reason: RejectReason::Memory { value: v, threshold: t },
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
        loop {
            let w = self.word.load(Ordering::Acquire);
            let g = generation(w);
            let start = |now: &mut Now| if self.cfg.slow_call_duration.is_some() { now.get() } else { 0 };
            match decode(w) {
                CircuitState::Closed => {
                    if let Some(r) = self.resource_check() {
                        return Err(self.reject(r, now));
                    }
                    return Ok(Ticket { kind: TicketKind::Closed, generation: g, start: start(now) });
                }
                CircuitState::Disabled | CircuitState::MetricsOnly => {
                    return Ok(Ticket { kind: TicketKind::Record, generation: g, start: start(now) });
                }
                CircuitState::ForcedOpen => {
                    let r = Rejection { reason: RejectReason::ForcedOpen, retry_after: self.cfg.wait_duration };
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
                    self.transition(Some(w), CircuitState::HalfOpen, t, || "wait duration elapsed".into());
                }
                CircuitState::HalfOpen => {
                    if let Some(r) = self.resource_check() {
                        return Err(self.reject(r, now));
                    }
                    let permitted = self.cfg.permitted_calls_in_half_open as u64;
                    if probes(w) + successes(w) < permitted {
                        let nw = w + (1 << PROBE_SHIFT);
                        if self.word.compare_exchange(w, nw, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                            return Ok(Ticket { kind: TicketKind::Probe, generation: g, start: start(now) });
                        }
                        continue;
                    }
                    let t = now.get();
                    let deadline = self
                        .state_since
                        .load(Ordering::Relaxed)
                        .saturating_add(self.cfg.max_wait_in_half_open.as_nanos() as u64);
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
        if let Some(r) = self.resource_check() {
            return Err(r);
        }
        match st {
            CircuitState::ForcedOpen => {
                Err(Rejection { reason: RejectReason::ForcedOpen, retry_after: self.cfg.wait_duration })
            }
            CircuitState::Open => {
                let t = now.get();
                let until = self.open_until.load(Ordering::Relaxed);
                if t < until {
                    Err(Rejection { reason: RejectReason::Open, retry_after: Duration::from_nanos(until - t) })
                } else {
                    Ok(())
                }
            }
            CircuitState::HalfOpen
                if probes(w) + successes(w) >= self.cfg.permitted_calls_in_half_open as u64 =>
            {
                Err(Rejection { reason: RejectReason::HalfOpenFull, retry_after: Duration::ZERO })
            }
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
            self.probe_done(ticket.generation, None);
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
        let slow = match self.cfg.slow_call_duration {
            Some(d) => now.get().saturating_sub(ticket.start) >= d.as_nanos() as u64,
            None => false,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failure {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.last_failure.store(now.get().saturating_add(1), Ordering::Relaxed);
        }
        if slow {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
        if ticket.kind == TicketKind::Probe {
            return self.probe_done(ticket.generation, Some(!(failure || slow)));
        }
        let w = self.word.load(Ordering::Acquire);
        if generation(w) != ticket.generation {
            return; // admitted in an earlier state: metrics only
        }
        self.window.record(failure, slow, || now.get());
        let consecutive = if failure {
            self.consecutive.fetch_add(1, Ordering::Relaxed).saturating_add(1)
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
        let c = &*self.cfg;
        if st == CircuitState::Closed && c.failure_threshold > 0 && consecutive >= c.failure_threshold {
            let t = now.get();
            self.transition(Some(w), CircuitState::Open, t, || {
                format!("{consecutive} consecutive failures >= {}", c.failure_threshold).into()
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
                self.emit(BreakerEventKind::FailureRateExceeded { failure_rate: fr, slow_call_rate: sr }, t);
                self.transition(Some(w), CircuitState::Open, t, || {
                    if fr >= c.failure_rate_threshold {
                        format!("failure rate {fr:.1}% >= {:.1}%", c.failure_rate_threshold).into()
                    } else {
                        format!("slow call rate {sr:.1}% >= {:.1}%", c.slow_call_rate_threshold).into()
                    }
                });
            }
            CircuitState::MetricsOnly => {
                if !self.rate_flag.swap(true, Ordering::Relaxed) {
                    self.emit(BreakerEventKind::FailureRateExceeded { failure_rate: fr, slow_call_rate: sr }, t);
                }
            }
            _ => {}
        }
    }

    /// A probe of generation `g` finished: `Some(true)` success, `Some(false)` failure,
    /// `None` cancelled.
    fn probe_done(&self, g: u32, ok: Option<bool>) {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if decode(w) != CircuitState::HalfOpen || generation(w) != g || probes(w) == 0 {
                return; // a late probe of another cycle: it can neither close nor re-open this one
            }
            let nw = match ok {
                None => w - (1 << PROBE_SHIFT),
                Some(true) => w - (1 << PROBE_SHIFT) + (1 << SUCC_SHIFT),
                Some(false) => {
                    let t = Now::lazy(self.epoch).get();
                    self.transition(Some(w), CircuitState::Open, t, || "probe failed".into());
                    return;
                }
            };
            match self.word.compare_exchange(w, nw, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if ok == Some(true) && successes(nw) >= self.cfg.success_threshold as u64 {
                        let t = Now::lazy(self.epoch).get();
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
                    self.reopens.fetch_add(1, Ordering::Relaxed).saturating_add(1)
                } else {
                    self.reopens.store(0, Ordering::Relaxed);
                    0
                };
                let wait = self.cfg.open_wait(reopens);
                self.open_until.store(t.saturating_add(wait.as_nanos() as u64), Ordering::Relaxed);
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
            match self.word.compare_exchange(w, nw, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                // Only probe counts change without the mutex: retry with the new counts.
                Err(a) => w = a,
            }
        }
        drop(guard);
        self.flush_rejected(t);
        if from != to || expect.is_none() {
            self.emit(BreakerEventKind::StateTransition { from, to, reason: reason() }, t);
        }
        true
    }

    /// Operator reset: CLOSED with an empty window.
    pub(crate) fn reset(&self, t: u64) {
        self.transition(None, CircuitState::Closed, t, || "reset by operator".into());
        self.emit(BreakerEventKind::Reset, t);
    }

    /// Forgets everything and takes a new key (registry eviction).
    pub(crate) fn rekey(&self, key: Arc<str>, t: u64) {
        *lock(&self.key) = Some(key);
        let _g = lock(&self.transition);
        self.window.clear();
        for a in [&self.calls, &self.failures, &self.slow, &self.rejected, &self.rejected_pending, &self.last_failure] {
            a.store(0, Ordering::Relaxed);
        }
        self.consecutive.store(0, Ordering::Relaxed);
        self.reopens.store(0, Ordering::Relaxed);
        self.state_since.store(t, Ordering::Relaxed);
        self.last_used.store(t, Ordering::Relaxed);
        let w = self.word.load(Ordering::Acquire);
        self.word.store(pack(CircuitState::Closed, generation(w).wrapping_add(1)), Ordering::Release);
    }

    /// Whether a probe is out (registry eviction skips such breakers).
    pub(crate) fn busy(&self) -> bool {
        let w = self.word.load(Ordering::Acquire);
        probes(w) > 0
    }

    pub(crate) fn metrics(&self, now: &mut Now) -> super::handle::BreakerMetrics {
        let t = now.get();
        let totals = self.window.totals(|| t);
        let calls = self.calls.load(Ordering::Relaxed);
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
            time_in_state: Duration::from_nanos(t.saturating_sub(self.state_since.load(Ordering::Relaxed))),
            last_failure: (last != 0).then(|| self.epoch + Duration::from_nanos(last - 1)),
        }
    }
}
