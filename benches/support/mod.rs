//! Helpers shared by the bench binaries (included with `#[path = "support/mod.rs"] mod
//! support;`): reading back the medians criterion wrote, to print ratios after a run.

use std::path::PathBuf;

/// Where criterion wrote its estimates (same rules as criterion, minus `cargo metadata`).
pub(crate) fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

/// The median (ns) criterion estimated for `group/id` in its latest run, if any.
pub(crate) fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}
