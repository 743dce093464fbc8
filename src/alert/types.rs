//! [`Severity`] and [`Alert`]: what rules produce and sinks deliver.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

/// How urgent an alert is. Ordered: `Info < Warning < Error < Critical`.
///
/// The defaults follow seed 000: degradation started is `Info`; high resource usage or an
/// opened breaker is `Warning`; several open breakers is `Error`; emergency pressure is
/// `Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Severity {
    /// General information (degradation started).
    Info,
    /// Potential issues (high resource usage, a circuit breaker opened).
    Warning,
    /// Problems requiring attention (several circuit breakers open).
    Error,
    /// Urgent issues (emergency pressure).
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    /// The lowercase name (`"warning"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// The upper-case label used by human-readable sinks (`"WARNING"`).
    pub const fn label(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }

    /// Index for per-severity arrays (`Info = 0`).
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert: produced by a [`Rule`](super::Rule) from an [`Event`](crate::event::Event),
/// rate-limited per (rule, key), recorded in the history and delivered to every sink.
///
/// ```
/// use tower_pressure::alert::{Alert, Severity};
/// let a = Alert::new(Severity::Warning, "queue_full", "queue is full")
///     .with_key("ingest")
///     .with_field("depth", 512);
/// assert_eq!(a.key(), Some("ingest"));
/// assert_eq!(a.field("depth"), Some("512"));
/// ```
#[derive(Debug, Clone)]
pub struct Alert {
    pub(crate) severity: Severity,
    pub(crate) kind: Arc<str>,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) message: String,
    pub(crate) fields: Vec<(Arc<str>, String)>,
    pub(crate) at: Instant,
    pub(crate) rule: Arc<str>,
    pub(crate) suppressed: u64,
    pub(crate) ended_at: Option<Instant>,
}

impl Alert {
    /// A new alert stamped now, with no key and no fields.
    pub fn new(severity: Severity, kind: impl Into<Arc<str>>, message: impl Into<String>) -> Self {
        Self {
            severity,
            kind: kind.into(),
            key: None,
            message: message.into(),
            fields: Vec::new(),
            at: Instant::now(),
            rule: Arc::from(""),
            suppressed: 0,
            ended_at: None,
        }
    }

    /// Sets the key the rate limit is kept per (breaker name, signal, service, ...).
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a structured field.
    pub fn with_field(mut self, name: impl Into<Arc<str>>, value: impl fmt::Display) -> Self {
        self.fields.push((name.into(), value.to_string()));
        self
    }

    /// Sets when the alert happened (rules copy the event's time).
    pub fn at_time(mut self, at: Instant) -> Self {
        self.at = at;
        self
    }

    /// The severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// The kind, e.g. `"breaker_opened"`.
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// The key, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    /// The human-readable message (without the suppression note).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The structured fields, in insertion order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (&**k, v.as_str()))
    }
    /// One field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v.as_str())
    }
    /// When it happened.
    pub fn at(&self) -> Instant {
        self.at
    }
    /// The name of the rule that produced it (set by the manager).
    pub fn rule(&self) -> &str {
        &self.rule
    }
    /// How many alerts of the same (rule, key) were suppressed by the rate limit since the
    /// previous one was delivered ("12 more since").
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// `true` once the alert's condition has cleared: the [`AlertManager`](super::AlertManager)
    /// passes resolved alerts to [`AlertSink::resolve`](super::AlertSink::resolve), and
    /// delivers alerts that end as they are reported (a "recovered" notice) already resolved.
    ///
    /// ```
    /// use tokio::time::Instant;
    /// use tower_pressure::alert::{Alert, Severity};
    /// let a = Alert::new(Severity::Warning, "breaker_opened", "db opened");
    /// assert!(!a.is_resolved());
    /// let now = Instant::now();
    /// let a = a.resolved_at(now);
    /// assert_eq!(a.ended_at(), Some(now));
    /// ```
    pub fn is_resolved(&self) -> bool {
        self.ended_at.is_some()
    }

    /// When the condition cleared (`None` while it holds).
    pub fn ended_at(&self) -> Option<Instant> {
        self.ended_at
    }

    /// Marks the alert resolved at `at`.
    pub fn resolved_at(mut self, at: Instant) -> Self {
        self.ended_at = Some(at);
        self
    }

    /// The message with the suppression note appended when alerts were suppressed:
    /// `"circuit breaker db opened (12 more since last report)"`.
    pub fn display_message(&self) -> String {
        if self.suppressed == 0 {
            self.message.clone()
        } else {
            format!(
                "{} ({} more since last report)",
                self.message, self.suppressed
            )
        }
    }
}
