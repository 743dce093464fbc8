//! `[outbound.retry]`: attempts, backoff, budget and pressure rules of the retry layer.

use serde::{Deserialize, Serialize};

use super::error::ConfigFileError;
use super::units::HumanDuration;
use crate::pressure::PressureLevel;
use crate::pressure::PressureMonitor;
use crate::retry::{
    Backoff, DefaultClassifier, Jitter, RetryBudget, RetryLayer, RetryLayerBuilder,
};

/// The backoff's shape.
///
/// ```
/// use tower_pressure::config::BackoffKind;
/// assert_eq!(BackoffKind::default(), BackoffKind::Exponential);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackoffKind {
    /// The same delay every time.
    Fixed,
    /// `initial + n x step`.
    Linear,
    /// `initial x multiplier^n` (the default).
    #[default]
    Exponential,
}

/// The backoff's jitter (see [`Jitter`]).
///
/// ```
/// use tower_pressure::config::JitterConfig;
/// assert_eq!(JitterConfig::default(), JitterConfig::Full);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JitterConfig {
    /// None.
    None,
    /// Uniform in `[0, base)` (the default).
    #[default]
    Full,
    /// Half the base plus uniform in `[0, base/2)`.
    Equal,
    /// Uniform in `[initial, 3 x previous)`.
    Decorrelated,
}

/// `[outbound.retry.backoff]`.
///
/// ```
/// use tower_pressure::config::BackoffConfig;
/// assert_eq!(BackoffConfig::default().initial.to_string(), "50ms");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// `fixed`, `linear` or `exponential` (default).
    pub kind: BackoffKind,
    /// First delay (default `"50ms"`).
    pub initial: HumanDuration,
    /// Growth factor of `exponential` (default 2).
    pub multiplier: f64,
    /// Step of `linear` (default `"50ms"`).
    pub step: HumanDuration,
    /// Cap (default `"5s"`).
    pub max: HumanDuration,
    /// `none`, `full` (default), `equal` or `decorrelated`.
    pub jitter: JitterConfig,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            kind: BackoffKind::Exponential,
            initial: HumanDuration::millis(50),
            multiplier: 2.0,
            step: HumanDuration::millis(50),
            max: HumanDuration::secs(5),
            jitter: JitterConfig::Full,
        }
    }
}

impl BackoffConfig {
    /// The [`Backoff`] (validated by the retry builder).
    ///
    /// ```
    /// use tower_pressure::config::BackoffConfig;
    /// assert_eq!(BackoffConfig::default().backoff(), tower_pressure::retry::Backoff::default());
    /// ```
    pub fn backoff(&self) -> Backoff {
        let b = match self.kind {
            BackoffKind::Fixed => Backoff::fixed(self.initial.get()),
            BackoffKind::Linear => Backoff::linear(self.initial.get(), self.step.get()),
            BackoffKind::Exponential => Backoff::exponential(self.initial.get(), self.multiplier),
        };
        b.max(self.max.get()).jitter(match self.jitter {
            JitterConfig::None => Jitter::None,
            JitterConfig::Full => Jitter::Full,
            JitterConfig::Equal => Jitter::Equal,
            JitterConfig::Decorrelated => Jitter::Decorrelated,
        })
    }
}

/// `[outbound.retry.budget]`: the retry budget shared by every clone of the layer.
///
/// ```
/// use tower_pressure::config::BudgetConfig;
/// assert_eq!(BudgetConfig::default().ratio, 0.2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BudgetConfig {
    /// `false`: retries are limited by `max_attempts` only (default `true`).
    pub enabled: bool,
    /// Retries allowed per request over the window (default 0.2: one retry per five
    /// requests; at most 10).
    pub ratio: f64,
    /// The window deposits are remembered for (default `"10s"`).
    pub window: HumanDuration,
    /// Retries per second always allowed (default 10).
    pub min_per_second: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ratio: 0.2,
            window: HumanDuration::secs(10),
            min_per_second: 10,
        }
    }
}

/// The `[outbound.retry]` section, mapped onto [`RetryLayerBuilder`].
///
/// ```
/// use tower_pressure::{config::RetryConfig, pressure::PressureMonitor};
/// let (monitor, _) = PressureMonitor::manual();
/// let layer = RetryConfig::default().layer(&monitor)?;
/// assert_eq!(layer.name(), "outbound");
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Name in events (default `"outbound"`).
    pub name: String,
    /// Attempts including the first (default 3).
    pub max_attempts: u32,
    /// The backoff between attempts.
    pub backoff: BackoffConfig,
    /// Timeout of each attempt (default none; the stack's `timeout` also applies).
    pub attempt_timeout: Option<HumanDuration>,
    /// Bound on the whole call, retries included (default none).
    pub time_bound: Option<HumanDuration>,
    /// Longest server pushback (`Retry-After`) honoured (default `"60s"`).
    pub max_pushback: HumanDuration,
    /// No retries at or above this level (default `critical`).
    pub no_retry_at: PressureLevel,
    /// Backoff factor at `high` (default 2).
    pub stretch_at_high: f64,
    /// The retry budget.
    pub budget: BudgetConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            name: "outbound".into(),
            max_attempts: 3,
            backoff: BackoffConfig::default(),
            attempt_timeout: None,
            time_bound: None,
            max_pushback: HumanDuration::secs(60),
            no_retry_at: PressureLevel::Critical,
            stretch_at_high: 2.0,
            budget: BudgetConfig::default(),
        }
    }
}

impl RetryConfig {
    /// The budget this section describes (`None` when disabled).
    ///
    /// # Errors
    /// The budget builder's error, with its path.
    pub fn budget(&self) -> Result<Option<RetryBudget>, ConfigFileError> {
        self.budget_at("outbound.retry")
    }

    fn budget_at(&self, path: &str) -> Result<Option<RetryBudget>, ConfigFileError> {
        if !self.budget.enabled {
            return Ok(None);
        }
        RetryBudget::builder()
            .ratio(self.budget.ratio)
            .window(self.budget.window.get())
            .min_per_second(self.budget.min_per_second)
            .build()
            .map(Some)
            .map_err(|e| {
                let field = e.field().trim_start_matches("budget.").to_string();
                ConfigFileError::from_builder(
                    &format!("{path}.budget"),
                    crate::error::ConfigError::new(field, e.value(), e.reason()),
                    &[],
                )
            })
    }

    /// A [`RetryLayerBuilder`] with this section applied (budget included).
    ///
    /// # Errors
    /// An invalid budget.
    pub fn builder(
        &self,
        monitor: &PressureMonitor,
    ) -> Result<RetryLayerBuilder<DefaultClassifier>, ConfigFileError> {
        self.builder_at("outbound.retry", monitor)
    }

    pub(crate) fn builder_at(
        &self,
        path: &str,
        monitor: &PressureMonitor,
    ) -> Result<RetryLayerBuilder<DefaultClassifier>, ConfigFileError> {
        let mut b = RetryLayer::builder(monitor.clone())
            .name(self.name.as_str())
            .max_attempts(self.max_attempts)
            .backoff(self.backoff.backoff())
            .max_pushback(self.max_pushback.get())
            .no_retry_at(self.no_retry_at)
            .stretch_at_high(self.stretch_at_high);
        if let Some(t) = self.attempt_timeout {
            b = b.attempt_timeout(t.get());
        }
        if let Some(t) = self.time_bound {
            b = b.time_bound(t.get());
        }
        b = match self.budget_at(path)? {
            Some(budget) => b.budget(budget),
            None => b.no_budget(),
        };
        Ok(b)
    }

    /// Builds the layer; builder errors come back with the document path.
    ///
    /// # Errors
    /// The first refused setting.
    pub fn layer(&self, monitor: &PressureMonitor) -> Result<RetryLayer, ConfigFileError> {
        self.layer_at("outbound.retry", monitor)
    }

    pub(crate) fn layer_at(
        &self,
        path: &str,
        monitor: &PressureMonitor,
    ) -> Result<RetryLayer, ConfigFileError> {
        self.builder_at(path, monitor)?
            .build()
            .map_err(|e| ConfigFileError::from_builder(path, e, &[]))
    }
}
