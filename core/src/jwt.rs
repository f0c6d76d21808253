//! The `exp` claim of a JWT access token, read without checking its
//! signature: only a hint for the proactive refresh, for app backends whose
//! token answers carry no `expires_in`. Nothing here trusts the token; the
//! API still decides whether it is valid (a wrong hint costs one 401 and
//! one refresh, as if no lifetime were known).
//!
//! No allocation: the payload is decoded into a caller buffer. Code that
//! never calls it costs firmware nothing (the linker drops it).

use crate::grant::{scan_members, Member};

/// The bytes [`expiry`] needs in its scratch buffer for `token`.
pub const fn scratch_len(token: &str) -> usize {
    token.len() / 4 * 3 + 3
}

/// The `exp` claim (seconds since the Unix epoch) of a JWS compact token
/// (`header.payload.signature`, base64url, RFC 7519), decoded into
/// `scratch`; `None` when `token` is not such a JWT (an opaque token), has
/// no numeric `exp`, or `scratch` is shorter than [`scratch_len`] of the
/// payload. The signature is not checked.
pub fn expiry(token: &str, scratch: &mut [u8]) -> Option<u64> {
    claims(token, scratch).map(|c| c.exp)
}

/// The lifetime left of a JWT that was just issued (a token answer), as a
/// hint: `exp - iat` when the token says when it was issued, so a client
/// whose wall clock is off (a device that never set its clock) still counts
/// the lifetime right; else `exp` against `unix_now`; `None` without a
/// readable `exp`, or without `iat` and a wall clock.
pub fn lifetime(token: &str, scratch: &mut [u8], unix_now: Option<u64>) -> Option<u64> {
    let c = claims(token, scratch)?;
    match c.iat {
        Some(iat) if iat <= c.exp => Some(c.exp - iat),
        _ => unix_now.map(|now| c.exp.saturating_sub(now)),
    }
}

/// The time claims of a JWT.
struct TimeClaims {
    exp: u64,
    iat: Option<u64>,
}

fn claims(token: &str, scratch: &mut [u8]) -> Option<TimeClaims> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        // Five parts: an encrypted JWT (JWE), whose claims are not readable.
        return None;
    }
    let len = base64url_decode(payload.as_bytes(), scratch)?;
    let claims = &mut scratch[..len];
    let (mut exp, mut iat) = (None, None);
    let scanned = scan_members(claims, |key, value| {
        let slot = match key {
            b"exp" => &mut exp,
            b"iat" => &mut iat,
            _ => return,
        };
        *slot = match value {
            Member::Number(n) => whole_seconds(n),
            _ => None,
        };
    });
    // The claims were decoded from the token: wipe them either way.
    claims.fill(0);
    scanned.ok()?;
    Some(TimeClaims { exp: exp?, iat })
}

/// Whole seconds of a non-negative JSON number, `None` if negative.
fn whole_seconds(n: &[u8]) -> Option<u64> {
    if n.first() == Some(&b'-') {
        return None;
    }
    crate::grant::whole_seconds(n)
}

/// Decode base64url (RFC 4648 §5, padding optional) into `out`; the decoded
/// length, or `None` (nothing left in `out`) for a byte outside the
/// alphabet, an impossible length or a short `out`.
fn base64url_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let input = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    if input.len() % 4 == 1 {
        return None;
    }
    let needed = input.len() / 4 * 3 + (input.len() % 4).saturating_sub(1);
    if out.len() < needed {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        }))
    };
    let mut w = 0;
    for chunk in input.chunks(4) {
        let mut n = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            let Some(v) = value(c) else {
                // What was decoded before the bad byte is part of the claims.
                out[..w].fill(0);
                return None;
            };
            n |= v << (18 - 6 * k);
        }
        for k in 0..chunk.len() - 1 {
            out[w] = (n >> (16 - 8 * k)) as u8;
            w += 1;
        }
    }
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"alg":"HS256","typ":"JWT"}`, base64url.
    const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

    fn b64url(bytes: &[u8]) -> std::string::String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut s = std::string::String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for k in 0..=chunk.len() {
                s.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
            }
        }
        s
    }

    fn jwt(claims: &str) -> std::string::String {
        std::format!("{HEADER}.{}.c2lnbmF0dXJl", b64url(claims.as_bytes()))
    }

    fn exp_of(token: &str) -> Option<u64> {
        let mut scratch = [0u8; 512];
        expiry(token, &mut scratch)
    }

    #[test]
    fn reads_the_exp_claim_of_every_payload_length() {
        // Payload lengths 0, 1 and 2 mod 3: every base64 tail.
        for pad in ["", "x", "xy"] {
            let t = jwt(&std::format!(
                r#"{{"sub":"alice{pad}","exp":1700000000,"iat":1}}"#
            ));
            assert_eq!(exp_of(&t), Some(1_700_000_000), "{t}");
        }
        let t = jwt(r#"{"exp":1.7e9,"nested":{"exp":1}}"#);
        assert_eq!(exp_of(&t), Some(1_700_000_000));
    }

    #[test]
    fn anything_else_is_no_hint() {
        let none = [
            "an-opaque-token".into(),
            jwt(r#"{"sub":"alice"}"#),
            jwt(r#"{"exp":"1700000000"}"#),
            jwt(r#"{"exp":-5}"#),
            jwt(r#"{"exp":17"#),
            std::format!("{HEADER}.%%%.sig"),
            std::format!("{HEADER}.e.sig"),
            std::format!("{}.x.y.z", jwt(r#"{"exp":1}"#)),
        ];
        for t in &none {
            assert_eq!(exp_of(t), None, "{t}");
        }
    }

    #[test]
    fn claims_decoded_before_a_bad_byte_are_wiped() {
        let t = jwt(r#"{"exp":1700000000,"secret":"s3cr3t"}"#);
        let mut parts = t.split('.');
        let (header, payload) = (parts.next().unwrap(), parts.next().unwrap());
        // A byte outside the alphabet at the end: all but the last chunk decode.
        let bad = std::format!("{header}.{}*.sig", &payload[..payload.len() - 1]);
        let mut scratch = [0u8; 512];
        assert_eq!(expiry(&bad, &mut scratch), None);
        assert!(
            scratch.iter().all(|&b| b == 0),
            "decoded claims left behind"
        );
    }

    #[test]
    fn a_short_scratch_is_no_hint_and_the_claims_are_wiped() {
        let t = jwt(r#"{"exp":1700000000,"secret":"s3cr3t"}"#);
        let payload = t.split('.').nth(1).unwrap();
        let mut small = [0u8; 8];
        assert_eq!(expiry(&t, &mut small), None);
        let mut exact = std::vec![0u8; scratch_len(payload)];
        assert_eq!(expiry(&t, &mut exact), Some(1_700_000_000));
        assert!(exact.iter().all(|&b| b == 0), "decoded claims left behind");
    }

    #[test]
    fn the_lifetime_counts_from_iat_when_the_token_says() {
        let mut scratch = [0u8; 512];
        let issued = jwt(r#"{"iat":1000,"exp":1900}"#);
        // A wall clock a year ahead (or none) does not make it expired.
        assert_eq!(
            lifetime(&issued, &mut scratch, Some(1000 + 31_536_000)),
            Some(900)
        );
        assert_eq!(lifetime(&issued, &mut scratch, None), Some(900));
        let no_iat = jwt(r#"{"exp":1900}"#);
        assert_eq!(lifetime(&no_iat, &mut scratch, Some(1500)), Some(400));
        assert_eq!(lifetime(&no_iat, &mut scratch, Some(2500)), Some(0));
        assert_eq!(lifetime(&no_iat, &mut scratch, None), None);
        // An `iat` after `exp` is nonsense: the wall clock decides.
        let odd = jwt(r#"{"iat":2000,"exp":1900}"#);
        assert_eq!(lifetime(&odd, &mut scratch, Some(1800)), Some(100));
    }
}
