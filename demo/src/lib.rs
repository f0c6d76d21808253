//! The README's demo lives in `examples/storm.rs`: `cargo run --release --example storm`.

pub mod fleet;

/// The README's quick starts, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeQuickStarts;
