//! Live retry settings: the rules and budget rates a reload may change while the layer
//! serves, swapped without a lock on the request path.
//!
//! The layer's [`RetryPolicy`] is held in an [`ArcSwap`]; the one setting a first attempt
//! needs (whether a request may ever be replayed, i.e. `max_attempts > 1`) is mirrored in an
//! atomic flag read with one `Relaxed` load in `call`, as the layer read a field before. The
//! other rules are read from one snapshot per decision, when an attempt fails (off the
//! success path): a request in flight follows the new `max_attempts`, backoff, pushback cap
//! and pressure rules from its next failure on.
//!
//! The budget's `ratio` and `min_per_second` are atomics inside the shared [`RetryBudget`]:
//! a change keeps the deposits and withdrawals of the window, so a reload neither refills
//! nor empties it; new deposits count at the new ratio and the floor of the current slot is
//! the new one.
//!
//! What a reload cannot change: the name, `attempt_timeout` and `time_bound` (they decide
//! whether a call reads the clock and how its future arms its timer), whether there is a
//! budget, and the budget's window (its slots would be lost). [`RetryHandle::prepare`]
//! refuses them with a [`ConfigError`] naming the field (the name is kept).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use super::budget::RetryBudget;
use super::layer::{RetryLayer, RetryLayerBuilder};
use super::policy::RetryPolicy;
use super::shared::Shared;
use crate::error::ConfigError;

/// The layer's retry rules in force (see the [module docs](self)).
pub(crate) struct LivePolicy {
    cell: ArcSwap<RetryPolicy>,
    replays: AtomicBool,
}

impl std::fmt::Debug for LivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.load().fmt(f)
    }
}

impl LivePolicy {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self {
            replays: AtomicBool::new(policy.max_attempts > 1),
            cell: ArcSwap::from_pointee(policy),
        }
    }

    /// `max_attempts > 1`: whether a request may ever be replayed. `Relaxed`: it publishes
    /// no other memory.
    #[inline]
    pub(crate) fn replays(&self) -> bool {
        self.replays.load(Ordering::Relaxed)
    }

    /// A snapshot of the rules in force.
    #[inline]
    pub(crate) fn load(&self) -> Guard<Arc<RetryPolicy>> {
        self.cell.load()
    }

    pub(crate) fn load_full(&self) -> Arc<RetryPolicy> {
        self.cell.load_full()
    }

    fn store(&self, policy: RetryPolicy) {
        let replays = policy.max_attempts > 1;
        self.cell.store(Arc::new(policy));
        self.replays.store(replays, Ordering::Relaxed);
    }
}

/// A budget's reloadable rates, in the units its hot paths use.
pub(crate) struct BudgetRates {
    /// Milli-tokens deposited per first attempt (`ratio x 1000`).
    deposit: AtomicI64,
    /// Floor allowance per slot, milli-tokens (`min_per_second x slot x 1000`).
    floor_per_slot: AtomicU64,
    ratio: AtomicU64,
    min_per_second: AtomicU32,
}

impl BudgetRates {
    pub(crate) fn new(ratio: f64, min_per_second: u32, slot: Duration) -> Self {
        let r = Self {
            deposit: AtomicI64::new(0),
            floor_per_slot: AtomicU64::new(0),
            ratio: AtomicU64::new(0),
            min_per_second: AtomicU32::new(0),
        };
        r.set(ratio, min_per_second, slot);
        r
    }

    /// Sets both rates. `Relaxed`: each is an independent number; a deposit or withdrawal
    /// racing a reload uses the old or the new value of each.
    pub(crate) fn set(&self, ratio: f64, min_per_second: u32, slot: Duration) {
        let deposit = (ratio * 1000.0).round() as i64;
        let floor = (f64::from(min_per_second) * slot.as_secs_f64() * 1000.0).round() as u64;
        self.deposit.store(deposit, Ordering::Relaxed);
        self.floor_per_slot.store(floor, Ordering::Relaxed);
        self.ratio.store(ratio.to_bits(), Ordering::Relaxed);
        self.min_per_second.store(min_per_second, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn deposit(&self) -> i64 {
        self.deposit.load(Ordering::Relaxed)
    }
    #[inline]
    pub(crate) fn floor_per_slot(&self) -> u64 {
        self.floor_per_slot.load(Ordering::Relaxed)
    }
    pub(crate) fn ratio(&self) -> f64 {
        f64::from_bits(self.ratio.load(Ordering::Relaxed))
    }
    pub(crate) fn min_per_second(&self) -> u32 {
        self.min_per_second.load(Ordering::Relaxed)
    }
}

/// What a [`RetryHandle`] needs of a layer, whatever its classifier.
trait LiveRetry: Send + Sync {
    fn name(&self) -> &str;
    fn policy(&self) -> &LivePolicy;
    fn budget(&self) -> Option<&RetryBudget>;
}

impl<C: Send + Sync> LiveRetry for Shared<C> {
    fn name(&self) -> &str {
        &self.name
    }
    fn policy(&self) -> &LivePolicy {
        &self.policy
    }
    fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }
}

/// Reads and changes a running [`RetryLayer`]'s rules and budget rates (see
/// [`RetryLayer::handle`]); cheap to clone, whatever the layer's classifier.
#[derive(Clone)]
pub struct RetryHandle {
    shared: Arc<dyn LiveRetry>,
}

impl std::fmt::Debug for RetryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryHandle")
            .field("name", &self.shared.name())
            .field("policy", self.shared.policy())
            .finish_non_exhaustive()
    }
}

/// Validated settings for a running retry layer, made by [`RetryHandle::prepare`] and
/// applied, infallibly, by [`RetryHandle::apply`].
#[derive(Debug, Clone)]
pub struct RetryUpdate {
    policy: RetryPolicy,
    /// New `(ratio, min_per_second)` of the budget.
    rates: Option<(f64, u32)>,
}

impl RetryUpdate {
    /// The rules this update applies.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<C: Send + Sync + 'static> RetryLayer<C> {
    /// A handle to change this layer's rules and budget rates while it serves.
    ///
    /// ```
    /// use tower_pressure::{PressureMonitor, retry::RetryLayer};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let layer = RetryLayer::builder(monitor.clone()).max_attempts(2).build()?;
    /// let handle = layer.handle();
    /// handle.reconfigure(RetryLayer::builder(monitor).max_attempts(4))?;
    /// assert_eq!(layer.policy().max_attempts(), 4);
    /// # Ok::<(), tower_pressure::ConfigError>(())
    /// ```
    pub fn handle(&self) -> RetryHandle {
        RetryHandle {
            shared: self.shared.clone(),
        }
    }
}

impl RetryHandle {
    /// The rules in force.
    pub fn policy(&self) -> Arc<RetryPolicy> {
        self.shared.policy().load_full()
    }

    /// The layer's budget (`None` when it has none).
    pub fn budget(&self) -> Option<RetryBudget> {
        self.shared.budget().cloned()
    }

    /// Validates `builder` (with its own `build()` rules) as the layer's new rules
    /// (`max_attempts`, backoff, `max_pushback`, `no_retry_at`, `stretch_at_high`) and budget
    /// rates, without applying anything. The builder's name, classifier, RNG and event bus
    /// are not used. Its budget gives the new `ratio` and `min_per_second` (the default
    /// budget when none was set).
    ///
    /// Applied, the rules take effect at once for every service of the layer: a request in
    /// flight keeps its attempt count and follows the new rules from its next failure. The
    /// budget keeps its balance: new deposits count at the new ratio (first attempts
    /// counted but not yet handed to the budget included), and the current slot's floor is
    /// the new one.
    ///
    /// # Errors
    /// The builder's [`ConfigError`]; `attempt_timeout`, `time_bound`, `budget` (added or
    /// removed) or `budget.window` when they differ from the running layer's.
    pub fn prepare<C2>(&self, builder: RetryLayerBuilder<C2>) -> Result<RetryUpdate, ConfigError> {
        let layer = builder.build()?;
        let new = &*layer.shared;
        let policy = new.policy.load_full();
        let current = self.shared.policy().load_full();
        let fixed = |field: &str, a: Option<Duration>, b: Option<Duration>| {
            if a == b {
                Ok(())
            } else {
                Err(ConfigError::new(
                    field,
                    format!("{a:?}"),
                    format!("cannot change while serving (the running layer has {b:?})"),
                ))
            }
        };
        fixed(
            "attempt_timeout",
            policy.attempt_timeout,
            current.attempt_timeout,
        )?;
        fixed("time_bound", policy.time_bound, current.time_bound)?;
        let rates = match (new.budget.as_ref(), self.shared.budget()) {
            (None, None) => None,
            (Some(b), Some(cur)) => {
                if b.window() != cur.window() {
                    return Err(ConfigError::new(
                        "budget.window",
                        b.window(),
                        format!(
                            "cannot change while serving (the running budget's window is {:?})",
                            cur.window()
                        ),
                    ));
                }
                Some((b.ratio(), b.min_per_second()))
            }
            (b, _) => {
                return Err(ConfigError::new(
                    "budget",
                    if b.is_some() { "a budget" } else { "none" },
                    "cannot be added or removed while serving",
                ));
            }
        };
        Ok(RetryUpdate {
            policy: (*policy).clone(),
            rates,
        })
    }

    /// Applies prepared settings: the rules at once for every service of the layer, the
    /// rates to its budget (shared with any layer pooling it). Requests in flight keep their
    /// attempt count; the budget keeps its balance.
    pub fn apply(&self, update: RetryUpdate) {
        self.shared.policy().store(update.policy);
        if let (Some(b), Some((ratio, min))) = (self.shared.budget(), update.rates) {
            b.set_rates(ratio, min);
        }
    }

    /// [`prepare`](Self::prepare) then [`apply`](Self::apply).
    ///
    /// # Errors
    /// As [`prepare`](Self::prepare); nothing is applied then.
    pub fn reconfigure<C2>(&self, builder: RetryLayerBuilder<C2>) -> Result<(), ConfigError> {
        let update = self.prepare(builder)?;
        self.apply(update);
        Ok(())
    }
}
