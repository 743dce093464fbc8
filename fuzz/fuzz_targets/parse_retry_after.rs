#![no_main]
//! `Retry-After`: any bytes give `Some(delay)` or `None`, never a panic; digits saturate.
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use tower_pressure::retry::parse_retry_after;

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
    let got = parse_retry_after(data, now);
    let t = data.trim_ascii();
    if !t.is_empty() && t.iter().all(u8::is_ascii_digit) {
        assert!(got.is_some(), "all-digit values are delays");
    }
});
