//! # refresh-machine
//!
//! A sans-IO state machine that keeps an HTTP client's OAuth2 session alive:
//! it decides when to send, wait, refresh, retry, back off, deliver or fail,
//! for any number of concurrent requests, and never does I/O itself.
//!
//! It exists because "on 401, refresh and retry" goes wrong under concurrency:
//! N requests failing together must cause **one** refresh (with refresh-token
//! rotation a second refresh reuses a spent token and the server revokes the
//! session), a retried request that 401s again must stop, a network blip during
//! refresh must not log the user out, and a POST must not be replayed after it
//! may have reached the server.
//!
//! * `#![no_std]`, no allocation: request slots (`N`) and token capacity
//!   (`TOKEN_CAP`) are const generics; a full table is [`Error::Full`], never a panic.
//! * Time is an input ([`Instant`]); so is randomness (the jitter seed).
//!   The same inputs give the same actions.
//! * The driver performs [`Action`]s and reports what happened through the
//!   `handle_*` methods. See the adapters for ureq, reqwest and reqwless.
//!
//! ## The run loop
//!
//! 1. Feed an input (`start_request`, `handle_response`, `handle_refresh_outcome`, ...).
//! 2. Drain [`RefreshMachine::poll_action`] until `None`, doing what each action says.
//! 3. Sleep until [`RefreshMachine::poll_timeout`] or the next I/O event; on wake-up
//!    call [`RefreshMachine::handle_timeout`] and go to 2.
//!
//! ## Example: a request across an expired token, by hand
//!
//! ```
//! use core::time::Duration;
//! use refresh_machine::{Action, Config, Instant, RefreshMachine, RefreshOutcome, RequestSpec, Response, TokenSet};
//!
//! // A fake resource server: accepts only "access-2".
//! fn resource(token: &str) -> Response {
//!     Response::status(if token == "access-2" { 200 } else { 401 })
//! }
//!
//! let mut m: RefreshMachine<4, 64> = RefreshMachine::new(Config::default(), 7);
//! let t0 = Instant::ZERO;
//! m.login(t0, TokenSet::new("access-1").with_refresh_token("refresh-1")).unwrap();
//! let req = m.start_request(t0, RequestSpec::IDEMPOTENT).unwrap();
//!
//! let mut delivered = false;
//! let mut refreshes = 0;
//! let mut stored = String::new();
//! while !delivered {
//!     let Some(action) = m.poll_action() else { panic!("stuck") };
//!     match action {
//!         Action::Send { id, token, .. } => {
//!             let response = resource(token.expose_secret());
//!             m.handle_response(t0, id, response).unwrap();
//!         }
//!         Action::Refresh { id, refresh_token, .. } => {
//!             assert_eq!(refresh_token.expose_secret(), "refresh-1");
//!             refreshes += 1;
//!             let new = TokenSet::new("access-2")
//!                 .with_refresh_token("refresh-2")
//!                 .with_expires_in(Duration::from_secs(3600));
//!             m.handle_refresh_outcome(t0, id, RefreshOutcome::Success(new)).unwrap();
//!         }
//!         Action::PersistTokens { tokens } => {
//!             stored = tokens.map(|t| t.access_token.expose_secret().to_owned()).unwrap_or_default();
//!         }
//!         Action::Deliver { id } => delivered = id == req,
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! assert_eq!(refreshes, 1);
//! assert_eq!(stored, "access-2");
//! ```
//!
//! ## In scope, and not
//!
//! In scope: token lifecycle, single-flight refresh, retry and backoff decisions,
//! parsing of the headers and bodies those decisions read (`WWW-Authenticate`,
//! `Retry-After`, RFC 6749 token responses). Not in scope: HTTP itself, TLS,
//! the authorization-code flow, token storage (the machine tells you *when* to
//! persist; where is yours), DPoP.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod action;
mod config;
mod error;
mod event;
mod machine;
mod request;
mod time;
mod token;

pub mod grant;
#[cfg(feature = "http")]
pub mod http_compat;
pub mod retry_after;
pub mod www_authenticate;

pub use action::{Action, RetryReason};
pub use config::{Backoff, Config, RetryBudget};
pub use error::{Error, Failure};
pub use event::{RefreshOutcome, Response, SendErrorKind};
pub use machine::{RefreshMachine, RequestState, SessionState, Snapshot};
pub use request::{is_idempotent_method, RefreshId, RequestId, RequestSpec};
pub use time::Instant;
#[cfg(feature = "std")]
pub use time::StdClock;
pub use token::{AccessToken, RefreshToken, StoredTokens, TokenSet};
