//! A lock-free retry budget shared by every clone of a layer.
//!
//! # Why budgets and not only max attempts?
//!
//! "3 attempts" looks safe per request but multiplies load by 3 exactly when the backend is
//! failing: a retry storm. A budget (the Finagle / Linkerd / Envoy idea) caps retries as a
//! fraction of *first* attempts: with the default `ratio` of 20 %, a backend failing every
//! request sees at most 1.2x its normal load, not 3x. A small `min_per_second` floor lets a
//! client that sends few requests still retry the occasional failure.
//!
//! # How it works, and why it is cheaper than tower's `TpsBudget`
//!
//! Time since the budget was built is cut into slots of `window / 10`. Two rings of ten
//! `AtomicU64` words hold, per slot:
//!
//! ```text
//!  balance word:  63            32 31             0
//!                +----------------+----------------+
//!                | slot generation| balance (i32,  |
//!                | (u32, wraps)   | milli-tokens)  |
//!                +----------------+----------------+
//!  floor word:   | slot generation| floor used     |
//!                | (u32, wraps)   | (u32, milli)   |
//!                +----------------+----------------+
//! ```
//!
//! * A first attempt *deposits* `ratio x 1000` milli-tokens into the current slot's balance
//!   (without reading the clock on most calls: see [`RetryBudget::deposit`]). A `RetryLayer`
//!   counts its first attempts with one atomic add and deposits them in batches of 32, and
//!   all that are pending before each of its own retries (see `Tally`).
//! * A retry *withdraws* 1000 milli-tokens: from the balances of the last ten slots (the
//!   window) if they hold enough, otherwise from the current slot's floor allowance of
//!   `min_per_second x slot length`.
//! * A word whose generation is not the current slot's is stale: the first writer of the new
//!   slot replaces it with a fresh word in the same compare-exchange, so expiry needs no
//!   lock, no background task and no "generation" mutex (tower's `TpsBudget` takes a
//!   `Mutex` on every deposit and withdrawal to rotate its slots).
//!
//! Every update is a compare-exchange on one word, so two retries racing for the last token
//! cannot both take it. Reads of the *other* slots of the ring are `Relaxed` snapshots: those
//! slots belong to the past and only change by expiring, so a racing reader can at worst
//! count a slot that expires at that instant (a one-slot rounding, documented and accepted).
//! No other memory is published through these words, so `Relaxed` ordering suffices for all
//! of them: atomic read-modify-writes on one location are totally ordered regardless.
//!
//! Over any run of `T` seconds the budget therefore admits at most
//! `ratio x first attempts + min_per_second x (T + slot length)` retries.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{ConfigError, check_range};
use crate::lane::Striped;
use crate::sync::AtomicU64;

const SLOTS: usize = 10;
/// One token in milli-tokens.
const COST: i64 = 1000;

/// A retry budget: retries may add at most `ratio` on top of first attempts over a window,
/// plus a `min_per_second` floor. Cheap to clone; clones share the same budget.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_pressure::retry::RetryBudget;
///
/// let budget = RetryBudget::builder().ratio(0.5).min_per_second(0).build()?;
/// let now = Instant::now();
/// budget.deposit_at(now);
/// budget.deposit_at(now);
/// assert!(budget.withdraw_at(now)); // two first attempts x 50 % = one retry
/// assert!(!budget.withdraw_at(now));
/// # Ok::<(), tower_pressure::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Instant,
    slot_nanos: u64,
    /// `ratio` and `min_per_second` and what they come to per deposit and per slot:
    /// reloadable (`super::settings`).
    rates: super::settings::BudgetRates,
    balance: [AtomicU64; SLOTS],
    floor: [AtomicU64; SLOTS],
    window: Duration,
    /// Refusals not yet reported in a `BudgetExhausted` event.
    pending_refusals: AtomicU64,
    /// Slot generation (+1, 0 = never) of the last `BudgetExhausted` report.
    last_report: AtomicU64,
    refused_total: AtomicU64,
    withdrawn_total: AtomicU64,
    /// The clock-free deposit path's idea of the current slot: generation in the high 32
    /// bits, a deposit counter in the low 32 (see [`RetryBudget::deposit`]).
    cached: AtomicU64,
}

/// The clock-free deposit path reads the clock once every this many deposits.
const REFRESH: u32 = 32;

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.ratio())
            .field("window", &self.inner.window)
            .field("min_per_second", &self.min_per_second())
            .field("withdrawn", &self.withdrawn())
            .field("refused", &self.refused())
            .finish()
    }
}

impl Default for RetryBudget {
    /// 20 % over a 10 s window, floor 10 per second.
    fn default() -> Self {
        Self::from_parts(0.2, Duration::from_secs(10), 10)
    }
}

/// Builder for [`RetryBudget`].
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    window: Duration,
    min_per_second: u32,
}

impl RetryBudgetBuilder {
    /// Retries allowed per first attempt (default 0.2 = 20 %). `0.0..=10.0`.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }
    /// How long a first attempt's deposit stays valid (default 10 s). `1 s..=60 s`.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
    /// Retries always allowed per second, whatever the ratio (default 10).
    pub fn min_per_second(mut self, n: u32) -> Self {
        self.min_per_second = n;
        self
    }
    /// Builds the budget.
    ///
    /// # Errors
    /// [`ConfigError`] naming `budget.ratio` (`0.0..=10.0`), `budget.window` (`1 s..=60 s`) or
    /// `budget.min_per_second` (at most 1 000 000).
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        check_range("budget.ratio", self.ratio, 0.0, 10.0)?;
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "budget.window",
                self.window,
                "must be within 1s..=60s",
            ));
        }
        if self.min_per_second > 1_000_000 {
            return Err(ConfigError::new(
                "budget.min_per_second",
                self.min_per_second,
                "must be at most 1000000",
            ));
        }
        Ok(RetryBudget::from_parts(
            self.ratio,
            self.window,
            self.min_per_second,
        ))
    }
}

#[inline]
fn gen_of(word: u64) -> u32 {
    (word >> 32) as u32
}
#[inline]
fn low(word: u64) -> u32 {
    word as u32
}
#[inline]
fn pack(generation: u32, low: u32) -> u64 {
    ((generation as u64) << 32) | low as u64
}

impl RetryBudget {
    /// A builder with the defaults: ratio 0.2, window 10 s, floor 10 per second.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            ratio: 0.2,
            window: Duration::from_secs(10),
            min_per_second: 10,
        }
    }

    fn from_parts(ratio: f64, window: Duration, min_per_second: u32) -> Self {
        let slot = window / SLOTS as u32;
        let slot_nanos = (slot.as_nanos() as u64).max(1);
        Self {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                slot_nanos,
                rates: super::settings::BudgetRates::new(ratio, min_per_second, slot),
                balance: std::array::from_fn(|_| AtomicU64::new(0)),
                floor: std::array::from_fn(|_| AtomicU64::new(0)),
                window,
                pending_refusals: AtomicU64::new(0),
                last_report: AtomicU64::new(0),
                refused_total: AtomicU64::new(0),
                withdrawn_total: AtomicU64::new(0),
                cached: AtomicU64::new(0),
            }),
        }
    }

    /// The ratio of retries to first attempts.
    pub fn ratio(&self) -> f64 {
        self.inner.rates.ratio()
    }
    /// The window.
    pub fn window(&self) -> Duration {
        self.inner.window
    }
    /// The floor of retries per second.
    pub fn min_per_second(&self) -> u32 {
        self.inner.rates.min_per_second()
    }

    /// Sets `ratio` and `min_per_second` (validated by the caller), keeping the window's
    /// deposits and withdrawals (see `super::settings`).
    pub(crate) fn set_rates(&self, ratio: f64, min_per_second: u32) {
        let slot = self.inner.window / SLOTS as u32;
        self.inner.rates.set(ratio, min_per_second, slot);
    }
    /// Retries granted since the budget was built.
    pub fn withdrawn(&self) -> u64 {
        self.inner.withdrawn_total.load(Ordering::Relaxed)
    }
    /// Retries refused since the budget was built.
    pub fn refused(&self) -> u64 {
        self.inner.refused_total.load(Ordering::Relaxed)
    }

    /// `true` when both handles share one budget.
    pub fn ptr_eq(&self, other: &RetryBudget) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    #[inline]
    fn generation(&self, now: Instant) -> u32 {
        // Truncation to u32 is intended: generations are compared with wrapping arithmetic.
        (now.saturating_duration_since(self.inner.epoch).as_nanos() as u64 / self.inner.slot_nanos)
            as u32
    }

    /// Remembers `now`'s slot for the clock-free [`RetryBudget::deposit`]; returns it.
    fn refresh(&self, now: Instant) -> u32 {
        let g = self.generation(now);
        let c = &self.inner.cached;
        let mut cur = c.load(Ordering::Relaxed);
        // Only move forward (wrapping compare): a slow thread must not rewind the slot.
        while (g.wrapping_sub(gen_of(cur)) as i32) > 0 {
            match c.compare_exchange_weak(
                cur,
                pack(g, low(cur)),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        g
    }

    /// Records a first attempt without reading the clock on most calls: the slot is the one
    /// last seen by any withdrawal or by every 32nd deposit, which read the clock. While
    /// retries happen (the only time the budget matters) every withdrawal refreshes the slot,
    /// so deposits are exact. After a quiet period, up to 31 deposits may land in an expired
    /// slot and be lost: this only makes the budget stricter, by at most 31 x `ratio`
    /// retries, and the `min_per_second` floor still applies.
    #[inline]
    pub fn deposit(&self) {
        if self.inner.rates.deposit() == 0 {
            return;
        }
        // Relaxed: a counter and a hint; the slot update below is its own CAS.
        let w = self.inner.cached.fetch_add(1, Ordering::Relaxed);
        let g = if low(w).is_multiple_of(REFRESH) {
            self.refresh(Instant::now())
        } else {
            gen_of(w)
        };
        if !self.deposit_gen(g) {
            // The slot already belongs to a later generation: the cached one is stale.
            let g = self.refresh(Instant::now());
            self.deposit_gen(g);
        }
    }

    /// Records a first attempt at `now`.
    #[inline]
    pub fn deposit_at(&self, now: Instant) {
        if self.inner.rates.deposit() == 0 {
            return;
        }
        let g = self.refresh(now);
        self.deposit_gen(g);
    }

    /// Adds a deposit to generation `g`'s slot; `false` if the slot holds a later one.
    #[inline]
    fn deposit_gen(&self, g: u32) -> bool {
        self.deposit_milli(g, self.inner.rates.deposit())
    }

    /// Adds `count` first attempts' deposits to generation `g`'s slot (lost if the slot
    /// already holds a later generation: the batch left the window).
    pub(crate) fn deposit_batch(&self, g: u32, count: u32) {
        if self.inner.rates.deposit() == 0 {
            return;
        }
        self.deposit_milli(
            g,
            self.inner.rates.deposit().saturating_mul(i64::from(count)),
        );
    }

    /// Adds `deposit` milli-tokens to generation `g`'s slot; `false` if it holds a later one.
    #[inline]
    fn deposit_milli(&self, g: u32, deposit: i64) -> bool {
        let slot = &self.inner.balance[g as usize % SLOTS];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            if (gen_of(cur).wrapping_sub(g) as i32) > 0 {
                return false;
            }
            let bal = if gen_of(cur) == g {
                low(cur) as i32 as i64
            } else {
                0
            };
            let next = bal
                .saturating_add(deposit)
                .clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            // Relaxed: see the module docs; the CAS alone makes the update exact.
            match slot.compare_exchange_weak(
                cur,
                pack(g, next as u32),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Tries to take one retry at `now`; `false` when the budget is empty.
    pub fn withdraw_at(&self, now: Instant) -> bool {
        let ok = self.try_withdraw(now);
        if ok {
            self.inner.withdrawn_total.fetch_add(1, Ordering::Relaxed);
        } else {
            self.inner.refused_total.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    fn try_withdraw(&self, now: Instant) -> bool {
        let g = self.refresh(now);
        let idx = g as usize % SLOTS;
        // Balance of the other slots of the window (the past; Relaxed snapshot).
        let mut others: i64 = 0;
        for (i, slot) in self.inner.balance.iter().enumerate() {
            if i == idx {
                continue;
            }
            let w = slot.load(Ordering::Relaxed);
            if g.wrapping_sub(gen_of(w)) < SLOTS as u32 {
                others += low(w) as i32 as i64;
            }
        }
        let slot = &self.inner.balance[idx];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let bal = if gen_of(cur) == g {
                low(cur) as i32 as i64
            } else {
                0
            };
            if others + bal < COST {
                break;
            }
            let next = (bal - COST).max(i32::MIN as i64) as i32;
            match slot.compare_exchange_weak(
                cur,
                pack(g, next as u32),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        // The ratio pool is empty: try the current slot's floor allowance.
        let floor = &self.inner.floor[idx];
        let mut cur = floor.load(Ordering::Relaxed);
        loop {
            let used = if gen_of(cur) == g { low(cur) as u64 } else { 0 };
            if used + COST as u64 > self.inner.rates.floor_per_slot() {
                return false;
            }
            let next = (used + COST as u64).min(u32::MAX as u64) as u32;
            match floor.compare_exchange_weak(
                cur,
                pack(g, next),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Retries the budget would grant at `now`, in tokens (fractional): the balance of the
    /// window plus what is left of the current slot's floor allowance. A read-only snapshot
    /// for status pages (`Relaxed` loads; concurrent updates may be half-seen).
    pub fn available_at(&self, now: Instant) -> f64 {
        let g = self.generation(now);
        let balance: i64 = self
            .inner
            .balance
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|w| g.wrapping_sub(gen_of(*w)) < SLOTS as u32)
            .map(|w| low(w) as i32 as i64)
            .sum();
        let fw = self.inner.floor[g as usize % SLOTS].load(Ordering::Relaxed);
        let used = if gen_of(fw) == g { low(fw) as u64 } else { 0 };
        let floor_left = self.inner.rates.floor_per_slot().saturating_sub(used);
        (balance.max(0) as f64 + floor_left as f64) / COST as f64
    }

    /// [`available_at`](Self::available_at) now.
    pub fn available(&self) -> f64 {
        self.available_at(Instant::now())
    }

    /// Counts a refusal at `now`; returns the number of refusals to report when a
    /// `BudgetExhausted` event is due (at most one per slot, i.e. per `window / 10`).
    pub(crate) fn note_refusal(&self, now: Instant) -> Option<u64> {
        self.inner.pending_refusals.fetch_add(1, Ordering::Relaxed);
        let g = self.generation(now) as u64 + 1;
        let last = self.inner.last_report.load(Ordering::Relaxed);
        if last == g {
            return None;
        }
        // Only the thread that wins the CAS for this slot reports.
        if self
            .inner
            .last_report
            .compare_exchange(last, g, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        Some(self.inner.pending_refusals.swap(0, Ordering::Relaxed)).filter(|n| *n > 0)
    }
}

/// A layer's count of first attempts, which also carries them to the layer's budget in
/// batches, so that the success path costs ONE uncontended atomic add (tower's `Retry` costs
/// none; a deposit straight into the budget costs an add and a compare-exchange).
///
/// ```text
///  word:  63            32 31             0
///        +----------------+----------------+
///        | slot generation| pending first  |
///        | of the batch   | attempts (u32) |
///        +----------------+----------------+
/// ```
///
/// Every first attempt adds 1 to `word` (`Relaxed`: a counter; it publishes nothing). The
/// attempt that makes the pending count reach [`REFRESH`] flushes the batch: it swaps the
/// word for `(generation now, 0)` with a compare-exchange (so increments racing with it are
/// either in the swapped-out count or in the new word, never lost nor counted twice), adds
/// the count to `flushed` and deposits it in the budget slot of the batch's generation. Every
/// retry of the layer flushes first, so during a failure storm the layer's own deposits are
/// exact; another layer sharing the budget sees them up to `REFRESH - 1` first attempts late.
/// A batch whose generation has left the window when it is flushed (after a quiet period) is
/// lost: like every approximation of the budget, this only makes it stricter.
///
/// The pending count is at most `REFRESH` plus the attempts racing with one flush, so it
/// never overflows into the generation.
pub(crate) struct Tally {
    word: AtomicU64,
    flushed: AtomicU64,
}

impl Tally {
    pub(crate) fn new(budget: Option<&RetryBudget>, now: Instant) -> Self {
        let g = budget.map_or(0, |b| b.generation(now));
        Self {
            word: AtomicU64::new(pack(g, 0)),
            flushed: AtomicU64::new(0),
        }
    }

    /// Counts one first attempt (and deposits it, in a batch, into `budget`).
    #[inline]
    pub(crate) fn record(&self, budget: Option<&RetryBudget>) {
        // Relaxed: a counter; the flush below is its own compare-exchange.
        let w = self.word.fetch_add(1, Ordering::Relaxed);
        if low(w) == REFRESH - 1 {
            self.flush_now(budget);
        }
    }

    #[cold]
    #[inline(never)]
    fn flush_now(&self, budget: Option<&RetryBudget>) {
        // Without a budget only the count moves: no clock is needed. Called from `call`:
        // the call time the stack already read, when there is one (`crate::clock`).
        let now = budget.map(|_| crate::clock::call_time());
        self.flush(budget, now);
    }

    /// Moves the pending first attempts into `flushed` and, at their batch's generation,
    /// into `budget`; the next batch starts at `now`'s generation.
    pub(crate) fn flush(&self, budget: Option<&RetryBudget>, now: Option<Instant>) {
        let g = match (budget, now) {
            (Some(b), Some(now)) => Some(b.generation(now)),
            _ => None,
        };
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            // Only move forward (wrapping compare): a slow thread must not rewind the batch.
            let next_gen = match g {
                Some(g) if (g.wrapping_sub(gen_of(cur)) as i32) > 0 => g,
                _ => gen_of(cur),
            };
            if low(cur) == 0 && next_gen == gen_of(cur) {
                return;
            }
            // Relaxed: see the type's docs; the exchange alone makes the count exact.
            match self.word.compare_exchange_weak(
                cur,
                pack(next_gen, 0),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        let count = low(cur);
        if count == 0 {
            return;
        }
        // Relaxed: a statistic.
        self.flushed.fetch_add(u64::from(count), Ordering::Relaxed);
        if let Some(b) = budget {
            b.deposit_batch(gen_of(cur), count);
        }
    }

    /// First attempts counted so far (a `Relaxed` snapshot: one racing with a flush may be
    /// missed by this read).
    pub(crate) fn total(&self) -> u64 {
        self.flushed.load(Ordering::Relaxed) + u64::from(low(self.word.load(Ordering::Relaxed)))
    }
}

/// A layer's [`Tally`], one per lane ([`crate::lane`]): threads calling through one layer
/// count their first attempts on cache lines of their own. Each stripe flushes its own
/// batches; a retry (and a stats read) flushes every stripe first, so the layer's deposits
/// stay exact at the moment the budget is asked.
pub(crate) struct Tallies {
    stripes: Striped<Tally>,
}

impl Tallies {
    /// `lanes` stripes (rounded up to a power of two, at least 1).
    pub(crate) fn new(budget: Option<&RetryBudget>, now: Instant, lanes: usize) -> Self {
        Self {
            stripes: Striped::new(lanes, || Tally::new(budget, now)),
        }
    }

    /// Counts one first attempt in thread index `lane`'s stripe.
    #[inline]
    pub(crate) fn record(&self, lane: usize, budget: Option<&RetryBudget>) {
        self.stripes.get(lane).record(budget);
    }

    /// Flushes every stripe (see [`Tally::flush`]).
    pub(crate) fn flush(&self, budget: Option<&RetryBudget>, now: Option<Instant>) {
        for t in self.stripes.iter() {
            t.flush(budget, now);
        }
    }

    /// First attempts counted so far, over every stripe.
    pub(crate) fn total(&self) -> u64 {
        self.stripes.iter().map(|t| t.total()).sum()
    }
}

/// The budget works with tower's own `Retry` policies as well.
impl tower::retry::budget::Budget for RetryBudget {
    fn deposit(&self) {
        self.deposit_at(Instant::now())
    }
    fn withdraw(&self) -> bool {
        self.withdraw_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn ratio_limits_retries() {
        let b = RetryBudget::builder().min_per_second(0).build().unwrap();
        let t0 = b.inner.epoch;
        for _ in 0..100 {
            b.deposit_at(t0);
        }
        let granted = (0..100).filter(|_| b.withdraw_at(t0)).count();
        assert_eq!(granted, 20);
        assert_eq!(b.refused(), 80);
    }

    #[test]
    fn available_counts_balance_and_floor() {
        let b = RetryBudget::builder()
            .ratio(0.5)
            .min_per_second(2)
            .build()
            .unwrap();
        let t0 = b.inner.epoch;
        // Floor: 2 per second, slots of 1 s.
        assert_eq!(b.available_at(t0), 2.0);
        for _ in 0..4 {
            b.deposit_at(t0);
        }
        assert_eq!(b.available_at(t0), 4.0);
        assert!(b.withdraw_at(t0));
        assert_eq!(b.available_at(t0), 3.0);
        // Past the window the deposits are gone, the floor is back.
        assert_eq!(b.available_at(t0 + secs(11.0)), 2.0);
    }

    #[test]
    fn floor_allows_some_retries_per_second() {
        let b = RetryBudget::builder()
            .ratio(0.0)
            .min_per_second(10)
            .build()
            .unwrap();
        let t0 = b.inner.epoch;
        // Slots are 1 s long with the default 10 s window: 10 per slot.
        let first = (0..50).filter(|_| b.withdraw_at(t0)).count();
        assert_eq!(first, 10);
        let next = (0..50).filter(|_| b.withdraw_at(t0 + secs(1.0))).count();
        assert_eq!(next, 10);
    }

    #[test]
    fn deposits_expire_after_the_window() {
        let b = RetryBudget::builder()
            .ratio(1.0)
            .min_per_second(0)
            .build()
            .unwrap();
        let t0 = b.inner.epoch;
        for _ in 0..5 {
            b.deposit_at(t0);
        }
        assert!(b.withdraw_at(t0 + secs(9.5)));
        // After the window the remaining deposits are gone.
        assert!(!b.withdraw_at(t0 + secs(10.5)));
        // A slot reused after a full wrap starts fresh.
        b.deposit_at(t0 + secs(20.0));
        assert!(b.withdraw_at(t0 + secs(20.0)));
        assert!(!b.withdraw_at(t0 + secs(20.0)));
    }

    #[tokio::test(start_paused = true)]
    async fn clock_free_deposits_follow_the_slot() {
        let b = RetryBudget::builder()
            .ratio(1.0)
            .min_per_second(0)
            .build()
            .unwrap();
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(
            (0..200).filter(|_| b.withdraw_at(Instant::now())).count(),
            100
        );
        // After a quiet window, at most REFRESH - 1 deposits land in the stale slot; the
        // rest reach the current one.
        tokio::time::advance(secs(30.0)).await;
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..200).filter(|_| b.withdraw_at(Instant::now())).count();
        assert!(
            (100 - REFRESH as usize + 1..=100).contains(&granted),
            "{granted}"
        );
        // Withdrawals refresh the slot: during a failure storm deposits are exact.
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(
            (0..200).filter(|_| b.withdraw_at(Instant::now())).count(),
            100
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tally_deposits_in_batches_and_counts_every_request() {
        let b = RetryBudget::builder()
            .ratio(1.0)
            .min_per_second(0)
            .build()
            .unwrap();
        let now = Instant::now();
        let tally = Tally::new(Some(&b), now);
        for _ in 0..40 {
            tally.record(Some(&b));
        }
        assert_eq!(tally.total(), 40);
        // One batch of 32 reached the budget; 8 are pending.
        assert_eq!(b.available_at(now), 32.0);
        tally.flush(Some(&b), Some(now));
        assert_eq!((tally.total(), b.available_at(now)), (40, 40.0));
        // An empty flush changes nothing.
        tally.flush(Some(&b), Some(now));
        assert_eq!((tally.total(), b.available_at(now)), (40, 40.0));
        // A batch flushed after the window has left it is lost (stricter, never looser).
        tally.record(Some(&b));
        tokio::time::advance(secs(30.0)).await;
        tally.flush(Some(&b), Some(Instant::now()));
        assert_eq!(tally.total(), 41);
        assert_eq!(b.available_at(Instant::now()), 0.0);
        // The next batch belongs to the current slot.
        tally.record(Some(&b));
        tally.flush(Some(&b), Some(Instant::now()));
        assert_eq!(b.available_at(Instant::now()), 1.0);
    }

    #[test]
    fn tally_without_budget_counts() {
        let tally = Tally::new(None, Instant::now());
        for _ in 0..1000 {
            tally.record(None);
        }
        assert_eq!(tally.total(), 1000);
    }

    #[test]
    fn concurrent_tally_loses_nothing() {
        let b = RetryBudget::builder()
            .ratio(1.0)
            .min_per_second(0)
            .build()
            .unwrap();
        let tally = Tally::new(Some(&b), b.inner.epoch);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        tally.record(Some(&b));
                    }
                });
            }
        });
        assert_eq!(tally.total(), 4000);
    }

    #[test]
    fn striped_tallies_count_every_thread_and_flush_every_stripe() {
        let b = RetryBudget::builder()
            .ratio(1.0)
            .min_per_second(0)
            .build()
            .unwrap();
        let now = b.inner.epoch;
        let tallies = Tallies::new(Some(&b), now, 4);
        assert_eq!(tallies.stripes.len(), 4);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let lane = crate::lane::thread_index();
                    for _ in 0..1010 {
                        tallies.record(lane, Some(&b));
                    }
                });
            }
        });
        assert_eq!(tallies.total(), 4040);
        // Full batches reached the budget as they filled; one flush hands over the rest of
        // every stripe, whichever stripes the threads used.
        tallies.flush(Some(&b), Some(now));
        assert_eq!(b.available_at(now), 4040.0);
        assert_eq!(Tallies::new(None, now, 0).stripes.len(), 1);
    }

    #[test]
    fn refusals_are_aggregated_per_slot() {
        let b = RetryBudget::builder()
            .ratio(0.0)
            .min_per_second(0)
            .build()
            .unwrap();
        let t0 = b.inner.epoch;
        assert_eq!(b.note_refusal(t0), Some(1));
        assert_eq!(b.note_refusal(t0), None);
        assert_eq!(b.note_refusal(t0 + secs(0.5)), None);
        assert_eq!(b.note_refusal(t0 + secs(1.0)), Some(3));
    }

    #[test]
    fn builder_names_fields() {
        assert_eq!(
            RetryBudget::builder()
                .ratio(-1.0)
                .build()
                .unwrap_err()
                .field(),
            "budget.ratio"
        );
        assert_eq!(
            RetryBudget::builder()
                .window(Duration::from_millis(10))
                .build()
                .unwrap_err()
                .field(),
            "budget.window"
        );
        assert_eq!(
            RetryBudget::builder()
                .min_per_second(u32::MAX)
                .build()
                .unwrap_err()
                .field(),
            "budget.min_per_second"
        );
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let b = RetryBudget::builder()
            .ratio(1.0)
            .min_per_second(0)
            .build()
            .unwrap();
        let t0 = b.inner.epoch;
        for _ in 0..1000 {
            b.deposit_at(t0);
        }
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        if b.withdraw_at(t0) {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.load(Ordering::Relaxed), 1000);
    }
}
