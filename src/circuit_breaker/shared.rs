//! The state a [`CircuitBreakerLayer`](super::CircuitBreakerLayer) shares with every service
//! it builds: the breakers (default and per key), the configuration, the event bus. Its own
//! module so imports run one way: `layer.rs` -> `service.rs` -> `future.rs`, each using this.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use super::lane::{Breaker, breaker};
use super::registry::Registry;
use super::state::{Core, Now};
use crate::event::EventBus;
use crate::pressure::PressureMonitor;

#[derive(Debug)]
pub(crate) struct Shared {
    /// The settings as built: only the fixed parts (name, window) are read from here.
    pub(crate) cfg: Arc<BreakerConfig>,
    /// The settings in force, shared by every breaker of the layer (reloadable).
    pub(crate) live: Arc<super::settings::Live>,
    pub(crate) default: Arc<Breaker>,
    pub(crate) registry: Option<Registry>,
    pub(crate) bus: EventBus,
    pub(crate) monitor: Option<PressureMonitor>,
    pub(crate) epoch: Instant,
    pub(crate) max_keys: usize,
    pub(crate) idle: Duration,
    /// Lanes per breaker ([`lane_count`], read once when the layer is built).
    pub(crate) lanes: usize,
}

impl Shared {
    pub(crate) fn make_breaker(&self, key: Option<Arc<str>>) -> Breaker {
        breaker(Core::new(
            self.live.clone(),
            key,
            self.bus.clone(),
            self.monitor.clone(),
            self.epoch,
            self.lanes,
        ))
    }

    /// The breaker for `key` (`None`: the default breaker).
    #[inline]
    pub(crate) fn breaker(&self, key: Option<&str>, now: &mut Now) -> &Arc<Breaker> {
        match (key, &self.registry) {
            (Some(k), Some(r)) => r
                .get(k, now, |k| self.make_breaker(Some(k)))
                .unwrap_or(&self.default),
            _ => &self.default,
        }
    }
}
