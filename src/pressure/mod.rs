//! The shared pressure monitor: readings, levels, thresholds and hysteresis.
//!
//! # Why PSI is the default CPU signal
//!
//! CPU *utilisation* saturates: on a 2-core machine sysinfo reports 100 % whether 2, 4 or 8
//! threads compete for the cores, so it cannot tell "busy" from "overloaded". Linux pressure
//! stall information (`/proc/pressure/cpu`, `some avg10`: the share of the last 10 s in which
//! at least one runnable task waited for a CPU) keeps rising with the run queue: measured on
//! these machines at 1.3, 33.8 and 55.3 for 2, 4 and 8 busy threads. When the PSI files
//! exist the monitor therefore lets CPU PSI drive the level and observes utilisation only
//! (set explicit CPU thresholds to change that); where they do not exist, utilisation is used.

mod level;
mod monitor;
mod signal;
pub mod sources;

pub use level::{HysteresisTracker, PressureLevel, Thresholds};
pub(crate) use monitor::BuiltinSources;
pub use monitor::{
    LevelChange, PressureMonitor, PressureMonitorBuilder, PressureSnapshot, SignalReading,
    default_thresholds,
};
pub use signal::Signal;
pub use sources::{ManualSource, Source};
