//! The status vocabulary every layer speaks: a [`StatusSection`] of text facts and
//! [`Metric`]s, and the [`StatusProvider`] trait a layer's handle implements.
//!
//! This is core: it knows no layer. Assembling sections into one
//! [`Status`](crate::status::Status) (the [`StatusRegistry`](crate::status::StatusRegistry),
//! the JSON and Prometheus renderings, the HTTP service) is glue and lives in
//! [`crate::status`], which re-exports these types, so their public paths are
//! `tower_pressure::status::{StatusSection, Metric, MetricKind, StatusProvider}`.

use std::collections::BTreeMap;
use std::fmt;

/// A metric type, as Prometheus knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum MetricKind {
    /// A value that goes up and down.
    Gauge,
    /// A monotonically increasing count.
    Counter,
    /// Quantiles (samples with a `quantile` label) plus `<name>_sum` and `<name>_count`, as
    /// [`StatusSection::summary`] adds them.
    Summary,
}

impl MetricKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Summary => "summary",
        }
    }
}

/// One numeric value with labels.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Metric {
    /// The metric name, e.g. `tower_pressure_level` (sanitised on Prometheus output).
    pub name: String,
    /// Gauge or counter.
    #[cfg_attr(feature = "serde", serde(rename = "type"))]
    pub kind: MetricKind,
    /// One line of help.
    pub help: String,
    /// Labels, in order.
    pub labels: BTreeMap<String, String>,
    /// The value (non-finite values serialise as JSON `null`).
    pub value: f64,
}

/// What one provider reports: see the [`status` module docs](crate::status).
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StatusSection {
    /// The section's name (`"pressure"`, the service's name, a breaker's name).
    pub name: String,
    /// What it is (`"pressure"`, `"service"`, `"alerts"`, `"circuit_breaker"`).
    pub kind: String,
    /// Text facts (`level = "high"`, `state = "OPEN"`).
    pub info: BTreeMap<String, String>,
    /// Numeric values.
    pub metrics: Vec<Metric>,
    /// Nested sections.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub entries: Vec<StatusSection>,
}

impl StatusSection {
    /// An empty section.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            ..Self::default()
        }
    }

    /// Adds a text fact.
    pub fn info(mut self, key: impl Into<String>, value: impl fmt::Display) -> Self {
        self.info.insert(key.into(), value.to_string());
        self
    }

    /// Adds a gauge.
    pub fn gauge(self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> Self {
        self.metric(MetricKind::Gauge, name, help, labels, value)
    }

    /// Adds a counter.
    pub fn counter(self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> Self {
        self.metric(MetricKind::Counter, name, help, labels, value)
    }

    /// Adds a summary: one sample per `(quantile, value)` with a `quantile` label, then
    /// `<name>_sum` and `<name>_count`, all in family `name` (typed `summary` in the
    /// Prometheus text). `name` must not end in `_sum`, `_count` or `_bucket`.
    ///
    /// ```
    /// use tower_pressure::status::{Status, StatusSection};
    ///
    /// let s = StatusSection::new("api", "service").summary(
    ///     "api_latency_seconds",
    ///     "Latency.",
    ///     &[("service", "api")],
    ///     &[(0.5, 0.010), (0.99, 0.250)],
    ///     12.5,
    ///     1000,
    /// );
    /// let text = Status { sections: vec![s] }.to_prometheus();
    /// assert!(text.contains("# TYPE api_latency_seconds summary\n"));
    /// assert!(text.contains("api_latency_seconds{quantile=\"0.99\",service=\"api\"} 0.25\n"));
    /// assert!(text.contains("api_latency_seconds_sum{service=\"api\"} 12.5\n"));
    /// assert!(text.contains("api_latency_seconds_count{service=\"api\"} 1000\n"));
    /// ```
    pub fn summary(
        mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        quantiles: &[(f64, f64)],
        sum: f64,
        count: u64,
    ) -> Self {
        for (q, v) in quantiles {
            let q = format_value(*q);
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.retain(|(k, _)| *k != "quantile");
            l.push(("quantile", &q));
            self = self.metric(MetricKind::Summary, name, help, &l, *v);
        }
        self = self.metric(
            MetricKind::Summary,
            &format!("{name}_sum"),
            help,
            labels,
            sum,
        );
        self.metric(
            MetricKind::Summary,
            &format!("{name}_count"),
            help,
            labels,
            count as f64,
        )
    }

    fn metric(
        mut self,
        kind: MetricKind,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Self {
        self.metrics.push(Metric {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
        self
    }

    /// Adds a nested section.
    pub fn entry(mut self, entry: StatusSection) -> Self {
        self.entries.push(entry);
        self
    }

    /// A text fact's value.
    pub fn info_value(&self, key: &str) -> Option<&str> {
        self.info.get(key).map(String::as_str)
    }

    /// The first metric called `name` whose labels include every pair of `labels`.
    pub fn metric_value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| {
                m.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| m.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|m| m.value)
    }
}

/// Anything that can describe itself in a [`Status`](crate::status::Status).
pub trait StatusProvider: Send + Sync + 'static {
    /// The provider's current section.
    fn section(&self) -> StatusSection;
}

impl<F> StatusProvider for F
where
    F: Fn() -> StatusSection + Send + Sync + 'static,
{
    fn section(&self) -> StatusSection {
        self()
    }
}

/// A sample value as Prometheus text writes it (`NaN`, `+Inf`, `-Inf`).
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}
