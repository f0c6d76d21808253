//! Tokens as firmware keeps them across a power cycle, and where it keeps them.
//!
//! The machine's instants count from boot and mean nothing after a restart,
//! so saved expiries are Unix seconds. And a rotating server spends the old
//! refresh token the moment it answers a refresh: the new pair must reach
//! flash before anything else goes out, or a power loss in between leaves a
//! spent refresh token there (and the next boot presents it: a reuse, the
//! whole session revoked).

use core::future::Future;
use core::time::Duration;

use refresh_machine::{AccessToken, Instant, RefreshToken, StoredTokens, TokenSet};

/// Tokens to save, or read back after a restart. Expiries are Unix seconds
/// (`None`: unknown, because the server did not say or the device has no
/// wall clock; a 401 then tells). `Debug` shows no token.
#[derive(Clone, Copy)]
pub struct SavedTokens<'t> {
    /// The access token.
    pub access_token: &'t str,
    /// The refresh token, if the session has one.
    pub refresh_token: Option<&'t str>,
    /// When the access token expires, in Unix seconds.
    pub expires_at: Option<u64>,
    /// When the refresh token expires, in Unix seconds.
    pub refresh_expires_at: Option<u64>,
}

impl core::fmt::Debug for SavedTokens<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SavedTokens")
            .field("access_token", &"<redacted>")
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish()
    }
}

impl<'t> SavedTokens<'t> {
    /// The machine's tokens, with their expiries moved from the machine's
    /// timeline (`now`) to Unix time (`unix_now`), rounded down: a saved
    /// expiry is never later than the real one.
    pub(crate) fn from_stored(t: StoredTokens<'t>, now: Instant, unix_now: Option<u64>) -> Self {
        let unix = |at: Option<Instant>| {
            let left = at?.saturating_duration_since(now);
            unix_now?.checked_add(left.as_secs())
        };
        SavedTokens {
            access_token: t.access_token.expose_secret(),
            refresh_token: t.refresh_token.map(|r| r.expose_secret()),
            expires_at: unix(t.expires_at),
            refresh_expires_at: unix(t.refresh_expires_at),
        }
    }

    /// The tokens as the machine takes them at `unix_now`: lifetimes left
    /// from now (zero if already past; unknown without a wall clock).
    pub(crate) fn token_set(&self, unix_now: Option<u64>) -> TokenSet<'t> {
        let left = |at: Option<u64>| Some(Duration::from_secs(at?.saturating_sub(unix_now?)));
        TokenSet {
            access_token: AccessToken::new(self.access_token),
            refresh_token: self.refresh_token.map(RefreshToken::new),
            expires_in: left(self.expires_at),
            refresh_expires_in: left(self.refresh_expires_at),
        }
    }
}

/// Where the firmware keeps its tokens (flash, EEPROM, a secure element).
///
/// [`Client::send`](crate::Client::send) and
/// [`Client::login_with_password`](crate::Client::login_with_password) call
/// [`save`](Self::save) after every change of the tokens (a login, a
/// refresh, the session's end: `None`) and before anything else goes out: a
/// request retried after a refresh is sent only once the rotated refresh
/// token is saved. Tokens the application gives itself
/// ([`Client::restore_tokens`](crate::Client::restore_tokens),
/// [`Client::set_tokens`](crate::Client::set_tokens)) are not echoed back.
pub trait TokenStore {
    /// Save `tokens` (or erase what was saved, for `None`). Resolve once it
    /// is durable.
    fn save(&mut self, tokens: Option<SavedTokens<'_>>) -> impl Future<Output = ()>;
}

/// No store: the application polls
/// [`Client::take_tokens_changed`](crate::Client::take_tokens_changed)
/// after each call instead (a power loss between a refresh and that poll
/// loses the rotated refresh token).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoStore;

impl TokenStore for NoStore {
    async fn save(&mut self, _tokens: Option<SavedTokens<'_>>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_move_to_unix_time_rounded_down_and_back() {
        let now = Instant::from_millis(100_000);
        let stored = StoredTokens {
            access_token: AccessToken::new("at"),
            refresh_token: Some(RefreshToken::new("rt")),
            expires_at: Some(Instant::from_millis(160_900)),
            refresh_expires_at: None,
        };
        let saved = SavedTokens::from_stored(stored, now, Some(1_000));
        assert_eq!(saved.expires_at, Some(1_060), "60.9 s left saves as 60");
        assert_eq!(saved.refresh_expires_at, None);
        // Read back two minutes later: already expired, lifetime zero.
        let set = saved.token_set(Some(1_120));
        assert_eq!(set.expires_in, Some(Duration::ZERO));
        let set = saved.token_set(Some(1_010));
        assert_eq!(set.expires_in, Some(Duration::from_secs(50)));
        // No wall clock: nothing is known, nothing is claimed.
        assert_eq!(saved.token_set(None).expires_in, None);
        let blind = SavedTokens::from_stored(stored, now, None);
        assert_eq!(blind.expires_at, None);
    }

    #[test]
    fn saved_tokens_never_print_a_token() {
        let saved = SavedTokens {
            access_token: "SECRET-A",
            refresh_token: Some("SECRET-R"),
            expires_at: Some(5),
            refresh_expires_at: None,
        };
        extern crate std;
        let shown = std::format!("{saved:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
