//! Active health checks that feed the circuit breakers (and so the fallbacks).
//!
//! A [`HealthChecker`] probes each dependency on its own tokio task, every `interval` plus a
//! random `jitter`, each probe bounded by `timeout`: an HTTP `GET` ([`HttpCheck`], feature
//! `http`), the standard gRPC `grpc.health.v1.Health/Check` (`GrpcCheck`, feature
//! `grpc-health`) or a user closure ([`Check::custom`]). As in Envoy, a dependency turns
//! [`Unhealthy`](HealthState::Unhealthy) after `unhealthy_threshold` consecutive failed
//! checks and [`Healthy`](HealthState::Healthy) again after `healthy_threshold` consecutive
//! passes; from [`Unknown`](HealthState::Unknown) (no check yet) one pass is enough.
//!
//! Checks never run on a request path: a request only meets their effect, an atomic state
//! word in the breaker. The tasks stop when the last clone of the [`HealthChecker`] is
//! dropped (and any hold it placed is released, see below).
//!
//! # Feeding the breakers
//!
//! A dependency may be bound to a breaker ([`Dependency::breaker`]: a
//! [`CircuitBreakerHandle`] and optionally a key of a per-key breaker, e.g. the provider's
//! host for `CircuitBreakerLayer::per_key(HostKey)`). While the dependency is unhealthy the
//! checker **holds** that breaker `FORCED_OPEN`: calls get `CircuitOpen` at once, so a
//! [`FallbackLayer`](crate::fallback::FallbackLayer) or the retry layer's fallback keys
//! ([`route`](crate::route)) switch provider before any user request has to fail. When the
//! dependency turns healthy the checker moves the breaker to `HALF_OPEN`: its probes decide
//! as after any trip, so a dependency whose health endpoint lies is still judged by real
//! calls.
//!
//! # Passive and active together: the rule
//!
//! Neither signal keeps a dependency out for ever on its own:
//!
//! * **The active hold ends when checks pass** (`healthy_threshold` in a row), or after at
//!   most `max_hold` (default 5 minutes) of failing checks. Then the breaker goes to
//!   `HALF_OPEN` and real calls are the judge: if the probes succeed the breaker closes and the
//!   checker *defers*, reporting the dependency unhealthy but not holding it; it holds it again
//!   only when the breaker opens by its own rules (passive agrees) or after the dependency
//!   passed a check and failed again. A breaker an operator set `DISABLED` or `METRICS_ONLY` is
//!   never held; a breaker an operator moved out of the hold is held again at the next check
//!   only while the dependency stays unhealthy.
//! * **A passive trip is not shortened by passing checks**: a breaker that opened on its own
//!   failures follows its own open wait and half-open probes; the checker never closes it.
//! * Dropping the checker releases its holds (to `HALF_OPEN`).
//!
//! # Status and events
//!
//! [`HealthChecker::status`] is a [`StatusProvider`] with one
//! entry per dependency: state, last check, its latency and error, consecutive failures and
//! passes, whether the breaker is held. Each state change is an [`Event::Health`] on the
//! checker's bus (the breaker's own transitions appear as breaker events with the reason
//! `"active health check failing"`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::time::Duration;
//! use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};
//! use tower_pressure::health::{Check, Dependency, HealthChecker, HealthState};
//!
//! let breaker = CircuitBreakerLayer::builder().name("db").build()?;
//! let up = Arc::new(AtomicBool::new(true));
//! let u = up.clone();
//! let check = Check::custom(move || {
//!     let ok = u.load(Ordering::Relaxed);
//!     async move { if ok { Ok(()) } else { Err("down".into()) } }
//! });
//! let checker = HealthChecker::builder()
//!     .interval(Duration::from_secs(1))
//!     .jitter(Duration::ZERO)
//!     .unhealthy_threshold(2)
//!     .healthy_threshold(2)
//!     .dependency(Dependency::new("db", check).breaker(breaker.handle(), None))
//!     .build()?;
//!
//! tokio::time::sleep(Duration::from_millis(1500)).await;
//! assert_eq!(checker.state("db"), Some(HealthState::Healthy));
//! up.store(false, Ordering::Relaxed);
//! tokio::time::sleep(Duration::from_secs(2)).await;
//! assert_eq!(checker.state("db"), Some(HealthState::Unhealthy));
//! assert_eq!(breaker.handle().state(), CircuitState::ForcedOpen);
//! up.store(true, Ordering::Relaxed);
//! tokio::time::sleep(Duration::from_secs(2)).await;
//! assert_eq!(checker.state("db"), Some(HealthState::Healthy));
//! assert_eq!(breaker.handle().state(), CircuitState::HalfOpen);
//! # Ok(()) }
//! ```

mod check;
mod state;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::check::Check;
#[cfg(feature = "grpc-health")]
pub use self::check::GrpcCheck;
#[cfg(feature = "http")]
pub use self::check::HttpCheck;
use self::state::Tracker;
use crate::circuit_breaker::CircuitBreakerHandle;
use crate::error::ConfigError;
pub use crate::event::HealthState;
use crate::event::{CircuitState, Event, EventBus, HealthEvent};
use crate::status::{StatusProvider, StatusSection};

const HOLD_REASON: &str = "active health check failing";
const RELEASE_REASON: &str = "active health checks pass";
const MAX_HOLD_REASON: &str = "active hold reached max_hold; probes decide";

/// One dependency to check, optionally bound to a breaker.
///
/// ```
/// use tower_pressure::circuit_breaker::CircuitBreakerLayer;
/// use tower_pressure::health::{Check, Dependency};
/// # fn main() -> Result<(), tower_pressure::ConfigError> {
/// let breakers = CircuitBreakerLayer::builder().name("llm").build()?;
/// let dep = Dependency::new("provider-a", Check::custom(|| async { Ok(()) }))
///     .breaker(breakers.handle(), Some("api.provider-a.test"));
/// assert_eq!(dep.name(), "provider-a");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Dependency {
    name: Arc<str>,
    check: Check,
    breaker: Option<(CircuitBreakerHandle, Option<Arc<str>>)>,
}

impl Dependency {
    /// A dependency called `name` (for status, events and logs), checked by `check`.
    pub fn new(name: impl Into<Arc<str>>, check: impl Into<Check>) -> Self {
        Self {
            name: name.into(),
            check: check.into(),
            breaker: None,
        }
    }

    /// Holds `handle`'s breaker (the default one with `key: None`, else the breaker of `key`
    /// in a per-key layer, created if needed) open while the dependency is unhealthy.
    pub fn breaker(mut self, handle: CircuitBreakerHandle, key: Option<&str>) -> Self {
        self.breaker = Some((handle, key.map(Arc::from)));
        self
    }

    /// The dependency's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Configures a [`HealthChecker`]; see [`HealthChecker::builder`].
#[derive(Debug)]
pub struct HealthCheckerBuilder {
    interval: Duration,
    jitter: Duration,
    timeout: Duration,
    unhealthy_threshold: u32,
    healthy_threshold: u32,
    max_hold: Duration,
    bus: Option<EventBus>,
    deps: Vec<Dependency>,
}

impl Default for HealthCheckerBuilder {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            jitter: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            max_hold: Duration::from_secs(300),
            bus: None,
            deps: Vec::new(),
        }
    }
}

impl HealthCheckerBuilder {
    /// Time between the end of one check and the start of the next (default 5 s).
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// A random extra delay in `0..=jitter` added to every interval, and to the first check,
    /// so that many checkers do not probe in lock step (default 500 ms).
    pub fn jitter(mut self, d: Duration) -> Self {
        self.jitter = d;
        self
    }

    /// How long one check may take before it counts as failed (default 1 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Consecutive failed checks that make a dependency unhealthy (default 3, Envoy's
    /// `unhealthy_threshold`).
    pub fn unhealthy_threshold(mut self, n: u32) -> Self {
        self.unhealthy_threshold = n;
        self
    }

    /// Consecutive passed checks that make an unhealthy dependency healthy again (default 2,
    /// Envoy's `healthy_threshold`).
    pub fn healthy_threshold(mut self, n: u32) -> Self {
        self.healthy_threshold = n;
        self
    }

    /// The longest the checker holds a breaker open on failing checks alone before real
    /// calls (half-open probes) get a say (default 5 minutes; see the module docs).
    pub fn max_hold(mut self, d: Duration) -> Self {
        self.max_hold = d;
        self
    }

    /// Where state changes are reported (default: a new bus, see [`HealthChecker::events`]).
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Adds a dependency.
    pub fn dependency(mut self, dep: Dependency) -> Self {
        self.deps.push(dep);
        self
    }

    /// Validates the configuration and starts one task per dependency.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field: a zero `interval`, `timeout` or `max_hold`, a zero
    /// threshold, an empty or duplicate dependency name, or field `runtime` outside a tokio
    /// runtime.
    pub fn build(self) -> Result<HealthChecker, ConfigError> {
        for (field, d) in [
            ("health.interval", self.interval),
            ("health.timeout", self.timeout),
            ("health.max_hold", self.max_hold),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(field, d, "must be greater than zero"));
            }
        }
        for (field, n) in [
            ("health.unhealthy_threshold", self.unhealthy_threshold),
            ("health.healthy_threshold", self.healthy_threshold),
        ] {
            if n == 0 {
                return Err(ConfigError::new(field, n, "must be at least 1"));
            }
        }
        for (i, d) in self.deps.iter().enumerate() {
            check::validate_name(&d.name)?;
            if self.deps[..i].iter().any(|o| o.name == d.name) {
                return Err(ConfigError::new(
                    "health.dependency.name",
                    &*d.name,
                    "duplicate dependency name",
                ));
            }
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "runtime",
                "none",
                "HealthChecker::build() must be called inside a tokio runtime",
            )
        })?;
        let bus = self.bus.unwrap_or_default();
        let cfg = Arc::new(Config {
            interval: self.interval,
            jitter: self.jitter,
            timeout: self.timeout,
            max_hold: self.max_hold,
        });
        let mut deps = Vec::with_capacity(self.deps.len());
        let mut tasks = Vec::with_capacity(self.deps.len());
        for d in self.deps {
            let dep = Arc::new(Dep {
                name: d.name,
                kind: d.check.kind(),
                target: Arc::from(d.check.target()),
                breaker: d.breaker,
                inner: Mutex::new(DepInner {
                    tracker: Tracker::new(self.unhealthy_threshold, self.healthy_threshold),
                    last_check: None,
                    last_latency: None,
                    last_error: None,
                    checks: 0,
                    failures: 0,
                    held_since: None,
                    deferred: false,
                }),
            });
            tasks.push(rt.spawn(run(dep.clone(), d.check, cfg.clone(), bus.clone())));
            deps.push(dep);
        }
        Ok(HealthChecker {
            inner: Arc::new(Inner { deps, tasks, bus }),
        })
    }
}

#[derive(Debug)]
struct Config {
    interval: Duration,
    jitter: Duration,
    timeout: Duration,
    max_hold: Duration,
}

struct Dep {
    name: Arc<str>,
    kind: &'static str,
    target: Arc<str>,
    breaker: Option<(CircuitBreakerHandle, Option<Arc<str>>)>,
    inner: Mutex<DepInner>,
}

#[derive(Debug)]
struct DepInner {
    tracker: Tracker,
    last_check: Option<Instant>,
    last_latency: Option<Duration>,
    last_error: Option<Arc<str>>,
    checks: u64,
    failures: u64,
    /// `Some` while this checker holds the breaker open.
    held_since: Option<Instant>,
    /// The hold was given up (max_hold, operator state) while still unhealthy: hold again
    /// only when the breaker opens on its own or after the dependency recovers.
    deferred: bool,
}

fn lock(m: &Mutex<DepInner>) -> MutexGuard<'_, DepInner> {
    // A panic while holding this lock cannot leave the counters inconsistent in a way that
    // matters more than losing the checker: recover the guard.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Dep {
    /// Applies the hold rule of the module docs after a check. Runs on the check task.
    fn apply_hold(&self, g: &mut DepInner, now: Instant, max_hold: Duration) {
        let Some((handle, key)) = &self.breaker else {
            return;
        };
        let key = key.as_deref();
        let state = handle.peek_state(key);
        let operator = matches!(
            state,
            Some(CircuitState::Disabled | CircuitState::MetricsOnly)
        );
        if g.tracker.state() != HealthState::Unhealthy {
            if g.held_since.take().is_some() {
                handle.release_hold(key, RELEASE_REASON);
            }
            g.deferred = false;
            return;
        }
        if let Some(since) = g.held_since {
            if operator {
                g.held_since = None;
                g.deferred = true;
            } else if now.saturating_duration_since(since) >= max_hold {
                handle.release_hold(key, MAX_HOLD_REASON);
                g.held_since = None;
                g.deferred = true;
            } else if state != Some(CircuitState::ForcedOpen) {
                // Evicted from the registry or reset by hand while still unhealthy.
                handle.hold_open(key, HOLD_REASON);
            }
            return;
        }
        if operator {
            return;
        }
        let passive_agrees = state == Some(CircuitState::Open);
        if (!g.deferred || passive_agrees) && handle.hold_open(key, HOLD_REASON) {
            g.held_since = Some(now);
            g.deferred = false;
        }
    }

    fn release(&self) {
        let mut g = lock(&self.inner);
        if g.held_since.take().is_some()
            && let Some((handle, key)) = &self.breaker
        {
            handle.release_hold(key.as_deref(), "health checker dropped");
        }
    }

    fn snapshot(&self) -> DependencyHealth {
        let g = lock(&self.inner);
        DependencyHealth {
            name: self.name.clone(),
            kind: self.kind,
            target: self.target.clone(),
            state: g.tracker.state(),
            consecutive_failures: g.tracker.consecutive_failures(),
            consecutive_successes: g.tracker.consecutive_successes(),
            last_check: g.last_check,
            last_latency: g.last_latency,
            last_error: g.last_error.clone(),
            checks: g.checks,
            failures: g.failures,
            held: g.held_since.is_some(),
        }
    }
}

fn jittered(base: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return base;
    }
    let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
    base.saturating_add(Duration::from_nanos(fastrand::u64(0..=nanos)))
}

async fn run(dep: Arc<Dep>, check: Check, cfg: Arc<Config>, bus: EventBus) {
    tokio::time::sleep(jittered(Duration::ZERO, cfg.jitter)).await;
    loop {
        let start = Instant::now();
        let result = tokio::time::timeout(cfg.timeout, check.run()).await;
        let now = Instant::now();
        let latency = now.saturating_duration_since(start);
        let error: Option<Arc<str>> = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Arc::from(e.to_string())),
            Err(_) => Some(Arc::from(format!(
                "timed out after {} ms",
                cfg.timeout.as_millis()
            ))),
        };
        tracing::debug!(target: "tower_pressure::health", dependency = %dep.name, ok = error.is_none(), latency_ms = latency.as_secs_f64() * 1e3, error = error.as_deref(), "health check");
        let event = {
            let mut g = lock(&dep.inner);
            g.checks = g.checks.saturating_add(1);
            g.last_check = Some(now);
            g.last_latency = Some(latency);
            if error.is_some() {
                g.failures = g.failures.saturating_add(1);
                g.last_error = error.clone();
            }
            let changed = g.tracker.record(error.is_none());
            dep.apply_hold(&mut g, now, cfg.max_hold);
            changed.map(|from| HealthEvent {
                dependency: dep.name.clone(),
                from,
                to: g.tracker.state(),
                consecutive_failures: g.tracker.consecutive_failures(),
                latency,
                last_error: error,
                held: g.held_since.is_some(),
                at: now,
            })
        };
        if let Some(e) = event {
            bus.emit(Event::Health(e));
        }
        tokio::time::sleep(jittered(cfg.interval, cfg.jitter)).await;
    }
}

struct Inner {
    deps: Vec<Arc<Dep>>,
    tasks: Vec<JoinHandle<()>>,
    bus: EventBus,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for d in &self.deps {
            d.release();
        }
    }
}

/// Runs active health checks; cheap to clone. The check tasks stop, and the breaker holds
/// are released, when the last clone is dropped. See the [module docs](self).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_pressure::ConfigError> {
/// use tower_pressure::health::{Check, Dependency, HealthChecker};
/// let checker = HealthChecker::builder()
///     .dependency(Dependency::new("cache", Check::custom(|| async { Ok(()) })))
///     .build()?;
/// assert_eq!(checker.dependencies().len(), 1);
/// assert!(HealthChecker::builder().unhealthy_threshold(0).build().is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HealthChecker {
    inner: Arc<Inner>,
}

impl fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecker")
            .field("dependencies", &self.inner.deps.len())
            .finish()
    }
}

impl HealthChecker {
    /// Starts configuring a checker.
    pub fn builder() -> HealthCheckerBuilder {
        HealthCheckerBuilder::default()
    }

    /// The state of the dependency `name`, if it is checked here.
    pub fn state(&self, name: &str) -> Option<HealthState> {
        self.inner
            .deps
            .iter()
            .find(|d| &*d.name == name)
            .map(|d| lock(&d.inner).tracker.state())
    }

    /// A snapshot of every dependency (allocates).
    pub fn dependencies(&self) -> Vec<DependencyHealth> {
        self.inner.deps.iter().map(|d| d.snapshot()).collect()
    }

    /// The bus state changes go to.
    pub fn events(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The checker's status section. It does not keep the checks running: register it in a
    /// [`StatusRegistry`](crate::status::StatusRegistry) and the checker still stops when
    /// dropped (its section then shows the last results).
    pub fn status(&self) -> HealthStatus {
        HealthStatus {
            deps: self.inner.deps.clone(),
        }
    }
}

/// What the checker knows about one dependency.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DependencyHealth {
    /// The dependency's name.
    pub name: Arc<str>,
    /// `"http"`, `"grpc"` or `"custom"`.
    pub kind: &'static str,
    /// The URI checked (empty for custom checks).
    pub target: Arc<str>,
    /// Its state.
    pub state: HealthState,
    /// Consecutive failed checks.
    pub consecutive_failures: u32,
    /// Consecutive passed checks.
    pub consecutive_successes: u32,
    /// When the last check finished.
    pub last_check: Option<Instant>,
    /// How long the last check took.
    pub last_latency: Option<Duration>,
    /// Why the last failed check failed.
    pub last_error: Option<Arc<str>>,
    /// Checks run.
    pub checks: u64,
    /// Checks failed.
    pub failures: u64,
    /// Whether the checker holds the dependency's breaker open now.
    pub held: bool,
}

/// The [`StatusProvider`] of a [`HealthChecker`]: section `health`, one entry per
/// dependency.
///
/// Metrics (label `dependency`):
///
/// | name | type | meaning |
/// |---|---|---|
/// | `tower_pressure_health_state` | gauge | 0 unknown, 1 healthy, 2 unhealthy |
/// | `tower_pressure_health_held` | gauge | 1 while the checker holds the breaker open |
/// | `tower_pressure_health_consecutive_failures` | gauge | consecutive failed checks |
/// | `tower_pressure_health_check_latency_seconds` | gauge | the last check's duration |
/// | `tower_pressure_health_checks_total{result}` | counter | checks by result (`pass`, `fail`) |
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_pressure::ConfigError> {
/// use tower_pressure::health::{Check, Dependency, HealthChecker};
/// use tower_pressure::status::StatusProvider;
/// let checker = HealthChecker::builder()
///     .dependency(Dependency::new("cache", Check::custom(|| async { Ok(()) })))
///     .build()?;
/// let section = checker.status().section();
/// assert_eq!(section.entries[0].info_value("state"), Some("UNKNOWN"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HealthStatus {
    deps: Vec<Arc<Dep>>,
}

impl fmt::Debug for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthStatus")
            .field("dependencies", &self.deps.len())
            .finish()
    }
}

impl StatusProvider for HealthStatus {
    fn section(&self) -> StatusSection {
        let mut s = StatusSection::new("health", "health_checker");
        for d in &self.deps {
            let h = d.snapshot();
            let l = [("dependency", &*h.name)];
            let code = match h.state {
                HealthState::Unknown => 0.0,
                HealthState::Healthy => 1.0,
                HealthState::Unhealthy => 2.0,
            };
            let mut e = StatusSection::new(&*h.name, "dependency")
                .info("state", h.state)
                .info("check", h.kind)
                .info("held", h.held)
                .info("consecutive_failures", h.consecutive_failures)
                .info("consecutive_successes", h.consecutive_successes);
            if !h.target.is_empty() {
                e = e.info("target", &h.target);
            }
            if let Some(t) = h.last_check {
                e = e.info(
                    "last_check_seconds_ago",
                    format!("{:.1}", t.elapsed().as_secs_f64()),
                );
            }
            if let Some(l) = h.last_latency {
                e = e.info("last_latency_ms", format!("{:.1}", l.as_secs_f64() * 1e3));
            }
            if let Some(err) = &h.last_error {
                e = e.info("last_error", err);
            }
            e = e
                .gauge(
                    "tower_pressure_health_state",
                    "Dependency health: 0 unknown, 1 healthy, 2 unhealthy.",
                    &l,
                    code,
                )
                .gauge(
                    "tower_pressure_health_held",
                    "1 while the health checker holds the dependency's breaker open.",
                    &l,
                    if h.held { 1.0 } else { 0.0 },
                )
                .gauge(
                    "tower_pressure_health_consecutive_failures",
                    "Consecutive failed health checks.",
                    &l,
                    f64::from(h.consecutive_failures),
                )
                .gauge(
                    "tower_pressure_health_check_latency_seconds",
                    "Duration of the last health check.",
                    &l,
                    h.last_latency.map_or(0.0, |d| d.as_secs_f64()),
                )
                .counter(
                    "tower_pressure_health_checks_total",
                    "Health checks run, by result.",
                    &[("dependency", &*h.name), ("result", "pass")],
                    h.checks.saturating_sub(h.failures) as f64,
                )
                .counter(
                    "tower_pressure_health_checks_total",
                    "Health checks run, by result.",
                    &[("dependency", &*h.name), ("result", "fail")],
                    h.failures as f64,
                );
            s = s.entry(e);
        }
        s
    }
}
