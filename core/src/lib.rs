#![doc = include_str!("../README.md")]
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

pub mod coordination;
pub mod grant;
#[cfg(feature = "http")]
pub mod http_compat;
pub mod jwt;
pub mod retry_after;
pub mod www_authenticate;

pub use action::{Action, RetryReason};
pub use config::{Backoff, Config, RetryBudget};
pub use error::{Error, Failure};
pub use event::{RefreshOutcome, Response, SendErrorKind};
pub use machine::{LoginRequiredReason, RefreshMachine, RequestState, SessionState, Snapshot};
pub use request::{is_idempotent_method, RefreshId, RequestId, RequestSpec};
pub use time::Instant;
#[cfg(feature = "std")]
pub use time::StdClock;
pub use token::{AccessToken, RefreshToken, StoredTokens, TokenSet};
