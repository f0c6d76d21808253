//! The token store: the current pair, its expiry and whether the resource
//! server has refused it.
//!
//! Invariants: `generation` changes whenever the access token does (install
//! or clear), and a cleared store holds no token bytes.

use core::time::Duration;

use crate::error::Error;
use crate::token::{
    check_token, AccessToken, RefreshToken, StoredTokens, TokenBuf, TokenCheck, TokenSet,
};
use crate::Instant;

#[derive(Clone)]
pub(super) struct TokenStore<const CAP: usize> {
    access: TokenBuf<CAP>,
    refresh: TokenBuf<CAP>,
    has_refresh: bool,
    generation: u32,
    expires_at: Option<Instant>,
    /// Lifetime the server gave the current token (`expires_in`).
    lifetime: Option<Duration>,
    /// A 401 was seen for the current token.
    refused: bool,
}

impl<const CAP: usize> TokenStore<CAP> {
    // Not inlined: built in place behind the caller's pointer. Inlined into a
    // caller's constructor, LLVM built the 2 KiB of buffers on the stack and
    // copied them, pulling in the 4-byte-aligned memclr/memcpy builtins
    // (+330 B of flash on thumbv7em).
    #[inline(never)]
    pub(super) const fn new() -> Self {
        TokenStore {
            access: TokenBuf::new(),
            refresh: TokenBuf::new(),
            has_refresh: false,
            generation: 0,
            expires_at: None,
            lifetime: None,
            refused: false,
        }
    }

    /// Both tokens fit and can go into a header.
    pub(super) fn check(tokens: &TokenSet<'_>) -> Result<(), Error> {
        let map = |e| match e {
            TokenCheck::TooLarge => Error::TokenTooLarge { capacity: CAP },
            TokenCheck::Invalid => Error::InvalidToken,
        };
        check_token(tokens.access_token.expose_secret(), CAP).map_err(map)?;
        if let Some(r) = tokens.refresh_token {
            check_token(r.expose_secret(), CAP).map_err(map)?;
        }
        Ok(())
    }

    /// Install a checked set. A set without a refresh token keeps the current one
    /// (a refresh that did not rotate); call [`forget_refresh_token`](Self::forget_refresh_token) first for a login.
    pub(super) fn install(&mut self, now: Instant, tokens: TokenSet<'_>) {
        self.access.set(tokens.access_token.expose_secret());
        if let Some(r) = tokens.refresh_token {
            self.refresh.set(r.expose_secret());
            self.has_refresh = true;
        }
        self.expires_at = tokens.expires_in.map(|d| now + d);
        self.lifetime = tokens.expires_in;
        self.generation = self.generation.wrapping_add(1);
        self.refused = false;
    }

    pub(super) fn forget_refresh_token(&mut self) {
        self.has_refresh = false;
    }

    /// Wipe both tokens.
    pub(super) fn clear(&mut self) {
        self.access.clear();
        self.refresh.clear();
        self.has_refresh = false;
        self.expires_at = None;
        self.lifetime = None;
        self.refused = false;
        self.generation = self.generation.wrapping_add(1);
    }

    #[inline]
    pub(super) fn generation(&self) -> u32 {
        self.generation
    }

    #[inline]
    pub(super) fn access(&self) -> AccessToken<'_> {
        AccessToken::new(self.access.as_str())
    }

    #[inline]
    pub(super) fn has_refresh_token(&self) -> bool {
        self.has_refresh
    }

    pub(super) fn refresh_token(&self) -> Option<RefreshToken<'_>> {
        self.has_refresh
            .then(|| RefreshToken::new(self.refresh.as_str()))
    }

    pub(super) fn stored(&self) -> StoredTokens<'_> {
        StoredTokens {
            access_token: self.access(),
            refresh_token: self.refresh_token(),
            expires_at: self.expires_at,
        }
    }

    #[inline]
    pub(super) fn refused(&self) -> bool {
        self.refused
    }

    /// The resource server refused the current token.
    #[inline]
    pub(super) fn mark_refused(&mut self) {
        self.refused = true;
    }

    /// The current token may be attached to a new send at `now`.
    #[inline]
    pub(super) fn usable(&self, now: Instant, skew: Duration) -> bool {
        !self.refused
            && self
                .expires_at
                .map_or(true, |exp| now.saturating_add(self.margin(skew)) < exp)
    }

    /// Within `ahead` of expiry (refresh-ahead is due).
    #[inline]
    pub(super) fn expires_within(&self, now: Instant, ahead: Duration) -> bool {
        self.expires_at
            .is_some_and(|exp| now.saturating_add(self.margin(ahead)) >= exp)
    }

    /// A safety margin before expiry, at most half the token's lifetime: a server
    /// that issues tokens shorter than the skew still gets each one used.
    #[inline]
    fn margin(&self, wanted: Duration) -> Duration {
        self.lifetime.map_or(wanted, |l| wanted.min(l / 2))
    }

    #[cfg(feature = "model")]
    pub(super) fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        use core::hash::Hash;
        self.access.as_str().hash(state);
        self.refresh.as_str().hash(state);
        self.has_refresh.hash(state);
        self.generation.hash(state);
        self.expires_at.hash(state);
        self.lifetime.hash(state);
        self.refused.hash(state);
    }

    #[cfg(test)]
    pub(super) fn is_wiped(&self) -> bool {
        self.access.as_str().is_empty()
            && self.refresh.as_str().is_empty()
            && !self.has_refresh
            && self.expires_at.is_none()
            && self.lifetime.is_none()
    }
}
