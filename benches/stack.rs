//! Whole-stack benchmarks (filled in with the stack).

fn main() {}
