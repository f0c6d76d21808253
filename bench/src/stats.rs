//! Latency samples and their summary.

use std::time::Duration;

/// What a series of sequential requests measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Requests measured.
    pub count: usize,
    /// Requests per second over the summed latencies (one request at a time).
    pub per_second: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

/// The `q`-quantile (0..=1) by nearest rank; `None` for no samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarise latencies (any order); `None` for no samples.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let total: Duration = sorted.iter().sum();
    Some(Summary {
        count: sorted.len(),
        per_second: if total.is_zero() {
            0.0
        } else {
            sorted.len() as f64 / total.as_secs_f64()
        },
        p50: quantile(&sorted, 0.50)?,
        p99: quantile(&sorted, 0.99)?,
    })
}

/// The median of a few durations (e.g. repeated round trips).
pub fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    quantile(&sorted, 0.5)
}

/// Microseconds with one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_quantiles() {
        let s: Vec<Duration> = (1..=100).map(ms_).collect();
        assert_eq!(quantile(&s, 0.5), Some(ms_(50)));
        assert_eq!(quantile(&s, 0.99), Some(ms_(99)));
        assert_eq!(quantile(&s, 1.0), Some(ms_(100)));
        assert_eq!(quantile(&s, 0.0), Some(ms_(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn summary_of_unsorted_samples() {
        let s = summarize(&[ms_(30), ms_(10), ms_(20), ms_(40)]).unwrap();
        assert_eq!(s.count, 4);
        assert_eq!(s.p50, ms_(20));
        assert_eq!(s.p99, ms_(40));
        assert!((s.per_second - 40.0).abs() < 1e-9);
        assert_eq!(median(&[ms_(5), ms_(1), ms_(3)]), Some(ms_(3)));
    }
}
