//! Reading and steering breakers from outside the request path.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::CircuitOpen;
use super::lane::Breaker;
use super::shared::Shared;
use super::state::{Core, Now};
use crate::event::{CircuitState, EventBus};

/// A snapshot of one breaker's metrics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// The breaker's name.
    pub name: Arc<str>,
    /// Its key, for a per-key breaker.
    pub key: Option<Arc<str>>,
    /// The state (OPEN turns HALF_OPEN on the first call after the wait).
    pub state: CircuitState,
    /// Calls recorded (ignored outcomes and cancelled calls excluded).
    pub calls: u64,
    /// Successful calls.
    pub successes: u64,
    /// Failed calls.
    pub failures: u64,
    /// Slow calls (successful or not).
    pub slow_calls: u64,
    /// Calls rejected without reaching the inner service.
    pub rejected: u64,
    /// Calls in the sliding window now.
    pub window_calls: u64,
    /// Failure rate over the window, in percent.
    pub failure_rate: f64,
    /// Slow-call rate over the window, in percent.
    pub slow_call_rate: f64,
    /// Consecutive failures so far.
    pub consecutive_failures: u32,
    /// How long the breaker has been in its state.
    pub time_in_state: Duration,
    /// When the last failure was recorded.
    pub last_failure: Option<Instant>,
}

/// Reads state and metrics and steers the breakers of one layer; cheap to clone.
///
/// Methods without a key act on the default breaker; `*_key` methods on one key's breaker;
/// `*_all` on every breaker.
///
/// ```
/// # fn main() -> Result<(), tower_pressure::ConfigError> {
/// use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};
/// let layer = CircuitBreakerLayer::builder().name("llm").build()?;
/// let handle = layer.handle();
/// handle.force_open();
/// assert_eq!(handle.state(), CircuitState::ForcedOpen);
/// assert!(handle.can_execute(None).is_err());
/// handle.reset();
/// assert!(handle.can_execute(None).is_ok());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl CircuitBreakerHandle {
    fn now(&self) -> Now {
        Now::lazy(self.shared.epoch)
    }

    fn core(&self, key: Option<&str>) -> Option<&Arc<Breaker>> {
        match key {
            None => Some(&self.shared.default),
            Some(k) => self.shared.registry.as_ref()?.find(k),
        }
    }

    fn all(&self) -> impl Iterator<Item = &Arc<Breaker>> {
        std::iter::once(&self.shared.default)
            .chain(self.shared.registry.iter().flat_map(|r| r.all()))
    }

    fn set(core: &Core, to: CircuitState, now: &mut Now) {
        if to == CircuitState::Closed {
            core.reset(now.get());
        } else {
            core.transition(None, to, now.get(), || "set by operator".into());
        }
    }

    /// The default breaker's state.
    pub fn state(&self) -> CircuitState {
        self.shared.default.state_raw()
    }

    /// The state of `key`'s breaker, if it exists.
    pub fn state_of(&self, key: &str) -> Option<CircuitState> {
        self.core(Some(key)).map(|c| c.state_raw())
    }

    /// The default breaker's metrics.
    pub fn metrics(&self) -> BreakerMetrics {
        self.shared.default.metrics(&mut self.now())
    }

    /// The metrics of `key`'s breaker, if it exists.
    pub fn metrics_of(&self, key: &str) -> Option<BreakerMetrics> {
        self.core(Some(key)).map(|c| c.metrics(&mut self.now()))
    }

    /// The metrics of every breaker, the default one first (allocates).
    pub fn all_metrics(&self) -> Vec<BreakerMetrics> {
        let mut now = self.now();
        self.all().map(|c| c.metrics(&mut now)).collect()
    }

    /// Whether a call (for `key`, or the default breaker) would be admitted now, and why not:
    /// the seed's `can_execute`. Takes no probe slot and changes no state.
    ///
    /// # Errors
    /// The [`CircuitOpen`] a call would get.
    pub fn can_execute(&self, key: Option<&str>) -> Result<(), CircuitOpen> {
        match self.core(key) {
            Some(c) => c.peek(&mut self.now()).map_err(|r| c.error(r)),
            None => {
                let d = &self.shared.default;
                d.peek(&mut self.now()).map_err(|r| d.error(r))
            }
        }
    }

    /// Resets the default breaker: CLOSED, empty window (emits `Reset`).
    pub fn reset(&self) {
        Self::set(&self.shared.default, CircuitState::Closed, &mut self.now());
    }

    /// Forces the default breaker open: every call is rejected until reset.
    pub fn force_open(&self) {
        Self::set(
            &self.shared.default,
            CircuitState::ForcedOpen,
            &mut self.now(),
        );
    }

    /// Disables the default breaker: every call passes, outcomes are still recorded.
    pub fn disable(&self) {
        Self::set(
            &self.shared.default,
            CircuitState::Disabled,
            &mut self.now(),
        );
    }

    /// Puts the default breaker in METRICS_ONLY: outcomes recorded, never opens.
    pub fn metrics_only(&self) {
        Self::set(
            &self.shared.default,
            CircuitState::MetricsOnly,
            &mut self.now(),
        );
    }

    /// Moves `key`'s breaker to `state` (`Closed` resets it); `false` if the key is unknown.
    pub fn set_key(&self, key: &str, state: CircuitState) -> bool {
        match self.core(Some(key)) {
            Some(c) => {
                Self::set(c, state, &mut self.now());
                true
            }
            None => false,
        }
    }

    /// Resets `key`'s breaker (the seed's `reset_circuit_breaker(key)`); `false` if unknown.
    pub fn reset_key(&self, key: &str) -> bool {
        self.set_key(key, CircuitState::Closed)
    }

    /// Moves every breaker to `state` (`Closed` resets them all); returns how many.
    pub fn set_all(&self, state: CircuitState) -> usize {
        let mut now = self.now();
        self.all().map(|c| Self::set(c, state, &mut now)).count()
    }

    /// Resets every breaker (the seed's `reset_circuit_breakers`); returns how many.
    pub fn reset_all(&self) -> usize {
        self.set_all(CircuitState::Closed)
    }

    /// The keys that have their own breaker (allocates).
    pub fn keys(&self) -> Vec<Arc<str>> {
        self.shared
            .registry
            .iter()
            .flat_map(|r| r.all())
            .filter_map(|c| c.key())
            .collect()
    }

    /// The bus the breakers report to.
    pub fn events(&self) -> &EventBus {
        &self.shared.bus
    }
}
