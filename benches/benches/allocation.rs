//! Allocation benches.

fn main() {}
