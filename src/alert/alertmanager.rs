//! The Alertmanager sink (feature `alertmanager`): active alerts posted to Prometheus
//! Alertmanager's v2 API, `POST /api/v2/alerts`, resent while they last and sent once more
//! with `endsAt` when they resolve.
//!
//! # What is sent
//!
//! Each alert becomes one `postableAlert`:
//!
//! | field | value |
//! |---|---|
//! | `labels.alertname` | the alert's kind (`breaker_opened`, `pressure_critical`, ...) |
//! | `labels.severity` | `info`, `warning`, `error` or `critical` |
//! | `labels.service`, `labels.instance` | [`service`](AlertmanagerSinkBuilder::service) and [`instance`](AlertmanagerSinkBuilder::instance) (default: the `HOSTNAME` variable, the pod name in Kubernetes) |
//! | `labels.key` | the alert's key (breaker, signal, tenant), when it has one |
//! | `labels.rule` | the rule that produced it |
//! | other labels | [`label`](AlertmanagerSinkBuilder::label)s given to the builder (`cluster`, `team`) |
//! | `annotations.summary` | the message (with "N more since last report" when alerts were suppressed) |
//! | `annotations.description` | the message and the alert's fields (`value=91.2 threshold=85`) |
//! | `startsAt` | when the alert first fired |
//! | `endsAt` | while active: now + 4 x the resend interval (as Prometheus does, so the alerts of a replica that died end by themselves); once resolved: when the condition cleared |
//! | `generatorURL` | [`generator_url`](AlertmanagerSinkBuilder::generator_url), e.g. the replica's status page |
//!
//! Replicas of one service that raise the same alert send the same labels except
//! `instance`: with `group_by: [alertname, service]` in Alertmanager's route they form one
//! group, one notification for the fleet (`tests/alertmanager.rs` proves it against a real
//! Alertmanager).
//!
//! # Active, resent, resolved
//!
//! The sink keeps the set of active alerts it was [delivered](AlertSink::deliver), per rule
//! and key. A new or changed alert is posted at once; every active alert is posted again
//! every [`resend_interval`](AlertmanagerSinkBuilder::resend_interval) (default 60 s,
//! Prometheus' `--rules.alert.resend-delay` is 1 m), so Alertmanager never expires one that
//! still holds. When the [`AlertManager`](super::AlertManager) says the condition cleared
//! ([`AlertSink::resolve`], see [`rules`](super::rules#resolution)) the alert leaves the
//! set and is posted once with `endsAt`. A resolved post that fails is kept (bounded, the
//! oldest dropped and counted first) and tried again with the next post, at the latest on the
//! next resend tick: a failing Alertmanager is retried at that pace, never in a loop.
//!
//! # Transport and protection
//!
//! The same as the [webhook sink](super::webhook): each post goes through this crate's
//! `RetryLayer` and `CircuitBreakerLayer`
//! (named `alertmanager`, on a private event bus), with a per-attempt timeout, over a
//! [`GuardedConnector`](super::GuardedConnector) that refuses loopback, private and
//! link-local destinations unless
//! [`allow_private_destinations`](AlertmanagerSinkBuilder::allow_private_destinations) is
//! set (an Alertmanager in the cluster network needs it). Userinfo in the URL becomes
//! `Authorization: Basic` and, like the query string, never appears in logs or errors.
//! Posting the same alert twice is harmless (Alertmanager deduplicates on labels), so posts
//! are retried.
//!
//! [`deliver`](AlertSink::deliver) and [`resolve`](AlertSink::resolve) only update the
//! bounded set (capacity [`queue_capacity`](AlertmanagerSinkBuilder::queue_capacity);
//! further alerts are dropped and counted): they never wait for the network, and no request
//! path calls them.
//!
//! # Errors
//!
//! A failed post (non-2xx status, a reply that is not HTTP, a timeout, refused connection,
//! open breaker) is counted in [`SinkStats::failed`], logged with the redacted URL, kept as
//! [`AlertmanagerSink::last_error`] and sent as a typed [`AlertmanagerError`] to every
//! [`AlertmanagerSink::errors`] receiver. Nothing panics.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_service::Service;

use super::Alert;
use super::sink::{AlertSink, SinkStats};
use super::webhook::{Protected, Target, WebhookClient, WebhookSink, error_chain, redact_str};
use crate::circuit_breaker::{CircuitBreakerHandle, CircuitOpen};
use crate::error::ConfigError;
use crate::pressure::PressureMonitor;
use crate::retry::RetryLayer;
use crate::retry::http::{HttpClassifier, Idempotent};

/// Labels the sink sets itself; [`AlertmanagerSinkBuilder::label`] may not use them.
const RESERVED: [&str; 6] = [
    "alertname",
    "severity",
    "service",
    "instance",
    "key",
    "rule",
];

/// A failed post to Alertmanager, as sent to [`AlertmanagerSink::errors`] receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlertmanagerError {
    /// Alertmanager (or whatever answered) replied with a status other than 2xx.
    Status {
        /// The status received.
        status: http::StatusCode,
        /// Alerts in the failed post.
        alerts: usize,
    },
    /// The sink's circuit breaker is open: the post failed without connecting.
    CircuitOpen {
        /// Alerts in the failed post.
        alerts: usize,
    },
    /// No HTTP reply: connection refused or reset, timeout, a reply that is not HTTP, a
    /// refused destination.
    Transport {
        /// The error chain (never the URL's userinfo or query).
        message: String,
        /// Alerts in the failed post.
        alerts: usize,
    },
}

impl fmt::Display for AlertmanagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertmanagerError::Status { status, alerts } => {
                write!(
                    f,
                    "alertmanager replied {status} to a post of {alerts} alerts"
                )
            }
            AlertmanagerError::CircuitOpen { alerts } => write!(
                f,
                "alertmanager circuit breaker open: post of {alerts} alerts not sent"
            ),
            AlertmanagerError::Transport { message, alerts } => {
                write!(
                    f,
                    "post of {alerts} alerts to alertmanager failed: {message}"
                )
            }
        }
    }
}

impl std::error::Error for AlertmanagerError {}

/// One alert as posted (`postableAlert` of the v2 API, without the times, which are
/// filled in when posting).
#[derive(Debug, Clone)]
struct Entry {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: SystemTime,
    ends_at: Option<SystemTime>,
}

#[derive(serde::Serialize)]
struct Postable<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<&'a str>,
}

type Key = (Arc<str>, Option<Arc<str>>);

#[derive(Default)]
struct State {
    active: BTreeMap<Key, Entry>,
    resolved: VecDeque<Entry>,
    /// Resolved alerts whose post failed: sent again with the next post (a new or changed
    /// alert, a new resolved one, or the resend tick), never in a loop of their own.
    retry: VecDeque<Entry>,
    /// An active alert was added or changed since the last post.
    dirty: bool,
}

struct Shared {
    state: Mutex<State>,
    notify: Notify,
    closed: AtomicBool,
    capacity: usize,
    service: String,
    instance: String,
    labels: Vec<(String, String)>,
    generator_url: Option<String>,
    resend: Duration,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    posts: AtomicU64,
    errors: broadcast::Sender<AlertmanagerError>,
    last_error: Mutex<Option<AlertmanagerError>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn entry(&self, a: &Alert) -> Entry {
        let mut labels = BTreeMap::new();
        for (k, v) in &self.labels {
            labels.insert(k.clone(), v.clone());
        }
        labels.insert("alertname".into(), a.kind().to_string());
        labels.insert("severity".into(), a.severity().as_str().to_string());
        labels.insert("service".into(), self.service.clone());
        labels.insert("instance".into(), self.instance.clone());
        if let Some(k) = a.key().filter(|k| !k.is_empty()) {
            labels.insert("key".into(), k.to_string());
        }
        if !a.rule().is_empty() {
            labels.insert("rule".into(), a.rule().to_string());
        }
        let summary = a.display_message();
        let mut description = summary.clone();
        for (i, (k, v)) in a.fields().enumerate() {
            description.push_str(if i == 0 { ": " } else { " " });
            description.push_str(k);
            description.push('=');
            description.push_str(v);
        }
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".into(), summary);
        annotations.insert("description".into(), description);
        Entry {
            labels,
            annotations,
            starts_at: wall(a.at()),
            ends_at: a.ended_at().map(wall),
        }
    }

    fn push_resolved(&self, st: &mut State, e: Entry) {
        if st.resolved.len() >= self.capacity {
            st.resolved.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        st.resolved.push_back(e);
    }
}

/// Wall-clock time of a `tokio` instant (the alert's age subtracted from now).
fn wall(at: Instant) -> SystemTime {
    let age = Instant::now().saturating_duration_since(at);
    let now = SystemTime::now();
    now.checked_sub(age).unwrap_or(now)
}

/// RFC 3339 in UTC with milliseconds (`2026-12-06T13:20:05.123Z`), as Alertmanager parses.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Stops the worker when the last clone of the sink is dropped.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.notify.notify_one();
    }
}

/// Posts alerts to Alertmanager's v2 API; see the [module docs](self). Cheap to clone;
/// clones share the set of active alerts and the delivery task, which stops when the last
/// clone is dropped.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_pressure::alert::{AlertManager, AlertmanagerSink};
/// use tower_pressure::pressure::PressureMonitor;
///
/// let monitor = PressureMonitor::builder().build()?;
/// let am = AlertmanagerSink::builder("http://alertmanager.monitoring.svc:9093")
///     .service("checkout")
///     .instance("checkout-7d9f-abcde")
///     .label("cluster", "eu-1")
///     .generator_url("http://checkout-7d9f-abcde:8080/status")
///     .resend_interval(Duration::from_secs(60))
///     .allow_private_destinations(true) // Alertmanager lives in the cluster network
///     .build()?;
/// let alerts = AlertManager::builder().monitor(monitor).sink(am.clone()).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AlertmanagerSink {
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
    redacted: Arc<str>,
    retry: RetryLayer<HttpClassifier>,
    breaker: CircuitBreakerHandle,
}

impl fmt::Debug for AlertmanagerSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerSink")
            .field("url", &self.redacted)
            .field("service", &self.shared.service)
            .field("instance", &self.shared.instance)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AlertmanagerSink {
    /// Starts configuring a sink for the Alertmanager at `base_url`
    /// (`http://alertmanager:9093`, with a path prefix if it has one); alerts go to
    /// `<base_url>/api/v2/alerts`.
    pub fn builder(base_url: impl Into<String>) -> AlertmanagerSinkBuilder {
        AlertmanagerSinkBuilder {
            base: base_url.into(),
            service: "tower-pressure".into(),
            instance: std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unknown".into()),
            labels: Vec::new(),
            generator_url: None,
            resend: Duration::from_secs(60),
            transport: WebhookSink::builder(String::new()),
        }
    }

    /// The alerts endpoint without userinfo and query string, as it appears in logs.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// The sink's counters: `delivered` and `failed` count alerts in successful and failed
    /// posts (each resend counts again), `queued` the active alerts plus the resolved ones
    /// not yet posted.
    pub fn stats(&self) -> SinkStats {
        let st = self.shared.lock();
        SinkStats {
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            retried: self.retry.stats().retries,
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            queued: (st.active.len() + st.resolved.len() + st.retry.len()) as u64,
        }
    }

    /// Posts made (successful or not).
    pub fn posts(&self) -> u64 {
        self.shared.posts.load(Ordering::Relaxed)
    }

    /// The active alerts the sink is resending.
    pub fn active(&self) -> usize {
        self.shared.lock().active.len()
    }

    /// The last failed post, if any.
    pub fn last_error(&self) -> Option<AlertmanagerError> {
        match self.shared.last_error.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// A receiver of every failed post from now on (a bounded channel: a receiver that
    /// falls more than 64 errors behind loses the oldest).
    pub fn errors(&self) -> broadcast::Receiver<AlertmanagerError> {
        self.shared.errors.subscribe()
    }

    /// The breaker protecting Alertmanager; a [`StatusProvider`](crate::status::StatusProvider).
    pub fn breaker(&self) -> CircuitBreakerHandle {
        self.breaker.clone()
    }

    /// The retry layer of the posts; a [`StatusProvider`](crate::status::StatusProvider).
    pub fn retry(&self) -> RetryLayer<HttpClassifier> {
        self.retry.clone()
    }
}

impl AlertSink for AlertmanagerSink {
    fn name(&self) -> &str {
        "alertmanager"
    }

    fn deliver(&self, alert: &Alert) {
        let e = self.shared.entry(alert);
        {
            let mut st = self.shared.lock();
            if alert.is_resolved() {
                // A notice that ended as it was reported: posted once, already ended.
                self.shared.push_resolved(&mut st, e);
            } else {
                let key: Key = (Arc::from(alert.rule()), alert.key().map(Arc::from));
                let full = st.active.len() >= self.shared.capacity;
                match st.active.get_mut(&key) {
                    Some(old) => {
                        // Same alert again: new text, first start kept.
                        old.labels = e.labels;
                        old.annotations = e.annotations;
                    }
                    None if full => {
                        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    None => {
                        st.active.insert(key, e);
                    }
                }
                st.dirty = true;
            }
        }
        self.shared.notify.notify_one();
    }

    fn resolve(&self, alert: &Alert) {
        {
            let mut st = self.shared.lock();
            let key: Key = (Arc::from(alert.rule()), alert.key().map(Arc::from));
            let mut e = match st.active.remove(&key) {
                Some(e) => e,
                None => self.shared.entry(alert),
            };
            e.ends_at = Some(alert.ended_at().map(wall).unwrap_or_else(SystemTime::now));
            self.shared.push_resolved(&mut st, e);
        }
        self.shared.notify.notify_one();
    }

    fn stats(&self) -> Option<SinkStats> {
        Some(AlertmanagerSink::stats(self))
    }
}

/// Configures an [`AlertmanagerSink`]. The transport settings (timeout, attempts, backoff,
/// breaker, queue capacity, private destinations, client) are the
/// [webhook sink](super::WebhookSinkBuilder)'s, with the same defaults.
pub struct AlertmanagerSinkBuilder {
    base: String,
    service: String,
    instance: String,
    labels: Vec<(String, String)>,
    generator_url: Option<String>,
    resend: Duration,
    transport: super::WebhookSinkBuilder,
}

impl fmt::Debug for AlertmanagerSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerSinkBuilder")
            .field("url", &redact_str(&self.base))
            .field("service", &self.service)
            .field("instance", &self.instance)
            .field("labels", &self.labels)
            .field("resend_interval", &self.resend)
            .field("transport", &self.transport)
            .finish()
    }
}

impl AlertmanagerSinkBuilder {
    /// The `service` label (default `tower-pressure`; must not be empty).
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = name.into();
        self
    }
    /// The `instance` label: this replica (default the `HOSTNAME` environment variable,
    /// which Kubernetes sets to the pod name, else `unknown`; must not be empty).
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = name.into();
        self
    }
    /// Adds a label to every alert (`cluster`, `team`). The name must match
    /// `[a-zA-Z_][a-zA-Z0-9_]*` and not be one the sink sets itself (`alertname`,
    /// `severity`, `service`, `instance`, `key`, `rule`).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }
    /// The `generatorURL` of every alert (an http(s) URL: this replica's status page).
    pub fn generator_url(mut self, url: impl Into<String>) -> Self {
        self.generator_url = Some(url.into());
        self
    }
    /// How often active alerts are posted again (default 60 s; 1 s ..= 1 h). Active alerts
    /// carry `endsAt` = now + 4 x this interval.
    pub fn resend_interval(mut self, d: Duration) -> Self {
        self.resend = d;
        self
    }
    /// Per-attempt timeout, connection included (default 5 s; must be > 0).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.transport = self.transport.timeout(d);
        self
    }
    /// Attempts per post, the first included (default 3; `1..=11`).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.transport = self.transport.max_attempts(n);
        self
    }
    /// Base delay of the exponential backoff between attempts (default 500 ms).
    pub fn backoff(mut self, d: Duration) -> Self {
        self.transport = self.transport.backoff(d);
        self
    }
    /// Cap on one backoff delay and on `Retry-After` (default 30 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.transport = self.transport.max_backoff(d);
        self
    }
    /// Active alerts kept, and resolved alerts waiting to be posted (default 256; >= 1).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.transport = self.transport.queue_capacity(n);
        self
    }
    /// Allows loopback, private and link-local destinations (default: refused). An
    /// Alertmanager inside the cluster or on the same host needs it.
    pub fn allow_private_destinations(mut self, allow: bool) -> Self {
        self.transport = self.transport.allow_private_destinations(allow);
        self
    }
    /// Posts through `client` (a TLS client around [`GuardedConnector`](super::GuardedConnector)
    /// for `https`), wrapped in the retry, breaker and timeout stack.
    pub fn client(mut self, client: WebhookClient) -> Self {
        self.transport = self.transport.client(client);
        self
    }
    /// Reads pressure from `monitor`: no retries at `Critical` and above.
    pub fn monitor(mut self, monitor: PressureMonitor) -> Self {
        self.transport = self.transport.monitor(monitor);
        self
    }
    /// Consecutive failed attempts that open the breaker (default 5; at least 1).
    pub fn breaker_failure_threshold(mut self, n: u32) -> Self {
        self.transport = self.transport.breaker_failure_threshold(n);
        self
    }
    /// How long the open breaker fails posts fast before a probe (default 30 s; > 0).
    pub fn breaker_wait(mut self, d: Duration) -> Self {
        self.transport = self.transport.breaker_wait(d);
        self
    }

    /// Validates the configuration and starts the delivery task.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `url` (not http(s), has a query string, unparsable),
    /// `service`, `instance`, `label`, `generator_url`, `resend_interval`, any transport
    /// setting (see [`WebhookSinkBuilder::build`](super::WebhookSinkBuilder::build)), or
    /// `runtime` outside a tokio runtime.
    pub fn build(self) -> Result<AlertmanagerSink, ConfigError> {
        if self.base.contains(['?', '#']) {
            return Err(ConfigError::new(
                "url",
                redact_str(&self.base),
                "the Alertmanager base URL takes no query string or fragment",
            ));
        }
        if self.service.is_empty() {
            return Err(ConfigError::new("service", "\"\"", "must not be empty"));
        }
        if self.instance.is_empty() {
            return Err(ConfigError::new("instance", "\"\"", "must not be empty"));
        }
        for (k, _) in &self.labels {
            if !label_name_ok(k) {
                return Err(ConfigError::new(
                    "label",
                    k,
                    "label names must match [a-zA-Z_][a-zA-Z0-9_]*",
                ));
            }
            if RESERVED.contains(&k.as_str()) {
                return Err(ConfigError::new(
                    "label",
                    k,
                    "set by the sink itself (alertname, severity, service, instance, key, rule)",
                ));
            }
        }
        if let Some(g) = &self.generator_url {
            let ok = g
                .parse::<http::Uri>()
                .ok()
                .is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")));
            if !ok {
                return Err(ConfigError::new(
                    "generator_url",
                    redact_str(g),
                    "must be an http or https URL",
                ));
            }
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.resend) {
            return Err(ConfigError::new(
                "resend_interval",
                format!("{:?}", self.resend),
                "must be within 1 s ..= 1 h",
            ));
        }
        let url = format!("{}/api/v2/alerts", self.base.trim_end_matches('/'));
        let mut transport = self.transport;
        transport.set_url(url);
        let t = transport.transport("alertmanager")?;
        let (errors, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            capacity: t.capacity,
            service: self.service,
            instance: self.instance,
            labels: self.labels,
            generator_url: self.generator_url,
            resend: self.resend,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            errors,
            last_error: Mutex::new(None),
        });
        let redacted = t.target.redacted.clone();
        let worker = Worker {
            shared: shared.clone(),
            svc: t.svc,
            target: t.target,
        };
        t.handle.spawn(worker.run());
        Ok(AlertmanagerSink {
            _closer: Arc::new(Closer(shared.clone())),
            shared,
            redacted,
            retry: t.retry,
            breaker: t.breaker,
        })
    }
}

fn label_name_ok(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Worker {
    shared: Arc<Shared>,
    svc: Protected,
    target: Arc<Target>,
}

/// What one post carries.
struct Batch {
    resolved: Vec<Entry>,
    active: Vec<Entry>,
}

impl Worker {
    async fn run(mut self) {
        let resend = self.shared.resend;
        let mut next_resend = later(Instant::now(), resend);
        loop {
            if self.shared.closed.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            let batch = {
                let mut st = self.shared.lock();
                let due = now >= next_resend;
                if due {
                    next_resend = later(now, resend);
                }
                let send_active = (st.dirty || due) && !st.active.is_empty();
                st.dirty = false;
                // Resolved alerts that failed before go along with any post, and on the
                // resend tick; alone they never make the worker post again at once (a
                // failing Alertmanager must not turn this loop into a busy one).
                let send = send_active || !st.resolved.is_empty() || due;
                let resolved: Vec<Entry> = if send {
                    let State {
                        retry, resolved, ..
                    } = &mut *st;
                    retry.drain(..).chain(resolved.drain(..)).collect()
                } else {
                    Vec::new()
                };
                let active: Vec<Entry> = if send_active {
                    st.active.values().cloned().collect()
                } else {
                    Vec::new()
                };
                (!resolved.is_empty() || !active.is_empty()).then_some(Batch { resolved, active })
            };
            match batch {
                Some(b) => self.post(b).await,
                None => {
                    tokio::select! {
                        _ = self.shared.notify.notified() => {}
                        _ = tokio::time::sleep_until(next_resend) => {}
                    }
                }
            }
        }
    }

    fn body(&self, b: &Batch) -> Result<Bytes, serde_json::Error> {
        let now = SystemTime::now();
        // Prometheus' rule: an active alert is valid for 4 resend intervals.
        let valid_until = now
            .checked_add(self.shared.resend.saturating_mul(4))
            .unwrap_or(now);
        let g = self.shared.generator_url.as_deref();
        let all: Vec<Postable<'_>> = b
            .resolved
            .iter()
            .map(|e| Postable {
                labels: &e.labels,
                annotations: &e.annotations,
                starts_at: rfc3339(e.starts_at),
                ends_at: rfc3339(e.ends_at.unwrap_or(now).max(e.starts_at)),
                generator_url: g,
            })
            .chain(b.active.iter().map(|e| Postable {
                labels: &e.labels,
                annotations: &e.annotations,
                starts_at: rfc3339(e.starts_at),
                ends_at: rfc3339(valid_until),
                generator_url: g,
            }))
            .collect();
        serde_json::to_vec(&all).map(Bytes::from)
    }

    async fn post(&mut self, b: Batch) {
        let n = b.resolved.len() + b.active.len();
        self.shared.posts.fetch_add(1, Ordering::Relaxed);
        let body = match self.body(&b) {
            Ok(body) => body,
            Err(e) => {
                // Maps of strings always serialise; counted and logged all the same.
                self.fail(
                    AlertmanagerError::Transport {
                        message: format!("cannot encode alerts: {e}"),
                        alerts: n,
                    },
                    b.resolved,
                );
                return;
            }
        };
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.target.uri.clone();
        // Alertmanager deduplicates alerts on their labels: a replayed post is harmless.
        req.extensions_mut().insert(Idempotent);
        let h = req.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("tower-pressure-alerts"),
        );
        if let Some(a) = &self.target.auth {
            h.insert(http::header::AUTHORIZATION, a.clone());
        }
        let result = match self.svc.ready().await {
            Ok(svc) => svc.call(req).await,
            Err(e) => Err(e),
        };
        let error = match result {
            Ok(resp) if resp.status().is_success() => {
                self.shared.delivered.fetch_add(n as u64, Ordering::Relaxed);
                return;
            }
            Ok(resp) => AlertmanagerError::Status {
                status: resp.status(),
                alerts: n,
            },
            Err(e) if e.is::<CircuitOpen>() => {
                self.shared.rejected.fetch_add(n as u64, Ordering::Relaxed);
                AlertmanagerError::CircuitOpen { alerts: n }
            }
            Err(e) => AlertmanagerError::Transport {
                message: error_chain(&*e),
                alerts: n,
            },
        };
        self.fail(error, b.resolved);
    }

    /// Counts, logs and broadcasts a failed post; keeps its resolved alerts for the next post
    /// (the active ones are resent anyway).
    fn fail(&self, error: AlertmanagerError, resolved: Vec<Entry>) {
        let n = match &error {
            AlertmanagerError::Status { alerts, .. }
            | AlertmanagerError::CircuitOpen { alerts }
            | AlertmanagerError::Transport { alerts, .. } => *alerts,
        };
        self.shared.failed.fetch_add(n as u64, Ordering::Relaxed);
        {
            let mut st = self.shared.lock();
            // Oldest first, so that the bound drops the oldest.
            for e in resolved {
                if st.retry.len() >= self.shared.capacity {
                    st.retry.pop_front();
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
                st.retry.push_back(e);
            }
        }
        // Only the redacted URL is logged: never userinfo or query.
        tracing::warn!(target: "tower_pressure::alert", url = %self.target.redacted, error = %error, "alertmanager post failed");
        match self.shared.last_error.lock() {
            Ok(mut g) => *g = Some(error.clone()),
            Err(p) => *p.into_inner() = Some(error.clone()),
        }
        // No receiver is fine: the error is counted and logged.
        let _ = self.shared.errors.send(error);
    }
}

/// `now + d`, or far in the future when that overflows.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_563_205_123);
        assert_eq!(rfc3339(t), "2026-12-06T13:20:05.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[tokio::test]
    async fn builder_names_the_bad_field() {
        let b = || AlertmanagerSink::builder("http://am.example.com:9093");
        let field = |r: Result<AlertmanagerSink, ConfigError>| r.unwrap_err().field().to_string();
        assert_eq!(
            field(AlertmanagerSink::builder("http://am.example.com/?x=1").build()),
            "url"
        );
        assert_eq!(
            field(AlertmanagerSink::builder("ftp://am.example.com").build()),
            "url"
        );
        assert_eq!(field(b().service("").build()), "service");
        assert_eq!(field(b().instance("").build()), "instance");
        assert_eq!(field(b().label("bad-name", "x").build()), "label");
        assert_eq!(field(b().label("instance", "x").build()), "label");
        assert_eq!(
            field(b().generator_url("javascript:x").build()),
            "generator_url"
        );
        assert_eq!(
            field(b().resend_interval(Duration::ZERO).build()),
            "resend_interval"
        );
        assert_eq!(field(b().max_attempts(0).build()), "max_attempts");
        let ok = b().label("cluster", "eu-1").build().unwrap();
        assert_eq!(
            ok.redacted_url(),
            "http://am.example.com:9093/api/v2/alerts"
        );
    }

    #[tokio::test]
    async fn credentials_never_shown() {
        let s = AlertmanagerSink::builder("http://bob:secret@am.example.com:9093/")
            .build()
            .unwrap();
        let shown = format!("{s:?} {}", s.redacted_url());
        assert!(
            !shown.contains("secret") && !shown.contains("bob"),
            "{shown}"
        );
    }

    #[test]
    fn labels_and_annotations_of_an_alert() {
        let (errors, _) = broadcast::channel(1);
        let shared = Shared {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            capacity: 4,
            service: "checkout".into(),
            instance: "pod-1".into(),
            labels: vec![("cluster".into(), "eu-1".into())],
            generator_url: None,
            resend: Duration::from_secs(60),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            errors,
            last_error: Mutex::new(None),
        };
        let a = Alert::new(Severity::Warning, "breaker_opened", "db opened")
            .with_key("db")
            .with_field("reason", "5 failures");
        let e = shared.entry(&a);
        let l: Vec<_> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            l,
            [
                "alertname=breaker_opened",
                "cluster=eu-1",
                "instance=pod-1",
                "key=db",
                "service=checkout",
                "severity=warning"
            ]
        );
        assert_eq!(e.annotations["summary"], "db opened");
        assert_eq!(e.annotations["description"], "db opened: reason=5 failures");
        assert!(e.ends_at.is_none());
    }
}
