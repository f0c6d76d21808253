#![doc = include_str!("../README.md")]
mod builder;
mod driver;
mod error;
pub mod grant;
mod origin;
mod secret;
mod session;
mod transport;

pub use builder::{BoxFuture, Builder, Options};
pub use driver::{block_on, Driver, DriverError};
pub use error::{ConfigError, Error, TokenError};
pub use origin::{AllowedOrigin, InvalidOrigin, Origins};
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
