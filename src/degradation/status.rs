//! [`StatusProvider`] for [`DegradationLayer`]: the active degradation and the constraints
//! in force, plus the policy's table for every level.
//!
//! Metrics (no labels, one layer per process is the norm; register a closure for more):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `tower_pressure_degradation_level` | gauge | level the constraints are taken from (0..4) |
//! | `tower_pressure_degradation_active` | gauge | 1 when requests are constrained |
//! | `tower_pressure_degradation_entity_limit_factor` | gauge | factor on entity limits |
//! | `tower_pressure_degradation_embedding_dimensions_factor` | gauge | factor on embedding dimensions |
//! | `tower_pressure_degradation_skip{what}` | gauge | 1 when `optional` / `expensive` work is skipped |
//! | `tower_pressure_degradation_simplified` | gauge | 1 when simplified methods are asked for |

use super::layer::DegradationLayer;
use crate::constraints::Constraints;
use crate::pressure::PressureLevel;
use crate::section::{StatusProvider, StatusSection};

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn describe(s: StatusSection, c: &Constraints) -> StatusSection {
    s.info("entity_limit_factor", c.entity_limit_factor())
        .info(
            "embedding_dimensions_factor",
            c.embedding_dimensions_factor(),
        )
        .info("skip_optional", c.should_skip_optional())
        .info("skip_expensive", c.should_skip_expensive())
        .info("use_simplified", c.should_use_simplified())
}

impl<H: Send + Sync + 'static> StatusProvider for DegradationLayer<H> {
    fn section(&self) -> StatusSection {
        let monitor = &self.shared.monitor;
        let policy = &self.shared.policy;
        let (level, signal, value) = monitor.level_and_cause();
        let c = policy.constraints(level);
        let active = c.is_degraded();
        let mut s = StatusSection::new("degradation", "degradation")
            .info("level", level)
            .info("active", active);
        if level > PressureLevel::Normal {
            s = s
                .info("cause", monitor.signal_name(signal))
                .info("cause_value", format!("{value:.2}"));
        }
        if let Some(d) = self.shared.deadline {
            s = s.info("deadline_seconds", d.as_secs_f64());
        }
        s = describe(s, &c)
            .gauge(
                "tower_pressure_degradation_level",
                "Pressure level the request constraints are taken from (0..4).",
                &[],
                level.as_u8() as f64,
            )
            .gauge(
                "tower_pressure_degradation_active",
                "1 when requests are constrained.",
                &[],
                flag(active),
            )
            .gauge(
                "tower_pressure_degradation_entity_limit_factor",
                "Factor applied to entity limits.",
                &[],
                c.entity_limit_factor() as f64,
            )
            .gauge(
                "tower_pressure_degradation_embedding_dimensions_factor",
                "Factor applied to embedding dimensions.",
                &[],
                c.embedding_dimensions_factor() as f64,
            )
            .gauge(
                "tower_pressure_degradation_skip",
                "1 when this kind of work is skipped.",
                &[("what", "optional")],
                flag(c.should_skip_optional()),
            )
            .gauge(
                "tower_pressure_degradation_skip",
                "1 when this kind of work is skipped.",
                &[("what", "expensive")],
                flag(c.should_skip_expensive()),
            )
            .gauge(
                "tower_pressure_degradation_simplified",
                "1 when simplified methods are asked for.",
                &[],
                flag(c.should_use_simplified()),
            );
        for l in PressureLevel::ALL {
            let e =
                StatusSection::new(l.to_string(), "degradation_level").info("in_force", l == level);
            s = s.entry(describe(e, &policy.constraints(l)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::degradation::DegradationLayer;
    use crate::pressure::PressureMonitor;
    use crate::status::{StatusProvider, StatusRegistry};

    #[test]
    fn level_and_constraints_in_force() {
        let (monitor, manual) = PressureMonitor::manual();
        let layer = DegradationLayer::new(monitor.clone());
        let s = layer.section();
        assert_eq!(s.info_value("active"), Some("false"));
        assert_eq!(
            s.metric_value("tower_pressure_degradation_active", &[]),
            Some(0.0)
        );
        manual.set(90.0); // Critical
        monitor.sample_now();
        let s = layer.section();
        assert_eq!(s.info_value("level"), Some("critical"));
        assert_eq!(s.info_value("active"), Some("true"));
        assert!(s.info_value("cause").is_some());
        assert_eq!(
            s.metric_value("tower_pressure_degradation_entity_limit_factor", &[]),
            Some(0.5)
        );
        assert_eq!(
            s.metric_value("tower_pressure_degradation_skip", &[("what", "optional")]),
            Some(1.0)
        );
        assert_eq!(s.entries.len(), 5);
        assert_eq!(
            s.entries
                .iter()
                .filter(|e| e.info_value("in_force") == Some("true"))
                .count(),
            1
        );
        let reg = StatusRegistry::new();
        reg.register(layer);
        assert!(
            reg.snapshot()
                .to_prometheus()
                .contains("tower_pressure_degradation_level 3\n")
        );
    }
}
