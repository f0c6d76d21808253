//! Thread-safe driving logic shared by refresh-machine's std adapters (ureq,
//! reqwest): one [`Session`] per logged-in user, shared by every request and
//! thread; each request drives the machine itself and performs the refresh
//! when it is the first to claim it. Blocking drivers wait with
//! [`Waiter::wait_blocking`], async ones race [`Waiter::into_parts`] against
//! their runtime's timer.
//!
//! Also shared: the RFC 6749 refresh grant as `http` requests ([`grant`]), the
//! origin allow-list ([`Origins`]) and owned, redacted secrets ([`Secret`]).

pub mod grant;
mod origin;
mod secret;
mod session;

pub use origin::{InvalidOrigin, Origins};

/// A jitter seed without a dependency: std's per-process random hasher keys
/// mixed with the time. Not for cryptography; only to de-synchronise clients.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(refresh_machine::StdClock::unix_now().unwrap_or(0));
    h.finish()
}
pub use refresh_machine;
pub use secret::Secret;
pub use session::{
    Hooks, RefreshReply, RefreshTicket, RequestHandle, Session, Start, Step, TokenPair, Waiter,
    CAPACITY, SLOT_WAIT, TOKEN_CAP,
};
