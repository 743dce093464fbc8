use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;

use super::classify::ErrorsAsFailures;
use super::config::{BreakerConfig, CircuitBreakerBuilder};
use super::handle::CircuitBreakerHandle;
use super::lane::{breaker, lane_count};
use super::registry::{NoKey, Registry};
use super::service::CircuitBreaker;
use super::shared::Shared;
use super::state::Core;
use crate::event::EventBus;
use crate::pressure::PressureMonitor;

/// Wraps a service in a circuit breaker. See the [module docs](crate::circuit_breaker).
///
/// The breakers live in an `Arc` created by [`CircuitBreakerBuilder::build`], never in
/// [`Layer::layer`]: every service the layer wraps (every route of an axum router) shares
/// them.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = ErrorsAsFailures, K = NoKey> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
    pub(crate) key: K,
}

impl CircuitBreakerLayer {
    /// Starts configuring a layer.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
    }

    pub(crate) fn from_parts(
        cfg: BreakerConfig,
        monitor: Option<PressureMonitor>,
        bus: EventBus,
        max_keys: usize,
        idle: Duration,
    ) -> Self {
        let cfg = Arc::new(cfg);
        let live = Arc::new(super::settings::Live::new(cfg.clone()));
        let epoch = Instant::now();
        let lanes = lane_count();
        let default = Arc::new(breaker(Core::new(
            live.clone(),
            None,
            bus.clone(),
            monitor.clone(),
            epoch,
            lanes,
        )));
        Self {
            shared: Arc::new(Shared {
                cfg,
                live,
                default,
                registry: None,
                bus,
                monitor,
                epoch,
                max_keys,
                idle,
                lanes,
            }),
            classifier: ErrorsAsFailures,
            key: NoKey,
        }
    }
}

impl<C, K> CircuitBreakerLayer<C, K> {
    /// Uses `classifier` to decide what counts as a failure (a [`Classify`](super::Classify),
    /// a closure `Fn(&Result<Res, E>) -> Outcome`, or a [`Complete`](super::Complete)).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2, K> {
        CircuitBreakerLayer {
            shared: self.shared,
            classifier,
            key: self.key,
        }
    }

    /// Gives every key returned by `extractor` its own breaker, in a registry bounded by
    /// the builder's `max_keys` and `idle_timeout`. Call this while building (it creates the
    /// registry); calls with no key use the default breaker.
    pub fn per_key<K2>(self, extractor: K2) -> CircuitBreakerLayer<C, K2> {
        let s = &*self.shared;
        let shared = Arc::new(Shared {
            cfg: s.cfg.clone(),
            live: s.live.clone(),
            default: s.default.clone(),
            registry: Some(Registry::new(s.max_keys, s.idle)),
            bus: s.bus.clone(),
            monitor: s.monitor.clone(),
            epoch: s.epoch,
            max_keys: s.max_keys,
            idle: s.idle,
            lanes: s.lanes,
        });
        CircuitBreakerLayer {
            shared,
            classifier: self.classifier,
            key: extractor,
        }
    }

    /// A handle to read state and metrics and to reset or force the breakers.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S, C: Clone, K: Clone> Layer<S> for CircuitBreakerLayer<C, K> {
    type Service = CircuitBreaker<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            key: self.key.clone(),
        }
    }
}
