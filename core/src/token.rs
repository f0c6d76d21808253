//! Token storage and redacted views.
//!
//! Tokens live in fixed-capacity buffers inside the machine, so firmware
//! chooses the memory cost at compile time. Every type that can show a token
//! redacts it in `Debug`; the bytes are reachable only through `expose_secret`.

use core::fmt;
use core::time::Duration;

/// Fixed-capacity storage for one token; never printed. 8-byte aligned so
/// that wiping it uses the same aligned memclr as the rest of the machine on
/// 32-bit targets (a 4-byte-aligned buffer pulls in another 174 B of flash).
#[derive(Clone)]
#[repr(align(8))]
pub(crate) struct TokenBuf<const CAP: usize> {
    bytes: [u8; CAP],
    len: usize,
}

impl<const CAP: usize> TokenBuf<CAP> {
    pub(crate) const fn new() -> Self {
        TokenBuf {
            bytes: [0; CAP],
            len: 0,
        }
    }

    /// Caller has validated `s` with [`check_token`].
    pub(crate) fn set(&mut self, s: &str) {
        // Wiped first: a shorter token must not leave the tail of the longer
        // one it replaces (tokens change rarely; this is not the hot path).
        self.clear();
        let n = s.len().min(CAP);
        self.bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        self.len = n;
    }

    pub(crate) fn clear(&mut self) {
        self.bytes = [0; CAP];
        self.len = 0;
    }
}

/// Dropped tokens are wiped: a machine's memory, once freed or reused,
/// holds no secret.
impl<const CAP: usize> Drop for TokenBuf<CAP> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.bytes);
        self.len = 0;
        #[cfg(test)]
        tests::observe_drop(&self.bytes);
    }
}

impl<const CAP: usize> TokenBuf<CAP> {
    pub(crate) fn as_str(&self) -> &str {
        // Only validated visible-ASCII bytes are ever stored, so this cannot fail;
        // the fallback keeps the no-panic promise regardless.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

/// Why a token was refused at the boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    TooLarge,
    Invalid,
}

/// A token must fit and must be safe to put in an HTTP header:
/// non-empty, visible ASCII only (RFC 6749 appendix A: VSCHAR).
pub(crate) fn check_token(s: &str, cap: usize) -> Result<(), TokenCheck> {
    if s.len() > cap {
        return Err(TokenCheck::TooLarge);
    }
    if s.is_empty() || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(TokenCheck::Invalid);
    }
    Ok(())
}

macro_rules! secret_view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub struct $name<'a>(&'a str);

        impl<'a> $name<'a> {
            /// Wrap a borrowed token.
            pub const fn new(token: &'a str) -> Self {
                $name(token)
            }

            /// The token itself. Named so that every use is visible in review.
            pub const fn expose_secret(&self) -> &'a str {
                self.0
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted, {} bytes>)"), self.0.len())
            }
        }
    };
}

secret_view!(
    /// A borrowed access token: what goes into `Authorization: Bearer`.
    AccessToken
);
secret_view!(
    /// A borrowed refresh token: only ever sent to the token endpoint.
    RefreshToken
);

/// Tokens handed to the machine at login or by a successful refresh.
#[derive(Clone, Copy)]
pub struct TokenSet<'a> {
    /// The access token.
    pub access_token: AccessToken<'a>,
    /// The refresh token; `None` after a refresh means "not rotated, keep the old one".
    pub refresh_token: Option<RefreshToken<'a>>,
    /// Lifetime of the access token from now (`expires_in`), if the server said.
    pub expires_in: Option<Duration>,
    /// Lifetime of the refresh token from now (`refresh_expires_in`, sent by
    /// Keycloak and others), if the server said. A refresh token known to be
    /// expired is never presented.
    pub refresh_expires_in: Option<Duration>,
}

impl<'a> TokenSet<'a> {
    /// An access token with no refresh token and no known lifetime.
    pub const fn new(access_token: &'a str) -> Self {
        TokenSet {
            access_token: AccessToken::new(access_token),
            refresh_token: None,
            expires_in: None,
            refresh_expires_in: None,
        }
    }

    /// With a refresh token.
    pub const fn with_refresh_token(mut self, refresh_token: &'a str) -> Self {
        self.refresh_token = Some(RefreshToken::new(refresh_token));
        self
    }

    /// With a lifetime from now.
    pub const fn with_expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_in = Some(expires_in);
        self
    }

    /// With the refresh token's lifetime from now.
    pub const fn with_refresh_expires_in(mut self, refresh_expires_in: Duration) -> Self {
        self.refresh_expires_in = Some(refresh_expires_in);
        self
    }
}

impl fmt::Debug for TokenSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .finish()
    }
}

/// The session's current tokens, as handed to the driver for storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredTokens<'a> {
    /// Current access token.
    pub access_token: AccessToken<'a>,
    /// Current refresh token, if the session has one.
    pub refresh_token: Option<RefreshToken<'a>>,
    /// When the access token expires on the driver's clock, if known.
    pub expires_at: Option<crate::Instant>,
    /// When the refresh token expires on the driver's clock, if known: the
    /// session ends then unless the user is active before.
    pub refresh_expires_at: Option<crate::Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::vec::Vec;

    std::thread_local! {
        /// What each dropped buffer held at the end of its `drop`: all zero?
        static DROPPED: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn observe_drop(bytes: &[u8]) {
        DROPPED.with(|d| d.borrow_mut().push(bytes.iter().all(|&b| b == 0)));
    }

    /// Issue 14, rule 8: the machine was not wiped on drop.
    #[test]
    fn a_dropped_machine_leaves_its_token_buffers_wiped() {
        use crate::{Config, Instant, RefreshMachine};
        DROPPED.with(|d| d.borrow_mut().clear());
        let mut m: RefreshMachine<1, 32> = RefreshMachine::new(Config::DEFAULT, 0);
        m.login(
            Instant::ZERO,
            TokenSet::new("access-secret").with_refresh_token("refresh-secret"),
        )
        .unwrap();
        drop(m);
        let dropped = DROPPED.with(|d| d.borrow().clone());
        assert_eq!(dropped, [true, true], "access and refresh buffers wiped");
    }

    #[test]
    fn clear_zeroes_every_byte() {
        let mut b: TokenBuf<8> = TokenBuf::new();
        b.set("secret12");
        assert_eq!(b.as_str(), "secret12");
        b.clear();
        assert_eq!(b.as_str(), "");
        assert_eq!(b.bytes, [0; 8]);
    }

    /// Issue 14, rule 8: replacing a token left the tail of the longer
    /// previous one in the buffer.
    #[test]
    fn a_shorter_token_wipes_the_tail_of_the_one_it_replaces() {
        let mut b: TokenBuf<16> = TokenBuf::new();
        b.set("previous-secret!");
        b.set("new");
        assert_eq!(b.as_str(), "new");
        assert_eq!(&b.bytes[..3], b"new");
        assert_eq!(b.bytes[3..], [0; 13], "tail of the old token left behind");
    }

    #[test]
    fn a_token_of_exactly_the_capacity_fits() {
        assert_eq!(check_token("abcd", 4), Ok(()));
        assert_eq!(check_token("abcde", 4), Err(TokenCheck::TooLarge));
        assert_eq!(check_token("", 4), Err(TokenCheck::Invalid));
        assert_eq!(check_token("a b", 4), Err(TokenCheck::Invalid));
    }
}
