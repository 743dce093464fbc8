#![no_main]
//! `grpc-retry-pushback-ms`: any bytes give a delay or `Stop`, never a panic.
use libfuzzer_sys::fuzz_target;
use tower_pressure::retry::{Pushback, parse_grpc_pushback};

fuzz_target!(|data: &[u8]| {
    let got = parse_grpc_pushback(data);
    let t = data.trim_ascii();
    if !t.is_empty() && t.iter().all(u8::is_ascii_digit) {
        assert!(
            matches!(got, Pushback::After(_)),
            "all-digit values are delays"
        );
    }
});
