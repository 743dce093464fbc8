//! [`AlertManager`]: consumes the event bus on its own task and turns events into alerts.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

use super::history::{AlertHistory, AlertSummary};
use super::ratelimit::{Decision, RateLimiter};
use super::rules::{RuleContext, intervals};
use super::sink::{AlertSink, CallbackSink, SinkStats, StdoutSink, TracingSink};
use super::{Alert, Rule, Severity};
use crate::error::{ConfigError, check_range};
use crate::event::{Event, EventBus};
use crate::pressure::{PressureMonitor, Signal};

/// Turns [`Event`]s into [`Alert`]s: rules, rate limits per (rule, key), a bounded history,
/// and sinks. Cheap to clone; clones share everything. Dropping the last clone stops the
/// task.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_pressure::alert::{AlertManager, Severity};
/// use tower_pressure::event::{CustomEvent, Event};
/// use tower_pressure::pressure::PressureMonitor;
///
/// let (monitor, _manual) = PressureMonitor::manual();
/// let alerts = AlertManager::builder().monitor(monitor.clone()).build()?;
///
/// // The seed's troubleshooting recipe: feed a synthetic event, see what it produces.
/// let produced = alerts.process_event(&Event::Custom(CustomEvent::new("test", "Test alert")));
/// assert_eq!(produced.len(), 1);
/// assert_eq!(produced[0].severity(), Severity::Info);
/// assert_eq!(alerts.summary().total_alerts, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AlertManager {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    sinks: Vec<Arc<dyn AlertSink>>,
    monitor: Option<PressureMonitor>,
    processed: AtomicU64,
    lagged: AtomicU64,
    resolved: AtomicU64,
    _stop: Option<oneshot::Sender<()>>,
}

struct State {
    rules: Vec<Rule>,
    ctx: RuleContext,
    limiter: RateLimiter,
    history: AlertHistory,
    watches: Vec<Watch>,
    active: BTreeMap<ActiveKey, Active>,
    /// Most active alerts tracked (the rate limiter's entry count); firings past it are
    /// delivered but not tracked, so they never resolve.
    active_capacity: usize,
    untracked: u64,
}

type ActiveKey = (Arc<str>, Option<Arc<str>>);

/// One active alert: its first firing (the start time), the last firing, whether any sink
/// was handed it, and how it resolves by time.
struct Active {
    alert: Alert,
    last: Instant,
    delivered: bool,
    resolve_after: Option<Duration>,
}

fn active_key(a: &Alert) -> ActiveKey {
    (a.rule.clone(), a.key.clone())
}

/// Records a firing in the active set: a new activation, or a refresh of `last`.
fn track(
    st_active: &mut BTreeMap<ActiveKey, Active>,
    cap: usize,
    untracked: &mut u64,
    alert: Alert,
    delivered: bool,
    resolve_after: Option<Duration>,
    now: Instant,
) {
    let key = active_key(&alert);
    if let Some(a) = st_active.get_mut(&key) {
        a.last = now;
        if delivered && !a.delivered {
            a.delivered = true;
            a.alert = alert;
        }
        return;
    }
    if st_active.len() >= cap {
        *untracked += 1;
        return;
    }
    st_active.insert(
        key,
        Active {
            alert,
            last: now,
            delivered,
            resolve_after,
        },
    );
}

/// A seed-001 style threshold watch on one monitor signal.
#[derive(Debug, Clone, Copy)]
struct Watch {
    signal: Signal,
    warning: f64,
    critical: f64,
}

/// Counters of the manager itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ManagerStats {
    /// Events evaluated.
    pub events_processed: u64,
    /// Events lost because the manager's task fell behind the bus.
    pub events_lagged: u64,
    /// Alerts suppressed by rate limits.
    pub suppressed: u64,
    /// Alerts active now (fired, not yet resolved); see [`rules`](super::rules#resolution).
    pub active: u64,
    /// Active alerts resolved since start (delivered or not).
    pub resolved: u64,
    /// Firings not tracked as active because the active set was full.
    pub untracked: u64,
}

impl fmt::Debug for AlertManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertManager")
            .field("channels", &self.channels())
            .field("stats", &self.stats())
            .finish()
    }
}

impl AlertManager {
    /// Starts configuring a manager.
    pub fn builder() -> AlertManagerBuilder {
        AlertManagerBuilder::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.inner.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Evaluates one event now, as the task does for every event on the bus: rules, rate
    /// limits, history, sinks. Returns the alerts delivered (suppressed ones are counted,
    /// not returned). Use it to feed a synthetic event when checking a configuration.
    pub fn process_event(&self, event: &Event) -> Vec<Alert> {
        self.inner.processed.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut resolved = Vec::new();
        let out = {
            let mut st = self.lock();
            let State {
                rules,
                ctx,
                limiter,
                history,
                active,
                active_capacity,
                untracked,
                ..
            } = &mut *st;
            ctx.observe(event);
            // First the alerts this event clears, so that a rule that fires and clears on
            // the same kind of event starts afresh.
            active.retain(|_, a| {
                let clears = rules
                    .iter()
                    .find(|r| r.name() == &*a.alert.rule)
                    .is_some_and(|r| r.clears(event, ctx, &a.alert));
                if clears {
                    resolved.push((a.delivered, a.alert.clone().resolved_at(now)));
                }
                !clears
            });
            let mut out = Vec::new();
            for rule in rules.iter() {
                if let Some(mut alert) = rule.evaluate(event, ctx) {
                    let interval = rule.interval(&alert);
                    if rule.clears(event, ctx, &alert) {
                        // A notice: its condition ended as it was reported.
                        alert.ended_at = Some(alert.at);
                        admit(limiter, history, interval, alert, now, &mut out);
                    } else {
                        let copy = alert.clone();
                        let delivered = admit(limiter, history, interval, alert, now, &mut out);
                        track(
                            active,
                            *active_capacity,
                            untracked,
                            copy,
                            delivered,
                            rule.resolve_timeout(),
                            now,
                        );
                    }
                }
            }
            out
        };
        self.finish_resolved(resolved);
        self.deliver(&out);
        out
    }

    /// Counts resolved alerts and hands those any sink had seen to every sink's `resolve`.
    fn finish_resolved(&self, resolved: Vec<(bool, Alert)>) {
        for (delivered, a) in resolved {
            self.inner.resolved.fetch_add(1, Ordering::Relaxed);
            if delivered {
                for s in &self.inner.sinks {
                    s.resolve(&a);
                }
            }
        }
    }

    /// Resolves the alerts whose rule resolves by time ([`Rule::resolve_after`]) and that
    /// have not fired again for that long; returns them. The manager's task does this every
    /// second.
    pub fn check_resolutions(&self) -> Vec<Alert> {
        let now = Instant::now();
        let mut resolved = Vec::new();
        {
            let mut st = self.lock();
            st.active.retain(|_, a| {
                let due = a
                    .resolve_after
                    .is_some_and(|d| now.saturating_duration_since(a.last) >= d);
                if due {
                    resolved.push((a.delivered, a.alert.clone().resolved_at(now)));
                }
                !due
            });
        }
        let out = resolved.iter().map(|(_, a)| a.clone()).collect();
        self.finish_resolved(resolved);
        out
    }

    /// Resolves the active alert of `rule` with `key` now (an operator's or a program's
    /// word that the condition cleared). Returns `false` when no such alert is active.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tower_pressure::alert::{Alert, AlertManager, Severity};
    ///
    /// let alerts = AlertManager::builder().tracing(false).build()?;
    /// let disk = Alert::new(Severity::Error, "disk_full", "disk full").with_key("/var");
    /// alerts.raise("disk", disk, Duration::from_secs(60));
    /// assert_eq!(alerts.active_alerts().len(), 1);
    /// assert!(alerts.resolve("disk", Some("/var")));
    /// assert!(alerts.active_alerts().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn resolve(&self, rule: &str, key: Option<&str>) -> bool {
        let now = Instant::now();
        let k: ActiveKey = (Arc::from(rule), key.map(Arc::from));
        let removed = self.lock().active.remove(&k);
        match removed {
            Some(a) => {
                self.finish_resolved(vec![(a.delivered, a.alert.resolved_at(now))]);
                true
            }
            None => false,
        }
    }

    /// The active alerts (fired, condition not cleared), each as first fired.
    pub fn active_alerts(&self) -> Vec<Alert> {
        self.lock()
            .active
            .values()
            .map(|a| a.alert.clone())
            .collect()
    }

    /// Delivers `alert` as if a rule named `rule` had produced it (rate-limited per
    /// (rule, key) with `interval`). Returns `false` when it was suppressed. The alert is
    /// active until [`resolve`](Self::resolve)d, or resolves as the rule of that name does
    /// (5 minutes without a new firing when there is no such rule).
    pub fn raise(&self, rule: &str, mut alert: Alert, interval: Duration) -> bool {
        alert.rule = Arc::from(rule);
        let now = Instant::now();
        let mut out = Vec::with_capacity(1);
        {
            let mut st = self.lock();
            let resolve_after = match st.rules.iter().find(|r| r.name() == rule) {
                Some(r) => r.resolve_timeout(),
                None => Some(super::rules::DEFAULT_RESOLVE_AFTER),
            };
            let State {
                limiter,
                history,
                active,
                active_capacity,
                untracked,
                ..
            } = &mut *st;
            let copy = alert.clone();
            let delivered = admit(limiter, history, interval, alert, now, &mut out);
            if !copy.is_resolved() {
                track(
                    active,
                    *active_capacity,
                    untracked,
                    copy,
                    delivered,
                    resolve_after,
                    now,
                );
            }
        }
        self.deliver(&out);
        !out.is_empty()
    }

    fn deliver(&self, alerts: &[Alert]) {
        for a in alerts {
            for s in &self.inner.sinks {
                s.deliver(a);
            }
        }
    }

    /// The seed's alert summary: total, last hour, last 24 h, by severity, recent alerts.
    pub fn summary(&self) -> AlertSummary {
        let st = self.lock();
        st.history
            .summary(Instant::now(), st.limiter.suppressed_total())
    }

    /// The alerts kept in the history, oldest first.
    pub fn history(&self) -> Vec<Alert> {
        self.lock().history.alerts().cloned().collect()
    }

    /// The names of the configured sinks (`["tracing", "webhook"]`).
    pub fn channels(&self) -> Vec<&str> {
        self.inner.sinks.iter().map(|s| s.name()).collect()
    }

    /// The counters of every sink that keeps any (the webhook's drop count is here).
    pub fn sink_stats(&self) -> Vec<(String, SinkStats)> {
        self.inner
            .sinks
            .iter()
            .filter_map(|s| s.stats().map(|st| (s.name().to_string(), st)))
            .collect()
    }

    /// The manager's own counters.
    pub fn stats(&self) -> ManagerStats {
        let st = self.lock();
        ManagerStats {
            events_processed: self.inner.processed.load(Ordering::Relaxed),
            events_lagged: self.inner.lagged.load(Ordering::Relaxed),
            suppressed: st.limiter.suppressed_total(),
            active: st.active.len() as u64,
            resolved: self.inner.resolved.load(Ordering::Relaxed),
            untracked: st.untracked,
        }
    }

    /// The names of the rules, in evaluation order.
    pub fn rules(&self) -> Vec<String> {
        self.lock()
            .rules
            .iter()
            .map(|r| r.name().to_string())
            .collect()
    }

    /// Changes the rules of a running manager in one step (for configuration reloads):
    /// `f` gets the rule list, in evaluation order, under the manager's lock, so events are
    /// judged by the old list or the new one, never a mix. Rate-limit state, history and
    /// the rule context (open breakers seen so far) are kept.
    ///
    /// ```
    /// use tower_pressure::alert::AlertManager;
    /// let manager = AlertManager::builder().build()?;
    /// manager.update_rules(|rules| rules.retain(|r| r.name() != "retry_budget"));
    /// assert!(!manager.rules().iter().any(|r| r == "retry_budget"));
    /// # Ok::<(), tower_pressure::ConfigError>(())
    /// ```
    pub fn update_rules(&self, f: impl FnOnce(&mut Vec<Rule>)) {
        f(&mut self.lock().rules);
    }

    /// The monitor given to the builder, if any.
    pub fn monitor(&self) -> Option<&PressureMonitor> {
        self.inner.monitor.as_ref()
    }

    /// Checks the threshold watches against the monitor's latest readings now (the task does
    /// this every watch interval).
    pub fn check_watches(&self) -> Vec<Alert> {
        let Some(monitor) = &self.inner.monitor else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut out = Vec::new();
        let mut resolved = Vec::new();
        {
            let mut st = self.lock();
            let State {
                limiter,
                history,
                watches,
                active,
                active_capacity,
                untracked,
                ..
            } = &mut *st;
            for w in watches.iter() {
                let Some(v) = monitor.reading(w.signal) else {
                    continue;
                };
                let name = monitor.signal_name(w.signal);
                // Back at or under a level's threshold: that level's alert clears.
                for (threshold, level) in [(w.warning, "warning"), (w.critical, "critical")] {
                    if v <= threshold {
                        let k: ActiveKey = (
                            Arc::from("watch"),
                            Some(Arc::from(format!("{name}/{level}"))),
                        );
                        if let Some(a) = active.remove(&k) {
                            resolved.push((a.delivered, a.alert.resolved_at(now)));
                        }
                    }
                }
                let (severity, threshold, level) = if v > w.critical {
                    (Severity::Critical, w.critical, "critical")
                } else if v > w.warning {
                    (Severity::Warning, w.warning, "warning")
                } else {
                    continue;
                };
                let mut a = Alert::new(
                    severity,
                    "resource_threshold",
                    format!("{name} at {v:.1} above its {level} level {threshold:.1}"),
                )
                .with_key(format!("{name}/{level}"))
                .with_field("signal", &name)
                .with_field("value", v)
                .with_field("threshold", threshold)
                .at_time(now);
                a.rule = Arc::from("watch");
                let copy = a.clone();
                let delivered = admit(limiter, history, intervals::WATCH, a, now, &mut out);
                track(
                    active,
                    *active_capacity,
                    untracked,
                    copy,
                    delivered,
                    None,
                    now,
                );
            }
        }
        self.finish_resolved(resolved);
        self.deliver(&out);
        out
    }
}

fn admit(
    limiter: &mut RateLimiter,
    history: &mut AlertHistory,
    interval: Duration,
    mut alert: Alert,
    now: Instant,
    out: &mut Vec<Alert>,
) -> bool {
    match limiter.check(&alert.rule, alert.key.as_deref(), interval, now) {
        Decision::Deliver { suppressed } => {
            alert.suppressed = suppressed;
            history.record(alert.clone(), now);
            out.push(alert);
            true
        }
        Decision::Suppress => false,
    }
}

async fn run(
    weak: Weak<Inner>,
    mut rx: broadcast::Receiver<Event>,
    mut stop: oneshot::Receiver<()>,
    watch_every: Option<Duration>,
) {
    let mut tick = watch_every.map(|d| {
        let mut i = tokio::time::interval_at(crate::clock::deadline(Instant::now(), d), d);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let second = Duration::from_secs(1);
    let mut resolutions = tokio::time::interval_at(Instant::now() + second, second);
    resolutions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let watch_tick = async {
            match tick.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            r = rx.recv() => {
                let Some(inner) = weak.upgrade() else { return };
                let manager = AlertManager { inner };
                match r {
                    Ok(event) => {
                        manager.process_event(&event);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        manager.inner.lagged.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(target: "tower_pressure::alert", lost = n, "alert manager fell behind the event bus");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            _ = watch_tick => {
                let Some(inner) = weak.upgrade() else { return };
                AlertManager { inner }.check_watches();
            }
            _ = resolutions.tick() => {
                let Some(inner) = weak.upgrade() else { return };
                AlertManager { inner }.check_resolutions();
            }
        }
    }
}

/// Configures an [`AlertManager`].
pub struct AlertManagerBuilder {
    monitor: Option<PressureMonitor>,
    bus: Option<EventBus>,
    rules: Vec<Rule>,
    intervals: Vec<(String, Duration)>,
    tracing: bool,
    sinks: Vec<Arc<dyn AlertSink>>,
    history: usize,
    recent: usize,
    limiter_entries: usize,
    watches: Vec<Watch>,
    watch_interval: Duration,
}

impl fmt::Debug for AlertManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertManagerBuilder")
            .field("rules", &self.rules)
            .field("tracing", &self.tracing)
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("history", &self.history)
            .field("watches", &self.watches)
            .finish_non_exhaustive()
    }
}

impl Default for AlertManagerBuilder {
    fn default() -> Self {
        Self {
            monitor: None,
            bus: None,
            rules: Rule::defaults(),
            intervals: Vec::new(),
            tracing: true,
            sinks: Vec::new(),
            history: 1000,
            recent: 10,
            limiter_entries: 4096,
            watches: Vec::new(),
            watch_interval: Duration::from_secs(1),
        }
    }
}

impl AlertManagerBuilder {
    /// Consumes `monitor`'s event bus (unless [`event_bus`](Self::event_bus) is given) and
    /// lets threshold watches read it.
    pub fn monitor(mut self, monitor: PressureMonitor) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Consumes this bus.
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Adds a rule, evaluated after the ones already configured.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Removes every rule configured so far (the defaults included).
    pub fn without_default_rules(mut self) -> Self {
        self.rules.clear();
        self
    }

    /// Removes the rule named `name`.
    pub fn remove_rule(mut self, name: &str) -> Self {
        self.rules.retain(|r| r.name() != name);
        self
    }

    /// Overrides the rate-limit interval of the rule named `name` (checked at build).
    pub fn rate_limit(mut self, name: impl Into<String>, interval: Duration) -> Self {
        self.intervals.push((name.into(), interval));
        self
    }

    /// Turns the default tracing sink off (or back on).
    pub fn tracing(mut self, on: bool) -> Self {
        self.tracing = on;
        self
    }

    /// Adds a sink.
    pub fn sink(mut self, sink: impl AlertSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Adds the stdout sink.
    pub fn stdout(self) -> Self {
        self.sink(StdoutSink::new())
    }

    /// Adds a callback sink (the seed's SIGNAL channel).
    pub fn callback(self, f: impl Fn(&Alert) + Send + Sync + 'static) -> Self {
        self.sink(CallbackSink::new(f))
    }

    /// Alerts kept in the history ring (default 1000; must be >= 1).
    pub fn history_capacity(mut self, n: usize) -> Self {
        self.history = n;
        self
    }

    /// Alerts shown in [`AlertSummary::recent_alerts`] (default 10).
    pub fn recent_alerts(mut self, n: usize) -> Self {
        self.recent = n;
        self
    }

    /// (rule, key) pairs the rate limiter remembers (default 4096; must be >= 1).
    pub fn rate_limit_entries(mut self, n: usize) -> Self {
        self.limiter_entries = n;
        self
    }

    /// Seed 001's monitor alerts: every watch interval, `signal`'s reading above `warning`
    /// raises a WARNING and above `critical` a CRITICAL (rule `watch`, once a minute per
    /// signal and level). Needs [`monitor`](Self::monitor).
    pub fn watch(mut self, signal: Signal, warning: f64, critical: f64) -> Self {
        self.watches.push(Watch {
            signal,
            warning,
            critical,
        });
        self
    }

    /// How often watches are checked (default 1 s; more than zero and at most 1 day).
    pub fn watch_interval(mut self, every: Duration) -> Self {
        self.watch_interval = every;
        self
    }

    /// Builds the manager and, when a bus or monitor was given, starts its task.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `history_capacity`, `rate_limit_entries`, `rate_limit`
    /// (unknown rule), `watch` (bad thresholds or no monitor), `watch_interval`, or `runtime`
    /// when a task must be started outside a tokio runtime.
    pub fn build(self) -> Result<AlertManager, ConfigError> {
        if self.history == 0 {
            return Err(ConfigError::new("history_capacity", 0, "must be >= 1"));
        }
        if self.limiter_entries == 0 {
            return Err(ConfigError::new("rate_limit_entries", 0, "must be >= 1"));
        }
        let mut rules = self.rules;
        for (name, every) in self.intervals {
            let Some(r) = rules.iter_mut().find(|r| r.name() == name) else {
                return Err(ConfigError::new(
                    "rate_limit",
                    name,
                    "no rule with this name",
                ));
            };
            *r = r.clone().every(every);
        }
        if !self.watches.is_empty() {
            if self.monitor.is_none() {
                return Err(ConfigError::new(
                    "watch",
                    self.watches.len(),
                    "threshold watches need a monitor",
                ));
            }
            crate::clock::check_period("watch_interval", self.watch_interval)?;
            for w in &self.watches {
                check_range("watch.warning", w.warning, f64::MIN, f64::MAX)?;
                check_range("watch.critical", w.critical, w.warning, f64::MAX)?;
            }
        }
        let bus = self
            .bus
            .or_else(|| self.monitor.as_ref().map(|m| m.events().clone()));
        let runtime = match &bus {
            Some(_) => Some(tokio::runtime::Handle::try_current().map_err(|_| {
                ConfigError::new(
                    "runtime",
                    "none",
                    "AlertManager::build must run inside a tokio runtime to consume the bus",
                )
            })?),
            None => None,
        };
        let mut sinks: Vec<Arc<dyn AlertSink>> = Vec::new();
        if self.tracing {
            sinks.push(Arc::new(TracingSink));
        }
        sinks.extend(self.sinks);
        let watch_every = (!self.watches.is_empty()).then_some(self.watch_interval);
        let state = State {
            rules,
            ctx: RuleContext::default(),
            limiter: RateLimiter::new(self.limiter_entries),
            history: AlertHistory::new(self.history, self.recent, Instant::now()),
            watches: self.watches,
            active: BTreeMap::new(),
            active_capacity: self.limiter_entries,
            untracked: 0,
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let started = bus.is_some();
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            sinks,
            monitor: self.monitor,
            processed: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
            _stop: started.then_some(stop_tx),
        });
        if let (Some(bus), Some(rt)) = (bus, runtime) {
            // Subscribe before returning so no event emitted after `build` is missed.
            let rx = bus.subscribe();
            rt.spawn(run(Arc::downgrade(&inner), rx, stop_rx, watch_every));
        }
        Ok(AlertManager { inner })
    }
}
