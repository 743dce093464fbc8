//! `[inbound]` and `[outbound]`: which parts make up each stack, and their settings.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tower::util::Either;
use tower_layer::Identity;

use super::Config;
use super::alerts::AlertLayerConfig;
use super::breaker::{BreakerConfig, BreakerKey};
use super::concurrency::ConcurrencyConfig;
use super::error::{ConfigFileError, ErrorKind};
use super::units::HumanDuration;
use crate::alert::AlertLayer;
use crate::circuit_breaker::{CircuitBreakerLayer, ErrorsAsFailures};
use crate::concurrency::AdaptiveConcurrencyLayer;
use crate::degradation::DegradationLayer;
use crate::pressure::PressureMonitor;
use crate::retry::RetryLayer;
use crate::stack::{InboundStack, OutboundStack, ResilienceStack};
use crate::timeout::TimeoutLayer;

/// A part of the inbound stack. The order is the crate's (`alert → degradation →
/// concurrency`); the list only says which parts are present.
///
/// ```
/// use tower_pressure::config::InboundPart;
/// assert_eq!(InboundPart::ALL.len(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InboundPart {
    /// The alert layer.
    Alert,
    /// The degradation layer.
    Degradation,
    /// Adaptive concurrency.
    Concurrency,
}

impl InboundPart {
    /// Every part, in stack order.
    pub const ALL: [InboundPart; 3] = [
        InboundPart::Alert,
        InboundPart::Degradation,
        InboundPart::Concurrency,
    ];
}

/// A part of the outbound stack (order `alert → retry → degradation → breaker → timeout`).
///
/// ```
/// use tower_pressure::config::OutboundPart;
/// assert_eq!(OutboundPart::ALL.len(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutboundPart {
    /// The alert layer.
    Alert,
    /// Retry with budget.
    Retry,
    /// The degradation layer.
    Degradation,
    /// The circuit breaker.
    Breaker,
    /// The per-attempt timeout.
    Timeout,
}

impl OutboundPart {
    /// Every part, in stack order.
    pub const ALL: [OutboundPart; 5] = [
        OutboundPart::Alert,
        OutboundPart::Retry,
        OutboundPart::Degradation,
        OutboundPart::Breaker,
        OutboundPart::Timeout,
    ];
}

/// The `[inbound]` section.
///
/// ```
/// use tower_pressure::config::{Config, InboundPart};
/// let c = Config::from_toml("[inbound]\nparts = [\"alert\", \"concurrency\"]\n")?;
/// assert!(!c.inbound.parts.contains(&InboundPart::Degradation));
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct InboundConfig {
    /// The parts present (default all three).
    pub parts: Vec<InboundPart>,
    /// The alert layer (named `"inbound"`).
    pub alert: AlertLayerConfig,
    /// Adaptive concurrency.
    pub concurrency: ConcurrencyConfig,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            parts: InboundPart::ALL.to_vec(),
            alert: AlertLayerConfig::default(),
            concurrency: ConcurrencyConfig::default(),
        }
    }
}

/// The `[outbound]` section.
///
/// ```
/// use tower_pressure::config::Config;
/// let c = Config::from_toml("[outbound]\ntimeout = \"5s\"\n")?;
/// assert_eq!(c.outbound.timeout.get().as_secs(), 5);
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OutboundConfig {
    /// The parts present (default all five).
    pub parts: Vec<OutboundPart>,
    /// Per-attempt timeout, inside the breaker (default `"30s"`).
    pub timeout: HumanDuration,
    /// The alert layer (named `"outbound"`).
    pub alert: AlertLayerConfig,
    /// Retry and budget.
    pub retry: super::retry::RetryConfig,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            parts: OutboundPart::ALL.to_vec(),
            timeout: HumanDuration::secs(30),
            alert: AlertLayerConfig::default(),
            retry: super::retry::RetryConfig::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

fn check_parts<T: PartialEq + std::fmt::Debug>(
    path: &str,
    parts: &[T],
) -> Result<(), ConfigFileError> {
    for (i, p) in parts.iter().enumerate() {
        if parts[..i].contains(p) {
            return Err(ConfigFileError::new(
                format!("{path}.parts[{i}]"),
                format!("{p:?} is listed twice"),
                ErrorKind::Value,
            ));
        }
    }
    Ok(())
}

impl InboundConfig {
    pub(crate) fn validate(&self, monitor: &PressureMonitor) -> Result<(), ConfigFileError> {
        check_parts("inbound", &self.parts)?;
        self.alert.layer("inbound", "inbound.alert", monitor)?;
        self.concurrency.layer(monitor)?;
        Ok(())
    }
}

impl OutboundConfig {
    pub(crate) fn validate(&self, monitor: &PressureMonitor) -> Result<(), ConfigFileError> {
        check_parts("outbound", &self.parts)?;
        if self.timeout.get().is_zero() {
            return Err(ConfigFileError::new(
                "outbound.timeout",
                "must be greater than zero",
                ErrorKind::Value,
            ));
        }
        self.alert.layer("outbound", "outbound.alert", monitor)?;
        self.retry.layer_at("outbound.retry", monitor)?;
        self.breaker.layer_at("outbound.breaker", monitor)?;
        Ok(())
    }
}

/// A layer the document may leave out: present (`Left`) or a pass-through (`Right`).
pub type Optional<L> = Either<L, Identity>;

/// The inbound stack a [`Config`] builds (see [`Config::inbound_stack`]).
pub type ConfigInboundStack = InboundStack<
    Optional<AlertLayer>,
    Optional<DegradationLayer>,
    Optional<AdaptiveConcurrencyLayer>,
>;

/// The outbound stack a [`Config`] builds (see [`Config::outbound_stack`]); for
/// `http::Request`s (breakers are keyed by [`BreakerKey`]).
pub type ConfigOutboundStack = OutboundStack<
    Optional<AlertLayer>,
    Optional<DegradationLayer>,
    Optional<RetryLayer>,
    Optional<CircuitBreakerLayer<ErrorsAsFailures, BreakerKey>>,
    Optional<TimeoutLayer>,
>;

fn optional<L>(on: bool, layer: L) -> Optional<L> {
    if on {
        Either::Left(layer)
    } else {
        Either::Right(Identity::new())
    }
}

impl Config {
    /// The inbound stack this document describes, around `monitor`: like
    /// [`ResilienceStack::inbound`], with each part configured or left out. Every present
    /// part is on the stack's status page.
    ///
    /// # Errors
    /// The first refused setting, with its document path.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_pressure::{PressureMonitor, config::Config};
    ///
    /// let (monitor, _) = PressureMonitor::manual();
    /// let stack = Config::default().inbound_stack(monitor)?;
    /// let svc = ServiceBuilder::new().layer(stack).service(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, tower::BoxError>("ok")
    /// }));
    /// assert_eq!(svc.oneshot(http::Request::new(())).await?, "ok");
    /// # Ok(()) }
    /// ```
    pub fn inbound_stack(
        &self,
        monitor: PressureMonitor,
    ) -> Result<ConfigInboundStack, ConfigFileError> {
        let c = &self.inbound;
        check_parts("inbound", &c.parts)?;
        let has = |p| c.parts.contains(&p);
        let alert = c.alert.layer("inbound", "inbound.alert", &monitor)?;
        let degradation = self.degradation.layer(monitor.clone())?;
        let concurrency = c.concurrency.layer(&monitor)?;
        let mut s = ResilienceStack::inbound(monitor)
            .alert_layer(optional(has(InboundPart::Alert), alert.clone()))
            .degradation_layer(optional(has(InboundPart::Degradation), degradation.clone()))
            .concurrency_layer(optional(has(InboundPart::Concurrency), concurrency.clone()));
        if has(InboundPart::Alert) {
            s = s.with_status("alert", Arc::new(alert.metrics()));
        }
        if has(InboundPart::Degradation) {
            s = s.with_status("degradation", Arc::new(degradation));
        }
        if has(InboundPart::Concurrency) {
            s = s.with_status("concurrency", Arc::new(concurrency.handle()));
        }
        Ok(s)
    }

    /// The outbound stack this document describes, around `monitor`: like
    /// [`ResilienceStack::outbound`], with each part configured or left out.
    ///
    /// # Errors
    /// The first refused setting, with its document path.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_pressure::{PressureMonitor, config::Config};
    ///
    /// let (monitor, _) = PressureMonitor::manual();
    /// let config = Config::from_toml("[outbound]\nparts = [\"retry\", \"breaker\"]\n")?;
    /// let stack = config.outbound_stack(monitor)?;
    /// let client = ServiceBuilder::new().layer(stack).service(service_fn(|_: http::Request<String>| async {
    ///     Ok::<_, tower::BoxError>("pong")
    /// }));
    /// assert_eq!(client.oneshot(http::Request::new(String::new())).await?, "pong");
    /// # Ok(()) }
    /// ```
    pub fn outbound_stack(
        &self,
        monitor: PressureMonitor,
    ) -> Result<ConfigOutboundStack, ConfigFileError> {
        self.outbound_parts(monitor).map(|(s, _, _)| s)
    }

    /// The outbound stack, with the handles of its breaker and retry layers when they are
    /// part of it (for [`ConfigHandle`](super::ConfigHandle) reloads).
    pub(crate) fn outbound_parts(
        &self,
        monitor: PressureMonitor,
    ) -> Result<
        (
            ConfigOutboundStack,
            Option<crate::circuit_breaker::CircuitBreakerHandle>,
            Option<crate::retry::RetryHandle>,
        ),
        ConfigFileError,
    > {
        let c = &self.outbound;
        c.validate(&monitor)?;
        let has = |p| c.parts.contains(&p);
        let alert = c.alert.layer("outbound", "outbound.alert", &monitor)?;
        let degradation = self.degradation.layer(monitor.clone())?;
        let retry = c.retry.layer_at("outbound.retry", &monitor)?;
        let breaker = c.breaker.layer_at("outbound.breaker", &monitor)?;
        let timeout = TimeoutLayer::new(c.timeout.get());
        let mut s = ResilienceStack::outbound(monitor)
            .alert_layer(optional(has(OutboundPart::Alert), alert.clone()))
            .retry_layer(optional(has(OutboundPart::Retry), retry.clone()))
            .degradation_layer(optional(
                has(OutboundPart::Degradation),
                degradation.clone(),
            ))
            .breaker_layer(optional(has(OutboundPart::Breaker), breaker.clone()))
            .timeout_layer(optional(has(OutboundPart::Timeout), timeout));
        if has(OutboundPart::Alert) {
            s = s.with_status("alert", Arc::new(alert.metrics()));
        }
        let retry_handle = has(OutboundPart::Retry).then(|| retry.handle());
        if has(OutboundPart::Retry) {
            s = s.with_status("retry", Arc::new(retry));
        }
        if has(OutboundPart::Degradation) {
            s = s.with_status("degradation", Arc::new(degradation));
        }
        let breaker_handle = has(OutboundPart::Breaker).then(|| breaker.handle());
        if has(OutboundPart::Breaker) {
            s = s.with_status("breaker", Arc::new(breaker.handle()));
        }
        Ok((s, breaker_handle, retry_handle))
    }
}
