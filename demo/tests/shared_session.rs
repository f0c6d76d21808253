//! One session shared by a blocking ureq client and a reqwest middleware in
//! one process (`Builder::share_session`).

use std::sync::Arc;

use refresh_machine_reqwest::{RefreshMiddleware, TokioTimer};
use refresh_machine_test_server::{together, AuthServer, ServerOptions};
use refresh_machine_ureq::{Client, Error};

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

    auth.logout();
    assert!(matches!(blocking.get(&url), Err(Error::LoggedOut)));
}
