//! The README's demo lives in `examples/storm.rs`: `cargo run --release --example storm`.
