//! One snapshot of everything: [`Status`], built from every [`StatusProvider`] registered
//! with a [`StatusRegistry`], as JSON (feature `serde`) or as Prometheus text exposition.
//!
//! Each layer describes itself as a [`StatusSection`]: a name, a kind, text facts (`info`),
//! numeric [`Metric`]s with labels, and nested entries (one per breaker key, per recent
//! alert, per level change). The same tree renders as JSON for people and dashboards, and as
//! Prometheus text format 0.0.4 for scrapers, so a Kubernetes HPA or Grafana can read the
//! pressure level and breaker states.
//!
//! The Prometheus text passes `promtool check metrics` (`tests/prometheus.rs` runs it over a
//! live server): every family has `# HELP` and `# TYPE`, counters end in `_total`, units are
//! base units (`_seconds`), and latency percentiles are a `summary`
//! (`tower_pressure_service_latency_seconds{quantile=..}` with `_sum` and `_count`). Two
//! gauges are meant for autoscalers (see `docs/kubernetes/`):
//! `tower_pressure_concurrency_utilization_ratio` (requests in flight over the adaptive
//! limiter's effective limit, per `limiter`) and `tower_pressure_level` (0 normal .. 4
//! emergency).
//!
//! Implemented here for [`PressureMonitor`], [`ServiceMetrics`] (an
//! [`AlertLayer`](crate::alert::AlertLayer)'s metrics) and [`AlertManager`]; other layers
//! implement [`StatusProvider`] for their handles.
//!
//! ```
//! use tower_pressure::pressure::PressureMonitor;
//! use tower_pressure::status::StatusRegistry;
//!
//! let (monitor, manual) = PressureMonitor::manual();
//! manual.set(80.0);
//! monitor.sample_now();
//! let registry = StatusRegistry::new();
//! registry.register(monitor.clone());
//! let status = registry.snapshot();
//! assert_eq!(status.section("pressure").unwrap().info_value("level"), Some("high"));
//! assert!(status.to_prometheus().contains("tower_pressure_level 2\n"));
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, RwLock};

use tokio::time::Instant;

use crate::alert::{AlertManager, ServiceMetrics};
use crate::pressure::PressureMonitor;
use crate::section::format_value;
pub use crate::section::{Metric, MetricKind, StatusProvider, StatusSection};

/// One snapshot of every registered provider.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Status {
    /// The sections, in registration order.
    pub sections: Vec<StatusSection>,
}

impl Status {
    /// The first section called `name`.
    pub fn section(&self, name: &str) -> Option<&StatusSection> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The snapshot as JSON.
    #[cfg(feature = "serde")]
    pub fn to_json(&self) -> String {
        // Serialising this tree of strings, maps and floats cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The snapshot in Prometheus text exposition format 0.0.4: each metric family once,
    /// with `# HELP` and `# TYPE`, its samples together.
    pub fn to_prometheus(&self) -> String {
        struct Family<'a> {
            kind: MetricKind,
            help: &'a str,
            samples: Vec<&'a Metric>,
        }
        fn walk<'a>(
            s: &'a StatusSection,
            order: &mut Vec<String>,
            fams: &mut BTreeMap<String, Family<'a>>,
        ) {
            for m in &s.metrics {
                let name = sanitize_name(family_name(m));
                match fams.get_mut(&name) {
                    Some(f) => {
                        if f.kind == m.kind {
                            f.samples.push(m)
                        }
                    }
                    None => {
                        order.push(name.clone());
                        fams.insert(
                            name,
                            Family {
                                kind: m.kind,
                                help: &m.help,
                                samples: vec![m],
                            },
                        );
                    }
                }
            }
            for e in &s.entries {
                walk(e, order, fams);
            }
        }
        let mut order = Vec::new();
        let mut fams = BTreeMap::new();
        for s in &self.sections {
            walk(s, &mut order, &mut fams);
        }
        let mut out = String::new();
        for name in order {
            let Some(f) = fams.get(&name) else { continue };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(f.help));
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
            let mut seen = std::collections::HashSet::new();
            for m in &f.samples {
                let mut labels = String::new();
                for (i, (k, v)) in m.labels.iter().enumerate() {
                    if i > 0 {
                        labels.push(',');
                    }
                    let _ = write!(labels, "{}=\"{}\"", sanitize_label(k), escape_label(v));
                }
                let sample = sanitize_name(&m.name);
                // A repeated series would make the exposition invalid: keep the first.
                if !seen.insert((sample.clone(), labels.clone())) {
                    continue;
                }
                let value = format_value(m.value);
                let name = &sample;
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        out
    }
}

/// The family a sample belongs to: a summary's `_sum` and `_count` samples belong to the
/// summary's family.
fn family_name(m: &Metric) -> &str {
    if m.kind == MetricKind::Summary {
        for suffix in ["_sum", "_count"] {
            if let Some(base) = m.name.strip_suffix(suffix) {
                return base;
            }
        }
    }
    &m.name
}

fn sanitize_name(n: &str) -> String {
    let mut s: String = n
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn sanitize_label(n: &str) -> String {
    let mut s: String = n
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The handle layers register with; [`StatusRegistry::snapshot`] asks each for its section.
/// Cheap to clone; clones share the list.
#[derive(Clone, Default)]
pub struct StatusRegistry {
    providers: Arc<RwLock<Vec<Arc<dyn StatusProvider>>>>,
}

impl fmt::Debug for StatusRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusRegistry")
            .field("providers", &self.len())
            .finish()
    }
}

impl StatusRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a provider (a monitor, a layer's metrics handle, the alert manager, or a
    /// closure returning a [`StatusSection`]).
    pub fn register(&self, provider: impl StatusProvider) -> &Self {
        self.register_arc(Arc::new(provider))
    }

    /// Registers a shared provider.
    pub fn register_arc(&self, provider: Arc<dyn StatusProvider>) -> &Self {
        match self.providers.write() {
            Ok(mut g) => g.push(provider),
            Err(p) => p.into_inner().push(provider),
        }
        self
    }

    /// The number of providers.
    pub fn len(&self) -> usize {
        match self.providers.read() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    /// `true` when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every provider for its section.
    pub fn snapshot(&self) -> Status {
        let providers: Vec<_> = match self.providers.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Status {
            sections: providers.iter().map(|p| p.section()).collect(),
        }
    }
}

impl StatusProvider for PressureMonitor {
    fn section(&self) -> StatusSection {
        let snap = self.snapshot();
        let now = Instant::now();
        let level = snap.level();
        let mut s = StatusSection::new("pressure", "pressure")
            .info("level", level)
            .info("driver", self.signal_name(snap.driver()))
            .info(
                "degradation_active",
                level > crate::pressure::PressureLevel::Normal,
            )
            .gauge(
                "tower_pressure_level",
                "Pressure level: 0 normal, 1 elevated, 2 high, 3 critical, 4 emergency.",
                &[],
                level.as_u8() as f64,
            )
            .gauge(
                "tower_pressure_driver_value",
                "Value of the signal driving the level.",
                &[],
                snap.value(),
            )
            .counter(
                "tower_pressure_samples_total",
                "Samples taken by the monitor.",
                &[],
                snap.samples() as f64,
            );
        if snap.value().is_finite() {
            s = s.info("driver_value", format!("{:.2}", snap.value()));
        }
        for r in self.readings() {
            let Some(v) = r.value else { continue };
            let labels = [("signal", &*r.name), ("source", &*r.source)];
            s = s
                .gauge(
                    "tower_pressure_signal",
                    "Latest reading of each pressure signal.",
                    &labels,
                    v,
                )
                .gauge(
                    "tower_pressure_signal_level",
                    "Level each signal reaches on its own (0..4).",
                    &labels,
                    r.level.as_u8() as f64,
                );
        }
        for c in self.level_history().iter().rev().take(16) {
            s = s.entry(
                StatusSection::new("level_change", "level_change")
                    .info("from", c.from)
                    .info("to", c.to)
                    .info("signal", &c.signal_name)
                    .info("value", format!("{:.2}", c.value))
                    .info(
                        "age_seconds",
                        format!("{:.1}", now.saturating_duration_since(c.at).as_secs_f64()),
                    ),
            );
        }
        s
    }
}

fn metrics_section(m: &crate::alert::MetricsSnapshot) -> StatusSection {
    let key = m.executor_id.as_deref().unwrap_or("");
    let l = [("service", m.service.as_str()), ("key", key)];
    let name = match &m.executor_id {
        Some(k) => k.clone(),
        None => m.service.clone(),
    };
    let with = |o: &'static str| {
        [
            ("service", m.service.as_str()),
            ("key", key),
            ("outcome", o),
        ]
    };
    StatusSection::new(name, "service")
        .info("service", &m.service)
        .counter(
            "tower_pressure_service_calls_total",
            "Calls by outcome.",
            &with("success"),
            m.successful_executions as f64,
        )
        .counter(
            "tower_pressure_service_calls_total",
            "Calls by outcome.",
            &with("failure"),
            m.failed_executions as f64,
        )
        .counter(
            "tower_pressure_service_calls_total",
            "Calls by outcome.",
            &with("cancelled"),
            m.cancelled_executions as f64,
        )
        .gauge(
            "tower_pressure_service_in_flight",
            "Calls in flight.",
            &l,
            m.in_flight as f64,
        )
        .gauge(
            "tower_pressure_service_success_rate_percent",
            "Successes over completed calls.",
            &l,
            m.success_rate_percent,
        )
        .gauge(
            "tower_pressure_service_latency_avg_seconds",
            "Mean latency.",
            &l,
            m.avg_duration_ms / 1e3,
        )
        .gauge(
            "tower_pressure_service_latency_peak_seconds",
            "Slowest call.",
            &l,
            m.peak_duration_ms / 1e3,
        )
        .summary(
            "tower_pressure_service_latency_seconds",
            "Latency of completed calls since start (quantiles within 6.25 %).",
            &l,
            &[
                (0.5, m.p50_duration_ms / 1e3),
                (0.9, m.p90_duration_ms / 1e3),
                (0.99, m.p99_duration_ms / 1e3),
            ],
            m.total_duration_ms / 1e3,
            m.successful_executions + m.failed_executions,
        )
}

impl StatusProvider for ServiceMetrics {
    fn section(&self) -> StatusSection {
        let mut s = metrics_section(&self.snapshot()).counter(
            "tower_pressure_service_untracked_key_calls_total",
            "Calls whose key was not tracked because the key table was full.",
            &[("service", self.name())],
            self.untracked_keys() as f64,
        );
        for k in self.keys() {
            s = s.entry(metrics_section(&k));
        }
        s
    }
}

impl StatusProvider for AlertManager {
    fn section(&self) -> StatusSection {
        let sum = self.summary();
        let stats = self.stats();
        let mut s = StatusSection::new("alerts", "alerts")
            .info("channels", self.channels().join(","))
            .gauge(
                "tower_pressure_alerts_recent",
                "Alerts delivered in the last hour (window=\"1h\") or 24 hours (window=\"24h\").",
                &[("window", "1h")],
                sum.last_hour as f64,
            )
            .gauge(
                "tower_pressure_alerts_recent",
                "Alerts delivered in the last hour (window=\"1h\") or 24 hours (window=\"24h\").",
                &[("window", "24h")],
                sum.last_24_hours as f64,
            )
            .counter(
                "tower_pressure_alerts_suppressed_total",
                "Alerts suppressed by rate limits.",
                &[],
                stats.suppressed as f64,
            )
            .counter(
                "tower_pressure_alert_events_total",
                "Events evaluated by the alert manager.",
                &[],
                stats.events_processed as f64,
            )
            .gauge(
                "tower_pressure_alerts_active",
                "Alerts fired whose condition has not cleared.",
                &[],
                stats.active as f64,
            )
            .counter(
                "tower_pressure_alerts_resolved_total",
                "Active alerts whose condition cleared.",
                &[],
                stats.resolved as f64,
            )
            .counter(
                "tower_pressure_alert_events_lagged_total",
                "Events lost because the alert manager fell behind.",
                &[],
                stats.events_lagged as f64,
            );
        for sev in crate::alert::Severity::ALL {
            s = s.counter(
                "tower_pressure_alerts_total",
                "Alerts delivered, by severity.",
                &[("severity", sev.as_str())],
                sum.by_severity.get(sev) as f64,
            );
        }
        for (name, st) in self.sink_stats() {
            let sink = [("sink", name.as_str())];
            s = s
                .counter(
                    "tower_pressure_alert_sink_delivered_total",
                    "Alerts a sink delivered.",
                    &sink,
                    st.delivered as f64,
                )
                .counter(
                    "tower_pressure_alert_sink_failed_total",
                    "Alerts a sink gave up on.",
                    &sink,
                    st.failed as f64,
                )
                .counter(
                    "tower_pressure_alert_sink_dropped_total",
                    "Alerts dropped from a full sink queue.",
                    &sink,
                    st.dropped as f64,
                )
                .counter(
                    "tower_pressure_alert_sink_rejected_total",
                    "Alerts failed fast because the sink's circuit breaker was open.",
                    &sink,
                    st.rejected as f64,
                )
                .counter(
                    "tower_pressure_alert_sink_retries_total",
                    "Delivery retries.",
                    &sink,
                    st.retried as f64,
                )
                .gauge(
                    "tower_pressure_alert_sink_queued",
                    "Alerts waiting in a sink queue.",
                    &sink,
                    st.queued as f64,
                );
        }
        for a in &sum.recent_alerts {
            let mut e = StatusSection::new(a.kind.clone(), "alert")
                .info("severity", a.severity)
                .info("rule", &a.rule)
                .info("message", &a.message)
                .info("suppressed", a.suppressed)
                .info("age_seconds", format!("{:.1}", a.age_seconds));
            if let Some(k) = &a.key {
                e = e.info("key", k);
            }
            s = s.entry(e);
        }
        s
    }
}

#[cfg(feature = "serde")]
pub use service::StatusService;

#[cfg(feature = "serde")]
mod service {
    use std::convert::Infallible;
    use std::future::{Ready, ready};
    use std::task::{Context, Poll};

    use tower_service::Service;

    use super::StatusRegistry;

    /// Answers `GET` with the registry's [`Status`](super::Status) as JSON, or as Prometheus
    /// text format 0.0.4 with `?format=prometheus`; `405` for other methods. Mount it in axum
    /// with `Router::new().route_service("/status", StatusService::new(registry))`.
    #[derive(Debug, Clone)]
    pub struct StatusService {
        registry: StatusRegistry,
    }

    impl StatusService {
        /// Serves `registry`.
        pub fn new(registry: StatusRegistry) -> Self {
            Self { registry }
        }
    }

    fn wants_prometheus(uri: &http::Uri) -> bool {
        uri.query()
            .map(|q| q.split('&').any(|p| p == "format=prometheus"))
            .unwrap_or(false)
    }

    impl<B> Service<http::Request<B>> for StatusService {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let mut resp = http::Response::new(String::new());
            if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
                *resp.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
                resp.headers_mut().insert(
                    http::header::ALLOW,
                    http::HeaderValue::from_static("GET, HEAD"),
                );
                return ready(Ok(resp));
            }
            let status = self.registry.snapshot();
            let (body, ct) = if wants_prometheus(req.uri()) {
                (
                    status.to_prometheus(),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            } else {
                (status.to_json(), "application/json")
            };
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(ct),
            );
            if req.method() != http::Method::HEAD {
                *resp.body_mut() = body;
            }
            ready(Ok(resp))
        }
    }
}
