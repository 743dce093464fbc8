//! Linux pressure stall information (PSI): how much of the time tasks *waited*.
//!
//! # Why PSI beats utilisation
//!
//! Utilisation says how busy a resource is; it cannot say how many are queueing for it. CPU
//! utilisation saturates at 100 %: on a 2-core machine sysinfo reports 100 % whether 2, 4 or
//! 8 threads compete for the cores. PSI's `some avg10` is the share of the last 10 seconds in
//! which at least one runnable task was stalled waiting, so it keeps rising with the queue:
//! measured on these machines at 1.3, 33.8 and 55.3 for 2, 4 and 8 busy threads. The same
//! holds for memory (time stalled in reclaim and refaults, where "memory used" is mostly
//! harmless cache) and IO (time blocked on IO, where disk utilisation says little on SSDs).
//!
//! So when `/proc/pressure/cpu` (or the cgroup's `cpu.pressure`) exists, the monitor lets
//! CPU PSI drive the level (default thresholds [`Thresholds::PSI_CPU`]) and observes CPU
//! utilisation only; see the [`pressure`](crate::pressure) module docs.
//!
//! # Files
//!
//! | signal | file |
//! |---|---|
//! | [`Signal::PsiCpu`] | `/proc/pressure/cpu` |
//! | [`Signal::PsiMemory`] | `/proc/pressure/memory` |
//! | [`Signal::PsiIo`] | `/proc/pressure/io` |
//! | [`Signal::CgroupPsiCpu`] | the process's cgroup v2 directory's `cpu.pressure` |
//! | [`Signal::CgroupPsiMemory`] | the process's cgroup v2 directory's `memory.pressure` |
//!
//! Each file reads like
//!
//! ```text
//! some avg10=1.30 avg60=0.85 avg300=0.20 total=123456
//! full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//! ```
//!
//! and the `some avg10` value is reported. A file that does not exist (kernels before 4.20,
//! PSI disabled with `psi=0`, not Linux) or cannot be parsed when the monitor is built is not
//! reported at all; the source claims only the signals it can read. Files are kept open and
//! re-read from offset 0 every sample (about 2.5 µs against 6.5 µs for open + read). A sample
//! that fails to parse reads NaN (not available) and logs a `tracing` debug event.
//!
//! [`Thresholds::PSI_CPU`]: crate::pressure::Thresholds::PSI_CPU

use std::path::Path;

use super::Source;
use super::procfs::{KeptFile, ParseError};
use crate::pressure::Signal;

/// Parses a PSI file and returns `some avg10` (%).
///
/// Tolerates extra fields and extra lines (future kernels); requires a `some` line with a
/// finite `avg10` within `0..=100`.
pub(crate) fn parse_some_avg10(s: &str) -> Result<f64, ParseError> {
    const FILE: &str = "pressure file";
    for (i, line) in s.lines().enumerate() {
        let mut fields = line.split_ascii_whitespace();
        if fields.next() != Some("some") {
            continue;
        }
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(ParseError::at(FILE, i + 1, "expected `key=value`"));
            };
            if key == "avg10" {
                let v: f64 = value
                    .parse()
                    .map_err(|_| ParseError::at(FILE, i + 1, "avg10 is not a number"))?;
                if !(0.0..=100.0).contains(&v) {
                    return Err(ParseError::at(FILE, i + 1, "avg10 is outside 0..=100"));
                }
                return Ok(v);
            }
        }
        return Err(ParseError::at(FILE, i + 1, "no avg10 on the `some` line"));
    }
    Err(ParseError::new(FILE, "no `some` line"))
}

/// Reads the PSI files that exist; see the [module docs](self).
pub(crate) struct PsiSource {
    files: Vec<(Signal, KeptFile)>,
}

impl std::fmt::Debug for PsiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.files.iter().map(|(s, f)| (s, f.path())))
            .finish()
    }
}

impl PsiSource {
    /// Opens the system-wide files and, given the process's cgroup v2 directory, the cgroup's
    /// own. `None` when none of them is readable.
    pub(crate) fn new(cgroup_v2_dir: Option<&Path>) -> Option<PsiSource> {
        Self::with_paths(Path::new("/proc/pressure"), cgroup_v2_dir)
    }

    fn with_paths(proc_pressure: &Path, cgroup_v2_dir: Option<&Path>) -> Option<PsiSource> {
        let mut candidates = vec![
            (Signal::PsiCpu, proc_pressure.join("cpu")),
            (Signal::PsiMemory, proc_pressure.join("memory")),
            (Signal::PsiIo, proc_pressure.join("io")),
        ];
        if let Some(dir) = cgroup_v2_dir {
            candidates.push((Signal::CgroupPsiCpu, dir.join("cpu.pressure")));
            candidates.push((Signal::CgroupPsiMemory, dir.join("memory.pressure")));
        }
        let files: Vec<(Signal, KeptFile)> = candidates
            .into_iter()
            .filter_map(|(signal, path)| {
                let mut file = KeptFile::open(&path)?;
                // Claim the signal only if it parses now: a `full`-only file never will.
                match file.read().map(parse_some_avg10) {
                    Ok(Ok(_)) => Some((signal, file)),
                    _ => None,
                }
            })
            .collect();
        (!files.is_empty()).then_some(PsiSource { files })
    }
}

impl Source for PsiSource {
    fn name(&self) -> &str {
        "psi"
    }

    fn signals(&self) -> Vec<Signal> {
        self.files.iter().map(|(s, _)| *s).collect()
    }

    fn sample(&mut self, out: &mut [f64]) {
        for ((signal, file), slot) in self.files.iter_mut().zip(out.iter_mut()) {
            *slot = match file.read() {
                Ok(text) => match parse_some_avg10(text) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(target: "tower_pressure::pressure", signal = %signal, error = %e, "psi parse failed");
                        f64::NAN
                    }
                },
                Err(e) => {
                    tracing::debug!(target: "tower_pressure::pressure", signal = %signal, error = %e, "psi read failed");
                    f64::NAN
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_avg10() {
        let s = "some avg10=5.34 avg60=6.76 avg300=4.77 total=30175863\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_some_avg10(s), Ok(5.34));
        // cpu on kernels before 5.13 has no `full` line.
        assert_eq!(
            parse_some_avg10("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            Ok(0.0)
        );
        // Extra fields and lines from a future kernel are ignored; field order does not matter.
        let s = "some total=1 avg60=2.00 avg10=33.80 avg300=1.00 avg1=9.0\nnew line\n";
        assert_eq!(parse_some_avg10(s), Ok(33.8));
    }

    #[test]
    fn malformed_psi_is_an_error() {
        let full_only = "full avg10=1.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(
            parse_some_avg10(full_only).unwrap_err().reason,
            "no `some` line"
        );
        for bad in [
            "",
            "garbage",
            "some avg10 avg60=1",
            "some avg10=abc avg60=0.00",
            "some avg60=1.00 total=5",
            "some avg10=-1.0",
            "some avg10=NaN",
            "some avg10=250.00",
        ] {
            assert!(parse_some_avg10(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn source_claims_only_readable_files() {
        let dir = std::env::temp_dir().join(format!("tp-psi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cg")).unwrap();
        std::fs::write(
            dir.join("cpu"),
            "some avg10=12.50 avg60=0 avg300=0 total=0\n",
        )
        .unwrap();
        // io on a kernel with a `full`-only file: never parses, not claimed.
        std::fs::write(dir.join("io"), "full avg10=1.00 avg60=0 avg300=0 total=0\n").unwrap();
        // memory absent.
        std::fs::write(
            dir.join("cg/memory.pressure"),
            "some avg10=3.00 avg60=0 avg300=0 total=0\n",
        )
        .unwrap();
        let mut src = PsiSource::with_paths(&dir, Some(&dir.join("cg"))).unwrap();
        assert_eq!(src.signals(), [Signal::PsiCpu, Signal::CgroupPsiMemory]);
        let mut out = [0.0; 2];
        src.sample(&mut out);
        assert_eq!(out, [12.5, 3.0]);
        // A malformed sample reads NaN, the next good one recovers.
        std::fs::write(dir.join("cpu"), "some avg10=oops\n").unwrap();
        src.sample(&mut out);
        assert!(out[0].is_nan());
        assert_eq!(out[1], 3.0);
        std::fs::write(
            dir.join("cpu"),
            "some avg10=40.00 avg60=0 avg300=0 total=0\n",
        )
        .unwrap();
        src.sample(&mut out);
        assert_eq!(out[0], 40.0);
        assert!(PsiSource::with_paths(&dir.join("nowhere"), None).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
