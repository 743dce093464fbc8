//! `[inbound.concurrency]`: the adaptive concurrency limiter: algorithm, priorities, shares.

use serde::{Deserialize, Serialize};

use super::error::{ConfigFileError, ErrorKind};
use super::units::{HumanDuration, Percent};
use crate::concurrency::limit::{Aimd, Gradient2, Vegas};
use crate::concurrency::{
    AdaptiveConcurrencyBuilder, AdaptiveConcurrencyLayer, PressurePolicy, Shares,
};
use crate::pressure::PressureLevel;
use crate::pressure::PressureMonitor;
use crate::priority::Priority;

/// The limit algorithm.
///
/// ```
/// use tower_pressure::config::Algorithm;
/// assert_eq!(Algorithm::default(), Algorithm::Gradient2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Algorithm {
    /// Netflix's Gradient2 (the default).
    #[default]
    Gradient2,
    /// TCP Vegas.
    Vegas,
    /// Additive increase, multiplicative decrease.
    Aimd,
}

/// One value per pressure level.
///
/// ```
/// use tower_pressure::{PressureLevel, config::PerLevel};
/// let p = PerLevel { normal: 1, elevated: 2, high: 3, critical: 4, emergency: 5 };
/// assert_eq!(*p.get(PressureLevel::High), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerLevel<T> {
    /// At `Normal`.
    pub normal: T,
    /// At `Elevated`.
    pub elevated: T,
    /// At `High`.
    pub high: T,
    /// At `Critical`.
    pub critical: T,
    /// At `Emergency`.
    pub emergency: T,
}

impl<T> PerLevel<T> {
    /// The value at `level`.
    pub fn get(&self, level: PressureLevel) -> &T {
        match level {
            PressureLevel::Normal => &self.normal,
            PressureLevel::Elevated => &self.elevated,
            PressureLevel::High => &self.high,
            PressureLevel::Critical => &self.critical,
            PressureLevel::Emergency => &self.emergency,
        }
    }
}

/// Guaranteed shares of the limit per class, in percent (sum at most 100).
///
/// ```
/// use tower_pressure::config::SharesConfig;
/// assert_eq!(SharesConfig::default().critical.value(), 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SharesConfig {
    /// Share of `Critical` requests.
    pub critical: Percent,
    /// Share of `High` requests.
    pub high: Percent,
    /// Share of `Normal` requests.
    pub normal: Percent,
    /// Share of `Low` requests.
    pub low: Percent,
}

/// A LIFO queue for `Critical` requests at the limit.
///
/// ```
/// use tower_pressure::config::CriticalQueueConfig;
/// let q = CriticalQueueConfig { capacity: 16, timeout: "100ms".parse()? };
/// # let _ = q;
/// # Ok::<(), tower_pressure::config::units::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalQueueConfig {
    /// Most queued requests.
    pub capacity: usize,
    /// Longest wait in the queue.
    pub timeout: HumanDuration,
}

/// The `[inbound.concurrency]` section, mapped onto [`AdaptiveConcurrencyBuilder`].
///
/// ```
/// use tower_pressure::{Priority, config::Config};
/// let c = Config::from_toml(r#"
///     [inbound.concurrency]
///     algorithm = "vegas"
///     max_limit = 500
///     shares = { critical = 20 }
/// "#)?;
/// assert_eq!(c.inbound.concurrency.admit_from.high, Priority::Normal);
/// # Ok::<(), tower_pressure::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConcurrencyConfig {
    /// Name in events (default `"adaptive_concurrency"`).
    pub name: String,
    /// `gradient2` (default), `vegas` or `aimd`.
    pub algorithm: Algorithm,
    /// Starting limit (default: the algorithm's, 20).
    pub initial_limit: Option<u32>,
    /// Lowest limit (default: the algorithm's: Gradient2 and AIMD 20, Vegas 1).
    pub min_limit: Option<u32>,
    /// Highest limit (default: the algorithm's: Gradient2 and AIMD 200, Vegas 1000).
    pub max_limit: Option<u32>,
    /// Lowest class admitted per level (default low, low, normal, high, critical).
    pub admit_from: PerLevel<Priority>,
    /// Limit scale per level, percent (default 100, 90, 75, 50, 25).
    pub scale: PerLevel<Percent>,
    /// Guaranteed shares per class.
    pub shares: SharesConfig,
    /// Shed for pressure only when in-flight exceeds the latency-derived estimate
    /// (default `true`).
    pub bbr_check: bool,
    /// Inner errors count as drops (default `true`).
    pub errors_as_drops: bool,
    /// `retry_after` of refusals (default `"1s"`).
    pub retry_after: HumanDuration,
    /// Refusals map to 429 instead of 503 (default `false`).
    pub too_many_requests: bool,
    /// A queue for critical requests (default none).
    pub critical_queue: Option<CriticalQueueConfig>,
    /// Least time between limit-change events (default `"1s"`).
    pub event_interval: HumanDuration,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        use Priority::*;
        Self {
            name: "adaptive_concurrency".into(),
            algorithm: Algorithm::Gradient2,
            initial_limit: None,
            min_limit: None,
            max_limit: None,
            admit_from: PerLevel {
                normal: Low,
                elevated: Low,
                high: Normal,
                critical: High,
                emergency: Critical,
            },
            scale: PerLevel {
                normal: Percent::of(100.0),
                elevated: Percent::of(90.0),
                high: Percent::of(75.0),
                critical: Percent::of(50.0),
                emergency: Percent::of(25.0),
            },
            shares: SharesConfig::default(),
            bbr_check: true,
            errors_as_drops: true,
            retry_after: HumanDuration::secs(1),
            too_many_requests: false,
            critical_queue: None,
            event_interval: HumanDuration::secs(1),
        }
    }
}

const PATH: &str = "inbound.concurrency";

fn err(field: &str, e: crate::error::ConfigError) -> ConfigFileError {
    ConfigFileError::from_builder(&format!("{PATH}.{field}"), e, &[])
}

impl ConcurrencyConfig {
    /// An [`AdaptiveConcurrencyBuilder`] with this section applied.
    ///
    /// # Errors
    /// Invalid algorithm limits, a zero scale, shares above 100 %, with their paths.
    pub fn builder(
        &self,
        monitor: &PressureMonitor,
    ) -> Result<AdaptiveConcurrencyBuilder, ConfigFileError> {
        let mut b = AdaptiveConcurrencyLayer::builder(monitor.clone())
            .name(self.name.as_str())
            .bbr_check(self.bbr_check)
            .errors_as_drops(self.errors_as_drops)
            .retry_after(self.retry_after.get())
            .event_interval(self.event_interval.get());
        macro_rules! limits {
            ($builder:expr) => {{
                let mut a = $builder;
                if let Some(v) = self.initial_limit {
                    a = a.initial_limit(v);
                }
                if let Some(v) = self.min_limit {
                    a = a.min_limit(v);
                }
                if let Some(v) = self.max_limit {
                    a = a.max_limit(v);
                }
                a.build()
                    .map_err(|e| ConfigFileError::from_builder(PATH, e, &[]))?
            }};
        }
        b = match self.algorithm {
            Algorithm::Gradient2 => b.algorithm(limits!(Gradient2::builder())),
            Algorithm::Vegas => b.algorithm(limits!(Vegas::builder())),
            Algorithm::Aimd => b.algorithm(limits!(Aimd::builder())),
        };
        let mut policy = PressurePolicy::default();
        for level in PressureLevel::ALL {
            policy = policy.admit_from(level, *self.admit_from.get(level));
            let f = self.scale.get(level).fraction();
            if f <= 0.0 {
                return Err(ConfigFileError::new(
                    format!("{PATH}.scale.{level}"),
                    "0 would admit nothing; the scale must be above 0",
                    ErrorKind::Value,
                ));
            }
            policy = policy
                .scale_at(level, f)
                .map_err(|e| err(&format!("scale.{level}"), e))?;
        }
        b = b.policy(policy);
        let mut shares = Shares::none();
        for (class, p) in [
            (Priority::Critical, self.shares.critical),
            (Priority::High, self.shares.high),
            (Priority::Normal, self.shares.normal),
            (Priority::Low, self.shares.low),
        ] {
            shares = shares.with(class, p.fraction()).map_err(|e| {
                ConfigFileError::new(
                    format!("{PATH}.shares.{class}"),
                    format!("shares sum above 100 ({})", e.reason()),
                    ErrorKind::Builder(e),
                )
            })?;
        }
        b = b.shares(shares);
        if self.too_many_requests {
            b = b.too_many_requests();
        }
        if let Some(q) = self.critical_queue {
            b = b.critical_queue(q.capacity, q.timeout.get());
        }
        Ok(b)
    }

    /// Builds the layer; builder errors come back with the document path.
    ///
    /// # Errors
    /// The first refused setting.
    ///
    /// ```
    /// use tower_pressure::{config::ConcurrencyConfig, pressure::PressureMonitor};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let layer = ConcurrencyConfig::default().layer(&monitor)?;
    /// # let _ = layer;
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn layer(
        &self,
        monitor: &PressureMonitor,
    ) -> Result<AdaptiveConcurrencyLayer, ConfigFileError> {
        self.builder(monitor)?
            .build()
            .map_err(|e| ConfigFileError::from_builder(PATH, e, &[]))
    }
}
