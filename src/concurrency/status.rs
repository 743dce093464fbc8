//! The adaptive limiter on the status page.

use crate::priority::Priority;
use crate::section::{StatusProvider, StatusSection};

use super::AdaptiveConcurrencyHandle;

/// One section per limiter: learned and effective limit, in-flight and sheds per class, the
/// decision each class would get now, and the last few limit updates.
///
/// ```
/// use tower_pressure::concurrency::AdaptiveConcurrencyLayer;
/// use tower_pressure::pressure::PressureMonitor;
/// use tower_pressure::status::StatusRegistry;
///
/// let (monitor, _) = PressureMonitor::manual();
/// let layer = AdaptiveConcurrencyLayer::new(monitor);
/// let registry = StatusRegistry::new();
/// registry.register(layer.handle());
/// let prom = registry.snapshot().to_prometheus();
/// assert!(prom.contains("tower_pressure_concurrency_limit"));
/// ```
impl StatusProvider for AdaptiveConcurrencyHandle {
    fn section(&self) -> StatusSection {
        let name = self.name().to_owned();
        let l = [("limiter", name.as_str())];
        let mut s = StatusSection::new(name.clone(), "concurrency")
            .info("algorithm", self.algorithm())
            .info("limit", self.limit())
            .info("effective_limit", self.effective_limit())
            .info("in_flight", self.in_flight())
            .gauge(
                "tower_pressure_concurrency_limit",
                "Learned concurrency limit.",
                &l,
                self.limit() as f64,
            )
            .gauge(
                "tower_pressure_concurrency_effective_limit",
                "Concurrency limit after pressure scaling.",
                &l,
                self.effective_limit() as f64,
            )
            .gauge(
                "tower_pressure_concurrency_in_flight",
                "Requests in flight.",
                &l,
                self.in_flight() as f64,
            )
            .gauge(
                "tower_pressure_concurrency_utilization_ratio",
                "Requests in flight over the effective (pressure-scaled) limit: 1 means full; the gauge to autoscale on.",
                &l,
                utilization_ratio(self.in_flight(), self.effective_limit()),
            )
            .gauge(
                "tower_pressure_concurrency_queued",
                "Critical requests waiting in the bounded queue.",
                &l,
                self.queued() as f64,
            )
            .counter(
                "tower_pressure_concurrency_not_our_load_total",
                "Pressure sheds skipped because the pressure was not caused by this service's load.",
                &l,
                self.not_our_load_count() as f64,
            );
        for p in Priority::ALL {
            let class = p.as_str();
            let labels = [("limiter", name.as_str()), ("class", class)];
            s = s
                .gauge(
                    "tower_pressure_concurrency_in_flight_by_class",
                    "Requests in flight, by priority class.",
                    &labels,
                    self.in_flight_of(p) as f64,
                )
                .counter(
                    "tower_pressure_concurrency_shed_total",
                    "Requests shed, by priority class.",
                    &labels,
                    self.shed_count(p) as f64,
                )
                .info(
                    format!("decision_{class}"),
                    format!("{:?}", self.decision(p)),
                );
        }
        let history = self.limit_history();
        for point in history.iter().rev().take(10).rev() {
            s = s.entry(
                StatusSection::new("limit_update", "limit_update")
                    .info("limit", point.limit)
                    .info("rtt_ms", format!("{:.3}", point.rtt.as_secs_f64() * 1e3))
                    .info("max_in_flight", point.max_in_flight)
                    .info("samples", point.samples)
                    .info("drops", point.drops),
            );
        }
        s
    }
}

/// In-flight over limit; a limit of 0 (everything shed) with work in flight is saturated.
fn utilization_ratio(in_flight: impl Into<f64>, limit: impl Into<f64>) -> f64 {
    let (in_flight, limit) = (in_flight.into(), limit.into());
    if limit > 0.0 {
        in_flight / limit
    } else if in_flight > 0.0 {
        1.0
    } else {
        0.0
    }
}
