//! The `Retry-After` and HTTP-date parsers: typed result, never a panic, no
//! overflow when turning a date into a delay, and delays round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refresh_machine::retry_after::{parse_http_date, parse_retry_after, RetryAfter};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_retry_after(data);
    let _ = parse_http_date(data);
    match parsed {
        Ok(RetryAfter::Delay(d)) => {
            // Printing the seconds back parses to the same delay.
            let text = d.as_secs().to_string();
            assert_eq!(
                parse_retry_after(text.as_bytes()),
                Ok(RetryAfter::Delay(d)),
                "{text}"
            );
        }
        Ok(at @ RetryAfter::At(unix)) => {
            for now in [
                None,
                Some(0),
                Some(unix),
                Some(unix.saturating_add(1)),
                Some(u64::MAX),
            ] {
                let delay = at.delay(now);
                if let (Some(d), Some(now)) = (delay, now) {
                    assert!(d.as_secs() <= unix.saturating_sub(now));
                }
            }
        }
        Err(_) => {}
    }
});
