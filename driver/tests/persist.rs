//! The persist hook sees token pairs in the order the tokens changed.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use refresh_machine_driver::refresh_machine::Config;
use refresh_machine_driver::{Hooks, Session, TokenPair};

fn pair(access: &str, refresh: &str) -> TokenPair {
    TokenPair::new(access).with_refresh_token(refresh)
}

/// Issue 15: persist notices ran outside the lock with no order. A slow
/// first hook call for an older pair finished after a newer pair was stored,
/// so the store ended with the older (spent) refresh token; a restart from it
/// was a reuse and a lost session. Hook calls are now serialized in the order
/// the tokens changed, and a pair older than one stored is skipped.
#[test]
fn the_persist_hook_never_stores_an_older_pair_after_a_newer_one() {
    let stored: Arc<Mutex<Vec<String>>> = Arc::default();
    let (inside, inside_rx) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let sink = stored.clone();
    let hooks = Hooks {
        persist: Some(Box::new(move |t: Option<&TokenPair>| {
            let access = t.map_or("-".to_owned(), |t| t.access_token.expose().to_owned());
            if access == "a1" {
                // The first store is slow: it is still running when a newer
                // pair arrives.
                inside.send(()).unwrap();
                let _ = release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(20));
            }
            sink.lock().unwrap().push(access);
        })),
        login_required: None,
    };
    let session = Arc::new(Session::new(Config::DEFAULT, 1, hooks));
    let first = {
        let s = session.clone();
        std::thread::spawn(move || s.login(&pair("a1", "r1")).unwrap())
    };
    inside_rx.recv().unwrap();
    let (done, done_rx) = mpsc::channel();
    let second = {
        let s = session.clone();
        std::thread::spawn(move || {
            s.login(&pair("a2", "r2")).unwrap();
            done.send(()).unwrap();
        })
    };
    // Without ordering the newer pair is stored at once; with it, it waits
    // for the slow store to finish. Either way, let the slow store go on.
    let _ = done_rx.recv_timeout(Duration::from_millis(500));
    release.send(()).unwrap();
    first.join().unwrap();
    second.join().unwrap();
    let stored = stored.lock().unwrap().clone();
    assert_eq!(
        stored.last().map(String::as_str),
        Some("a2"),
        "the store ended with an older pair: {stored:?}"
    );
    assert_eq!(session.tokens().unwrap().access_token.expose(), "a2");
}
