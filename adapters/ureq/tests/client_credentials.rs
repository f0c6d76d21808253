//! Machine to machine: the client-credentials grant, repeated instead of a
//! refresh, with the same rules.

use std::time::Duration;

use refresh_machine_test_server::{together, AuthServer, ServerOptions, TokenFault};
use refresh_machine_ureq::{Client, Error, Hooks, TokenPair};

const SECRET: &str = "s3cret-of-the-service";

fn server() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        client_secret: Some(SECRET.into()),
        ..ServerOptions::default()
    })
    .unwrap()
}

fn service(server: &AuthServer, secret: &str) -> Client {
    let mut config = refresh_machine_ureq::Config::DEFAULT;
    config.refresh_backoff.base = Duration::from_millis(10);
    Client::builder()
        .client_credentials(&server.token_url(), "demo-client", secret)
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .config(config)
        .build()
}

fn all_ok(outcomes: Vec<std::thread::Result<Result<u16, String>>>) {
    let outcomes: Vec<_> = outcomes.into_iter().map(|r| r.unwrap()).collect();
    assert!(outcomes.iter().all(|o| *o == Ok(200)), "{outcomes:?}");
}

fn burst(client: &Client, url: String, n: usize) -> Vec<std::thread::Result<Result<u16, String>>> {
    let client = client.clone();
    together(n, move || {
        client
            .get(&url)
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    })
}

#[test]
fn the_first_burst_waits_for_one_grant_and_an_expiry_costs_one_more() {
    let server = server();
    let client = service(&server, SECRET);
    assert!(
        client.session().tokens().is_none(),
        "no token before the first request"
    );
    all_ok(burst(&client, server.url("/api/me"), 16));
    let k = server.counters();
    assert_eq!(
        (k.client_credentials_grants, k.unauthorized),
        (1, 0),
        "{k:?}"
    );
    let held = client.session().tokens().unwrap();
    assert_eq!(held.refresh_token, None, "no refresh token is shown");
    assert!(held.expires_at.is_some());

    server.revoke_access_tokens();
    all_ok(burst(&client, server.url("/api/me"), 16));
    let k = server.counters();
    assert_eq!(
        k.client_credentials_grants, 2,
        "one grant for the expiry: {k:?}"
    );
    assert_eq!((k.logins, k.refresh_calls, k.reuse_detections), (0, 0, 0));
}

#[test]
fn an_outage_of_the_token_endpoint_is_retried_and_loses_nothing() {
    let server = server();
    let client = service(&server, SECRET);
    server.set_token_fault(TokenFault::Status(503, None), 2);
    assert_eq!(client.get(&server.url("/api/me")).unwrap().status(), 200);
    let k = server.counters();
    assert_eq!(
        (k.token_faults, k.client_credentials_grants),
        (2, 1),
        "{k:?}"
    );
    // Down for longer than the retries: the request fails, the next one
    // (endpoint back) gets a token.
    server.revoke_access_tokens();
    server.set_token_fault(TokenFault::Status(503, None), 100);
    assert!(matches!(
        client.get(&server.url("/api/me")),
        Err(Error::RefreshUnavailable)
    ));
    server.clear_faults();
    assert_eq!(client.get(&server.url("/api/me")).unwrap().status(), 200);
}

#[test]
fn a_wrong_secret_is_a_configuration_error_not_a_lost_session() {
    let server = server();
    let client = service(&server, "not-the-secret");
    let first = client.get(&server.url("/api/me"));
    assert!(
        matches!(first, Err(Error::RefreshMisconfigured(Some(_)))),
        "{first:?}"
    );
    let k = server.counters();
    assert_eq!(
        (k.client_credentials_grants, k.ok, k.unauthorized),
        (0, 0, 0),
        "{k:?}"
    );
    // Only the grant went out (nothing with the stand-in went to the API),
    // and it is tried again later.
    assert_eq!(k.requests, 1, "{k:?}");
    assert!(matches!(
        client.get(&server.url("/api/me")),
        Err(Error::RefreshMisconfigured(_))
    ));
}

#[test]
fn persisted_tokens_carry_no_stand_in_and_start_the_next_process() {
    let server = server();
    let saved = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Option<TokenPair>>::new()));
    let store = saved.clone();
    let client = Client::builder()
        .client_credentials(&server.token_url(), "demo-client", SECRET)
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .hooks(Hooks {
            persist: Some(Box::new(move |t| store.lock().unwrap().push(t.cloned()))),
            ..Hooks::default()
        })
        .build();
    assert_eq!(client.get(&server.url("/api/me")).unwrap().status(), 200);
    let last = saved.lock().unwrap().last().cloned().flatten().unwrap();
    assert_eq!(last.refresh_token, None);
    // Every pair the hook saw was one the server issued (no stand-in for
    // the token before the first grant, none for a refresh token).
    for pair in saved.lock().unwrap().iter().flatten() {
        assert!(pair.access_token.expose().starts_with("at-"));
        assert_eq!(pair.refresh_token, None);
    }
    // The next process starts from the stored token: no new grant.
    let next = service(&server, SECRET);
    next.set_tokens(&last).unwrap();
    assert_eq!(next.get(&server.url("/api/me")).unwrap().status(), 200);
    assert_eq!(server.counters().client_credentials_grants, 1);
}

/// A 200 that holds no token (a proxy's page, a truncated answer) is lost
/// as a refresh's would be (the refresh token may have rotated), but a
/// machine has no refresh token to lose and no login to go back to: the
/// grant is repeated later, the client is not dead until a restart.
#[test]
fn a_token_answer_without_a_token_does_not_end_a_machine_session() {
    let server = server();
    let client = service(&server, SECRET);
    server.set_token_fault(TokenFault::Malformed, 100);
    let first = client.get(&server.url("/api/me"));
    assert!(matches!(first, Err(Error::RefreshUnavailable)), "{first:?}");
    let k = server.counters();
    assert_eq!(
        (k.ok, k.unauthorized),
        (0, 0),
        "nothing went to the API: {k:?}"
    );
    server.clear_faults();
    let next = client.get(&server.url("/api/me"));
    assert_eq!(next.map(|r| r.status().as_u16()).ok(), Some(200));
    assert_eq!(server.counters().client_credentials_grants, 1);
}

/// Building a service client tells the persist hook nothing: the stand-in
/// installed before the first grant is not a logout, so the tokens an app
/// stored (and is about to load) are not deleted.
#[test]
fn building_a_service_client_deletes_no_stored_tokens() {
    let server = server();
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Option<TokenPair>>::new()));
    let store = calls.clone();
    let _client = Client::builder()
        .client_credentials(&server.token_url(), "demo-client", SECRET)
        .unwrap()
        .hooks(Hooks {
            persist: Some(Box::new(move |t| store.lock().unwrap().push(t.cloned()))),
            ..Hooks::default()
        })
        .build();
    assert_eq!(
        *calls.lock().unwrap(),
        vec![],
        "the hook was told to delete"
    );
}
