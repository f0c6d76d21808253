//! Typed errors: misuse of the machine (`Error`) and per-request failures (`Failure`).
//!
//! Neither ever carries a token: `Display` texts are fixed strings.

use crate::event::SendErrorKind;
use crate::grant::OAuthError;

/// An input the machine refused. The machine's state is unchanged unless the
/// variant says otherwise, and no request loses its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Every request slot is in use; finish or cancel a request first.
    #[error("request table is full")]
    Full,
    /// The id names no live request (never issued, already finished or cancelled).
    #[error("unknown or finished request")]
    UnknownRequest,
    /// The event does not fit the request's state (e.g. a response for a request not in flight).
    #[error("event out of order for this request")]
    UnexpectedEvent,
    /// No refresh with this id is awaiting its outcome (late, duplicated or never issued).
    #[error("no refresh with this id is in flight")]
    UnknownRefresh,
    /// A token longer than the machine's token capacity. If it came from a
    /// refresh, the outcome was handled as `RefreshOutcome::Success`
    /// describes (the session may be lost: the driver gets `LoginRequired`).
    #[error("token exceeds capacity of {capacity} bytes")]
    TokenTooLarge {
        /// The machine's per-token capacity in bytes.
        capacity: usize,
    },
    /// An empty token, or one with bytes that cannot go into an HTTP header.
    #[error("token is empty or has bytes outside visible ASCII")]
    InvalidToken,
}

/// Why a request ended without a response to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// Still 401 after the allowed refresh-and-retry rounds.
    #[error("unauthorized: rejected again after refreshing the token")]
    Unauthorized,
    /// The token lacks scope (`insufficient_scope`); refreshing would not help.
    #[error("forbidden: insufficient scope")]
    Forbidden,
    /// The session is gone (refresh rejected, or no refresh token): log in again.
    #[error("login required")]
    LoginRequired,
    /// The token endpoint stayed unreachable; the tokens are kept.
    #[error("token refresh unavailable; try again later")]
    RefreshUnavailable,
    /// The token endpoint refused the client's configuration (the code, or
    /// `None` when the refresh request could not be built); the tokens are
    /// kept. Fix the configuration: logging in again would not help.
    #[error("token endpoint refused the client configuration")]
    RefreshMisconfigured(Option<OAuthError>),
    /// The user logged out while the request was pending, or before it started.
    #[error("logged out")]
    LoggedOut,
    /// The transport failed and a retry was not allowed or not left.
    #[error("transport error: {0}")]
    Transport(SendErrorKind),
    /// A retry was needed but the request body cannot be sent again.
    #[error("request body cannot be replayed for a retry")]
    BodyNotReplayable,
}
