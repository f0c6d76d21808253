#![doc = include_str!("../README.md")]
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use js_sys::{Function, Object, Promise, Reflect};
use refresh_machine_driver::event_listener::{Event, EventListener};
use refresh_machine_driver::refresh_machine::coordination::{Lease, StoreUnavailable};
use refresh_machine_driver::{BoxFuture, Coordinator, StoreCounters, Stored, TokenPair};
use send_wrapper::SendWrapper;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use zeroize::Zeroize;

/// The tabs of one origin sharing a session: the lease a Web Lock, the
/// pair in `localStorage`, `storage` events to wake the waiting tabs.
///
/// Build one per page with the same `name` in every tab of the app (it
/// names the lock and the storage key: two apps of one origin use two
/// names).
pub struct TabsCoordinator {
    /// The `localStorage` key of the pair and its generation.
    key: String,
    /// The Web Lock that is the lease.
    lock: String,
    /// This tab's lease while held: its owner and the function that
    /// releases the lock (resolves the promise the lock is held by).
    held: Mutex<Option<(u64, SendWrapper<Function>)>>,
    /// Notified by another tab's write of the key.
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

/// The page has no `localStorage` or no Web Locks (a browser too old, an
/// insecure origin: Web Locks need `https:` or `localhost`), or storage is
/// disabled.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("this page has no localStorage or no Web Locks")]
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

impl TabsCoordinator {
    /// The coordinator of the app `name` in this page.
    pub fn new(name: &str) -> Result<TabsCoordinator, Unsupported> {
        storage().map_err(|_| Unsupported)?;
        locks().ok_or(Unsupported)?;
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
            changed,
            listener: SendWrapper::new(listener),
            counters: StoreCounters::default(),
        })
    }

    /// Store operations so far (reads, lease attempts, writes).
    pub fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<(u64, SendWrapper<Function>)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this tab holds the lease as `owner`.
    fn holds(&self, owner: u64) -> bool {
        self.held().as_ref().is_some_and(|(o, _)| *o == owner)
    }

    /// The stored pair; an unreadable value is `StoreUnavailable` until a
    /// login or logout replaces it.
    fn load(&self) -> Result<Stored, StoreUnavailable> {
        let Some(mut json) = storage()?
            .get_item(&self.key)
            .map_err(|_| StoreUnavailable)?
        else {
            return Ok(Stored::default());
        };
        let stored = serde_json::from_str(&json).map_err(|_| StoreUnavailable);
        json.zeroize();
        stored
    }

    fn save(&self, stored: &Stored) -> Result<(), StoreUnavailable> {
        let mut json = serde_json::to_string(stored).map_err(|_| StoreUnavailable)?;
        let written = storage()?.set_item(&self.key, &json);
        json.zeroize();
        written.map_err(|_| StoreUnavailable)
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
        // one this tab resolves in `release`.
        let mut release = None;
        let hold = Promise::new(&mut |resolve, _reject| release = Some(resolve));
        let release = release.ok_or(StoreUnavailable)?;
        let (granted, answer) = futures_channel::oneshot::channel::<bool>();
        let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
            let taken = !lock.is_null();
            let _ = granted.send(taken);
            if taken {
                hold.into()
            } else {
                JsValue::UNDEFINED
            }
        });
        request
            .call3(&locks, &JsValue::from_str(&self.lock), &options, &callback)
            .map_err(|_| StoreUnavailable)?;
        let taken = answer.await.map_err(|_| StoreUnavailable)?;
        if taken {
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

fn ready<'a, T: 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

/// Milliseconds since the Unix epoch (at least 1): a repaired store's
/// generation, above any a tab has published since.
fn unix_millis() -> u64 {
    (js_sys::Date::now() as u64).max(1)
}

impl Coordinator for TabsCoordinator {
    fn read(&self) -> BoxFuture<'_, Result<Stored, StoreUnavailable>> {
        self.counters
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ready(self.load())
    }

    /// A Web Lock has no lifetime: the browser releases it when its tab
    /// closes or crashes, not when `ttl` passes.
    fn take_lease(
        &self,
        owner: u64,
        _ttl: Duration,
    ) -> BoxFuture<'_, Result<Lease, StoreUnavailable>> {
        self.counters
            .leases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    fn publish<'a>(
        &'a self,
        owner: u64,
        expected: u64,
        tokens: &'a TokenPair,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        ready((|| {
            if !self.holds(owner) {
                return Ok(false);
            }
            if self.load()?.generation != expected {
                return Ok(false);
            }
            self.counters
                .writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.save(&Stored {
                generation: expected + 1,
                tokens: Some(tokens.clone()),
            })?;
            Ok(true)
        })())
    }

    fn replace<'a>(
        &'a self,
        tokens: Option<&'a TokenPair>,
    ) -> BoxFuture<'a, Result<u64, StoreUnavailable>> {
        ready((|| {
            // An unreadable value is replaced above any generation a tab
            // could have published: the clock in milliseconds.
            let generation = match self.load() {
                Ok(stored) => stored.generation + 1,
                Err(_) => unix_millis(),
            };
            self.counters
                .writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.save(&Stored {
                generation,
                tokens: tokens.cloned(),
            })?;
            Ok(generation)
        })())
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
