//! The shared end-to-end scenario table on a tokio multi-thread runtime, a
//! 200-request burst across an expiry, custom refreshers, bounded token bodies.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{build, opaque, runtime, spawn_burst, AsyncClient, Tokio};
use refresh_machine_reqwest::{Error, RefreshMiddleware};
use refresh_machine_test_server::{AuthServer, Harness};
use reqwest_middleware::ClientWithMiddleware;

struct Reqwest;

impl Harness for Reqwest {
    type Client = AsyncClient;

    fn client(&self, server: &AuthServer, config: refresh_machine_reqwest::Config) -> AsyncClient {
        build(server, config)
    }
}

refresh_machine_test_server::scenario_tests!(Reqwest);

/// The same table against a web tutorial's JSON backend.
mod app_backend {
    use super::Reqwest;
    use refresh_machine_test_server::AppBackend;
    refresh_machine_test_server::scenario_tests!(AppBackend(Reqwest));
}

#[test]
fn burst_of_200_across_an_expiry_one_refresh_no_failure() {
    let s = opaque();
    let c = build(&s, refresh_machine_reqwest::Config::DEFAULT);
    s.revoke_access_tokens();
    let url = s.url("/api/me");
    let results = spawn_burst(&c.client, &url, 200);
    let ok = results.iter().filter(|r| matches!(r, Ok(200))).count();
    assert_eq!(
        ok,
        200,
        "failures: {:?}",
        results
            .iter()
            .filter(|r| !matches!(r, Ok(200)))
            .collect::<Vec<_>>()
    );
    let k = s.counters();
    assert_eq!(k.refresh_calls, 1, "{k:?}");
    assert_eq!(k.reuse_detections, 0);
}

#[test]
fn an_async_custom_refresher_is_used_without_type_annotations() {
    let server = Arc::new(opaque());
    let calls = Arc::new(AtomicU32::new(0));
    let (srv, n) = (server.clone(), calls.clone());
    let auth = RefreshMiddleware::builder(Tokio)
        .allow_origin(&server.origin())
        .unwrap()
        // Closure types inferred: the async form has its own method.
        .refresh_with_async(move |_old| {
            let (srv, n) = (srv.clone(), n.clone());
            async move {
                n.fetch_add(1, Ordering::SeqCst);
                // Stands in for any custom grant: here the server mints a new family.
                refresh_machine_reqwest::RefreshReply::Tokens(common::minted(&srv))
            }
        })
        .seed(3)
        .build();
    let client = common::expired_client(&auth, &server);
    let statuses = spawn_burst(&client, &server.url("/api/me"), 5);
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "{statuses:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh for the burst");
}

#[test]
fn a_token_endpoint_without_scheme_or_host_is_a_configuration_error() {
    for url in [
        "/oauth/token",
        "ftp://auth.example/token",
        "auth.example/token",
    ] {
        let built = RefreshMiddleware::builder(Tokio).token_endpoint(url, "id");
        assert!(
            matches!(
                built,
                Err(refresh_machine_reqwest::ConfigError::InvalidTokenEndpoint)
            ),
            "{url}: {built:?}"
        );
    }
}

/// Issue 15: token-endpoint bodies are read up to a limit (a 256 MB body
/// took the process from 8 MB to 521 MB). An endpoint that streams 256 MiB is
/// cut off after `MAX_TOKEN_RESPONSE`: a typed error, and the server could
/// write only what the socket buffers hold.
#[test]
fn an_endless_token_response_is_not_read_to_the_end() {
    let endless = refresh_machine_test_server::EndlessTokenEndpoint::start(256 << 20).unwrap();
    let auth = RefreshMiddleware::builder(Tokio)
        .token_endpoint(endless.url(), "demo-client")
        .unwrap()
        .timeout(Duration::from_secs(30))
        .build();
    let err = runtime()
        .block_on(auth.login_with_password("alice", "wonderland"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Endpoint(refresh_machine_reqwest::EndpointError::ResponseTooLarge {
                status: 200
            })
        ),
        "{err:?}"
    );
    drop(auth);
    let written = endless.written();
    assert!(written < 64 << 20, "the client read {written} bytes");
}

/// Issue 15: an async refresher that calls through the same middleware
/// client (the React tutorials' shape) waited on its own refresh until the
/// deadline; the re-entry is detected and fails fast with a typed error.
#[test]
fn an_async_refresher_that_calls_through_its_own_client_fails_fast() {
    let server = Arc::new(opaque());
    let own: Arc<OnceLock<ClientWithMiddleware>> = Arc::default();
    let inner: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let (srv, cell, seen) = (server.clone(), own.clone(), inner.clone());
    let mut config = refresh_machine_reqwest::Config::DEFAULT;
    config.max_refresh_attempts = 1;
    let auth = RefreshMiddleware::builder(Tokio)
        .allow_origin(&server.origin())
        .unwrap()
        .config(config)
        .refresh_with_async(move |_old| {
            let (srv, cell, seen) = (srv.clone(), cell.clone(), seen.clone());
            async move {
                let client = cell.get().expect("client set");
                let r = client.get(srv.url("/api/me")).send().await;
                let shown = match r {
                    Ok(resp) => format!("status {}", resp.status()),
                    Err(e) => format!("{:?}", refresh_machine_reqwest::error_of(&e)),
                };
                *seen.lock().unwrap() = Some(shown);
                refresh_machine_reqwest::RefreshReply::Transient { retry_after: None }
            }
        })
        .build();
    let client = common::expired_client(&auth, &server);
    own.set(client.clone()).unwrap();
    let outer = runtime().block_on(client.get(server.url("/api/me")).send());
    let outer = outer.expect_err("the refresh failed");
    assert!(
        matches!(
            refresh_machine_reqwest::error_of(&outer),
            Some(Error::RefreshUnavailable)
        ),
        "{outer:?}"
    );
    assert_eq!(
        inner.lock().unwrap().as_deref(),
        Some("Some(ReentrantRefresh)")
    );
}
