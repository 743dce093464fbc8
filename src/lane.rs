//! Lanes: how threads hammering one layer avoid writing to the same cache lines.
//!
//! On two cores, a read-modify-write on a cache line that another core wrote last costs a
//! line transfer (tens of nanoseconds, 100 and more on the 2-core VMs we measure on), several
//! times the cost of a layer's whole success path. So the layers that count every call keep
//! what every call writes per lane:
//!
//! * the reference count a response future holds: an `Arc` of its thread's [`Lane`], a small
//!   allocation of its own (128-byte aligned, so its reference counts share no line with
//!   another lane's), rather than an `Arc` of the layer's shared state;
//! * cumulative counters: one stripe per lane ([`Striped`]), picked with the calling
//!   thread's [`thread_index`] and summed when read (so the totals stay exact).
//!
//! A thread's lane is `thread index & (lanes - 1)`, the thread index being handed out in
//! order on a thread's first call (a process-wide counter). Lanes are a power of two, the
//! machine's parallelism rounded up and capped at [`MAX_LANES`]. Two threads that share a
//! lane are still correct (every lane operation is atomic); they only contend again. Which
//! lane a call uses never changes what a layer decides.
//!
//! Used by the circuit breaker (`circuit_breaker/lane.rs`), the alert layer's service totals
//! and the retry layer's first-attempt tally.

use std::cell::Cell;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most lanes a layer gets.
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

/// The number of lanes for layers built on this machine: a power of two in
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

/// One value per lane, each alone in its cache lines: a power of two of them, at least
/// one. [`get`](Self::get) picks a thread index's value; readers iterate and sum.
#[derive(Debug)]
pub(crate) struct Striped<T> {
    items: Box<[Padded<T>]>,
    /// `items.len() - 1`.
    mask: usize,
}

impl<T> Striped<T> {
    /// `n` values (rounded up to a power of two, at least 1), each from `make`.
    pub(crate) fn new(n: usize, mut make: impl FnMut() -> T) -> Self {
        let n = n.max(1).next_power_of_two();
        Self {
            items: (0..n).map(|_| Padded(make())).collect(),
            mask: n - 1,
        }
    }

    /// The value of thread index `i` ([`thread_index`]).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &T {
        // Invariant (`new`): `items.len() == mask + 1 >= 1`, so the masked index is always
        // in bounds.
        &self.items[i & self.mask]
    }

    /// How many values.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Every value, in lane order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|p| &p.0)
    }
}

/// What a response future holds: the layer's shared state, reached through an `Arc` whose
/// reference counts only this lane's threads touch, and the lane's own `X` (nothing for
/// most layers; the retry layer keeps a copy of its inner service here).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Lane<T, X = ()> {
    shared: Arc<T>,
    local: X,
}

impl<T, X> Lane<T, X> {
    /// This lane's own value.
    #[inline]
    pub(crate) fn local(&self) -> &X {
        &self.local
    }
}

impl<T, X> Deref for Lane<T, X> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.shared
    }
}

/// A layer's shared state and its lanes. Dereferences to the state.
#[derive(Debug)]
pub(crate) struct Lanes<T, X = ()> {
    shared: Arc<T>,
    lanes: Striped<Arc<Lane<T, X>>>,
}

impl<T> Lanes<T> {
    /// `shared` with `lanes` lanes (rounded up to a power of two, at least 1).
    pub(crate) fn new(shared: T, lanes: usize) -> Self {
        Self::with_local(Arc::new(shared), lanes, || ())
    }
}

impl<T, X> Lanes<T, X> {
    /// `shared` with `lanes` lanes (rounded up to a power of two, at least 1), each with its
    /// own value from `local`.
    pub(crate) fn with_local(shared: Arc<T>, lanes: usize, mut local: impl FnMut() -> X) -> Self {
        let lanes = Striped::new(lanes, || {
            Arc::new(Lane {
                shared: shared.clone(),
                local: local(),
            })
        });
        Self { shared, lanes }
    }

    /// The calling thread's lane.
    #[inline]
    pub(crate) fn lane(&self) -> Arc<Lane<T, X>> {
        self.lane_at(thread_index())
    }

    /// The lane of thread index `i` ([`thread_index`]).
    #[inline]
    pub(crate) fn lane_at(&self, i: usize) -> Arc<Lane<T, X>> {
        self.lanes.get(i).clone()
    }
}

impl<T, X> Deref for Lanes<T, X> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.shared
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

    #[test]
    fn lanes_are_a_power_of_two_and_share_one_state() {
        let l = Lanes::new(7u8, 3);
        assert_eq!(l.lanes.len(), 4);
        assert_eq!(*l, 7);
        assert_eq!(**l.lane(), 7);
        let other = std::thread::spawn(move || {
            let a = l.lane();
            (Arc::ptr_eq(&a.shared, &l.shared), **a)
        })
        .join()
        .expect("thread");
        assert_eq!(other, (true, 7));
        assert_eq!(Lanes::new((), 0).lanes.len(), 1);
    }

    #[test]
    fn striped_masks_any_thread_index() {
        let s = Striped::new(3, || 0u8);
        assert_eq!(s.len(), 4);
        for i in [0, 3, 4, 7, usize::MAX] {
            assert!(std::ptr::eq(
                s.get(i),
                s.iter().nth(i & 3).expect("in range")
            ));
        }
        assert_eq!(Striped::new(0, || ()).len(), 1);
    }
}
