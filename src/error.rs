//! Configuration errors shared by every builder in the crate.

use std::fmt;

/// A configuration value was rejected by a builder's `build()`.
///
/// The error names the field, the value that was given and why it was refused, so that a
/// misconfiguration read from a file or the environment can be traced back to its source.
///
/// ```
/// use tower_pressure::pressure::PressureMonitor;
///
/// let err = PressureMonitor::builder()
///     .interval(std::time::Duration::ZERO)
///     .build_unstarted()
///     .unwrap_err();
/// assert_eq!(err.field(), "interval");
/// assert!(err.to_string().contains("interval"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: String,
    value: String,
    reason: String,
}

impl ConfigError {
    /// Creates an error for `field`, which was given `value`, refused because of `reason`.
    pub fn new(
        field: impl Into<String>,
        value: impl fmt::Debug,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: format!("{value:?}"),
            reason: reason.into(),
        }
    }

    /// The name of the offending field, e.g. `"thresholds.cpu.high"`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The offending value, as it was given (`Debug`-formatted).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why the value was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: `{}` = {}: {}",
            self.field, self.value, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// Checks `value` is finite and within `min..=max`, naming `field` otherwise.
pub(crate) fn check_range(field: &str, value: f64, min: f64, max: f64) -> Result<f64, ConfigError> {
    if !value.is_finite() {
        return Err(ConfigError::new(field, value, "must be a finite number"));
    }
    if value < min || value > max {
        return Err(ConfigError::new(
            field,
            value,
            format!("must be within {min}..={max}"),
        ));
    }
    Ok(value)
}
