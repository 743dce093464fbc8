#![no_main]
//! cgroup and procfs files: `/proc/self/cgroup`, `mountinfo`, `memory.max`, `memory.stat`,
//! `cpu.max`, `cpu.stat`, `cpuacct.usage`, `VmRSS`. Values or clear errors, never a panic.
use libfuzzer_sys::fuzz_target;
use tower_pressure::__fuzz as p;

fn clear<T>(r: Result<T, String>) {
    if let Err(e) = r {
        assert!(e.starts_with("cannot parse "), "{e}");
    }
}

fuzz_target!(|s: &str| {
    clear(p::proc_cgroup(s));
    clear(p::mountinfo(s));
    clear(p::memory_max(s));
    clear(p::v1_memory_limit(s));
    clear(p::inactive_file(s, true));
    clear(p::inactive_file(s, false));
    if let Ok(Some(cores)) = p::cpu_max(s) {
        assert!(cores.is_finite() && cores > 0.0);
    }
    clear(p::cpu_stat_usage(s));
    clear(p::cpuacct_usage(s));
    clear(p::vm_rss(s));
});
