//! `[alerts]` (the alert manager: rules, rate limits, sinks, watches) and the alert layers of
//! the stacks (`[inbound.alert]`, `[outbound.alert]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{ConfigFileError, ErrorKind, nearest};
use super::monitor::signal_named;
use super::units::{HumanDuration, Percent};
use crate::alert::{AlertLayer, AlertManager, AlertManagerBuilder, Rule};
use crate::pressure::PressureMonitor;

/// One built-in rule: on or off, and its rate limit.
///
/// ```
/// use tower_pressure::config::RuleConfig;
/// assert!(RuleConfig::default().enabled);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleConfig {
    /// `false` removes the rule (default `true`).
    pub enabled: bool,
    /// At most one alert per key this often (default: the rule's own).
    pub rate_limit: Option<HumanDuration>,
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rate_limit: None,
        }
    }
}

/// A webhook sink (needs the `http` feature).
///
/// ```
/// use tower_pressure::config::WebhookConfig;
/// let mut w = WebhookConfig::default();
/// w.url = "https://hooks.example/alerts".into();
/// assert!(!w.allow_private_destinations);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Where alerts are posted.
    pub url: String,
    /// Per-post timeout (default: the sink's).
    pub timeout: Option<HumanDuration>,
    /// Attempts per alert (default: the sink's).
    pub max_attempts: Option<u32>,
    /// Alerts queued while posting (default: the sink's).
    pub queue_capacity: Option<usize>,
    /// Allow loopback and private addresses (default `false`: SSRF guard).
    pub allow_private_destinations: bool,
}

/// `[alerts.sinks]`.
///
/// ```
/// use tower_pressure::config::SinksConfig;
/// assert!(SinksConfig::default().tracing);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SinksConfig {
    /// Alerts as tracing events (default `true`).
    pub tracing: bool,
    /// Alerts printed on stdout (default `false`).
    pub stdout: bool,
    /// Webhook sinks (default none).
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for SinksConfig {
    fn default() -> Self {
        Self {
            tracing: true,
            stdout: false,
            webhooks: Vec::new(),
        }
    }
}

/// A threshold watch on a signal (seed 001's monitor alerts).
///
/// ```
/// use tower_pressure::config::WatchConfig;
/// let w = WatchConfig { signal: "memory".into(), warning: 80.0, critical: 95.0 };
/// # let _ = w;
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// The built-in signal.
    pub signal: String,
    /// WARNING above this.
    pub warning: f64,
    /// CRITICAL above this.
    pub critical: f64,
}

/// The `[alerts]` section, mapped onto [`AlertManagerBuilder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_pressure::config::ConfigFileError> {
/// use tower_pressure::config::Config;
/// let c = Config::from_toml(r#"
///     [alerts.rules.pressure]
///     rate_limit = "5m"
///     [alerts.rules.retry_budget]
///     enabled = false
/// "#)?;
/// let (monitor, _) = tower_pressure::PressureMonitor::manual();
/// let manager = c.alerts.manager(&monitor)?;
/// assert!(!manager.rules().iter().any(|r| r == "retry_budget"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AlertsConfig {
    /// The built-in rules by name (`degradation`, `resource`, `pressure`,
    /// `breaker_opened`, `breakers_open`, `service`, `retry_budget`, ...).
    pub rules: BTreeMap<String, RuleConfig>,
    /// Where alerts go.
    pub sinks: SinksConfig,
    /// Alerts kept in the history (default 1000).
    pub history: usize,
    /// Alerts in the status page's recent list (default 10).
    pub recent: usize,
    /// (rule, key) pairs the rate limiter remembers (default 4096).
    pub rate_limit_entries: usize,
    /// Threshold watches (default none).
    pub watches: Vec<WatchConfig>,
    /// How often watches are checked (default `"1s"`).
    pub watch_interval: HumanDuration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            rules: BTreeMap::new(),
            sinks: SinksConfig::default(),
            history: 1000,
            recent: 10,
            rate_limit_entries: 4096,
            watches: Vec::new(),
            watch_interval: HumanDuration::secs(1),
        }
    }
}

impl AlertsConfig {
    /// An [`AlertManagerBuilder`] on `monitor` with this section applied.
    ///
    /// # Errors
    /// An unknown rule or signal name (with the nearest valid one), an invalid webhook.
    pub fn builder(
        &self,
        monitor: &PressureMonitor,
    ) -> Result<AlertManagerBuilder, ConfigFileError> {
        Ok(self.builder_inner(Some(monitor))?.monitor(monitor.clone()))
    }

    fn builder_inner(
        &self,
        monitor: Option<&PressureMonitor>,
    ) -> Result<AlertManagerBuilder, ConfigFileError> {
        let known: Vec<String> = Rule::defaults()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        let mut b = AlertManager::builder()
            .tracing(self.sinks.tracing)
            .history_capacity(self.history)
            .recent_alerts(self.recent)
            .rate_limit_entries(self.rate_limit_entries)
            .watch_interval(self.watch_interval.get());
        for (name, rule) in &self.rules {
            if !known.iter().any(|k| k == name) {
                let suggestion = nearest(name, known.iter().map(String::as_str));
                let msg = match &suggestion {
                    Some(s) => format!("unknown rule `{name}`; did you mean `{s}`?"),
                    None => format!(
                        "unknown rule `{name}`; expected one of {}",
                        known.join(", ")
                    ),
                };
                return Err(ConfigFileError::new(
                    format!("alerts.rules.{name}"),
                    msg,
                    ErrorKind::UnknownKey { suggestion },
                ));
            }
            if !rule.enabled {
                b = b.remove_rule(name);
            } else if let Some(every) = rule.rate_limit {
                b = b.rate_limit(name.as_str(), every.get());
            }
        }
        if self.sinks.stdout {
            b = b.stdout();
        }
        for (i, w) in self.watches.iter().enumerate() {
            let signal = signal_named(&format!("alerts.watches[{i}].signal"), &w.signal)?;
            if !(w.warning.is_finite() && w.critical.is_finite() && w.warning <= w.critical) {
                return Err(ConfigFileError::new(
                    format!("alerts.watches[{i}].critical"),
                    format!(
                        "{} must be a number at least warning ({})",
                        w.critical, w.warning
                    ),
                    ErrorKind::Value,
                ));
            }
            // Watches need the monitor; validation (no monitor) checks them above only.
            if monitor.is_some() {
                b = b.watch(signal, w.warning, w.critical);
            }
        }
        for (i, w) in self.sinks.webhooks.iter().enumerate() {
            check_webhook(i, w)?;
            if let Some(m) = monitor {
                b = webhook(b, i, w, m)?;
            }
        }
        Ok(b)
    }

    /// Builds the manager; builder errors come back with the document path.
    ///
    /// # Errors
    /// The first refused setting.
    pub fn manager(&self, monitor: &PressureMonitor) -> Result<AlertManager, ConfigFileError> {
        self.builder(monitor)?.build().map_err(|e| {
            ConfigFileError::from_builder(
                "alerts",
                e,
                &[
                    ("history_capacity", "history"),
                    ("rate_limit", "rules"),
                    ("watch", "watches"),
                ],
            )
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigFileError> {
        // Without a monitor the builder starts no task and needs no runtime; webhook URLs
        // and watches are checked without being started.
        self.builder_inner(None)?.build().map(drop).map_err(|e| {
            ConfigFileError::from_builder("alerts", e, &[("history_capacity", "history")])
        })
    }
}

fn check_webhook(i: usize, w: &WebhookConfig) -> Result<(), ConfigFileError> {
    let path = format!("alerts.sinks.webhooks[{i}].url");
    let uri: http::Uri = w.url.parse().map_err(|_| {
        ConfigFileError::new(&path, format!("{:?} is not a URL", w.url), ErrorKind::Value)
    })?;
    match uri.scheme_str() {
        Some("http") | Some("https") => Ok(()),
        _ => Err(ConfigFileError::new(
            path,
            format!("{:?} must be an http:// or https:// URL", w.url),
            ErrorKind::Value,
        )),
    }
}

#[cfg(all(feature = "http", feature = "serde"))]
fn webhook(
    b: AlertManagerBuilder,
    i: usize,
    w: &WebhookConfig,
    monitor: &PressureMonitor,
) -> Result<AlertManagerBuilder, ConfigFileError> {
    check_webhook(i, w)?;
    let path = format!("alerts.sinks.webhooks[{i}]");
    let mut s = crate::alert::WebhookSink::builder(w.url.as_str())
        .allow_private_destinations(w.allow_private_destinations)
        .monitor(monitor.clone());
    if let Some(t) = w.timeout {
        s = s.timeout(t.get());
    }
    if let Some(n) = w.max_attempts {
        s = s.max_attempts(n);
    }
    if let Some(n) = w.queue_capacity {
        s = s.queue_capacity(n);
    }
    let sink = s
        .build()
        .map_err(|e| ConfigFileError::from_builder(&path, e, &[]))?;
    Ok(b.sink(sink))
}

#[cfg(not(all(feature = "http", feature = "serde")))]
fn webhook(
    _b: AlertManagerBuilder,
    i: usize,
    _w: &WebhookConfig,
    _monitor: &PressureMonitor,
) -> Result<AlertManagerBuilder, ConfigFileError> {
    Err(ConfigFileError::new(
        format!("alerts.sinks.webhooks[{i}]"),
        "webhook sinks need the `http` feature of tower-pressure",
        ErrorKind::Value,
    ))
}

/// A latency threshold: the window's `quantile` above `threshold` fires.
///
/// ```
/// use tower_pressure::config::LatencyConfig;
/// let l = LatencyConfig { quantile: 0.99, threshold: "500ms".parse()? };
/// # let _ = l;
/// # Ok::<(), tower_pressure::config::units::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// The quantile, e.g. 0.99.
    pub quantile: f64,
    /// The latency above which it fires.
    pub threshold: HumanDuration,
}

/// `[inbound.alert]` / `[outbound.alert]`: the alert layer's metrics and thresholds.
///
/// ```
/// use tower_pressure::config::AlertLayerConfig;
/// assert_eq!(AlertLayerConfig::default().error_rate.map(|p| p.value()), Some(50.0));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AlertLayerConfig {
    /// The evaluation window (default `"10s"`).
    pub window: HumanDuration,
    /// Calls a window needs before thresholds are judged (default 20).
    pub min_calls: u64,
    /// Error-rate threshold in percent (default 50; omit with `error_rate_alerts = false`).
    pub error_rate: Option<Percent>,
    /// `false` turns the error-rate threshold off (default `true`).
    pub error_rate_alerts: bool,
    /// A latency threshold (default none).
    pub latency: Option<LatencyConfig>,
    /// Distinct keys tracked (default 64).
    pub max_keys: usize,
}

impl Default for AlertLayerConfig {
    fn default() -> Self {
        Self {
            window: HumanDuration::secs(10),
            min_calls: 20,
            error_rate: Some(Percent::of(50.0)),
            error_rate_alerts: true,
            latency: None,
            max_keys: 64,
        }
    }
}

impl AlertLayerConfig {
    /// Builds the layer called `name` reporting to `monitor`'s bus; `path` is where this
    /// section is in the document (for errors).
    ///
    /// # Errors
    /// The first refused setting, with its path.
    ///
    /// ```
    /// use tower_pressure::{config::AlertLayerConfig, pressure::PressureMonitor};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let layer = AlertLayerConfig::default().layer("inbound", "inbound.alert", &monitor)?;
    /// assert_eq!(layer.metrics().name(), "inbound");
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn layer(
        &self,
        name: &str,
        path: &str,
        monitor: &PressureMonitor,
    ) -> Result<AlertLayer, ConfigFileError> {
        let mut b = AlertLayer::builder(name)
            .monitor(monitor)
            .window(self.window.get())
            .min_calls(self.min_calls)
            .max_keys(self.max_keys)
            .error_rate_threshold(if self.error_rate_alerts {
                self.error_rate.map(Percent::value)
            } else {
                None
            });
        if let Some(l) = self.latency {
            b = b.latency_threshold(l.quantile, l.threshold.get());
        }
        b.build().map_err(|e| {
            ConfigFileError::from_builder(
                path,
                e,
                &[
                    ("error_rate_threshold", "error_rate"),
                    ("latency_threshold", "latency"),
                ],
            )
        })
    }
}
