//! `Retry-After` parsing (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.
//!
//! An HTTP-date needs a wall clock to become a delay; the driver passes one
//! when it has it (firmware often does not). Total on any bytes.

use core::time::Duration;

/// A parsed `Retry-After` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`.
    Delay(Duration),
    /// `Retry-After: <HTTP-date>`, as seconds since the Unix epoch.
    At(u64),
}

impl RetryAfter {
    /// The delay from now. `unix_now` is the wall clock in Unix seconds; without it
    /// an HTTP-date cannot be used and `None` is returned. A date in the past is zero.
    pub fn delay(self, unix_now: Option<u64>) -> Option<Duration> {
        match self {
            RetryAfter::Delay(d) => Some(d),
            RetryAfter::At(t) => unix_now.map(|now| Duration::from_secs(t.saturating_sub(now))),
        }
    }
}

/// Why a `Retry-After` value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed Retry-After value")]
pub struct RetryAfterError;

/// Parse a `Retry-After` header value.
///
/// ```
/// use refresh_machine::retry_after::{parse_retry_after, RetryAfter};
/// use core::time::Duration;
/// assert_eq!(parse_retry_after(b"120"), Ok(RetryAfter::Delay(Duration::from_secs(120))));
/// assert_eq!(parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT"), Ok(RetryAfter::At(784111777)));
/// ```
pub fn parse_retry_after(value: &[u8]) -> Result<RetryAfter, RetryAfterError> {
    let v = trim(value);
    if !v.is_empty() && v.iter().all(u8::is_ascii_digit) {
        // Saturate absurd values instead of overflowing.
        let secs = v.iter().fold(0u64, |acc, &d| {
            acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        return Ok(RetryAfter::Delay(Duration::from_secs(secs)));
    }
    parse_http_date(v)
        .map(RetryAfter::At)
        .ok_or(RetryAfterError)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// IMF-fixdate, and the obsolete RFC 850 and asctime forms recipients must accept.
pub fn parse_http_date(v: &[u8]) -> Option<u64> {
    let mut p = Parser { s: v, i: 0 };
    let day_name_len = p.alpha_run();
    let (year, month, day);
    if p.eat(b',') {
        p.expect(b' ')?;
        if day_name_len == 3 {
            // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
            day = p.digits(2)?;
            p.expect(b' ')?;
            month = p.month()?;
            p.expect(b' ')?;
            year = p.digits(4)?;
        } else if (6..=9).contains(&day_name_len) {
            // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
            day = p.digits(2)?;
            p.expect(b'-')?;
            month = p.month()?;
            p.expect(b'-')?;
            let yy = p.digits(2)?;
            // RFC 9110: a two-digit year more than 50 years ahead is in the past century.
            year = if yy < 70 { 2000 + yy } else { 1900 + yy };
        } else {
            return None;
        }
        p.expect(b' ')?;
        let t = p.time()?;
        p.expect(b' ')?;
        p.literal(b"GMT")?;
        p.end()?;
        return to_unix(year, month, day, t);
    }
    // asctime: Sun Nov  6 08:49:37 1994
    if day_name_len != 3 {
        return None;
    }
    p.expect(b' ')?;
    month = p.month()?;
    p.expect(b' ')?;
    day = if p.eat(b' ') {
        p.digits(1)?
    } else {
        p.digits(2)?
    };
    p.expect(b' ')?;
    let t = p.time()?;
    p.expect(b' ')?;
    year = p.digits(4)?;
    p.end()?;
    to_unix(year, month, day, t)
}

fn to_unix(year: u64, month: u64, day: u64, (h, m, s): (u64, u64, u64)) -> Option<u64> {
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || year < 1970 {
        return None;
    }
    // Days from civil (proleptic Gregorian), Howard Hinnant's algorithm, unsigned form.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn alpha_run(&mut self) -> usize {
        let start = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_alphabetic) {
            self.i += 1;
        }
        self.i - start
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        let end = self.i.checked_add(lit.len())?;
        (self.s.get(self.i..end)? == lit).then(|| self.i = end)
    }

    fn end(&self) -> Option<()> {
        (self.i == self.s.len()).then_some(())
    }

    fn digits(&mut self, n: usize) -> Option<u64> {
        let end = self.i.checked_add(n)?;
        let d = self.s.get(self.i..end)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i = end;
        Some(d.iter().fold(0, |a, &b| a * 10 + u64::from(b - b'0')))
    }

    fn month(&mut self) -> Option<u64> {
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let end = self.i.checked_add(3)?;
        let m = self.s.get(self.i..end)?;
        let idx = MONTHS.iter().position(|&name| name == m)?;
        self.i = end;
        Some(idx as u64 + 1)
    }

    fn time(&mut self) -> Option<(u64, u64, u64)> {
        let h = self.digits(2)?;
        self.expect(b':')?;
        let m = self.digits(2)?;
        self.expect(b':')?;
        let s = self.digits(2)?;
        Some((h, m, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_seconds() {
        assert_eq!(
            parse_retry_after(b" 0 "),
            Ok(RetryAfter::Delay(Duration::ZERO))
        );
        assert_eq!(
            parse_retry_after(b"99999999999999999999999999"),
            Ok(RetryAfter::Delay(Duration::from_secs(u64::MAX)))
        );
        assert_eq!(parse_retry_after(b"-1"), Err(RetryAfterError));
        assert_eq!(parse_retry_after(b"1.5"), Err(RetryAfterError));
        assert_eq!(parse_retry_after(b""), Err(RetryAfterError));
    }

    #[test]
    fn three_date_forms_agree() {
        let want = Ok(RetryAfter::At(784_111_777));
        assert_eq!(parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(parse_retry_after(b"Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(parse_retry_after(b"Sun Nov  6 08:49:37 1994"), want);
        assert_eq!(
            parse_retry_after(b"Thu, 01 Jan 1970 00:00:00 GMT"),
            Ok(RetryAfter::At(0))
        );
        assert_eq!(
            parse_retry_after(b"Sun, 29 Feb 2032 23:59:59 GMT"),
            Ok(RetryAfter::At(1_961_711_999))
        );
    }

    /// Two-digit RFC 850 years: 00 to 69 are 2000 to 2069, 70 to 99 are
    /// 1970 to 1999 (mutants of the pivot survived the first runs).
    #[test]
    fn rfc850_two_digit_years_pivot_at_70() {
        let at = |v: &[u8]| parse_http_date(v);
        let imf = |v: &[u8]| parse_http_date(v).unwrap();
        assert_eq!(
            at(b"Saturday, 01-Jan-00 00:00:00 GMT"),
            Some(imf(b"Sat, 01 Jan 2000 00:00:00 GMT"))
        );
        assert_eq!(
            at(b"Tuesday, 26-Nov-30 12:00:00 GMT"),
            Some(imf(b"Tue, 26 Nov 2030 12:00:00 GMT"))
        );
        assert_eq!(
            at(b"Friday, 01-Jan-69 00:00:00 GMT"),
            Some(imf(b"Tue, 01 Jan 2069 00:00:00 GMT"))
        );
        assert_eq!(at(b"Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
        assert_eq!(
            at(b"Friday, 31-Dec-99 23:59:59 GMT"),
            Some(imf(b"Fri, 31 Dec 1999 23:59:59 GMT"))
        );
    }

    #[test]
    fn bad_dates() {
        for bad in [
            &b"Sun, 06 Nov 1994 08:49:37 UTC"[..],
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 6 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37 GMTx",
            b"Sun Nov  6 08:49:37",
            b"Sun, 00 Nov 1960 08:49:37 GMT",
        ] {
            assert_eq!(
                parse_retry_after(bad),
                Err(RetryAfterError),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[test]
    fn delay_needs_wall_clock_for_dates() {
        let at = RetryAfter::At(1_000);
        assert_eq!(at.delay(None), None);
        assert_eq!(at.delay(Some(990)), Some(Duration::from_secs(10)));
        assert_eq!(at.delay(Some(2_000)), Some(Duration::ZERO));
    }

    /// Each field's range on its own: a leap second (60) is a time, minute
    /// 60 and second 61 are not (mutants joining the checks survived).
    #[test]
    fn time_fields_are_checked_one_by_one() {
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:60 GMT"), Some(60));
        assert_eq!(
            parse_http_date(b"Thu, 01 Jan 1970 23:59:59 GMT"),
            Some(86_399)
        );
        for bad in [
            &b"Thu, 01 Jan 1970 00:00:61 GMT"[..],
            b"Thu, 01 Jan 1970 00:60:00 GMT",
            b"Thu, 01 Jan 1970 24:00:00 GMT",
            b"Thu, 00 Jan 1970 00:00:00 GMT",
            b"Thu, 32 Jan 1970 00:00:00 GMT",
            b"Wed, 31 Dec 1969 23:59:59 GMT",
        ] {
            assert_eq!(
                parse_http_date(bad),
                None,
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }
}
