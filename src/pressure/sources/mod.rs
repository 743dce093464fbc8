//! Where readings come from. Each [`Source`] reports one or more [`Signal`]s on every sample.
//!
//! Built-in sources: [`system`] (sysinfo CPU and memory, made relative to the cgroup's limits
//! by [`cgroup`]), [`psi`] (Linux pressure stall information), [`process`] (own RSS),
//! [`runtime`] (tokio runtime metrics and scheduling lag), custom gauges, and
//! [`ManualSource`].

pub mod cgroup;
pub mod process;
mod procfs;
pub mod psi;
pub mod runtime;
pub mod system;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Signal;

/// A producer of readings, sampled by the monitor's background task every interval.
///
/// Sampling runs off the request path, on the sampler task; it may read files but must not
/// block for long.
pub trait Source: Send + 'static {
    /// A name for logs and the status page, e.g. `"psi"`.
    fn name(&self) -> &str;

    /// The signals this source reports, in the order of `sample`'s output.
    fn signals(&self) -> Vec<Signal>;

    /// Takes one reading. `out[i]` receives the value of `signals()[i]`, or `f64::NAN` when it
    /// is not available right now (a file vanished, a first CPU sample has no delta yet).
    fn sample(&mut self, out: &mut [f64]);
}

/// A signal value set by hand: for tests, for simulations, and for users who compute
/// pressure themselves. Cheap to clone; clones share the value.
///
/// ```
/// use tower_pressure::pressure::ManualSource;
/// let m = ManualSource::new(10.0);
/// m.set(90.0);
/// assert_eq!(m.get(), 90.0);
/// ```
#[derive(Clone)]
pub struct ManualSource {
    value: Arc<AtomicU64>,
}

impl fmt::Debug for ManualSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualSource")
            .field("value", &self.get())
            .finish()
    }
}

impl Default for ManualSource {
    fn default() -> Self {
        Self::new(0.0)
    }
}

impl ManualSource {
    /// A source starting at `value`.
    pub fn new(value: f64) -> Self {
        Self {
            value: Arc::new(AtomicU64::new(value.to_bits())),
        }
    }

    /// Sets the value the next sample will read. NaN means "not available".
    pub fn set(&self, value: f64) {
        self.value.store(value.to_bits(), Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.value.load(Ordering::Relaxed))
    }
}

pub(crate) struct ManualFeed {
    pub(crate) signal: Signal,
    pub(crate) source: ManualSource,
}

impl Source for ManualFeed {
    fn name(&self) -> &str {
        "manual"
    }
    fn signals(&self) -> Vec<Signal> {
        vec![self.signal]
    }
    fn sample(&mut self, out: &mut [f64]) {
        out[0] = self.source.get();
    }
}

pub(crate) type GaugeFn = Box<dyn Fn() -> f64 + Send + Sync + 'static>;

pub(crate) struct GaugeSource {
    pub(crate) index: u16,
    pub(crate) name: Arc<str>,
    pub(crate) read: GaugeFn,
}

impl Source for GaugeSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn signals(&self) -> Vec<Signal> {
        vec![Signal::Custom(self.index)]
    }
    fn sample(&mut self, out: &mut [f64]) {
        let v = (self.read)();
        out[0] = if v.is_finite() { v } else { f64::NAN };
    }
}
