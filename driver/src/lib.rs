//! The std driver layer shared by refresh-machine's ureq and reqwest clients.
//!
//! Read bottom to top:
//! - [`Session`]: one [`RefreshMachine`](refresh_machine::RefreshMachine)
//!   behind a mutex, driven by the requests themselves; blocking or async
//!   waits, no polling;
//! - [`Driver`]: a session plus its policy (allowed [`Origins`], the
//!   refresher) and the drive loop, written once as async code;
//! - [`Transport`] and [`Attempt`]: the seam a client crate implements (how to
//!   send once, call the token endpoint, wait), and [`Builder`], the one builder;
//! - [`Error`]: one typed failure vocabulary for every client.
//!
//! Also here: the RFC 6749 grants as `http` requests ([`grant`]) and owned,
//! redacted, zeroized secrets ([`Secret`]).

mod builder;
mod driver;
mod error;
pub mod grant;
mod origin;
mod secret;
mod session;
mod transport;

pub use builder::{Async, Blocking, BoxFuture, Builder, IntoRefresher, Options};
pub use driver::{block_on, Driver, DriverError};
pub use error::{ConfigError, Error, TokenError};
pub use origin::{InvalidOrigin, Origins};
pub use refresh_machine;
pub use secret::Secret;
pub use session::{
    Hooks, RefreshReply, RefreshTicket, RequestHandle, Session, Start, Step, TokenPair, Waiter,
    CAPACITY, SLOT_WAIT, TOKEN_CAP,
};
pub use transport::{Attempt, Sent, TokenAnswer, Transport};

/// A jitter seed without a dependency: std's per-process random hasher keys
/// mixed with the time. Not for cryptography; only to de-synchronise clients.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(refresh_machine::StdClock::unix_now().unwrap_or(0));
    h.finish()
}
