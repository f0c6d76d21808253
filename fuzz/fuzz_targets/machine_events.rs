//! Arbitrary event sequences against `RefreshMachine`, through the same model
//! world as the property tests: the `Checker` asserts every invariant after
//! every step (one refresh in flight, no replay, bounded sends, one outcome
//! per request...), and at the end the world settles and every request must
//! have ended exactly once. Any violation panics, which libFuzzer reports.
#![no_main]

use core::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use refresh_machine::Config;
use refresh_machine_model::world::{run, Op};

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    /// Refresh-ahead window in seconds (0: off).
    ahead_s: u8,
    max_auth_retries: u8,
    max_transient_retries: u8,
    budget: u8,
    refresh_attempts: u8,
    refresh_timeout_s: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let mut config = Config::DEFAULT;
    config.refresh_ahead = (input.ahead_s > 0).then(|| Duration::from_secs(input.ahead_s.into()));
    config.max_auth_retries = input.max_auth_retries % 4;
    config.max_transient_retries = input.max_transient_retries % 6;
    config.retry_budget.max_tokens = 1 + u32::from(input.budget % 10);
    config.max_refresh_attempts = 1 + input.refresh_attempts % 4;
    config.refresh_timeout = Duration::from_secs(1 + u64::from(input.refresh_timeout_s % 30));
    let ops = &input.ops[..input.ops.len().min(400)];
    run(config, input.seed, ops);
});
