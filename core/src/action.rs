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
///
/// Every variant asks the driver to do something; where a request merely
/// waits (for the refresh, or a backoff), nothing is emitted: ask
/// [`RefreshMachine::request_state`](crate::RefreshMachine::request_state) if you want to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "an action is a step the driver must perform"]
pub enum Action<'a> {
    /// Send the request with `Authorization: Bearer <token>`, then report the
    /// response (`handle_response`) or the failure (`handle_send_error`).
    Send {
        /// The request.
        id: RequestId,
        /// Token to attach.
        token: AccessToken<'a>,
        /// `None` for the first send; why it is sent again otherwise.
        retry: Option<RetryReason>,
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
    /// Call the token endpoint with this refresh token and report the outcome
    /// under `id` (`handle_refresh_outcome`). Never addressed to the resource server.
    Refresh {
        /// Name to report the outcome under.
        id: RefreshId,
        /// The refresh token to present.
        refresh_token: RefreshToken<'a>,
        /// The machine counts the attempt as failed at this instant (feed
        /// `handle_timeout`); an outcome reported later is refused, except a
        /// success, which may still be the only valid tokens left.
        deadline: Instant,
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
            Action::Send { id, .. } | Action::Deliver { id } | Action::Fail { id, .. } => Some(id),
            _ => None,
        }
    }

    /// True for `Deliver` and `Fail`: the request's single outcome.
    pub fn is_outcome(&self) -> bool {
        matches!(self, Action::Deliver { .. } | Action::Fail { .. })
    }
}
