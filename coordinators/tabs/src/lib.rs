#![doc = include_str!("../README.md")]
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

mod idb;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use js_sys::{Function, Object, Promise, Reflect};
use refresh_machine_driver::event_listener::{Event, EventListener};
use refresh_machine_driver::refresh_machine::coordination::{Lease, StoreUnavailable};
use refresh_machine_driver::{ready, BoxFuture, Coordinator, StoreCounters, Stored, TokenPair};
use send_wrapper::SendWrapper;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::IdbDatabase;
use zeroize::{Zeroize, Zeroizing};

/// The tabs of one origin sharing a session: the lease a Web Lock, the
/// pair in IndexedDB (read and compare-and-set in transactions, under the
/// lease), mirrored in `localStorage` for the reads outside the lease and
/// for the `storage` events that wake the waiting tabs.
///
/// Build one per page with the same `name` in every tab of the app (it
/// names the lock and the stored pair: two apps of one origin use two
/// names).
pub struct TabsCoordinator {
    /// The key of the pair, in IndexedDB and in `localStorage`.
    key: String,
    /// The Web Lock that is the lease.
    lock: String,
    /// This tab's lease while held: its owner and the function that
    /// releases the lock (resolves the promise the lock is held by).
    held: Mutex<Option<(u64, SendWrapper<Function>)>>,
    /// The database, once opened.
    db: Mutex<Option<SendWrapper<IdbDatabase>>>,
    /// Notified by another tab's write of the mirror.
    changed: Arc<Event>,
    /// The `storage` listener, removed when the coordinator is dropped.
    listener: SendWrapper<Closure<dyn FnMut(web_sys::StorageEvent)>>,
    counters: StoreCounters,
}

impl std::fmt::Debug for TabsCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabsCoordinator")
            .field("key", &self.key)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

/// The page has no `localStorage`, no IndexedDB or no Web Locks (a browser
/// too old, an insecure origin: Web Locks need `https:` or `localhost`), or
/// storage is disabled.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("this page has no localStorage, IndexedDB or Web Locks")]
#[non_exhaustive]
pub struct Unsupported;

fn window() -> Option<web_sys::Window> {
    web_sys::window()
}

fn storage() -> Result<web_sys::Storage, StoreUnavailable> {
    window()
        .and_then(|w| w.local_storage().ok().flatten())
        .ok_or(StoreUnavailable)
}

/// `navigator.locks`, through `Reflect` (web-sys has the Web Locks API
/// only behind its unstable-API flag).
fn locks() -> Option<Object> {
    let navigator = window()?.navigator();
    let locks = Reflect::get(&navigator, &JsValue::from_str("locks")).ok()?;
    locks.dyn_into::<Object>().ok()
}

/// Releases a lock that was asked for but never committed to `held` (the
/// lease attempt was dropped, or failed): the promise the lock would be
/// held by is resolved, so a lock granted later is let go at once.
struct Unclaimed(Option<Function>);

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
    }
}

impl TabsCoordinator {
    /// The coordinator of the app `name` in this page.
    pub fn new(name: &str) -> Result<TabsCoordinator, Unsupported> {
        storage().map_err(|_| Unsupported)?;
        locks().ok_or(Unsupported)?;
        window()
            .and_then(|w| w.indexed_db().ok().flatten())
            .ok_or(Unsupported)?;
        let key = format!("refresh-machine:{name}:tokens");
        let changed = Arc::new(Event::new());
        let (watched, wake) = (key.clone(), Arc::clone(&changed));
        let listener = Closure::<dyn FnMut(web_sys::StorageEvent)>::new(
            move |event: web_sys::StorageEvent| {
                // Another tab wrote the pair (or cleared all storage: `None`).
                if event.key().is_none_or(|k| k == watched) {
                    wake.notify(usize::MAX);
                }
            },
        );
        window()
            .ok_or(Unsupported)?
            .add_event_listener_with_callback("storage", listener.as_ref().unchecked_ref())
            .map_err(|_| Unsupported)?;
        Ok(TabsCoordinator {
            key,
            lock: format!("refresh-machine:{name}:lease"),
            held: Mutex::new(None),
            db: Mutex::new(None),
            changed,
            listener: SendWrapper::new(listener),
            counters: StoreCounters::default(),
        })
    }

    /// Store operations so far (reads, lease attempts, writes).
    pub fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    fn held(&self) -> MutexGuard<'_, Option<(u64, SendWrapper<Function>)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this tab holds the lease as `owner`.
    fn holds(&self, owner: u64) -> bool {
        self.held().as_ref().is_some_and(|(o, _)| *o == owner)
    }

    /// The database, opened at the first use.
    async fn db(&self) -> Result<IdbDatabase, StoreUnavailable> {
        if let Some(db) = &*self.db.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(IdbDatabase::clone(db));
        }
        let db = idb::open().await?;
        *self.db.lock().unwrap_or_else(|e| e.into_inner()) = Some(SendWrapper::new(db.clone()));
        Ok(db)
    }

    /// The mirror in `localStorage` (possibly behind: see [`idb`]); an
    /// unreadable value is `StoreUnavailable` until a login or logout
    /// replaces it.
    fn load_mirror(&self) -> Result<Stored, StoreUnavailable> {
        match storage()?
            .get_item(&self.key)
            .map_err(|_| StoreUnavailable)?
        {
            Some(json) => decode(json),
            None => Ok(Stored::default()),
        }
    }

    /// Write the mirror (the other tabs get a `storage` event).
    fn save_mirror(&self, stored: &Stored) -> Result<(), StoreUnavailable> {
        storage()?
            .set_item(&self.key, &encode(stored)?)
            .map_err(|_| StoreUnavailable)
    }

    /// Ask for the lease without waiting: `true` if this tab now holds it.
    async fn request_lock(&self, owner: u64) -> Result<bool, StoreUnavailable> {
        let locks = locks().ok_or(StoreUnavailable)?;
        let request: Function = Reflect::get(&locks, &JsValue::from_str("request"))
            .ok()
            .and_then(|f| f.dyn_into().ok())
            .ok_or(StoreUnavailable)?;
        let options = Object::new();
        Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE)
            .map_err(|_| StoreUnavailable)?;
        // The lock is held until the promise the callback returns settles:
        // one this tab resolves in `release`, or at once if this attempt
        // ends without committing the lease (`Unclaimed`).
        let mut resolve = None;
        let hold = Promise::new(&mut |r, _reject| resolve = Some(r));
        let mut unclaimed = Unclaimed(Some(resolve.ok_or(StoreUnavailable)?));
        let (sender, answer) = futures_channel::oneshot::channel::<Result<bool, ()>>();
        let sender = Rc::new(RefCell::new(Some(sender)));
        let granted = Rc::clone(&sender);
        let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
            let taken = !lock.is_null();
            let delivered = granted
                .borrow_mut()
                .take()
                .is_some_and(|s| s.send(Ok(taken)).is_ok());
            // Held only if the attempt is still there to commit it.
            if taken && delivered {
                hold.into()
            } else {
                JsValue::UNDEFINED
            }
        });
        // A request the browser refuses (the document not fully active, a
        // security error) rejects without calling back. Kept until the
        // answer: after it, the request's promise can only resolve.
        let refused = Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            if let Some(s) = sender.borrow_mut().take() {
                let _ = s.send(Err(()));
            }
        });
        let promise = request
            .call3(&locks, &JsValue::from_str(&self.lock), &options, &callback)
            .map_err(|_| StoreUnavailable)?;
        if let Ok(promise) = promise.dyn_into::<Promise>() {
            let _ = promise.catch(&refused);
        }
        let answer = answer.await;
        drop(refused);
        // Refused, or the callback dropped unrun: the store cannot say.
        let Ok(Ok(taken)) = answer else {
            return Err(StoreUnavailable);
        };
        if taken {
            let release = unclaimed.0.take().ok_or(StoreUnavailable)?;
            *self.held() = Some((owner, SendWrapper::new(release)));
        }
        Ok(taken)
    }
}

impl Drop for TabsCoordinator {
    fn drop(&mut self) {
        if let Some((_, release)) = self.held().take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
        if let Some(window) = window() {
            let _ = window.remove_event_listener_with_callback(
                "storage",
                self.listener.as_ref().unchecked_ref(),
            );
        }
    }
}

/// A stored value read from its JSON, which holds tokens: wiped once read.
fn decode(mut json: String) -> Result<Stored, StoreUnavailable> {
    let stored = serde_json::from_str(&json).map_err(|_| StoreUnavailable);
    json.zeroize();
    stored
}

/// A value to store as JSON, wiped when dropped (it holds tokens).
fn encode(stored: &Stored) -> Result<Zeroizing<String>, StoreUnavailable> {
    serde_json::to_string(stored)
        .map(Zeroizing::new)
        .map_err(|_| StoreUnavailable)
}

/// Milliseconds since the Unix epoch (at least 1): a repaired store's
/// generation, above any a tab has published since.
fn unix_millis() -> u64 {
    (js_sys::Date::now() as u64).max(1)
}

impl Coordinator for TabsCoordinator {
    /// Under the lease, the pair in IndexedDB (what the lease holder
    /// presents a refresh token after must be the latest); otherwise the
    /// mirror, at once (behind at worst, which only leads to the lease).
    fn read(&self) -> BoxFuture<'_, Result<Stored, StoreUnavailable>> {
        self.counters.reads.fetch_add(1, Relaxed);
        if self.held().is_none() {
            return ready(self.load_mirror());
        }
        Box::pin(async move { idb::read(&self.db().await?, &self.key).await })
    }

    /// A Web Lock has no lifetime: the browser releases it when its tab
    /// closes or crashes, not when `ttl` passes.
    fn take_lease(
        &self,
        owner: u64,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<Lease, StoreUnavailable>> {
        self.counters.leases.fetch_add(1, Relaxed);
        Box::pin(async move {
            if self.holds(owner) {
                return Ok(Lease::Taken);
            }
            Ok(match self.request_lock(owner).await? {
                true => Lease::Taken,
                false => Lease::Held { expires_in: None },
            })
        })
    }

    /// Compare-and-set in one IndexedDB transaction, then the mirror.
    fn publish<'a>(
        &'a self,
        owner: u64,
        expected: u64,
        tokens: &'a TokenPair,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        Box::pin(async move {
            if !self.holds(owner) {
                return Ok(false);
            }
            let next = Stored {
                generation: expected.checked_add(1).ok_or(StoreUnavailable)?,
                tokens: Some(tokens.clone()),
            };
            let db = self.db().await?;
            let written = idb::update(&db, &self.key, |current| {
                Ok(match current?.generation == expected {
                    true => (Some(next.clone()), true),
                    false => (None, false),
                })
            })
            .await?;
            if written {
                self.counters.writes.fetch_add(1, Relaxed);
                // The other tabs' wake-up; the pair itself is in IndexedDB.
                let _ = self.save_mirror(&next);
            }
            Ok(written)
        })
    }

    /// A login or logout cannot wait (`set_tokens` is not async): written to
    /// the mirror now, and to IndexedDB as soon as it can take it, above
    /// whatever generation it holds by then.
    fn replace<'a>(
        &'a self,
        tokens: Option<&'a TokenPair>,
    ) -> BoxFuture<'a, Result<u64, StoreUnavailable>> {
        let replaced = (|| {
            // An unreadable mirror is replaced above any generation a tab
            // could have published: the clock in milliseconds.
            let generation = match self.load_mirror() {
                Ok(stored) => stored.generation.checked_add(1).ok_or(StoreUnavailable)?,
                Err(_) => unix_millis(),
            };
            let stored = Stored {
                generation,
                tokens: tokens.cloned(),
            };
            self.save_mirror(&stored)?;
            self.counters.writes.fetch_add(1, Relaxed);
            let key = self.key.clone();
            let db = self
                .db
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|db| IdbDatabase::clone(db));
            wasm_bindgen_futures::spawn_local(async move {
                let Ok(db) = (match db {
                    Some(db) => Ok(db),
                    None => idb::open().await,
                }) else {
                    return;
                };
                let _ = idb::update(&db, &key, |current| {
                    let above = current.map_or(0, |c| c.generation.saturating_add(1));
                    let stored = Stored {
                        generation: stored.generation.max(above),
                        ..stored
                    };
                    Ok((Some(stored), ()))
                })
                .await;
            });
            Ok(generation)
        })();
        ready(replaced)
    }

    fn release(&self, owner: u64) -> BoxFuture<'_, ()> {
        let mut held = self.held();
        if held.as_ref().is_some_and(|(o, _)| *o == owner) {
            if let Some((_, release)) = held.take() {
                let _ = release.call0(&JsValue::UNDEFINED);
            }
        }
        ready(())
    }

    fn changed(&self) -> Option<EventListener> {
        Some(self.changed.listen())
    }
}
