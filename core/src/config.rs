//! Tunables. The defaults suit an interactive app against a typical OAuth2 server.

use core::time::Duration;

/// Exponential backoff with full jitter: a delay drawn uniformly from `[0, min(max, base * 2^n)]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Largest ceiling, however many attempts.
    pub max: Duration,
}

/// Retry throttling as in gRPC: a token bucket shared by all requests.
///
/// Each transient failure takes one token, each success gives back `success_credit_milli / 1000`.
/// Retries are allowed only while more than half the bucket is left, so an outage
/// stops retries instead of multiplying the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RetryBudget {
    /// Bucket size in whole tokens.
    pub max_tokens: u32,
    /// Credit per success, in thousandths of a token.
    pub success_credit_milli: u32,
}

/// Configuration of a [`crate::RefreshMachine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Config {
    /// How many 401s one request may answer with a new token before it fails `Unauthorized`.
    pub max_auth_retries: u8,
    /// Retries of one request after transient errors (connection, timeout, 429, 502-504).
    pub max_transient_retries: u8,
    /// Backoff between transient retries of a request.
    pub request_backoff: Backoff,
    /// Largest `Retry-After` honoured; a longer one ends the retries (the response is delivered).
    pub max_retry_after: Duration,
    /// Shared retry throttle.
    pub retry_budget: RetryBudget,
    /// Refresh attempts per round before waiters fail `RefreshUnavailable`.
    pub max_refresh_attempts: u8,
    /// Backoff between refresh attempts.
    pub refresh_backoff: Backoff,
    /// A refresh with no outcome after this long counts as a transient failure.
    pub refresh_timeout: Duration,
    /// A token within this much of its expiry is treated as expired (refresh first).
    pub expiry_skew: Duration,
    /// When set, a request sent within this much of expiry also starts a background
    /// refresh, while the current token is still used. Each token's threshold is
    /// drawn between half this and this (jitter), so clients sharing an issuer
    /// do not refresh in lockstep.
    pub refresh_ahead: Option<Duration>,
    /// A token just obtained by a refresh and refused (401) before any
    /// success with it: refreshing again would not help (the resource refuses
    /// every token). For this long, further 401s fail `Unauthorized` without a
    /// refresh; a success with the token ends it early. Zero disables it.
    pub refused_token_cooldown: Duration,
}

impl Config {
    /// The defaults (same as `Default`), usable in `const` contexts.
    pub const DEFAULT: Config = Config {
        max_auth_retries: 1,
        max_transient_retries: 3,
        request_backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
        },
        max_retry_after: Duration::from_secs(60),
        retry_budget: RetryBudget {
            max_tokens: 10,
            success_credit_milli: 100,
        },
        max_refresh_attempts: 4,
        refresh_backoff: Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
        },
        refresh_timeout: Duration::from_secs(30),
        expiry_skew: Duration::from_secs(30),
        refresh_ahead: None,
        refused_token_cooldown: Duration::from_secs(30),
    };

    /// The largest number of sends a single request can make under this config.
    pub const fn max_sends(&self) -> u32 {
        1 + self.max_auth_retries as u32 + self.max_transient_retries as u32
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::DEFAULT
    }
}
