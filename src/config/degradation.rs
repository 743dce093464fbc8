//! `[degradation]`: the per-level constraints table and custom knobs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{ConfigFileError, ErrorKind};
use super::units::{HumanDuration, Percent};
use crate::constraints::{Constraints, HasExtensions};
use crate::degradation::{DegradationLayer, DegradationPolicy};
use crate::pressure::PressureLevel;
use crate::pressure::PressureMonitor;

/// The `[degradation]` section, mapped onto [`DegradationPolicy`]. A level's missing keys
/// keep the crate's default for that level (the table in the README).
///
/// ```
/// use tower_pressure::{PressureLevel, config::Config};
/// let c = Config::from_toml(r#"
///     [degradation.high]
///     entity_limit = 60
///     knobs = { max_tokens = 1024 }
/// "#)?;
/// let policy = c.degradation.policy()?;
/// assert_eq!(policy.constraints(PressureLevel::High).entity_limit(100), 60);
/// assert!(policy.constraints(PressureLevel::High).should_skip_optional()); // default kept
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DegradationConfig {
    /// A per-request deadline set by the layer (default none).
    pub deadline: Option<HumanDuration>,
    /// Constraints at `Normal`.
    pub normal: LevelConstraints,
    /// Constraints at `Elevated`.
    pub elevated: LevelConstraints,
    /// Constraints at `High`.
    pub high: LevelConstraints,
    /// Constraints at `Critical`.
    pub critical: LevelConstraints,
    /// Constraints at `Emergency`.
    pub emergency: LevelConstraints,
}

/// One row of the degradation table; missing keys keep the level's default.
///
/// ```
/// use tower_pressure::config::LevelConstraints;
/// assert!(LevelConstraints::default().entity_limit.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LevelConstraints {
    /// Share of the normal entity limit, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_limit: Option<Percent>,
    /// Share of the normal embedding dimensions, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_dimensions: Option<Percent>,
    /// Skip optional analysis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_optional: Option<bool>,
    /// Skip expensive work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_expensive: Option<bool>,
    /// Use simplified methods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simplified: Option<bool>,
    /// Custom knobs (name to number) handed to handlers as a [`Knobs`] extension at this
    /// level.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub knobs: BTreeMap<String, f64>,
}

/// Custom knobs of the current level, inserted by a degradation layer built from a
/// document whose level has `knobs` (e.g. `max_tokens`).
///
/// ```
/// use tower_pressure::config::Knobs;
/// let req = http::Request::new(());
/// assert_eq!(Knobs::from_request(&req).get("max_tokens"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Knobs(Arc<BTreeMap<String, f64>>);

impl Knobs {
    /// The knobs a degradation layer put on `req` (empty when none).
    pub fn from_request<R: HasExtensions + ?Sized>(req: &R) -> Knobs {
        req.extensions().get::<Knobs>().cloned().unwrap_or_default()
    }

    /// The value of knob `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.get(name).copied()
    }

    /// Every knob.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl DegradationConfig {
    fn level(&self, level: PressureLevel) -> &LevelConstraints {
        match level {
            PressureLevel::Normal => &self.normal,
            PressureLevel::Elevated => &self.elevated,
            PressureLevel::High => &self.high,
            PressureLevel::Critical => &self.critical,
            PressureLevel::Emergency => &self.emergency,
        }
    }

    /// The document with every level's missing keys filled with the crate's defaults (so two
    /// documents that mean the same table compare equal).
    ///
    /// ```
    /// use tower_pressure::config::DegradationConfig;
    /// let full = DegradationConfig::default().resolved();
    /// assert_eq!(full.high.skip_optional, Some(true));
    /// assert_eq!(full.resolved(), full);
    /// ```
    pub fn resolved(&self) -> DegradationConfig {
        let mut out = self.clone();
        for level in PressureLevel::ALL {
            let d = Constraints::for_level(level);
            let row = match level {
                PressureLevel::Normal => &mut out.normal,
                PressureLevel::Elevated => &mut out.elevated,
                PressureLevel::High => &mut out.high,
                PressureLevel::Critical => &mut out.critical,
                PressureLevel::Emergency => &mut out.emergency,
            };
            let pct = |f: f32| Percent::of((f64::from(f) * 1000.0).round() / 10.0);
            row.entity_limit.get_or_insert(pct(d.entity_limit_factor()));
            row.embedding_dimensions
                .get_or_insert(pct(d.embedding_dimensions_factor()));
            row.skip_optional.get_or_insert(d.should_skip_optional());
            row.skip_expensive.get_or_insert(d.should_skip_expensive());
            row.simplified.get_or_insert(d.should_use_simplified());
        }
        out
    }

    /// The [`DegradationPolicy`] of this table.
    ///
    /// # Errors
    /// A non-finite knob value, with its path.
    pub fn policy(&self) -> Result<DegradationPolicy, ConfigFileError> {
        let mut policy = DegradationPolicy::default();
        for level in PressureLevel::ALL {
            let row = self.level(level);
            let mut c = Constraints::for_level(level);
            if let Some(p) = row.entity_limit {
                c = c.with_entity_limit_factor(p.fraction() as f32);
            }
            if let Some(p) = row.embedding_dimensions {
                c = c.with_embedding_dimensions_factor(p.fraction() as f32);
            }
            if let Some(on) = row.skip_optional {
                c = c.with_skip_optional(on);
            }
            if let Some(on) = row.skip_expensive {
                c = c.with_skip_expensive(on);
            }
            if let Some(on) = row.simplified {
                c = c.with_use_simplified(on);
            }
            policy = policy.set(level, c);
            for (name, v) in &row.knobs {
                if !v.is_finite() {
                    return Err(ConfigFileError::new(
                        format!("degradation.{level}.knobs.{name}"),
                        format!("{v} is not a finite number"),
                        ErrorKind::Value,
                    ));
                }
            }
            if !row.knobs.is_empty() {
                let knobs = Knobs(Arc::new(row.knobs.clone()));
                policy = policy.on_level(level, move |ext| {
                    ext.insert(knobs.clone());
                });
            }
        }
        Ok(policy)
    }

    /// A [`DegradationLayer`] on `monitor` with this table and deadline.
    ///
    /// # Errors
    /// As [`DegradationConfig::policy`].
    ///
    /// ```
    /// use tower_pressure::{config::DegradationConfig, pressure::PressureMonitor};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let layer = DegradationConfig::default().layer(monitor)?;
    /// # let _ = layer;
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn layer(&self, monitor: PressureMonitor) -> Result<DegradationLayer, ConfigFileError> {
        let layer = DegradationLayer::with_policy(monitor, self.policy()?);
        Ok(match self.deadline {
            Some(d) if d.get().is_zero() => {
                return Err(ConfigFileError::new(
                    "degradation.deadline",
                    "must be greater than zero",
                    ErrorKind::Value,
                ));
            }
            Some(d) => layer.deadline(d.get()),
            None => layer,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigFileError> {
        let (monitor, _) = PressureMonitor::manual();
        self.layer(monitor).map(drop)
    }
}
