//! What a request or a login can end with. Never contains a token.

use refresh_machine::grant::{GrantError, OAuthError};
use refresh_machine::{Failure, SendErrorKind};

/// Why a request or a login did not produce a response. The variants shared
/// with the std clients (`LoginRequired`, `LoggedOut`, `Unauthorized`,
/// `Forbidden`, `RefreshUnavailable`, `Transport`, `Failed`) mean the same there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session is lost (the grant was refused): log in again.
    #[error("login required: the session was lost")]
    LoginRequired,
    /// The token endpoint refused the grant with this OAuth error.
    #[error("login required: refresh refused ({0})")]
    RefreshRejected(OAuthError),
    /// No session: call `set_tokens` or `login_with_password` first.
    #[error("logged out")]
    LoggedOut,
    /// Still 401 after a refresh and a retry.
    #[error("still unauthorized after refreshing")]
    Unauthorized,
    /// 403 `insufficient_scope`: a new token would not help.
    #[error("forbidden: insufficient scope")]
    Forbidden,
    /// The token endpoint could not be reached or failed; the session is kept.
    #[error("token endpoint unavailable; session kept")]
    RefreshUnavailable,
    /// The token endpoint refused the client, not the grant (`invalid_client`,
    /// `invalid_scope`...; `None`: the refresh could not be built). Session
    /// kept; a new login would fail the same way: fix the configuration.
    #[error("token endpoint refused the client configuration")]
    RefreshMisconfigured(Option<OAuthError>),
    /// The API request failed on the way and was not resent.
    #[error("transport error: {0}")]
    Transport(SendErrorKind),
    /// The server issued a token longer than the client's `TOKEN_CAP`.
    #[error("token larger than the {capacity}-byte capacity")]
    TokenTooLarge {
        /// The capacity it did not fit in.
        capacity: usize,
    },
    /// The token endpoint's answer did not fit the receive buffer.
    #[error("token response larger than the buffer")]
    TokenResponseTooLarge,
    /// The response was received but its body did not fit the receive buffer.
    #[error("response ({status}) larger than the buffer")]
    ResponseTooLarge {
        /// Its status.
        status: u16,
    },
    /// The response headers did not fit the receive buffer.
    #[error("response headers larger than the buffer")]
    ResponseHeadersTooLarge,
    /// The request cannot go on the wire as it is: a path that does not
    /// start with `/` or holds spaces or control characters, a header name
    /// that is not an HTTP token, or CR, LF or NUL in a header value.
    /// Nothing was sent.
    #[error("invalid request: path or header not allowed on the wire")]
    InvalidRequest,
    /// The scratch buffer cannot hold the `Authorization` header or grant body.
    #[error("scratch buffer too small")]
    ScratchTooSmall,
    /// The token endpoint answered the login with this status.
    #[error("login refused with status {status}")]
    LoginRefused {
        /// HTTP status.
        status: u16,
    },
    /// The token endpoint's answer could not be used.
    #[error("token response: {0}")]
    Grant(GrantError),
    /// The machine refused an input (a bug in this driver if it happens).
    #[error("refresh machine: {0}")]
    Machine(refresh_machine::Error),
    /// The machine has nothing to do and no deadline, yet the request is open
    /// (a bug in this driver if it happens).
    #[error("refresh machine stalled")]
    Stalled,
    /// Another failure reported by the machine.
    #[error("{0}")]
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
            Failure::RefreshMisconfigured(c) => Error::RefreshMisconfigured(c),
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
