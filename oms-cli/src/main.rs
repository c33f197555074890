//! The `oms` command-line tool.

fn main() {}
