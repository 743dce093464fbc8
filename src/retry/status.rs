//! [`StatusProvider`] for [`RetryLayer`]: counters and the budget on the status page.
//!
//! Metrics (label `retry` = the layer's name):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `tower_pressure_retry_requests_total` | counter | first attempts |
//! | `tower_pressure_retry_retries_total` | counter | retry attempts made |
//! | `tower_pressure_retry_gave_up_total` | counter | requests ended on a retryable failure |
//! | `tower_pressure_retry_budget_total{outcome}` | counter | budget decisions (`granted`, `refused`) |
//! | `tower_pressure_retry_budget_available` | gauge | retries the budget would grant now |

use super::layer::RetryLayer;
use crate::section::{StatusProvider, StatusSection};

impl<C: Send + Sync + 'static> StatusProvider for RetryLayer<C> {
    fn section(&self) -> StatusSection {
        let st = self.stats();
        let name = self.name();
        let l = [("retry", name)];
        let p = self.policy();
        let mut s = StatusSection::new(name, "retry")
            .info("max_attempts", p.max_attempts())
            .info("no_retry_at", p.no_retry_at())
            .counter(
                "tower_pressure_retry_requests_total",
                "Requests (first attempts) through the retry layer.",
                &l,
                st.requests as f64,
            )
            .counter(
                "tower_pressure_retry_retries_total",
                "Retry attempts made.",
                &l,
                st.retries as f64,
            )
            .counter(
                "tower_pressure_retry_gave_up_total",
                "Requests that ended on a retryable failure because retrying stopped.",
                &l,
                st.gave_up as f64,
            );
        match self.budget() {
            Some(b) => {
                s = s
                    .info("budget_ratio", b.ratio())
                    .info("budget_min_per_second", b.min_per_second())
                    .counter(
                        "tower_pressure_retry_budget_total",
                        "Retry budget decisions by outcome.",
                        &[("retry", name), ("outcome", "granted")],
                        st.budget_granted as f64,
                    )
                    .counter(
                        "tower_pressure_retry_budget_total",
                        "Retry budget decisions by outcome.",
                        &[("retry", name), ("outcome", "refused")],
                        st.budget_refused as f64,
                    )
                    .gauge(
                        "tower_pressure_retry_budget_available",
                        "Retries the budget would grant now.",
                        &l,
                        st.budget_available.unwrap_or(0.0),
                    );
            }
            None => s = s.info("budget", "none"),
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tower::{ServiceExt, service_fn};
    use tower_layer::Layer;

    use crate::pressure::PressureMonitor;
    use crate::retry::{Backoff, Jitter, RetryBudget, RetryLayer, Retryable};
    use crate::status::{StatusProvider, StatusRegistry};

    #[tokio::test(start_paused = true)]
    async fn counters_and_budget_reach_the_status() {
        let (monitor, _m) = PressureMonitor::manual();
        let layer = RetryLayer::builder(monitor)
            .name("db")
            .max_attempts(3)
            .backoff(Backoff::fixed(std::time::Duration::from_millis(10)).jitter(Jitter::None))
            .budget(
                RetryBudget::builder()
                    .ratio(0.0)
                    .min_per_second(1)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let svc = layer.layer(service_fn(move |_: http::Request<()>| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Retryable::new("down")) }
        }));
        // One retry granted by the floor, the second refused: gave up.
        assert!(svc.oneshot(http::Request::new(())).await.is_err());
        let st = layer.stats();
        assert_eq!(
            (
                st.requests,
                st.retries,
                st.gave_up,
                st.budget_granted,
                st.budget_refused
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let s = layer.section();
        assert_eq!(s.kind, "retry");
        assert_eq!(
            s.metric_value(
                "tower_pressure_retry_budget_total",
                &[("outcome", "refused")]
            ),
            Some(1.0)
        );
        assert_eq!(
            s.metric_value("tower_pressure_retry_retries_total", &[("retry", "db")]),
            Some(1.0)
        );
        let reg = StatusRegistry::new();
        reg.register(layer.clone());
        let text = reg.snapshot().to_prometheus();
        assert!(
            text.contains(
                "tower_pressure_retry_budget_total{outcome=\"granted\",retry=\"db\"} 1\n"
            ),
            "{text}"
        );
    }
}
