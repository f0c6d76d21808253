//! The refresh exchange in flight, owned by the session instead of by the
//! request that happened to start it.
//!
//! The request that gets the refresh ticket starts the exchange (and polls
//! it first); every request waiting for the refresh, that one included,
//! polls the same exchange while it waits, and any request polls it (once,
//! without waiting) before each step. So dropping a request's future (a timeout, an aborted task) never
//! abandons a token call the server may already have processed: the
//! remaining waiters drive it on, and if none is left the next request
//! picks its answer up. Presenting the refresh token a second time instead
//! would be a reuse, and a rotating server revokes the whole family for it.
//!
//! No runtime is needed: the exchange is a shared future, progressed by
//! whoever polls it, unless the client runs it in the background
//! ([`Transport::spawn`](crate::Transport::spawn): reqwest's futures need
//! tokio's context, and a blocking client sharing the session polls on its
//! own thread), when the pollers only await its outcome and are woken when
//! it ends. Its outcome is applied to the session exactly once, by
//! whichever poller sees it first.

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

/// What the pollers of an exchange await. `Send` on every target: the
/// session holding it is shared by threads (and in a browser, where the
/// token call's own future is not `Send`, the exchange always runs as a task
/// of the page's event loop, which leaves only a channel to await here).
type Outcome = std::pin::Pin<Box<dyn std::future::Future<Output = Finished> + Send>>;

/// One exchange, as the requests polling it hold it.
#[derive(Clone)]
pub(crate) struct Exchange {
    /// The machine's id for this refresh.
    pub(crate) id: RefreshId,
    /// The token call, shared by every poller.
    pub(crate) future: Shared<Outcome>,
    /// Taken by the one poller (or the task) that applies the outcome.
    claim: Claim,
}

impl Exchange {
    /// Whether the caller is the first to see this exchange's outcome (and
    /// so the one to apply it). True once per exchange.
    pub(crate) fn claim_outcome(&self) -> bool {
        self.claim.claim()
    }
}

/// The right to apply an exchange's outcome, shared by its pollers and
/// its task: [`claim`](Self::claim) is true once.
#[derive(Clone)]
pub(crate) struct Claim(Arc<AtomicBool>);

impl Claim {
    /// Whether the caller is the first (and so the one to apply it).
    pub(crate) fn claim(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }
}

/// An exchange running in the background: its outcome when it comes
/// (nothing, if the task was lost: a transient failure), and the task
/// aborted when the session lets go of the exchange.
struct Background {
    outcome: futures_channel::oneshot::Receiver<Finished>,
    abort: futures_util::future::AbortHandle,
}

impl std::future::Future for Background {
    type Output = Finished;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Finished> {
        self.outcome.poll_unpin(cx).map(|r| {
            r.unwrap_or(Finished::Reply(RefreshReply::Transient {
                retry_after: None,
            }))
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// The end of an exchange's task, however it ends: its outcome (if any)
/// can be seen by the pollers first, then `ended` has it.
struct Announce<F: FnOnce(Option<Finished>, Claim)> {
    sender: Option<futures_channel::oneshot::Sender<Finished>>,
    ended: Option<F>,
    claim: Claim,
}

impl<F: FnOnce(Option<Finished>, Claim)> Announce<F> {
    fn finished(&mut self, finished: Finished) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(finished.clone());
        }
        if let Some(ended) = self.ended.take() {
            ended(Some(finished), self.claim.clone());
        }
    }
}

impl<F: FnOnce(Option<Finished>, Claim)> Drop for Announce<F> {
    fn drop(&mut self) {
        // Dropped unfinished (aborted, or its runtime shut down): a poller
        // sees the outcome's absence.
        drop(self.sender.take());
        if let Some(ended) = self.ended.take() {
            ended(None, self.claim.clone());
        }
    }
}

/// The session's current exchange, if one is in flight.
#[derive(Default)]
pub(crate) struct InFlight {
    current: Mutex<Option<Exchange>>,
    /// Whether `current` holds one: read without the lock by every request
    /// before each step (almost always false).
    present: AtomicBool,
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

    /// Exchange `id` over `call` (the refresher's future), not yet visible
    /// to other requests. `spawn` runs it in the background if the client
    /// can ([`Transport::spawn`](crate::Transport::spawn)); otherwise the
    /// request that starts it polls it first (a blocking refresher runs
    /// there, never inside another request's non-blocking poll), then
    /// [`install`](Self::install)s it if it pends. `ended` runs once its
    /// outcome (`None`: dropped unfinished) can be seen by the pollers,
    /// with the claim to apply it.
    pub(crate) fn prepare(
        id: RefreshId,
        call: BoxFuture<'static, RefreshReply>,
        spawn: impl FnOnce(BoxFuture<'static, ()>) -> Result<(), BoxFuture<'static, ()>>,
        ended: impl FnOnce(Option<Finished>, Claim) + crate::MaybeSend + 'static,
    ) -> Exchange {
        let claim = Claim(Arc::default());
        let call = std::panic::AssertUnwindSafe(call)
            .catch_unwind()
            .map(|r| match r {
                Ok(reply) => Finished::Reply(reply),
                Err(payload) => Finished::Panicked(Arc::new(Mutex::new(Some(payload)))),
            });
        let (call, abort) = futures_util::future::abortable(call);
        let (sender, outcome) = futures_channel::oneshot::channel();
        // Announced however the task ends: finished, or dropped unfinished
        // (aborted, or its runtime shut down), when the waiters see no
        // outcome (a transient failure) instead of sleeping out their
        // deadline.
        let announce = Announce {
            sender: Some(sender),
            ended: Some(ended),
            claim: claim.clone(),
        };
        let task: BoxFuture<'static, ()> = Box::pin(async move {
            let mut announce = announce;
            if let Ok(finished) = call.await {
                announce.finished(finished);
            }
        });
        let future: Outcome = match spawn(task) {
            Ok(()) => Box::pin(Background { outcome, abort }),
            #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
            Err(task) => {
                wasm_bindgen_futures::spawn_local(task);
                Box::pin(Background { outcome, abort })
            }
            #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
            Err(task) => Box::pin(async move {
                task.await;
                outcome
                    .await
                    .unwrap_or(Finished::Reply(RefreshReply::Transient {
                        retry_after: None,
                    }))
            }),
        };
        Exchange {
            id,
            future: future.shared(),
            claim,
        }
    }

    /// Make `exchange` the session's. It replaces the previous one, which
    /// the machine gave up on (it decided on a new refresh only after the
    /// old one's deadline): that one is dropped once its last poller lets
    /// go, and its answer, if one still comes, is not applied.
    pub(crate) fn install(&self, exchange: Exchange) {
        let previous = {
            let mut slot = self.slot();
            self.present.store(true, Ordering::Release);
            slot.replace(exchange)
        };
        // Dropped outside the lock (it may run the refresher's own drop code).
        drop(previous);
    }

    /// The exchange in flight, to poll.
    pub(crate) fn get(&self) -> Option<Exchange> {
        if !self.present.load(Ordering::Acquire) {
            return None;
        }
        self.slot().clone()
    }

    /// Forget exchange `id` (its outcome is being applied).
    pub(crate) fn end(&self, id: RefreshId) {
        let ended = {
            let mut slot = self.slot();
            if slot.as_ref().is_some_and(|e| e.id == id) {
                self.present.store(false, Ordering::Release);
                slot.take()
            } else {
                None
            }
        };
        drop(ended);
    }
}
