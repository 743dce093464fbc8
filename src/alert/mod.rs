//! Alerts and per-service metrics.
//!
//! * [`AlertManager`] consumes the [`EventBus`](crate::event::EventBus) on its own task and
//!   turns events into [`Alert`]s through [`Rule`]s (seed 000's defaults, plus your own
//!   closures), rate-limits them per (rule, key) with counts of what was suppressed ("12 more
//!   since last report"), keeps a bounded [`AlertHistory`] with the seed's
//!   [`AlertSummary`], and delivers to any combination of sinks: [`TracingSink`] (default),
//!   [`StdoutSink`], [`CallbackSink`], with features `http` + `serde` `WebhookSink`, and with
//!   feature `alertmanager` `AlertmanagerSink` (Prometheus Alertmanager's v2 API: active
//!   alerts resent, resolved ones sent with `endsAt`).
//! * [`AlertLayer`] observes every call of the service it wraps: totals, successes,
//!   failures, success rate, latency average, peak and percentiles from a fixed-memory
//!   lock-free histogram, in flight; per key (executor id, route) through a
//!   [`KeyExtractor`] with a bounded number of keys. It emits
//!   [`ServiceEvent`](crate::event::ServiceEvent)s when the error rate or a latency
//!   percentile crosses its threshold, so alerts fire on symptoms and not only on resources.
//!
//! # Severities and rate limits
//!
//! See [`rules`] for the default rules, their severities and intervals.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pressure::alert::{AlertLayer, AlertManager};
//! use tower_pressure::pressure::PressureMonitor;
//!
//! let (monitor, _manual) = PressureMonitor::manual();
//! let alerts = AlertManager::builder().monitor(monitor.clone()).stdout().build()?;
//!
//! let layer = AlertLayer::builder("llm").monitor(&monitor).build()?;
//! let metrics = layer.metrics();
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x * 2) }));
//! assert_eq!(svc.oneshot(21).await?, 42);
//! assert_eq!(metrics.snapshot().successful_executions, 1);
//! # drop(alerts); Ok(()) }
//! ```

#[cfg(feature = "alertmanager")]
pub mod alertmanager;
mod classify;
pub mod future;
pub mod history;
mod layer;
mod manager;
pub mod metrics;
pub mod ratelimit;
pub mod rules;
mod service;
mod shared;
pub mod sink;
mod types;
#[cfg(all(feature = "http", feature = "serde"))]
pub mod webhook;

#[cfg(feature = "alertmanager")]
pub use alertmanager::{AlertmanagerError, AlertmanagerSink, AlertmanagerSinkBuilder};
pub use classify::{Classify, ErrorsAsFailures, ServerErrorsAsFailures};
pub use history::{AlertHistory, AlertRecord, AlertSummary, BySeverity};
pub use layer::{AlertLayer, AlertLayerBuilder, ServiceMetrics};
pub use manager::{AlertManager, AlertManagerBuilder, ManagerStats};
pub use metrics::MetricsSnapshot;
pub use ratelimit::{Decision, RateLimiter};
pub use rules::{Rule, RuleContext};
pub use service::{AlertService, FnKey, HeaderKey, KeyExtractor, NoKey};
pub use sink::{AlertSink, CallbackSink, SinkStats, StdoutSink, TracingSink};
pub use types::{Alert, Severity};
#[cfg(all(feature = "http", feature = "serde"))]
pub use webhook::{
    ForbiddenDestination, GuardedConnector, GuardedResolver, WebhookClient, WebhookSink,
    WebhookSinkBuilder, forbidden_reason,
};

#[cfg(test)]
mod tests;
