#![no_main]
//! PSI files (`/proc/pressure/*`, `cpu.pressure`): a value in 0..=100 or a clear error.
use libfuzzer_sys::fuzz_target;
use tower_pressure::__fuzz;

fuzz_target!(|s: &str| {
    match __fuzz::psi_some_avg10(s) {
        Ok(v) => assert!((0.0..=100.0).contains(&v)),
        Err(e) => assert!(e.starts_with("cannot parse ")),
    }
});
