//! Alert sinks: where delivered alerts go. Any combination may be configured.
//!
//! * [`TracingSink`] (the default): one `tracing` event per alert, target
//!   `tower_pressure::alert`, with structured fields and the level following the severity.
//! * [`StdoutSink`]: one human-readable line per alert; colour only when writing to a terminal.
//! * [`CallbackSink`]: the seed's SIGNAL channel, a user closure.
//! * `WebhookSink` (features `http` + `serde`): JSON POST on a background task.
//!
//! Sinks are called on the manager's task and must not block: the webhook sink only enqueues.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use super::{Alert, Severity};

/// Counters a sink may report (the webhook sink does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SinkStats {
    /// Alerts handed over successfully.
    pub delivered: u64,
    /// Alerts given up on after retries.
    pub failed: u64,
    /// Alerts dropped because the queue was full (oldest first).
    pub dropped: u64,
    /// Retries made.
    pub retried: u64,
    /// Alerts that failed because a circuit breaker refused them (included in `failed`).
    pub rejected: u64,
    /// Alerts waiting in the queue now.
    pub queued: u64,
}

/// Where alerts go. Implement it for your own channel.
pub trait AlertSink: Send + Sync + 'static {
    /// A short name for status pages (`"tracing"`, `"webhook"`).
    fn name(&self) -> &str;
    /// Delivers one alert. Called on the manager's task: must not block. An alert that is
    /// already [resolved](Alert::is_resolved) when delivered is a notice whose condition
    /// ended as it was reported (a service recovered).
    fn deliver(&self, alert: &Alert);
    /// The condition of an alert this sink was [delivered](AlertSink::deliver) has cleared;
    /// `alert` is that alert (its `at` is when it started) with
    /// [`ended_at`](Alert::ended_at) set. Called once per activation, on the manager's task:
    /// must not block. The default does nothing (notification sinks report firings only);
    /// the Alertmanager sink posts the alert with `endsAt`. See
    /// [`rules`](super::rules#resolution).
    fn resolve(&self, alert: &Alert) {
        let _ = alert;
    }
    /// Counters, if the sink keeps any.
    fn stats(&self) -> Option<SinkStats> {
        None
    }
}

/// Writes every alert as a `tracing` event (target `tower_pressure::alert`): INFO alerts at
/// `info`, WARNING at `warn`, ERROR and CRITICAL at `error`.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct TracingSink;

impl AlertSink for TracingSink {
    fn name(&self) -> &str {
        "tracing"
    }

    fn deliver(&self, a: &Alert) {
        const T: &str = "tower_pressure::alert";
        let fields = FieldList(&a.fields);
        let key = a.key.as_deref();
        let msg = a.display_message();
        match a.severity {
            Severity::Info => {
                tracing::info!(target: T, severity = "info", kind = %a.kind, rule = %a.rule, key, suppressed = a.suppressed, fields = %fields, "{msg}")
            }
            Severity::Warning => {
                tracing::warn!(target: T, severity = "warning", kind = %a.kind, rule = %a.rule, key, suppressed = a.suppressed, fields = %fields, "{msg}")
            }
            Severity::Error => {
                tracing::error!(target: T, severity = "error", kind = %a.kind, rule = %a.rule, key, suppressed = a.suppressed, fields = %fields, "{msg}")
            }
            Severity::Critical => {
                tracing::error!(target: T, severity = "critical", kind = %a.kind, rule = %a.rule, key, suppressed = a.suppressed, fields = %fields, "{msg}")
            }
        }
    }
}

struct FieldList<'a>(&'a [(Arc<str>, String)]);

impl fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// Writes one human-readable line per alert to stdout (or another writer):
/// `[WARNING] breaker_opened db: circuit breaker db opened: ...`. ANSI colour is used only
/// when the output is a terminal (`std::io::IsTerminal`), unless overridden.
pub struct StdoutSink {
    out: Mutex<Box<dyn Write + Send>>,
    colour: bool,
}

impl fmt::Debug for StdoutSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdoutSink")
            .field("colour", &self.colour)
            .finish_non_exhaustive()
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutSink {
    /// Writes to stdout, in colour when stdout is a terminal.
    pub fn new() -> Self {
        Self {
            out: Mutex::new(Box::new(std::io::stdout())),
            colour: std::io::stdout().is_terminal(),
        }
    }

    /// Writes to `w`, without colour (for files, pipes and tests).
    pub fn to_writer(w: impl Write + Send + 'static) -> Self {
        Self {
            out: Mutex::new(Box::new(w)),
            colour: false,
        }
    }

    /// Forces colour on or off.
    pub fn colour(mut self, on: bool) -> Self {
        self.colour = on;
        self
    }

    /// The line written for `alert` (without the newline).
    pub fn format(&self, a: &Alert) -> String {
        let label = a.severity.label();
        let head = if self.colour {
            let code = match a.severity {
                Severity::Info => "36",
                Severity::Warning => "33",
                Severity::Error => "31",
                Severity::Critical => "1;41;97",
            };
            format!("\x1b[{code}m[{label}]\x1b[0m")
        } else {
            format!("[{label}]")
        };
        match &a.key {
            Some(k) => format!("{head} {} {k}: {}", a.kind, a.display_message()),
            None => format!("{head} {}: {}", a.kind, a.display_message()),
        }
    }
}

impl AlertSink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }

    fn deliver(&self, alert: &Alert) {
        let line = self.format(alert);
        let mut out = match self.out.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // A closed stdout must not take the manager down; the tracing sink still has it.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Calls a user closure for every alert (the seed's SIGNAL channel). The closure runs on the
/// manager's task: hand slow work to another task.
///
/// ```
/// use tower_pressure::alert::{CallbackSink, AlertSink, Alert, Severity};
/// let sink = CallbackSink::new(|a: &Alert| println!("ALERT: {} - {}", a.severity(), a.message()));
/// sink.deliver(&Alert::new(Severity::Info, "test", "hello"));
/// ```
pub struct CallbackSink {
    f: Box<dyn Fn(&Alert) + Send + Sync>,
}

impl fmt::Debug for CallbackSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackSink").finish_non_exhaustive()
    }
}

impl CallbackSink {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&Alert) + Send + Sync + 'static) -> Self {
        Self { f: Box::new(f) }
    }
}

impl AlertSink for CallbackSink {
    fn name(&self) -> &str {
        "callback"
    }

    fn deliver(&self, alert: &Alert) {
        (self.f)(alert)
    }
}
