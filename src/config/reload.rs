//! [`ConfigHandle`]: apply a new document to running layers, all of it or none of it.
//!
//! # What a reload changes
//!
//! * `monitor.thresholds` and `monitor.observe_only`: the monitor's threshold table
//!   ([`PressureMonitor::set_thresholds`]); the level and its hysteresis carry over.
//! * `alerts.rules`: which built-in rules run and their rate limits
//!   ([`AlertManager::update_rules`]); rate-limit state and history are kept, rules added in
//!   code are kept.
//! * `outbound.breaker`: `failure_threshold`, `minimum_calls`, `failure_rate`,
//!   `slow_call_duration`, `slow_call_rate`, `wait_duration`, `wait_multiplier`,
//!   `max_wait_duration`, `jitter`, `permitted_calls_in_half_open`, `success_threshold`,
//!   `max_wait_in_half_open`, `trip_at_level`, `memory_threshold_percent`,
//!   `memory_threshold`, for the default breaker and every per-key breaker at once
//!   ([`CircuitBreakerHandle::apply`]). States, the end of an open wait (an OPEN breaker
//!   stays open), windows, probe slots and metrics are kept.
//! * `outbound.retry`: `max_attempts`, `backoff`, `max_pushback`, `no_retry_at`,
//!   `stretch_at_high`, `budget.ratio`, `budget.min_per_second` ([`RetryHandle::apply`]).
//!   The budget keeps its balance; requests in flight keep their attempt count.
//! * `quotas`: `groups` (limits, periods, burst windows; groups may be added, not removed),
//!   `tenants` and `default_group` ([`QuotaHandle::apply`]). Every tenant keeps its usage:
//!   in-flight count, cells used of its rate and units buckets (counted against the new
//!   limits), suspension, history.
//!
//! The layers read these settings on the request path without a lock: each holds them in an
//! `arc_swap::ArcSwap` (plus an atomic for what the healthy path needs), read once per
//! decision; see `circuit_breaker::CircuitBreakerHandle::prepare`, `retry::RetryHandle` and
//! `quota::QuotaHandle::prepare`. A reload reaches the layers attached to the handle: those
//! built by [`ConfigHandle::outbound_stack`] and [`ConfigHandle::quota_layer`], or attached
//! with [`with_breaker`](ConfigHandle::with_breaker), [`with_retry`](ConfigHandle::with_retry)
//! and [`with_quota`](ConfigHandle::with_quota).
//!
//! Every other key is fixed once the layers are built (which parts make up the stacks, the
//! monitor's sources and interval, the degradation table, adaptive concurrency, timeouts,
//! the breaker's name, window, key and registry bounds, the retry layer's name,
//! `attempt_timeout`, `time_bound` and budget window, whether there are quotas at all, the
//! tenant key, fallbacks, sinks): a document that changes one is refused as a whole with an
//! error naming the key (`outbound.breaker.count_window: cannot change while serving`), and
//! nothing is applied.
//!
//! # Atomicity
//!
//! A reload parses the document, checks it with every builder ([`Config::validate`]),
//! checks that only reloadable keys changed, and prepares every change (the new threshold
//! table is validated by the monitor, the new rule list is built) before applying anything.
//! Applying is then infallible. On any failure the old configuration stays, the error is
//! returned, kept for the status page, and emitted on the bus as
//! `Event::Custom` of kind `config_reload_failed`. A success bumps the version and emits
//! `config_reloaded`.
//!
//! Requests never see the handle: nothing here is on the request path. In-flight requests,
//! breaker states, learned limits and quota usage are untouched by a reload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use super::error::{ConfigFileError, ErrorKind};
use super::{Config, Format, parse_document, read_file};
use crate::alert::{AlertManager, Rule};
use crate::circuit_breaker::CircuitBreakerHandle;
use crate::event::{CustomEvent, Event};
use crate::pressure::PressureMonitor;
use crate::quota::{QuotaHandle, QuotaLayer};
use crate::retry::RetryHandle;
use crate::status::{StatusProvider, StatusSection};

/// Keys a reload may change (with everything below them); everything else must stay as it
/// is.
const RELOADABLE: &[&str] = &[
    "monitor.thresholds",
    "monitor.observe_only",
    "alerts.rules",
    "outbound.breaker.failure_threshold",
    "outbound.breaker.minimum_calls",
    "outbound.breaker.failure_rate",
    "outbound.breaker.slow_call_duration",
    "outbound.breaker.slow_call_rate",
    "outbound.breaker.wait_duration",
    "outbound.breaker.wait_multiplier",
    "outbound.breaker.max_wait_duration",
    "outbound.breaker.jitter",
    "outbound.breaker.permitted_calls_in_half_open",
    "outbound.breaker.success_threshold",
    "outbound.breaker.max_wait_in_half_open",
    "outbound.breaker.trip_at_level",
    "outbound.breaker.memory_threshold_percent",
    "outbound.breaker.memory_threshold",
    "outbound.retry.max_attempts",
    "outbound.retry.backoff",
    "outbound.retry.max_pushback",
    "outbound.retry.no_retry_at",
    "outbound.retry.stretch_at_high",
    "outbound.retry.budget.ratio",
    "outbound.retry.budget.min_per_second",
    "quotas.groups",
    "quotas.tenants",
    "quotas.default_group",
];

/// The live configuration's version: a counter (1 for the document the layers were built
/// from, +1 per applied reload) and a hash of its content.
///
/// ```
/// use tower_pressure::{PressureMonitor, config::{Config, ConfigHandle}};
/// let (monitor, _) = PressureMonitor::manual();
/// let handle = ConfigHandle::new(Config::default(), monitor);
/// assert_eq!(handle.version().version, 1);
/// assert_eq!(handle.version().hash, Config::default().content_hash());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigVersion {
    /// 1, then +1 per applied reload.
    pub version: u64,
    /// FNV-1a hash of the document's canonical JSON form: equal documents have equal
    /// hashes whatever their format or key order.
    pub hash: u64,
}

impl Config {
    /// A hash of the document's content (its canonical JSON form, FNV-1a 64).
    ///
    /// ```
    /// use tower_pressure::config::Config;
    /// let a = Config::from_toml("[monitor]\ndwell = 3\n")?;
    /// let b = Config::from_json(r#"{"monitor": {"dwell": 3}}"#)?;
    /// assert_eq!(a.content_hash(), b.content_hash());
    /// assert_ne!(a.content_hash(), Config::default().content_hash());
    /// # Ok::<(), tower_pressure::config::ConfigFileError>(())
    /// ```
    pub fn content_hash(&self) -> u64 {
        let text = serde_json::to_string(self).unwrap_or_default();
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

struct Inner {
    current: Mutex<(Arc<Config>, ConfigVersion)>,
    /// Serializes reloads: prepare-and-apply runs for one document at a time.
    reload: Mutex<()>,
    monitor: PressureMonitor,
    manager: Mutex<Option<AlertManager>>,
    breakers: Mutex<Vec<CircuitBreakerHandle>>,
    retries: Mutex<Vec<RetryHandle>>,
    quotas: Mutex<Vec<QuotaHandle>>,
    source: Mutex<Option<PathBuf>>,
    last_error: Mutex<Option<ConfigFileError>>,
    reloads: AtomicU64,
    failed: AtomicU64,
}

/// Applies new documents to the running layers; see the [module docs](self).
///
/// Cheap to clone; clones share the live configuration. Register it with a
/// [`StatusRegistry`](crate::status::StatusRegistry) to show the live version (section
/// `config`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_pressure::{PressureMonitor, config::{Config, ConfigHandle, Format}};
/// use tower_pressure::pressure::Signal;
///
/// let (monitor, _) = PressureMonitor::manual();
/// let handle = ConfigHandle::new(Config::default(), monitor.clone());
///
/// let v = handle.reload_str("[monitor.thresholds.manual]\nelevated = 10\nhigh = 20\ncritical = 30\nemergency = 40\n", Format::Toml)?;
/// assert_eq!(v.version, 2);
/// assert_eq!(monitor.thresholds(Signal::Manual).unwrap().threshold(tower_pressure::PressureLevel::High), Some(20.0));
///
/// // A key that cannot change while serving: refused, nothing applied.
/// let err = handle.reload_str("[outbound.breaker]\ncount_window = 10\n", Format::Toml).unwrap_err();
/// assert_eq!(err.path(), "outbound.breaker.count_window");
/// assert_eq!(handle.version().version, 2);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConfigHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ConfigHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigHandle")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are replaced whole; a poisoned lock holds a consistent value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The dotted paths where `a` and `b` differ (leaves, or a whole subtree added/removed).
fn differences(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => differences(&path, l, r, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

fn reloadable(path: &str) -> bool {
    RELOADABLE
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{r}.")))
}

/// The built-in rules as `alerts.rules` configures them.
fn configured_rules(config: &Config) -> Vec<Rule> {
    Rule::defaults()
        .into_iter()
        .filter_map(|r| match config.alerts.rules.get(r.name()) {
            Some(c) if !c.enabled => None,
            Some(c) => Some(match c.rate_limit {
                Some(every) => r.every(every.get()),
                None => r,
            }),
            None => Some(r),
        })
        .collect()
}

impl ConfigHandle {
    /// A handle whose live configuration is `config` (the one the layers were built from),
    /// version 1, applying threshold changes to `monitor`.
    pub fn new(config: Config, monitor: PressureMonitor) -> ConfigHandle {
        let version = ConfigVersion {
            version: 1,
            hash: config.content_hash(),
        };
        ConfigHandle {
            inner: Arc::new(Inner {
                current: Mutex::new((Arc::new(config), version)),
                reload: Mutex::new(()),
                monitor,
                manager: Mutex::new(None),
                breakers: Mutex::new(Vec::new()),
                retries: Mutex::new(Vec::new()),
                quotas: Mutex::new(Vec::new()),
                source: Mutex::new(None),
                last_error: Mutex::new(None),
                reloads: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        }
    }

    /// Also applies `alerts.rules` changes to `manager`.
    ///
    /// ```
    /// use tower_pressure::{PressureMonitor, alert::AlertManager, config::{Config, ConfigHandle, Format}};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let manager = AlertManager::builder().build()?;
    /// let handle = ConfigHandle::new(Config::default(), monitor).with_alert_manager(manager.clone());
    /// handle.reload_str("alerts:\n  rules:\n    retry_budget: {enabled: false}\n", Format::Yaml)?;
    /// assert!(!manager.rules().iter().any(|r| r == "retry_budget"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_alert_manager(self, manager: AlertManager) -> ConfigHandle {
        *lock(&self.inner.manager) = Some(manager);
        self
    }

    /// Also applies `outbound.breaker` changes to the breakers of `handle`'s layer (the
    /// default one and every per-key one).
    pub fn with_breaker(self, handle: CircuitBreakerHandle) -> ConfigHandle {
        lock(&self.inner.breakers).push(handle);
        self
    }

    /// Also applies `outbound.retry` changes (rules and budget rates) to `handle`'s layer.
    pub fn with_retry(self, handle: RetryHandle) -> ConfigHandle {
        lock(&self.inner.retries).push(handle);
        self
    }

    /// Also applies `quotas` changes (groups, tenants, default group) to `handle`'s layer.
    pub fn with_quota(self, handle: QuotaHandle) -> ConfigHandle {
        lock(&self.inner.quotas).push(handle);
        self
    }

    /// The outbound stack of the live configuration (as [`Config::outbound_stack`]), around
    /// the handle's monitor, with its breaker and retry layers attached to this handle:
    /// reloads reach them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_pressure::{PressureMonitor, config::{Config, ConfigHandle, Format}};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let handle = ConfigHandle::new(Config::default(), monitor);
    /// let stack = handle.outbound_stack()?;
    /// let breaker = stack.status_registry(); // the stack's status page
    /// handle.reload_str("[outbound.breaker]\nfailure_threshold = 2\n", Format::Toml)?;
    /// assert_eq!(handle.version().version, 2);
    /// # let _ = breaker;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Config::outbound_stack`].
    pub fn outbound_stack(&self) -> Result<super::ConfigOutboundStack, ConfigFileError> {
        let config = self.current();
        let (stack, breaker, retry) = config.outbound_parts(self.inner.monitor.clone())?;
        if let Some(b) = breaker {
            lock(&self.inner.breakers).push(b);
        }
        if let Some(r) = retry {
            lock(&self.inner.retries).push(r);
        }
        Ok(stack)
    }

    /// The quota layer of the live configuration (as [`QuotasConfig::layer`](super::QuotasConfig::layer),
    /// `None` without groups), reporting to the monitor's bus, attached to this handle.
    ///
    /// # Errors
    /// As [`QuotasConfig::layer`](super::QuotasConfig::layer).
    pub fn quota_layer(&self) -> Result<Option<QuotaLayer<super::QuotaKey>>, ConfigFileError> {
        let config = self.current();
        let layer = config.quotas.layer(self.inner.monitor.events().clone())?;
        if let Some(l) = &layer {
            lock(&self.inner.quotas).push(l.handle());
        }
        Ok(layer)
    }

    /// The live configuration.
    pub fn current(&self) -> Arc<Config> {
        lock(&self.inner.current).0.clone()
    }

    /// The live configuration's version and hash.
    pub fn version(&self) -> ConfigVersion {
        lock(&self.inner.current).1
    }

    /// The error of the last failed reload, until a reload succeeds.
    pub fn last_error(&self) -> Option<ConfigFileError> {
        lock(&self.inner.last_error).clone()
    }

    /// Applies `config`: all of it, or none of it. Returns the new version (unchanged, and
    /// no event, when the content is the same).
    ///
    /// # Errors
    /// A refused setting (builder validation), or a changed key that cannot change while
    /// serving; the old configuration stays.
    pub fn apply(&self, config: Config) -> Result<ConfigVersion, ConfigFileError> {
        let before = self.version();
        let result = self.try_apply(config);
        if !matches!(&result, Ok(v) if *v == before) {
            self.report(&result);
        }
        result
    }

    fn try_apply(&self, config: Config) -> Result<ConfigVersion, ConfigFileError> {
        let _one_at_a_time = lock(&self.inner.reload);
        config.validate()?;
        let (old, version) = {
            let c = lock(&self.inner.current);
            (c.0.clone(), c.1)
        };
        let hash = config.content_hash();
        if hash == version.hash && *old == config {
            return Ok(version);
        }

        // 1. Only reloadable keys may change.
        let a = serde_json::to_value(&*old).unwrap_or_default();
        let b = serde_json::to_value(&config).unwrap_or_default();
        let mut diff = Vec::new();
        differences("", &a, &b, &mut diff);
        if let Some(fixed) = diff.iter().find(|p| !reloadable(p)) {
            return Err(ConfigFileError::new(
                fixed.clone(),
                "cannot change while serving (see the reload module docs for the keys that \
                 can); restart to apply it. Nothing was applied",
                ErrorKind::Value,
            ));
        }
        if old.quotas.groups.is_empty() != config.quotas.groups.is_empty() {
            return Err(ConfigFileError::new(
                "quotas.groups",
                "cannot change while serving between no groups and some (the quota layer is \
                 part of the stack); restart to apply it. Nothing was applied",
                ErrorKind::Value,
            ));
        }

        // 2. Prepare everything; nothing is applied yet.
        let table = config.monitor.threshold_table()?;
        let rules = configured_rules(&config);
        let monitor = &self.inner.monitor;
        let mut breakers = Vec::new();
        if old.outbound.breaker != config.outbound.breaker {
            const PATH: &str = "outbound.breaker";
            for h in lock(&self.inner.breakers).iter() {
                let b = config.outbound.breaker.builder_at(PATH, monitor)?;
                let update = h
                    .prepare(b)
                    .map_err(|e| ConfigFileError::from_builder(PATH, e, super::breaker::RENAME))?;
                breakers.push((h.clone(), update));
            }
        }
        let mut retries = Vec::new();
        if old.outbound.retry != config.outbound.retry {
            const PATH: &str = "outbound.retry";
            for h in lock(&self.inner.retries).iter() {
                let b = config.outbound.retry.builder_at(PATH, monitor)?;
                let update = h
                    .prepare(b)
                    .map_err(|e| ConfigFileError::from_builder(PATH, e, &[]))?;
                retries.push((h.clone(), update));
            }
        }
        let mut quotas = Vec::new();
        if old.quotas != config.quotas {
            for h in lock(&self.inner.quotas).iter() {
                let Some(b) = config.quotas.builder(monitor.events().clone())? else {
                    continue; // no groups: refused above unless both documents have none
                };
                let update = h.prepare(b).map_err(|e| config.quotas.builder_error(e))?;
                quotas.push((h.clone(), update));
            }
        }

        // 3. Apply: the monitor validates before changing anything, and is the only step
        //    that can refuse, so it runs first.
        self.inner
            .monitor
            .set_thresholds(&table)
            .map_err(|e| ConfigFileError::from_builder("monitor", e, &[]))?;
        for (h, u) in breakers {
            h.apply(u);
        }
        for (h, u) in retries {
            h.apply(u);
        }
        for (h, u) in quotas {
            h.apply(u);
        }
        if let Some(m) = lock(&self.inner.manager).as_ref() {
            let builtin: Vec<String> = Rule::defaults()
                .iter()
                .map(|r| r.name().to_string())
                .collect();
            m.update_rules(move |list| {
                // Built-in rules are replaced in place of the first one; rules from code stay.
                let at = list
                    .iter()
                    .position(|r| builtin.iter().any(|n| n == r.name()))
                    .unwrap_or(list.len());
                let before = list[..at]
                    .iter()
                    .filter(|r| !builtin.iter().any(|n| n == r.name()));
                let after = list[at..]
                    .iter()
                    .filter(|r| !builtin.iter().any(|n| n == r.name()));
                let next: Vec<Rule> = before.cloned().chain(rules).chain(after.cloned()).collect();
                *list = next;
            });
        }
        let next = ConfigVersion {
            version: version.version + 1,
            hash,
        };
        *lock(&self.inner.current) = (Arc::new(config), next);
        Ok(next)
    }

    fn report(&self, result: &Result<ConfigVersion, ConfigFileError>) {
        let bus = self.inner.monitor.events();
        match result {
            Ok(v) => {
                self.inner.reloads.fetch_add(1, Ordering::Relaxed);
                *lock(&self.inner.last_error) = None;
                bus.emit(Event::Custom(CustomEvent::new(
                    "config_reloaded",
                    format!(
                        "configuration version {} (hash {:016x}) is live",
                        v.version, v.hash
                    ),
                )));
            }
            Err(e) => {
                self.inner.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "tower_pressure::config", error = %e, "configuration reload refused");
                *lock(&self.inner.last_error) = Some(e.clone());
                bus.emit(Event::Custom(CustomEvent::new(
                    "config_reload_failed",
                    e.to_string(),
                )));
            }
        }
    }

    /// Parses `text` in `format` and applies it.
    ///
    /// # Errors
    /// As [`Config::parse`] and [`ConfigHandle::apply`]; the old configuration stays.
    pub fn reload_str(&self, text: &str, format: Format) -> Result<ConfigVersion, ConfigFileError> {
        match parse_document::<Config>(text, format) {
            Ok(config) => self.apply(config),
            Err(e) => {
                let r = Err(e);
                self.report(&r);
                r
            }
        }
    }

    /// Reads `path` (format from its extension) and applies it.
    ///
    /// # Errors
    /// As [`Config::from_file`] and [`ConfigHandle::apply`]; the old configuration stays.
    pub fn reload_file(&self, path: impl AsRef<Path>) -> Result<ConfigVersion, ConfigFileError> {
        let path = path.as_ref();
        *lock(&self.inner.source) = Some(path.to_path_buf());
        match read_file(path) {
            Ok((text, format)) => self.reload_str(&text, format),
            Err(e) => {
                let r = Err(e);
                self.report(&r);
                r
            }
        }
    }

    /// Watches `path`: every `every` (at least 100 ms), when its modification time changed,
    /// reloads it. The task ends when the last clone of the handle is dropped. Needs a
    /// tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use tower_pressure::{PressureMonitor, config::{Config, ConfigHandle}};
    /// let (monitor, _) = PressureMonitor::manual();
    /// let handle = ConfigHandle::new(Config::default(), monitor);
    /// let task = handle.watch_file("/etc/app/pressure.toml", Duration::from_secs(5));
    /// task.abort();
    /// # }
    /// ```
    pub fn watch_file(
        &self,
        path: impl Into<PathBuf>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let path = path.into();
        *lock(&self.inner.source) = Some(path.clone());
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = every.max(Duration::from_millis(100));
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen: Option<SystemTime> = mtime(&path);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let now = mtime(&path);
                if now != seen {
                    seen = now;
                    let handle = ConfigHandle { inner };
                    let _ = handle.reload_file(&path);
                }
            }
        })
    }
}

impl StatusProvider for ConfigHandle {
    fn section(&self) -> StatusSection {
        let v = self.version();
        let mut s = StatusSection::new("config", "config")
            .info("version", v.version)
            .info("hash", format!("{:016x}", v.hash))
            .gauge(
                "tower_pressure_config_version",
                "Version of the live configuration (1 at start, +1 per applied reload).",
                &[],
                v.version as f64,
            )
            .counter(
                "tower_pressure_config_reloads_total",
                "Configuration reloads applied.",
                &[],
                self.inner.reloads.load(Ordering::Relaxed) as f64,
            )
            .counter(
                "tower_pressure_config_reload_failures_total",
                "Configuration reloads refused (nothing applied).",
                &[],
                self.inner.failed.load(Ordering::Relaxed) as f64,
            );
        if let Some(p) = lock(&self.inner.source).as_ref() {
            s = s.info("source", p.display());
        }
        if let Some(e) = self.last_error() {
            s = s.info("last_error", e);
        }
        s
    }
}
