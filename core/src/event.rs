//! Inputs: what happened to a request or a refresh.

use crate::grant::OAuthError;
use crate::retry_after::parse_retry_after;
use crate::token::{RefreshToken, TokenSet};
use crate::www_authenticate::{parse_bearer_challenge, BearerError};
use core::fmt;
use core::time::Duration;

/// What the driver learned from a response to an original request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Retry-After`, already converted to a delay (see [`crate::retry_after`]).
    pub retry_after: Option<Duration>,
    /// The `error` of a Bearer `WWW-Authenticate` challenge, if any (see [`crate::www_authenticate`]).
    pub bearer_error: Option<BearerError>,
    /// The hop that answered carried the token (true unless a redirect took
    /// the request to an origin the token is not for): only then does a 401
    /// say anything about the token.
    pub token_sent: bool,
}

impl Response {
    /// A response with just a status.
    pub const fn status(status: u16) -> Self {
        Response {
            status,
            retry_after: None,
            bearer_error: None,
            token_sent: true,
        }
    }

    /// Whether the hop that answered carried the token (default true). A 401
    /// from a hop without it is delivered as it is, without a refresh.
    pub const fn with_token_sent(mut self, token_sent: bool) -> Self {
        self.token_sent = token_sent;
        self
    }

    /// With a `Retry-After` delay.
    pub const fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// With a Bearer challenge error code.
    pub const fn with_bearer_error(mut self, error: BearerError) -> Self {
        self.bearer_error = Some(error);
        self
    }

    /// Status plus the two headers the machine reads, from any client's
    /// `(name, value)` pairs (names compared case-insensitively).
    ///
    /// Malformed headers are ignored (as if absent): a bad `Retry-After` falls
    /// back to computed backoff, a bad `WWW-Authenticate` to plain-401
    /// handling. The first `Retry-After` counts, and the first
    /// `WWW-Authenticate` that parses as a Bearer challenge. `unix_now`
    /// enables HTTP-date `Retry-After`.
    pub fn from_headers<'h>(
        status: u16,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        unix_now: Option<u64>,
    ) -> Self {
        let mut response = Response::status(status);
        let mut retry_after_seen = false;
        let mut challenge_seen = false;
        for (name, value) in headers {
            if !retry_after_seen && name.eq_ignore_ascii_case("retry-after") {
                retry_after_seen = true;
                response.retry_after = parse_retry_after(value)
                    .ok()
                    .and_then(|r| r.delay(unix_now));
            } else if !challenge_seen && name.eq_ignore_ascii_case("www-authenticate") {
                if let Ok(challenge) = parse_bearer_challenge(value) {
                    challenge_seen = true;
                    response.bearer_error = challenge.error;
                }
            }
        }
        response
    }
}

/// How a send failed before a response arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendErrorKind {
    /// Connecting failed (DNS, refused, TLS handshake): the server never saw the request.
    Connect,
    /// No response in time: the server may have acted on the request.
    Timeout,
    /// The connection broke after the request was (partly) written: it may have been acted on.
    Io,
}

impl SendErrorKind {
    /// True when the server cannot have acted on the request.
    pub const fn never_reached_server(self) -> bool {
        matches!(self, SendErrorKind::Connect)
    }
}

impl fmt::Display for SendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendErrorKind::Connect => "connection failed",
            SendErrorKind::Timeout => "timed out",
            SendErrorKind::Io => "connection broken",
        })
    }
}

/// The result of a refresh the driver performed.
/// [`grant::classify_token_response`](crate::grant::classify_token_response)
/// maps an RFC 6749 token endpoint's answer to one.
#[derive(Clone, Copy, Debug)]
pub enum RefreshOutcome<'a> {
    /// New tokens. A missing refresh token means the server did not rotate it.
    ///
    /// A token that cannot be used (too large, empty, bytes outside visible
    /// ASCII) is handled as [`Unusable`](Self::Unusable) handles it: a usable
    /// access token with an unusable refresh token is used until it expires
    /// (the old refresh token may be spent, so it is dropped); an unusable
    /// access token with a usable refresh token keeps the refresh token.
    Success(TokenSet<'a>),
    /// The server answered 200, so the refresh token presented may be spent,
    /// but gave no usable access token (a DPoP token type, an `error` field,
    /// no or a malformed access token, a body that is not JSON). A new refresh
    /// token it carried is kept and presented by the next attempt; without
    /// one, the session is lost ([`LoginRequiredReason::UnusableTokenResponse`](crate::LoginRequiredReason::UnusableTokenResponse)).
    Unusable {
        /// A new refresh token the answer carried, if any.
        refresh_token: Option<RefreshToken<'a>>,
    },
    /// The grant is dead (`invalid_grant`, revoked, reused): the session is lost.
    Rejected,
    /// The token endpoint refused the client, not the grant (RFC 6749
    /// section 5.2: `invalid_client`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_request`), or the
    /// refresh request could not be built (`None`). A new login would fail the
    /// same way: the tokens are kept, no login-required signal, and the
    /// waiting requests fail [`Failure::RefreshMisconfigured`](crate::Failure::RefreshMisconfigured).
    Misconfigured(Option<OAuthError>),
    /// Might work later (network error, timeout, 5xx, 429). The driver may pass `Retry-After`.
    Transient {
        /// Server-requested delay before the next attempt.
        retry_after: Option<Duration>,
    },
}
