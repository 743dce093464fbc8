//! One clock read per request, shared by every layer of a stack.
//!
//! A clock read (`tokio::time::Instant::now()`) costs 20-30 ns on the machines we measure on,
//! more than most of a layer's own work. A stack of layers that each time the request would
//! read the clock twice per layer; instead the layers share two thread-local cells:
//!
//! * **the call time.** The first timing layer whose `call` runs reads the clock once and
//!   publishes the time for as long as its own `call` runs (`CallScope`). Layers it calls
//!   synchronously (tower's `call`s nest: an outer `call` calls the inner one before it
//!   returns) take that time instead of reading the clock. The scope ends when the owner's
//!   `call` returns, so a request started later from a poll (a retry attempt, a queued
//!   request admitted later) reads its own time.
//! * **the completion time.** Response futures nest the same way: the inner one completes
//!   inside the outer one's `poll`. The innermost timing future reads the clock when its
//!   inner future is ready and leaves the time in a cell; the timing futures around it
//!   (`Stamp::done`) take it instead of reading again. Each timing future empties the cell
//!   before polling its inner future (`before_poll`), so a time it finds there was read
//!   during that poll, after its inner future last returned `Pending`. The owner of the call
//!   scope (the outermost timing layer) takes the time out, so it never leaks to a future of
//!   another request.
//!
//! The sharing is exact for the layers of one stack. One case is approximate, and only by the
//! work done inside a single poll: a service whose `call` synchronously calls *another* stack
//! and then does more work on that stack's response in the same poll makes the outer stack's
//! completion time the inner stack's. An `async` handler that awaits a client does not: the
//! client's stack is called from a poll, where no call scope is open, so it owns its own.
//!
//! Under the loom build the cells are off (loom runs its threads on one OS thread), and
//! every layer reads the clock itself.
//!
//! # Exact or coarse
//!
//! By default every read is exact (`tokio::time::Instant::now()`, two per request for a whole
//! stack). [`CoarseClock`] is the option for services where a millisecond of error does not
//! matter: while a [`CoarseClockGuard`] lives, a read is one atomic load of the time a
//! background thread last stored, at the resolution it was started with (as the `quanta`
//! crate's `recent()` time works). What the trade costs is written on [`CoarseClock`].

use std::time::Duration;

use tokio::time::Instant;

#[cfg(not(tower_pressure_loom))]
mod cells {
    use std::cell::Cell;
    use tokio::time::Instant;

    thread_local! {
        /// The call time of the `call` running on this thread, if a timing layer opened one.
        static CALL: Cell<Option<Instant>> = const { Cell::new(None) };
        /// The completion time read during the current poll of a timing future, if any.
        static DONE: Cell<Option<Instant>> = const { Cell::new(None) };
        /// Set while a response future records the outcome of its completed inner future.
        static COMPLETING: Cell<bool> = const { Cell::new(false) };
    }

    #[inline]
    pub(super) fn completing() -> bool {
        COMPLETING.with(Cell::get)
    }
    #[inline]
    pub(super) fn set_completing(v: bool) {
        COMPLETING.with(|c| c.set(v));
    }

    #[inline]
    pub(super) fn call() -> Option<Instant> {
        CALL.with(Cell::get)
    }
    #[inline]
    pub(super) fn set_call(t: Option<Instant>) {
        CALL.with(|c| c.set(t));
    }
    #[inline]
    pub(super) fn done() -> Option<Instant> {
        DONE.with(Cell::get)
    }
    #[inline]
    pub(super) fn set_done(t: Option<Instant>) {
        DONE.with(|c| c.set(t));
    }
}

#[cfg(tower_pressure_loom)]
mod cells {
    use tokio::time::Instant;

    #[inline]
    pub(super) fn call() -> Option<Instant> {
        None
    }
    #[inline]
    pub(super) fn set_call(_: Option<Instant>) {}
    #[inline]
    pub(super) fn done() -> Option<Instant> {
        None
    }
    #[inline]
    pub(super) fn set_done(_: Option<Instant>) {}
    #[inline]
    pub(super) fn completing() -> bool {
        false
    }
    #[inline]
    pub(super) fn set_completing(_: bool) {}
}

/// The clock every layer reads: exact unless a [`CoarseClock`] is running.
#[inline]
fn read() -> Instant {
    match coarse::now() {
        Some(t) => t,
        None => Instant::now(),
    }
}

pub use coarse::{CoarseClock, CoarseClockGuard};

/// The time as the layers read it: exact `tokio::time::Instant::now()`, or the last tick of a
/// running [`CoarseClock`]. For measurements of your own that should agree with the layers'.
///
/// ```
/// use tower_pressure::clock;
/// let before = tokio::time::Instant::now();
/// let t = clock::now(); // no coarse clock runs: an exact read
/// assert!(t >= before && t <= tokio::time::Instant::now());
/// ```
#[inline]
pub fn now() -> Instant {
    read()
}

mod coarse {
    //! The process-wide coarse clock: a thread stores the time since `BASE` every tick; a
    //! read is one atomic load (0 means "off": reads are exact).

    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::error::ConfigError;

    /// The time the ticks count from, set once by the first start.
    static BASE: OnceLock<Instant> = OnceLock::new();
    /// Nanoseconds since `BASE` at the last tick, plus one; 0 while no coarse clock runs.
    static TICK: AtomicU64 = AtomicU64::new(0);
    /// Live guards; the ticker stops with the last one.
    static USERS: AtomicUsize = AtomicUsize::new(0);
    /// The running ticker's stop flag and resolution, if one runs. Only `start` and the
    /// guards' `drop` take this lock; the request path never does.
    static TICKER: Mutex<Option<(Arc<AtomicBool>, Duration)>> = Mutex::new(None);

    #[cfg(not(tower_pressure_loom))]
    #[inline]
    pub(super) fn now() -> Option<Instant> {
        let tick = TICK.load(Ordering::Acquire);
        if tick == 0 {
            return None;
        }
        // `BASE` is set before the first non-zero store (release/acquire on TICK).
        BASE.get()
            .map(|base| *base + Duration::from_nanos(tick - 1))
    }

    /// Loom runs every thread on one OS thread: reads stay exact there.
    #[cfg(tower_pressure_loom)]
    #[inline]
    pub(super) fn now() -> Option<Instant> {
        None
    }

    /// Stores the time since `base`. A tick (`first == false`) only moves a running clock
    /// forward: a ticker that was told to stop just after its last check finds `TICK` at 0
    /// and leaves it there, so it cannot turn the coarse clock back on with no ticker behind
    /// it. Time never goes backwards either (a late store from an older ticker).
    fn store(base: Instant, first: bool) {
        let since = Instant::now().saturating_duration_since(base);
        let next = u64::try_from(since.as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let _ = TICK.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            if cur == 0 && !first {
                None
            } else {
                Some(cur.max(next))
            }
        });
    }

    /// A coarse clock for the layers' timing: reads cost one atomic load instead of a
    /// `clock_gettime`, and are late by up to one resolution.
    ///
    /// Every layer of every stack in the process reads the same clock (the two reads per
    /// request in [`crate::clock`]'s module docs: the call time and the completion time).
    /// By default they are exact `tokio::time::Instant::now()` reads, about 20-30 ns each on
    /// the machines we measure on. [`CoarseClock::start`] starts a thread that stores the
    /// time every `resolution`; while the returned guard (or a clone) lives, a read returns
    /// the last stored time. Drop the last guard and reads are exact again.
    ///
    /// # The trade
    ///
    /// * Latencies (breaker slow-call detection, adaptive-concurrency RTTs, alert latency
    ///   percentiles, retry timings) are quantised to the resolution: with 1 ms, a 300 µs
    ///   call reads as 0 or 1 ms. Keep the exact clock when the backend answers in well
    ///   under ten resolutions (Vegas and Gradient2 learn from the RTT's small changes);
    ///   take the coarse one for backends that answer in tens of milliseconds or more (HTTP
    ///   APIs, LLM providers), where a millisecond is noise.
    /// * Times are late by at most one resolution (more if the machine does not schedule the
    ///   ticker thread): a timeout measured from the call time can fire up to that much
    ///   early, a breaker's open wait can end up to that much late. Time never goes
    ///   backwards.
    /// * The ticker is an OS thread, not a tokio task, so a blocked runtime does not stall
    ///   the clock. It follows the OS clock: under tokio's paused test clock
    ///   (`start_paused`) keep the exact clock, which follows the paused time.
    ///
    /// A second `start` while a ticker runs shares it: the finer of the two resolutions is
    /// not applied to the running ticker, which keeps its own (see
    /// [`CoarseClock::resolution`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_pressure::clock::CoarseClock;
    ///
    /// let guard = CoarseClock::start(Duration::from_millis(1))?;
    /// assert!(CoarseClock::is_running());
    /// assert_eq!(CoarseClock::resolution(), Some(Duration::from_millis(1)));
    /// drop(guard); // reads are exact again
    ///
    /// // A resolution of zero, or above one second, is refused.
    /// assert!(CoarseClock::start(Duration::ZERO).is_err());
    /// # Ok::<(), tower_pressure::ConfigError>(())
    /// ```
    #[derive(Debug, Clone, Copy)]
    pub struct CoarseClock {
        _private: (),
    }

    /// Keeps the coarse clock running; reads are exact again when the last guard (and its
    /// clones) is dropped.
    #[derive(Debug)]
    #[must_use = "the coarse clock stops when the guard is dropped"]
    pub struct CoarseClockGuard {
        _private: (),
    }

    impl Clone for CoarseClockGuard {
        fn clone(&self) -> Self {
            USERS.fetch_add(1, Ordering::AcqRel);
            Self { _private: () }
        }
    }

    fn ticker() -> std::sync::MutexGuard<'static, Option<(Arc<AtomicBool>, Duration)>> {
        // A poisoned lock only means a thread panicked while holding it; the data (a flag and
        // a duration) is still whole.
        TICKER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    impl CoarseClock {
        /// Starts the coarse clock (or joins the running one) at `resolution`, which must be
        /// more than zero and at most one second.
        ///
        /// # Errors
        ///
        /// [`ConfigError`] naming `coarse_clock.resolution` when it is out of range, or
        /// `coarse_clock` when the OS refuses to start the thread.
        pub fn start(resolution: Duration) -> Result<CoarseClockGuard, ConfigError> {
            if resolution.is_zero() || resolution > Duration::from_secs(1) {
                return Err(ConfigError::new(
                    "coarse_clock.resolution",
                    resolution,
                    "must be greater than zero and at most 1 s",
                ));
            }
            let mut running = ticker();
            if running.is_none() {
                let base = *BASE.get_or_init(Instant::now);
                let stop = Arc::new(AtomicBool::new(false));
                let flag = Arc::clone(&stop);
                store(base, true);
                std::thread::Builder::new()
                    .name("tower-pressure-coarse-clock".into())
                    .spawn(move || {
                        while !flag.load(Ordering::Acquire) {
                            std::thread::sleep(resolution);
                            if !flag.load(Ordering::Acquire) {
                                store(base, false);
                            }
                        }
                    })
                    .map_err(|e| {
                        TICK.store(0, Ordering::Release);
                        ConfigError::new("coarse_clock", e, "the ticker thread did not start")
                    })?;
                *running = Some((stop, resolution));
            }
            USERS.fetch_add(1, Ordering::AcqRel);
            Ok(CoarseClockGuard { _private: () })
        }

        /// Whether reads are coarse right now.
        pub fn is_running() -> bool {
            TICK.load(Ordering::Acquire) != 0
        }

        /// The running ticker's resolution, if one runs.
        pub fn resolution() -> Option<Duration> {
            ticker().as_ref().map(|(_, r)| *r)
        }
    }

    impl Drop for CoarseClockGuard {
        fn drop(&mut self) {
            let mut running = ticker();
            if USERS.fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some((stop, _)) = running.take() {
                    stop.store(true, Ordering::Release);
                }
                TICK.store(0, Ordering::Release);
            }
        }
    }
}

/// The current time: the open call scope's time if a layer outside this one already read
/// it, otherwise a clock read. For a layer that needs the time of a call but does not time
/// the response (so opens no scope of its own).
#[inline]
pub(crate) fn call_time() -> Instant {
    cells::call().unwrap_or_else(read)
}

/// `from + d`, or a point about 30 years ahead when that does not fit (what
/// `tokio::time::sleep` does for a duration too large to add): a `Duration::MAX` timeout or
/// deadline means "never" instead of a panic on the request path.
#[inline]
pub(crate) fn deadline(from: Instant, d: Duration) -> Instant {
    const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);
    from.checked_add(d)
        .or_else(|| from.checked_add(FAR_FUTURE))
        .unwrap_or(from)
}

/// The longest period the crate accepts for a periodic task (the monitor's sampling, the
/// lag probe, alert watches, a limiter's baseline probe): one day. tokio's `Interval` adds
/// its period to an `Instant` unchecked at every tick, so a period near `Duration::MAX`
/// would panic a background task; builders refuse longer periods instead.
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(86_400);

/// Refuses a zero period or one above [`MAX_PERIOD`], naming `field`.
pub(crate) fn check_period(field: &str, d: Duration) -> Result<(), crate::error::ConfigError> {
    if d.is_zero() || d > MAX_PERIOD {
        return Err(crate::error::ConfigError::new(
            field,
            d,
            "must be greater than zero and at most 1 day (86400 s)",
        ));
    }
    Ok(())
}

/// The open call scope's time, if a timing layer around this call already read it.
#[inline]
pub(crate) fn scope_time() -> Option<Instant> {
    cells::call()
}

/// Whether a call scope is open: a layer called now is inside another timing layer's call,
/// so it does not own the completion time.
#[inline]
pub(crate) fn in_scope() -> bool {
    cells::call().is_some()
}

/// The current time for a layer that reads it lazily (the breaker): the open call scope's
/// time inside a `call`, the shared completion time inside a [`Completing`] section, a clock
/// read otherwise (e.g. at the end of a response body).
#[inline]
pub(crate) fn shared_now() -> Instant {
    if let Some(t) = cells::call() {
        return t;
    }
    if cells::completing() {
        return done_time();
    }
    read()
}

/// The completion time of the current poll: the one a timing future inside already read, or
/// a read left for the futures around this one.
#[inline]
fn done_time() -> Instant {
    match cells::done() {
        Some(t) => t,
        None => {
            let t = read();
            cells::set_done(Some(t));
            t
        }
    }
}

/// Marks the section where a response future records the outcome of its inner future, which
/// completed in this poll: [`shared_now`] there is the shared completion time. Dropping it
/// ends the section; an `owner` (a layer called outside any call scope) also takes the
/// completion time out so that it does not reach another request's futures.
#[must_use = "the section ends when this is dropped"]
#[derive(Debug)]
pub(crate) struct Completing {
    owner: bool,
}

impl Completing {
    /// Opens the section; call [`before_poll`] before polling the inner future.
    #[inline]
    pub(crate) fn enter(owner: bool) -> Self {
        cells::set_completing(true);
        Self { owner }
    }
}

impl Drop for Completing {
    #[inline]
    fn drop(&mut self) {
        cells::set_completing(false);
        if self.owner {
            cells::set_done(None);
        }
    }
}

/// The call time of one request, published to the layers its `call` reaches while this value
/// lives. Drop it right after calling the inner service.
#[must_use = "the scope ends when this is dropped; keep it across the inner `call`"]
#[derive(Debug)]
pub(crate) struct CallScope {
    stamp: Stamp,
}

impl CallScope {
    /// Takes the open scope's time, or reads the clock and opens the scope.
    #[inline]
    pub(crate) fn enter() -> Self {
        let stamp = match cells::call() {
            Some(at) => Stamp { at, owner: false },
            None => {
                let at = read();
                cells::set_call(Some(at));
                Stamp { at, owner: true }
            }
        };
        Self { stamp }
    }

    /// The call time and this layer's role, for its response future.
    #[inline]
    pub(crate) fn stamp(&self) -> Stamp {
        self.stamp
    }
}

impl Drop for CallScope {
    #[inline]
    fn drop(&mut self) {
        if self.stamp.owner {
            cells::set_call(None);
        }
    }
}

/// A request's call time and whether its layer owns the scope, kept by a response future.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    /// When the request was called.
    pub(crate) at: Instant,
    owner: bool,
}

impl Stamp {
    /// A stamp for a call timed on its own (no scope: a request called from a poll).
    #[inline]
    pub(crate) fn solo(at: Instant) -> Self {
        Self { at, owner: true }
    }

    /// The completion time, to be called in the poll where the inner future returned ready:
    /// the time a timing future inside this one read during this poll, or a clock read. A
    /// layer inside the scope leaves the time for the layers around it; the owner takes it.
    #[inline]
    pub(crate) fn done(self) -> Instant {
        let t = done_time();
        if self.owner {
            cells::set_done(None);
        }
        t
    }
}

/// A stamp for a timing layer that does not hold its call's [`CallScope`] open (the adaptive
/// limiter times a sample of its requests): the open scope's time, or a clock read that makes
/// it the owner of the completion time.
#[inline]
pub(crate) fn stamp() -> Stamp {
    match cells::call() {
        Some(at) => Stamp { at, owner: false },
        None => Stamp::solo(read()),
    }
}

/// Called by a timing future before it polls its inner future, so that a completion time it
/// finds afterwards was read during that poll.
#[inline]
pub(crate) fn before_poll() {
    cells::set_done(None);
}

#[cfg(all(test, not(tower_pressure_loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn nested_calls_share_the_outer_read_and_the_scope_ends_with_the_owner() {
        let outer = CallScope::enter();
        tokio::time::advance(Duration::from_millis(5)).await;
        let inner = CallScope::enter();
        assert_eq!(
            inner.stamp().at,
            outer.stamp().at,
            "inner takes the outer's time"
        );
        assert_eq!(call_time(), outer.stamp().at);
        drop(inner);
        assert_eq!(
            call_time(),
            outer.stamp().at,
            "a non-owner does not close the scope"
        );
        let t0 = outer.stamp().at;
        drop(outer);
        assert_eq!(
            call_time(),
            t0 + Duration::from_millis(5),
            "no scope: a fresh read"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn completion_time_flows_outwards_and_stops_at_the_owner() {
        let outer = CallScope::enter();
        let inner = CallScope::enter();
        let (o, i) = (outer.stamp(), inner.stamp());
        drop((inner, outer));

        tokio::time::advance(Duration::from_millis(7)).await;
        before_poll(); // outer polls
        before_poll(); // inner polls
        let ti = i.done(); // innermost reads
        tokio::time::advance(Duration::from_millis(1)).await;
        let to = o.done(); // the owner takes the inner's read
        assert_eq!(ti, to);
        assert_eq!(ti, o.at + Duration::from_millis(7));
        // The owner emptied the cell: a later completion reads again.
        let later = Stamp::solo(o.at).done();
        assert_eq!(later, o.at + Duration::from_millis(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_completion_time_is_never_used() {
        let st = stamp();
        assert!(st.owner, "no scope open: the stamp owns its completion");
        // A non-owner of some earlier request left a time behind (its owner went away).
        let left = Stamp {
            at: st.at,
            owner: false,
        };
        let _ = left.done();
        tokio::time::advance(Duration::from_millis(3)).await;
        before_poll();
        assert_eq!(st.done(), st.at + Duration::from_millis(3));
    }

    #[test]
    fn deadline_saturates_far_ahead_instead_of_overflowing() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        let never = deadline(now, Duration::MAX);
        assert!(
            never > now + Duration::from_secs(86_400 * 365 * 29),
            "{never:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shared_now_inside_call_and_completion_and_outside() {
        let t0 = shared_now();
        let scope = CallScope::enter();
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(shared_now(), t0, "inside a call: the scope's time");
        drop(scope);
        assert_eq!(
            shared_now(),
            t0 + Duration::from_millis(2),
            "outside: a read"
        );

        before_poll();
        let inner = Stamp {
            at: t0,
            owner: false,
        };
        let t1 = inner.done(); // an inner timing future completed in this poll
        tokio::time::advance(Duration::from_millis(1)).await;
        {
            let _c = Completing::enter(true);
            assert_eq!(shared_now(), t1, "completing: the inner future's read");
        }
        assert!(
            cells::done().is_none(),
            "the owner took the completion time out"
        );
        assert!(!cells::completing());
        assert_eq!(shared_now(), t1 + Duration::from_millis(1));
    }
}
