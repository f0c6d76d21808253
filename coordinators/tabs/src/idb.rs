//! The pair's authoritative copy, in IndexedDB: read and compare-and-set in
//! transactions, which every tab of the origin sees in one order.
//! (`localStorage` does not: Chromium keeps a copy per renderer process,
//! updated by messages, and a tab that takes the lease a few milliseconds
//! after another published can still read the old pair there.)

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use refresh_machine_driver::refresh_machine::coordination::StoreUnavailable;
use refresh_machine_driver::Stored;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbDatabase, IdbRequest, IdbTransaction, IdbTransactionMode};

const DATABASE: &str = "refresh-machine";
const STORE: &str = "pairs";

/// Listens to `target` now, for the first of `events` to fire: the future
/// is `Ok` if it is the first one named, `Err` for any other.
fn first_event(
    target: &web_sys::EventTarget,
    events: &'static [&'static str],
) -> Result<impl std::future::Future<Output = Result<(), StoreUnavailable>>, StoreUnavailable> {
    let (sender, settled) = oneshot::channel::<bool>();
    let sender = Rc::new(RefCell::new(Some(sender)));
    let handlers: Vec<Closure<dyn FnMut(web_sys::Event)>> = (0..events.len())
        .map(|i| {
            let sender = Rc::clone(&sender);
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
                if let Some(s) = sender.borrow_mut().take() {
                    let _ = s.send(i == 0);
                }
            })
        })
        .collect();
    for (event, handler) in events.iter().zip(&handlers) {
        target
            .add_event_listener_with_callback(event, handler.as_ref().unchecked_ref())
            .map_err(|_| StoreUnavailable)?;
    }
    let target = target.clone();
    Ok(async move {
        let ok = settled.await.unwrap_or(false);
        for (event, handler) in events.iter().zip(&handlers) {
            let _ =
                target.remove_event_listener_with_callback(event, handler.as_ref().unchecked_ref());
        }
        ok.then_some(()).ok_or(StoreUnavailable)
    })
}

async fn result(request: &IdbRequest) -> Result<JsValue, StoreUnavailable> {
    first_event(request, &["success", "error"])?.await?;
    request.result().map_err(|_| StoreUnavailable)
}

/// Open the database (created at the first use of the origin).
pub(crate) async fn open() -> Result<IdbDatabase, StoreUnavailable> {
    let factory = web_sys::window()
        .and_then(|w| w.indexed_db().ok().flatten())
        .ok_or(StoreUnavailable)?;
    let request = factory
        .open_with_u32(DATABASE, 1)
        .map_err(|_| StoreUnavailable)?;
    let upgrade = Closure::<dyn FnMut(web_sys::Event)>::new({
        let request = request.clone();
        move |_| {
            if let Ok(db) = request.result().and_then(|db| db.dyn_into::<IdbDatabase>()) {
                let _ = db.create_object_store(STORE);
            }
        }
    });
    request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
    let db = result(&request).await;
    request.set_onupgradeneeded(None);
    db?.dyn_into().map_err(|_| StoreUnavailable)
}

fn transaction(
    db: &IdbDatabase,
    mode: IdbTransactionMode,
) -> Result<(IdbTransaction, web_sys::IdbObjectStore), StoreUnavailable> {
    let tx = db
        .transaction_with_str_and_mode(STORE, mode)
        .map_err(|_| StoreUnavailable)?;
    let store = tx.object_store(STORE).map_err(|_| StoreUnavailable)?;
    Ok((tx, store))
}

/// The stored value of `key` (missing: nobody logged in; unreadable:
/// `StoreUnavailable` until a login or logout replaces it).
fn parse(value: JsValue) -> Result<Stored, StoreUnavailable> {
    match value.as_string() {
        Some(json) => crate::decode(json),
        None if value.is_undefined() => Ok(Stored::default()),
        None => Err(StoreUnavailable),
    }
}

/// Read `key` in a transaction of its own.
pub(crate) async fn read(db: &IdbDatabase, key: &str) -> Result<Stored, StoreUnavailable> {
    let (_tx, store) = transaction(db, IdbTransactionMode::Readonly)?;
    let request = store
        .get(&JsValue::from_str(key))
        .map_err(|_| StoreUnavailable)?;
    parse(result(&request).await?)
}

/// In one read-write transaction: read `key`, let `next` decide what to
/// write (`None`: nothing), write it, and wait until it is committed. The
/// decision's answer, once committed.
pub(crate) async fn update<T>(
    db: &IdbDatabase,
    key: &str,
    next: impl FnOnce(Result<Stored, StoreUnavailable>) -> Result<(Option<Stored>, T), StoreUnavailable>,
) -> Result<T, StoreUnavailable> {
    let (tx, store) = transaction(db, IdbTransactionMode::Readwrite)?;
    let committed = first_event(&tx, &["complete", "error", "abort"])?;
    let request = store
        .get(&JsValue::from_str(key))
        .map_err(|_| StoreUnavailable)?;
    let current = result(&request).await.and_then(parse);
    let decided = next(current);
    let answer = match decided {
        Ok((Some(stored), answer)) => {
            let json = crate::encode(&stored)?;
            store
                .put_with_key(&JsValue::from_str(&json), &JsValue::from_str(key))
                .map_err(|_| StoreUnavailable)?;
            Ok(answer)
        }
        Ok((None, answer)) => Ok(answer),
        Err(e) => Err(e),
    };
    committed.await?;
    answer
}
