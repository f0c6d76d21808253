//! The failures a std driver reports: one vocabulary for every client.
//!
//! `R` is what a failure keeps of the response that caused it (the whole
//! response for ureq, its status for reqwest); `E` is the client's transport
//! error. No variant carries a token, and no text needs parsing: match on
//! the variant.

use refresh_machine::Failure;

use crate::grant::EndpointError;
use crate::origin::InvalidOrigin;

/// Everything a request (or a login) can end with, other than a response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<R, E> {
    /// The refresh grant was rejected: the user must log in again.
    #[error("login required")]
    LoginRequired,
    /// No session: never logged in, or logged out.
    #[error("logged out")]
    LoggedOut,
    /// The token endpoint stayed unreachable; the tokens were kept, try later.
    #[error("token refresh unavailable")]
    RefreshUnavailable,
    /// The token endpoint refused the client, not the grant (the RFC 6749
    /// code: `invalid_client`, `invalid_scope`...; `None` when the refresh
    /// request could not be built). The tokens were kept; a new login would
    /// fail the same way: fix the configuration.
    #[error("token endpoint refused the client configuration")]
    RefreshMisconfigured(Option<refresh_machine::grant::OAuthError>),
    /// A request made from inside this client's own refresher, through this
    /// same client: it would wait for the refresh it is part of until the
    /// deadline. Call the refresh route with another client.
    #[error("request from inside this client's refresher, through the same client")]
    ReentrantRefresh,
    /// Refused (401) again after the allowed refresh-and-retry rounds; the
    /// last response is returned.
    #[error("unauthorized: refused again after refreshing the token")]
    Unauthorized(R),
    /// 401/403 with `insufficient_scope`: a new token would not help.
    #[error("forbidden: insufficient scope")]
    Forbidden(R),
    /// A retry was needed but the body was a one-shot stream; the response
    /// that asked for it (if one came) is returned unchanged.
    #[error("retry needed but the body cannot be replayed")]
    BodyNotReplayable(Option<R>),
    /// The last attempt failed in transport and was not (or no longer) retried.
    #[error("transport: {0}")]
    Transport(#[source] E),
    /// Every session slot stayed taken for [`SLOT_WAIT`](crate::SLOT_WAIT).
    #[error("too many concurrent requests")]
    Full,
    /// The client is not configured for this (see [`ConfigError`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Tokens handed to the session were refused (too large, or not header-safe).
    #[error("tokens refused: {0}")]
    Tokens(#[source] TokenError),
    /// A login at the token endpoint failed (see [`EndpointError`]).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The request could not be built (an invalid URL or header).
    #[error("invalid request: {0}")]
    InvalidRequest(#[source] http::Error),
    /// A login or logout held in this process, but the store it shares
    /// with other processes ([`Builder::coordinated_by`](crate::Builder::coordinated_by))
    /// could not be written: they keep the store's pair (still logged in
    /// after a logout here) until a later login or logout reaches it.
    #[error("the store shared with other processes could not be written")]
    StoreUnavailable,
    /// A failure without a response or transport error to attach: from
    /// [`Driver::access_token_after_refusal`](crate::Driver::access_token_after_refusal)
    /// (`Unauthorized`: the fresh token was refused too; a refresh would not
    /// help). A request through the client does not produce it.
    #[error("request failed: {0}")]
    Failed(Failure),
}

impl<R, E> Error<R, E> {
    /// The same error with another transport error type (`Transport` mapped by `f`).
    pub fn map_transport<E2>(self, f: impl FnOnce(E) -> E2) -> Error<R, E2> {
        match self {
            Error::LoginRequired => Error::LoginRequired,
            Error::LoggedOut => Error::LoggedOut,
            Error::RefreshUnavailable => Error::RefreshUnavailable,
            Error::RefreshMisconfigured(c) => Error::RefreshMisconfigured(c),
            Error::ReentrantRefresh => Error::ReentrantRefresh,
            Error::Unauthorized(r) => Error::Unauthorized(r),
            Error::Forbidden(r) => Error::Forbidden(r),
            Error::BodyNotReplayable(r) => Error::BodyNotReplayable(r),
            Error::Transport(e) => Error::Transport(f(e)),
            Error::Full => Error::Full,
            Error::Config(e) => Error::Config(e),
            Error::Tokens(e) => Error::Tokens(e),
            Error::Endpoint(e) => Error::Endpoint(e),
            Error::InvalidRequest(e) => Error::InvalidRequest(e),
            Error::StoreUnavailable => Error::StoreUnavailable,
            Error::Failed(f) => Error::Failed(f),
        }
    }

    /// A request's failure, with what is known of its last attempt.
    pub(crate) fn from_failure(failure: Failure, last: Last<R, E>) -> Self {
        let (response, transport) = match last {
            Last::None => (None, None),
            Last::Response(r) => (Some(r), None),
            Last::Error(e) => (None, Some(e)),
        };
        match failure {
            Failure::LoginRequired => Error::LoginRequired,
            Failure::LoggedOut => Error::LoggedOut,
            Failure::RefreshUnavailable => Error::RefreshUnavailable,
            Failure::RefreshMisconfigured(c) => Error::RefreshMisconfigured(c),
            Failure::Unauthorized => response.map_or(Error::Failed(failure), Error::Unauthorized),
            Failure::Forbidden => response.map_or(Error::Failed(failure), Error::Forbidden),
            Failure::BodyNotReplayable => Error::BodyNotReplayable(response),
            Failure::Transport(_) => transport.map_or(Error::Failed(failure), Error::Transport),
            other => Error::Failed(other),
        }
    }
}

impl<R, E> From<InvalidOrigin> for Error<R, E> {
    fn from(e: InvalidOrigin) -> Self {
        Error::Config(ConfigError::InvalidOrigin(e))
    }
}

impl<R, E> From<refresh_machine::Error> for Error<R, E> {
    fn from(e: refresh_machine::Error) -> Self {
        match e {
            refresh_machine::Error::Full => Error::Full,
            refresh_machine::Error::TokenTooLarge { capacity } => {
                Error::Tokens(TokenError::TooLarge { capacity })
            }
            // `InvalidToken`, and inputs out of order, which the session never feeds.
            _ => Error::Tokens(TokenError::Invalid),
        }
    }
}

/// The last attempt of a request, kept to go with its failure.
#[derive(Debug)]
pub(crate) enum Last<R, E> {
    None,
    Response(R),
    Error(E),
}

/// A configuration the client cannot work with.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL that does not name an http(s) origin.
    #[error(transparent)]
    InvalidOrigin(#[from] InvalidOrigin),
    /// The token endpoint URL does not parse.
    #[error("invalid token endpoint URL")]
    InvalidTokenEndpoint,
    /// A password login needs a token endpoint (`token_endpoint`).
    #[error("no token endpoint configured")]
    NoTokenEndpoint,
    /// The token file exists but could not be read, or holds no token pair
    /// (`InvalidData`).
    #[error("token file: {0}")]
    TokenFile(std::io::ErrorKind),
}

/// Tokens the session cannot hold.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than the session's token capacity.
    #[error("token exceeds capacity of {capacity} bytes")]
    TooLarge {
        /// The capacity in bytes.
        capacity: usize,
    },
    /// Empty, or bytes that cannot go into an HTTP header.
    #[error("token is empty or has bytes outside visible ASCII")]
    Invalid,
}
