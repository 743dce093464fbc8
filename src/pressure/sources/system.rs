//! CPU and memory utilisation, relative to the cgroup's limits when set, else the host's.
//!
//! One source, `CpuMemorySource`, reports [`Signal::Cpu`], [`Signal::Memory`] and
//! [`Signal::MemoryBytes`]. Per signal and per sample it prefers the process's
//! [cgroup](super::cgroup):
//!
//! - **CPU**: with a quota (`cpu.max` / `cpu.cfs_quota_us`), usage relative to the quota;
//!   without one, host-wide utilisation from sysinfo (`refresh_cpu_usage`, about 75 µs, only
//!   done when needed). The first sample of either has no delta and reads NaN.
//! - **Memory**: with a limit, the cgroup working set (usage minus inactive file cache)
//!   relative to the limit; without one, host used memory (total minus available) relative to
//!   host total, from sysinfo's `refresh_memory`.
//!
//! sysinfo refreshes only CPU usage and memory, never the process list. A limit at or above
//! the host's resources counts as no limit, and a limit that appears or disappears at runtime
//! (in-place pod resize) is picked up on the next sample, because the limit files are re-read
//! too.
//!
//! `default_sources` assembles every built-in source the builder enabled that is available on
//! this host: this one, [PSI](super::psi), [process RSS](super::process) and the
//! [tokio runtime](super::runtime).

use std::time::Duration;

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use super::Source;
use super::cgroup::{Cgroup, CpuReading, MemoryReading};
use super::process::ProcessSource;
use super::psi::PsiSource;
use super::runtime::RuntimeSource;
use crate::pressure::{BuiltinSources, Signal};

/// What the builder asks of the built-in sources.
#[derive(Debug, Clone)]
pub(crate) struct DefaultSourceOptions {
    pub(crate) builtin: BuiltinSources,
    /// The runtime to spawn the lag probe on (`None` for an unstarted monitor).
    pub(crate) runtime: Option<tokio::runtime::Handle>,
    pub(crate) lag_probe_interval: Duration,
}

/// The built-in sources enabled in `opts` that are available on this host.
pub(crate) fn default_sources(opts: &DefaultSourceOptions) -> Vec<Box<dyn Source>> {
    let b = opts.builtin;
    let mut out: Vec<Box<dyn Source>> = Vec::new();

    // The cgroup is discovered when either cgroup limits or cgroup PSI may be read.
    let cgroup = if b.cgroup {
        Cgroup::discover(host_memory(), host_cpus())
    } else {
        None
    };
    let unified = cgroup
        .as_ref()
        .and_then(|c| c.unified_dir().map(ToOwned::to_owned));
    if let Some(s) = CpuMemorySource::new(b.system, cgroup) {
        out.push(Box::new(s));
    }
    if b.psi {
        // The cgroup's own PSI files only when cgroup reading is enabled.
        if let Some(s) = PsiSource::new(unified.as_deref().filter(|_| b.cgroup)) {
            out.push(Box::new(s));
        }
    }
    if b.process
        && let Some(s) = ProcessSource::new()
    {
        out.push(Box::new(s));
    }
    if b.runtime
        && let Some(rt) = &opts.runtime
    {
        out.push(Box::new(RuntimeSource::spawn(rt, opts.lag_probe_interval)));
    }
    out
}

/// Host memory in bytes, once at build time (a limit at or above it is no limit).
fn host_memory() -> Option<u64> {
    let sys = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    Some(sys.total_memory()).filter(|m| *m > 0)
}

/// The CPUs this process may run on (affinity; std also caps it by the cgroup quota, rounded
/// up, which never lowers a quota below itself).
fn host_cpus() -> Option<f64> {
    std::thread::available_parallelism()
        .ok()
        .map(|n| n.get() as f64)
}

/// Host figures through sysinfo.
struct Host {
    sys: System,
    /// `false` until the first CPU refresh: that one has no delta.
    cpu_primed: bool,
}

impl Host {
    fn new() -> Host {
        Host {
            sys: System::new_with_specifics(RefreshKind::nothing()),
            cpu_primed: false,
        }
    }

    fn cpu_percent(&mut self) -> f64 {
        self.sys
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        if !std::mem::replace(&mut self.cpu_primed, true) {
            return f64::NAN;
        }
        let v = f64::from(self.sys.global_cpu_usage());
        if v.is_finite() {
            v.clamp(0.0, 100.0)
        } else {
            f64::NAN
        }
    }

    /// (percent, bytes) of host memory in use.
    fn memory(&mut self) -> (f64, f64) {
        self.sys
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let total = self.sys.total_memory();
        if total == 0 {
            return (f64::NAN, f64::NAN);
        }
        let used = self.sys.used_memory();
        (
            (used as f64 / total as f64 * 100.0).clamp(0.0, 100.0),
            used as f64,
        )
    }
}

/// CPU and memory, per signal from the cgroup when it has a limit, else from the host.
/// See the [module docs](self).
pub(crate) struct CpuMemorySource {
    name: String,
    host: Option<Host>,
    cgroup: Option<Cgroup>,
    signals: Vec<Signal>,
}

impl std::fmt::Debug for CpuMemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuMemorySource")
            .field("name", &self.name)
            .field("cgroup", &self.cgroup)
            .finish()
    }
}

impl CpuMemorySource {
    /// `None` when there is nothing to read: sysinfo off and no cgroup files.
    pub(crate) fn new(host: bool, cgroup: Option<Cgroup>) -> Option<CpuMemorySource> {
        let host = host.then(Host::new);
        let cpu = host.is_some() || cgroup.as_ref().is_some_and(Cgroup::has_cpu);
        let memory = host.is_some() || cgroup.as_ref().is_some_and(Cgroup::has_memory);
        let mut signals = Vec::new();
        if cpu {
            signals.push(Signal::Cpu);
        }
        if memory {
            signals.extend([Signal::Memory, Signal::MemoryBytes]);
        }
        if signals.is_empty() {
            return None;
        }
        let name = match (&cgroup, &host) {
            (Some(c), Some(_)) => format!("{}, else sysinfo", c.describe()),
            (Some(c), None) => c.describe(),
            (None, _) => "sysinfo".to_owned(),
        };
        Some(CpuMemorySource {
            name,
            host,
            cgroup,
            signals,
        })
    }

    /// (cpu %, memory %, memory bytes); NaN where not available.
    fn read(&mut self) -> (f64, f64, f64) {
        let cpu = match self
            .cgroup
            .as_mut()
            .map(|c| c.read_cpu(std::time::Instant::now()))
        {
            Some(CpuReading::Limited { percent, .. }) => percent,
            _ => self.host.as_mut().map_or(f64::NAN, Host::cpu_percent),
        };
        let (memory, bytes) = match self.cgroup.as_mut().map(Cgroup::read_memory) {
            Some(MemoryReading::Limited { working_set, limit }) => (
                (working_set as f64 / limit as f64 * 100.0).clamp(0.0, 100.0),
                working_set as f64,
            ),
            _ => self
                .host
                .as_mut()
                .map_or((f64::NAN, f64::NAN), Host::memory),
        };
        (cpu, memory, bytes)
    }
}

impl Source for CpuMemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn signals(&self) -> Vec<Signal> {
        self.signals.clone()
    }

    fn sample(&mut self, out: &mut [f64]) {
        let (cpu, memory, bytes) = self.read();
        for (signal, slot) in self.signals.iter().zip(out.iter_mut()) {
            *slot = match signal {
                Signal::Cpu => cpu,
                Signal::Memory => memory,
                Signal::MemoryBytes => bytes,
                _ => f64::NAN,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_on() -> BuiltinSources {
        BuiltinSources {
            system: true,
            cgroup: true,
            psi: true,
            process: true,
            runtime: true,
        }
    }

    #[test]
    fn host_source_is_in_range_and_first_cpu_is_nan() {
        let mut s = CpuMemorySource::new(true, None).unwrap();
        assert_eq!(s.name(), "sysinfo");
        assert_eq!(
            s.signals(),
            [Signal::Cpu, Signal::Memory, Signal::MemoryBytes]
        );
        let mut out = [0.0; 3];
        s.sample(&mut out);
        assert!(out[0].is_nan(), "first CPU sample has no delta");
        assert!((0.0..=100.0).contains(&out[1]), "{out:?}");
        assert!(out[2] > 0.0);
        // The second has a delta (maybe too short to be meaningful: NaN is allowed, no sleep).
        s.sample(&mut out);
        assert!(
            out[0].is_nan() || (0.0..=100.0).contains(&out[0]),
            "{out:?}"
        );
    }

    #[test]
    fn nothing_enabled_means_no_source() {
        assert!(CpuMemorySource::new(false, None).is_none());
        let opts = DefaultSourceOptions {
            builtin: BuiltinSources {
                system: false,
                cgroup: false,
                psi: false,
                process: false,
                runtime: false,
            },
            runtime: None,
            lag_probe_interval: Duration::from_millis(100),
        };
        assert!(default_sources(&opts).is_empty());
    }

    #[test]
    fn unstarted_defaults_have_no_runtime_source() {
        let opts = DefaultSourceOptions {
            builtin: all_on(),
            runtime: None,
            lag_probe_interval: Duration::from_millis(100),
        };
        let signals: Vec<Signal> = default_sources(&opts)
            .iter()
            .flat_map(|s| s.signals())
            .collect();
        assert!(signals.contains(&Signal::Memory));
        assert!(!signals.contains(&Signal::SchedulingLag));
        #[cfg(target_os = "linux")]
        assert!(signals.contains(&Signal::ProcessRss));
    }
}
