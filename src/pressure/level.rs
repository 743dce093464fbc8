//! Pressure levels, per-signal thresholds, and the hysteresis that keeps the level from
//! flapping. Pure code: no clock, no runtime; time is counted in samples.

use std::fmt;
use std::str::FromStr;

use crate::error::{ConfigError, check_range};

/// How hard the process is pressed, from `Normal` to `Emergency`. Ordered.
///
/// ```
/// use tower_pressure::PressureLevel;
/// assert!(PressureLevel::Critical > PressureLevel::High);
/// assert_eq!(PressureLevel::High.to_string(), "high");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[repr(u8)]
pub enum PressureLevel {
    /// Below every threshold.
    #[default]
    Normal = 0,
    /// Above the first threshold (default 65 % for CPU and memory).
    Elevated = 1,
    /// Above the second (default 75 %).
    High = 2,
    /// Above the third (default 85 %).
    Critical = 3,
    /// Above the fourth (default 95 %).
    Emergency = 4,
}

impl PressureLevel {
    /// Every level, lowest first.
    pub const ALL: [PressureLevel; 5] = [
        PressureLevel::Normal,
        PressureLevel::Elevated,
        PressureLevel::High,
        PressureLevel::Critical,
        PressureLevel::Emergency,
    ];

    /// The level for a number produced by [`PressureLevel::as_u8`]; out-of-range saturates to
    /// `Emergency`.
    pub const fn from_u8(v: u8) -> PressureLevel {
        match v {
            0 => PressureLevel::Normal,
            1 => PressureLevel::Elevated,
            2 => PressureLevel::High,
            3 => PressureLevel::Critical,
            _ => PressureLevel::Emergency,
        }
    }

    /// `Normal = 0` .. `Emergency = 4`.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Index for per-level arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PressureLevel::Normal => "normal",
            PressureLevel::Elevated => "elevated",
            PressureLevel::High => "high",
            PressureLevel::Critical => "critical",
            PressureLevel::Emergency => "emergency",
        }
    }

    /// The next lower level (`Normal` stays `Normal`).
    pub const fn step_down(self) -> PressureLevel {
        match self {
            PressureLevel::Normal | PressureLevel::Elevated => PressureLevel::Normal,
            PressureLevel::High => PressureLevel::Elevated,
            PressureLevel::Critical => PressureLevel::High,
            PressureLevel::Emergency => PressureLevel::Critical,
        }
    }
}

impl fmt::Display for PressureLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PressureLevel {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PressureLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                ConfigError::new(
                    "level",
                    s,
                    "expected normal, elevated, high, critical or emergency",
                )
            })
    }
}

/// The four thresholds of one signal, and the hysteresis margin used to leave a level.
///
/// A level is entered as soon as the signal reaches its threshold; it is left only once the
/// signal is below `threshold - margin`.
///
/// ```
/// use tower_pressure::pressure::Thresholds;
/// let t = Thresholds::new(65.0, 75.0, 85.0, 95.0).unwrap();
/// assert!(Thresholds::new(80.0, 75.0, 85.0, 95.0).is_err()); // not increasing
/// # let _ = t;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Thresholds {
    levels: [f64; 4],
    margin: f64,
}

impl Thresholds {
    /// The seed's defaults for CPU and memory utilisation: 65 / 75 / 85 / 95 %, margin 5.
    pub const UTILISATION: Thresholds = Thresholds {
        levels: [65.0, 75.0, 85.0, 95.0],
        margin: 5.0,
    };

    /// Defaults for CPU PSI (`some avg10`, % of time some task waited for a CPU):
    /// 20 / 40 / 60 / 80, margin 5. On a 2-core machine 2, 4 and 8 busy threads gave
    /// 1.3, 33.8 and 55.3: PSI rises with the run queue where utilisation stays at 100 %.
    pub const PSI_CPU: Thresholds = Thresholds {
        levels: [20.0, 40.0, 60.0, 80.0],
        margin: 5.0,
    };

    /// Defaults for memory PSI (`some avg10`): any sustained memory stall is serious, so
    /// 5 / 10 / 20 / 40, margin 2.
    pub const PSI_MEMORY: Thresholds = Thresholds {
        levels: [5.0, 10.0, 20.0, 40.0],
        margin: 2.0,
    };

    /// Defaults for IO PSI (`some avg10`): 20 / 40 / 60 / 80, margin 5.
    pub const PSI_IO: Thresholds = Thresholds {
        levels: [20.0, 40.0, 60.0, 80.0],
        margin: 5.0,
    };

    /// Defaults for tokio scheduling lag in milliseconds (how late a timer fires):
    /// 20 / 50 / 100 / 250 ms, margin 5 ms.
    pub const SCHEDULING_LAG_MS: Thresholds = Thresholds {
        levels: [20.0, 50.0, 100.0, 250.0],
        margin: 5.0,
    };

    /// Thresholds for `Elevated`, `High`, `Critical` and `Emergency`, with a margin of 5.
    ///
    /// # Errors
    /// When a value is not finite or negative, or the values are not strictly increasing.
    pub fn new(
        elevated: f64,
        high: f64,
        critical: f64,
        emergency: f64,
    ) -> Result<Self, ConfigError> {
        Self::with_margin([elevated, high, critical, emergency], 5.0)
    }

    /// Thresholds with an explicit hysteresis margin (in the signal's own unit).
    ///
    /// # Errors
    /// As [`Thresholds::new`], and when the margin is negative or not finite.
    pub fn with_margin(levels: [f64; 4], margin: f64) -> Result<Self, ConfigError> {
        const NAMES: [&str; 4] = ["elevated", "high", "critical", "emergency"];
        for (i, v) in levels.iter().enumerate() {
            check_range(NAMES[i], *v, 0.0, f64::MAX)?;
            if i > 0 && *v <= levels[i - 1] {
                return Err(ConfigError::new(
                    NAMES[i],
                    *v,
                    format!(
                        "thresholds must increase: {} is {}",
                        NAMES[i - 1],
                        levels[i - 1]
                    ),
                ));
            }
        }
        check_range("margin", margin, 0.0, f64::MAX)?;
        Ok(Self { levels, margin })
    }

    /// Checks the thresholds are percentages (all within `0..=100`), naming `field` otherwise.
    pub(crate) fn check_percent(&self, field: &str) -> Result<(), ConfigError> {
        for (i, v) in self.levels.iter().enumerate() {
            let name = ["elevated", "high", "critical", "emergency"][i];
            check_range(&format!("{field}.{name}"), *v, 0.0, 100.0)?;
        }
        Ok(())
    }

    /// The threshold of `level` (`None` for `Normal`).
    pub fn threshold(&self, level: PressureLevel) -> Option<f64> {
        match level {
            PressureLevel::Normal => None,
            l => Some(self.levels[l.index() - 1]),
        }
    }

    /// The hysteresis margin.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// The level `value` reaches with these thresholds (no hysteresis).
    pub fn level_of(&self, value: f64) -> PressureLevel {
        if value.is_nan() {
            return PressureLevel::Normal;
        }
        let mut level = PressureLevel::Normal;
        for (i, t) in self.levels.iter().enumerate() {
            if value >= *t {
                level = PressureLevel::from_u8(i as u8 + 1);
            }
        }
        level
    }

    /// The level `value` would still hold when leaving: thresholds lowered by the margin.
    pub fn sticky_level_of(&self, value: f64) -> PressureLevel {
        if value.is_nan() {
            return PressureLevel::Normal;
        }
        self.level_of(value + self.margin)
    }
}

/// Turns per-sample signal levels into a level that does not flap.
///
/// * Up: as soon as any signal reaches a threshold, the level jumps to it.
/// * Down: only when every signal is below `threshold - margin` of the current level for
///   `dwell` consecutive samples, and then one level at a time (seed 001's staged recovery):
///   from Critical, it takes at least `dwell` samples to reach High and as many again to reach
///   Elevated.
///
/// ```
/// use tower_pressure::pressure::{HysteresisTracker, PressureLevel, Thresholds};
/// let t = Thresholds::UTILISATION;
/// let mut h = HysteresisTracker::new(2);
/// assert_eq!(h.observe(t.level_of(90.0), t.sticky_level_of(90.0)), PressureLevel::Critical);
/// assert_eq!(h.observe(t.level_of(10.0), t.sticky_level_of(10.0)), PressureLevel::Critical);
/// assert_eq!(h.observe(t.level_of(10.0), t.sticky_level_of(10.0)), PressureLevel::High);
/// ```
#[derive(Debug, Clone)]
pub struct HysteresisTracker {
    level: PressureLevel,
    dwell: u32,
    below_for: u32,
}

impl HysteresisTracker {
    /// A tracker at `Normal` that needs `dwell` samples below a level to step down (at least 1).
    pub fn new(dwell: u32) -> Self {
        Self {
            level: PressureLevel::Normal,
            dwell: dwell.max(1),
            below_for: 0,
        }
    }

    /// The current level.
    pub fn level(&self) -> PressureLevel {
        self.level
    }

    /// Feeds one sample: `raw` is the highest level any signal reaches now, `sticky` the
    /// highest level any signal still holds with thresholds lowered by their margins
    /// (`sticky >= raw`). Returns the new level.
    pub fn observe(&mut self, raw: PressureLevel, sticky: PressureLevel) -> PressureLevel {
        if raw > self.level {
            self.level = raw;
            self.below_for = 0;
        } else if sticky < self.level {
            self.below_for += 1;
            if self.below_for >= self.dwell {
                self.level = self.level.step_down();
                self.below_for = 0;
            }
        } else {
            self.below_for = 0;
        }
        self.level
    }

    /// Forces the level (for example when a user resets the monitor).
    pub fn reset(&mut self, level: PressureLevel) {
        self.level = level;
        self.below_for = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_of_each_band() {
        let t = Thresholds::UTILISATION;
        assert_eq!(t.level_of(0.0), PressureLevel::Normal);
        assert_eq!(t.level_of(64.9), PressureLevel::Normal);
        assert_eq!(t.level_of(65.0), PressureLevel::Elevated);
        assert_eq!(t.level_of(75.0), PressureLevel::High);
        assert_eq!(t.level_of(85.0), PressureLevel::Critical);
        assert_eq!(t.level_of(95.0), PressureLevel::Emergency);
        assert_eq!(t.level_of(f64::NAN), PressureLevel::Normal);
        assert_eq!(t.sticky_level_of(71.0), PressureLevel::High);
        assert_eq!(t.sticky_level_of(69.9), PressureLevel::Elevated);
    }

    #[test]
    fn thresholds_validation_names_field() {
        let e = Thresholds::new(65.0, 60.0, 85.0, 95.0).unwrap_err();
        assert_eq!(e.field(), "high");
        let e = Thresholds::new(f64::NAN, 60.0, 85.0, 95.0).unwrap_err();
        assert_eq!(e.field(), "elevated");
        let e = Thresholds::with_margin([1.0, 2.0, 3.0, 4.0], -1.0).unwrap_err();
        assert_eq!(e.field(), "margin");
        let e = Thresholds::new(65.0, 75.0, 85.0, 195.0)
            .unwrap()
            .check_percent("thresholds.cpu")
            .unwrap_err();
        assert_eq!(e.field(), "thresholds.cpu.emergency");
    }

    #[test]
    fn staged_recovery_one_level_per_dwell() {
        let t = Thresholds::UTILISATION;
        let mut h = HysteresisTracker::new(2);
        let mut feed = |v: f64| h.observe(t.level_of(v), t.sticky_level_of(v));
        assert_eq!(feed(97.0), PressureLevel::Emergency);
        let seq: Vec<_> = (0..8).map(|_| feed(10.0)).collect();
        use PressureLevel::*;
        assert_eq!(
            seq,
            [
                Emergency, Critical, Critical, High, High, Elevated, Elevated, Normal
            ]
        );
    }

    #[test]
    fn hovering_signal_does_not_flap() {
        // A signal hovering around the 75 % threshold: +-2 points of noise.
        let t = Thresholds::UTILISATION;
        let mut naive_changes = 0;
        let mut changes = 0;
        let mut h = HysteresisTracker::new(2);
        let mut last_naive = PressureLevel::Normal;
        let mut last = PressureLevel::Normal;
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..600 {
            let v = 75.0 + (rng.f64() * 4.0 - 2.0);
            let naive = t.level_of(v);
            if naive != last_naive {
                naive_changes += 1;
                last_naive = naive;
            }
            let l = h.observe(t.level_of(v), t.sticky_level_of(v));
            if l != last {
                changes += 1;
                last = l;
            }
        }
        assert!(
            naive_changes >= 200,
            "naive mapping changed {naive_changes} times"
        );
        assert!(changes <= 3, "hysteresis changed {changes} times");
    }
}
