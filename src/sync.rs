//! The synchronisation primitives of the lock-free pieces, behind one facade so that the
//! loom models in `tests/loom.rs` can check them.
//!
//! Normally these are `std`'s. Built with `RUSTFLAGS="--cfg tower_pressure_loom"` they are
//! [loom](https://docs.rs/loom)'s, whose model checker then explores every interleaving of
//! the breaker's state word and half-open slots, the adaptive limiter's admission word, the
//! retry budget and the monitor's sequence lock (see `scripts/loom.sh`). A crate-specific
//! cfg is used rather than the usual `--cfg loom` because tokio reacts to `loom` by dropping
//! its `net` module, which breaks hyper-util. Under the cfg, values built from these types must be created inside
//! `loom::model`, so only the loom test target is meant to be built with it.

#[cfg(not(tower_pressure_loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, fence,
};
#[cfg(not(tower_pressure_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(tower_pressure_loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, fence,
};
#[cfg(tower_pressure_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// A spin-wait hint. Under loom it yields to the model's scheduler, which a spinning thread
/// must do for the model checker to make progress.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(tower_pressure_loom))]
    std::hint::spin_loop();
    #[cfg(tower_pressure_loom)]
    loom::thread::yield_now();
}
