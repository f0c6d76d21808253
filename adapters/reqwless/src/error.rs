//! What a request or a login can end with. Never contains a token.

use core::fmt;

use refresh_machine::grant::{GrantError, OAuthError};
use refresh_machine::{Failure, SendErrorKind};

/// Why a request or a login did not produce a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The session is lost (the grant was refused): log in again.
    LoginRequired,
    /// The token endpoint refused the grant with this OAuth error.
    RefreshRejected(OAuthError),
    /// No session: call `set_tokens` or `login_with_password` first.
    LoggedOut,
    /// Still 401 after a refresh and a retry.
    Unauthorized,
    /// 403 `insufficient_scope`: a new token would not help.
    Forbidden,
    /// The token endpoint could not be reached or failed; the session is kept.
    RefreshUnavailable,
    /// The API request failed on the way and was not resent.
    Transport(SendErrorKind),
    /// The server issued a token longer than the client's `TOKEN_CAP`.
    TokenTooLarge {
        /// The capacity it did not fit in.
        capacity: usize,
    },
    /// The token endpoint's answer did not fit the receive buffer.
    TokenResponseTooLarge,
    /// The response was received but its body did not fit the receive buffer.
    ResponseTooLarge {
        /// Its status.
        status: u16,
    },
    /// The response headers did not fit the receive buffer.
    ResponseHeadersTooLarge,
    /// The scratch buffer cannot hold the `Authorization` header or grant body.
    ScratchTooSmall,
    /// The token endpoint answered the login with this status.
    LoginRefused {
        /// HTTP status.
        status: u16,
    },
    /// The token endpoint's answer could not be used.
    Grant(GrantError),
    /// The machine refused an input (a bug in this driver if it happens).
    Machine(refresh_machine::Error),
    /// The machine has nothing to do and no deadline, yet the request is open
    /// (a bug in this driver if it happens).
    Stalled,
    /// Another failure reported by the machine.
    Failed(Failure),
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::LoginRequired => Error::LoginRequired,
            Failure::LoggedOut => Error::LoggedOut,
            Failure::Unauthorized => Error::Unauthorized,
            Failure::Forbidden => Error::Forbidden,
            Failure::RefreshUnavailable => Error::RefreshUnavailable,
            Failure::Transport(k) => Error::Transport(k),
            other => Error::Failed(other),
        }
    }
}

impl From<refresh_machine::Error> for Error {
    fn from(e: refresh_machine::Error) -> Self {
        match e {
            refresh_machine::Error::TokenTooLarge { capacity } => Error::TokenTooLarge { capacity },
            other => Error::Machine(other),
        }
    }
}

impl From<GrantError> for Error {
    fn from(e: GrantError) -> Self {
        Error::Grant(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LoginRequired => f.write_str("login required: the session was lost"),
            Error::RefreshRejected(code) => write!(f, "login required: refresh refused ({code})"),
            Error::LoggedOut => f.write_str("logged out"),
            Error::Unauthorized => f.write_str("still unauthorized after refreshing"),
            Error::Forbidden => f.write_str("forbidden: insufficient scope"),
            Error::RefreshUnavailable => f.write_str("token endpoint unavailable; session kept"),
            Error::Transport(k) => write!(f, "transport error: {k:?}"),
            Error::TokenTooLarge { capacity } => {
                write!(f, "token larger than the {capacity}-byte capacity")
            }
            Error::TokenResponseTooLarge => f.write_str("token response larger than the buffer"),
            Error::ResponseTooLarge { status } => {
                write!(f, "response ({status}) larger than the buffer")
            }
            Error::ResponseHeadersTooLarge => {
                f.write_str("response headers larger than the buffer")
            }
            Error::ScratchTooSmall => f.write_str("scratch buffer too small"),
            Error::LoginRefused { status } => write!(f, "login refused with status {status}"),
            Error::Grant(e) => write!(f, "token response: {e}"),
            Error::Machine(e) => write!(f, "refresh machine: {e}"),
            Error::Stalled => f.write_str("refresh machine stalled"),
            Error::Failed(x) => write!(f, "{x}"),
        }
    }
}

impl core::error::Error for Error {}
