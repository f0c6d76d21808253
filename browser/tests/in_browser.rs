//! The reqwest middleware in a real browser (headless Chromium, through
//! wasm-bindgen-test), against the strict test server on 127.0.0.1 over
//! CORS. `bash browser/run` starts two test servers (`serve`), builds this
//! with their origins and runs it; see TESTING.md.
//!
//! The servers' clocks are real, so no test waits for an expiry: an expiry
//! is the server revoking every access token it issued (`/control/`).
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::FutureExt;
use js_sys::Reflect;
use refresh_machine_browser::{Api, Sharing};
use refresh_machine_driver::refresh_machine::coordination::Lease;
use refresh_machine_driver::refresh_machine::{Backoff, Config, SessionState};
use refresh_machine_driver::Coordinator;
use refresh_machine_reqwest::{
    error_of, BrowserTimer, Error, Hooks, RefreshMiddleware, Timer, TokenPair, TypedResult,
};
use refresh_machine_tabs::TabsCoordinator;
use reqwest_middleware::ClientWithMiddleware;
use serde_json::Value;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The API and token server the tests use.
const API: &str = env!("REFRESH_MACHINE_TEST_API");
/// Another origin (a second server): where a redirect would take tokens.
const OTHER: &str = env!("REFRESH_MACHINE_TEST_OTHER");

/// `POST {origin}/control/{route}` (the test server's remote control).
async fn control(origin: &str, route: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{origin}/control/{route}"))
        .send()
        .await
        .expect("the test server answers");
    assert!(
        response.status().is_success(),
        "{route}: {}",
        response.status()
    );
    response.json().await.expect("a JSON answer")
}

/// What the server has seen.
async fn counters(origin: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{origin}/counters"))
        .send()
        .await
        .expect("the test server answers")
        .json()
        .await
        .expect("JSON counters")
}

fn count(counters: &Value, name: &str) -> u64 {
    counters[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {counters}"))
}

/// A client logged in on a fresh server, and how many times it signalled a
/// lost session.
struct Logged {
    auth: RefreshMiddleware,
    client: ClientWithMiddleware,
    lost: Arc<AtomicUsize>,
}

async fn logged_in() -> Logged {
    control(API, "reset").await;
    control(OTHER, "reset").await;
    let issued = control(API, "login").await;
    let tokens = TokenPair::new(issued["access_token"].as_str().expect("an access token"))
        .with_refresh_token(issued["refresh_token"].as_str().expect("a refresh token"));
    let lost = Arc::new(AtomicUsize::new(0));
    let signalled = Arc::clone(&lost);
    let auth = RefreshMiddleware::builder(BrowserTimer)
        .token_endpoint(&format!("{API}/token"), "demo-client")
        .expect("a token endpoint")
        .allow_origin(API)
        .expect("an origin")
        // Quick refresh retries: the outage test fails its requests fast.
        .config({
            let mut config = Config::DEFAULT;
            config.refresh_backoff = Backoff {
                base: Duration::from_millis(5),
                max: Duration::from_millis(20),
            };
            config
        })
        .hooks(Hooks {
            login_required: Some(Box::new(move || {
                signalled.fetch_add(1, Ordering::SeqCst);
            })),
            ..Hooks::default()
        })
        .build();
    auth.set_tokens(&tokens).expect("tokens installed");
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth.clone())
        .build();
    Logged { auth, client, lost }
}

/// The typed failures these tests expect.
#[derive(Debug, PartialEq)]
enum Failed {
    LoginRequired,
    RefreshUnavailable,
}

/// `n` concurrent `GET /api/me`: each one's status, or its typed error.
async fn burst(client: &ClientWithMiddleware, n: usize) -> Vec<Result<u16, Failed>> {
    let url = format!("{API}/api/me");
    join_all((0..n).map(|_| async {
        match client.get(&url).send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => match error_of(&e) {
                Some(Error::LoginRequired) => Err(Failed::LoginRequired),
                Some(Error::RefreshUnavailable) => Err(Failed::RefreshUnavailable),
                _ => panic!("an unexpected failure: {e:?}"),
            },
        }
    }))
    .await
}

#[wasm_bindgen_test]
async fn an_expiry_burst_is_one_refresh() {
    let s = logged_in().await;
    assert!(burst(&s.client, 5).await.iter().all(|r| *r == Ok(200)));
    control(API, "revoke-access-tokens").await;
    let results = burst(&s.client, 30).await;
    assert!(results.iter().all(|r| *r == Ok(200)), "{results:?}");
    let c = counters(API).await;
    assert_eq!(
        (count(&c, "refresh_calls"), count(&c, "refresh_ok")),
        (1, 1),
        "{c}"
    );
    assert_eq!(count(&c, "reuse_detections"), 0, "{c}");
    assert_eq!(s.lost.load(Ordering::SeqCst), 0);
}

#[wasm_bindgen_test]
async fn a_revoked_grant_is_one_login_required_signal() {
    let s = logged_in().await;
    control(API, "revoke-sessions").await;
    control(API, "revoke-access-tokens").await;
    let results = burst(&s.client, 10).await;
    assert!(
        results.iter().all(|r| *r == Err(Failed::LoginRequired)),
        "{results:?}"
    );
    // Later requests fail at once: no grant is presented again.
    let later = burst(&s.client, 3).await;
    assert!(later.iter().all(|r| *r == Err(Failed::LoginRequired)));
    let c = counters(API).await;
    assert_eq!(count(&c, "refresh_calls"), 1, "{c}");
    assert_eq!(count(&c, "invalid_grants"), 1, "{c}");
    assert_eq!(
        s.lost.load(Ordering::SeqCst),
        1,
        "one signal per lost session"
    );
    assert_eq!(s.auth.session().state(), SessionState::LoginRequired);
}

#[wasm_bindgen_test]
async fn a_token_server_outage_does_not_log_out() {
    let s = logged_in().await;
    control(API, "token-fault?kind=status&status=503&times=100").await;
    control(API, "revoke-access-tokens").await;
    let results = burst(&s.client, 5).await;
    assert!(
        results
            .iter()
            .all(|r| *r == Err(Failed::RefreshUnavailable)),
        "{results:?}"
    );
    assert_eq!(s.auth.session().state(), SessionState::Active, "kept");
    assert_eq!(s.lost.load(Ordering::SeqCst), 0);
    // The server is back: the same session refreshes once and goes on.
    control(API, "clear-faults").await;
    let before = count(&counters(API).await, "refresh_ok");
    let results = burst(&s.client, 5).await;
    assert!(results.iter().all(|r| *r == Ok(200)), "{results:?}");
    let c = counters(API).await;
    assert_eq!(count(&c, "refresh_ok") - before, 1, "{c}");
    assert_eq!(count(&c, "reuse_detections"), 0, "{c}");
}

/// `fetch` follows a 307 with the same form body: the refresh token would
/// go to the other origin. The token call refuses redirects instead.
#[wasm_bindgen_test]
async fn the_refresh_token_never_follows_a_redirect() {
    let s = logged_in().await;
    let other_port = OTHER.rsplit(':').next().expect("a port");
    control(
        API,
        &format!("token-fault?kind=redirect&port={other_port}&times=1"),
    )
    .await;
    control(API, "revoke-access-tokens").await;
    let results = burst(&s.client, 3).await;
    // The refused redirect is a transient failure; the retry succeeds.
    assert!(results.iter().all(|r| *r == Ok(200)), "{results:?}");
    let elsewhere = counters(OTHER).await;
    assert_eq!(
        (
            count(&elsewhere, "refresh_calls"),
            count(&elsewhere, "requests")
        ),
        (0, 1),
        "the refresh token followed the redirect (the one request is this read): {elsewhere}"
    );
    let c = counters(API).await;
    assert_eq!(
        (count(&c, "token_faults"), count(&c, "refresh_ok")),
        (1, 1),
        "{c}"
    );
}

/// The token never goes to an origin it was not issued for.
#[wasm_bindgen_test]
async fn the_token_stays_on_its_origin() {
    let s = logged_in().await;
    let response = s
        .client
        .get(format!("{OTHER}/api/me"))
        .send()
        .await
        .typed()
        .expect("sent");
    assert_eq!(response.status().as_u16(), 401);
    let elsewhere = counters(OTHER).await;
    assert_eq!(count(&elsewhere, "with_authorization"), 0, "{elsewhere}");
}

/// The example page's client, across an expiry: one refresh, the rotated
/// pair saved in `sessionStorage` by the persist hook.
#[wasm_bindgen_test]
async fn the_example_app_survives_an_expiry() {
    control(API, "reset").await;
    let storage = web_sys::window()
        .and_then(|w| w.session_storage().ok().flatten())
        .expect("sessionStorage");
    storage.clear().expect("cleared");
    let api = Api::new(API, Sharing::ThisTab).expect("a client");
    api.login("alice".into(), "wonderland".into())
        .await
        .expect("logged in");
    let saved = |storage: &web_sys::Storage| {
        let json = storage
            .get_item("refresh-machine-example-tokens")
            .expect("readable")
            .expect("saved");
        serde_json::from_str::<Value>(&json).expect("JSON")["refresh_token"].clone()
    };
    let first = saved(&storage);
    control(API, "revoke-access-tokens").await;
    let statuses = join_all((0..10).map(|_| api.get("/api/me".into()))).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "every request succeeds"
    );
    let c = counters(API).await;
    assert_eq!(count(&c, "refresh_ok"), 1, "{c}");
    assert!(api.logged_in());
    assert_ne!(saved(&storage), first, "the rotated refresh token is saved");
    // A new page of the same tab starts from the saved pair, no login.
    let reloaded = Api::new(API, Sharing::ThisTab).expect("a client");
    assert!(matches!(reloaded.get("/api/me".into()).await, Ok(200)));
}

/// A lease attempt dropped before the browser answers (its exchange
/// aborted) leaves no Web Lock behind: the next attempt, from any tab, gets
/// the lease.
#[wasm_bindgen_test]
async fn a_lease_attempt_dropped_before_the_answer_holds_no_lock() {
    let first = TabsCoordinator::new("dropped-attempt").expect("supported");
    {
        let mut attempt = first.take_lease(1, Duration::from_secs(10));
        assert!(
            (&mut attempt).now_or_never().is_none(),
            "the browser answers a lock request later"
        );
    }
    BrowserTimer.sleep(Duration::from_millis(100)).await;
    let other = TabsCoordinator::new("dropped-attempt").expect("supported");
    let lease = other.take_lease(2, Duration::from_secs(10)).await;
    assert!(matches!(lease, Ok(Lease::Taken)), "{lease:?}");
    other.release(2).await;
}

/// A lock request the browser refuses (it rejects without calling back)
/// is a store failure at once, not a wait until the refresh's deadline.
#[wasm_bindgen_test]
async fn a_refused_lock_request_is_a_store_failure() {
    let navigator = web_sys::window().expect("a window").navigator();
    let locks = Reflect::get(&navigator, &"locks".into()).expect("navigator.locks");
    let request = Reflect::get(&locks, &"request".into()).expect("locks.request");
    let refuse = js_sys::Function::new_no_args("return Promise.reject(new Error('refused'))");
    Reflect::set(&locks, &"request".into(), &refuse).expect("stubbed");
    let store = TabsCoordinator::new("refused-request").expect("supported");
    let lease = store.take_lease(1, Duration::from_secs(10)).await;
    Reflect::set(&locks, &"request".into(), &request).expect("restored");
    assert!(lease.is_err(), "{lease:?}");
}
