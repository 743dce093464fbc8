//! The process's own resident set size, [`Signal::ProcessRss`], in bytes.
//!
//! Read from the `VmRSS` line of `/proc/self/status`, kept open and re-read every sample
//! (no process-table scan, unlike sysinfo's process refresh). Observed only by default:
//! RSS has no natural limit of its own; memory pressure is judged by [`Signal::Memory`]
//! (the cgroup working set against its limit) and PSI. Not reported where
//! `/proc/self/status` does not exist (not Linux).

use super::Source;
use super::procfs::{KeptFile, ParseError};
use crate::pressure::Signal;

/// Parses `VmRSS:   12345 kB` out of `/proc/self/status`, in bytes.
pub(crate) fn parse_vm_rss(s: &str) -> Result<u64, ParseError> {
    const FILE: &str = "/proc/self/status";
    for (i, line) in s.lines().enumerate() {
        let Some(rest) = line.strip_prefix("VmRSS:") else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let (Some(n), Some("kB"), None) = (it.next(), it.next(), it.next()) else {
            return Err(ParseError::at(FILE, i + 1, "expected `VmRSS: <n> kB`"));
        };
        let kib: u64 = n
            .parse()
            .map_err(|_| ParseError::at(FILE, i + 1, "VmRSS is not an unsigned integer"))?;
        return Ok(kib.saturating_mul(1024));
    }
    Err(ParseError::new(FILE, "no VmRSS line"))
}

/// Reports [`Signal::ProcessRss`].
#[derive(Debug)]
pub(crate) struct ProcessSource {
    status: KeptFile,
}

impl ProcessSource {
    /// `None` when `/proc/self/status` is absent or has no `VmRSS`.
    pub(crate) fn new() -> Option<ProcessSource> {
        let mut status = KeptFile::open("/proc/self/status")?;
        status.read().ok().map(parse_vm_rss)?.ok()?;
        Some(ProcessSource { status })
    }
}

impl Source for ProcessSource {
    fn name(&self) -> &str {
        "process"
    }

    fn signals(&self) -> Vec<Signal> {
        vec![Signal::ProcessRss]
    }

    fn sample(&mut self, out: &mut [f64]) {
        let Some(slot) = out.first_mut() else { return };
        *slot = match self.status.read().map(parse_vm_rss) {
            Ok(Ok(bytes)) => bytes as f64,
            Ok(Err(e)) => {
                tracing::debug!(target: "tower_pressure::pressure", error = %e, "rss parse failed");
                f64::NAN
            }
            Err(e) => {
                tracing::debug!(target: "tower_pressure::pressure", error = %e, "rss read failed");
                f64::NAN
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let s = "Name:\tcargo\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(s), Ok(2 * 1024 * 1024));
        assert!(parse_vm_rss("Name:\tx\n").is_err());
        assert!(parse_vm_rss("VmRSS:\tlots kB\n").is_err());
        assert!(parse_vm_rss("VmRSS:\t12 MB\n").is_err());
        assert!(parse_vm_rss("VmRSS:\n").is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_own_rss() {
        let mut src = ProcessSource::new().expect("/proc/self/status on Linux");
        let mut out = [f64::NAN];
        src.sample(&mut out);
        assert!(out[0] > 0.0);
    }
}
