//! `WWW-Authenticate` parsing for Bearer challenges (RFC 6750 §3, RFC 9110 §11.6.1).
//!
//! Only what the refresh decision needs: does the header carry a Bearer
//! challenge, and what is its `error`. Total on any bytes: never panics,
//! never allocates.

use core::fmt;

/// The `error` attribute of a Bearer challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerError {
    /// `invalid_token`: expired, revoked or malformed; refreshing may help.
    InvalidToken,
    /// `insufficient_scope`: a new token of the same grant will not help.
    InsufficientScope,
    /// `invalid_request`: the request itself is malformed.
    InvalidRequest,
    /// Any other code.
    Other,
}

/// The Bearer challenge found in a header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BearerChallenge {
    /// Its `error`, if it had one.
    pub error: Option<BearerError>,
}

/// Why a header value could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// Not valid challenge syntax at the given byte offset.
    #[error("malformed WWW-Authenticate at byte {0}")]
    Malformed(usize),
    /// Well-formed, but no Bearer challenge in it.
    #[error("no Bearer challenge")]
    NoBearer,
}

/// Parse a `WWW-Authenticate` value and return its Bearer challenge.
///
/// ```
/// use refresh_machine::www_authenticate::{parse_bearer_challenge, BearerError};
/// let c = parse_bearer_challenge(br#"Basic realm="x", Bearer realm="api", error="insufficient_scope""#).unwrap();
/// assert_eq!(c.error, Some(BearerError::InsufficientScope));
/// ```
pub fn parse_bearer_challenge(value: &[u8]) -> Result<BearerChallenge, ChallengeError> {
    let mut p = Cursor { s: value, i: 0 };
    let mut in_bearer = false;
    let mut found: Option<BearerChallenge> = None;
    loop {
        p.skip_list_separators();
        if p.at_end() {
            break;
        }
        let name = p.token().ok_or(ChallengeError::Malformed(p.i))?;
        let after_name = p.i;
        let had_space = p.skip_ws();
        if p.peek() == Some(b'=') && p.param_follows() {
            // auth-param of the current challenge
            p.i += 1;
            p.skip_ws();
            let value = p.value().ok_or(ChallengeError::Malformed(p.i))?;
            if in_bearer && name.eq_ignore_ascii_case(b"error") {
                if let Some(c) = found.as_mut() {
                    c.error = Some(classify(value));
                }
            }
            continue;
        }
        // a new challenge: auth-scheme
        p.i = after_name;
        in_bearer = name.eq_ignore_ascii_case(b"Bearer");
        if in_bearer && found.is_none() {
            found = Some(BearerChallenge { error: None });
        } else if in_bearer {
            // A second Bearer challenge: keep the first one's error.
            in_bearer = false;
        }
        let had_space = had_space && p.skip_ws();
        if had_space && !matches!(p.peek(), None | Some(b',')) {
            // Either token68 or the first auth-param.
            let start = p.i;
            let name = p.token68().ok_or(ChallengeError::Malformed(p.i))?;
            p.skip_ws();
            if p.peek() == Some(b'=') && p.param_follows() && !name.contains(&b'=') {
                p.i += 1;
                p.skip_ws();
                let value = p.value().ok_or(ChallengeError::Malformed(p.i))?;
                if in_bearer && name.eq_ignore_ascii_case(b"error") {
                    if let Some(c) = found.as_mut() {
                        c.error = Some(classify(value));
                    }
                }
            } else if !matches!(p.peek(), None | Some(b',')) {
                return Err(ChallengeError::Malformed(start));
            }
        }
    }
    found.ok_or(ChallengeError::NoBearer)
}

fn classify(code: Value<'_>) -> BearerError {
    if code.eq(b"invalid_token") {
        BearerError::InvalidToken
    } else if code.eq(b"insufficient_scope") {
        BearerError::InsufficientScope
    } else if code.eq(b"invalid_request") {
        BearerError::InvalidRequest
    } else {
        BearerError::Other
    }
}

/// A parameter value: a token, or a quoted-string still holding its escapes.
#[derive(Clone, Copy)]
struct Value<'a> {
    raw: &'a [u8],
    quoted: bool,
}

impl Value<'_> {
    /// Compare with the unescaped value, without allocating.
    fn eq(&self, want: &[u8]) -> bool {
        if !self.quoted {
            return self.raw == want;
        }
        let mut it = self.raw.iter();
        let mut w = want.iter();
        while let Some(&b) = it.next() {
            let b = if b == b'\\' {
                match it.next() {
                    Some(&e) => e,
                    None => return false,
                }
            } else {
                b
            };
            if w.next() != Some(&b) {
                return false;
            }
        }
        w.next().is_none()
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({} bytes)", self.raw.len())
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.i.saturating_add(k)).copied()
    }

    /// Skip spaces and tabs; true if any were skipped.
    fn skip_ws(&mut self) -> bool {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i > start
    }

    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// At '=': is it `name = value` rather than token68 padding (`==`, `=,`, `=` at end)?
    fn param_follows(&self) -> bool {
        let mut k = 1;
        while matches!(self.peek_at(k), Some(b' ' | b'\t')) {
            k += 1;
        }
        !matches!(self.peek_at(k), None | Some(b'=' | b','))
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }

    fn token68(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_token68) {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        // Padding only counts as token68 when it is not the start of `= value`.
        while self.peek() == Some(b'=') && !self.param_follows() {
            self.i += 1;
        }
        Some(&self.s[start..self.i])
    }

    fn value(&mut self) -> Option<Value<'a>> {
        if self.peek() != Some(b'"') {
            return self.token().map(|raw| Value { raw, quoted: false });
        }
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    self.peek_at(1)?;
                    self.i += 2;
                }
                _ => self.i += 1,
            }
        }
        let raw = &self.s[start..self.i];
        self.i += 1;
        Some(Value { raw, quoted: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(v: &str) -> Option<BearerError> {
        parse_bearer_challenge(v.as_bytes()).unwrap().error
    }

    #[test]
    fn rfc6750_examples() {
        assert_eq!(err(r#"Bearer realm="example""#), None);
        assert_eq!(
            err(
                r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#
            ),
            Some(BearerError::InvalidToken)
        );
        assert_eq!(
            err(r#"Bearer error="insufficient_scope", scope="read""#),
            Some(BearerError::InsufficientScope)
        );
        assert_eq!(err("Bearer"), None);
        assert_eq!(
            err("bearer error=invalid_request"),
            Some(BearerError::InvalidRequest)
        );
        assert_eq!(err(r#"Bearer error="x\"y""#), Some(BearerError::Other));
        assert_eq!(
            err(r#"Bearer error="insufficient\_scope""#),
            Some(BearerError::InsufficientScope)
        );
    }

    #[test]
    fn several_challenges() {
        assert_eq!(
            err(r#"Basic realm="a", Bearer error="invalid_token", DPoP algs="ES256""#),
            Some(BearerError::InvalidToken)
        );
        assert_eq!(
            err(r#"Negotiate abc/def==, Bearer realm="r", error="insufficient_scope""#),
            Some(BearerError::InsufficientScope)
        );
        assert_eq!(err("Basic, Bearer"), None);
        // the error of another scheme is not the Bearer error
        assert_eq!(err(r#"Bearer realm="a", DPoP error="invalid_token""#), None);
    }

    #[test]
    fn malformed_and_missing() {
        assert_eq!(parse_bearer_challenge(b""), Err(ChallengeError::NoBearer));
        assert_eq!(
            parse_bearer_challenge(br#"Basic realm="x""#),
            Err(ChallengeError::NoBearer)
        );
        assert!(matches!(
            parse_bearer_challenge(br#"Bearer error=""#),
            Err(ChallengeError::Malformed(_))
        ));
        assert!(matches!(
            parse_bearer_challenge(b"Bearer error=\"a\\"),
            Err(ChallengeError::Malformed(_))
        ));
        assert!(matches!(
            parse_bearer_challenge(b"=x"),
            Err(ChallengeError::Malformed(_))
        ));
        assert!(matches!(
            parse_bearer_challenge(b"Bearer a b"),
            Err(ChallengeError::Malformed(_))
        ));
    }

    #[test]
    fn never_panics_on_short_inputs() {
        // Every byte string of length <= 3 over an alphabet of the syntax's significant bytes.
        let alphabet = b"Bb=\", \\\te\xff";
        let mut buf = [0u8; 3];
        for len in 0..=3usize {
            let total = alphabet.len().pow(len as u32);
            for mut n in 0..total {
                for slot in buf.iter_mut().take(len) {
                    *slot = alphabet[n % alphabet.len()];
                    n /= alphabet.len();
                }
                let _ = parse_bearer_challenge(&buf[..len]);
            }
        }
    }

    /// Where the grammar is strict: token68 needs the space after its
    /// scheme, a token68 is not followed by another token, and a space
    /// after `=` still makes a parameter (mutants of each guard survived).
    #[test]
    fn token68_and_parameter_boundaries() {
        let parse = |v: &str| parse_bearer_challenge(v.as_bytes());
        // `/` is a token68 byte but not a token byte: it cannot follow a scheme directly.
        assert_eq!(parse("Bearer/abc"), Err(ChallengeError::Malformed(6)));
        assert_eq!(parse("Bearer abc def"), Err(ChallengeError::Malformed(7)));
        assert_eq!(parse("Bearer abc =,"), Err(ChallengeError::Malformed(7)));
        assert_eq!(
            parse("Negotiate abc, Bearer error=invalid_token"),
            Ok(BearerChallenge {
                error: Some(BearerError::InvalidToken)
            })
        );
        assert_eq!(err("Negotiate abc, Bearer"), None);
        assert_eq!(
            err("Bearer error= invalid_token"),
            Some(BearerError::InvalidToken)
        );
        assert_eq!(
            err("Bearer realm=x, error =\t\"insufficient_scope\""),
            Some(BearerError::InsufficientScope)
        );
    }

    #[test]
    fn values_print_only_their_length() {
        let v = Value {
            raw: b"secret",
            quoted: true,
        };
        assert_eq!(std::format!("{v:?}"), "Value(6 bytes)");
    }
}
