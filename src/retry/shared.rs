//! The state a [`RetryLayer`](super::RetryLayer) shares with every service it builds
//! (policy, budget, classifier, counters) and the inner service's prototype copy a lane
//! clones for retries. Their own module so imports run one way: `layer.rs` -> `service.rs`
//! -> `future.rs`, each using this.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use super::backoff::Rng;
use super::budget::{RetryBudget, Tallies};
use crate::event::EventBus;
use crate::pressure::PressureMonitor;

pub(crate) struct Shared<C> {
    pub(crate) name: Arc<str>,
    /// The rules in force (reloadable, `super::settings`).
    pub(crate) policy: super::settings::LivePolicy,
    /// The per-attempt timeout (fixed when the layer is built).
    pub(crate) attempt_timeout: Option<std::time::Duration>,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) monitor: PressureMonitor,
    pub(crate) events: EventBus,
    pub(crate) rng: Box<dyn Rng>,
    pub(crate) classifier: C,
    /// Whether `call` must read the clock (a total time bound or a per-attempt timeout is
    /// set).
    pub(crate) needs_start: bool,
    /// First attempts, carried to the budget in batches (one atomic add per request).
    pub(crate) tally: Tallies,
    /// How many lanes each service this layer builds gets (`crate::lane`).
    pub(crate) lanes: usize,
    /// Cumulative counters for status pages.
    pub(crate) counters: Counters,
}

/// Cumulative counters of a layer. Every update is a `Relaxed` `fetch_add`: they are
/// statistics, publish no other memory, and are read as independent snapshots, so no
/// ordering with anything else is needed. They move only when an attempt fails; first
/// attempts are counted by the [`Tally`] in [`Shared`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Retry attempts started.
    pub(crate) retries: AtomicU64,
    /// Requests that ended on a retryable failure because retrying was stopped (attempts,
    /// budget, pressure, deadline or pushback).
    pub(crate) gave_up: AtomicU64,
}

/// The copy of the inner service a lane's retries clone (see [`Retry`](super::Retry)). Behind a mutex so
/// that services which are `Send` but not `Sync` (a `BoxCloneService`, most boxed clients)
/// can be shared by the lane; it is only locked for a retry.
pub(crate) struct Prototype<S>(pub(crate) Mutex<S>);

impl<S: Clone> Prototype<S> {
    /// A clone of the copy.
    #[cold]
    pub(crate) fn get(&self) -> S {
        // A panic in another thread's `clone` poisons the lock; the copy itself is intact
        // (`clone` takes it by reference), so use it anyway.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<S> fmt::Debug for Prototype<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Prototype")
    }
}
