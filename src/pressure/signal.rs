//! The signals a [`PressureMonitor`](super::PressureMonitor) can read.

use std::fmt;

/// One pressure signal. Percentages are `0..=100`; other units are named per variant.
///
/// ```
/// use tower_pressure::pressure::Signal;
/// assert_eq!(Signal::PsiCpu.as_str(), "psi_cpu");
/// assert!(Signal::Memory.is_percent());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Signal {
    /// No signal (the level is `Normal` and nothing drives it).
    None,
    /// CPU utilisation in % of the CPU available to the process: the cgroup quota when one
    /// is set (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), else all host CPUs (sysinfo).
    Cpu,
    /// Memory in use in % of the memory available: the cgroup's working set (usage minus
    /// inactive file cache, as the kubelet counts it) against its limit when one is set, else
    /// host used memory against host total (sysinfo).
    Memory,
    /// Memory in use in bytes (same source as [`Signal::Memory`]). Observed only by default.
    MemoryBytes,
    /// System-wide CPU pressure stall, `/proc/pressure/cpu` `some avg10` (%).
    PsiCpu,
    /// System-wide memory pressure stall, `/proc/pressure/memory` `some avg10` (%).
    PsiMemory,
    /// System-wide IO pressure stall, `/proc/pressure/io` `some avg10` (%).
    PsiIo,
    /// The cgroup's own `cpu.pressure` `some avg10` (%), cgroup v2 only.
    CgroupPsiCpu,
    /// The cgroup's own `memory.pressure` `some avg10` (%), cgroup v2 only.
    CgroupPsiMemory,
    /// The process's resident set size in bytes (`VmRSS`). Observed only by default.
    ProcessRss,
    /// How late a periodic tokio timer fires, in milliseconds: executor overload.
    SchedulingLag,
    /// Tasks waiting in the tokio runtime's global queue. Observed only by default.
    RuntimeGlobalQueue,
    /// Tasks alive in the tokio runtime. Observed only by default.
    RuntimeAliveTasks,
    /// A value set by hand through a [`ManualSource`](super::ManualSource) (%).
    Manual,
    /// A custom gauge registered with the builder; the index is the registration order.
    Custom(u16),
}

impl Signal {
    /// Every built-in signal (custom gauges excluded).
    pub const BUILTIN: [Signal; 13] = [
        Signal::Cpu,
        Signal::Memory,
        Signal::MemoryBytes,
        Signal::PsiCpu,
        Signal::PsiMemory,
        Signal::PsiIo,
        Signal::CgroupPsiCpu,
        Signal::CgroupPsiMemory,
        Signal::ProcessRss,
        Signal::SchedulingLag,
        Signal::RuntimeGlobalQueue,
        Signal::RuntimeAliveTasks,
        Signal::Manual,
    ];

    /// A stable snake_case name (`"custom"` for custom gauges; the monitor knows their names).
    pub const fn as_str(self) -> &'static str {
        match self {
            Signal::None => "none",
            Signal::Cpu => "cpu",
            Signal::Memory => "memory",
            Signal::MemoryBytes => "memory_bytes",
            Signal::PsiCpu => "psi_cpu",
            Signal::PsiMemory => "psi_memory",
            Signal::PsiIo => "psi_io",
            Signal::CgroupPsiCpu => "cgroup_psi_cpu",
            Signal::CgroupPsiMemory => "cgroup_psi_memory",
            Signal::ProcessRss => "process_rss",
            Signal::SchedulingLag => "scheduling_lag_ms",
            Signal::RuntimeGlobalQueue => "runtime_global_queue",
            Signal::RuntimeAliveTasks => "runtime_alive_tasks",
            Signal::Manual => "manual",
            Signal::Custom(_) => "custom",
        }
    }

    /// `true` for signals measured in percent (thresholds must be within `0..=100`).
    pub const fn is_percent(self) -> bool {
        matches!(
            self,
            Signal::Cpu
                | Signal::Memory
                | Signal::PsiCpu
                | Signal::PsiMemory
                | Signal::PsiIo
                | Signal::CgroupPsiCpu
                | Signal::CgroupPsiMemory
                | Signal::Manual
        )
    }

    /// Compact code used in the monitor's atomic state word.
    pub(crate) const fn code(self) -> u16 {
        match self {
            Signal::None => 0,
            Signal::Cpu => 1,
            Signal::Memory => 2,
            Signal::MemoryBytes => 3,
            Signal::PsiCpu => 4,
            Signal::PsiMemory => 5,
            Signal::PsiIo => 6,
            Signal::CgroupPsiCpu => 7,
            Signal::CgroupPsiMemory => 8,
            Signal::ProcessRss => 9,
            Signal::SchedulingLag => 10,
            Signal::RuntimeGlobalQueue => 11,
            Signal::RuntimeAliveTasks => 12,
            Signal::Manual => 13,
            Signal::Custom(i) => 64u16.saturating_add(i),
        }
    }

    pub(crate) const fn from_code(code: u16) -> Signal {
        match code {
            1 => Signal::Cpu,
            2 => Signal::Memory,
            3 => Signal::MemoryBytes,
            4 => Signal::PsiCpu,
            5 => Signal::PsiMemory,
            6 => Signal::PsiIo,
            7 => Signal::CgroupPsiCpu,
            8 => Signal::CgroupPsiMemory,
            9 => Signal::ProcessRss,
            10 => Signal::SchedulingLag,
            11 => Signal::RuntimeGlobalQueue,
            12 => Signal::RuntimeAliveTasks,
            13 => Signal::Manual,
            c if c >= 64 => Signal::Custom(c - 64),
            _ => Signal::None,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::Custom(i) => write!(f, "custom#{i}"),
            s => f.write_str(s.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in Signal::BUILTIN {
            assert_eq!(Signal::from_code(s.code()), s);
        }
        assert_eq!(
            Signal::from_code(Signal::Custom(7).code()),
            Signal::Custom(7)
        );
        assert_eq!(Signal::from_code(Signal::None.code()), Signal::None);
    }
}
