//! Steering a breaker from a background signal (active health checks, provider limits).
//!
//! Crate-internal: [`crate::health`] holds an unhealthy dependency's breaker open and
//! releases it to HALF_OPEN when the dependency passes its checks again;
//! `crate::provider_limits` opens a provider's breaker until its budget resets. Both act
//! through these methods so that the breaker's own rules (probes, generations, events) stay
//! the only way its state moves.

use std::sync::Arc;
use std::time::Duration;

use super::handle::CircuitBreakerHandle;
use super::lane::Breaker;
use super::state::Now;
use crate::event::CircuitState;

impl CircuitBreakerHandle {
    /// The breaker of `key` (`None`: the default one), created if the registry has room.
    /// `None` when the registry is full or the layer has no registry: a hold must never fall
    /// back to the default breaker, which would shut out every other key.
    fn breaker_for(&self, key: Option<&str>, now: &mut Now) -> Option<&Arc<Breaker>> {
        match key {
            None => Some(&self.shared.default),
            Some(k) => self
                .shared
                .registry
                .as_ref()?
                .get(k, now, |k| self.shared.make_breaker(Some(k))),
        }
    }

    /// The state of `key`'s breaker (`None`: the default), without creating it.
    pub(crate) fn peek_state(&self, key: Option<&str>) -> Option<CircuitState> {
        match key {
            None => Some(self.state()),
            Some(k) => self.state_of(k),
        }
    }

    /// Moves the breaker to FORCED_OPEN with `reason` (creating the key's breaker if needed).
    /// Returns `false` when there is no breaker for the key (registry full).
    pub(crate) fn hold_open(&self, key: Option<&str>, reason: &str) -> bool {
        let mut now = Now::lazy(self.shared.epoch);
        let Some(b) = self.breaker_for(key, &mut now) else {
            return false;
        };
        if b.state_raw() != CircuitState::ForcedOpen {
            let t = now.get();
            b.transition(None, CircuitState::ForcedOpen, t, || reason.into());
        }
        true
    }

    /// Ends a hold: a FORCED_OPEN breaker moves to HALF_OPEN, so its probes decide as usual.
    /// A breaker in any other state is left alone. Returns whether it moved.
    pub(crate) fn release_hold(&self, key: Option<&str>, reason: &str) -> bool {
        let mut now = Now::lazy(self.shared.epoch);
        let b = match key {
            None => &self.shared.default,
            Some(k) => match self.shared.registry.as_ref().and_then(|r| r.find(k)) {
                Some(b) => b,
                None => return false,
            },
        };
        if b.state_raw() != CircuitState::ForcedOpen {
            return false;
        }
        let t = now.get();
        b.transition(None, CircuitState::HalfOpen, t, || reason.into())
    }

    /// Opens the breaker (OPEN, not FORCED_OPEN) for `wait` (instead of its configured wait):
    /// after it the first call
    /// moves it to HALF_OPEN as after any trip. A breaker already OPEN or FORCED_OPEN, or in an
    /// operator state (DISABLED, METRICS_ONLY), is left alone. Returns whether it moved.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn open_for(&self, key: Option<&str>, wait: Duration, reason: &str) -> bool {
        let mut now = Now::lazy(self.shared.epoch);
        let Some(b) = self.breaker_for(key, &mut now) else {
            return false;
        };
        match b.state_raw() {
            CircuitState::Closed | CircuitState::HalfOpen => {}
            _ => return false,
        }
        let t = now.get();
        let moved = b.transition(None, CircuitState::Open, t, || reason.into());
        if moved {
            let until = t.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
            b.set_open_until(until);
        }
        moved
    }
}
