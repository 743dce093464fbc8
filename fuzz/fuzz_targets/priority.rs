#![no_main]
//! `Priority::from_str` (priority headers): a priority or a bounded `InvalidPriority`.
use libfuzzer_sys::fuzz_target;
use tower_pressure::Priority;

fuzz_target!(|s: &str| {
    match s.parse::<Priority>() {
        Ok(p) => assert_eq!(p.to_string().parse::<Priority>(), Ok(p)),
        Err(e) => assert!(e.value().len() <= 64),
    }
});
