//! One refresh per expiry across processes: the store processes share
//! ([`Coordinator`]), the file one ([`FileCoordinator`](crate::FileCoordinator)), and the run of the
//! core's protocol ([`refresh_machine::coordination`]) around a refresh.
//!
//! With a coordinator, the session's tokens live in the store: a client
//! built with one starts from the store's pair, a login publishes its pair
//! as a new generation (every process adopts it at its next refresh), a
//! logout clears the store, and a refresh runs the protocol: adopt what
//! another process published, or refresh under the store's lease and
//! publish. A request with a valid token never touches the store.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use refresh_machine::coordination::{Lease, StoreUnavailable};
use serde::{Deserialize, Serialize};

use crate::builder::BoxFuture;
use crate::session::TokenPair;

/// What a store holds: a generation and the pair of that generation
/// (`None`: nobody is logged in).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Incremented by every publish and every login or logout.
    pub generation: u64,
    /// The pair.
    pub tokens: Option<TokenPair>,
}

/// A store shared by the processes that share one credential: the seam
/// between the core's protocol and a real store. Every operation is atomic
/// at the store; a failed one (`StoreUnavailable`) may or may not have
/// taken effect.
pub trait Coordinator: Send + Sync + 'static {
    /// Read the generation and its pair.
    fn read(&self) -> BoxFuture<'_, Result<Stored, StoreUnavailable>>;

    /// Take the lease as `owner` for `ttl`, unless another owner holds it.
    fn take_lease(
        &self,
        owner: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Lease, StoreUnavailable>>;

    /// Store `tokens` as generation `expected + 1`, only if the store is at
    /// `expected` and `owner` holds the lease; whether it was written.
    fn publish<'a>(
        &'a self,
        owner: u64,
        expected: u64,
        tokens: &'a TokenPair,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>>;

    /// Store `tokens` (a login; `None`: a logout) as the next generation,
    /// whatever is there: the returned generation.
    fn replace<'a>(
        &'a self,
        tokens: Option<&'a TokenPair>,
    ) -> BoxFuture<'a, Result<u64, StoreUnavailable>>;

    /// Release the lease if `owner` holds it.
    fn release(&self, owner: u64) -> BoxFuture<'_, ()>;

    /// How often a waiting process reads the store again: without change
    /// notifications, the only way it learns of a new pair; with them, a
    /// fallback for a notification lost.
    fn recheck(&self) -> Duration {
        Duration::from_millis(50)
    }

    /// A listener woken at the store's next change (a push: Redis pub/sub),
    /// taken before the process waits; `None` for a store without them.
    fn changed(&self) -> Option<event_listener::EventListener> {
        None
    }
}

/// A store operation's answer that is there at once (a file read, a
/// `localStorage` write), as [`Coordinator`]'s futures carry it.
pub fn ready<'a, T: crate::MaybeSend + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

/// A store chosen at run time (`Box<dyn Coordinator>`: a file or Redis,
/// by configuration) is a store.
impl<C: Coordinator + ?Sized> Coordinator for Box<C> {
    fn read(&self) -> BoxFuture<'_, Result<Stored, StoreUnavailable>> {
        (**self).read()
    }

    fn take_lease(
        &self,
        owner: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Lease, StoreUnavailable>> {
        (**self).take_lease(owner, ttl)
    }

    fn publish<'a>(
        &'a self,
        owner: u64,
        expected: u64,
        tokens: &'a TokenPair,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        (**self).publish(owner, expected, tokens)
    }

    fn replace<'a>(
        &'a self,
        tokens: Option<&'a TokenPair>,
    ) -> BoxFuture<'a, Result<u64, StoreUnavailable>> {
        (**self).replace(tokens)
    }

    fn release(&self, owner: u64) -> BoxFuture<'_, ()> {
        (**self).release(owner)
    }

    fn recheck(&self) -> Duration {
        (**self).recheck()
    }

    fn changed(&self) -> Option<event_listener::EventListener> {
        (**self).changed()
    }
}

/// Store operations performed so far, for the bench and the tests.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Reads.
    pub reads: AtomicU64,
    /// Lease attempts.
    pub leases: AtomicU64,
    /// Publishes and replacements.
    pub writes: AtomicU64,
}
