//! Renders the `status_dashboard` example in headless Chromium and checks the page drew
//! live data. Ignored by default (it needs Chromium and takes ~15 s).
//!
//! ```text
//! apt-get update && apt-get install -y chromium      # Debian package
//! cargo build --example status_dashboard
//! cargo test --test dashboard_chromium -- --ignored --nocapture
//! ```
//!
//! The screenshot goes to `target/dashboard.png`; set `DASHBOARD_UPDATE=1` to write
//! `docs/dashboard.png` instead. Set `CHROMIUM=/path/to/chrome` to pick the browser. Without
//! Chromium the test prints a message and passes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn find_chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// `target/<profile>/examples/status_dashboard`, next to this test's `deps/` directory.
fn example_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let p = profile_dir
        .join("examples")
        .join(format!("status_dashboard{}", std::env::consts::EXE_SUFFIX));
    p.is_file().then_some(p)
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium(browser: &Path, extra: &[&str], url: &str) -> std::process::Output {
    let profile = std::env::temp_dir().join(format!("dashboard-chromium-{}", std::process::id()));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
        "--window-size=1200,800",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url);
    let out = cmd.output().expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    out
}

#[test]
#[ignore = "needs Chromium; see the file's doc comment"]
fn dashboard_renders_live_data() {
    let Some(browser) = find_chromium() else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install -y chromium, or set CHROMIUM)");
        return;
    };
    let Some(example) = example_binary() else {
        eprintln!("SKIPPED: build the example first: cargo build --example status_dashboard");
        return;
    };

    // Serve on a free loopback port for 30 s at most; the first line says where.
    let child = Command::new(&example)
        .args(["--port", "0", "--seconds", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start status_dashboard");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut first = String::new();
    reader.read_line(&mut first).expect("read first line");
    // Keep draining: the example prints a line per second and must not hit a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .expect("the example prints its URL")
        .to_owned();
    eprintln!("dashboard at {url}");
    // Let the background load and the server-side history fill a few seconds of charts.
    std::thread::sleep(Duration::from_secs(8));

    // 1. The page's script ran and filled the header from /status.
    let dom = chromium(&browser, &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("updated "),
        "the page never got /status:\n{dom}"
    );
    let level_badge = dom
        .split("id=\"level\"")
        .nth(1)
        .and_then(|s| s.split('>').nth(1))
        .and_then(|s| s.split('<').next())
        .unwrap_or("?");
    assert!(
        ["normal", "elevated", "high", "critical", "emergency"].contains(&level_badge),
        "level badge shows {level_badge:?}"
    );

    // 2. The screenshot.
    let out_path = if std::env::var_os("DASHBOARD_UPDATE").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png")
    };
    let _ = std::fs::remove_file(&out_path);
    let shot = chromium(
        &browser,
        &[&format!("--screenshot={}", out_path.display())],
        &url,
    );
    let png = std::fs::read(&out_path).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}); chromium said: {}",
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    // A blank 1200x800 page compresses to a few KB; charts with data are tens of KB.
    assert!(
        png.len() > 20_000,
        "screenshot suspiciously small: {} bytes",
        png.len()
    );
    eprintln!(
        "screenshot: {} ({} bytes), level {level_badge}",
        out_path.display(),
        png.len()
    );
}
