//! Live breaker settings: the thresholds and waits a reload may change while the breakers
//! serve, swapped without a lock on the request path.
//!
//! Every breaker of a layer (the default one and every per-key one) shares one [`Live`]
//! cell: an [`ArcSwap`] of the [`BreakerConfig`] in force, plus a *hot* word mirroring the two
//! settings a closed-state call needs (whether a resource trip is configured, and the
//! slow-call duration), so that the healthy request path reads one `Relaxed` atomic that
//! only a reload writes, exactly as it read one field of the shared config before. Every
//! other setting is read from one snapshot ([`Live::with`], out of line) where it is needed:
//! on a failure, in OPEN and HALF_OPEN, on a transition. A call admitted while slow-call
//! detection was off is never counted slow (it has no start time).
//!
//! What a reload keeps: the state (CLOSED / OPEN / HALF_OPEN and the operator states), the
//! end of the current OPEN wait, the window's contents, the consecutive-failure count, probe
//! slots and cumulative metrics. The new settings apply from the next decision: an OPEN
//! breaker stays open until its wait ends, and a new `wait_duration` applies to the next
//! opening.
//!
//! What a reload cannot change: the name, the window (its kind and size: its contents would
//! be lost), the key extractor, `max_keys` and `idle_timeout`, and the random source of the
//! jitter. [`CircuitBreakerHandle::prepare`] refuses a window change with a
//! [`ConfigError`] naming it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Guard};

use super::config::{BreakerConfig, CircuitBreakerBuilder, WindowKind};
use super::handle::CircuitBreakerHandle;
use crate::error::ConfigError;

/// Bit of [`Live::hot`]: a resource trip (level or memory) is configured.
const RESOURCE: u64 = 1 << 63;
/// The slow-call duration in nanoseconds (0: off), below [`RESOURCE`].
const SLOW_MASK: u64 = RESOURCE - 1;

/// The two settings of the closed-state request path, read with one load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hot(u64);

impl Hot {
    /// Whether a resource trip is configured.
    #[inline]
    pub(crate) fn resource(self) -> bool {
        self.0 & RESOURCE != 0
    }
    /// The slow-call duration in nanoseconds, 0 when slow-call detection is off.
    #[inline]
    pub(crate) fn slow_nanos(self) -> u64 {
        self.0 & SLOW_MASK
    }
}

fn hot_of(cfg: &BreakerConfig) -> u64 {
    let slow = cfg
        .slow_call_duration
        // A zero duration is refused by the builder; 1 ns keeps "on" distinct from "off".
        .map_or(0, |d| {
            u64::try_from(d.as_nanos())
                .unwrap_or(SLOW_MASK)
                .clamp(1, SLOW_MASK)
        });
    slow | if cfg.has_resource_trip() { RESOURCE } else { 0 }
}

/// The settings every breaker of one layer reads (see the [module docs](self)).
pub(crate) struct Live {
    cell: ArcSwap<BreakerConfig>,
    hot: AtomicU64,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.load().fmt(f)
    }
}

impl Live {
    pub(crate) fn new(cfg: Arc<BreakerConfig>) -> Self {
        let hot = hot_of(&cfg);
        Self {
            cell: ArcSwap::new(cfg),
            hot: AtomicU64::new(hot),
        }
    }

    /// The hot word. `Relaxed`: it publishes no other memory; a call that reads it just
    /// before a reload simply decides with the previous settings.
    #[inline]
    pub(crate) fn hot(&self) -> Hot {
        Hot(self.hot.load(Ordering::Relaxed))
    }

    /// A snapshot of the settings in force (no lock; off the healthy request path).
    pub(crate) fn load(&self) -> Guard<Arc<BreakerConfig>> {
        self.cell.load()
    }

    /// `f` of a snapshot of the settings in force. Out of line, so that the snapshot's code
    /// stays out of the callers' hot paths (the closed-state admission is inlined into
    /// `call`).
    #[inline(never)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&BreakerConfig) -> R) -> R {
        f(&self.cell.load())
    }

    pub(crate) fn load_full(&self) -> Arc<BreakerConfig> {
        self.cell.load_full()
    }

    fn store(&self, cfg: BreakerConfig) {
        let hot = hot_of(&cfg);
        self.cell.store(Arc::new(cfg));
        self.hot.store(hot, Ordering::Relaxed);
    }
}

/// Validated settings for a running breaker layer, made by
/// [`CircuitBreakerHandle::prepare`] and applied, infallibly, by
/// [`CircuitBreakerHandle::apply`].
#[derive(Debug, Clone)]
pub struct BreakerUpdate {
    cfg: BreakerConfig,
}

impl BreakerUpdate {
    /// The settings this update applies.
    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }
}

fn window_field(w: WindowKind) -> &'static str {
    match w {
        WindowKind::Count(_) => "count_window",
        WindowKind::Time(_) => "time_window",
    }
}

impl CircuitBreakerHandle {
    /// The settings in force now (after any reload).
    ///
    /// ```
    /// use tower_pressure::circuit_breaker::CircuitBreakerLayer;
    /// let layer = CircuitBreakerLayer::builder().failure_threshold(7).build()?;
    /// assert_eq!(layer.handle().settings().failure_threshold(), 7);
    /// # Ok::<(), tower_pressure::ConfigError>(())
    /// ```
    pub fn settings(&self) -> Arc<BreakerConfig> {
        self.shared.live.load_full()
    }

    /// Validates `builder` (with its own `build()` rules) as the new settings of this
    /// layer's breakers, without applying anything: thresholds, rates, slow-call duration,
    /// waits, jitter, half-open probes, resource trips. The builder's name, monitor, event
    /// bus, `max_keys`, `idle_timeout` and random source are not used: those of the running
    /// layer stay.
    ///
    /// Applied, the settings reach every breaker of the layer at once and take effect from
    /// each breaker's next decision. Everything a breaker holds is kept: its state, the end
    /// of its current OPEN wait (an open breaker stays open until then; a new
    /// `wait_duration` applies from the next opening), its window, consecutive failures,
    /// probe slots and metrics.
    ///
    /// # Errors
    /// The builder's [`ConfigError`]; `count_window` or `time_window` when the window differs
    /// from the running layer's (its contents would be lost); `monitor` when a resource trip
    /// is asked of a layer built without a monitor.
    pub fn prepare(&self, builder: CircuitBreakerBuilder) -> Result<BreakerUpdate, ConfigError> {
        let layer = builder.build()?;
        let mut cfg = (*layer.shared.cfg).clone();
        let current = self.shared.live.load();
        cfg.name = current.name.clone();
        if cfg.window != current.window {
            return Err(ConfigError::new(
                window_field(cfg.window),
                format!("{:?}", cfg.window),
                format!(
                    "cannot change while serving (the running window is {:?}; its contents \
                     would be lost)",
                    current.window
                ),
            ));
        }
        if cfg.has_resource_trip() && self.shared.monitor.is_none() {
            return Err(ConfigError::new(
                "monitor",
                "none",
                "a resource trip needs a PressureMonitor, and this layer was built without one",
            ));
        }
        cfg.rng = current.rng.clone();
        Ok(BreakerUpdate { cfg })
    }

    /// Applies prepared settings to every breaker of the layer (the default one and every
    /// per-key one) at once. States, open waits, windows, probe slots and metrics are kept
    /// (see [`prepare`](Self::prepare)).
    pub fn apply(&self, update: BreakerUpdate) {
        self.shared.live.store(update.cfg);
    }

    /// [`prepare`](Self::prepare) then [`apply`](Self::apply).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// use tower_pressure::circuit_breaker::{CircuitBreakerLayer, CircuitState};
    ///
    /// let layer = CircuitBreakerLayer::builder().failure_threshold(5).build()?;
    /// let handle = layer.handle();
    /// let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|_: ()| async {
    ///     Err::<(), _>("boom")
    /// }));
    /// let _ = svc.ready().await?.call(()).await;
    /// handle.reconfigure(CircuitBreakerLayer::builder().failure_threshold(2))?;
    /// let _ = svc.ready().await?.call(()).await; // 2 consecutive failures: opens
    /// assert_eq!(handle.state(), CircuitState::Open);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`prepare`](Self::prepare); nothing is applied then.
    pub fn reconfigure(&self, builder: CircuitBreakerBuilder) -> Result<(), ConfigError> {
        let update = self.prepare(builder)?;
        self.apply(update);
        Ok(())
    }
}

impl BreakerConfig {
    /// Consecutive failures that open the breaker (0: off).
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }
    /// Time in OPEN before probing.
    pub fn wait_duration(&self) -> std::time::Duration {
        self.wait_duration
    }
    /// Failure rate that opens the breaker, percent.
    pub fn failure_rate_threshold(&self) -> f64 {
        self.failure_rate_threshold
    }
    /// The sliding window.
    pub fn window(&self) -> WindowKind {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::PressureLevel;
    use crate::circuit_breaker::state::{Now, Outcome};
    use crate::circuit_breaker::{CircuitBreakerLayer, CircuitState, RejectReason, WindowKind};

    const S: u64 = 1_000_000_000;

    #[test]
    fn slow_call_detection_turned_on_spares_calls_admitted_before() {
        let layer = CircuitBreakerLayer::builder()
            .failure_threshold(0)
            .count_window(10)
            .minimum_calls(2)
            .build()
            .unwrap();
        let handle = layer.handle();
        let core = layer.shared.default.clone();
        let before = core.try_acquire(&mut Now::fixed(0)).unwrap();
        handle
            .reconfigure(
                CircuitBreakerLayer::builder()
                    .failure_threshold(0)
                    .count_window(10)
                    .minimum_calls(2)
                    .slow_call_duration(Duration::from_millis(100))
                    .slow_call_rate_threshold(50.0),
            )
            .unwrap();
        // Admitted without a start time: never slow, however long it took.
        core.on_result(before, Outcome::Success, &mut Now::fixed(10 * S));
        assert_eq!(core.metrics(&mut Now::fixed(10 * S)).slow_calls, 0);
        // Admitted after the reload: measured; 1 slow of 2 (50 %) opens the breaker.
        let t = core.try_acquire(&mut Now::fixed(10 * S)).unwrap();
        core.on_result(t, Outcome::Success, &mut Now::fixed(11 * S));
        assert_eq!(core.metrics(&mut Now::fixed(11 * S)).slow_calls, 1);
        assert_eq!(core.state_raw(), CircuitState::Open);
    }

    #[test]
    fn a_resource_trip_needs_the_monitor_and_the_window_stays() {
        let layer = CircuitBreakerLayer::builder().build().unwrap();
        let handle = layer.handle();
        let (monitor, manual) = crate::PressureMonitor::manual();
        let err = handle
            .prepare(
                CircuitBreakerLayer::builder()
                    .monitor(monitor.clone())
                    .trip_at_level(PressureLevel::High),
            )
            .unwrap_err();
        assert_eq!(err.field(), "monitor");
        let err = handle
            .prepare(CircuitBreakerLayer::builder().count_window(50))
            .unwrap_err();
        assert_eq!(err.field(), "count_window");
        assert_eq!(handle.settings().window(), WindowKind::Count(100));

        let layer = CircuitBreakerLayer::builder()
            .monitor(monitor.clone())
            .build()
            .unwrap();
        let handle = layer.handle();
        manual.set(99.0);
        monitor.sample_now();
        let core = layer.shared.default.clone();
        assert!(core.try_acquire(&mut Now::fixed(0)).is_ok());
        handle
            .reconfigure(
                CircuitBreakerLayer::builder()
                    .monitor(monitor)
                    .trip_at_level(PressureLevel::High),
            )
            .unwrap();
        let r = core.try_acquire(&mut Now::fixed(0)).unwrap_err();
        assert!(matches!(r.reason, RejectReason::Pressure(_)));
        assert_eq!(core.state_raw(), CircuitState::Closed);
    }
}
