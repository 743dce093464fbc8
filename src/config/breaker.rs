//! `[outbound.breaker]`: the circuit breaker, including per-key breakers.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::error::{ConfigFileError, ErrorKind};
use super::units::{ByteSize, HumanDuration, Percent};
use crate::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer, KeyExtractor};
use crate::pressure::PressureLevel;
use crate::pressure::PressureMonitor;

/// How breakers are keyed (`per_key`).
///
/// ```
/// use tower_pressure::config::{Config, PerKey};
/// let c = Config::from_toml("[outbound.breaker]\nper_key = \"authority\"\n")?;
/// assert_eq!(c.outbound.breaker.per_key, PerKey::Authority);
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PerKey {
    /// One breaker for every request (the default).
    #[default]
    None,
    /// One breaker per `host:port` of the request URI (a [`RouteKey`](crate::route::RouteKey)
    /// extension wins).
    Authority,
    /// One breaker per [`RouteKey`](crate::route::RouteKey) extension.
    Route,
    /// One breaker per value of the header named by `key_header`.
    Header,
}

/// The key extractor a [`BreakerConfig`] builds: what [`PerKey`] names, for
/// `http::Request`s.
///
/// ```
/// use tower_pressure::circuit_breaker::KeyExtractor;
/// use tower_pressure::config::BreakerKey;
/// let req = http::Request::get("http://api.example:8080/x").body(()).unwrap();
/// assert_eq!(BreakerKey::authority().key(&req).as_deref(), Some("api.example:8080"));
/// ```
#[derive(Debug, Clone)]
pub struct BreakerKey(KeyKind);

#[derive(Debug, Clone)]
enum KeyKind {
    None,
    Authority,
    Route,
    Header(http::HeaderName),
}

impl BreakerKey {
    /// Keyed by the request's authority.
    pub fn authority() -> Self {
        Self(KeyKind::Authority)
    }
}

impl<B> KeyExtractor<http::Request<B>> for BreakerKey {
    fn key<'a>(&self, req: &'a http::Request<B>) -> Option<Cow<'a, str>> {
        let route = || {
            req.extensions()
                .get::<crate::route::RouteKey>()
                .map(|k| Cow::Borrowed(k.as_str()))
        };
        match &self.0 {
            KeyKind::None => None,
            KeyKind::Route => route(),
            KeyKind::Authority => {
                route().or_else(|| req.uri().authority().map(|a| Cow::Borrowed(a.as_str())))
            }
            KeyKind::Header(h) => req
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .filter(|s| !s.is_empty())
                .map(Cow::Borrowed),
        }
    }
}

/// The `[outbound.breaker]` section, mapped onto [`CircuitBreakerBuilder`]. Defaults are the
/// builder's (Resilience4j's).
///
/// ```
/// use tower_pressure::config::BreakerConfig;
/// let b = BreakerConfig::default();
/// assert_eq!(b.failure_rate.value(), 50.0);
/// assert_eq!(b.wait_duration.to_string(), "1m");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Name in events and on the status page (default `"outbound"`).
    pub name: String,
    /// Consecutive failures that open the breaker (default 5; 0 turns the rule off).
    pub failure_threshold: u32,
    /// Count-based window: the last n calls (default 100). Exclusive with `time_window`.
    pub count_window: Option<u32>,
    /// Time-based window, in whole seconds (e.g. `"60s"`). Exclusive with `count_window`.
    pub time_window: Option<HumanDuration>,
    /// Calls in the window before rates are judged (default 20).
    pub minimum_calls: u32,
    /// Failure rate that opens the breaker, percent (default 50).
    pub failure_rate: Percent,
    /// A call slower than this is slow (default: off).
    pub slow_call_duration: Option<HumanDuration>,
    /// Slow-call rate that opens the breaker, percent (default 100).
    pub slow_call_rate: Percent,
    /// Time in OPEN before probing (default `"60s"`).
    pub wait_duration: HumanDuration,
    /// Growth of the open wait per consecutive re-open (default 1: constant).
    pub wait_multiplier: f64,
    /// Cap of the growing open wait (default `"60s"`).
    pub max_wait_duration: HumanDuration,
    /// Jitter of the open wait, percent (default 0).
    pub jitter: Percent,
    /// Probes admitted in HALF_OPEN (default 3).
    pub permitted_calls_in_half_open: u32,
    /// Successful probes that close the breaker (default 3).
    pub success_threshold: u32,
    /// Longest HALF_OPEN before re-opening (default `"30s"`).
    pub max_wait_in_half_open: HumanDuration,
    /// Refuse calls while pressure is at or above this level (default: off).
    pub trip_at_level: Option<PressureLevel>,
    /// Refuse calls while memory use is at or above this percentage (default: off).
    pub memory_threshold_percent: Option<Percent>,
    /// Refuse calls while memory use is at or above this size (default: off).
    pub memory_threshold: Option<ByteSize>,
    /// One breaker per key: `none` (default), `authority`, `route` or `header`.
    pub per_key: PerKey,
    /// The header of `per_key = "header"` (default `"x-provider"`).
    pub key_header: String,
    /// Most keys tracked (default 1024).
    pub max_keys: usize,
    /// An idle key's breaker may be evicted after this (default `"10m"`).
    pub idle_timeout: HumanDuration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            name: "outbound".into(),
            failure_threshold: 5,
            count_window: None,
            time_window: None,
            minimum_calls: 20,
            failure_rate: Percent::of(50.0),
            slow_call_duration: None,
            slow_call_rate: Percent::of(100.0),
            wait_duration: HumanDuration::secs(60),
            wait_multiplier: 1.0,
            max_wait_duration: HumanDuration::secs(60),
            jitter: Percent::of(0.0),
            permitted_calls_in_half_open: 3,
            success_threshold: 3,
            max_wait_in_half_open: HumanDuration::secs(30),
            trip_at_level: None,
            memory_threshold_percent: None,
            memory_threshold: None,
            per_key: PerKey::None,
            key_header: "x-provider".into(),
            max_keys: 1024,
            idle_timeout: HumanDuration::secs(600),
        }
    }
}

/// Builder field name -> document key.
pub(crate) const RENAME: &[(&str, &str)] = &[
    ("failure_rate_threshold", "failure_rate"),
    ("slow_call_rate_threshold", "slow_call_rate"),
    ("memory_threshold_mb", "memory_threshold"),
];

impl BreakerConfig {
    /// A [`CircuitBreakerBuilder`] with this section applied, reporting to `monitor`.
    ///
    /// # Errors
    /// Settings the document can express but the builder API cannot (`count_window`
    /// together with `time_window`, a fractional `time_window`), with their path.
    ///
    /// ```
    /// use tower_pressure::{config::BreakerConfig, pressure::PressureMonitor};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let layer = BreakerConfig::default().builder(&monitor)?.build()?;
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(
        &self,
        monitor: &PressureMonitor,
    ) -> Result<CircuitBreakerBuilder, ConfigFileError> {
        self.builder_at("outbound.breaker", monitor)
    }

    pub(crate) fn builder_at(
        &self,
        path: &str,
        monitor: &PressureMonitor,
    ) -> Result<CircuitBreakerBuilder, ConfigFileError> {
        let mut b = CircuitBreakerBuilder::new()
            .name(self.name.as_str())
            .monitor(monitor.clone())
            .failure_threshold(self.failure_threshold)
            .minimum_calls(self.minimum_calls)
            .failure_rate_threshold(self.failure_rate.value())
            .slow_call_rate_threshold(self.slow_call_rate.value())
            .wait_duration(self.wait_duration.get())
            .exponential_wait(self.wait_multiplier, self.max_wait_duration.get())
            .jitter(self.jitter.fraction())
            .permitted_calls_in_half_open(self.permitted_calls_in_half_open)
            .success_threshold(self.success_threshold)
            .max_wait_in_half_open(self.max_wait_in_half_open.get())
            .max_keys(self.max_keys)
            .idle_timeout(self.idle_timeout.get());
        match (self.count_window, self.time_window) {
            (Some(_), Some(_)) => {
                return Err(ConfigFileError::new(
                    format!("{path}.time_window"),
                    "count_window and time_window are exclusive; set one",
                    ErrorKind::Value,
                ));
            }
            (Some(n), None) => b = b.count_window(n),
            (None, Some(t)) => {
                let d = t.get();
                if d.subsec_nanos() != 0 || d.as_secs() > u64::from(u32::MAX) {
                    return Err(ConfigFileError::new(
                        format!("{path}.time_window"),
                        format!("{t} is not a whole number of seconds"),
                        ErrorKind::Value,
                    ));
                }
                b = b.time_window(d.as_secs() as u32);
            }
            (None, None) => {}
        }
        if let Some(d) = self.slow_call_duration {
            b = b.slow_call_duration(d.get());
        }
        if let Some(l) = self.trip_at_level {
            b = b.trip_at_level(l);
        }
        if let Some(p) = self.memory_threshold_percent {
            b = b.memory_threshold_percent(p.value());
        }
        if let Some(s) = self.memory_threshold {
            b = b.memory_threshold_mb(s.bytes() as f64 / 1_048_576.0);
        }
        Ok(b)
    }

    /// The key extractor `per_key` names.
    ///
    /// # Errors
    /// An invalid header name.
    pub fn key(&self) -> Result<BreakerKey, ConfigFileError> {
        self.key_at("outbound.breaker")
    }

    pub(crate) fn key_at(&self, path: &str) -> Result<BreakerKey, ConfigFileError> {
        Ok(BreakerKey(match &self.per_key {
            PerKey::None => KeyKind::None,
            PerKey::Authority => KeyKind::Authority,
            PerKey::Route => KeyKind::Route,
            PerKey::Header => {
                let h = &self.key_header;
                KeyKind::Header(http::HeaderName::try_from(h.as_str()).map_err(|_| {
                    ConfigFileError::new(
                        format!("{path}.key_header"),
                        format!("{h:?} is not a valid header name"),
                        ErrorKind::Value,
                    )
                })?)
            }
        }))
    }

    /// Builds the layer, keyed as `per_key` says. Builder errors come back with the document
    /// path (`outbound.breaker.success_threshold: ...`).
    ///
    /// # Errors
    /// The first refused setting.
    ///
    /// ```
    /// use tower_pressure::{config::BreakerConfig, pressure::PressureMonitor};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let mut cfg = BreakerConfig::default();
    /// cfg.success_threshold = 9;
    /// let err = cfg.layer(&monitor).unwrap_err();
    /// assert_eq!(err.path(), "outbound.breaker.success_threshold");
    /// ```
    pub fn layer(
        &self,
        monitor: &PressureMonitor,
    ) -> Result<
        CircuitBreakerLayer<crate::circuit_breaker::ErrorsAsFailures, BreakerKey>,
        ConfigFileError,
    > {
        self.layer_at("outbound.breaker", monitor)
    }

    pub(crate) fn layer_at(
        &self,
        path: &str,
        monitor: &PressureMonitor,
    ) -> Result<
        CircuitBreakerLayer<crate::circuit_breaker::ErrorsAsFailures, BreakerKey>,
        ConfigFileError,
    > {
        let key = self.key_at(path)?;
        let layer = self
            .builder_at(path, monitor)?
            .build()
            .map_err(|e| ConfigFileError::from_builder(path, e, RENAME))?;
        Ok(layer.per_key(key))
    }
}
