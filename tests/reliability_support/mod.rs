//! Shared by the reliability tests: the summary file the numbers are written to.
//!
//! cargo captures the output of passing tests, so besides `eprintln!` every reliability test
//! records its numbers as one line in `target/reliability-summary.txt` (replacing its own
//! previous line), for CI to print at the end of the run.

use std::path::PathBuf;

/// `target/reliability-summary.txt` (or under `CARGO_TARGET_DIR`).
pub(crate) fn summary_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("reliability-summary.txt")
}

/// Prints `line` and stores it under `key` in the summary file.
pub(crate) fn record(key: &str, line: &str) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let line = format!("{key}: {line}");
    eprintln!("{line}");
    let path = summary_path();
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(&path));
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let prefix = format!("{key}: ");
    let mut lines: Vec<&str> = old.lines().filter(|l| !l.starts_with(&prefix)).collect();
    lines.push(&line);
    lines.sort_unstable();
    let _ = std::fs::write(&path, lines.join("\n") + "\n");
}
