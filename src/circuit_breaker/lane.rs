//! Lanes: how threads hammering one breaker avoid writing to the same cache lines.
//!
//! On two cores, a read-modify-write on a cache line that another core wrote last costs a
//! line transfer (tens of nanoseconds), several times the cost of the breaker's whole
//! closed-state path. So the closed-state success path writes nothing that every thread
//! shares:
//!
//! * the permit's reference count: a permit holds an `Arc` of its thread's [`Lane`], a small
//!   allocation of its own (128-byte aligned, so its reference counts share no line with
//!   another lane's), rather than an `Arc` of the breaker's [`Core`];
//! * the cumulative call counter: one [`Stripe`] per lane inside the core, summed when the
//!   metrics are read (so the totals stay exact);
//! * the count window and the consecutive-failure counter are only read while the window is
//!   full of successes and no failure is pending (see [`super::window`] and
//!   [`Core::on_result`]).
//!
//! A thread's lane is `thread index & (lanes - 1)`, the thread index being handed out in
//! order on a thread's first call (a process-wide counter). Lanes are a power of two, the
//! machine's parallelism rounded up and capped at [`MAX_LANES`]. Two threads that share a
//! lane are still correct (every lane operation is atomic); they only contend again. Which
//! lane a call uses never changes what the breaker decides.

use std::cell::Cell;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::state::Core;

/// The most lanes a breaker gets (memory per breaker: two 128-byte blocks per lane).
pub(crate) const MAX_LANES: usize = 8;

/// Hands out thread indices. A plain `std` atomic on purpose (not the loom facade): it only
/// spreads threads over lanes and orders nothing, so it is not part of any modelled protocol.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's index (0 while thread-locals are being torn down).
#[inline]
pub(crate) fn thread_index() -> usize {
    THREAD
        .try_with(|t| {
            let v = t.get();
            if v != usize::MAX {
                return v;
            }
            // Relaxed: a counter, nothing is published through it.
            let v = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            t.set(v);
            v
        })
        .unwrap_or(0)
}

/// The number of lanes for breakers built on this machine: a power of two in
/// `1..=MAX_LANES`.
pub(crate) fn lane_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .next_power_of_two()
        .min(MAX_LANES)
}

/// A value alone in its cache lines (128 bytes: adjacent-line prefetchers pair lines).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One lane's share of a breaker's cumulative counters, alone in its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Stripe {
    /// Calls recorded through this lane (summed into the metrics' `calls`).
    pub(crate) calls: crate::sync::AtomicU64,
}

/// What a [`Permit`](super::Permit) holds: the breaker's core, reached through an `Arc`
/// whose reference counts only this lane's threads touch.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Lane {
    core: Arc<Core>,
}

impl Deref for Lane {
    type Target = Core;

    #[inline]
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// One breaker: its core and its lanes. Dereferences to the [`Core`].
#[derive(Debug)]
pub(crate) struct Breaker {
    core: Arc<Core>,
    /// Length a power of two (`Core::lanes`).
    lanes: Box<[Arc<Lane>]>,
    /// Lane 0 again, so that picking a lane needs no bounds-check panic path.
    first: Arc<Lane>,
}

impl Breaker {
    pub(crate) fn new(core: Core) -> Self {
        let core = Arc::new(core);
        let first = Arc::new(Lane { core: core.clone() });
        let lanes = std::iter::once(first.clone())
            .chain((1..core.lanes()).map(|_| Arc::new(Lane { core: core.clone() })))
            .collect();
        Self { core, lanes, first }
    }

    /// The calling thread's lane.
    #[inline]
    pub(crate) fn lane(&self) -> Arc<Lane> {
        // The length is a power of two >= 1, so the masked index is always in bounds.
        let i = thread_index() & self.lanes.len().wrapping_sub(1);
        self.lanes.get(i).unwrap_or(&self.first).clone()
    }
}

impl Deref for Breaker {
    type Target = Core;

    #[inline]
    fn deref(&self) -> &Core {
        &self.core
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_count_is_a_power_of_two_in_range() {
        let n = lane_count();
        assert!(n.is_power_of_two() && n <= MAX_LANES);
    }

    #[test]
    fn a_thread_keeps_its_index_and_threads_differ() {
        let a = thread_index();
        assert_eq!(a, thread_index());
        let b = std::thread::spawn(thread_index).join().expect("thread");
        assert_ne!(a, b);
    }
}
