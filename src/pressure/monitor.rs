//! The shared [`PressureMonitor`]: one sampler task, readings published through atomics.
//!
//! # How a reading reaches a request
//!
//! The sampler task wakes every `interval`, asks every [`Source`] for its signals, runs the
//! [`HysteresisTracker`], and publishes the result in one 64-bit *state word*:
//!
//! ```text
//!  63            32 31        16 15      8 7       0
//! +----------------+------------+---------+---------+
//! | driver value   | driver     | reserved| level   |
//! | (f32 bits)     | signal code|         | (0..=4) |
//! +----------------+------------+---------+---------+
//! ```
//!
//! so [`PressureMonitor::level`] and the degradation layer's cause are one `Relaxed` atomic
//! load: no lock, no syscall, no allocation. A [`PressureMonitor::snapshot`] adds the sample
//! time and the CPU and memory readings; those are published under a sequence lock (the
//! writer makes the sequence odd, stores, makes it even with `Release`; readers retry while it
//! is odd or changed) so a snapshot is never torn across two samples.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::sources::{self, GaugeFn, GaugeSource, ManualFeed, ManualSource, Source};
use super::{HysteresisTracker, PressureLevel, Signal, Thresholds};
use crate::error::ConfigError;
use crate::event::{DegradationEvent, Event, EventBus, PressureChanged};
use crate::sync::{AtomicU64, fence};

/// A cheap-to-clone handle to the process's pressure readings.
///
/// Build one per process with [`PressureMonitor::builder`] and hand clones to every layer.
/// Dropping the last clone stops the sampler task.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_pressure::pressure::{ManualSource, PressureMonitor, Signal};
/// use tower_pressure::PressureLevel;
///
/// let memory = ManualSource::new(50.0);
/// let monitor = PressureMonitor::builder()
///     .without_system_sources()
///     .manual(Signal::Memory, memory.clone())
///     .build()?;
/// memory.set(88.0);
/// monitor.sample_now();
/// assert_eq!(monitor.level(), PressureLevel::Critical);
/// assert_eq!(monitor.snapshot().driver(), Signal::Memory);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PressureMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    /// Level, driver signal and driver value; see the module docs for the layout.
    word: AtomicU64,
    /// Sequence lock over `at_nanos`, `cpu`, `memory` and `threshold`.
    seq: AtomicU64,
    at_nanos: AtomicU64,
    cpu: AtomicU64,
    memory: AtomicU64,
    threshold: AtomicU64,
    samples: AtomicU64,
    epoch: Instant,
    interval: Duration,
    slots: Box<[SlotMeta]>,
    values: Box<[AtomicU64]>,
    sampler: Mutex<Sampler>,
    history: Mutex<VecDeque<LevelChange>>,
    /// The thresholds in force per slot (`SlotMeta::thresholds` as built, replaced by
    /// [`PressureMonitor::set_thresholds`]). Read by the sampler and status pages only.
    live: Mutex<Box<[Option<Thresholds>]>>,
    level_tx: watch::Sender<PressureLevel>,
    bus: EventBus,
    _stop: Option<oneshot::Sender<()>>,
}

struct SlotMeta {
    signal: Signal,
    name: Arc<str>,
    source: Arc<str>,
    thresholds: Option<Thresholds>,
}

struct Sampler {
    sources: Vec<MappedSource>,
    buf: Vec<f64>,
    tracker: HysteresisTracker,
}

/// A source and, per signal it reports, the slot its value is published in (`None`: the
/// signal is overridden by a manual source).
struct MappedSource {
    source: Box<dyn Source>,
    slots: Vec<Option<usize>>,
}

const HISTORY: usize = 64;

/// A level change, kept in the monitor's short history for the status page.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LevelChange {
    /// Previous level.
    pub from: PressureLevel,
    /// New level.
    pub to: PressureLevel,
    /// The signal that drove the new level.
    pub signal: Signal,
    /// Its name.
    pub signal_name: Arc<str>,
    /// Its value.
    pub value: f64,
    /// When.
    pub at: Instant,
}

/// A consistent view of the latest sample. Copy; costs a handful of atomic loads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PressureSnapshot {
    level: PressureLevel,
    driver: Signal,
    value: f64,
    threshold: f64,
    at: Instant,
    cpu: f64,
    memory: f64,
    samples: u64,
}

impl PressureSnapshot {
    /// The pressure level.
    pub fn level(&self) -> PressureLevel {
        self.level
    }
    /// The signal that drives the level (the one nearest its thresholds at `Normal`).
    pub fn driver(&self) -> Signal {
        self.driver
    }
    /// The driving signal's value.
    pub fn value(&self) -> f64 {
        self.value
    }
    /// The driving signal's threshold for the current level (its `Elevated` threshold at
    /// `Normal`; NaN when no signal has thresholds).
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
    /// When the sample was taken.
    pub fn at(&self) -> Instant {
        self.at
    }
    /// CPU utilisation %, if read.
    pub fn cpu_percent(&self) -> Option<f64> {
        finite(self.cpu)
    }
    /// Memory in use %, if read.
    pub fn memory_percent(&self) -> Option<f64> {
        finite(self.memory)
    }
    /// How many samples were taken so far (0 before the first).
    pub fn samples(&self) -> u64 {
        self.samples
    }
}

/// One signal's latest reading, for status pages.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SignalReading {
    /// The signal.
    pub signal: Signal,
    /// Its name (custom gauges carry the user's name).
    pub name: Arc<str>,
    /// The source that reported it.
    pub source: Arc<str>,
    /// The value, `None` when not available.
    pub value: Option<f64>,
    /// Its thresholds, `None` when it is observed only.
    pub thresholds: Option<Thresholds>,
    /// The level this value alone reaches (no hysteresis).
    pub level: PressureLevel,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn pack(level: PressureLevel, signal: Signal, value: f64) -> u64 {
    let v = (value as f32).to_bits() as u64;
    (v << 32) | ((signal.code() as u64) << 16) | level.as_u8() as u64
}

pub(crate) fn unpack(word: u64) -> (PressureLevel, Signal, f32) {
    (
        PressureLevel::from_u8((word & 0xff) as u8),
        Signal::from_code(((word >> 16) & 0xffff) as u16),
        f32::from_bits((word >> 32) as u32),
    )
}

impl fmt::Debug for PressureMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.snapshot();
        f.debug_struct("PressureMonitor")
            .field("level", &s.level)
            .field("driver", &s.driver)
            .field("value", &s.value)
            .field("interval", &self.inner.interval)
            .field("signals", &self.inner.slots.len())
            .finish()
    }
}

impl PressureMonitor {
    /// Starts configuring a monitor.
    pub fn builder() -> PressureMonitorBuilder {
        PressureMonitorBuilder::default()
    }

    /// A monitor with no real sources, driven by one [`ManualSource`] read as
    /// [`Signal::Manual`] with the default utilisation thresholds (65/75/85/95), and no
    /// sampler task: call [`PressureMonitor::sample_now`] after setting the value. For tests
    /// and simulations; works outside a runtime.
    ///
    /// ```
    /// use tower_pressure::{PressureLevel, pressure::PressureMonitor};
    /// let (monitor, manual) = PressureMonitor::manual();
    /// manual.set(80.0);
    /// monitor.sample_now();
    /// assert_eq!(monitor.level(), PressureLevel::High);
    /// ```
    pub fn manual() -> (PressureMonitor, ManualSource) {
        let m = ManualSource::new(0.0);
        let monitor = PressureMonitor::builder()
            .without_system_sources()
            .manual(Signal::Manual, m.clone())
            .build_unstarted();
        match monitor {
            Ok(monitor) => (monitor, m),
            // Invariant: this configuration uses only defaults that are valid.
            Err(e) => unreachable!("default manual monitor is valid: {e}"),
        }
    }

    /// The current level: one atomic load.
    #[inline]
    pub fn level(&self) -> PressureLevel {
        PressureLevel::from_u8((self.inner.word.load(Ordering::Relaxed) & 0xff) as u8)
    }

    /// Level, driving signal and its value from one atomic load (the value as `f32`).
    #[inline]
    pub fn level_and_cause(&self) -> (PressureLevel, Signal, f32) {
        unpack(self.inner.word.load(Ordering::Relaxed))
    }

    /// A consistent snapshot of the latest sample: a few atomic loads, no lock.
    pub fn snapshot(&self) -> PressureSnapshot {
        let i = &*self.inner;
        loop {
            let s1 = i.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                crate::sync::spin_loop();
                continue;
            }
            let word = i.word.load(Ordering::Relaxed);
            let at = i.at_nanos.load(Ordering::Relaxed);
            let cpu = i.cpu.load(Ordering::Relaxed);
            let memory = i.memory.load(Ordering::Relaxed);
            let threshold = i.threshold.load(Ordering::Relaxed);
            let samples = i.samples.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if i.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            let (level, driver, value) = unpack(word);
            return PressureSnapshot {
                level,
                driver,
                value: value as f64,
                threshold: f64::from_bits(threshold),
                at: i.epoch + Duration::from_nanos(at),
                cpu: f64::from_bits(cpu),
                memory: f64::from_bits(memory),
                samples,
            };
        }
    }

    /// A receiver that sees every level change.
    pub fn subscribe(&self) -> watch::Receiver<PressureLevel> {
        self.inner.level_tx.subscribe()
    }

    /// The event bus this monitor reports level changes to; layers built with this monitor
    /// report to it too unless given another.
    pub fn events(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The latest value of `signal` (the first slot reporting it), if available.
    pub fn reading(&self, signal: Signal) -> Option<f64> {
        let i = &*self.inner;
        i.slots
            .iter()
            .zip(i.values.iter())
            .filter(|(m, _)| m.signal == signal)
            .map(|(_, v)| f64::from_bits(v.load(Ordering::Relaxed)))
            .find(|v| v.is_finite())
    }

    /// Every signal's latest reading (allocates; for status pages, not the request path).
    pub fn readings(&self) -> Vec<SignalReading> {
        let i = &*self.inner;
        let live = i.live_thresholds();
        i.slots
            .iter()
            .zip(i.values.iter())
            .zip(live.iter())
            .map(|((m, v), t)| {
                let value = finite(f64::from_bits(v.load(Ordering::Relaxed)));
                SignalReading {
                    signal: m.signal,
                    name: m.name.clone(),
                    source: m.source.clone(),
                    value,
                    thresholds: *t,
                    level: match (value, *t) {
                        (Some(v), Some(t)) => t.level_of(v),
                        _ => PressureLevel::Normal,
                    },
                }
            })
            .collect()
    }

    /// The name of a signal as this monitor knows it (custom gauges have user names).
    pub fn signal_name(&self, signal: Signal) -> Arc<str> {
        self.inner.signal_name(signal)
    }

    /// The thresholds configured for `signal`, if it is monitored and not observe-only.
    pub fn thresholds(&self, signal: Signal) -> Option<Thresholds> {
        let live = self.inner.live_thresholds();
        self.inner
            .slots
            .iter()
            .position(|m| m.signal == signal)
            .and_then(|i| live[i])
    }

    /// Replaces the thresholds of the built-in signals, as one change (the sampler sees the
    /// old table or the new one, never a mix): each signal in `table` gets its entry
    /// (`None`: observed only), every other built-in signal returns to its default. Custom
    /// gauges keep theirs. Signals this monitor does not read are ignored. The level and its
    /// hysteresis carry over; the next sample judges the readings by the new table.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `thresholds.<signal>.<level>` when a percent signal's
    /// threshold is above 100; nothing is changed then.
    ///
    /// ```
    /// use tower_pressure::pressure::{PressureMonitor, Signal, Thresholds};
    /// let (monitor, _manual) = PressureMonitor::manual();
    /// let t = Thresholds::new(10.0, 20.0, 30.0, 40.0)?;
    /// monitor.set_thresholds(&[(Signal::Manual, Some(t))])?;
    /// assert_eq!(monitor.thresholds(Signal::Manual), Some(t));
    /// monitor.set_thresholds(&[])?; // back to the default
    /// assert_eq!(monitor.thresholds(Signal::Manual), Some(Thresholds::UTILISATION));
    /// # Ok::<(), tower_pressure::ConfigError>(())
    /// ```
    pub fn set_thresholds(
        &self,
        table: &[(Signal, Option<Thresholds>)],
    ) -> Result<(), ConfigError> {
        for (signal, t) in table {
            if let (Some(t), true) = (t, signal.is_percent()) {
                t.check_percent(&format!("thresholds.{}", signal.as_str()))?;
            }
        }
        let i = &*self.inner;
        let psi_cpu = i
            .slots
            .iter()
            .any(|m| matches!(m.signal, Signal::PsiCpu | Signal::CgroupPsiCpu));
        let next: Box<[Option<Thresholds>]> = i
            .slots
            .iter()
            .zip(i.live_thresholds().iter())
            .map(|(m, current)| match m.signal {
                Signal::Custom(_) => *current,
                s => match table.iter().rev().find(|(x, _)| *x == s) {
                    Some((_, t)) => *t,
                    None if s == Signal::Cpu && psi_cpu => None,
                    None => default_thresholds(s),
                },
            })
            .collect();
        *i.live.lock().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// The recent level changes, oldest first (at most 64).
    pub fn level_history(&self) -> Vec<LevelChange> {
        match self.inner.history.lock() {
            Ok(h) => h.iter().cloned().collect(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        }
    }

    /// The sampling interval.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// Takes a sample right now, on the caller's thread, and publishes it. The sampler task
    /// does this every interval; tests and simulations call it directly.
    pub fn sample_now(&self) {
        self.inner.sample();
    }
}

impl Inner {
    fn live_thresholds(&self) -> Box<[Option<Thresholds>]> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn signal_name(&self, signal: Signal) -> Arc<str> {
        self.slots
            .iter()
            .find(|m| m.signal == signal)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| Arc::from(signal.as_str()))
    }

    fn sample(&self) {
        let mut guard = match self.sampler.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let sampler = &mut *guard;
        let live = self.live_thresholds();
        for mapped in sampler.sources.iter_mut() {
            sampler.buf.clear();
            sampler.buf.resize(mapped.slots.len(), f64::NAN);
            mapped.source.sample(&mut sampler.buf);
            for (value, slot) in sampler.buf.iter().zip(mapped.slots.iter()) {
                if let Some(slot) = slot {
                    self.values[*slot].store(value.to_bits(), Ordering::Relaxed);
                }
            }
        }

        // Raw and sticky levels over every thresholded signal, and the driver.
        let mut raw = PressureLevel::Normal;
        let mut sticky = PressureLevel::Normal;
        let mut driver: Option<(usize, PressureLevel, f64)> = None;
        let mut cpu = f64::NAN;
        let mut memory = f64::NAN;
        for (idx, meta) in self.slots.iter().enumerate() {
            let v = f64::from_bits(self.values[idx].load(Ordering::Relaxed));
            if meta.signal == Signal::Cpu && cpu.is_nan() {
                cpu = v;
            }
            if meta.signal == Signal::Memory && memory.is_nan() {
                memory = v;
            }
            let (Some(t), true) = (live[idx], v.is_finite()) else {
                continue;
            };
            let r = t.level_of(v);
            let s = t.sticky_level_of(v);
            raw = raw.max(r);
            sticky = sticky.max(s);
            let ratio = v / t
                .threshold(PressureLevel::Elevated)
                .unwrap_or(1.0)
                .max(f64::MIN_POSITIVE);
            let better = match driver {
                None => true,
                Some((_, ls, lr)) => (s, ratio) > (ls, lr),
            };
            if better {
                driver = Some((idx, s, ratio));
            }
        }
        let prev = sampler.tracker.level();
        let level = sampler.tracker.observe(raw, sticky);
        drop(guard);

        let (signal, value, threshold) = match driver {
            Some((idx, _, _)) => {
                let meta = &self.slots[idx];
                let v = f64::from_bits(self.values[idx].load(Ordering::Relaxed));
                let t = live[idx].and_then(|t| {
                    t.threshold(level)
                        .or_else(|| t.threshold(PressureLevel::Elevated))
                });
                (meta.signal, v, t.unwrap_or(f64::NAN))
            }
            None => (Signal::None, f64::NAN, f64::NAN),
        };
        let now = Instant::now();
        let at = now.saturating_duration_since(self.epoch).as_nanos() as u64;

        // Sequence-lock publication; see the module docs.
        self.seq.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.word
            .store(pack(level, signal, value), Ordering::Relaxed);
        self.at_nanos.store(at, Ordering::Relaxed);
        self.cpu.store(cpu.to_bits(), Ordering::Relaxed);
        self.memory.store(memory.to_bits(), Ordering::Relaxed);
        self.threshold.store(threshold.to_bits(), Ordering::Relaxed);
        self.samples.fetch_add(1, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);

        if level != prev {
            let signal_name = self.signal_name(signal);
            let change = LevelChange {
                from: prev,
                to: level,
                signal,
                signal_name: signal_name.clone(),
                value,
                at: now,
            };
            {
                let mut h = match self.history.lock() {
                    Ok(h) => h,
                    Err(p) => p.into_inner(),
                };
                if h.len() == HISTORY {
                    h.pop_front();
                }
                h.push_back(change);
            }
            self.level_tx.send_replace(level);
            self.bus.emit(Event::PressureChanged(PressureChanged {
                from: prev,
                to: level,
                signal,
                signal_name,
                value,
                threshold,
                at: now,
            }));
            if (prev == PressureLevel::Normal) != (level == PressureLevel::Normal) {
                self.bus.emit(Event::Degradation(DegradationEvent {
                    level,
                    active: level > PressureLevel::Normal,
                    at: now,
                }));
            }
        }
    }
}

/// Which built-in sources a monitor reads; see [`PressureMonitorBuilder`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BuiltinSources {
    pub(crate) system: bool,
    pub(crate) cgroup: bool,
    pub(crate) psi: bool,
    pub(crate) process: bool,
    pub(crate) runtime: bool,
}

/// Configures a [`PressureMonitor`].
///
/// Every built-in source is on by default; signals whose files do not exist on this host
/// are simply not reported. Thresholds default per signal (see [`Thresholds`]); CPU
/// utilisation is observed only when CPU PSI is available, because PSI tells a saturated
/// machine from an overloaded one and utilisation cannot.
pub struct PressureMonitorBuilder {
    interval: Duration,
    dwell: u32,
    builtin: BuiltinSources,
    thresholds: Vec<(Signal, Option<Thresholds>)>,
    manual: Vec<(Signal, ManualSource)>,
    gauges: Vec<(Arc<str>, Option<Thresholds>, GaugeFn)>,
    sources: Vec<Box<dyn Source>>,
    bus: Option<EventBus>,
    lag_probe_interval: Duration,
}

impl fmt::Debug for PressureMonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PressureMonitorBuilder")
            .field("interval", &self.interval)
            .field("dwell", &self.dwell)
            .field("builtin", &self.builtin)
            .field("thresholds", &self.thresholds)
            .field("manual", &self.manual.len())
            .field("gauges", &self.gauges.len())
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl Default for PressureMonitorBuilder {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            dwell: 2,
            builtin: BuiltinSources {
                system: true,
                cgroup: true,
                psi: true,
                process: true,
                runtime: true,
            },
            thresholds: Vec::new(),
            manual: Vec::new(),
            gauges: Vec::new(),
            sources: Vec::new(),
            bus: None,
            lag_probe_interval: Duration::from_millis(100),
        }
    }
}

/// The default thresholds of a built-in signal (`None`: observed only).
pub fn default_thresholds(signal: Signal) -> Option<Thresholds> {
    match signal {
        Signal::Cpu | Signal::Memory | Signal::Manual => Some(Thresholds::UTILISATION),
        Signal::PsiCpu | Signal::CgroupPsiCpu => Some(Thresholds::PSI_CPU),
        Signal::PsiMemory | Signal::CgroupPsiMemory => Some(Thresholds::PSI_MEMORY),
        Signal::PsiIo => Some(Thresholds::PSI_IO),
        Signal::SchedulingLag => Some(Thresholds::SCHEDULING_LAG_MS),
        _ => None,
    }
}

impl PressureMonitorBuilder {
    /// How often the sampler reads every source (default 1 s; more than zero and at most 1 day).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Samples a signal must stay below `threshold - margin` before the level steps down one
    /// level (default 2; must be >= 1).
    pub fn dwell(mut self, samples: u32) -> Self {
        self.dwell = samples;
        self
    }

    /// Sets the thresholds of `signal`, overriding its default.
    pub fn thresholds(mut self, signal: Signal, thresholds: Thresholds) -> Self {
        self.thresholds.push((signal, Some(thresholds)));
        self
    }

    /// Reads `signal` but never lets it drive the level.
    pub fn observe_only(mut self, signal: Signal) -> Self {
        self.thresholds.push((signal, None));
        self
    }

    /// Turns every built-in source off (system, cgroup, PSI, process, runtime); only manual
    /// sources, gauges and custom sources remain. Tests use this for deterministic levels.
    pub fn without_system_sources(mut self) -> Self {
        self.builtin = BuiltinSources {
            system: false,
            cgroup: false,
            psi: false,
            process: false,
            runtime: false,
        };
        self
    }

    /// Reads host CPU and memory through sysinfo (default on).
    pub fn system(mut self, on: bool) -> Self {
        self.builtin.system = on;
        self
    }

    /// Makes CPU and memory relative to the process's cgroup limits when set (default on).
    pub fn cgroup(mut self, on: bool) -> Self {
        self.builtin.cgroup = on;
        self
    }

    /// Reads Linux PSI, system-wide and the cgroup's own (default on).
    pub fn psi(mut self, on: bool) -> Self {
        self.builtin.psi = on;
        self
    }

    /// Reads the process's own RSS (default on, observed only).
    pub fn process(mut self, on: bool) -> Self {
        self.builtin.process = on;
        self
    }

    /// Reads tokio runtime metrics and runs the scheduling-lag probe (default on).
    pub fn runtime(mut self, on: bool) -> Self {
        self.builtin.runtime = on;
        self
    }

    /// How often the scheduling-lag probe task measures timer lateness (default 100 ms; more than
    /// zero and at most 1 day).
    pub fn lag_probe_interval(mut self, every: Duration) -> Self {
        self.lag_probe_interval = every;
        self
    }

    /// Feeds `signal` from a [`ManualSource`]; it replaces any built-in source of that signal.
    pub fn manual(mut self, signal: Signal, source: ManualSource) -> Self {
        self.manual.push((signal, source));
        self
    }

    /// Registers a custom gauge: `read` is called on the sampler task every interval; a
    /// non-finite result counts as "not available". `thresholds: None` observes it only.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use tower_pressure::pressure::{PressureMonitor, Thresholds};
    ///
    /// let queue = Arc::new(AtomicUsize::new(0));
    /// let q = queue.clone();
    /// let monitor = PressureMonitor::builder()
    ///     .without_system_sources()
    ///     .gauge("queue_depth", Some(Thresholds::new(100.0, 200.0, 400.0, 800.0)?), move || {
    ///         q.load(Ordering::Relaxed) as f64
    ///     })
    ///     .build()?;
    /// queue.store(250, Ordering::Relaxed);
    /// monitor.sample_now();
    /// assert_eq!(monitor.level(), tower_pressure::PressureLevel::High);
    /// # Ok(()) }
    /// ```
    pub fn gauge<F>(
        mut self,
        name: impl Into<Arc<str>>,
        thresholds: Option<Thresholds>,
        read: F,
    ) -> Self
    where
        F: Fn() -> f64 + Send + Sync + 'static,
    {
        self.gauges.push((name.into(), thresholds, Box::new(read)));
        self
    }

    /// Adds a user-written [`Source`]; its signals use their thresholds as configured here
    /// (or the defaults).
    pub fn source(mut self, source: impl Source) -> Self {
        self.sources.push(Box::new(source));
        self
    }

    /// Reports level changes to `bus` (default: a new bus, see [`PressureMonitor::events`]).
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Builds the monitor, takes a first sample, and starts the sampler task.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field, or field `runtime` when called outside a tokio
    /// runtime.
    pub fn build(self) -> Result<PressureMonitor, ConfigError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "runtime",
                "none",
                "PressureMonitor::build() must be called inside a tokio runtime (or use build_unstarted())",
            )
        })?;
        let interval = self.interval;
        let (stop_tx, stop_rx) = oneshot::channel();
        let monitor = self.build_inner(Some(stop_tx), Some(&handle))?;
        let weak = Arc::downgrade(&monitor.inner);
        handle.spawn(run_sampler(weak, interval, stop_rx));
        Ok(monitor)
    }

    /// Builds the monitor and takes a first sample without starting a sampler task: readings
    /// change only when [`PressureMonitor::sample_now`] is called. The runtime source's lag
    /// probe is not started either.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn build_unstarted(self) -> Result<PressureMonitor, ConfigError> {
        self.build_inner(None, None)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        crate::clock::check_period("interval", self.interval)?;
        crate::clock::check_period("lag_probe_interval", self.lag_probe_interval)?;
        if self.dwell == 0 {
            return Err(ConfigError::new(
                "dwell",
                self.dwell,
                "must be at least 1 sample",
            ));
        }
        for (signal, t) in &self.thresholds {
            if let (Some(t), true) = (t, signal.is_percent()) {
                t.check_percent(&format!("thresholds.{}", signal.as_str()))?;
            }
        }
        if self.gauges.len() > u16::MAX as usize - 64 {
            return Err(ConfigError::new(
                "gauges",
                self.gauges.len(),
                "too many gauges",
            ));
        }
        for (i, (name, _, _)) in self.gauges.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("gauges[{i}].name"),
                    &**name,
                    "must not be empty",
                ));
            }
            if self.gauges[..i].iter().any(|(n, _, _)| n == name) {
                return Err(ConfigError::new(
                    format!("gauges[{i}].name"),
                    &**name,
                    "duplicate gauge name",
                ));
            }
        }
        Ok(())
    }

    fn build_inner(
        self,
        stop: Option<oneshot::Sender<()>>,
        runtime: Option<&tokio::runtime::Handle>,
    ) -> Result<PressureMonitor, ConfigError> {
        self.validate()?;
        let overridden: Vec<Signal> = self.manual.iter().map(|(s, _)| *s).collect();

        let mut all: Vec<Box<dyn Source>> = Vec::new();
        let opts = sources::system::DefaultSourceOptions {
            builtin: self.builtin,
            runtime: runtime.cloned(),
            lag_probe_interval: self.lag_probe_interval,
        };
        let builtin_count;
        {
            let defaults = sources::system::default_sources(&opts);
            builtin_count = defaults.len();
            all.extend(defaults);
        }
        for (signal, source) in self.manual {
            all.push(Box::new(ManualFeed { signal, source }));
        }
        let mut gauge_thresholds = Vec::new();
        for (i, (name, t, read)) in self.gauges.into_iter().enumerate() {
            gauge_thresholds.push((Signal::Custom(i as u16), name.clone(), t));
            all.push(Box::new(GaugeSource {
                index: i as u16,
                name,
                read,
            }));
        }
        all.extend(self.sources);

        let claimed: Vec<Signal> = all.iter().flat_map(|s| s.signals()).collect();
        let psi_cpu = claimed.contains(&Signal::PsiCpu) || claimed.contains(&Signal::CgroupPsiCpu);
        let explicit = |s: Signal| {
            self.thresholds
                .iter()
                .rev()
                .find(|(x, _)| *x == s)
                .map(|(_, t)| *t)
        };

        let mut slots = Vec::new();
        let mut sources_mapped = Vec::new();
        for (si, source) in all.into_iter().enumerate() {
            let is_builtin = si < builtin_count;
            let source_name: Arc<str> = Arc::from(source.name());
            let mut map = Vec::new();
            for signal in source.signals() {
                if is_builtin && overridden.contains(&signal) {
                    map.push(None);
                    continue;
                }
                let (name, thresholds) = match signal {
                    Signal::Custom(i) => {
                        let (_, name, t) = gauge_thresholds
                            .iter()
                            .find(|(s, _, _)| *s == Signal::Custom(i))
                            .cloned()
                            .unwrap_or((signal, Arc::from("custom"), None));
                        (name, explicit(signal).unwrap_or(t))
                    }
                    Signal::Cpu if psi_cpu => {
                        (Arc::from(signal.as_str()), explicit(signal).unwrap_or(None))
                    }
                    _ => (
                        Arc::from(signal.as_str()),
                        explicit(signal).unwrap_or_else(|| default_thresholds(signal)),
                    ),
                };
                map.push(Some(slots.len()));
                slots.push(SlotMeta {
                    signal,
                    name,
                    source: source_name.clone(),
                    thresholds,
                });
            }
            sources_mapped.push(MappedSource { source, slots: map });
        }

        let values: Box<[AtomicU64]> = slots
            .iter()
            .map(|_| AtomicU64::new(f64::NAN.to_bits()))
            .collect();
        let (level_tx, _) = watch::channel(PressureLevel::Normal);
        let live: Box<[Option<Thresholds>]> = slots.iter().map(|m| m.thresholds).collect();
        let inner = Arc::new(Inner {
            live: Mutex::new(live),
            word: AtomicU64::new(pack(PressureLevel::Normal, Signal::None, f64::NAN)),
            seq: AtomicU64::new(0),
            at_nanos: AtomicU64::new(0),
            cpu: AtomicU64::new(f64::NAN.to_bits()),
            memory: AtomicU64::new(f64::NAN.to_bits()),
            threshold: AtomicU64::new(f64::NAN.to_bits()),
            samples: AtomicU64::new(0),
            epoch: Instant::now(),
            interval: self.interval,
            slots: slots.into_boxed_slice(),
            values,
            sampler: Mutex::new(Sampler {
                sources: sources_mapped,
                buf: Vec::new(),
                tracker: HysteresisTracker::new(self.dwell),
            }),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            level_tx,
            bus: self.bus.unwrap_or_default(),
            _stop: stop,
        });
        inner.sample();
        Ok(PressureMonitor { inner })
    }
}

async fn run_sampler(weak: Weak<Inner>, interval: Duration, mut stop: oneshot::Receiver<()>) {
    let mut ticker =
        tokio::time::interval_at(crate::clock::deadline(Instant::now(), interval), interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let Some(inner) = weak.upgrade() else { break };
                inner.sample();
            }
            _ = &mut stop => break,
        }
    }
    tracing::debug!(target: "tower_pressure::pressure", "pressure sampler stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual_monitor(dwell: u32) -> (PressureMonitor, ManualSource) {
        let m = ManualSource::new(0.0);
        let mon = PressureMonitor::builder()
            .without_system_sources()
            .dwell(dwell)
            .manual(Signal::Memory, m.clone())
            .build_unstarted()
            .unwrap();
        (mon, m)
    }

    #[test]
    fn pack_round_trip() {
        let w = pack(PressureLevel::High, Signal::PsiCpu, 42.5);
        assert_eq!(unpack(w), (PressureLevel::High, Signal::PsiCpu, 42.5));
    }

    #[test]
    fn validation_names_fields() {
        let e = PressureMonitor::builder()
            .dwell(0)
            .build_unstarted()
            .unwrap_err();
        assert_eq!(e.field(), "dwell");
        let e = PressureMonitor::builder()
            .thresholds(
                Signal::Memory,
                Thresholds::new(65.0, 75.0, 85.0, 120.0).unwrap(),
            )
            .build_unstarted()
            .unwrap_err();
        assert_eq!(e.field(), "thresholds.memory.emergency");
        let e = PressureMonitor::builder()
            .without_system_sources()
            .gauge("", None, || 1.0)
            .build_unstarted()
            .unwrap_err();
        assert_eq!(e.field(), "gauges[0].name");
        let e = PressureMonitor::builder().build().unwrap_err();
        assert_eq!(e.field(), "runtime");
    }

    #[test]
    fn snapshot_reports_driver_value_threshold() {
        let (mon, m) = manual_monitor(2);
        m.set(80.0);
        mon.sample_now();
        let s = mon.snapshot();
        assert_eq!(s.level(), PressureLevel::High);
        assert_eq!(s.driver(), Signal::Memory);
        assert_eq!(s.value(), 80.0);
        assert_eq!(s.threshold(), 75.0);
        assert_eq!(s.memory_percent(), Some(80.0));
        assert_eq!(s.cpu_percent(), None);
        assert_eq!(s.samples(), 2);
    }

    #[test]
    fn highest_signal_wins_and_gauges_named() {
        let cpu = ManualSource::new(70.0);
        let mon = PressureMonitor::builder()
            .without_system_sources()
            .manual(Signal::Cpu, cpu.clone())
            .gauge(
                "gpu_mem",
                Some(Thresholds::new(1.0, 2.0, 3.0, 4.0).unwrap()),
                || 3.5,
            )
            .build_unstarted()
            .unwrap();
        assert_eq!(mon.level(), PressureLevel::Critical);
        assert_eq!(mon.snapshot().driver(), Signal::Custom(0));
        assert_eq!(&*mon.signal_name(Signal::Custom(0)), "gpu_mem");
        assert_eq!(mon.readings().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn sampler_task_publishes_and_events_flow() {
        let m = ManualSource::new(10.0);
        let mon = PressureMonitor::builder()
            .without_system_sources()
            .manual(Signal::Memory, m.clone())
            .build()
            .unwrap();
        let mut rx = mon.subscribe();
        let mut events = mon.events().subscribe();
        m.set(96.0);
        tokio::time::sleep(Duration::from_millis(1001)).await;
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), PressureLevel::Emergency);
        match events.recv().await.unwrap() {
            Event::PressureChanged(e) => {
                assert_eq!(e.from, PressureLevel::Normal);
                assert_eq!(e.to, PressureLevel::Emergency);
                assert_eq!(e.signal, Signal::Memory);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Staged recovery: one level per 2 samples.
        m.set(10.0);
        let mut seen = Vec::new();
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            seen.push(mon.level());
        }
        use PressureLevel::*;
        assert_eq!(
            seen,
            [
                Emergency, Critical, Critical, High, High, Elevated, Elevated, Normal
            ]
        );
        assert_eq!(mon.level_history().len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_last_handle_stops_sampler() {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let mon = PressureMonitor::builder()
            .without_system_sources()
            .gauge("g", None, move || {
                c.fetch_add(1, Ordering::Relaxed);
                1.0
            })
            .build()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let before = calls.load(Ordering::Relaxed);
        assert_eq!(before, 4); // first sample at build + 3 ticks
        drop(mon);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(calls.load(Ordering::Relaxed), before);
    }
}
