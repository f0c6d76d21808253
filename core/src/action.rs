//! Outputs: what the driver must do next.

use crate::error::Failure;
use crate::request::{RefreshId, RequestId};
use crate::token::{AccessToken, RefreshToken, StoredTokens};
use crate::Instant;

/// Why a request is being sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// It got 401 and a new token has been obtained since.
    NewToken,
    /// It got 401 for a token that had already been replaced: no refresh was needed.
    StaleToken,
    /// A transient failure, after its backoff.
    Transient,
}

/// One step for the driver. Tokens are borrowed from the machine: copy what you
/// need (e.g. into a header) before the next call on the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Send the request, with `Authorization: Bearer <token>`.
    Send {
        /// The request.
        id: RequestId,
        /// Token to attach.
        token: AccessToken<'a>,
    },
    /// Send the original request again with this token.
    Retry {
        /// The request.
        id: RequestId,
        /// Token to attach (may be new, or the same after a transient failure).
        token: AccessToken<'a>,
        /// Why.
        reason: RetryReason,
    },
    /// The request is parked until the refresh in flight resolves. Informational.
    Wait {
        /// The request.
        id: RequestId,
    },
    /// The request is parked until `until`; feed `handle_timeout` then. Informational.
    Backoff {
        /// The request.
        id: RequestId,
        /// When its retry becomes due.
        until: Instant,
    },
    /// Hand the last response to the caller. The request is finished.
    Deliver {
        /// The request.
        id: RequestId,
    },
    /// The request ends with this failure. The request is finished.
    Fail {
        /// The request.
        id: RequestId,
        /// Why.
        failure: Failure,
    },
    /// Call the token endpoint with this refresh token and report the outcome under `id`.
    /// Never addressed to the resource server.
    Refresh {
        /// Name to report the outcome under.
        id: RefreshId,
        /// The refresh token to present.
        refresh_token: RefreshToken<'a>,
    },
    /// The tokens changed: store them (flash, keychain, file). `None` means delete them.
    PersistTokens {
        /// The current tokens, or `None` when the session ended.
        tokens: Option<StoredTokens<'a>>,
    },
    /// The session is lost; the user must log in again. Emitted once per lost session.
    LoginRequired,
}

impl Action<'_> {
    /// The request this action is about, if it is about one.
    pub fn request(&self) -> Option<RequestId> {
        match *self {
            Action::Send { id, .. }
            | Action::Retry { id, .. }
            | Action::Wait { id }
            | Action::Backoff { id, .. }
            | Action::Deliver { id }
            | Action::Fail { id, .. } => Some(id),
            _ => None,
        }
    }

    /// True for `Deliver` and `Fail`: the request's single outcome.
    pub fn is_outcome(&self) -> bool {
        matches!(self, Action::Deliver { .. } | Action::Fail { .. })
    }
}
