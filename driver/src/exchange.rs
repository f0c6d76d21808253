//! The refresh exchange in flight, owned by the session instead of by the
//! request that happened to start it.
//!
//! The request that gets the refresh ticket starts the exchange and awaits
//! it; every request waiting for the refresh polls the same exchange while
//! it waits, and any request polls it (once, without waiting) before each
//! step. So dropping a request's future (a timeout, an aborted task) never
//! abandons a token call the server may already have processed: the
//! remaining waiters drive it on, and if none is left the next request
//! picks its answer up. Presenting the refresh token a second time instead
//! would be a reuse, and a rotating server revokes the whole family for it.
//!
//! No runtime is needed (nothing is spawned): the exchange is a shared
//! future, progressed by whoever polls it. Its outcome is applied to the
//! session exactly once, by whichever poller sees it first.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::{FutureExt, Shared};
use refresh_machine::RefreshId;

use crate::builder::BoxFuture;
use crate::session::RefreshReply;

/// How an exchange ended.
#[derive(Clone, Debug)]
pub(crate) enum Finished {
    /// The refresher's reply.
    Reply(RefreshReply),
    /// The refresher panicked. The session counts it as a transient failure;
    /// the payload is re-raised in the request that applies it.
    Panicked(Arc<Mutex<Option<Box<dyn Any + Send>>>>),
}

/// One exchange, as the requests polling it hold it.
#[derive(Clone)]
pub(crate) struct Exchange {
    /// The machine's id for this refresh.
    pub(crate) id: RefreshId,
    /// The token call, shared by every poller.
    pub(crate) future: Shared<BoxFuture<'static, Finished>>,
    /// Set by the one poller that applies the outcome.
    applied: Arc<AtomicBool>,
}

impl Exchange {
    /// Whether the caller is the first to see this exchange's outcome (and
    /// so the one to apply it). True once per exchange.
    pub(crate) fn claim_outcome(&self) -> bool {
        !self.applied.swap(true, Ordering::AcqRel)
    }
}

/// The session's current exchange, if one is in flight.
#[derive(Default)]
pub(crate) struct InFlight {
    current: Mutex<Option<Exchange>>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("id", &self.get().map(|e| e.id))
            .finish()
    }
}

impl InFlight {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Exchange>> {
        // Only whole values are stored: a poisoned lock holds a valid one.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start exchange `id` with `call` (the refresher's future). A refresh
    /// the machine decided on replaces the previous exchange: that one is
    /// past its deadline (the machine gave up on it) and its pollers finish
    /// it on their own.
    pub(crate) fn start(&self, id: RefreshId, call: BoxFuture<'static, RefreshReply>) -> Exchange {
        let call = std::panic::AssertUnwindSafe(call)
            .catch_unwind()
            .map(|r| match r {
                Ok(reply) => Finished::Reply(reply),
                Err(payload) => Finished::Panicked(Arc::new(Mutex::new(Some(payload)))),
            });
        let exchange = Exchange {
            id,
            future: (Box::pin(call) as BoxFuture<'static, Finished>).shared(),
            applied: Arc::default(),
        };
        *self.slot() = Some(exchange.clone());
        exchange
    }

    /// The exchange in flight, to poll.
    pub(crate) fn get(&self) -> Option<Exchange> {
        self.slot().clone()
    }

    /// Forget exchange `id` (its outcome is being applied).
    pub(crate) fn end(&self, id: RefreshId) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|e| e.id == id) {
            *slot = None;
        }
    }
}
