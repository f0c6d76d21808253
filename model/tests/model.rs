//! Model-based property tests: random interleavings of up to 8 concurrent
//! requests, responses, refresh outcomes, timeouts, cancellations, logouts and
//! logins, against a fake resource server and a rotating token server. The
//! [`Checker`] asserts the invariants after every step; at the end the driver
//! keeps answering until the machine is idle and every request must have ended
//! with exactly one outcome.

use core::time::Duration;

use proptest::prelude::*;
use refresh_machine::Config;
use refresh_machine_model::world::{run, Op, RefreshReply, Reply, World};

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        4 => Just(Reply::Ok),
        2 => Just(Reply::Unauthorized),
        3 => Just(Reply::ServerDecides),
        1 => Just(Reply::InsufficientScope),
        1 => Just(Reply::Unavailable),
        1 => Just(Reply::BadGateway),
        1 => Just(Reply::GatewayTimeout),
        1 => (0u64..5).prop_map(Reply::TooMany),
        1 => Just(Reply::ServerError),
    ]
}

fn refresh_reply() -> impl Strategy<Value = RefreshReply> {
    prop_oneof![
        8 => (any::<bool>(), prop::option::of(prop_oneof![Just(0u64), 1u64..120]))
            .prop_map(|(rotate, expires_s)| RefreshReply::Success { rotate, expires_s }),
        1 => Just(RefreshReply::Rejected),
        // Retry-After up to twice `max_retry_after` (60 s): the clamp matters.
        2 => prop::option::of(prop_oneof![0u64..3, 30u64..120]).prop_map(RefreshReply::Transient),
        1 => Just(RefreshReply::Misconfigured),
        1 => any::<bool>().prop_map(|rotated| RefreshReply::Unusable { rotated }),
        2 => (any::<bool>(), any::<bool>())
            .prop_map(|(processed, reported)| RefreshReply::Lost { processed, reported }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any::<bool>(), prop::bool::weighted(0.9))
            .prop_map(|(idempotent, replayable)| Op::Start { idempotent, replayable }),
        8 => (any::<usize>(), reply()).prop_map(|(pick, reply)| Op::Respond { pick, reply }),
        2 => (any::<usize>(), 0u8..3).prop_map(|(pick, kind)| Op::SendError { pick, kind }),
        4 => refresh_reply().prop_map(Op::Refresh),
        2 => (any::<usize>(), refresh_reply()).prop_map(|(pick, reply)| Op::Late { pick, reply }),
        2 => (0u64..40_000).prop_map(Op::Advance),
        2 => Just(Op::FireTimeout),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => (any::<usize>(), 0u8..4).prop_map(|(pick, kind)| Op::Bogus { pick, kind }),
        1 => Just(Op::Logout),
        1 => prop::option::of(1u64..120).prop_map(|expires_s| Op::Login { expires_s }),
        1 => Just(Op::ToggleHold),
    ]
}

/// Cases per property: 512, or `MODEL_CASES`.
fn cases() -> u32 {
    std::env::var("MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    // `MODEL_CASES=100000` for a soak run.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// The headline property: with the default configuration, any interleaving
    /// keeps every invariant (see `Checker`), never replays a request and never
    /// presents a spent refresh token.
    #[test]
    fn no_request_is_replayed_twice(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..120)) {
        run(Config::DEFAULT, seed, &ops);
    }

    /// The same model under non-default limits: refresh-ahead, two auth
    /// retries, a small retry budget and short refresh deadlines.
    #[test]
    fn invariants_hold_under_other_limits(
        seed in any::<u64>(),
        ahead in prop::option::of(1u64..90),
        auth in 0u8..3,
        transient in 0u8..5,
        budget in 1u32..5,
        attempts in 1u8..4,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut config = Config::DEFAULT;
        config.refresh_ahead = ahead.map(Duration::from_secs);
        config.max_auth_retries = auth;
        config.max_transient_retries = transient;
        config.retry_budget.max_tokens = budget;
        config.max_refresh_attempts = attempts;
        config.refresh_timeout = Duration::from_secs(5);
        run(config, seed, &ops);
    }
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        (0u64..120_000).prop_map(Duration::from_millis),
        Just(Duration::from_secs(u64::MAX / 4)),
        Just(Duration::MAX),
    ]
}

fn backoff() -> impl Strategy<Value = refresh_machine::Backoff> {
    (duration(), duration()).prop_map(|(base, max)| refresh_machine::Backoff { base, max })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, ..ProptestConfig::default() })]

    /// Issue 14, rule 7: every `Config` value is safe. Zeros, `u8::MAX`
    /// limits, centuries and `Duration::MAX` in every field: no panic, no
    /// overflow, and every invariant and rule still holds.
    #[test]
    fn every_config_value_is_safe(
        seed in any::<u64>(),
        limits in (any::<u8>(), any::<u8>(), any::<u8>(), any::<u32>(), any::<u32>()),
        durations in (duration(), duration(), duration(), duration(), prop::option::of(duration())),
        backoffs in (backoff(), backoff()),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut config = Config::DEFAULT;
        (
            config.max_auth_retries,
            config.max_transient_retries,
            config.max_refresh_attempts,
            config.retry_budget.max_tokens,
            config.retry_budget.success_credit_milli,
        ) = limits;
        (
            config.max_retry_after,
            config.refresh_timeout,
            config.expiry_skew,
            config.refused_token_cooldown,
            config.refresh_ahead,
        ) = durations;
        (config.request_backoff, config.refresh_backoff) = backoffs;
        run(config, seed, &ops);
    }
}

/// A regression guard for the model itself: a run with ordinary traffic does
/// send requests, refresh, and finish them (the invariants are not vacuous).
#[test]
fn model_exercises_the_machine() {
    let ops = [
        Op::Start {
            idempotent: true,
            replayable: true,
        },
        Op::Start {
            idempotent: false,
            replayable: true,
        },
        Op::Respond {
            pick: 0,
            reply: Reply::Unauthorized,
        },
        Op::Respond {
            pick: 0,
            reply: Reply::Unauthorized,
        },
        Op::Refresh(RefreshReply::Success {
            rotate: true,
            expires_s: None,
        }),
        Op::Respond {
            pick: 0,
            reply: Reply::Ok,
        },
        Op::Respond {
            pick: 0,
            reply: Reply::Ok,
        },
    ];
    let mut w = World::new(Config::DEFAULT, 1);
    for op in ops {
        w.step(op);
    }
    assert_eq!(w.checker.total_refreshes, 1);
    assert_eq!(w.checker.total_sends, 4);
    assert_eq!(w.checker.total_outcomes, 2);
    w.settle();
}
