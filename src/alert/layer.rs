use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;

use super::classify::ErrorsAsFailures;
use super::metrics::{KeyTable, Metrics, MetricsSnapshot, Thresholds};
use super::service::{AlertService, FnKey, NoKey};
use super::shared::Shared;
use crate::error::{ConfigError, check_range};
use crate::event::EventBus;
use crate::lane::{Lanes, lane_count};
use crate::pressure::PressureMonitor;

/// Observes every call of the wrapped service: totals, successes, failures, success rate,
/// latency average, peak and percentiles, in flight; optionally per key. Emits
/// [`ServiceEvent`](crate::event::ServiceEvent)s when error-rate or latency thresholds are
/// crossed. See the [module docs](crate::alert).
///
/// The metrics are created when the layer is built, never in [`Layer::layer`], so every route
/// of an axum router shares them.
#[derive(Clone)]
pub struct AlertLayer<K = NoKey, C = ErrorsAsFailures> {
    pub(crate) shared: Arc<Lanes<Shared>>,
    pub(crate) key: K,
    pub(crate) classify: C,
}

impl<K, C> fmt::Debug for AlertLayer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertLayer")
            .field("name", &self.shared.total.name)
            .finish_non_exhaustive()
    }
}

/// A handle to the metrics of one [`AlertLayer`]: the seed's `get_executor_metrics`.
/// Cheap to clone; reading costs a few hundred relaxed loads and never blocks recording.
#[derive(Clone)]
pub struct ServiceMetrics {
    pub(crate) shared: Arc<Lanes<Shared>>,
}

impl fmt::Debug for ServiceMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceMetrics")
            .field("name", &self.shared.total.name)
            .finish_non_exhaustive()
    }
}

impl ServiceMetrics {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.shared.total.name
    }
    /// The whole service's metrics.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.shared.total.snapshot()
    }
    /// One key's metrics (the seed's `get_executor_metrics("D3-Q3")`).
    pub fn executor_metrics(&self, key: &str) -> Option<MetricsSnapshot> {
        self.shared.keys.find(key).map(Metrics::snapshot)
    }
    /// Every key's metrics.
    pub fn keys(&self) -> Vec<MetricsSnapshot> {
        self.shared.keys.iter().map(Metrics::snapshot).collect()
    }
    /// Calls whose key was not tracked because the key table was full.
    pub fn untracked_keys(&self) -> u64 {
        self.shared
            .keys
            .overflow
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Configures an [`AlertLayer`].
#[derive(Debug, Clone)]
pub struct AlertLayerBuilder {
    name: Arc<str>,
    bus: Option<EventBus>,
    window: Duration,
    min_calls: u64,
    error_rate: Option<f64>,
    latency: Option<(f64, Duration)>,
    max_keys: usize,
}

impl AlertLayer {
    /// A layer named `name` with the defaults: no event bus (metrics only), 10 s windows,
    /// error-rate threshold 50 % over at least 20 calls, no latency threshold, up to 64 keys.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        match Self::builder(name).build() {
            Ok(l) => l,
            // Invariant: the defaults are valid.
            Err(e) => unreachable!("default AlertLayer configuration is valid: {e}"),
        }
    }

    /// Starts configuring a layer named `name`.
    pub fn builder(name: impl Into<Arc<str>>) -> AlertLayerBuilder {
        AlertLayerBuilder {
            name: name.into(),
            bus: None,
            window: Duration::from_secs(10),
            min_calls: 20,
            error_rate: Some(50.0),
            latency: None,
            max_keys: 64,
        }
    }
}

impl<K, C> AlertLayer<K, C> {
    /// The metrics handle (register it with a [`StatusRegistry`](crate::status::StatusRegistry)).
    pub fn metrics(&self) -> ServiceMetrics {
        ServiceMetrics {
            shared: self.shared.clone(),
        }
    }

    /// Keeps per-key metrics, the key read from each request by `f` (an executor id, a
    /// route). Returning `None` records the call in the totals only. At most `max_keys`
    /// distinct keys are tracked.
    ///
    /// ```
    /// use tower_pressure::alert::AlertLayer;
    /// let layer = AlertLayer::new("api").key_by(|req: &http::Request<()>| Some(req.uri().path()));
    /// ```
    pub fn key_by<Req, F>(self, f: F) -> AlertLayer<FnKey<F>, C>
    where
        F: for<'a> Fn(&'a Req) -> Option<&'a str>,
    {
        AlertLayer {
            shared: self.shared,
            key: FnKey(f),
            classify: self.classify,
        }
    }

    /// Uses another key extractor (see [`KeyExtractor`](super::KeyExtractor)).
    pub fn key_with<K2>(self, key: K2) -> AlertLayer<K2, C> {
        AlertLayer {
            shared: self.shared,
            key,
            classify: self.classify,
        }
    }

    /// Classifies outcomes with `classify` (default: `Err` is a failure; see
    /// [`ServerErrorsAsFailures`](super::ServerErrorsAsFailures) for HTTP).
    pub fn classify<C2>(self, classify: C2) -> AlertLayer<K, C2> {
        AlertLayer {
            shared: self.shared,
            key: self.key,
            classify,
        }
    }
}

impl AlertLayerBuilder {
    /// Emits threshold events to `bus`.
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }
    /// Emits threshold events to `monitor`'s bus.
    pub fn monitor(self, monitor: &PressureMonitor) -> Self {
        self.event_bus(monitor.events().clone())
    }
    /// The evaluation window (default 10 s; must be > 0).
    pub fn window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }
    /// Calls a window needs before thresholds are judged (default 20).
    pub fn min_calls(mut self, n: u64) -> Self {
        self.min_calls = n;
        self
    }
    /// Error-rate threshold in percent (default 50; `None` turns it off).
    pub fn error_rate_threshold(mut self, percent: Option<f64>) -> Self {
        self.error_rate = percent;
        self
    }
    /// Latency threshold: the window's `quantile` (e.g. 0.99) above `threshold` fires.
    pub fn latency_threshold(mut self, quantile: f64, threshold: Duration) -> Self {
        self.latency = Some((quantile, threshold));
        self
    }
    /// Distinct keys tracked (default 64; at most 4096).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// Builds the layer and its shared metrics.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `window`, `error_rate_threshold`, `latency_threshold` or
    /// `max_keys`.
    pub fn build(self) -> Result<AlertLayer, ConfigError> {
        if self.window.is_zero() {
            return Err(ConfigError::new("window", self.window, "must be > 0"));
        }
        if let Some(r) = self.error_rate {
            check_range("error_rate_threshold", r, 0.0, 100.0)?;
        }
        if let Some((q, _)) = self.latency {
            check_range("latency_threshold.quantile", q, 0.0, 1.0)?;
        }
        if self.max_keys > 4096 {
            return Err(ConfigError::new(
                "max_keys",
                self.max_keys,
                "must be at most 4096",
            ));
        }
        let window_ns = self.window.as_nanos().min(u64::MAX as u128) as u64;
        let lanes = lane_count();
        Ok(AlertLayer {
            shared: Arc::new(Lanes::new(
                Shared {
                    // Striped: every call of every thread writes the totals.
                    total: Metrics::striped(self.name, None, window_ns, lanes),
                    keys: KeyTable::new(self.max_keys),
                    thresholds: Thresholds {
                        bus: self.bus,
                        window_ns,
                        min_calls: self.min_calls,
                        error_rate: self.error_rate,
                        latency: self.latency,
                    },
                    epoch: Instant::now(),
                },
                lanes,
            )),
            key: NoKey,
            classify: ErrorsAsFailures,
        })
    }
}

impl<S, K: Clone, C: Clone> Layer<S> for AlertLayer<K, C> {
    type Service = AlertService<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AlertService {
            inner,
            shared: self.shared.clone(),
            key: self.key.clone(),
            classify: self.classify.clone(),
        }
    }
}
