//! The process's own cgroup: CPU quota and memory limit, read by hand.
//!
//! In a container (a Kubernetes pod, a systemd slice) the numbers that matter are the
//! cgroup's, not the host's: a pod limited to 1 CPU and 512 MiB is overloaded at 1 busy core
//! and 500 MiB even on a 64-core, 256 GiB node. sysinfo's figures are host-wide and its
//! `cgroup_limits()` knows no CPU quota, so this module reads the files itself:
//!
//! | | cgroup v2 | cgroup v1 |
//! |---|---|---|
//! | memory usage | `memory.current` | `memory.usage_in_bytes` |
//! | memory limit | `memory.max` (`max` = none) | `memory.limit_in_bytes` (huge = none) |
//! | inactive file cache | `memory.stat` `inactive_file` | `memory.stat` `total_inactive_file` (else `inactive_file`) |
//! | CPU quota | `cpu.max` (`max 100000` = none) | `cpu.cfs_quota_us` (`-1` = none) / `cpu.cfs_period_us` |
//! | CPU used | `cpu.stat` `usage_usec` | `cpuacct.usage` (ns) |
//!
//! # Finding the files
//!
//! `/proc/self/cgroup` names the process's cgroup per hierarchy (`4:memory:/kubepods/...`
//! for v1, `0::/...` for v2) and `/proc/self/mountinfo` says where each hierarchy is mounted
//! and which part of it the mount shows (its *root*, not `/` inside containers without a
//! cgroup namespace). The directory is the mount point joined with the cgroup path made
//! relative to that root. Each controller is looked up on its own, preferring a v1 hierarchy
//! when one carries it: *hybrid* hosts mount v1 controllers next to an (empty) v2 hierarchy,
//! as these machines do for memory and CPU.
//!
//! # What is reported
//!
//! - Memory in use is the **working set** as the kubelet counts it, usage minus inactive file
//!   cache (saturating at zero): page cache the kernel can drop at will is not pressure.
//! - CPU % is `Δ usage / (Δ wall time × quota cores)`, the quota capped by the CPUs the
//!   process may run on. The first sample has no delta and reads NaN.
//! - A limit only counts when set: no quota, `max`, a v1 "unlimited" value, or a memory limit
//!   at or above host memory all fall back to host figures (see [`super::system`]).
//!
//! Only the process's own cgroup is read, not its ancestors': container runtimes put the
//! limits on the container's cgroup itself. Files are opened once and re-read from offset 0
//! each sample. Parsers are pure functions over `&str` returning a parse error, so malformed
//! input is an error, never a panic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::procfs::{KeptFile, ParseError, flat_keyed, parse_u64};

/// v1 limits at or above this mean "no limit" (v1 writes `i64::MAX` rounded down to a page,
/// 9223372036854771712; some kernels use `u64::MAX`-like values).
const V1_UNLIMITED: u64 = 1 << 62;

/// Which cgroup hierarchy version a controller was found on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

impl Version {
    fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// One line of `/proc/self/cgroup`: `hierarchy-id:controller,list:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupLine<'a> {
    pub(crate) id: u32,
    /// Empty for the v2 hierarchy (`0::/path`).
    pub(crate) controllers: Vec<&'a str>,
    pub(crate) path: &'a str,
}

/// Parses `/proc/self/cgroup`.
pub(crate) fn parse_proc_cgroup(s: &str) -> Result<Vec<CgroupLine<'_>>, ParseError> {
    const FILE: &str = "/proc/self/cgroup";
    let mut out = Vec::new();
    for (i, line) in s.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // The path may itself contain ':', so split into at most three fields.
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (it.next(), it.next(), it.next()) else {
            return Err(ParseError::at(
                FILE,
                i + 1,
                "expected `id:controllers:path`",
            ));
        };
        let id = id
            .parse::<u32>()
            .map_err(|_| ParseError::at(FILE, i + 1, "hierarchy id is not a number"))?;
        if !path.starts_with('/') {
            return Err(ParseError::at(FILE, i + 1, "cgroup path is not absolute"));
        }
        let controllers = if controllers.is_empty() {
            Vec::new()
        } else {
            controllers.split(',').collect()
        };
        out.push(CgroupLine {
            id,
            controllers,
            path,
        });
    }
    if out.is_empty() {
        return Err(ParseError::new(FILE, "no cgroup lines"));
    }
    Ok(out)
}

/// A cgroup mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    pub(crate) version: Version,
    /// The part of the hierarchy this mount shows (`/` unless a container sees a subtree).
    pub(crate) root: String,
    pub(crate) mount_point: String,
    /// v1: the controllers of the hierarchy (from the super options), e.g. `["rw", "cpu"]`.
    pub(crate) options: Vec<String>,
}

/// Parses `/proc/self/mountinfo`, keeping only `cgroup` and `cgroup2` mounts.
///
/// Line format (proc(5)): `id parent major:minor root mount-point options [optional...] -
/// fstype source super-options`, with spaces and backslashes in paths escaped as octal.
pub(crate) fn parse_mountinfo(s: &str) -> Result<Vec<CgroupMount>, ParseError> {
    const FILE: &str = "/proc/self/mountinfo";
    let mut out = Vec::new();
    for (i, line) in s.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            return Err(ParseError::at(FILE, i + 1, "missing ` - ` separator"));
        };
        if sep < 6 || fields.len() < sep + 3 {
            return Err(ParseError::at(FILE, i + 1, "too few fields"));
        }
        let version = match fields[sep + 1] {
            "cgroup" => Version::V1,
            "cgroup2" => Version::V2,
            _ => continue,
        };
        // `sep >= 6` was checked above, so fields 3 and 4 exist.
        let root = unescape(fields[3]).ok_or(ParseError::at(FILE, i + 1, "bad escape in root"))?;
        let mount_point =
            unescape(fields[4]).ok_or(ParseError::at(FILE, i + 1, "bad escape in mount point"))?;
        let options = fields[sep + 3].split(',').map(str::to_owned).collect();
        out.push(CgroupMount {
            version,
            root,
            mount_point,
            options,
        });
    }
    Ok(out)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash).
fn unescape(s: &str) -> Option<String> {
    if !s.contains('\\') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let oct = bytes.get(i + 1..i + 4)?;
            let mut v: u32 = 0;
            for &d in oct {
                if !(b'0'..=b'7').contains(&d) {
                    return None;
                }
                v = v * 8 + u32::from(d - b'0');
            }
            out.push(u8::try_from(v).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where the process's cgroup directories are, per controller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CgroupDirs {
    /// The v1 `memory` hierarchy's directory, if memory is on v1.
    pub(crate) memory_v1: Option<PathBuf>,
    /// The v1 `cpu` hierarchy's directory (quota), if CPU is on v1.
    pub(crate) cpu_v1: Option<PathBuf>,
    /// The v1 `cpuacct` hierarchy's directory (usage).
    pub(crate) cpuacct_v1: Option<PathBuf>,
    /// The v2 (unified) directory, if a v2 hierarchy is mounted.
    pub(crate) unified: Option<PathBuf>,
}

/// Resolves the directories from the two files' contents. `prefix` is prepended to every
/// mount point (`/` on a real host; a fixture directory in tests).
pub(crate) fn resolve(
    proc_cgroup: &str,
    mountinfo: &str,
    prefix: &Path,
) -> Result<CgroupDirs, ParseError> {
    let lines = parse_proc_cgroup(proc_cgroup)?;
    let mounts = parse_mountinfo(mountinfo)?;
    let v1 = |controller: &str| -> Option<PathBuf> {
        let line = lines
            .iter()
            .find(|l| l.id != 0 && l.controllers.contains(&controller))?;
        let candidates = mounts
            .iter()
            .filter(|m| m.version == Version::V1 && m.options.iter().any(|o| o == controller));
        dir_for(candidates, line.path, prefix)
    };
    let unified = lines
        .iter()
        .find(|l| l.id == 0 && l.controllers.is_empty())
        .and_then(|line| {
            dir_for(
                mounts.iter().filter(|m| m.version == Version::V2),
                line.path,
                prefix,
            )
        });
    Ok(CgroupDirs {
        memory_v1: v1("memory"),
        cpu_v1: v1("cpu"),
        cpuacct_v1: v1("cpuacct"),
        unified,
    })
}

/// The directory of cgroup `path` under the best of `mounts`: one whose root contains the
/// path (the path relative to that root), else the first mount as is (a cgroup namespace or a
/// container that sees only its own subtree).
fn dir_for<'m>(
    mounts: impl Iterator<Item = &'m CgroupMount> + Clone,
    path: &str,
    prefix: &Path,
) -> Option<PathBuf> {
    let under = |m: &CgroupMount| -> Option<PathBuf> {
        let root = m.root.trim_end_matches('/');
        let rel = path.strip_prefix(root)?;
        if !(rel.is_empty() || rel.starts_with('/')) {
            return None; // `/a` is not a prefix of `/ab`
        }
        Some(join(prefix, &m.mount_point).join(rel.trim_start_matches('/')))
    };
    mounts.clone().find_map(under).or_else(|| {
        mounts
            .into_iter()
            .next()
            .map(|m| join(prefix, &m.mount_point))
    })
}

fn join(prefix: &Path, mount_point: &str) -> PathBuf {
    prefix.join(mount_point.trim_start_matches('/'))
}

/// `memory.max`: `max` means no limit.
pub(crate) fn parse_memory_max(s: &str) -> Result<Option<u64>, ParseError> {
    if s.trim() == "max" {
        return Ok(None);
    }
    parse_u64("memory.max", s).map(Some)
}

/// `memory.limit_in_bytes`: huge values (`9223372036854771712`) mean no limit.
pub(crate) fn parse_v1_memory_limit(s: &str) -> Result<Option<u64>, ParseError> {
    let v = parse_u64("memory.limit_in_bytes", s)?;
    Ok((v < V1_UNLIMITED).then_some(v))
}

/// `inactive_file` from `memory.stat` (v1 prefers the hierarchical `total_inactive_file`).
pub(crate) fn parse_inactive_file(s: &str, version: Version) -> Result<Option<u64>, ParseError> {
    if version == Version::V1
        && let Some(v) = flat_keyed("memory.stat", s, "total_inactive_file")?
    {
        return Ok(Some(v));
    }
    flat_keyed("memory.stat", s, "inactive_file")
}

/// The working set: usage minus inactive file cache, saturating at zero.
pub(crate) fn working_set(usage: u64, inactive_file: Option<u64>) -> u64 {
    usage.saturating_sub(inactive_file.unwrap_or(0))
}

/// `cpu.max` (`$QUOTA $PERIOD` in µs, `max` for no quota) as cores.
pub(crate) fn parse_cpu_max(s: &str) -> Result<Option<f64>, ParseError> {
    const FILE: &str = "cpu.max";
    let mut it = s.split_ascii_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some("max"), _, None) => Ok(None),
        (Some(quota), Some(period), None) => {
            let quota = parse_u64(FILE, quota)?;
            let period = parse_u64(FILE, period)?;
            cores(FILE, quota, period).map(Some)
        }
        _ => Err(ParseError::new(FILE, "expected `quota period`")),
    }
}

/// `cpu.cfs_quota_us` and `cpu.cfs_period_us` as cores; a quota of `-1` means none. (The
/// reader parses the two files one after the other with the helpers below.)
#[cfg(test)]
pub(crate) fn parse_cfs(quota: &str, period: &str) -> Result<Option<f64>, ParseError> {
    match parse_cfs_quota(quota)? {
        Some(quota) => cfs_cores(quota, period).map(Some),
        None => Ok(None),
    }
}

/// `cpu.cfs_quota_us` in µs; `-1` means none.
fn parse_cfs_quota(quota: &str) -> Result<Option<u64>, ParseError> {
    let q = quota.trim();
    if q == "-1" {
        return Ok(None);
    }
    parse_u64("cpu.cfs_quota_us", q).map(Some)
}

fn cfs_cores(quota: u64, period: &str) -> Result<f64, ParseError> {
    cores(
        "cpu.cfs_period_us",
        quota,
        parse_u64("cpu.cfs_period_us", period)?,
    )
}

fn cores(file: &'static str, quota: u64, period: u64) -> Result<f64, ParseError> {
    if period == 0 {
        return Err(ParseError::new(file, "period is zero"));
    }
    if quota == 0 {
        return Err(ParseError::new(file, "quota is zero"));
    }
    Ok(quota as f64 / period as f64)
}

/// `cpu.stat` `usage_usec`, in nanoseconds.
pub(crate) fn parse_cpu_stat_usage(s: &str) -> Result<u64, ParseError> {
    flat_keyed("cpu.stat", s, "usage_usec")?
        .map(|us| us.saturating_mul(1000))
        .ok_or(ParseError::new("cpu.stat", "no usage_usec"))
}

/// `cpuacct.usage`, already in nanoseconds.
pub(crate) fn parse_cpuacct_usage(s: &str) -> Result<u64, ParseError> {
    parse_u64("cpuacct.usage", s)
}

/// CPU utilisation in % of `cores` between two usage counters (ns) `elapsed` apart, clamped
/// to `0..=100`. NaN when no time passed or the counter went backwards (cgroup recreated).
pub(crate) fn cpu_percent(prev_ns: u64, now_ns: u64, elapsed: Duration, cores: f64) -> f64 {
    let wall = elapsed.as_nanos() as f64 * cores;
    if now_ns < prev_ns || wall <= 0.0 || !wall.is_finite() {
        return f64::NAN;
    }
    ((now_ns - prev_ns) as f64 / wall * 100.0).clamp(0.0, 100.0)
}

/// What a cgroup memory read found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MemoryReading {
    /// A limit is set: the working set and the limit, in bytes.
    Limited { working_set: u64, limit: u64 },
    /// No limit (or one at least as large as host memory): use host figures.
    Unlimited,
    /// The files could not be read or parsed this time.
    Unavailable,
}

/// What a cgroup CPU read found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CpuReading {
    /// A quota is set: utilisation in % of it (NaN on the first sample after it appeared).
    Limited { percent: f64, cores: f64 },
    /// No quota: use host figures.
    Unlimited,
    /// The files could not be read or parsed this time.
    Unavailable,
}

enum MemoryFiles {
    V1 {
        usage: KeptFile,
        limit: KeptFile,
        stat: Option<KeptFile>,
    },
    V2 {
        current: KeptFile,
        max: KeptFile,
        stat: Option<KeptFile>,
    },
}

enum CpuLimitFiles {
    V1 { quota: KeptFile, period: KeptFile },
    V2 { max: KeptFile },
}

enum CpuUsageFile {
    V1(KeptFile),
    V2(KeptFile),
}

/// The process's cgroup memory and CPU files, kept open.
pub(crate) struct Cgroup {
    memory: Option<(Version, MemoryFiles)>,
    cpu: Option<(Version, CpuLimitFiles, CpuUsageFile)>,
    unified: Option<PathBuf>,
    host_memory: Option<u64>,
    host_cpus: Option<f64>,
    /// The last usage counter (ns) and when it was read, for the CPU delta.
    last_cpu: Option<(u64, std::time::Instant)>,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup")
            .field("memory", &self.memory.as_ref().map(|(v, _)| *v))
            .field("cpu", &self.cpu.as_ref().map(|(v, _, _)| *v))
            .field("unified", &self.unified)
            .finish()
    }
}

impl Cgroup {
    /// Discovers the process's own cgroup. `None` when not on Linux or nothing is readable.
    /// `host_memory` (bytes) and `host_cpus` cap the limits: a limit at or above the host's
    /// resources is no limit.
    pub(crate) fn discover(host_memory: Option<u64>, host_cpus: Option<f64>) -> Option<Cgroup> {
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        match resolve(&proc_cgroup, &mountinfo, Path::new("/")) {
            Ok(dirs) => Cgroup::open(&dirs, host_memory, host_cpus),
            Err(e) => {
                tracing::debug!(target: "tower_pressure::pressure", error = %e, "cgroup not readable");
                None
            }
        }
    }

    /// Opens the files under `dirs`; `None` when neither memory nor CPU files exist.
    pub(crate) fn open(
        dirs: &CgroupDirs,
        host_memory: Option<u64>,
        host_cpus: Option<f64>,
    ) -> Option<Cgroup> {
        let memory = match (&dirs.memory_v1, &dirs.unified) {
            (Some(d), _) => (|| {
                Some((
                    Version::V1,
                    MemoryFiles::V1 {
                        usage: KeptFile::open(d.join("memory.usage_in_bytes"))?,
                        limit: KeptFile::open(d.join("memory.limit_in_bytes"))?,
                        stat: KeptFile::open(d.join("memory.stat")),
                    },
                ))
            })(),
            (None, Some(d)) => (|| {
                Some((
                    Version::V2,
                    MemoryFiles::V2 {
                        current: KeptFile::open(d.join("memory.current"))?,
                        max: KeptFile::open(d.join("memory.max"))?,
                        stat: KeptFile::open(d.join("memory.stat")),
                    },
                ))
            })(),
            (None, None) => None,
        };
        let cpu = match (&dirs.cpu_v1, &dirs.unified) {
            (Some(d), _) => (|| {
                // cpu and cpuacct are usually co-mounted; if not, usage is in cpuacct's dir.
                let acct = dirs.cpuacct_v1.as_deref().unwrap_or(d);
                Some((
                    Version::V1,
                    CpuLimitFiles::V1 {
                        quota: KeptFile::open(d.join("cpu.cfs_quota_us"))?,
                        period: KeptFile::open(d.join("cpu.cfs_period_us"))?,
                    },
                    CpuUsageFile::V1(KeptFile::open(acct.join("cpuacct.usage"))?),
                ))
            })(),
            (None, Some(d)) => (|| {
                Some((
                    Version::V2,
                    CpuLimitFiles::V2 {
                        max: KeptFile::open(d.join("cpu.max"))?,
                    },
                    CpuUsageFile::V2(KeptFile::open(d.join("cpu.stat"))?),
                ))
            })(),
            (None, None) => None,
        };
        if memory.is_none() && cpu.is_none() {
            return None;
        }
        Some(Cgroup {
            memory,
            cpu,
            unified: dirs.unified.clone(),
            host_memory,
            host_cpus,
            last_cpu: None,
        })
    }

    /// The v2 directory (for its `cpu.pressure` and `memory.pressure`), if any.
    pub(crate) fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// `true` when memory files were found (a limit may or may not be set).
    pub(crate) fn has_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// `true` when CPU files were found (a quota may or may not be set).
    pub(crate) fn has_cpu(&self) -> bool {
        self.cpu.is_some()
    }

    /// A short description for the status page, e.g. `"cgroup memory v1, cpu v1"`.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((v, _)) = &self.memory {
            parts.push(format!("memory {}", v.as_str()));
        }
        if let Some((v, _, _)) = &self.cpu {
            parts.push(format!("cpu {}", v.as_str()));
        }
        format!("cgroup {}", parts.join(", "))
    }

    /// Reads the working set and limit.
    pub(crate) fn read_memory(&mut self) -> MemoryReading {
        let Some((version, files)) = &mut self.memory else {
            return MemoryReading::Unavailable;
        };
        let version = *version;
        let result = (|| -> Result<Result<(u64, u64), ()>, Box<dyn std::error::Error>> {
            let (usage, limit, stat) = match files {
                MemoryFiles::V1 { usage, limit, stat } => (
                    parse_u64("memory.usage_in_bytes", usage.read()?)?,
                    parse_v1_memory_limit(limit.read()?)?,
                    stat,
                ),
                MemoryFiles::V2 { current, max, stat } => (
                    parse_u64("memory.current", current.read()?)?,
                    parse_memory_max(max.read()?)?,
                    stat,
                ),
            };
            let Some(limit) = limit else {
                return Ok(Err(()));
            };
            let inactive = match stat {
                Some(stat) => parse_inactive_file(stat.read()?, version)?,
                None => None,
            };
            Ok(Ok((working_set(usage, inactive), limit)))
        })();
        match result {
            Ok(Ok((working_set, limit))) => match self.host_memory {
                Some(host) if limit >= host => MemoryReading::Unlimited,
                _ if limit == 0 => MemoryReading::Unavailable,
                _ => MemoryReading::Limited { working_set, limit },
            },
            Ok(Err(())) => MemoryReading::Unlimited,
            Err(e) => {
                tracing::debug!(target: "tower_pressure::pressure", error = %e, "cgroup memory read failed");
                MemoryReading::Unavailable
            }
        }
    }

    /// Reads the CPU quota and, when one is set, utilisation against it since the last call.
    /// `now` is a real clock reading: the kernel's usage counter is real CPU time, so it must
    /// be divided by real elapsed time (tokio's clock may be paused).
    pub(crate) fn read_cpu(&mut self, now: std::time::Instant) -> CpuReading {
        let Some((_, limit_files, usage_file)) = &mut self.cpu else {
            return CpuReading::Unavailable;
        };
        let result = (|| -> Result<Option<(f64, u64)>, Box<dyn std::error::Error>> {
            let quota = match limit_files {
                CpuLimitFiles::V1 { quota, period } => match parse_cfs_quota(quota.read()?)? {
                    Some(q) => Some(cfs_cores(q, period.read()?)?),
                    None => None,
                },
                CpuLimitFiles::V2 { max } => parse_cpu_max(max.read()?)?,
            };
            let Some(quota) = quota else { return Ok(None) };
            let usage = match usage_file {
                CpuUsageFile::V1(f) => parse_cpuacct_usage(f.read()?)?,
                CpuUsageFile::V2(f) => parse_cpu_stat_usage(f.read()?)?,
            };
            Ok(Some((quota, usage)))
        })();
        match result {
            Ok(Some((quota, usage))) => {
                let cores = match self.host_cpus {
                    Some(host) if host > 0.0 => quota.min(host),
                    _ => quota,
                };
                let percent = match self.last_cpu {
                    Some((prev, at)) => {
                        cpu_percent(prev, usage, now.saturating_duration_since(at), cores)
                    }
                    None => f64::NAN,
                };
                self.last_cpu = Some((usage, now));
                CpuReading::Limited { percent, cores }
            }
            Ok(None) => {
                self.last_cpu = None;
                CpuReading::Unlimited
            }
            Err(e) => {
                self.last_cpu = None;
                tracing::debug!(target: "tower_pressure::pressure", error = %e, "cgroup cpu read failed");
                CpuReading::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_CGROUP: &str = "\
12:memory:/kubepods/burstable/pod1234/abcd
11:cpu,cpuacct:/kubepods/burstable/pod1234/abcd
1:name=systemd:/kubepods/burstable/pod1234/abcd
";
    const V1_MOUNTINFO: &str = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 /kubepods/burstable/pod1234/abcd /sys/fs/cgroup/memory ro,nosuid shared:9 - cgroup cgroup rw,memory
27 25 0:25 /kubepods/burstable/pod1234/abcd /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct
28 25 0:26 / /sys/fs/cgroup/systemd ro - cgroup cgroup rw,name=systemd
";
    const V2_CGROUP: &str = "0::/kubepods.slice/pod.slice/cri-abc.scope\n";
    const V2_MOUNTINFO: &str = "\
22 1 0:21 / / rw - overlay overlay rw
35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";
    // These machines: v1 controllers, plus an empty v2 hierarchy at /sys/fs/cgroup/unified.
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/4a21754f
2:cpuacct:/
1:cpu:/
0::/
";
    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    #[test]
    fn proc_cgroup_lines() {
        let l = parse_proc_cgroup(V1_CGROUP).unwrap();
        assert_eq!(l[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(l[0].path, "/kubepods/burstable/pod1234/abcd");
        let l = parse_proc_cgroup("0::/\n").unwrap();
        assert_eq!(
            l,
            [CgroupLine {
                id: 0,
                controllers: vec![],
                path: "/"
            }]
        );
        // A path containing ':' stays whole.
        assert_eq!(parse_proc_cgroup("0::/a:b").unwrap()[0].path, "/a:b");
    }

    #[test]
    fn proc_cgroup_garbage_is_an_error() {
        for bad in [
            "",
            "garbage",
            "x::/",
            "1:memory",
            "1:memory:relative",
            "\u{0}\u{1}:::",
        ] {
            assert!(parse_proc_cgroup(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_proc_cgroup("0::/\nnope").unwrap_err().line, Some(2));
    }

    #[test]
    fn mountinfo_keeps_cgroup_mounts_and_unescapes() {
        let m = parse_mountinfo(V1_MOUNTINFO).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].root, "/kubepods/burstable/pod1234/abcd");
        assert_eq!(m[1].options, ["rw", "cpu", "cpuacct"]);
        let m = parse_mountinfo("1 2 0:3 / /my\\040cg rw - cgroup2 none rw\n").unwrap();
        assert_eq!(m[0].mount_point, "/my cg");
        assert_eq!(m[0].version, Version::V2);
    }

    #[test]
    fn mountinfo_garbage_is_an_error() {
        assert!(parse_mountinfo("garbage line without separator").is_err());
        assert!(parse_mountinfo("1 2 - cgroup2 x rw").is_err());
        assert!(parse_mountinfo("1 2 0:3 / /x rw - cgroup2").is_err());
        assert!(parse_mountinfo("1 2 0:3 / /a\\09 rw - cgroup2 none rw").is_err());
        assert_eq!(parse_mountinfo("").unwrap(), []);
    }

    #[test]
    fn resolves_v1_with_mount_root() {
        let d = resolve(V1_CGROUP, V1_MOUNTINFO, Path::new("/")).unwrap();
        // The mount shows the container's subtree: the path is relative to its root.
        assert_eq!(d.memory_v1, p("/sys/fs/cgroup/memory"));
        assert_eq!(d.cpu_v1, p("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(d.cpuacct_v1, p("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(d.unified, None);
    }

    #[test]
    fn resolves_v2_and_root_cgroup() {
        let d = resolve(V2_CGROUP, V2_MOUNTINFO, Path::new("/")).unwrap();
        assert_eq!(
            d.unified,
            p("/sys/fs/cgroup/kubepods.slice/pod.slice/cri-abc.scope")
        );
        assert_eq!(d.memory_v1, None);
        let d = resolve("0::/\n", V2_MOUNTINFO, Path::new("/")).unwrap();
        assert_eq!(d.unified, p("/sys/fs/cgroup"));
        // No cgroup mounts at all: nothing to read, not an error.
        let d = resolve("0::/\n", "", Path::new("/")).unwrap();
        assert_eq!(d, CgroupDirs::default());
    }

    #[test]
    fn resolves_hybrid() {
        let d = resolve(HYBRID_CGROUP, HYBRID_MOUNTINFO, Path::new("/")).unwrap();
        assert_eq!(d.memory_v1, p("/sys/fs/cgroup/memory/process_api/4a21754f"));
        assert_eq!(d.cpu_v1, p("/sys/fs/cgroup/cpu"));
        assert_eq!(d.cpuacct_v1, p("/sys/fs/cgroup/cpuacct"));
        assert_eq!(d.unified, p("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn root_prefix_match_is_per_component() {
        let mi = "1 0 0:1 /a /cg rw - cgroup2 none rw\n";
        assert_eq!(
            resolve("0::/a/b", mi, Path::new("/")).unwrap().unified,
            p("/cg/b")
        );
        // `/a` is not a prefix of `/ab`: fall back to the mount point itself.
        assert_eq!(
            resolve("0::/ab", mi, Path::new("/")).unwrap().unified,
            p("/cg")
        );
    }

    #[test]
    fn limits() {
        assert_eq!(parse_memory_max("max\n"), Ok(None));
        assert_eq!(parse_memory_max("536870912\n"), Ok(Some(536_870_912)));
        assert!(parse_memory_max("lots").is_err());
        assert_eq!(parse_v1_memory_limit("9223372036854771712\n"), Ok(None));
        assert_eq!(parse_v1_memory_limit("1073741824"), Ok(Some(1 << 30)));
        assert!(parse_v1_memory_limit("-1").is_err());

        assert_eq!(parse_cpu_max("max 100000\n"), Ok(None));
        assert_eq!(parse_cpu_max("max"), Ok(None));
        assert_eq!(parse_cpu_max("50000 100000\n"), Ok(Some(0.5)));
        assert_eq!(parse_cpu_max("200000 100000"), Ok(Some(2.0)));
        for bad in ["", "50000", "50000 0", "0 100000", "a b", "1 2 3"] {
            assert!(parse_cpu_max(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_cfs("-1\n", "100000\n"), Ok(None));
        assert_eq!(parse_cfs("150000\n", "100000\n"), Ok(Some(1.5)));
        assert!(parse_cfs("-5", "100000").is_err());
        assert!(parse_cfs("100", "0").is_err());
    }

    #[test]
    fn usage_and_working_set() {
        let v2 = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(parse_cpu_stat_usage(v2), Ok(1_500_000));
        assert!(parse_cpu_stat_usage("user_usec 1\n").is_err());
        assert_eq!(parse_cpuacct_usage("583359904342\n"), Ok(583_359_904_342));

        let v1 = "cache 100\ninactive_file 7\ntotal_inactive_file 20480\n";
        assert_eq!(parse_inactive_file(v1, Version::V1), Ok(Some(20480)));
        assert_eq!(parse_inactive_file(v1, Version::V2), Ok(Some(7)));
        assert_eq!(
            parse_inactive_file("inactive_file 9\n", Version::V1),
            Ok(Some(9))
        );
        assert_eq!(parse_inactive_file("anon 1\n", Version::V2), Ok(None));
        assert!(parse_inactive_file("inactive_file\n", Version::V2).is_err());
        assert_eq!(working_set(100, Some(30)), 70);
        assert_eq!(working_set(100, Some(300)), 0);
        assert_eq!(working_set(100, None), 100);
    }

    #[test]
    fn cpu_percent_of_quota() {
        let s = Duration::from_secs(1);
        // 0.5 CPU-seconds in 1 s against a 0.5-core quota: 100 %.
        assert_eq!(cpu_percent(0, 500_000_000, s, 0.5), 100.0);
        assert_eq!(cpu_percent(0, 500_000_000, s, 2.0), 25.0);
        assert_eq!(cpu_percent(0, 5_000_000_000, s, 1.0), 100.0); // clamped
        assert!(cpu_percent(10, 5, s, 1.0).is_nan());
        assert!(cpu_percent(0, 5, Duration::ZERO, 1.0).is_nan());
    }

    /// A fake cgroupfs under a temporary directory, read through the real file path.
    struct Fixture(PathBuf);
    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir = std::env::temp_dir().join(format!("tp-cgroup-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Fixture(dir)
        }
        fn write(&self, rel: &str, contents: &str) {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
    }
    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_a_v2_fixture_tree() {
        let fx = Fixture::new("v2");
        let cg = "sys/fs/cgroup/kubepods.slice/pod.slice/cri-abc.scope";
        fx.write(&format!("{cg}/memory.current"), "600\n");
        fx.write(&format!("{cg}/memory.max"), "1000\n");
        fx.write(
            &format!("{cg}/memory.stat"),
            "anon 400\ninactive_file 100\n",
        );
        fx.write(&format!("{cg}/cpu.max"), "50000 100000\n");
        fx.write(&format!("{cg}/cpu.stat"), "usage_usec 1000000\n");
        let dirs = resolve(V2_CGROUP, V2_MOUNTINFO, &fx.0).unwrap();
        let mut c = Cgroup::open(&dirs, Some(1 << 40), Some(2.0)).unwrap();
        assert_eq!(c.describe(), "cgroup memory v2, cpu v2");
        assert_eq!(
            c.read_memory(),
            MemoryReading::Limited {
                working_set: 500,
                limit: 1000
            }
        );
        let t0 = std::time::Instant::now();
        match c.read_cpu(t0) {
            CpuReading::Limited { percent, cores } => {
                assert!(percent.is_nan(), "first sample has no delta");
                assert_eq!(cores, 0.5);
            }
            other => panic!("{other:?}"),
        }
        fx.write(&format!("{cg}/cpu.stat"), "usage_usec 1250000\n");
        match c.read_cpu(t0 + Duration::from_secs(1)) {
            CpuReading::Limited { percent, .. } => assert_eq!(percent, 50.0),
            other => panic!("{other:?}"),
        }
        // Limits removed: host figures.
        fx.write(&format!("{cg}/memory.max"), "max\n");
        fx.write(&format!("{cg}/cpu.max"), "max 100000\n");
        assert_eq!(c.read_memory(), MemoryReading::Unlimited);
        assert_eq!(c.read_cpu(t0), CpuReading::Unlimited);
        // Garbage: unavailable, no panic.
        fx.write(&format!("{cg}/memory.max"), "garbage\n");
        fx.write(&format!("{cg}/cpu.max"), "1\n");
        assert_eq!(c.read_memory(), MemoryReading::Unavailable);
        assert_eq!(c.read_cpu(t0), CpuReading::Unavailable);
    }

    #[test]
    fn reads_a_v1_fixture_tree() {
        let fx = Fixture::new("v1");
        fx.write("sys/fs/cgroup/memory/memory.usage_in_bytes", "3000\n");
        fx.write("sys/fs/cgroup/memory/memory.limit_in_bytes", "4000\n");
        fx.write(
            "sys/fs/cgroup/memory/memory.stat",
            "inactive_file 5\ntotal_inactive_file 1000\n",
        );
        fx.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "400000\n");
        fx.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        fx.write("sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", "0\n");
        let dirs = resolve(V1_CGROUP, V1_MOUNTINFO, &fx.0).unwrap();
        // Host has 2 CPUs: a 4-core quota is capped to 2.
        let mut c = Cgroup::open(&dirs, Some(1 << 40), Some(2.0)).unwrap();
        assert_eq!(
            c.read_memory(),
            MemoryReading::Limited {
                working_set: 2000,
                limit: 4000
            }
        );
        let t0 = std::time::Instant::now();
        assert!(matches!(
            c.read_cpu(t0),
            CpuReading::Limited { cores: 2.0, .. }
        ));
        fx.write("sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", "1000000000\n");
        assert_eq!(
            c.read_cpu(t0 + Duration::from_secs(1)),
            CpuReading::Limited {
                percent: 50.0,
                cores: 2.0
            }
        );
        // v1 "unlimited" and a limit above host memory both mean no limit.
        fx.write(
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(c.read_memory(), MemoryReading::Unlimited);
        fx.write("sys/fs/cgroup/memory/memory.limit_in_bytes", "4000\n");
        let mut small_host = Cgroup::open(&dirs, Some(4000), None).unwrap();
        assert_eq!(small_host.read_memory(), MemoryReading::Unlimited);
        fx.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
        assert_eq!(c.read_cpu(t0), CpuReading::Unlimited);
    }

    #[test]
    fn missing_files_mean_no_cgroup() {
        let fx = Fixture::new("empty");
        let dirs = resolve(HYBRID_CGROUP, HYBRID_MOUNTINFO, &fx.0).unwrap();
        assert!(Cgroup::open(&dirs, None, None).is_none());
    }
}
