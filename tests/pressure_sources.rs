//! The real built-in sources on this machine. Every assertion is a range or a presence check:
//! the machine's actual load never decides a test.

use std::time::Duration;

use tower_pressure::pressure::{PressureMonitor, Signal, Thresholds};

fn in_percent_range(v: f64) -> bool {
    (0.0..=100.0).contains(&v)
}

/// `true` when this host has readable CPU PSI (same rule as the source: a `some avg10` line).
fn host_has_cpu_psi() -> bool {
    std::fs::read_to_string("/proc/pressure/cpu")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("some ") && l.contains("avg10="))
        })
        .unwrap_or(false)
}

#[test]
fn real_system_sources_report_values_in_range() {
    let monitor = PressureMonitor::builder().build_unstarted().unwrap();
    monitor.sample_now();
    let readings = monitor.readings();
    let signals: Vec<Signal> = readings.iter().map(|r| r.signal).collect();
    assert!(signals.contains(&Signal::Cpu), "{signals:?}");
    assert!(signals.contains(&Signal::Memory), "{signals:?}");
    // An unstarted monitor has no runtime to measure.
    assert!(!signals.contains(&Signal::SchedulingLag));

    for r in &readings {
        let Some(v) = r.value else {
            // Only CPU may lack a value (a delta too short to measure); never memory.
            assert_eq!(r.signal, Signal::Cpu, "{} has no value", r.name);
            continue;
        };
        if r.signal.is_percent() {
            assert!(in_percent_range(v), "{} = {v}", r.name);
        } else {
            assert!(v >= 0.0 && v.is_finite(), "{} = {v}", r.name);
        }
    }
    assert!(monitor.reading(Signal::MemoryBytes).unwrap() > 0.0);
    let snap = monitor.snapshot();
    assert!(in_percent_range(snap.memory_percent().unwrap()));
    if cfg!(target_os = "linux") {
        assert!(monitor.reading(Signal::ProcessRss).unwrap() > 0.0);
    }
    if host_has_cpu_psi() {
        assert!(in_percent_range(monitor.reading(Signal::PsiCpu).unwrap()));
    }
}

#[test]
fn cpu_psi_is_preferred_over_utilisation_when_present() {
    let monitor = PressureMonitor::builder().build_unstarted().unwrap();
    if host_has_cpu_psi() {
        // PSI drives the level; utilisation is observed only.
        assert_eq!(
            monitor.thresholds(Signal::PsiCpu),
            Some(Thresholds::PSI_CPU)
        );
        assert_eq!(monitor.thresholds(Signal::Cpu), None);
        let cpu = monitor
            .readings()
            .into_iter()
            .find(|r| r.signal == Signal::Cpu)
            .unwrap();
        assert_eq!(cpu.thresholds, None);
    } else {
        assert_eq!(monitor.thresholds(Signal::PsiCpu), None);
        assert_eq!(
            monitor.thresholds(Signal::Cpu),
            Some(Thresholds::UTILISATION)
        );
    }
    // Without the PSI source, utilisation drives again.
    let no_psi = PressureMonitor::builder()
        .psi(false)
        .build_unstarted()
        .unwrap();
    assert_eq!(
        no_psi.thresholds(Signal::Cpu),
        Some(Thresholds::UTILISATION)
    );
}

#[test]
fn psi_under_busy_threads_stays_in_range() {
    if !host_has_cpu_psi() {
        return;
    }
    let monitor = PressureMonitor::builder()
        .without_system_sources()
        .psi(true)
        .build_unstarted()
        .unwrap();
    // A fixed amount of work per thread (no timing), more threads than most CI cores.
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let mut x: u64 = i;
                for n in 0..5_000_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(n));
                }
                x
            })
        })
        .collect();
    monitor.sample_now();
    for t in threads {
        t.join().unwrap();
    }
    monitor.sample_now();
    for r in monitor.readings() {
        let v = r.value.expect("psi files that opened keep reading");
        assert!(in_percent_range(v), "{} = {v}", r.name);
    }
}

#[tokio::test]
async fn started_monitor_reports_memory_rss_and_runtime() {
    let monitor = PressureMonitor::builder().build().unwrap();
    assert!(in_percent_range(monitor.reading(Signal::Memory).unwrap()));
    if cfg!(target_os = "linux") {
        assert!(monitor.reading(Signal::ProcessRss).unwrap() > 0.0);
    }
    // The first sample is taken in build(): the lag probe is already alive, the sampler not yet.
    assert!(monitor.reading(Signal::RuntimeAliveTasks).unwrap() >= 1.0);
    assert!(monitor.reading(Signal::RuntimeGlobalQueue).unwrap() >= 0.0);
    assert!(monitor.reading(Signal::SchedulingLag).unwrap() >= 0.0);
    assert_eq!(
        monitor.thresholds(Signal::SchedulingLag),
        Some(Thresholds::SCHEDULING_LAG_MS)
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_monitor_stops_the_lag_probe() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let monitor = PressureMonitor::builder()
        .without_system_sources()
        .runtime(true)
        .lag_probe_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(metrics.num_alive_tasks(), baseline + 2, "sampler + probe");
    drop(monitor);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(metrics.num_alive_tasks(), baseline);
}
