//! Retry throttling and backoff jitter, shared by every request.

use core::time::Duration;

use crate::config::{Backoff, Config};

/// The gRPC-style retry bucket, in thousandths of a token.
/// Invariant: never above `max_tokens * 1000`.
#[derive(Clone, Debug)]
pub(super) struct Budget {
    milli: u64,
}

impl Budget {
    pub(super) fn new(config: &Config) -> Self {
        Budget {
            milli: u64::from(config.retry_budget.max_tokens) * 1000,
        }
    }

    /// Retries are allowed while more than half the bucket is left.
    #[inline]
    pub(super) fn allows_retry(&self, config: &Config) -> bool {
        self.milli > u64::from(config.retry_budget.max_tokens) * 500
    }

    /// A transient failure takes one token.
    #[inline]
    pub(super) fn debit(&mut self) {
        self.milli = self.milli.saturating_sub(1000);
    }

    /// A success gives back `success_credit_milli`.
    #[inline]
    pub(super) fn credit(&mut self, config: &Config) {
        let max = u64::from(config.retry_budget.max_tokens) * 1000;
        self.milli = (self.milli + u64::from(config.retry_budget.success_credit_milli)).min(max);
    }

    #[cfg(feature = "model")]
    pub(super) fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        use core::hash::Hash;
        self.milli.hash(state);
    }
}

/// The jitter source: SplitMix64, deterministic in its seed.
#[derive(Clone, Debug)]
pub(super) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(super) const fn new(seed: u64) -> Self {
        Jitter { state: seed }
    }

    /// Mix more bits into the state.
    pub(super) fn reseed(&mut self, bits: u64) {
        self.state ^= bits;
        let _ = self.next();
    }

    /// SplitMix64: tiny, good enough for jitter.
    pub(super) fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Full jitter: uniform in `[0, min(max, base * 2^attempt)]`.
    pub(super) fn delay(&mut self, backoff: Backoff, attempt: u8) -> Duration {
        let ceiling = backoff
            .base
            .checked_mul(1u32 << attempt.min(31))
            .unwrap_or(backoff.max)
            .min(backoff.max);
        self.up_to(ceiling)
    }

    /// Uniform in `[0, ceiling]`.
    pub(super) fn up_to(&mut self, ceiling: Duration) -> Duration {
        // Saturating at u64::MAX ns (584 years), without u128 arithmetic.
        let nanos = ceiling
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(ceiling.subsec_nanos()));
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Uniform in [0, nanos]; a ceiling of u64::MAX ns takes every draw.
        match nanos.checked_add(1) {
            Some(span) => Duration::from_nanos(self.next() % span),
            None => Duration::from_nanos(self.next()),
        }
    }

    #[cfg(feature = "model")]
    pub(super) fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        use core::hash::Hash;
        self.state.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_source_is_splitmix64() {
        // Reference outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut j = Jitter::new(0);
        assert_eq!(j.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(j.next(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(j.next(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn jitter_is_full_jitter_up_to_the_ceiling() {
        let mut j = Jitter::new(9);
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for (attempt, ceiling_ms) in [
            (0u8, 100u64),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let ceiling = Duration::from_millis(ceiling_ms);
            let mut highest = Duration::ZERO;
            for _ in 0..400 {
                let d = j.delay(b, attempt);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                highest = highest.max(d);
            }
            assert!(
                highest * 10 > ceiling * 9,
                "attempt {attempt}: max {highest:?}"
            );
        }
        // The ceiling itself is a possible draw: with a 1 ns base both 0 and 1 occur.
        let tiny = Backoff {
            base: Duration::from_nanos(1),
            max: Duration::from_nanos(1),
        };
        let draws: [Duration; 64] = core::array::from_fn(|_| j.delay(tiny, 0));
        assert!(draws.contains(&Duration::ZERO));
        assert!(draws.contains(&Duration::from_nanos(1)));
    }
}
