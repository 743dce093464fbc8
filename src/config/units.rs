//! Human units for configuration documents: durations (`"250ms"`, `"1m30s"`), byte sizes
//! (`"512MiB"`, `"1GB"`) and percentages (`0`–`100`).
//!
//! Each type deserializes from the human form and serializes back to it, so a document
//! written by [`Config::to_json`](super::Config::to_json) reads back unchanged.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written with units: `"250ms"`, `"30s"`, `"1m30s"`, `"1.5s"`, `"2h"`.
///
/// Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`. Components add up and may be
/// fractional; a bare number is refused because its unit would be a guess.
///
/// ```
/// use std::time::Duration;
/// use tower_pressure::config::units::HumanDuration;
///
/// let d: HumanDuration = "1m30s".parse()?;
/// assert_eq!(d.get(), Duration::from_secs(90));
/// assert_eq!(d.to_string(), "1m30s");
/// assert!("30".parse::<HumanDuration>().is_err());
/// # Ok::<(), tower_pressure::config::units::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// A duration of `secs` seconds.
    ///
    /// ```
    /// use tower_pressure::config::units::HumanDuration;
    /// assert_eq!(HumanDuration::secs(2).get().as_millis(), 2000);
    /// ```
    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// A duration of `ms` milliseconds.
    ///
    /// ```
    /// use tower_pressure::config::units::HumanDuration;
    /// assert_eq!(HumanDuration::millis(250).to_string(), "250ms");
    /// ```
    pub const fn millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// The duration.
    ///
    /// ```
    /// use tower_pressure::config::units::HumanDuration;
    /// assert_eq!(HumanDuration::secs(1).get(), std::time::Duration::from_secs(1));
    /// ```
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

/// A value in human units could not be read.
///
/// ```
/// use tower_pressure::config::units::ByteSize;
/// let err = "12 parsecs".parse::<ByteSize>().unwrap_err();
/// assert!(err.to_string().contains("unknown size unit `parsecs`"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError(String);

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnitError {}

/// Splits `"1m30s"` into `[(1.0, "m"), (30.0, "s")]`.
fn components(s: &str) -> Result<Vec<(f64, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty value".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let number: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..num_end]))?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        out.push((number, &rest[..unit_end]));
        rest = rest[unit_end..].trim_start();
    }
    Ok(out)
}

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let err = |m: String| UnitError(format!("invalid duration {s:?}: {m}"));
        let mut total = 0.0f64;
        for (n, unit) in components(s).map_err(err)? {
            let scale = match unit {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                "" => {
                    return Err(err(format!(
                        "`{n}` has no unit (write e.g. \"{n}s\" or \"{n}ms\")"
                    )));
                }
                u => {
                    return Err(err(format!(
                        "unknown duration unit `{u}` (use ns, us, ms, s, m, h or d)"
                    )));
                }
            };
            total += n * scale;
        }
        // Durations from configuration are bounded to 100 years so later arithmetic
        // (`Instant + d`, multipliers) stays far from overflow.
        if !total.is_finite() || total > 100.0 * 365.0 * 86400.0 {
            return Err(err("too large (at most 100 years)".into()));
        }
        Ok(Self(Duration::from_secs_f64(total)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        let nanos = d.subsec_nanos();
        if d.as_secs() == 0 || !nanos.is_multiple_of(1_000_000) {
            // Below a second, or not whole milliseconds: one exact sub-second unit.
            let total = d.as_nanos();
            return if total.is_multiple_of(1_000_000) {
                write!(f, "{}ms", total / 1_000_000)
            } else if total.is_multiple_of(1_000) {
                write!(f, "{}us", total / 1_000)
            } else {
                write!(f, "{total}ns")
            };
        }
        let mut secs = d.as_secs();
        let ms = nanos / 1_000_000;
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        if secs > 0 {
            write!(f, "{secs}s")?;
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, e.g. \"250ms\", \"30s\" or \"1m30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{v} has no unit (write e.g. \"{v}s\" or \"{v}ms\")"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{v} has no unit (write e.g. \"{v}s\" or \"{v}ms\")"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{v} has no unit (write e.g. \"{v}s\" or \"{v}ms\")"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes written with units: `"512MiB"`, `"1GB"`, `"64KiB"`, `"100B"`.
///
/// Decimal units (`kB`/`KB`, `MB`, `GB`, `TB`) are powers of 1000, binary ones (`KiB`,
/// `MiB`, `GiB`, `TiB`) powers of 1024. A bare integer is a number of bytes.
///
/// ```
/// use tower_pressure::config::units::ByteSize;
///
/// assert_eq!("512MiB".parse::<ByteSize>()?.bytes(), 512 * 1024 * 1024);
/// assert_eq!("1GB".parse::<ByteSize>()?.bytes(), 1_000_000_000);
/// assert_eq!(ByteSize(512 * 1024 * 1024).to_string(), "512MiB");
/// # Ok::<(), tower_pressure::config::units::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    ///
    /// ```
    /// use tower_pressure::config::units::ByteSize;
    /// assert_eq!(ByteSize(10).bytes(), 10);
    /// ```
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

const SIZE_UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let err = |m: String| UnitError(format!("invalid size {s:?}: {m}"));
        let mut total = 0.0f64;
        for (n, unit) in components(s).map_err(err)? {
            let scale = match unit {
                "" | "B" | "b" => 1.0,
                "kB" | "KB" | "kb" => 1e3,
                u => match SIZE_UNITS
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(u))
                {
                    Some((_, size)) => *size as f64,
                    None => {
                        return Err(err(format!(
                            "unknown size unit `{u}` (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
                        )));
                    }
                },
            };
            total += n * scale;
        }
        if !total.is_finite() || total >= u64::MAX as f64 {
            return Err(err("too large".into()));
        }
        Ok(Self(total.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in SIZE_UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size, e.g. \"512MiB\" or \"1GB\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A percentage, `0` to `100` inclusive (`50` or `12.5`; the string `"50%"` also reads).
///
/// ```
/// use tower_pressure::config::units::Percent;
///
/// let p = Percent::new(12.5)?;
/// assert_eq!(p.fraction(), 0.125);
/// assert_eq!(Percent::new(150.0).unwrap_err().to_string(), "150 is above 100");
/// # Ok::<(), tower_pressure::config::units::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(f64);

impl Percent {
    /// `value` percent.
    ///
    /// # Errors
    /// When `value` is not a finite number within `0..=100`.
    ///
    /// ```
    /// use tower_pressure::config::units::Percent;
    /// assert!(Percent::new(-1.0).is_err());
    /// ```
    pub fn new(value: f64) -> Result<Self, UnitError> {
        if !value.is_finite() {
            Err(UnitError(format!("{value} is not a finite number")))
        } else if value < 0.0 {
            Err(UnitError(format!("{value} is below 0")))
        } else if value > 100.0 {
            Err(UnitError(format!("{value} is above 100")))
        } else {
            Ok(Self(value))
        }
    }

    /// A constant percentage; values outside `0..=100` are clamped.
    ///
    /// ```
    /// use tower_pressure::config::units::Percent;
    /// assert_eq!(Percent::of(50.0).value(), 50.0);
    /// ```
    pub const fn of(value: f64) -> Self {
        Self(value.clamp(0.0, 100.0))
    }

    /// The percentage (`0..=100`).
    ///
    /// ```
    /// use tower_pressure::config::units::Percent;
    /// assert_eq!(Percent::of(20.0).value(), 20.0);
    /// ```
    pub const fn value(self) -> f64 {
        self.0
    }

    /// The fraction (`0..=1`).
    ///
    /// ```
    /// use tower_pressure::config::units::Percent;
    /// assert_eq!(Percent::of(20.0).fraction(), 0.2);
    /// ```
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage from 0 to 100")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Percent, E> {
                Percent::new(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Percent, E> {
                Percent::new(v as f64).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Percent, E> {
                Percent::new(v as f64).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
                let t = v.trim();
                let t = t.strip_suffix('%').unwrap_or(t).trim();
                let n: f64 = t
                    .parse()
                    .map_err(|_| E::custom(format!("{v:?} is not a percentage")))?;
                Percent::new(n).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let p = |s: &str| s.parse::<HumanDuration>().map(HumanDuration::get);
        assert_eq!(p("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(p("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(p("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(p("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(p("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(p("10us"), Ok(Duration::from_micros(10)));
        assert!(p("30").unwrap_err().to_string().contains("no unit"));
        assert!(
            p("3 fortnights")
                .unwrap_err()
                .to_string()
                .contains("unknown duration unit `fortnights`")
        );
        assert!(p("").is_err());
        assert!(p("ms").is_err());
        assert!(p("1e400s").is_err());
        assert!(p("99999999999999d").is_err());
        for s in [
            "0s", "250ms", "1m30s", "1h", "2d3h4m5s", "1s500ms", "10us", "7ns",
        ] {
            assert_eq!(
                s.parse::<HumanDuration>().map(|d| d.to_string()).as_deref(),
                Ok(s)
            );
        }
    }

    #[test]
    fn sizes() {
        let p = |s: &str| s.parse::<ByteSize>().map(ByteSize::bytes);
        assert_eq!(p("512MiB"), Ok(512 << 20));
        assert_eq!(p("1GB"), Ok(1_000_000_000));
        assert_eq!(p("1.5KiB"), Ok(1536));
        assert_eq!(p("100"), Ok(100));
        assert!(p("1 XB").is_err());
        for s in ["512MiB", "1GB", "3B", "1TiB"] {
            assert_eq!(
                s.parse::<ByteSize>().map(|d| d.to_string()).as_deref(),
                Ok(s)
            );
        }
    }

    #[test]
    fn percents() {
        assert!(Percent::new(0.0).is_ok());
        assert!(Percent::new(100.0).is_ok());
        assert_eq!(
            Percent::new(150.0).unwrap_err().to_string(),
            "150 is above 100"
        );
        assert_eq!(Percent::new(-5.0).unwrap_err().to_string(), "-5 is below 0");
        assert!(Percent::new(f64::NAN).is_err());
    }
}
