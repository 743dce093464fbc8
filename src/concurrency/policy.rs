//! What pressure does to admission: priority shedding per level, limit scaling per level,
//! and the Sentinel "BBR" check. Pure logic.

use crate::error::{ConfigError, check_range};
pub use crate::outcome::shed::ShedReason;
use crate::pressure::PressureLevel;
use crate::pressure::Signal;
use crate::priority::Priority;

/// The lowest class admitted at each pressure level, and the factor applied to the learned
/// limit at each level.
///
/// Defaults: every class at `Normal` and `Elevated`, `Low` refused at `High`, only `High` and
/// `Critical` at `Critical`, only `Critical` at `Emergency`; limit factors 1.0, 0.9, 0.75,
/// 0.5, 0.25 (the seed's "adaptive worker budget": a service under memory pressure takes less
/// work even while latency still looks fine).
///
/// ```
/// use tower_pressure::{PressureLevel, Priority, concurrency::PressurePolicy};
/// let p = PressurePolicy::default();
/// assert!(!p.admits(PressureLevel::High, Priority::Low));
/// assert!(p.admits(PressureLevel::Critical, Priority::High));
/// assert_eq!(p.scale(PressureLevel::Critical), 0.5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressurePolicy {
    min_priority: [Priority; 5],
    scale: [f64; 5],
}

impl Default for PressurePolicy {
    fn default() -> Self {
        use Priority::*;
        Self {
            min_priority: [Low, Low, Normal, High, Critical],
            scale: [1.0, 0.9, 0.75, 0.5, 0.25],
        }
    }
}

impl PressurePolicy {
    /// Sets the lowest class admitted at `level`. Lower levels keep their own settings.
    pub fn admit_from(mut self, level: PressureLevel, lowest: Priority) -> Self {
        self.min_priority[level.index()] = lowest;
        self
    }

    /// Sets the limit factor at `level`, in `(0, 1]`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `scale.<level>` when the factor is outside `(0, 1]`.
    pub fn scale_at(mut self, level: PressureLevel, factor: f64) -> Result<Self, ConfigError> {
        check_range(&format!("scale.{level}"), factor, f64::MIN_POSITIVE, 1.0)?;
        self.scale[level.index()] = factor;
        Ok(self)
    }

    /// No scaling and no shedding by pressure (the learned limit alone decides).
    pub fn ignore_pressure() -> Self {
        Self {
            min_priority: [Priority::Low; 5],
            scale: [1.0; 5],
        }
    }

    /// `true` when `class` is admitted at `level`.
    pub fn admits(&self, level: PressureLevel, class: Priority) -> bool {
        class >= self.min_priority[level.index()]
    }

    /// The limit factor at `level`.
    pub fn scale(&self, level: PressureLevel) -> f64 {
        self.scale[level.index()]
    }

    /// `max(1, floor(limit x factor))`.
    pub fn scaled(&self, level: PressureLevel, limit: u32) -> u32 {
        ((f64::from(limit) * self.scale(level)) as u32).max(1)
    }
}

/// The outcome of the pressure check for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PressureDecision {
    /// Admit against the limit scaled for this level.
    Apply(PressureLevel),
    /// CPU pressure is high but this service's in-flight work is within what it can
    /// serve (in-flight <= max throughput x min latency): the load comes from elsewhere, so
    /// this request is neither shed nor held to a scaled limit.
    NotOurLoad {
        /// The level observed.
        level: PressureLevel,
        /// In flight at the decision.
        in_flight: u32,
        /// `ceil(max throughput x min latency)` over recent windows.
        capacity: u32,
    },
    /// Refuse the request.
    Shed(ShedReason),
}

impl PressureDecision {
    /// Why, in words (for logs and status pages).
    pub fn reason(&self) -> String {
        match self {
            PressureDecision::Apply(l) => format!("pressure {l}: limit scaled"),
            PressureDecision::NotOurLoad {
                level,
                in_flight,
                capacity,
            } => format!(
                "cpu pressure {level} not caused by this service: in-flight {in_flight} <= max throughput x min rtt {capacity}"
            ),
            PressureDecision::Shed(r) => r.as_str().to_owned(),
        }
    }
}

/// `true` for signals that measure CPU contention, where the BBR check applies.
pub(crate) const fn is_cpu_signal(s: Signal) -> bool {
    matches!(
        s,
        Signal::Cpu | Signal::PsiCpu | Signal::CgroupPsiCpu | Signal::SchedulingLag
    )
}

/// The pressure check (Sentinel's adaptive system protection): shedding and scaling for CPU
/// pressure apply only when our own load causes it, that is when in-flight exceeds
/// `ceil(max throughput x min rtt)` (`capacity`, 0 while unknown: then the check defers to
/// the policy). Memory and other pressure always applies.
pub(crate) fn decide(
    policy: &PressurePolicy,
    bbr_check: bool,
    level: PressureLevel,
    signal: Signal,
    class: Priority,
    in_flight: u32,
    capacity: u32,
) -> PressureDecision {
    if level == PressureLevel::Normal {
        return PressureDecision::Apply(level);
    }
    if bbr_check && is_cpu_signal(signal) && capacity > 0 && in_flight <= capacity {
        return PressureDecision::NotOurLoad {
            level,
            in_flight,
            capacity,
        };
    }
    if policy.admits(level, class) {
        PressureDecision::Apply(level)
    } else {
        PressureDecision::Shed(ShedReason::Pressure(level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PressureLevel as L;
    use Priority as P;

    #[test]
    fn default_shedding_table() {
        let p = PressurePolicy::default();
        let admitted = |l| {
            P::ALL
                .into_iter()
                .filter(|c| p.admits(l, *c))
                .collect::<Vec<_>>()
        };
        assert_eq!(admitted(L::Normal), P::ALL);
        assert_eq!(admitted(L::Elevated), P::ALL);
        assert_eq!(admitted(L::High), [P::Normal, P::High, P::Critical]);
        assert_eq!(admitted(L::Critical), [P::High, P::Critical]);
        assert_eq!(admitted(L::Emergency), [P::Critical]);
        let scaled: Vec<u32> = L::ALL.into_iter().map(|l| p.scaled(l, 100)).collect();
        assert_eq!(scaled, [100, 90, 75, 50, 25]);
        assert_eq!(p.scaled(L::Emergency, 2), 1);
    }

    #[test]
    fn bbr_check_exempts_foreign_cpu_pressure() {
        let p = PressurePolicy::default();
        // CPU pressure, our in-flight 5 within capacity 20: not ours, Low admitted.
        let d = decide(&p, true, L::High, Signal::PsiCpu, P::Low, 5, 20);
        assert!(matches!(d, PressureDecision::NotOurLoad { .. }));
        assert!(d.reason().contains("not caused by this service"));
        // Our in-flight above capacity: shed.
        let d = decide(&p, true, L::High, Signal::PsiCpu, P::Low, 50, 20);
        assert_eq!(d, PressureDecision::Shed(ShedReason::Pressure(L::High)));
        // Memory pressure always applies.
        let d = decide(&p, true, L::High, Signal::Memory, P::Low, 5, 20);
        assert_eq!(d, PressureDecision::Shed(ShedReason::Pressure(L::High)));
        // Check disabled.
        let d = decide(&p, false, L::High, Signal::PsiCpu, P::Low, 5, 20);
        assert!(matches!(d, PressureDecision::Shed(_)));
    }

    #[test]
    fn reason_codes_round_trip() {
        for r in [
            ShedReason::LimitReached,
            ShedReason::QueueTimeout,
            ShedReason::Pressure(L::Emergency),
            ShedReason::Pressure(L::High),
        ] {
            assert_eq!(ShedReason::from_code(r.code()), r);
        }
        assert_eq!(
            PressurePolicy::default()
                .scale_at(L::High, 0.0)
                .unwrap_err()
                .field(),
            "scale.high"
        );
    }
}
