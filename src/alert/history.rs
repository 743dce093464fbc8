//! The alert history: a bounded ring of recent alerts plus per-minute counts for the last 24
//! hours, so [`AlertHistory::summary`] is exact over its windows with bounded memory.
//!
//! Pure logic: time is an argument.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::{Alert, Severity};

const MINUTE: Duration = Duration::from_secs(60);
const DAY_MINUTES: u64 = 24 * 60;

/// Bounded alert history. See the [module docs](self).
#[derive(Debug)]
pub struct AlertHistory {
    ring: VecDeque<Alert>,
    capacity: usize,
    recent: usize,
    epoch: Instant,
    /// (minute since epoch, alerts in that minute), oldest first, at most 24 h of minutes.
    minutes: VecDeque<(u64, u64)>,
    total: u64,
    by_severity: [u64; 4],
}

/// The seed's alert summary: totals, windows, by severity and the most recent alerts.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct AlertSummary {
    /// Alerts delivered since the manager started.
    pub total_alerts: u64,
    /// Alerts delivered in the last hour.
    pub last_hour: u64,
    /// Alerts delivered in the last 24 hours.
    pub last_24_hours: u64,
    /// Alerts delivered since start, per severity.
    pub by_severity: BySeverity,
    /// Alerts suppressed by rate limits since start.
    pub suppressed: u64,
    /// The most recent alerts, newest first.
    pub recent_alerts: Vec<AlertRecord>,
}

/// Counts per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BySeverity {
    /// INFO alerts.
    pub info: u64,
    /// WARNING alerts.
    pub warning: u64,
    /// ERROR alerts.
    pub error: u64,
    /// CRITICAL alerts.
    pub critical: u64,
}

impl BySeverity {
    /// The count for one severity.
    pub fn get(&self, s: Severity) -> u64 {
        match s {
            Severity::Info => self.info,
            Severity::Warning => self.warning,
            Severity::Error => self.error,
            Severity::Critical => self.critical,
        }
    }
}

/// One alert as shown in a summary.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct AlertRecord {
    /// Severity.
    pub severity: Severity,
    /// Kind.
    pub kind: String,
    /// The rule that produced it.
    pub rule: String,
    /// Key, if any.
    pub key: Option<String>,
    /// Message, with the suppression note.
    pub message: String,
    /// Alerts suppressed before this one.
    pub suppressed: u64,
    /// Seconds between the alert and the summary.
    pub age_seconds: f64,
    /// Structured fields.
    pub fields: std::collections::BTreeMap<String, String>,
}

impl AlertRecord {
    fn from_alert(a: &Alert, now: Instant) -> Self {
        Self {
            severity: a.severity,
            kind: a.kind.to_string(),
            rule: a.rule.to_string(),
            key: a.key.as_deref().map(str::to_string),
            message: a.display_message(),
            suppressed: a.suppressed,
            age_seconds: now.saturating_duration_since(a.at).as_secs_f64(),
            fields: a
                .fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }
}

impl AlertHistory {
    /// A history keeping `capacity` alerts (at least 1) and showing `recent` of them in
    /// summaries.
    pub fn new(capacity: usize, recent: usize, now: Instant) -> Self {
        let capacity = capacity.max(1);
        Self {
            ring: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            recent,
            epoch: now,
            minutes: VecDeque::new(),
            total: 0,
            by_severity: [0; 4],
        }
    }

    fn minute(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.epoch).as_secs()) / MINUTE.as_secs()
    }

    /// Records a delivered alert; it is counted at `now` (the time it was delivered).
    pub fn record(&mut self, alert: Alert, now: Instant) {
        self.total += 1;
        self.by_severity[alert.severity.index()] += 1;
        let m = self.minute(now);
        match self.minutes.back_mut() {
            Some((bm, n)) if *bm == m => *n += 1,
            _ => self.minutes.push_back((m, 1)),
        }
        self.prune(m);
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(alert);
    }

    fn prune(&mut self, now_minute: u64) {
        while let Some((m, _)) = self.minutes.front() {
            if now_minute.saturating_sub(*m) >= DAY_MINUTES {
                self.minutes.pop_front();
            } else {
                break;
            }
        }
    }

    fn count_since(&self, now: Instant, window: Duration) -> u64 {
        let now_m = self.minute(now);
        let span = window.as_secs() / MINUTE.as_secs();
        self.minutes
            .iter()
            .filter(|(m, _)| now_m.saturating_sub(*m) < span)
            .map(|(_, n)| n)
            .sum()
    }

    /// The summary at `now`; `suppressed` is supplied by the rate limiter.
    ///
    /// Windows are counted in whole minutes: "last hour" is the current minute and the 59
    /// before it.
    pub fn summary(&self, now: Instant, suppressed: u64) -> AlertSummary {
        let [info, warning, error, critical] = self.by_severity;
        AlertSummary {
            total_alerts: self.total,
            last_hour: self.count_since(now, Duration::from_secs(3600)),
            last_24_hours: self.count_since(now, Duration::from_secs(24 * 3600)),
            by_severity: BySeverity {
                info,
                warning,
                error,
                critical,
            },
            suppressed,
            recent_alerts: self
                .ring
                .iter()
                .rev()
                .take(self.recent)
                .map(|a| AlertRecord::from_alert(a, now))
                .collect(),
        }
    }

    /// The alerts kept, oldest first.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.ring.iter()
    }

    /// Alerts recorded since start.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(s: Severity) -> Alert {
        Alert::new(s, "k", "m")
    }

    #[test]
    fn windows_and_bounds() {
        let t0 = Instant::now();
        let mut h = AlertHistory::new(5, 3, t0);
        let min = |n: u64| t0 + Duration::from_secs(60 * n);
        h.record(alert(Severity::Info), min(0));
        h.record(alert(Severity::Warning), min(30));
        h.record(alert(Severity::Critical), min(90));
        for i in 0..4 {
            h.record(alert(Severity::Error), min(24 * 60 + 10 + i));
        }
        let s = h.summary(min(24 * 60 + 40), 7);
        assert_eq!(s.total_alerts, 7);
        // Minutes 0 and 30 are 24 h or more old at 24h40m; 90 and the four are not.
        assert_eq!(s.last_24_hours, 5);
        assert_eq!(s.last_hour, 4);
        assert_eq!(s.by_severity.error, 4);
        assert_eq!(s.by_severity.critical, 1);
        assert_eq!(s.suppressed, 7);
        assert_eq!(s.recent_alerts.len(), 3);
        assert_eq!(h.alerts().count(), 5);
    }
}
