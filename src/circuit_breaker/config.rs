//! Breaker configuration and its validating builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ConfigError, check_range};
use crate::event::EventBus;
use crate::pressure::PressureLevel;
use crate::pressure::PressureMonitor;

/// Which sliding window the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last `n` recorded calls (Resilience4j's COUNT_BASED).
    Count(u32),
    /// The calls of the last `n` seconds, one bucket per second (TIME_BASED).
    Time(u32),
}

/// A source of uniform random numbers in `0.0..1.0`, used for the open-wait jitter.
/// Injected so tests are deterministic.
pub type Rng = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Validated breaker settings, shared by every breaker of a layer (one per key).
#[derive(Clone)]
pub struct BreakerConfig {
    pub(crate) name: Arc<str>,
    pub(crate) failure_threshold: u32,
    pub(crate) window: WindowKind,
    pub(crate) minimum_calls: u32,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) wait_duration: Duration,
    pub(crate) wait_multiplier: f64,
    pub(crate) max_wait_duration: Duration,
    pub(crate) jitter: f64,
    pub(crate) permitted_calls_in_half_open: u32,
    pub(crate) success_threshold: u32,
    pub(crate) max_wait_in_half_open: Duration,
    pub(crate) trip_level: Option<PressureLevel>,
    pub(crate) memory_percent: Option<f64>,
    pub(crate) memory_bytes: Option<f64>,
    pub(crate) rng: Rng,
}

impl fmt::Debug for BreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerConfig")
            .field("name", &self.name)
            .field("failure_threshold", &self.failure_threshold)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("failure_rate_threshold", &self.failure_rate_threshold)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("slow_call_rate_threshold", &self.slow_call_rate_threshold)
            .field("wait_duration", &self.wait_duration)
            .field("wait_multiplier", &self.wait_multiplier)
            .field("max_wait_duration", &self.max_wait_duration)
            .field("jitter", &self.jitter)
            .field(
                "permitted_calls_in_half_open",
                &self.permitted_calls_in_half_open,
            )
            .field("success_threshold", &self.success_threshold)
            .field("max_wait_in_half_open", &self.max_wait_in_half_open)
            .field("trip_level", &self.trip_level)
            .field("memory_percent", &self.memory_percent)
            .field("memory_bytes", &self.memory_bytes)
            .finish_non_exhaustive()
    }
}

impl BreakerConfig {
    /// The wait in OPEN after the `reopens`-th consecutive re-open (0 = first open), before
    /// jitter: `wait_duration * wait_multiplier^reopens`, capped at `max_wait_duration`.
    pub(crate) fn base_wait(&self, reopens: u32) -> Duration {
        let base = self.wait_duration.as_secs_f64();
        let grown = base * self.wait_multiplier.powi(reopens.min(64) as i32);
        let capped = grown.min(self.max_wait_duration.as_secs_f64());
        Duration::from_secs_f64(if capped.is_finite() { capped } else { base })
    }

    /// The wait with jitter applied: `base * (1 ± jitter)`, never above the cap.
    pub(crate) fn open_wait(&self, reopens: u32) -> Duration {
        let base = self.base_wait(reopens);
        if self.jitter == 0.0 {
            return base;
        }
        let r = (self.rng)().clamp(0.0, 1.0);
        let factor = 1.0 + self.jitter * (2.0 * r - 1.0);
        let secs = (base.as_secs_f64() * factor)
            .min(self.max_wait_duration.as_secs_f64().max(base.as_secs_f64()));
        Duration::from_secs_f64(secs.max(0.0))
    }

    pub(crate) fn has_resource_trip(&self) -> bool {
        self.trip_level.is_some() || self.memory_percent.is_some() || self.memory_bytes.is_some()
    }
}

/// Builds a [`CircuitBreakerLayer`](super::CircuitBreakerLayer); every setting has the
/// default named in its method. `build()` validates and names the bad field.
#[derive(Debug, Clone)]
pub struct CircuitBreakerBuilder {
    cfg: BreakerConfig,
    monitor: Option<PressureMonitor>,
    bus: Option<EventBus>,
    max_keys: usize,
    idle_timeout: Duration,
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CircuitBreakerBuilder {
    /// A builder with the defaults (seed 000 and Resilience4j).
    pub fn new() -> Self {
        Self {
            cfg: BreakerConfig {
                name: Arc::from("circuit_breaker"),
                failure_threshold: 5,
                window: WindowKind::Count(100),
                minimum_calls: 20,
                failure_rate_threshold: 50.0,
                slow_call_duration: None,
                slow_call_rate_threshold: 100.0,
                wait_duration: Duration::from_secs(60),
                wait_multiplier: 1.0,
                max_wait_duration: Duration::from_secs(60),
                jitter: 0.0,
                permitted_calls_in_half_open: 3,
                success_threshold: 3,
                max_wait_in_half_open: Duration::from_secs(30),
                trip_level: None,
                memory_percent: None,
                memory_bytes: None,
                rng: Arc::new(fastrand::f64),
            },
            monitor: None,
            bus: None,
            max_keys: 1024,
            idle_timeout: Duration::from_secs(600),
        }
    }

    /// The breaker's name, used in events and errors (default `"circuit_breaker"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.cfg.name = name.into();
        self
    }

    /// Open after this many consecutive failures (default 5, the seed's; 0 turns it off).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.cfg.failure_threshold = n;
        self
    }

    /// Rates over the last `n` calls (default: count window of 100).
    pub fn count_window(mut self, n: u32) -> Self {
        self.cfg.window = WindowKind::Count(n);
        self
    }

    /// Rates over the last `secs` seconds, bucketed per second (Resilience4j default 60).
    pub fn time_window(mut self, secs: u32) -> Self {
        self.cfg.window = WindowKind::Time(secs);
        self
    }

    /// Calls the window must hold before rates count (default 20).
    ///
    /// With a count window smaller than this, `build()` caps it at the window's size, as
    /// Resilience4j does (`count_window(10)` with the default 20 trips once 10 calls are
    /// in): a minimum the window can never hold would silently turn the rate trip off. With a
    /// time window the minimum is reachable by traffic, so it is kept; `build()` refuses only
    /// a minimum more calls than the window's counters can hold (see
    /// [`build`](Self::build)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};
    ///
    /// let layer = CircuitBreakerLayer::builder()
    ///     .failure_threshold(0) // rate trips only
    ///     .count_window(10)     // minimum_calls stays at its default 20: capped at 10
    ///     .build()?;
    /// let handle = layer.handle();
    /// let mut svc = ServiceBuilder::new()
    ///     .layer(layer)
    ///     .service(service_fn(|_: ()| async { Err::<(), _>("boom") }));
    /// for _ in 0..10 {
    ///     let _ = svc.ready().await?.call(()).await;
    /// }
    /// assert_eq!(handle.state(), CircuitState::Open);
    /// # Ok(()) }
    /// ```
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.cfg.minimum_calls = n;
        self
    }

    /// Open when the failure rate in percent reaches this (default 50; 100 turns rate trips
    /// off only when every call must fail).
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.cfg.failure_rate_threshold = percent;
        self
    }

    /// Calls slower than this count as slow (default: off, no clock read per call).
    pub fn slow_call_duration(mut self, d: Duration) -> Self {
        self.cfg.slow_call_duration = Some(d);
        self
    }

    /// Open when the slow-call rate in percent reaches this (default 100).
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.cfg.slow_call_rate_threshold = percent;
        self
    }

    /// How long the breaker stays OPEN (default 60 s, the seed's `timeout_seconds`).
    pub fn wait_duration(mut self, d: Duration) -> Self {
        self.cfg.wait_duration = d;
        if self.cfg.max_wait_duration < d {
            self.cfg.max_wait_duration = d;
        }
        self
    }

    /// Grows the open wait exponentially on consecutive re-opens: `wait * multiplier^n`,
    /// capped at `max` (default multiplier 1: constant wait).
    pub fn exponential_wait(mut self, multiplier: f64, max: Duration) -> Self {
        self.cfg.wait_multiplier = multiplier;
        self.cfg.max_wait_duration = max;
        self
    }

    /// Randomises each open wait by `± fraction` (default 0, range `0..=1`).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.cfg.jitter = fraction;
        self
    }

    /// Injects the random source for the jitter (values in `0.0..1.0`).
    pub fn rng(mut self, rng: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.cfg.rng = Arc::new(rng);
        self
    }

    /// Probe calls admitted in HALF_OPEN (default 3).
    pub fn permitted_calls_in_half_open(mut self, n: u32) -> Self {
        self.cfg.permitted_calls_in_half_open = n;
        self
    }

    /// Probe successes that close the breaker (default 3, the seed's).
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.cfg.success_threshold = n;
        self
    }

    /// Re-open when probes have not closed the breaker within this (default 30 s, the seed's
    /// `half_open_timeout`).
    pub fn max_wait_in_half_open(mut self, d: Duration) -> Self {
        self.cfg.max_wait_in_half_open = d;
        self
    }

    /// The shared monitor, needed for resource trips; events go to its bus unless
    /// [`event_bus`](Self::event_bus) is set.
    pub fn monitor(mut self, monitor: PressureMonitor) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Reject while the monitor's level is at or above `level` (default: off).
    pub fn trip_at_level(mut self, level: PressureLevel) -> Self {
        self.cfg.trip_level = Some(level);
        self
    }

    /// Reject while memory use ([`Signal::Memory`](crate::pressure::Signal::Memory)) is above
    /// `percent` (default: off).
    pub fn memory_threshold_percent(mut self, percent: f64) -> Self {
        self.cfg.memory_percent = Some(percent);
        self
    }

    /// Reject while memory in use ([`Signal::MemoryBytes`](crate::pressure::Signal::MemoryBytes))
    /// exceeds `mb` mebibytes: the seed's `memory_threshold_mb` (default: off).
    pub fn memory_threshold_mb(mut self, mb: f64) -> Self {
        self.cfg.memory_bytes = Some(mb * 1024.0 * 1024.0);
        self
    }

    /// Reports to this bus (default: the monitor's, else a new bus).
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// For per-key breakers: at most this many keys get their own breaker (default 1024);
    /// calls for further keys share the layer's default breaker.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// For per-key breakers: a key unused this long may be evicted when a new key needs its
    /// slot (default 10 min).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Validates the settings and builds the layer, creating its shared state now.
    ///
    /// Settings that are valid alone but not together are reconciled or refused:
    /// `minimum_calls` above a count window's size is capped at the size (Resilience4j's
    /// rule); `minimum_calls` above what a time window can ever hold (`time_window` seconds
    /// times the calls one second's bucket counts, about 4.2 million) is refused with a
    /// [`ConfigError`] on `minimum_calls` that names `time_window` too.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid field.
    pub fn build(mut self) -> Result<super::CircuitBreakerLayer, ConfigError> {
        match self.cfg.window {
            // Resilience4j caps minimumNumberOfCalls at a COUNT_BASED window's size: the
            // window can never hold more calls, so a larger minimum would disable rate trips.
            WindowKind::Count(n) => self.cfg.minimum_calls = self.cfg.minimum_calls.min(n),
            WindowKind::Time(secs) => {
                let most = u64::from(secs).saturating_mul(super::window::BUCKET_CALLS);
                if u64::from(self.cfg.minimum_calls) > most && secs > 0 && secs <= 3600 {
                    return Err(ConfigError::new(
                        "minimum_calls",
                        self.cfg.minimum_calls,
                        format!(
                            "can never be reached: a time_window of {secs} s holds at most \
                             {most} calls; lower minimum_calls or lengthen time_window"
                        ),
                    ));
                }
            }
        }
        let c = &self.cfg;
        match c.window {
            WindowKind::Count(n) if n == 0 || n > super::window::MAX_COUNT => {
                return Err(ConfigError::new(
                    "count_window",
                    n,
                    format!("must be within 1..={}", super::window::MAX_COUNT),
                ));
            }
            WindowKind::Time(n) if n == 0 || n > 3600 => {
                return Err(ConfigError::new(
                    "time_window",
                    n,
                    "must be within 1..=3600 seconds",
                ));
            }
            _ => {}
        }
        check_range(
            "failure_rate_threshold",
            c.failure_rate_threshold,
            0.0,
            100.0,
        )?;
        check_range(
            "slow_call_rate_threshold",
            c.slow_call_rate_threshold,
            0.0,
            100.0,
        )?;
        check_range("jitter", c.jitter, 0.0, 1.0)?;
        check_range("wait_multiplier", c.wait_multiplier, 1.0, 1000.0)?;
        if c.wait_duration.is_zero() {
            return Err(ConfigError::new(
                "wait_duration",
                c.wait_duration,
                "must be greater than zero",
            ));
        }
        if c.max_wait_duration < c.wait_duration {
            return Err(ConfigError::new(
                "max_wait_duration",
                c.max_wait_duration,
                "must be at least wait_duration",
            ));
        }
        if c.max_wait_in_half_open.is_zero() {
            return Err(ConfigError::new(
                "max_wait_in_half_open",
                c.max_wait_in_half_open,
                "must be greater than zero",
            ));
        }
        if c.permitted_calls_in_half_open == 0 || c.permitted_calls_in_half_open > 0xffff {
            return Err(ConfigError::new(
                "permitted_calls_in_half_open",
                c.permitted_calls_in_half_open,
                "must be within 1..=65535",
            ));
        }
        if c.success_threshold == 0 || c.success_threshold > c.permitted_calls_in_half_open {
            return Err(ConfigError::new(
                "success_threshold",
                c.success_threshold,
                "must be within 1..=permitted_calls_in_half_open",
            ));
        }
        if let Some(d) = c.slow_call_duration
            && d.is_zero()
        {
            return Err(ConfigError::new(
                "slow_call_duration",
                d,
                "must be greater than zero",
            ));
        }
        if let Some(p) = c.memory_percent {
            check_range("memory_threshold_percent", p, 0.0, 100.0)?;
        }
        if let Some(b) = c.memory_bytes
            && !(b.is_finite() && b > 0.0)
        {
            return Err(ConfigError::new(
                "memory_threshold_mb",
                b / 1048576.0,
                "must be a positive number",
            ));
        }
        if c.has_resource_trip() && self.monitor.is_none() {
            return Err(ConfigError::new(
                "monitor",
                "none",
                "a resource trip (trip_at_level / memory_threshold_*) needs a PressureMonitor",
            ));
        }
        if self.max_keys == 0 || self.max_keys > 1 << 20 {
            return Err(ConfigError::new(
                "max_keys",
                self.max_keys,
                "must be within 1..=1048576",
            ));
        }
        let bus = self
            .bus
            .or_else(|| self.monitor.as_ref().map(|m| m.events().clone()))
            .unwrap_or_default();
        Ok(super::CircuitBreakerLayer::from_parts(
            self.cfg,
            self.monitor,
            bus,
            self.max_keys,
            self.idle_timeout,
        ))
    }
}
