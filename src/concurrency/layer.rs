use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::limit::{Gradient2, LimitAlgorithm};
use super::mode::ResponseEnd;
use super::partition::Shares;
use super::policy::PressurePolicy;
use super::service::AdaptiveConcurrency;
use super::state::{AdaptiveConcurrencyHandle, Config, Shared};
use super::window::WindowConfig;
use crate::error::ConfigError;
use crate::event::EventBus;
use crate::pressure::PressureMonitor;
use crate::priority::ExtensionPriority;

/// Applies a learned, pressure-scaled concurrency limit with priority shedding. See the
/// [module docs](crate::concurrency).
///
/// The shared limiter is created when the layer is built, never in [`Layer::layer`], so
/// every route of an axum router (which calls `layer` per route) shares one limiter.
#[derive(Debug, Clone)]
pub struct AdaptiveConcurrencyLayer<C = ExtensionPriority, M = ResponseEnd> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
    pub(crate) _mode: M,
}

impl AdaptiveConcurrencyLayer {
    /// Gradient2 with its defaults, the default pressure policy, priorities from the
    /// [`Priority`](crate::Priority) request extension.
    pub fn new(monitor: PressureMonitor) -> Self {
        match Self::builder(monitor).build() {
            Ok(l) => l,
            // Invariant: the defaults are valid (checked by a unit test).
            Err(e) => unreachable!("default adaptive concurrency config is valid: {e}"),
        }
    }

    /// Starts configuring a layer.
    pub fn builder(monitor: PressureMonitor) -> AdaptiveConcurrencyBuilder {
        AdaptiveConcurrencyBuilder {
            bus: monitor.events().clone(),
            monitor,
            classifier: ExtensionPriority::default(),
            algorithm: None,
            name: Arc::from("adaptive_concurrency"),
            policy: PressurePolicy::default(),
            shares: Shares::none(),
            bbr_check: true,
            window: WindowConfig::default(),
            errors_as_drops: true,
            retry_after: Duration::from_secs(1),
            status: 503,
            event_interval: Duration::from_secs(1),
            queue: None,
        }
    }
}

impl<C, M> AdaptiveConcurrencyLayer<C, M> {
    /// A handle on the shared limiter: limit, in-flight per class, shed counts, history.
    pub fn handle(&self) -> AdaptiveConcurrencyHandle {
        AdaptiveConcurrencyHandle {
            shared: self.shared.clone(),
        }
    }

    /// Holds each slot until the end of the HTTP response *body* instead of the response
    /// head, and measures latency to it (streamed responses keep working after the head).
    #[cfg(feature = "http")]
    pub fn hold_until_body_end(self) -> AdaptiveConcurrencyLayer<C, super::mode::BodyEnd> {
        AdaptiveConcurrencyLayer {
            shared: self.shared,
            classifier: self.classifier,
            _mode: super::mode::BodyEnd,
        }
    }
}

impl<S, C: Clone, M: Clone> Layer<S> for AdaptiveConcurrencyLayer<C, M> {
    type Service = AdaptiveConcurrency<S, C, M>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveConcurrency {
            inner,
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            _mode: self._mode.clone(),
        }
    }
}

/// Builder of [`AdaptiveConcurrencyLayer`].
#[derive(Debug)]
pub struct AdaptiveConcurrencyBuilder<C = ExtensionPriority> {
    monitor: PressureMonitor,
    bus: EventBus,
    classifier: C,
    algorithm: Option<Box<dyn LimitAlgorithm>>,
    name: Arc<str>,
    policy: PressurePolicy,
    shares: Shares,
    bbr_check: bool,
    window: WindowConfig,
    errors_as_drops: bool,
    retry_after: Duration,
    status: u16,
    event_interval: Duration,
    queue: Option<(usize, Duration)>,
}

impl<C> AdaptiveConcurrencyBuilder<C> {
    /// How requests are classified (default: the `Priority` extension, else `Normal`). For
    /// example [`HeaderPriority`](crate::priority::HeaderPriority) for `x-priority`,
    /// [`KeyedPriority`](crate::priority::KeyedPriority) for executor ids, or a closure.
    pub fn classifier<C2>(self, classifier: C2) -> AdaptiveConcurrencyBuilder<C2> {
        AdaptiveConcurrencyBuilder {
            monitor: self.monitor,
            bus: self.bus,
            classifier,
            algorithm: self.algorithm,
            name: self.name,
            policy: self.policy,
            shares: self.shares,
            bbr_check: self.bbr_check,
            window: self.window,
            errors_as_drops: self.errors_as_drops,
            retry_after: self.retry_after,
            status: self.status,
            event_interval: self.event_interval,
            queue: self.queue,
        }
    }

    /// The limit algorithm (default [`Gradient2`] with its defaults).
    pub fn algorithm(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.algorithm = Some(Box::new(algorithm));
        self
    }

    /// The name used in events (default `"adaptive_concurrency"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Shedding per class and limit scaling per pressure level.
    pub fn policy(mut self, policy: PressurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Guaranteed shares per class (default none).
    pub fn shares(mut self, shares: Shares) -> Self {
        self.shares = shares;
        self
    }

    /// Applies CPU pressure only when our own in-flight work exceeds max throughput x min
    /// latency (Sentinel's BBR check; default on).
    pub fn bbr_check(mut self, on: bool) -> Self {
        self.bbr_check = on;
        self
    }

    /// When sample windows close.
    pub fn window(mut self, window: WindowConfig) -> Self {
        self.window = window;
        self
    }

    /// Whether inner-service errors count as drops (congestion signals; default on).
    pub fn errors_as_drops(mut self, on: bool) -> Self {
        self.errors_as_drops = on;
        self
    }

    /// The `retry_after` of refusals (default 1 s).
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d;
        self
    }

    /// Refusals map to `429 Too Many Requests` instead of `503 Service Unavailable`.
    pub fn too_many_requests(mut self) -> Self {
        self.status = 429;
        self
    }

    /// Lets up to `capacity` Critical requests wait up to `timeout` for a slot when the
    /// limit is reached; freed slots go to the freshest waiter first (LIFO). Off by default.
    pub fn critical_queue(mut self, capacity: usize, timeout: Duration) -> Self {
        self.queue = Some((capacity, timeout));
        self
    }

    /// The least time between two `LimitChanged` events and between two `Shed` reports
    /// (default 1 s).
    pub fn event_interval(mut self, d: Duration) -> Self {
        self.event_interval = d;
        self
    }

    /// Reports to `bus` instead of the monitor's bus.
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.bus = bus;
        self
    }

    /// Builds the layer and its shared limiter.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `critical_queue.capacity` (0 or above 1024),
    /// `critical_queue.timeout` (zero or above 10 s: the queue is meant to be short) or
    /// `retry_after` (zero).
    pub fn build(self) -> Result<AdaptiveConcurrencyLayer<C>, ConfigError> {
        if let Some((cap, timeout)) = self.queue {
            if cap == 0 || cap > 1024 {
                return Err(ConfigError::new(
                    "critical_queue.capacity",
                    cap,
                    "must be within 1..=1024",
                ));
            }
            if timeout.is_zero() || timeout > Duration::from_secs(10) {
                return Err(ConfigError::new(
                    "critical_queue.timeout",
                    timeout,
                    "must be within (0, 10 s]",
                ));
            }
        }
        if self.retry_after.is_zero() {
            return Err(ConfigError::new(
                "retry_after",
                self.retry_after,
                "must be positive",
            ));
        }
        let algorithm = self
            .algorithm
            .unwrap_or_else(|| Box::new(Gradient2::default()));
        let shared = Shared::new(
            Config {
                name: self.name,
                policy: self.policy,
                shares: self.shares,
                bbr_check: self.bbr_check,
                window: self.window,
                errors_as_drops: self.errors_as_drops,
                retry_after: self.retry_after,
                status: self.status,
                event_interval: self.event_interval,
                queue: self.queue,
            },
            algorithm,
            self.monitor,
            self.bus,
        );
        Ok(AdaptiveConcurrencyLayer {
            shared,
            classifier: self.classifier,
            _mode: ResponseEnd,
        })
    }
}
