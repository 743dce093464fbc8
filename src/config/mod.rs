//! Configuration from a file: one document (TOML, YAML or JSON) for every layer, validated
//! with field paths, and reloadable while serving.
//!
//! The builders stay the primary API: each section of a [`Config`] maps onto the builder of
//! its layer ([`BreakerConfig::builder`], [`RetryConfig::builder`], ...), and the builder's
//! own `build()` validates it, so a document and code are checked by the same rules. A
//! builder's [`ConfigError`](crate::ConfigError) is re-reported with the document's field
//! path ([`ConfigFileError`]).
//!
//! # Document
//!
//! `examples/config.toml` lists every key with its default. The top-level sections are
//! `monitor` (sources, thresholds, margins, dwell, interval), `degradation` (the per-level
//! table and custom knobs), `inbound` (which parts, the alert layer, adaptive concurrency),
//! `outbound` (which parts, the alert layer, retry and budget, breaker, timeout), `alerts`
//! (rules, rate limits, sinks, watches), `quotas` (groups and tenants) and `fallbacks`.
//!
//! Durations are written with units (`"250ms"`, `"1m30s"`), sizes too (`"512MiB"`,
//! `"1GB"`), percentages as numbers from 0 to 100: see [`units`].
//!
//! # Errors
//!
//! Every mistake is a [`ConfigFileError`] naming the field path and the reason, with the
//! line and column where the format has them; unknown keys are refused with the nearest
//! valid name. Nothing panics on any input.
//!
//! ```
//! use tower_pressure::config::Config;
//!
//! let err = Config::from_toml("[outbound.breaker]\nfailure_rate = 150\n").unwrap_err();
//! assert_eq!(err.to_string(), "outbound.breaker.failure_rate: 150 is above 100 (line 2, column 16)");
//!
//! let err = Config::from_yaml("monitor:\n  intervl: 1s\n").unwrap_err();
//! assert!(err.to_string().contains("did you mean `interval`"));
//! ```
//!
//! # Reload
//!
//! [`ConfigHandle`] applies a new document to running layers (monitor thresholds, alert
//! rules, breaker, retry and quota settings): everything is validated and prepared first,
//! then applied, so either the whole document takes effect or none of it does. See
//! [`reload`].
//!
//! # Building
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_pressure::config::Config;
//!
//! let config = Config::from_toml(r#"
//!     [outbound.breaker]
//!     failure_rate = 25
//!     wait_duration = "10s"
//!     [outbound]
//!     timeout = "2s"
//! "#)?;
//! let monitor = config.monitor.builder()?.without_system_sources().build()?;
//! let outbound = config.outbound_stack(monitor)?; // a tower Layer, like ResilienceStack::outbound
//! # let _ = outbound;
//! # Ok(()) }
//! ```
//!

mod alerts;
mod breaker;
mod concurrency;
mod degradation;
mod error;
mod fallbacks;
mod monitor;
mod quotas;
pub mod reload;
mod retry;
mod stack;
pub mod units;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use alerts::{
    AlertLayerConfig, AlertsConfig, LatencyConfig, RuleConfig, SinksConfig, WatchConfig,
    WebhookConfig,
};
pub use breaker::{BreakerConfig, BreakerKey, PerKey};
pub use concurrency::{Algorithm, ConcurrencyConfig, CriticalQueueConfig, PerLevel, SharesConfig};
pub use degradation::{DegradationConfig, Knobs, LevelConstraints};
pub use error::{ConfigFileError, ErrorKind};
pub use fallbacks::{CacheFallbackConfig, FallbacksConfig, QueueFallbackConfig};
pub use monitor::{MonitorConfig, SourcesConfig, ThresholdsConfig};
pub use quotas::{ActionConfig, GroupConfig, LimitConfig, QuotaKey, QuotasConfig, TenantKeyConfig};
pub use reload::{ConfigHandle, ConfigVersion};
pub use retry::{BackoffConfig, BackoffKind, BudgetConfig, JitterConfig, RetryConfig};
pub use stack::{
    ConfigInboundStack, ConfigOutboundStack, InboundConfig, InboundPart, Optional, OutboundConfig,
    OutboundPart,
};

/// The format of a document.
///
/// ```
/// use tower_pressure::config::Format;
/// assert_eq!(Format::from_path("app.yml".as_ref()), Some(Format::Yaml));
/// assert_eq!(Format::from_path("app.conf".as_ref()), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (the `toml` crate of the toml-rs project).
    Toml,
    /// YAML (`serde_norway`, the maintained fork of `serde_yaml`).
    Yaml,
    /// JSON (`serde_json`).
    Json,
}

impl Format {
    /// The format named by a file's extension (`.toml`, `.yaml`/`.yml`, `.json`).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// The whole configuration document. Every section and key is optional; a missing key takes
/// the default of the builder it maps onto (`Config::default()` builds exactly what
/// `ResilienceStack::inbound` / `::outbound` build).
///
/// ```
/// use tower_pressure::config::Config;
/// let c = Config::from_json(r#"{"outbound": {"retry": {"max_attempts": 5}}}"#)?;
/// assert_eq!(c.outbound.retry.max_attempts, 5);
/// assert_eq!(c.monitor, Config::default().monitor);
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The pressure monitor.
    pub monitor: MonitorConfig,
    /// The degradation table, shared by the inbound and outbound stacks.
    pub degradation: DegradationConfig,
    /// The server-side stack.
    pub inbound: InboundConfig,
    /// The client-side stack.
    pub outbound: OutboundConfig,
    /// The alert manager.
    pub alerts: AlertsConfig,
    /// Per-tenant quotas.
    pub quotas: QuotasConfig,
    /// Fallbacks.
    pub fallbacks: FallbacksConfig,
}

impl Config {
    /// Parses a TOML document.
    ///
    /// # Errors
    /// A [`ConfigFileError`] naming the field, the reason, line and column.
    ///
    /// ```
    /// use tower_pressure::config::Config;
    /// assert_eq!(Config::from_toml("")?, Config::default());
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Config, ConfigFileError> {
        Self::parse(text, Format::Toml)
    }

    /// Parses a YAML document.
    ///
    /// # Errors
    /// As [`Config::from_toml`].
    ///
    /// ```
    /// use tower_pressure::config::Config;
    /// let c = Config::from_yaml("outbound:\n  timeout: 5s\n")?;
    /// assert_eq!(c.outbound.timeout.get().as_secs(), 5);
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn from_yaml(text: &str) -> Result<Config, ConfigFileError> {
        Self::parse(text, Format::Yaml)
    }

    /// Parses a JSON document.
    ///
    /// # Errors
    /// As [`Config::from_toml`].
    ///
    /// ```
    /// use tower_pressure::config::Config;
    /// assert!(Config::from_json("{\"monitor\": {\"dwell\": \"two\"}}").is_err());
    /// ```
    pub fn from_json(text: &str) -> Result<Config, ConfigFileError> {
        Self::parse(text, Format::Json)
    }

    /// Parses a document in `format`, then checks it with every builder (see
    /// [`Config::validate`]).
    ///
    /// # Errors
    /// As [`Config::from_toml`].
    ///
    /// ```
    /// use tower_pressure::config::{Config, Format};
    /// let c = Config::parse("{}", Format::Json)?;
    /// assert_eq!(c, Config::default());
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn parse(text: &str, format: Format) -> Result<Config, ConfigFileError> {
        let config: Config = parse_document(text, format)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a file; the format comes from its extension.
    ///
    /// # Errors
    /// An [`ErrorKind::Io`] error when the file cannot be read or its extension is not
    /// `.toml`, `.yaml`, `.yml` or `.json`; otherwise as [`Config::from_toml`].
    ///
    /// ```
    /// use tower_pressure::config::{Config, ErrorKind};
    /// let err = Config::from_file("/nonexistent/app.toml").unwrap_err();
    /// assert_eq!(err.kind(), &ErrorKind::Io);
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigFileError> {
        let (text, format) = read_file(path.as_ref())?;
        Self::parse(&text, format)
    }

    /// Checks every section with the builder it maps onto, without starting anything:
    /// cross-field rules (`success_threshold <= permitted_calls_in_half_open`, shares that
    /// sum above 100 %, a tenant assigned to a group that does not exist, ...) are the
    /// builders' own.
    ///
    /// # Errors
    /// The first refused setting, with its document path.
    ///
    /// ```
    /// use tower_pressure::config::Config;
    /// let mut c = Config::default();
    /// c.outbound.breaker.success_threshold = 10; // above permitted_calls_in_half_open (3)
    /// assert_eq!(c.validate().unwrap_err().path(), "outbound.breaker.success_threshold");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        self.monitor.validate()?;
        self.degradation.validate()?;
        let (monitor, _) = crate::pressure::PressureMonitor::manual();
        self.inbound.validate(&monitor)?;
        self.outbound.validate(&monitor)?;
        self.alerts.validate()?;
        self.quotas.validate()?;
        self.fallbacks.validate()?;
        Ok(())
    }

    /// The document as JSON (durations and sizes in human units), e.g. to show the live
    /// configuration. (The `toml` crate is built without its serializer.)
    ///
    /// ```
    /// use tower_pressure::config::Config;
    /// let text = Config::default().to_json();
    /// assert_eq!(Config::from_json(&text)?, Config::default());
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

pub(crate) fn read_file(path: &Path) -> Result<(String, Format), ConfigFileError> {
    let format = Format::from_path(path).ok_or_else(|| {
        ConfigFileError::new(
            "",
            format!(
                "{}: unknown format (use a .toml, .yaml, .yml or .json file)",
                path.display()
            ),
            ErrorKind::Io,
        )
    })?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigFileError::new("", format!("{}: {e}", path.display()), ErrorKind::Io))?;
    Ok((text, format))
}

/// 1-based line and column of byte offset `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Turns a serde error message and the path serde_path_to_error tracked into a
/// [`ConfigFileError`], computing the "did you mean" suggestion for unknown keys.
fn classify(path: String, message: &str) -> ConfigFileError {
    let path = if path == "." { String::new() } else { path };
    // Some deserializers already prefix the message with the path.
    let message = match message.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && !head.contains(' ') && path.starts_with(head) => {
            rest
        }
        _ => message,
    };
    if let Some((is_field, name, expected)) = error::parse_unknown(message) {
        let suggestion = error::nearest(&name, expected.iter().map(String::as_str));
        let what = if is_field {
            "unknown key"
        } else {
            "unknown value"
        };
        let mut msg = format!("{what} `{name}`");
        match &suggestion {
            Some(s) => msg.push_str(&format!("; did you mean `{s}`?")),
            None if !expected.is_empty() => {
                msg.push_str(&format!("; expected one of {}", expected.join(", ")))
            }
            None => {}
        }
        let path = if is_field && path.rsplit('.').next() != Some(name.as_str()) {
            if path.is_empty() {
                name
            } else {
                format!("{path}.{name}")
            }
        } else {
            path
        };
        return ConfigFileError::new(path, msg, ErrorKind::UnknownKey { suggestion });
    }
    ConfigFileError::new(path, message.to_string(), ErrorKind::Value)
}

/// Parses `text` in `format` into `T`, tracking field paths.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    text: &str,
    format: Format,
) -> Result<T, ConfigFileError> {
    match format {
        Format::Toml => {
            let de = toml::de::Deserializer::parse(text).map_err(|e| {
                let (l, c) = e.span().map(|s| line_col(text, s.start)).unzip();
                ConfigFileError::new(
                    "",
                    format!("TOML syntax: {}", e.message()),
                    ErrorKind::Syntax,
                )
                .at(l, c)
            })?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let (l, c) = inner.span().map(|s| line_col(text, s.start)).unzip();
                classify(path, inner.message()).at(l, c)
            })
        }
        Format::Yaml => {
            // An empty YAML document is "no keys", like an empty TOML file.
            if text.trim().is_empty() {
                return parse_document("{}", Format::Json);
            }
            let de = serde_norway::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let loc = inner.location();
                let mut msg = inner.to_string();
                // serde_norway appends " at line L column C"; the location is reported
                // separately.
                if let Some(i) = msg.find(" at line ") {
                    msg.truncate(i);
                }
                classify(path, &msg).at(loc.as_ref().map(|l| l.line()), loc.map(|l| l.column()))
            })
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let out = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let (l, c) = (inner.line(), inner.column());
                let mut msg = inner.to_string();
                if let Some(i) = msg.find(" at line ") {
                    msg.truncate(i);
                }
                let err = if inner.is_syntax() || inner.is_eof() {
                    ConfigFileError::new(path, format!("JSON syntax: {msg}"), ErrorKind::Syntax)
                } else {
                    classify(path, &msg)
                };
                err.at((l > 0).then_some(l), (c > 0).then_some(c))
            })?;
            de.end().map_err(|e| {
                ConfigFileError::new("", format!("JSON syntax: {e}"), ErrorKind::Syntax)
            })?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests;
