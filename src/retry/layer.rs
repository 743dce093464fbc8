use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use tower_layer::Layer;

use super::backoff::{Backoff, FastRng, Rng};
use super::budget::{RetryBudget, Tallies};
use super::classify::DefaultClassifier;
use super::policy::RetryPolicy;
use super::service::Retry;
use super::shared::{Counters, Prototype, Shared};
use crate::error::ConfigError;
use crate::event::EventBus;
use crate::lane::{Lanes, lane_count};
use crate::pressure::PressureLevel;
use crate::pressure::PressureMonitor;
use std::sync::Mutex;

/// Retries failed requests with backoff, a shared budget, server pushback, and awareness of
/// pressure and deadlines. See the [module docs](crate::retry).
///
/// Everything shared (budget, policy, classifier, RNG) is created in
/// [`RetryLayerBuilder::build`], never in [`Layer::layer`], so every clone of the layer and
/// every route of an axum router share one budget.
pub struct RetryLayer<C = DefaultClassifier> {
    pub(crate) shared: Arc<Shared<C>>,
}

impl<C> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.shared.name)
            .field("policy", &self.shared.policy)
            .field("budget", &self.shared.budget)
            .finish()
    }
}

impl RetryLayer {
    /// A builder with the defaults: 3 attempts, exponential backoff 50 ms x2 up to 5 s with
    /// full jitter, the default [`RetryBudget`] (20 %, floor 10/s), no retries at `Critical`,
    /// backoff doubled at `High`, server pushback waited up to 60 s (longer: not retried),
    /// [`DefaultClassifier`].
    pub fn builder(monitor: PressureMonitor) -> RetryLayerBuilder<DefaultClassifier> {
        RetryLayerBuilder {
            monitor,
            name: Arc::from("retry"),
            policy: RetryPolicy::default(),
            budget: BudgetChoice::Default,
            rng: None,
            classifier: DefaultClassifier,
            events: None,
        }
    }

    /// A layer with every default (see [`RetryLayer::builder`]).
    pub fn new(monitor: PressureMonitor) -> Self {
        // The defaults are valid by construction: this cannot fail.
        match Self::builder(monitor.clone()).build() {
            Ok(l) => l,
            Err(_) => unreachable_defaults(monitor),
        }
    }
}

#[cold]
fn unreachable_defaults(monitor: PressureMonitor) -> RetryLayer {
    // Invariant: `RetryPolicy::default()` and `RetryBudget::default()` pass validation (see the
    // `defaults_are_valid` test); this branch only exists to avoid a panic path.
    let budget = RetryBudget::default();
    let lanes = lane_count();
    RetryLayer {
        shared: Arc::new(Shared {
            lanes,
            name: Arc::from("retry"),
            policy: super::settings::LivePolicy::new(RetryPolicy::default()),
            attempt_timeout: None,
            tally: Tallies::new(Some(&budget), Instant::now(), lanes),
            budget: Some(budget),
            events: monitor.events().clone(),
            monitor,
            rng: Box::new(FastRng),
            classifier: DefaultClassifier,
            needs_start: false,
            counters: Counters::default(),
        }),
    }
}

impl<C> RetryLayer<C> {
    /// The layer's name (in events).
    pub fn name(&self) -> &str {
        &self.shared.name
    }
    /// The shared budget, `None` when disabled.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }
    /// The retry rules in force (they change when the layer is reconfigured through its
    /// [`handle`](RetryLayer::handle)).
    pub fn policy(&self) -> Arc<RetryPolicy> {
        self.shared.policy.load_full()
    }
    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.shared.classifier
    }
    /// Cumulative counters of every service this layer built, and the budget's state.
    pub fn stats(&self) -> RetryStats {
        let c = &self.shared.counters;
        let b = self.shared.budget.as_ref();
        // Hand the pending first attempts to the budget, so that `budget_available` is exact.
        self.shared.tally.flush(b, b.map(|_| Instant::now()));
        RetryStats {
            requests: self.shared.tally.total(),
            retries: c.retries.load(Ordering::Relaxed),
            gave_up: c.gave_up.load(Ordering::Relaxed),
            budget_granted: b.map_or(0, RetryBudget::withdrawn),
            budget_refused: b.map_or(0, RetryBudget::refused),
            budget_available: b.map(RetryBudget::available),
        }
    }
}

/// A snapshot of a [`RetryLayer`]'s counters ([`RetryLayer::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct RetryStats {
    /// Requests (first attempts).
    pub requests: u64,
    /// Retry attempts made.
    pub retries: u64,
    /// Requests that ended on a retryable failure because retrying stopped (attempts,
    /// budget, pressure, deadline, pushback).
    pub gave_up: u64,
    /// Retries the budget granted.
    pub budget_granted: u64,
    /// Retries the budget refused.
    pub budget_refused: u64,
    /// Retries the budget would grant now (`None` without a budget).
    pub budget_available: Option<f64>,
}

impl<S: Clone, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    /// The service, with one copy of `inner` per lane (`crate::lane`) for retries to clone
    /// (see [`Retry`]).
    fn layer(&self, inner: S) -> Self::Service {
        let lanes = Lanes::with_local(self.shared.clone(), self.shared.lanes, || {
            Prototype(Mutex::new(inner.clone()))
        });
        Retry {
            inner,
            lanes: Arc::new(lanes),
        }
    }
}

enum BudgetChoice {
    Default,
    Given(RetryBudget),
    None,
}

/// Builder for [`RetryLayer`]; see [`RetryLayer::builder`] for the defaults.
pub struct RetryLayerBuilder<C> {
    monitor: PressureMonitor,
    name: Arc<str>,
    policy: RetryPolicy,
    budget: BudgetChoice,
    rng: Option<Box<dyn Rng>>,
    classifier: C,
    events: Option<EventBus>,
}

impl<C> fmt::Debug for RetryLayerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayerBuilder")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<C> RetryLayerBuilder<C> {
    /// The name used in events (default `"retry"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }
    /// Attempts per request, the first included (default 3; at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.policy.max_attempts = n;
        self
    }
    /// The backoff schedule.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }
    /// A timeout for each attempt; an attempt that takes longer fails with
    /// [`AttemptTimedOut`](super::AttemptTimedOut), which is retried.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.policy.attempt_timeout = Some(timeout);
        self
    }
    /// A bound on the whole request from its first attempt: no wait ends after it.
    pub fn time_bound(mut self, bound: Duration) -> Self {
        self.policy.time_bound = Some(bound);
        self
    }
    /// The longest server pushback (`Retry-After`, `grpc-retry-pushback-ms`) the layer
    /// waits for; default 60 s, at most [`MAX_WAIT`](super::MAX_WAIT). A failure whose
    /// pushback is longer is not retried: it is returned as it came (see the
    /// [module docs](crate::retry#server-pushback)).
    pub fn max_pushback(mut self, max: Duration) -> Self {
        self.policy.max_pushback = max;
        self
    }
    /// No retries at or above this pressure level (default `Critical`).
    pub fn no_retry_at(mut self, level: PressureLevel) -> Self {
        self.policy.no_retry_at = level;
        self
    }
    /// Backoff multiplier at `High` pressure (default 2.0; at least 1.0).
    pub fn stretch_at_high(mut self, factor: f64) -> Self {
        self.policy.stretch_at_high = factor;
        self
    }
    /// Uses `budget` (clones share it: pass one budget to several layers to pool them).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = BudgetChoice::Given(budget);
        self
    }
    /// Disables the budget: only `max_attempts` limits retries. Not recommended.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetChoice::None;
        self
    }
    /// Injects the jitter RNG (tests pass a closure returning fixed values).
    pub fn rng(mut self, rng: impl Rng) -> Self {
        self.rng = Some(Box::new(rng));
        self
    }
    /// Reports to `bus` instead of the monitor's bus.
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.events = Some(bus);
        self
    }
    /// Uses another classifier.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayerBuilder<C2> {
        RetryLayerBuilder {
            monitor: self.monitor,
            name: self.name,
            policy: self.policy,
            budget: self.budget,
            rng: self.rng,
            classifier,
            events: self.events,
        }
    }

    /// Builds the layer and its shared state.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `max_attempts`, `backoff.*`, `attempt_timeout`, `time_bound`,
    /// `max_pushback` (at most [`MAX_WAIT`](super::MAX_WAIT)) or `stretch_at_high`.
    /// `attempt_timeout` and `time_bound` may be as long as `Duration::MAX` (no limit in
    /// practice): their deadlines saturate.
    pub fn build(self) -> Result<RetryLayer<C>, ConfigError> {
        let p = &self.policy;
        if p.max_attempts == 0 {
            return Err(ConfigError::new("max_attempts", 0, "must be at least 1"));
        }
        p.backoff.validate()?;
        if p.attempt_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "attempt_timeout",
                Duration::ZERO,
                "must be positive",
            ));
        }
        if p.time_bound == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "time_bound",
                Duration::ZERO,
                "must be positive",
            ));
        }
        if p.max_pushback > super::MAX_WAIT {
            return Err(ConfigError::new(
                "max_pushback",
                p.max_pushback,
                format!(
                    "must be at most {:?} (retry::MAX_WAIT); a longer server pushback is \
                     returned to the caller, not waited for",
                    super::MAX_WAIT
                ),
            ));
        }
        if !p.stretch_at_high.is_finite() || p.stretch_at_high < 1.0 {
            return Err(ConfigError::new(
                "stretch_at_high",
                p.stretch_at_high,
                "must be a finite number >= 1",
            ));
        }
        let budget = match self.budget {
            BudgetChoice::Default => Some(RetryBudget::default()),
            BudgetChoice::Given(b) => Some(b),
            BudgetChoice::None => None,
        };
        let needs_start = self.policy.time_bound.is_some() || self.policy.attempt_timeout.is_some();
        let attempt_timeout = self.policy.attempt_timeout;
        let lanes = lane_count();
        let tally = Tallies::new(budget.as_ref(), Instant::now(), lanes);
        Ok(RetryLayer {
            shared: Arc::new(Shared {
                lanes,
                tally,
                attempt_timeout,
                name: self.name,
                events: self.events.unwrap_or_else(|| self.monitor.events().clone()),
                monitor: self.monitor,
                policy: super::settings::LivePolicy::new(self.policy),
                budget,
                rng: self.rng.unwrap_or_else(|| Box::new(FastRng)),
                classifier: self.classifier,
                needs_start,
                counters: Counters::default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let (monitor, _) = PressureMonitor::manual();
        assert!(RetryLayer::builder(monitor.clone()).build().is_ok());
        let l = RetryLayer::new(monitor);
        assert_eq!(l.policy().max_attempts(), 3);
        assert!(l.budget().is_some());
    }

    #[test]
    fn build_names_fields() {
        let (m, _) = PressureMonitor::manual();
        let f =
            |b: RetryLayerBuilder<DefaultClassifier>| b.build().unwrap_err().field().to_string();
        assert_eq!(
            f(RetryLayer::builder(m.clone()).max_attempts(0)),
            "max_attempts"
        );
        assert_eq!(
            f(RetryLayer::builder(m.clone()).attempt_timeout(Duration::ZERO)),
            "attempt_timeout"
        );
        assert_eq!(
            f(RetryLayer::builder(m.clone()).time_bound(Duration::ZERO)),
            "time_bound"
        );
        assert_eq!(
            f(RetryLayer::builder(m.clone()).stretch_at_high(0.5)),
            "stretch_at_high"
        );
        assert_eq!(
            f(RetryLayer::builder(m.clone())
                .backoff(Backoff::exponential(Duration::from_millis(1), 0.0))),
            "backoff.multiplier"
        );
        // Issue 21: waits too long to wait are refused instead of panicking a request.
        assert_eq!(
            f(RetryLayer::builder(m.clone()).backoff(Backoff::fixed(Duration::MAX))),
            "backoff.initial"
        );
        assert_eq!(
            f(RetryLayer::builder(m).max_pushback(Duration::MAX)),
            "max_pushback"
        );
    }

    #[test]
    fn clones_share_state() {
        let (m, _) = PressureMonitor::manual();
        let l = RetryLayer::new(m);
        let a: Retry<(), _> = l.layer(());
        let b: Retry<(), _> = l.clone().layer(());
        assert!(std::ptr::eq(&**a.lanes, &**b.lanes));
    }
}
