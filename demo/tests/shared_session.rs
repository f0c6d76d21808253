//! One session shared by a blocking ureq client and a reqwest middleware in
//! one process (`Builder::share_session`).

use std::sync::Arc;

use refresh_machine_reqwest::{RefreshMiddleware, TokioTimer};
use refresh_machine_test_server::{together, AuthServer, ServerOptions};
use refresh_machine_ureq::{Client, Error, RefreshReply, TokenPair};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An expiry met by both clients at once costs one refresh; a login or a
/// logout through either is seen by both.
#[test]
fn a_ureq_client_and_a_reqwest_middleware_share_one_session() {
    let server = Arc::new(
        AuthServer::start_with(ServerOptions {
            advertise_expiry: false,
            ..ServerOptions::default()
        })
        .unwrap(),
    );
    let blocking = Client::builder()
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .build();
    let auth = RefreshMiddleware::builder(TokioTimer)
        .share_session(&blocking)
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .build();
    let asynchronous = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth.clone())
        .build();
    blocking.login_with_password("alice", "wonderland").unwrap();
    assert_eq!(auth.session().tokens(), blocking.session().tokens());

    server.revoke_access_tokens();
    let rt = runtime();
    let url = server.url("/api/me");
    // Eight async requests and eight blocking ones meet the expiry together.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (c, url) = (asynchronous.clone(), url.clone());
            rt.spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let threads = together(8, {
        let (c, url) = (blocking.clone(), url.clone());
        move || c.get(&url).map(|r| r.status().as_u16())
    });
    for t in threads {
        assert_eq!(t.unwrap().unwrap(), 200);
    }
    for t in tasks {
        assert_eq!(rt.block_on(t).unwrap().unwrap(), 200);
    }
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");

    auth.logout().unwrap();
    assert!(matches!(blocking.get(&url), Err(Error::LoggedOut)));
}

/// The reqwest middleware starts the refresh and its request is dropped
/// (a timeout, a cancelled task): the blocking client, on a thread outside
/// any tokio runtime, is left waiting for that exchange. The exchange keeps
/// running on the runtime it needs (its later steps spawn tasks and use
/// tokio's reactor, as reqwest's connections do), never on the blocking
/// thread, and its end wakes the blocking request: one refresh, and the
/// blocking request succeeds.
#[test]
fn an_exchange_started_by_reqwest_runs_on_its_runtime_whoever_waits_for_it() {
    let server = Arc::new(
        AuthServer::start_with(ServerOptions {
            advertise_expiry: false,
            ..ServerOptions::default()
        })
        .unwrap(),
    );
    // A minute's refresh deadline: a waiter that is not woken when the
    // exchange ends would wait that long.
    let mut config = refresh_machine_ureq::Config::DEFAULT;
    config.refresh_timeout = std::time::Duration::from_secs(60);
    let blocking = Client::builder()
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .config(config)
        .build();
    let token_url = server.token_url();
    let auth = RefreshMiddleware::builder(TokioTimer)
        .share_session(&blocking)
        .allow_origin(&server.origin())
        .unwrap()
        .refresh_with_async(move |refresh_token| {
            let token_url = token_url.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                // Needs the runtime's context when it is polled.
                let grant = tokio::task::spawn(async move {
                    // The test server's tokens are URL-safe.
                    let form = format!(
                        "grant_type=refresh_token&client_id=demo-client&refresh_token={}",
                        refresh_token.expose()
                    );
                    let body = reqwest::Client::new()
                        .post(token_url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(form)
                        .send()
                        .await
                        .ok()?
                        .bytes()
                        .await
                        .ok()?;
                    let body: serde_json::Value = serde_json::from_slice(&body).ok()?;
                    Some(
                        TokenPair::new(body["access_token"].as_str()?)
                            .with_refresh_token(body["refresh_token"].as_str()?),
                    )
                });
                match grant.await {
                    Ok(Some(pair)) => RefreshReply::Tokens(pair),
                    _ => RefreshReply::Transient { retry_after: None },
                }
            }
        })
        .build();
    let asynchronous = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    blocking.login_with_password("alice", "wonderland").unwrap();
    server.revoke_access_tokens();
    let rt = runtime();
    let url = server.url("/api/me");
    // The async request meets the expiry, starts the refresh, and is dropped.
    let dropped = rt.block_on(async {
        let send = asynchronous.get(&url).send();
        tokio::time::timeout(std::time::Duration::from_millis(50), send).await
    });
    assert!(dropped.is_err(), "dropped while the refresh was in flight");
    // Only the blocking thread waits for the exchange now, and is woken
    // when it ends (bounded at 20 s; unwoken, it would wait a minute).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn({
        let (c, url) = (blocking.clone(), url.clone());
        move || tx.send(c.get(&url).map(|r| r.status().as_u16()))
    });
    let status = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the blocking request was woken by the exchange's end, and did not panic");
    assert_eq!(status.unwrap(), 200);
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
    drop(rt);
}

/// The runtime an exchange was spawned on shuts down with the exchange in
/// flight (the async part of the application ends first): the exchange is
/// lost, and the blocking request waiting for it hears so at once (a
/// transient failure), instead of sleeping out the refresh deadline.
#[test]
fn a_runtime_shut_down_under_an_exchange_wakes_its_blocking_waiters() {
    let server = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap();
    // A minute's refresh deadline: an unwoken waiter waits that long.
    let mut config = refresh_machine_ureq::Config::DEFAULT;
    config.refresh_timeout = std::time::Duration::from_secs(60);
    let blocking = Client::builder()
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .config(config)
        .build();
    let auth = RefreshMiddleware::builder(TokioTimer)
        .share_session(&blocking)
        .allow_origin(&server.origin())
        .unwrap()
        // Never answers within the test: the runtime goes first.
        .refresh_with_async(|_| async {
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
            RefreshReply::Transient { retry_after: None }
        })
        .build();
    let asynchronous = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    blocking.login_with_password("alice", "wonderland").unwrap();
    server.revoke_access_tokens();
    let rt = runtime();
    let url = server.url("/api/me");
    let dropped = rt.block_on(async {
        let send = asynchronous.get(&url).send();
        tokio::time::timeout(std::time::Duration::from_millis(200), send).await
    });
    assert!(dropped.is_err(), "dropped while the refresh was in flight");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn({
        let (c, url) = (blocking.clone(), url.clone());
        move || tx.send(c.get(&url).map(|r| r.status().as_u16()))
    });
    // The blocking request is waiting for the exchange (bounded look).
    let waiting = (0..1000).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        blocking.session().snapshot().waiting == 1
    });
    assert!(waiting, "{:?}", blocking.session().snapshot());
    rt.shutdown_background();
    let answered = rx.recv_timeout(std::time::Duration::from_secs(20));
    assert!(
        answered.is_ok(),
        "the blocking request was not woken when the exchange was lost"
    );
}
