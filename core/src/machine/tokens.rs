//! The token store: the current pair, its expiry, and what the resource
//! server has said about it (refused, accepted, cooling down).
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
    /// When the refresh token expires, if the server said.
    refresh_expires_at: Option<Instant>,
    /// How long before expiry refresh-ahead is due for this token (drawn at
    /// install: jitter), when configured.
    ahead: Option<Duration>,
    /// A 401 was seen for the current token.
    refused: bool,
    /// The current token came from a refresh (not a login).
    from_refresh: bool,
    /// The resource server accepted the current token at least once.
    accepted: bool,
    /// Refreshes installed since the resource server last accepted a token.
    unconfirmed_refreshes: u8,
    /// A fresh token was refused: until then, 401s do not refresh. Kept once
    /// past: each unproven token has one cool-down.
    cooldown_until: Option<Instant>,
}

/// Refreshes in a row with no accepted response between them after which
/// expiry alone no longer starts another (a server announcing lifetimes the
/// client cannot honour; a 401 still refreshes).
const MAX_UNCONFIRMED_REFRESHES: u8 = 3;

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
            refresh_expires_at: None,
            ahead: None,
            refused: false,
            from_refresh: false,
            accepted: false,
            unconfirmed_refreshes: 0,
            cooldown_until: None,
        }
    }

    /// Both tokens fit and can go into a header.
    pub(super) fn check(tokens: &TokenSet<'_>) -> Result<(), Error> {
        Self::check_one(tokens.access_token.expose_secret())?;
        if let Some(r) = tokens.refresh_token {
            Self::check_one(r.expose_secret())?;
        }
        Ok(())
    }

    /// One token fits and can go into a header.
    pub(super) fn check_one(token: &str) -> Result<(), Error> {
        check_token(token, CAP).map_err(|e| match e {
            TokenCheck::TooLarge => Error::TokenTooLarge { capacity: CAP },
            TokenCheck::Invalid => Error::InvalidToken,
        })
    }

    /// Install a checked set. A set without a refresh token keeps the current one
    /// (a refresh that did not rotate); call [`forget_refresh_token`](Self::forget_refresh_token) first for a login.
    /// `from_refresh` for a refresh's answer; `ahead`: this token's
    /// refresh-ahead window, see [`ahead_due`](Self::ahead_due).
    pub(super) fn install(
        &mut self,
        now: Instant,
        tokens: TokenSet<'_>,
        from_refresh: bool,
        ahead: Option<Duration>,
    ) {
        self.access.set(tokens.access_token.expose_secret());
        self.install_refresh(now, tokens.refresh_token, tokens.refresh_expires_in);
        self.expires_at = tokens.expires_in.map(|d| now.saturating_add(d));
        self.lifetime = tokens.expires_in;
        self.generation = self.generation.wrapping_add(1);
        self.ahead = ahead;
        self.refused = false;
        self.accepted = false;
        self.from_refresh = from_refresh;
        self.cooldown_until = None;
        self.unconfirmed_refreshes = if from_refresh {
            self.unconfirmed_refreshes.saturating_add(1)
        } else {
            0
        };
    }

    /// A new refresh token (`None`: not rotated, keep the current one) and
    /// its lifetime, leaving the access token as it is. Caller checked it.
    pub(super) fn install_refresh(
        &mut self,
        now: Instant,
        token: Option<RefreshToken<'_>>,
        lifetime: Option<Duration>,
    ) {
        if let Some(r) = token {
            self.refresh.set(r.expose_secret());
            self.has_refresh = true;
            self.refresh_expires_at = None;
        }
        if let Some(l) = lifetime {
            self.refresh_expires_at = Some(now.saturating_add(l));
        }
    }

    /// The refresh token is known to have expired by `now`.
    #[inline]
    pub(super) fn refresh_expired(&self, now: Instant) -> bool {
        self.refresh_expires_at.is_some_and(|t| now >= t)
    }

    /// The resource server accepted the current token.
    pub(super) fn accept(&mut self) {
        self.accepted = true;
        self.unconfirmed_refreshes = 0;
        // Ends a cool-down; `accepted` rules out another for this token.
        self.cooldown_until = None;
    }

    /// The current token came from a refresh and nothing has accepted it yet.
    #[inline]
    pub(super) fn fresh_and_unproven(&self) -> bool {
        self.from_refresh && !self.accepted
    }

    /// A 401 for the current token should start a cool-down: it is fresh,
    /// unproven, and has not had its cool-down yet (one per token, so a
    /// refresh is tried again once it ends).
    #[inline]
    pub(super) fn due_for_cool_down(&self) -> bool {
        self.fresh_and_unproven() && self.cooldown_until.is_none()
    }

    /// Refuse 401-driven refreshes until `until`.
    pub(super) fn cool_down(&mut self, until: Instant) {
        self.cooldown_until = Some(until);
    }

    /// Within the refused-token cool-down at `now`.
    #[inline]
    pub(super) fn cooling_down(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|t| now < t)
    }

    /// Drop the refresh token (a login brings its own; a spent one must
    /// never be presented again).
    pub(super) fn forget_refresh_token(&mut self) {
        self.refresh.clear();
        self.has_refresh = false;
        self.refresh_expires_at = None;
    }

    /// Wipe both tokens.
    pub(super) fn clear(&mut self) {
        self.access.clear();
        self.refresh.clear();
        self.has_refresh = false;
        self.refresh_expires_at = None;
        self.expires_at = None;
        self.lifetime = None;
        self.refused = false;
        self.from_refresh = false;
        self.accepted = false;
        self.unconfirmed_refreshes = 0;
        self.cooldown_until = None;
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
            refresh_expires_at: self.refresh_expires_at.filter(|_| self.has_refresh),
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
    ///
    /// A token refused by the resource server never is. An expired one is,
    /// when `just_obtained` (the requests that waited for a refresh use its
    /// token at least once, whatever its announced lifetime) or after
    /// [`MAX_UNCONFIRMED_REFRESHES`] refreshes in a row that nothing
    /// accepted: the lifetime cannot be honoured, a 401 will tell.
    #[inline]
    pub(super) fn usable(&self, now: Instant, skew: Duration, just_obtained: bool) -> bool {
        !self.refused
            && (just_obtained
                || self.unconfirmed_refreshes >= MAX_UNCONFIRMED_REFRESHES
                || self
                    .expires_at
                    .map_or(true, |exp| now.saturating_add(self.margin(skew)) < exp))
    }

    /// Refresh-ahead is configured and due: within this token's window of
    /// expiry, and the token is not an unproven fresh one (whose own refresh
    /// would follow at once).
    #[inline]
    pub(super) fn ahead_due(&self, now: Instant) -> bool {
        match (self.ahead, self.expires_at) {
            (Some(ahead), Some(exp)) if !self.fresh_and_unproven() => {
                now.saturating_add(self.margin(ahead)) >= exp
            }
            _ => false,
        }
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
        self.refresh_expires_at.hash(state);
        self.ahead.hash(state);
        self.refused.hash(state);
        self.from_refresh.hash(state);
        self.accepted.hash(state);
        self.unconfirmed_refreshes.hash(state);
        self.cooldown_until.hash(state);
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
