//! The observability spine: every layer reports what it does as an [`Event`] on one
//! [`EventBus`].
//!
//! The bus is a bounded `tokio::sync::broadcast` channel. Emitting never blocks and never fails
//! the request path: with no subscriber the event is dropped, and a subscriber that falls behind
//! loses the oldest events and is told how many on its next `recv` (`RecvError::Lagged(n)`).
//! Every event is also written as a `tracing` event (target `tower_pressure::event`) with
//! structured fields, so nothing is lost when nobody subscribes.
//!
//! Events are emitted on state *changes* (a breaker opening, a level change, a limit change),
//! never once per request: per-request counts (rejections, sheds) are aggregated and reported
//! as counted events.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::pressure::{PressureLevel, Signal};
use crate::priority::Priority;

/// Something a layer did that operators may want to know about.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The pressure level changed.
    PressureChanged(PressureChanged),
    /// A circuit breaker changed state, rejected calls, or was reset.
    Breaker(BreakerEvent),
    /// A retry layer retried, gave up, or ran out of budget.
    Retry(RetryEvent),
    /// An adaptive concurrency limiter changed its limit or shed requests.
    Concurrency(ConcurrencyEvent),
    /// A service observed by an `AlertLayer` crossed an error-rate or latency threshold.
    Service(ServiceEvent),
    /// A degradation layer started or stopped degrading requests.
    Degradation(DegradationEvent),
    /// A quota layer saw a tenant cross a limit, suspended or resumed it.
    Quota(QuotaEvent),
    /// A fallback layer answered failures of its primary service (counted).
    Fallback(FallbackEvent),
    /// An event fed in by user code (for example a synthetic event for troubleshooting).
    Custom(CustomEvent),
    /// An active health checker saw a dependency turn healthy or unhealthy.
    Health(HealthEvent),
}

impl Event {
    /// A short, stable name of the event kind, e.g. `"pressure_changed"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::PressureChanged(_) => "pressure_changed",
            Event::Breaker(b) => match b.kind {
                BreakerEventKind::StateTransition { .. } => "breaker_state_transition",
                BreakerEventKind::CallsRejected { .. } => "breaker_calls_rejected",
                BreakerEventKind::FailureRateExceeded { .. } => "breaker_failure_rate_exceeded",
                BreakerEventKind::Reset => "breaker_reset",
            },
            Event::Retry(r) => match r.kind {
                RetryEventKind::Attempt { .. } => "retry_attempt",
                RetryEventKind::Exhausted { .. } => "retry_exhausted",
                RetryEventKind::BudgetExhausted { .. } => "retry_budget_exhausted",
            },
            Event::Concurrency(c) => match c.kind {
                ConcurrencyEventKind::LimitChanged { .. } => "limit_changed",
                ConcurrencyEventKind::Shed { .. } => "shed",
            },
            Event::Service(s) => match s.kind {
                ServiceEventKind::ErrorRateExceeded { .. } => "error_rate_exceeded",
                ServiceEventKind::LatencyExceeded { .. } => "latency_exceeded",
                ServiceEventKind::Recovered => "service_recovered",
            },
            Event::Degradation(d) => {
                if d.active {
                    "degradation_started"
                } else {
                    "degradation_stopped"
                }
            }
            Event::Quota(q) => match q.kind {
                QuotaEventKind::SoftLimitExceeded { .. } => "quota_soft_limit_exceeded",
                QuotaEventKind::HardLimitExceeded { .. } => "quota_hard_limit_exceeded",
                QuotaEventKind::Suspended { .. } => "quota_suspended",
                QuotaEventKind::Resumed => "quota_resumed",
                QuotaEventKind::StoreDegraded { .. } => "quota_store_degraded",
                QuotaEventKind::StoreRecovered => "quota_store_recovered",
            },
            Event::Fallback(_) => "fallback_used",
            Event::Custom(_) => "custom",
            Event::Health(h) => match h.to {
                HealthState::Healthy => "health_healthy",
                HealthState::Unhealthy => "health_unhealthy",
                HealthState::Unknown => "health_unknown",
            },
        }
    }

    /// When the event happened.
    pub fn at(&self) -> Instant {
        match self {
            Event::PressureChanged(e) => e.at,
            Event::Breaker(e) => e.at,
            Event::Retry(e) => e.at,
            Event::Concurrency(e) => e.at,
            Event::Service(e) => e.at,
            Event::Degradation(e) => e.at,
            Event::Quota(e) => e.at,
            Event::Fallback(e) => e.at,
            Event::Custom(e) => e.at,
            Event::Health(e) => e.at,
        }
    }
}

/// The pressure level moved from one level to another.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PressureChanged {
    /// The previous level.
    pub from: PressureLevel,
    /// The new level.
    pub to: PressureLevel,
    /// The signal that drove the new level.
    pub signal: Signal,
    /// Its human-readable name (custom gauges have user-given names).
    pub signal_name: Arc<str>,
    /// The signal's value at the change.
    pub value: f64,
    /// The threshold of the new level for that signal (NaN when the level is `Normal`).
    pub threshold: f64,
    /// When the sample was taken.
    pub at: Instant,
}

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum CircuitState {
    /// Calls pass and are recorded.
    Closed,
    /// Calls are rejected until the wait duration has elapsed.
    Open,
    /// A limited number of probe calls pass.
    HalfOpen,
    /// Operator state: calls always pass, outcomes are still recorded.
    Disabled,
    /// Operator state: calls are always rejected.
    ForcedOpen,
    /// Operator state: outcomes are recorded, the breaker never opens.
    MetricsOnly,
}

impl CircuitState {
    /// The upper-case name used by Resilience4j and the seed (`"HALF_OPEN"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "CLOSED",
            CircuitState::Open => "OPEN",
            CircuitState::HalfOpen => "HALF_OPEN",
            CircuitState::Disabled => "DISABLED",
            CircuitState::ForcedOpen => "FORCED_OPEN",
            CircuitState::MetricsOnly => "METRICS_ONLY",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a circuit breaker did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerEvent {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// The key of a per-key breaker, `None` for a single breaker.
    pub key: Option<Arc<str>>,
    /// What happened.
    pub kind: BreakerEventKind,
    /// When.
    pub at: Instant,
}

/// What a circuit breaker did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BreakerEventKind {
    /// The breaker moved between states.
    StateTransition {
        /// Previous state.
        from: CircuitState,
        /// New state.
        to: CircuitState,
        /// Why, e.g. `"failure rate 62.0% >= 50.0%"`.
        reason: Arc<str>,
    },
    /// Calls were rejected since the last such event (counted, not one event per call).
    CallsRejected {
        /// Rejections since the previous `CallsRejected` event.
        count: u64,
    },
    /// The failure or slow-call rate crossed its threshold.
    FailureRateExceeded {
        /// Failure rate in percent.
        failure_rate: f64,
        /// Slow-call rate in percent.
        slow_call_rate: f64,
    },
    /// The breaker was reset by an operator.
    Reset,
}

/// Something a retry layer did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryEvent {
    /// The retry layer's name.
    pub name: Arc<str>,
    /// What happened.
    pub kind: RetryEventKind,
    /// When.
    pub at: Instant,
}

/// What a retry layer did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RetryEventKind {
    /// A retry is scheduled.
    Attempt {
        /// The attempt about to be made (2 = first retry).
        attempt: u32,
        /// The delay before it.
        delay: Duration,
        /// Why the previous attempt is retried.
        reason: Arc<str>,
    },
    /// Retrying stopped without success.
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// Why retrying stopped.
        reason: Arc<str>,
    },
    /// Retries were refused by the budget since the last such event.
    BudgetExhausted {
        /// Refused retries since the previous `BudgetExhausted` event.
        count: u64,
    },
}

/// Something a quota layer did for one tenant.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QuotaEvent {
    /// The tenant.
    pub tenant: Arc<str>,
    /// Its quota group.
    pub group: Arc<str>,
    /// What happened.
    pub kind: QuotaEventKind,
    /// When.
    pub at: Instant,
}

/// What a quota layer did (crossings are aggregated: at most one event per tenant, kind and
/// second, counting the requests since the previous one).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum QuotaEventKind {
    /// Requests went above a soft limit.
    SoftLimitExceeded {
        /// `"rate"`, `"concurrency"` or `"units"`.
        resource: &'static str,
        /// Requests since the previous such event.
        count: u64,
    },
    /// Requests went above a hard (or burst) limit.
    HardLimitExceeded {
        /// `"rate"`, `"concurrency"` or `"units"`.
        resource: &'static str,
        /// Requests since the previous such event.
        count: u64,
    },
    /// The tenant was suspended.
    Suspended {
        /// For how long.
        duration: Duration,
    },
    /// A suspension ended (reported at the tenant's first request after it).
    Resumed,
    /// The fleet store (Redis) failed: the layer now decides on its fallback mode. `tenant`
    /// and `group` are `"*"` when the whole store is unreachable, or name the tenant whose
    /// keys held a bad value.
    StoreDegraded {
        /// What failed (the store error's text).
        reason: Arc<str>,
    },
    /// The fleet store answers again: fleet accounting resumed.
    StoreRecovered,
}

/// Something an adaptive concurrency limiter did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConcurrencyEvent {
    /// The limiter's name.
    pub name: Arc<str>,
    /// What happened.
    pub kind: ConcurrencyEventKind,
    /// When.
    pub at: Instant,
}

/// What an adaptive concurrency limiter did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConcurrencyEventKind {
    /// The effective limit changed (rate-limited).
    LimitChanged {
        /// Previous limit.
        from: u32,
        /// New limit.
        to: u32,
        /// The algorithm's name.
        algorithm: &'static str,
    },
    /// Requests were shed since the last such event (counted).
    Shed {
        /// The class shed.
        priority: Priority,
        /// Requests shed since the previous `Shed` event of this class.
        count: u64,
        /// Why, e.g. `"limit reached"` or `"pressure high: low priority refused"`.
        reason: Arc<str>,
    },
}

/// A symptom observed by an `AlertLayer`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceEvent {
    /// The observed service's name.
    pub name: Arc<str>,
    /// The key (executor id, route), if the layer is keyed.
    pub key: Option<Arc<str>>,
    /// What was observed.
    pub kind: ServiceEventKind,
    /// When.
    pub at: Instant,
}

impl ServiceEvent {
    /// Creates a service event (for `AlertLayer` and for tests of alert rules).
    pub fn new(
        name: impl Into<Arc<str>>,
        key: Option<Arc<str>>,
        kind: ServiceEventKind,
        at: Instant,
    ) -> Self {
        Self {
            name: name.into(),
            key,
            kind,
            at,
        }
    }
}

/// A symptom observed by an `AlertLayer`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServiceEventKind {
    /// The error rate crossed its threshold.
    ErrorRateExceeded {
        /// Error rate in percent.
        rate: f64,
        /// The threshold in percent.
        threshold: f64,
    },
    /// A latency percentile crossed its threshold.
    LatencyExceeded {
        /// The observed latency.
        observed: Duration,
        /// The threshold.
        threshold: Duration,
    },
    /// The service is back under its thresholds.
    Recovered,
}

/// A degradation layer started or stopped reducing work.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DegradationEvent {
    /// The pressure level now applied.
    pub level: PressureLevel,
    /// `true` when degradation is active (level above `Normal`).
    pub active: bool,
    /// When.
    pub at: Instant,
}

/// A fallback layer answered failures of its primary service. Counted: the first use is
/// reported at once, later ones at most once per layer and second.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FallbackEvent {
    /// The fallback layer's name.
    pub name: Arc<str>,
    /// The strategy used: `"queue"`, `"cache"`, `"service"` or `"value"`.
    pub strategy: &'static str,
    /// Why the primary failed, at the latest use: `"circuit_open"`, `"overloaded"`,
    /// `"timeout"`, `"quota_exceeded"`, `"status 503"`, or `"error"`.
    pub reason: Arc<str>,
    /// Uses since the previous `Fallback` event of this layer.
    pub count: u64,
    /// When.
    pub at: Instant,
}

/// The health of a dependency as its active checks see it (Envoy's model).
///
/// ```
/// use tower_pressure::event::HealthState;
/// assert_eq!(HealthState::Unhealthy.as_str(), "UNHEALTHY");
/// assert_eq!(HealthState::default(), HealthState::Unknown);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum HealthState {
    /// No check has finished yet, or too few to decide: treated as healthy (no hold).
    #[default]
    Unknown,
    /// The last checks passed (at least the healthy threshold of them after being unhealthy).
    Healthy,
    /// The last unhealthy-threshold checks failed.
    Unhealthy,
}

impl HealthState {
    /// The upper-case name (`"HEALTHY"`, `"UNHEALTHY"`, `"UNKNOWN"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "UNKNOWN",
            HealthState::Healthy => "HEALTHY",
            HealthState::Unhealthy => "UNHEALTHY",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dependency checked by a [`HealthChecker`](crate::health::HealthChecker) changed state.
///
/// Emitted on state changes only; every check's result is on the status page.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HealthEvent {
    /// The dependency's name.
    pub dependency: Arc<str>,
    /// The previous state.
    pub from: HealthState,
    /// The new state.
    pub to: HealthState,
    /// Consecutive failed checks at the change.
    pub consecutive_failures: u32,
    /// How long the check that decided took.
    pub latency: Duration,
    /// Why the last failed check failed, if it failed.
    pub last_error: Option<Arc<str>>,
    /// Whether the dependency's breaker is now held open by the checker.
    pub held: bool,
    /// When.
    pub at: Instant,
}

/// An event from user code.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CustomEvent {
    /// A kind chosen by the user, e.g. `"deploy"`.
    pub kind: Arc<str>,
    /// A key, if any.
    pub key: Option<Arc<str>>,
    /// A message.
    pub message: Arc<str>,
    /// When.
    pub at: Instant,
}

impl CustomEvent {
    /// Creates a custom event stamped now.
    pub fn new(kind: impl Into<Arc<str>>, message: impl Into<Arc<str>>) -> Self {
        Self {
            kind: kind.into(),
            key: None,
            message: message.into(),
            at: Instant::now(),
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.key = Some(key.into());
        self
    }
}

/// The bus every layer reports to. Cheap to clone; clones share the channel.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tower_pressure::event::{CustomEvent, Event, EventBus};
/// let bus = EventBus::new(64);
/// let mut rx = bus.subscribe();
/// bus.emit(Event::Custom(CustomEvent::new("deploy", "v2 rolled out")));
/// assert_eq!(rx.recv().await.unwrap().kind(), "custom");
/// # }
/// ```
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

struct BusInner {
    tx: broadcast::Sender<Event>,
    emitted: AtomicU64,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.inner.tx.receiver_count())
            .field("emitted", &self.emitted())
            .finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl EventBus {
    /// The default number of events a subscriber may fall behind before losing the oldest.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// Creates a bus that buffers `capacity` events per subscriber (at least 1).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            inner: Arc::new(BusInner {
                tx,
                emitted: AtomicU64::new(0),
            }),
        }
    }

    /// Publishes an event to every subscriber and to `tracing`. Never blocks.
    pub fn emit(&self, event: Event) {
        trace_event(&event);
        self.inner.emitted.fetch_add(1, Ordering::Relaxed);
        // An error only means nobody subscribes right now: the tracing event above remains.
        let _ = self.inner.tx.send(event);
    }

    /// A receiver of every event emitted from now on. A receiver that falls more than the
    /// bus capacity behind gets `Err(RecvError::Lagged(n))` telling how many it lost.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.tx.subscribe()
    }

    /// How many events were emitted since the bus was created.
    pub fn emitted(&self) -> u64 {
        self.inner.emitted.load(Ordering::Relaxed)
    }

    /// How many receivers are subscribed.
    pub fn subscriber_count(&self) -> usize {
        self.inner.tx.receiver_count()
    }
}

fn trace_event(event: &Event) {
    const T: &str = "tower_pressure::event";
    match event {
        Event::PressureChanged(e) => {
            if e.to > e.from {
                tracing::warn!(target: T, kind = "pressure_changed", from = %e.from, to = %e.to, signal = %e.signal_name, value = e.value, threshold = e.threshold, "pressure level rose");
            } else {
                tracing::info!(target: T, kind = "pressure_changed", from = %e.from, to = %e.to, signal = %e.signal_name, value = e.value, threshold = e.threshold, "pressure level fell");
            }
        }
        Event::Breaker(e) => match &e.kind {
            BreakerEventKind::StateTransition { from, to, reason } => {
                tracing::warn!(target: T, kind = "breaker_state_transition", breaker = %e.breaker, key = e.key.as_deref(), from = %from, to = %to, reason = %reason, "circuit breaker state changed");
            }
            BreakerEventKind::CallsRejected { count } => {
                tracing::debug!(target: T, kind = "breaker_calls_rejected", breaker = %e.breaker, key = e.key.as_deref(), count, "circuit breaker rejected calls");
            }
            BreakerEventKind::FailureRateExceeded {
                failure_rate,
                slow_call_rate,
            } => {
                tracing::warn!(target: T, kind = "breaker_failure_rate_exceeded", breaker = %e.breaker, key = e.key.as_deref(), failure_rate, slow_call_rate, "failure rate exceeded");
            }
            BreakerEventKind::Reset => {
                tracing::info!(target: T, kind = "breaker_reset", breaker = %e.breaker, key = e.key.as_deref(), "circuit breaker reset");
            }
        },
        Event::Retry(e) => match &e.kind {
            RetryEventKind::Attempt {
                attempt,
                delay,
                reason,
            } => {
                tracing::debug!(target: T, kind = "retry_attempt", name = %e.name, attempt, delay_ms = delay.as_millis() as u64, reason = %reason, "retrying");
            }
            RetryEventKind::Exhausted { attempts, reason } => {
                tracing::info!(target: T, kind = "retry_exhausted", name = %e.name, attempts, reason = %reason, "retries exhausted");
            }
            RetryEventKind::BudgetExhausted { count } => {
                tracing::warn!(target: T, kind = "retry_budget_exhausted", name = %e.name, count, "retry budget exhausted");
            }
        },
        Event::Concurrency(e) => match &e.kind {
            ConcurrencyEventKind::LimitChanged {
                from,
                to,
                algorithm,
            } => {
                tracing::debug!(target: T, kind = "limit_changed", name = %e.name, from, to, algorithm, "concurrency limit changed");
            }
            ConcurrencyEventKind::Shed {
                priority,
                count,
                reason,
            } => {
                tracing::info!(target: T, kind = "shed", name = %e.name, priority = %priority, count, reason = %reason, "requests shed");
            }
        },
        Event::Service(e) => match &e.kind {
            ServiceEventKind::ErrorRateExceeded { rate, threshold } => {
                tracing::warn!(target: T, kind = "error_rate_exceeded", name = %e.name, key = e.key.as_deref(), rate, threshold, "error rate exceeded");
            }
            ServiceEventKind::LatencyExceeded {
                observed,
                threshold,
            } => {
                tracing::warn!(target: T, kind = "latency_exceeded", name = %e.name, key = e.key.as_deref(), observed_ms = observed.as_secs_f64() * 1e3, threshold_ms = threshold.as_secs_f64() * 1e3, "latency exceeded");
            }
            ServiceEventKind::Recovered => {
                tracing::info!(target: T, kind = "service_recovered", name = %e.name, key = e.key.as_deref(), "service recovered");
            }
        },
        Event::Degradation(e) => {
            tracing::info!(target: T, kind = event.kind(), level = %e.level, "degradation changed");
        }
        Event::Quota(e) => match &e.kind {
            QuotaEventKind::SoftLimitExceeded { resource, count } => {
                tracing::info!(target: T, kind = "quota_soft_limit_exceeded", tenant = %e.tenant, group = %e.group, resource, count, "soft quota exceeded");
            }
            QuotaEventKind::HardLimitExceeded { resource, count } => {
                tracing::warn!(target: T, kind = "quota_hard_limit_exceeded", tenant = %e.tenant, group = %e.group, resource, count, "hard quota exceeded");
            }
            QuotaEventKind::Suspended { duration } => {
                tracing::warn!(target: T, kind = "quota_suspended", tenant = %e.tenant, group = %e.group, duration_ms = duration.as_millis() as u64, "tenant suspended");
            }
            QuotaEventKind::Resumed => {
                tracing::info!(target: T, kind = "quota_resumed", tenant = %e.tenant, group = %e.group, "tenant resumed");
            }
            QuotaEventKind::StoreDegraded { reason } => {
                tracing::warn!(target: T, kind = "quota_store_degraded", tenant = %e.tenant, group = %e.group, reason = %reason, "quota store degraded: fallback mode");
            }
            QuotaEventKind::StoreRecovered => {
                tracing::info!(target: T, kind = "quota_store_recovered", tenant = %e.tenant, group = %e.group, "quota store recovered: fleet accounting resumed");
            }
        },
        Event::Fallback(e) => {
            tracing::info!(target: T, kind = "fallback_used", name = %e.name, strategy = e.strategy, reason = %e.reason, count = e.count, "fallback used");
        }
        Event::Health(e) => {
            if e.to == HealthState::Unhealthy {
                tracing::warn!(target: T, kind = event.kind(), dependency = %e.dependency, from = %e.from, to = %e.to, consecutive_failures = e.consecutive_failures, latency_ms = e.latency.as_secs_f64() * 1e3, error = e.last_error.as_deref(), held = e.held, "dependency health changed");
            } else {
                tracing::info!(target: T, kind = event.kind(), dependency = %e.dependency, from = %e.from, to = %e.to, consecutive_failures = e.consecutive_failures, latency_ms = e.latency.as_secs_f64() * 1e3, held = e.held, "dependency health changed");
            }
        }
        Event::Custom(e) => {
            tracing::info!(target: T, kind = "custom", custom_kind = %e.kind, key = e.key.as_deref(), message = %e.message, "custom event");
        }
    }
}
