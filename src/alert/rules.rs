//! Rules: functions from an [`Event`] to an optional [`Alert`], each with its rate limit.
//!
//! [`Rule::defaults`] are seed 000's alert configuration:
//!
//! | rule              | fires on                                   | severity | rate limit (per key) |
//! |-------------------|--------------------------------------------|----------|----------------------|
//! | `degradation`     | degradation started                        | INFO     | 10 min               |
//! | `resource`        | memory or CPU drove the level to High/Critical | WARNING | 5 min             |
//! | `pressure`        | any other rise (Emergency from any signal) | INFO / WARNING / CRITICAL | 10/5/3/2 min by level |
//! | `breaker_opened`  | a circuit breaker opened                   | WARNING  | 5 min                |
//! | `breakers_open`   | two or more breakers open at once          | ERROR    | 5 min                |
//! | `service`         | an `AlertLayer` threshold was crossed      | WARNING (INFO on recovery) | 5 min  |
//! | `retry_budget`    | a retry budget refused retries             | WARNING  | 5 min                |
//! | `shed`            | a concurrency limiter shed requests        | WARNING  | 5 min                |
//! | `custom`          | a [`CustomEvent`](crate::event::CustomEvent) | INFO   | 1 min                |
//! | `quota_store`     | the fleet quota store (Redis) failed: [`StoreDegraded`](crate::event::QuotaEventKind::StoreDegraded) | WARNING | 5 min |
//!
//! Exactly one of `resource` and `pressure` fires for a given level change, so a rise is
//! reported once.
//!
//! # Resolution
//!
//! An alert stays *active* in the [`AlertManager`](super::AlertManager) (per rule and key)
//! until its condition clears; then the manager hands it, with its end time, to every sink's
//! [`AlertSink::resolve`](super::AlertSink::resolve) (the Alertmanager sink posts it once with
//! `endsAt`). A rule says when its alerts clear with [`Rule::resolve_when`] (an event that
//! ends the condition) or [`Rule::resolve_after`] (no new firing for a while: for alerts
//! about events rather than states). The defaults:
//!
//! | rule              | resolves when                                                   |
//! |-------------------|-----------------------------------------------------------------|
//! | `degradation`     | degradation ends                                                |
//! | `resource`        | the level falls below High                                      |
//! | `pressure`        | the level falls below the alert's level                         |
//! | `breaker_opened`  | that breaker closes (closed, disabled, metrics only, or reset)  |
//! | `breakers_open`   | fewer than `min` breakers are open                              |
//! | `service`         | the service (and key) recovers; its `service_recovered` notice is delivered already resolved |
//! | `quota_store`     | the store answers again for that tenant, or for the whole store ([`StoreRecovered`](crate::event::QuotaEventKind::StoreRecovered)) |
//! | `retry_budget`, `shed`, `custom`, user rules | 5 minutes without a new firing (Alertmanager's default `resolve_timeout`) |
//! | watches           | the signal is back at or under the alert's threshold            |
//!
//! A rule whose `resolve_when` is true for the very event that produced an alert makes that
//! alert a notice: delivered already resolved and never active.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Alert, Severity};
use crate::event::{
    BreakerEventKind, CircuitState, ConcurrencyEventKind, Event, QuotaEventKind, RetryEventKind,
    ServiceEventKind,
};
use crate::pressure::PressureLevel;
use crate::pressure::Signal;

type EvalFn = dyn Fn(&Event, &RuleContext) -> Option<Alert> + Send + Sync;
type IntervalFn = dyn Fn(&Alert) -> Duration + Send + Sync;
type ResolveFn = dyn Fn(&Event, &RuleContext, &Alert) -> bool + Send + Sync;

/// How long an alert of a rule without [`Rule::resolve_when`] stays active without a new
/// firing: 5 minutes, Alertmanager's default `resolve_timeout`.
pub const DEFAULT_RESOLVE_AFTER: Duration = Duration::from_secs(5 * 60);

/// State the manager keeps across events for rules that need more than one event
/// (for example "several breakers open").
#[derive(Debug, Default, Clone)]
pub struct RuleContext {
    open: BTreeSet<(Arc<str>, Option<Arc<str>>)>,
}

impl RuleContext {
    /// Updates the context with an event (the manager calls this before evaluating rules).
    pub fn observe(&mut self, event: &Event) {
        if let Event::Breaker(b) = event {
            let id = (b.breaker.clone(), b.key.clone());
            match &b.kind {
                BreakerEventKind::StateTransition { to, .. } => {
                    if matches!(to, CircuitState::Open | CircuitState::ForcedOpen) {
                        self.open.insert(id);
                    } else {
                        self.open.remove(&id);
                    }
                }
                BreakerEventKind::Reset => {
                    self.open.remove(&id);
                }
                _ => {}
            }
        }
    }

    /// How many breakers (or per-key breakers) are open right now.
    pub fn open_breakers(&self) -> usize {
        self.open.len()
    }

    /// The open breakers as `name` or `name/key`.
    pub fn open_breaker_names(&self) -> Vec<String> {
        self.open
            .iter()
            .map(|(b, k)| breaker_id(b, k.as_deref()))
            .collect()
    }
}

fn breaker_id(b: &str, k: Option<&str>) -> String {
    match k {
        Some(k) => format!("{b}/{k}"),
        None => b.to_string(),
    }
}

/// One alert rule: a name, an evaluation function and a rate-limit interval.
///
/// ```
/// use std::time::Duration;
/// use tower_pressure::alert::{Alert, Rule, Severity};
/// use tower_pressure::event::Event;
///
/// let deploys = Rule::new("deploys", |e: &Event| match e {
///     Event::Custom(c) if &*c.kind == "deploy" => {
///         Some(Alert::new(Severity::Info, "deploy", c.message.to_string()))
///     }
///     _ => None,
/// })
/// .every(Duration::from_secs(60));
/// assert_eq!(deploys.name(), "deploys");
/// ```
#[derive(Clone)]
pub struct Rule {
    name: Arc<str>,
    eval: Arc<EvalFn>,
    interval: Arc<IntervalFn>,
    resolve: Option<Arc<ResolveFn>>,
    resolve_after: Option<Duration>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Seed 000's default intervals.
pub mod intervals {
    use std::time::Duration;

    /// Memory and CPU warnings: every 5 minutes.
    pub const RESOURCE: Duration = Duration::from_secs(5 * 60);
    /// Circuit breaker alerts: every 5 minutes.
    pub const BREAKER: Duration = Duration::from_secs(5 * 60);
    /// Degradation alerts: every 10 minutes.
    pub const DEGRADATION: Duration = Duration::from_secs(10 * 60);
    /// Service symptom alerts: every 5 minutes.
    pub const SERVICE: Duration = Duration::from_secs(5 * 60);
    /// Custom events: every minute.
    pub const CUSTOM: Duration = Duration::from_secs(60);
    /// Quota store (Redis) degraded: every 5 minutes.
    pub const QUOTA_STORE: Duration = Duration::from_secs(5 * 60);
    /// Threshold watches (seed 001's monitor): every 60 seconds.
    pub const WATCH: Duration = Duration::from_secs(60);
    /// Pressure alerts per level (Normal, Elevated, High, Critical, Emergency): 2 to 10
    /// minutes, more often when the level is worse.
    pub const PRESSURE: [Duration; 5] = [
        Duration::from_secs(10 * 60),
        Duration::from_secs(10 * 60),
        Duration::from_secs(5 * 60),
        Duration::from_secs(3 * 60),
        Duration::from_secs(2 * 60),
    ];
}

impl Rule {
    /// A rule from a user closure; rate limit 5 minutes per key unless changed with
    /// [`Rule::every`].
    pub fn new<F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        F: Fn(&Event) -> Option<Alert> + Send + Sync + 'static,
    {
        Self::with_context(name, move |e, _| f(e))
    }

    /// A rule that also sees the manager's [`RuleContext`].
    pub fn with_context<F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        F: Fn(&Event, &RuleContext) -> Option<Alert> + Send + Sync + 'static,
    {
        Self {
            name: name.into(),
            eval: Arc::new(f),
            interval: Arc::new(|_| Duration::from_secs(300)),
            resolve: None,
            resolve_after: Some(DEFAULT_RESOLVE_AFTER),
        }
    }

    /// Says when an active alert of this rule clears: `f(event, context, alert)` is asked for
    /// every event while the alert is active. Replaces the
    /// [`resolve_after`](Self::resolve_after) timeout (call that afterwards to have both).
    /// See the [module docs](self#resolution).
    ///
    /// ```
    /// use tower_pressure::alert::{Alert, Rule, RuleContext, Severity};
    /// use tower_pressure::event::{CustomEvent, Event};
    ///
    /// let rule = Rule::new("disk", |e: &Event| match e {
    ///     Event::Custom(c) if &*c.kind == "disk_full" => {
    ///         Some(Alert::new(Severity::Error, "disk_full", "disk full"))
    ///     }
    ///     _ => None,
    /// })
    /// .resolve_when(|e: &Event, _: &RuleContext, _: &Alert| {
    ///     matches!(e, Event::Custom(c) if &*c.kind == "disk_ok")
    /// });
    /// let ctx = RuleContext::default();
    /// let full = rule.evaluate(&Event::Custom(CustomEvent::new("disk_full", "")), &ctx).unwrap();
    /// assert!(rule.clears(&Event::Custom(CustomEvent::new("disk_ok", "")), &ctx, &full));
    /// assert_eq!(rule.resolve_timeout(), None);
    /// ```
    pub fn resolve_when<F>(mut self, f: F) -> Self
    where
        F: Fn(&Event, &RuleContext, &Alert) -> bool + Send + Sync + 'static,
    {
        self.resolve = Some(Arc::new(f));
        self.resolve_after = None;
        self
    }

    /// Resolves an active alert of this rule when it has not fired again for `d` (default
    /// [`DEFAULT_RESOLVE_AFTER`] for rules without [`resolve_when`](Self::resolve_when)).
    pub fn resolve_after(mut self, d: Duration) -> Self {
        self.resolve_after = Some(d);
        self
    }

    /// `true` when `event` clears `alert` (an alert this rule produced).
    pub fn clears(&self, event: &Event, ctx: &RuleContext, alert: &Alert) -> bool {
        self.resolve.as_ref().is_some_and(|f| f(event, ctx, alert))
    }

    /// How long an alert stays active without a new firing, if the rule resolves by time.
    pub fn resolve_timeout(&self) -> Option<Duration> {
        self.resolve_after
    }

    /// Rate-limits this rule's alerts to one per `interval` per key (zero: no limit).
    pub fn every(mut self, interval: Duration) -> Self {
        self.interval = Arc::new(move |_| interval);
        self
    }

    /// Rate-limits with an interval chosen per alert (the pressure rule uses the level).
    pub fn interval_by<F>(mut self, f: F) -> Self
    where
        F: Fn(&Alert) -> Duration + Send + Sync + 'static,
    {
        self.interval = Arc::new(f);
        self
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Evaluates the rule; the returned alert carries the rule's name.
    pub fn evaluate(&self, event: &Event, ctx: &RuleContext) -> Option<Alert> {
        let mut alert = (self.eval)(event, ctx)?;
        alert.rule = self.name.clone();
        Some(alert)
    }

    /// The rate-limit interval for `alert`.
    pub fn interval(&self, alert: &Alert) -> Duration {
        (self.interval)(alert)
    }

    /// Seed 000's default rules; see the [module docs](self).
    pub fn defaults() -> Vec<Rule> {
        vec![
            Rule::degradation(),
            Rule::resource(),
            Rule::pressure(),
            Rule::breaker_opened(),
            Rule::breakers_open(2),
            Rule::service(),
            Rule::retry_budget(),
            Rule::shed(),
            Rule::custom(),
            Rule::quota_store(),
        ]
    }

    /// `degradation`: degradation started (INFO).
    pub fn degradation() -> Rule {
        Rule::new("degradation", |e| match e {
            Event::Degradation(d) if d.active => Some(
                Alert::new(
                    Severity::Info,
                    "degradation_started",
                    format!("degradation started at pressure level {}", d.level),
                )
                .with_field("level", d.level)
                .at_time(d.at),
            ),
            _ => None,
        })
        .every(intervals::DEGRADATION)
        .resolve_when(|e, _, _| matches!(e, Event::Degradation(d) if !d.active))
    }

    /// `resource`: memory or CPU drove the level up to High or Critical (WARNING), keyed by
    /// signal.
    pub fn resource() -> Rule {
        Rule::new("resource", |e| match e {
            Event::PressureChanged(p)
                if p.to > p.from
                    && matches!(p.to, PressureLevel::High | PressureLevel::Critical)
                    && resource_kind(p.signal).is_some() =>
            {
                let what = resource_kind(p.signal)?;
                Some(
                    Alert::new(
                        Severity::Warning,
                        format!("high_{what}_usage"),
                        format!(
                            "high {what} usage: {} at {:.1} (threshold {:.1}), pressure {}",
                            p.signal_name, p.value, p.threshold, p.to
                        ),
                    )
                    .with_key(p.signal_name.clone())
                    .with_field("signal", &p.signal_name)
                    .with_field("value", p.value)
                    .with_field("threshold", p.threshold)
                    .with_field("level", p.to)
                    .at_time(p.at),
                )
            }
            _ => None,
        })
        .every(intervals::RESOURCE)
        .resolve_when(
            |e, _, _| matches!(e, Event::PressureChanged(p) if p.to < PressureLevel::High),
        )
    }

    /// `pressure`: every other rise of the level; Elevated is INFO, High and Critical are
    /// WARNING, Emergency is CRITICAL. Keyed by level; 10/5/3/2 minutes by level.
    pub fn pressure() -> Rule {
        Rule::new("pressure", |e| match e {
            Event::PressureChanged(p)
                if p.to > p.from
                    && !(matches!(p.to, PressureLevel::High | PressureLevel::Critical)
                        && resource_kind(p.signal).is_some()) =>
            {
                let severity = match p.to {
                    PressureLevel::Emergency => Severity::Critical,
                    PressureLevel::High | PressureLevel::Critical => Severity::Warning,
                    _ => Severity::Info,
                };
                Some(
                    Alert::new(
                        severity,
                        format!("pressure_{}", p.to),
                        format!(
                            "pressure {} (was {}): {} at {:.1}",
                            p.to, p.from, p.signal_name, p.value
                        ),
                    )
                    .with_key(p.to.as_str())
                    .with_field("level", p.to)
                    .with_field("from", p.from)
                    .with_field("signal", &p.signal_name)
                    .with_field("value", p.value)
                    .at_time(p.at),
                )
            }
            _ => None,
        })
        .interval_by(|a| {
            let level = a
                .field("level")
                .and_then(|l| l.parse::<PressureLevel>().ok())
                .unwrap_or_default();
            intervals::PRESSURE[level.index()]
        })
        .resolve_when(|e, _, a| match e {
            Event::PressureChanged(p) => a
                .field("level")
                .and_then(|l| l.parse::<PressureLevel>().ok())
                .is_some_and(|level| p.to < level),
            _ => false,
        })
    }

    /// `breaker_opened`: a breaker moved to OPEN or FORCED_OPEN (WARNING), keyed by breaker.
    pub fn breaker_opened() -> Rule {
        Rule::new("breaker_opened", |e| match e {
            Event::Breaker(b) => match &b.kind {
                BreakerEventKind::StateTransition { from, to, reason }
                    if matches!(to, CircuitState::Open | CircuitState::ForcedOpen) =>
                {
                    let id = breaker_id(&b.breaker, b.key.as_deref());
                    Some(
                        Alert::new(
                            Severity::Warning,
                            "breaker_opened",
                            format!("circuit breaker {id} opened: {reason}"),
                        )
                        .with_key(id)
                        .with_field("breaker", &b.breaker)
                        .with_field("from", from)
                        .with_field("to", to)
                        .with_field("reason", reason)
                        .at_time(b.at),
                    )
                }
                _ => None,
            },
            _ => None,
        })
        .every(intervals::BREAKER)
        .resolve_when(|e, _, a| match e {
            Event::Breaker(b) => {
                let closed = match &b.kind {
                    BreakerEventKind::StateTransition { to, .. } => matches!(
                        to,
                        CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly
                    ),
                    BreakerEventKind::Reset => true,
                    _ => false,
                };
                closed && a.key() == Some(&*breaker_id(&b.breaker, b.key.as_deref()))
            }
            _ => false,
        })
    }

    /// `breakers_open`: at least `min` breakers are open at once (ERROR).
    pub fn breakers_open(min: usize) -> Rule {
        let min = min.max(2);
        Rule::with_context("breakers_open", move |e, ctx| match e {
            Event::Breaker(b)
                if matches!(&b.kind, BreakerEventKind::StateTransition { to, .. }
                    if matches!(to, CircuitState::Open | CircuitState::ForcedOpen))
                    && ctx.open_breakers() >= min =>
            {
                let names = ctx.open_breaker_names().join(", ");
                Some(
                    Alert::new(
                        Severity::Error,
                        "breakers_open",
                        format!("{} circuit breakers open: {names}", ctx.open_breakers()),
                    )
                    .with_field("open", ctx.open_breakers())
                    .with_field("breakers", names)
                    .at_time(b.at),
                )
            }
            _ => None,
        })
        .every(intervals::BREAKER)
        .resolve_when(move |e, ctx, _| matches!(e, Event::Breaker(_)) && ctx.open_breakers() < min)
    }

    /// `service`: an `AlertLayer` crossed its error-rate or latency threshold (WARNING) or
    /// recovered (INFO), keyed by service (and key) and symptom.
    pub fn service() -> Rule {
        Rule::new("service", |e| match e {
            Event::Service(s) => {
                let id = breaker_id(&s.name, s.key.as_deref());
                let a = match &s.kind {
                    ServiceEventKind::ErrorRateExceeded { rate, threshold } => Alert::new(
                        Severity::Warning,
                        "error_rate_exceeded",
                        format!("{id}: error rate {rate:.1}% >= {threshold:.1}%"),
                    )
                    .with_field("rate", format!("{rate:.2}"))
                    .with_field("threshold", threshold),
                    ServiceEventKind::LatencyExceeded {
                        observed,
                        threshold,
                    } => Alert::new(
                        Severity::Warning,
                        "latency_exceeded",
                        format!("{id}: latency {observed:?} above {threshold:?}"),
                    )
                    .with_field("observed_ms", observed.as_secs_f64() * 1e3)
                    .with_field("threshold_ms", threshold.as_secs_f64() * 1e3),
                    ServiceEventKind::Recovered => Alert::new(
                        Severity::Info,
                        "service_recovered",
                        format!("{id}: back under its thresholds"),
                    ),
                };
                // Keyed per service and symptom, so a latency alert is not suppressed by
                // an error-rate alert of the same service.
                let key = format!("{id}:{}", a.kind);
                Some(a.with_key(key).with_field("service", &s.name).at_time(s.at))
            }
            _ => None,
        })
        .every(intervals::SERVICE)
        .resolve_when(|e, _, a| match e {
            Event::Service(s) if matches!(s.kind, ServiceEventKind::Recovered) => {
                let prefix = format!("{}:", breaker_id(&s.name, s.key.as_deref()));
                a.key().is_some_and(|k| k.starts_with(&prefix))
            }
            _ => false,
        })
    }

    /// `retry_budget`: a retry budget refused retries (WARNING), keyed by retry layer.
    pub fn retry_budget() -> Rule {
        Rule::new("retry_budget", |e| match e {
            Event::Retry(r) => match &r.kind {
                RetryEventKind::BudgetExhausted { count } => Some(
                    Alert::new(
                        Severity::Warning,
                        "retry_budget_exhausted",
                        format!("{}: retry budget refused {count} retries", r.name),
                    )
                    .with_key(r.name.clone())
                    .with_field("count", count)
                    .at_time(r.at),
                ),
                _ => None,
            },
            _ => None,
        })
        .every(intervals::BREAKER)
    }

    /// `shed`: a concurrency limiter shed requests (WARNING), keyed by limiter and class.
    pub fn shed() -> Rule {
        Rule::new("shed", |e| match e {
            Event::Concurrency(c) => match &c.kind {
                ConcurrencyEventKind::Shed {
                    priority,
                    count,
                    reason,
                } => Some(
                    Alert::new(
                        Severity::Warning,
                        "requests_shed",
                        format!("{}: shed {count} {priority} requests: {reason}", c.name),
                    )
                    .with_key(format!("{}/{priority}", c.name))
                    .with_field("priority", priority)
                    .with_field("count", count)
                    .at_time(c.at),
                ),
                _ => None,
            },
            _ => None,
        })
        .every(intervals::SERVICE)
    }

    /// `quota_store`: the fleet quota store failed (WARNING), alert kind
    /// `quota_store_degraded`: the store is unreachable, slow or answers garbage, and the
    /// quota layer decides on its fallback mode (see
    /// [`RedisStore`](crate::quota::RedisStore) with feature `redis`). Keyed by tenant:
    /// `*` when the whole store failed, else the tenant whose keys hold a bad value. Resolves
    /// when the store answers again for that key
    /// ([`StoreRecovered`](crate::event::QuotaEventKind::StoreRecovered)). 5 minutes per key.
    ///
    /// ```
    /// use tower_pressure::alert::{AlertManager, Rule};
    ///
    /// assert_eq!(Rule::quota_store().name(), "quota_store");
    /// // One of the defaults: every manager has it unless removed.
    /// assert!(Rule::defaults().iter().any(|r| r.name() == "quota_store"));
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// let alerts = AlertManager::builder().remove_rule("quota_store").build().unwrap();
    /// assert!(!alerts.rules().iter().any(|r| r == "quota_store"));
    /// # });
    /// ```
    pub fn quota_store() -> Rule {
        Rule::new("quota_store", |e| match e {
            Event::Quota(q) => match &q.kind {
                QuotaEventKind::StoreDegraded { reason } => {
                    let message = if &*q.tenant == "*" {
                        format!("quota store degraded: {reason}; quotas on their fallback mode")
                    } else {
                        format!(
                            "quota store degraded for tenant {} ({}): {reason}; its quota on the fallback mode",
                            q.tenant, q.group
                        )
                    };
                    Some(
                        Alert::new(Severity::Warning, "quota_store_degraded", message)
                            .with_key(q.tenant.clone())
                            .with_field("tenant", &q.tenant)
                            .with_field("group", &q.group)
                            .with_field("reason", reason)
                            .at_time(q.at),
                    )
                }
                _ => None,
            },
            _ => None,
        })
        .every(intervals::QUOTA_STORE)
        .resolve_when(|e, _, a| match e {
            Event::Quota(q) => {
                matches!(q.kind, QuotaEventKind::StoreRecovered) && a.key() == Some(&*q.tenant)
            }
            _ => false,
        })
    }

    /// `custom`: a user event becomes an INFO alert of the event's kind.
    pub fn custom() -> Rule {
        Rule::new("custom", |e| match e {
            Event::Custom(c) => {
                let mut a =
                    Alert::new(Severity::Info, c.kind.clone(), c.message.to_string()).at_time(c.at);
                if let Some(k) = &c.key {
                    a = a.with_key(k.clone());
                }
                Some(a)
            }
            _ => None,
        })
        .every(intervals::CUSTOM)
    }
}

fn resource_kind(signal: Signal) -> Option<&'static str> {
    match signal {
        Signal::Memory
        | Signal::MemoryBytes
        | Signal::PsiMemory
        | Signal::CgroupPsiMemory
        | Signal::ProcessRss => Some("memory"),
        Signal::Cpu | Signal::PsiCpu | Signal::CgroupPsiCpu => Some("cpu"),
        _ => None,
    }
}

#[cfg(test)]
mod quota_store_tests {
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;
    use crate::event::QuotaEvent;

    fn quota(tenant: &str, kind: QuotaEventKind) -> Event {
        Event::Quota(QuotaEvent {
            tenant: Arc::from(tenant),
            group: Arc::from(if tenant == "*" { "*" } else { "free" }),
            kind,
            at: Instant::now(),
        })
    }

    fn degraded(tenant: &str) -> Event {
        quota(
            tenant,
            QuotaEventKind::StoreDegraded {
                reason: Arc::from("redis: connection refused"),
            },
        )
    }

    #[test]
    fn fires_on_store_degraded_and_resolves_on_recovered_for_its_key() {
        let rule = Rule::quota_store();
        let ctx = RuleContext::default();
        let a = rule.evaluate(&degraded("*"), &ctx).unwrap();
        assert_eq!(a.severity(), Severity::Warning);
        assert_eq!(a.kind(), "quota_store_degraded");
        assert_eq!(a.rule(), "quota_store");
        assert_eq!(a.key(), Some("*"));
        assert_eq!(a.field("reason"), Some("redis: connection refused"));
        assert!(
            a.message().contains("connection refused"),
            "{}",
            a.message()
        );
        assert_eq!(rule.interval(&a), Duration::from_secs(300));
        assert_eq!(rule.resolve_timeout(), None);
        // Recovered: the whole store clears the store-wide alert, not a tenant's.
        assert!(rule.clears(&quota("*", QuotaEventKind::StoreRecovered), &ctx, &a));
        assert!(!rule.clears(&quota("acme", QuotaEventKind::StoreRecovered), &ctx, &a));
        let t = rule.evaluate(&degraded("acme"), &ctx).unwrap();
        assert_eq!(t.key(), Some("acme"));
        assert_eq!(t.field("group"), Some("free"));
        assert!(rule.clears(&quota("acme", QuotaEventKind::StoreRecovered), &ctx, &t));
        assert!(!rule.clears(&quota("*", QuotaEventKind::StoreRecovered), &ctx, &t));
        // Other quota events neither fire nor clear.
        assert!(
            rule.evaluate(&quota("acme", QuotaEventKind::Resumed), &ctx)
                .is_none()
        );
        assert!(!rule.clears(&quota("*", QuotaEventKind::Resumed), &ctx, &a));
        assert!(
            rule.evaluate(&quota("*", QuotaEventKind::StoreRecovered), &ctx)
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_manager_raises_and_resolves_it() {
        let m = crate::alert::AlertManager::builder()
            .tracing(false)
            .build()
            .unwrap();
        let out = m.process_event(&degraded("*"));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind(), "quota_store_degraded");
        assert_eq!(m.active_alerts().len(), 1);
        m.process_event(&quota("*", QuotaEventKind::StoreRecovered));
        assert!(m.active_alerts().is_empty());
        assert_eq!(m.stats().resolved, 1);
    }
}
