//! [`StatusProvider`] for [`CircuitBreakerHandle`]: every breaker of a layer (the default
//! one and one per key) on the status page.
//!
//! Metrics (labels `breaker` = the layer's name, `key` = the key, empty for the default
//! breaker):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `tower_pressure_breaker_state` | gauge | 0 closed, 1 open, 2 half-open, 3 disabled, 4 forced open, 5 metrics only |
//! | `tower_pressure_breaker_open` | gauge | 1 when the state rejects calls (open, forced open) |
//! | `tower_pressure_breaker_calls_total{outcome}` | counter | recorded calls (`success`, `failure`) |
//! | `tower_pressure_breaker_slow_calls_total` | counter | slow calls |
//! | `tower_pressure_breaker_rejected_total` | counter | calls rejected without reaching the service |
//! | `tower_pressure_breaker_failure_rate_percent` | gauge | failure rate over the window |
//! | `tower_pressure_breaker_slow_call_rate_percent` | gauge | slow-call rate over the window |
//! | `tower_pressure_breaker_window_calls` | gauge | calls in the sliding window |
//! | `tower_pressure_breaker_consecutive_failures` | gauge | consecutive failures |
//! | `tower_pressure_breaker_time_in_state_seconds` | gauge | time since the last transition |

use super::handle::{BreakerMetrics, CircuitBreakerHandle};
use crate::event::CircuitState;
use crate::section::{StatusProvider, StatusSection};

/// The numeric code of a state in `tower_pressure_breaker_state`.
pub(crate) fn state_code(s: CircuitState) -> f64 {
    match s {
        CircuitState::Closed => 0.0,
        CircuitState::Open => 1.0,
        CircuitState::HalfOpen => 2.0,
        CircuitState::Disabled => 3.0,
        CircuitState::ForcedOpen => 4.0,
        CircuitState::MetricsOnly => 5.0,
    }
}

fn breaker_section(m: &BreakerMetrics, name: &str) -> StatusSection {
    let key = m.key.as_deref().unwrap_or("");
    let l = [("breaker", name), ("key", key)];
    let o = |outcome: &'static str| [("breaker", name), ("key", key), ("outcome", outcome)];
    let open = matches!(m.state, CircuitState::Open | CircuitState::ForcedOpen);
    let mut s = StatusSection::new(if key.is_empty() { name } else { key }, "breaker")
        .info("state", m.state)
        .info(
            "time_in_state_seconds",
            format!("{:.1}", m.time_in_state.as_secs_f64()),
        );
    if !key.is_empty() {
        s = s.info("key", key);
    }
    s.gauge(
        "tower_pressure_breaker_state",
        "Breaker state: 0 closed, 1 open, 2 half-open, 3 disabled, 4 forced open, 5 metrics only.",
        &l,
        state_code(m.state),
    )
    .gauge(
        "tower_pressure_breaker_open",
        "1 when the breaker rejects calls (open or forced open).",
        &l,
        if open { 1.0 } else { 0.0 },
    )
    .counter(
        "tower_pressure_breaker_calls_total",
        "Calls recorded by the breaker, by outcome.",
        &o("success"),
        m.successes as f64,
    )
    .counter(
        "tower_pressure_breaker_calls_total",
        "Calls recorded by the breaker, by outcome.",
        &o("failure"),
        m.failures as f64,
    )
    .counter(
        "tower_pressure_breaker_slow_calls_total",
        "Slow calls recorded by the breaker.",
        &l,
        m.slow_calls as f64,
    )
    .counter(
        "tower_pressure_breaker_rejected_total",
        "Calls rejected without reaching the service.",
        &l,
        m.rejected as f64,
    )
    .gauge(
        "tower_pressure_breaker_failure_rate_percent",
        "Failure rate over the sliding window.",
        &l,
        m.failure_rate,
    )
    .gauge(
        "tower_pressure_breaker_slow_call_rate_percent",
        "Slow-call rate over the sliding window.",
        &l,
        m.slow_call_rate,
    )
    .gauge(
        "tower_pressure_breaker_window_calls",
        "Calls in the sliding window.",
        &l,
        m.window_calls as f64,
    )
    .gauge(
        "tower_pressure_breaker_consecutive_failures",
        "Consecutive failures so far.",
        &l,
        m.consecutive_failures as f64,
    )
    .gauge(
        "tower_pressure_breaker_time_in_state_seconds",
        "Time since the breaker entered its state.",
        &l,
        m.time_in_state.as_secs_f64(),
    )
}

impl StatusProvider for CircuitBreakerHandle {
    /// One section named after the layer (kind `circuit_breaker`) with the default breaker's
    /// metrics, a count of open breakers, and one entry per key.
    fn section(&self) -> StatusSection {
        let all = self.all_metrics();
        let name = self.shared.cfg.name.clone();
        let open = all
            .iter()
            .filter(|m| matches!(m.state, CircuitState::Open | CircuitState::ForcedOpen))
            .count();
        let mut s = match all.first() {
            Some(d) => breaker_section(d, &name),
            None => StatusSection::new(&*name, "circuit_breaker"),
        };
        s.name = name.to_string();
        s.kind = "circuit_breaker".into();
        s = s.info("keys", all.len().saturating_sub(1)).gauge(
            "tower_pressure_breakers_open",
            "Breakers of the layer currently rejecting calls.",
            &[("breaker", &name)],
            open as f64,
        );
        for m in all.iter().skip(1) {
            s = s.entry(breaker_section(m, &name));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{Service, ServiceExt, service_fn};
    use tower_layer::Layer;

    use crate::circuit_breaker::CircuitBreakerLayer;
    use crate::status::{StatusProvider, StatusRegistry};

    #[tokio::test(start_paused = true)]
    async fn per_key_breakers_reach_the_status() {
        let layer = CircuitBreakerLayer::builder()
            .name("llm")
            .failure_threshold(2)
            .wait_duration(Duration::from_secs(10))
            .build()
            .unwrap()
            .per_key(|k: &(&'static str, bool)| Some(k.0.to_string()));
        let handle = layer.handle();
        let mut svc = layer.layer(service_fn(|(_, fail): (&'static str, bool)| async move {
            if fail { Err("boom") } else { Ok(()) }
        }));
        for _ in 0..2 {
            let _ = svc.ready().await.unwrap().call(("a", true)).await;
        }
        svc.ready().await.unwrap().call(("b", false)).await.unwrap();
        assert!(svc.ready().await.unwrap().call(("a", false)).await.is_err());
        tokio::time::advance(Duration::from_secs(3)).await;

        let s = handle.section();
        assert_eq!(
            (s.name.as_str(), s.kind.as_str()),
            ("llm", "circuit_breaker")
        );
        assert_eq!(s.info_value("state"), Some("CLOSED"));
        assert_eq!(
            s.metric_value("tower_pressure_breakers_open", &[("breaker", "llm")]),
            Some(1.0)
        );
        let a = s.entries.iter().find(|e| e.name == "a").unwrap();
        assert_eq!(a.info_value("state"), Some("OPEN"));
        assert_eq!(
            a.metric_value("tower_pressure_breaker_state", &[("key", "a")]),
            Some(1.0)
        );
        assert_eq!(
            a.metric_value("tower_pressure_breaker_rejected_total", &[("key", "a")]),
            Some(1.0)
        );
        assert_eq!(
            a.metric_value(
                "tower_pressure_breaker_calls_total",
                &[("key", "a"), ("outcome", "failure")]
            ),
            Some(2.0)
        );
        assert_eq!(
            a.metric_value("tower_pressure_breaker_time_in_state_seconds", &[]),
            Some(3.0)
        );
        let reg = StatusRegistry::new();
        reg.register(handle);
        let text = reg.snapshot().to_prometheus();
        assert!(
            text.contains("tower_pressure_breaker_open{breaker=\"llm\",key=\"a\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tower_pressure_breaker_open{breaker=\"llm\",key=\"b\"} 0\n"),
            "{text}"
        );
    }
}
