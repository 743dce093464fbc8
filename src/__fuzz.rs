//! Entry points for the fuzz targets (`fuzz/`) and the parser property tests
//! (`tests/bad_input.rs`): thin wrappers around the crate-private procfs / cgroupfs / PSI
//! parsers. Not part of the public API; may change at any time.

use crate::pressure::sources::{cgroup, process, psi};

/// `some avg10` of a PSI file (`/proc/pressure/*`, `<cgroup>/cpu.pressure`).
///
/// # Errors
/// The parse error, naming the file kind and line.
pub fn psi_some_avg10(s: &str) -> Result<f64, String> {
    psi::parse_some_avg10(s).map_err(|e| e.to_string())
}

/// `/proc/self/cgroup`: the number of lines parsed.
///
/// # Errors
/// The parse error, naming the file kind and line.
pub fn proc_cgroup(s: &str) -> Result<usize, String> {
    cgroup::parse_proc_cgroup(s)
        .map(|v| v.len())
        .map_err(|e| e.to_string())
}

/// `/proc/self/mountinfo`: the number of cgroup mounts found.
///
/// # Errors
/// The parse error, naming the file kind and line.
pub fn mountinfo(s: &str) -> Result<usize, String> {
    cgroup::parse_mountinfo(s)
        .map(|v| v.len())
        .map_err(|e| e.to_string())
}

/// cgroup v2 `memory.max` (`None`: "max").
///
/// # Errors
/// The parse error, naming the file.
pub fn memory_max(s: &str) -> Result<Option<u64>, String> {
    cgroup::parse_memory_max(s).map_err(|e| e.to_string())
}

/// cgroup v1 `memory.limit_in_bytes` (`None`: unlimited).
///
/// # Errors
/// The parse error, naming the file.
pub fn v1_memory_limit(s: &str) -> Result<Option<u64>, String> {
    cgroup::parse_v1_memory_limit(s).map_err(|e| e.to_string())
}

/// `memory.stat`'s inactive file bytes, v1 (`v2 == false`) or v2 layout.
///
/// # Errors
/// The parse error, naming the file and line.
pub fn inactive_file(s: &str, v2: bool) -> Result<Option<u64>, String> {
    let version = if v2 {
        cgroup::Version::V2
    } else {
        cgroup::Version::V1
    };
    cgroup::parse_inactive_file(s, version).map_err(|e| e.to_string())
}

/// cgroup v2 `cpu.max` as cores (`None`: "max").
///
/// # Errors
/// The parse error, naming the file.
pub fn cpu_max(s: &str) -> Result<Option<f64>, String> {
    cgroup::parse_cpu_max(s).map_err(|e| e.to_string())
}

/// cgroup v2 `cpu.stat`'s `usage_usec`.
///
/// # Errors
/// The parse error, naming the file and line.
pub fn cpu_stat_usage(s: &str) -> Result<u64, String> {
    cgroup::parse_cpu_stat_usage(s).map_err(|e| e.to_string())
}

/// cgroup v1 `cpuacct.usage`.
///
/// # Errors
/// The parse error, naming the file.
pub fn cpuacct_usage(s: &str) -> Result<u64, String> {
    cgroup::parse_cpuacct_usage(s).map_err(|e| e.to_string())
}

/// `VmRSS` of `/proc/self/status`, in bytes.
///
/// # Errors
/// The parse error, naming the file and line.
pub fn vm_rss(s: &str) -> Result<u64, String> {
    process::parse_vm_rss(s).map_err(|e| e.to_string())
}
