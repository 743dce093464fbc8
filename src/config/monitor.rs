//! `[monitor]`: sources, thresholds, margins, dwell and interval of the pressure monitor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{ConfigFileError, ErrorKind, nearest};
use super::units::HumanDuration;
use crate::pressure::{PressureMonitorBuilder, Signal, Thresholds};

/// The `[monitor]` section, mapped onto [`PressureMonitorBuilder`].
///
/// ```
/// use tower_pressure::config::Config;
/// let c = Config::from_toml(r#"
///     [monitor]
///     interval = "500ms"
///     [monitor.thresholds.memory]
///     elevated = 60
///     high = 70
///     critical = 80
///     emergency = 90
///     margin = 3
/// "#)?;
/// let monitor = c.monitor.builder()?.build_unstarted()?;
/// let t = monitor.thresholds(tower_pressure::pressure::Signal::Memory);
/// # let _ = t;
/// assert_eq!(monitor.interval().as_millis(), 500);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// How often every source is sampled (default `"1s"`).
    pub interval: HumanDuration,
    /// Samples below `threshold - margin` before the level steps down (default 2).
    pub dwell: u32,
    /// How often the scheduling-lag probe runs (default `"100ms"`).
    pub lag_probe_interval: HumanDuration,
    /// Which built-in sources are read.
    pub sources: SourcesConfig,
    /// Thresholds per built-in signal (`cpu`, `memory`, `psi_cpu`, ...), replacing its
    /// defaults. Reloadable.
    pub thresholds: BTreeMap<String, ThresholdsConfig>,
    /// Built-in signals read but never driving the level.
    pub observe_only: Vec<String>,
    /// Thresholds of custom gauges by name, for
    /// [`MonitorConfig::gauge_thresholds`] when the gauge is registered in code.
    pub gauges: BTreeMap<String, ThresholdsConfig>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: HumanDuration::secs(1),
            dwell: 2,
            lag_probe_interval: HumanDuration::millis(100),
            sources: SourcesConfig::default(),
            thresholds: BTreeMap::new(),
            observe_only: Vec::new(),
            gauges: BTreeMap::new(),
        }
    }
}

/// `[monitor.sources]`: the built-in sources (all on by default).
///
/// ```
/// use tower_pressure::config::SourcesConfig;
/// assert!(SourcesConfig::default().psi);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SourcesConfig {
    /// Host CPU and memory through sysinfo.
    pub system: bool,
    /// CPU and memory relative to the cgroup's limits.
    pub cgroup: bool,
    /// Linux PSI.
    pub psi: bool,
    /// The process's RSS (observed only).
    pub process: bool,
    /// tokio runtime metrics and the scheduling-lag probe.
    pub runtime: bool,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        Self {
            system: true,
            cgroup: true,
            psi: true,
            process: true,
            runtime: true,
        }
    }
}

/// The four thresholds of a signal and its hysteresis margin (default 5).
///
/// ```
/// use tower_pressure::config::ThresholdsConfig;
/// let t = ThresholdsConfig { elevated: 10.0, high: 20.0, critical: 30.0, emergency: 40.0, margin: 2.0 };
/// assert_eq!(t.thresholds()?.margin(), 2.0);
/// # Ok::<(), tower_pressure::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsConfig {
    /// Threshold of `Elevated`.
    pub elevated: f64,
    /// Threshold of `High`.
    pub high: f64,
    /// Threshold of `Critical`.
    pub critical: f64,
    /// Threshold of `Emergency`.
    pub emergency: f64,
    /// Hysteresis margin (in the signal's unit).
    #[serde(default = "default_margin")]
    pub margin: f64,
}

fn default_margin() -> f64 {
    5.0
}

impl ThresholdsConfig {
    /// The validated [`Thresholds`].
    ///
    /// # Errors
    /// When the values are not increasing, negative or not finite.
    pub fn thresholds(&self) -> Result<Thresholds, crate::error::ConfigError> {
        Thresholds::with_margin(
            [self.elevated, self.high, self.critical, self.emergency],
            self.margin,
        )
    }
}

/// The built-in signal called `name`, or an error suggesting the nearest name.
pub(crate) fn signal_named(path: &str, name: &str) -> Result<Signal, ConfigFileError> {
    Signal::BUILTIN
        .iter()
        .copied()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| {
            let suggestion = nearest(name, Signal::BUILTIN.iter().map(|s| s.as_str()));
            let msg = match &suggestion {
                Some(s) => format!("unknown signal `{name}`; did you mean `{s}`?"),
                None => format!(
                    "unknown signal `{name}`; expected one of {}",
                    Signal::BUILTIN.map(|s| s.as_str()).join(", ")
                ),
            };
            ConfigFileError::new(path, msg, ErrorKind::UnknownKey { suggestion })
        })
}

impl MonitorConfig {
    /// The validated thresholds per signal (`None`: observed only), in document order.
    pub(crate) fn threshold_table(
        &self,
    ) -> Result<Vec<(Signal, Option<Thresholds>)>, ConfigFileError> {
        let mut out = Vec::new();
        for (name, t) in &self.thresholds {
            let path = format!("monitor.thresholds.{name}");
            let signal = signal_named(&path, name)?;
            let th = t
                .thresholds()
                .map_err(|e| ConfigFileError::from_builder(&path, e, &[]))?;
            if signal.is_percent() {
                th.check_percent("").map_err(|e| {
                    let field = e.field().trim_start_matches('.').to_string();
                    ConfigFileError::from_builder(
                        &path,
                        crate::error::ConfigError::new(field, e.value(), e.reason()),
                        &[],
                    )
                })?;
            }
            out.push((signal, Some(th)));
        }
        for (i, name) in self.observe_only.iter().enumerate() {
            let signal = signal_named(&format!("monitor.observe_only[{i}]"), name)?;
            out.push((signal, None));
        }
        Ok(out)
    }

    /// The thresholds of the custom gauge `name` from `[monitor.gauges.<name>]` (`None` when
    /// the document has none: the gauge is observed only).
    ///
    /// # Errors
    /// When the thresholds are invalid.
    ///
    /// ```
    /// use tower_pressure::config::Config;
    /// let c = Config::from_toml("[monitor.gauges.queue]\nelevated = 100\nhigh = 200\ncritical = 400\nemergency = 800\n")?;
    /// assert!(c.monitor.gauge_thresholds("queue")?.is_some());
    /// assert!(c.monitor.gauge_thresholds("other")?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gauge_thresholds(&self, name: &str) -> Result<Option<Thresholds>, ConfigFileError> {
        self.gauges
            .get(name)
            .map(|t| {
                t.thresholds().map_err(|e| {
                    ConfigFileError::from_builder(&format!("monitor.gauges.{name}"), e, &[])
                })
            })
            .transpose()
    }

    /// A [`PressureMonitorBuilder`] with this section applied; add gauges or manual sources
    /// to it, then `build()`.
    ///
    /// # Errors
    /// An unknown signal name or invalid thresholds, with the document path.
    ///
    /// ```
    /// use tower_pressure::config::MonitorConfig;
    /// let m = MonitorConfig::default().builder()?.without_system_sources().build_unstarted()?;
    /// assert_eq!(m.interval().as_secs(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(&self) -> Result<PressureMonitorBuilder, ConfigFileError> {
        let s = self.sources;
        let mut b = PressureMonitorBuilder::default()
            .interval(self.interval.get())
            .dwell(self.dwell)
            .lag_probe_interval(self.lag_probe_interval.get())
            .system(s.system)
            .cgroup(s.cgroup)
            .psi(s.psi)
            .process(s.process)
            .runtime(s.runtime);
        for (signal, t) in self.threshold_table()? {
            b = match t {
                Some(t) => b.thresholds(signal, t),
                None => b.observe_only(signal),
            };
        }
        Ok(b)
    }

    /// Applies this section's thresholds to a running monitor (for a monitor built in code;
    /// [`ConfigHandle`](super::ConfigHandle) does this on reload).
    ///
    /// # Errors
    /// An unknown signal or invalid thresholds, with the document path; nothing changes.
    ///
    /// ```
    /// use tower_pressure::{PressureMonitor, config::Config, pressure::Signal};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let c = Config::from_toml("[monitor.thresholds.manual]\nelevated = 1\nhigh = 2\ncritical = 3\nemergency = 4\n")?;
    /// c.monitor.apply_thresholds(&monitor)?;
    /// assert!(monitor.thresholds(Signal::Manual).is_some());
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn apply_thresholds(
        &self,
        monitor: &crate::pressure::PressureMonitor,
    ) -> Result<(), ConfigFileError> {
        let table = self.threshold_table()?;
        monitor
            .set_thresholds(&table)
            .map_err(|e| ConfigFileError::from_builder("monitor", e, &[]))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigFileError> {
        let b = self.builder()?.without_system_sources();
        b.build_unstarted()
            .map(drop)
            .map_err(|e| ConfigFileError::from_builder("monitor", e, &[]))?;
        for name in self.gauges.keys() {
            self.gauge_thresholds(name)?;
        }
        Ok(())
    }
}
