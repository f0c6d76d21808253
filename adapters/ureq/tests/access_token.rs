//! `access_token`: a valid token for what is not a request through the
//! client (a websocket, gRPC metadata), with the session's rules.

use std::time::{Duration, SystemTime};

use refresh_machine_test_server::{together, AuthServer, ServerOptions};
use refresh_machine_ureq::{Client, Error, Failure, Secret};

fn logged_in(server: &AuthServer) -> Client {
    let client = Client::builder()
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .build();
    client.login_with_password("alice", "wonderland").unwrap();
    client
}

fn opaque() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap()
}

#[test]
fn an_expired_token_is_refreshed_once_before_it_is_handed_out() {
    let server = opaque();
    let client = logged_in(&server);
    let first = client.access_token().unwrap();
    assert_eq!(
        Some(&first),
        client.session().tokens().map(|t| t.access_token).as_ref()
    );
    // The session learns that its token expired (as from a stored pair).
    let mut pair = client.session().tokens().unwrap();
    pair.expires_at = Some(SystemTime::now() - Duration::from_secs(1));
    client.set_tokens(&pair).unwrap();
    let handed: Vec<Secret> = together(8, {
        let client = client.clone();
        move || client.access_token().unwrap()
    })
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let k = server.counters();
    assert_eq!(
        (k.refresh_calls, k.refresh_ok),
        (1, 1),
        "one refresh for eight: {k:?}"
    );
    assert!(handed.iter().all(|t| *t == handed[0] && *t != first));
    // Nothing was sent to the API, and no slot is left taken.
    assert_eq!(k.ok + k.unauthorized, 0);
    assert_eq!(client.session().snapshot().live, 0);
}

#[test]
fn a_refused_token_is_replaced_once_for_everyone_who_reports_it() {
    let server = opaque();
    let client = logged_in(&server);
    let refused = client.access_token().unwrap();
    server.revoke_access_tokens();
    let handed: Vec<Secret> = together(8, {
        let (client, refused) = (client.clone(), refused.clone());
        move || client.access_token_after_refusal(&refused).unwrap()
    })
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert_eq!(server.counters().refresh_calls, 1);
    assert!(handed.iter().all(|t| *t == handed[0] && *t != refused));
    // Reported again (a late report of the old token): no second refresh.
    assert_eq!(
        client.access_token_after_refusal(&refused).unwrap(),
        handed[0]
    );
    assert_eq!(server.counters().refresh_calls, 1);
    // The new token works where the old one was refused.
    assert_eq!(client.get(&server.url("/api/me")).unwrap().status(), 200);
}

#[test]
fn a_fresh_token_refused_again_is_not_refreshed_in_a_loop() {
    let server = opaque();
    let client = logged_in(&server);
    let refused = client.access_token().unwrap();
    let fresh = client.access_token_after_refusal(&refused).unwrap();
    // The resource refuses the fresh token too: a refresh would not help.
    let again = client.access_token_after_refusal(&fresh);
    assert!(
        matches!(again, Err(Error::Failed(Failure::Unauthorized))),
        "{again:?}"
    );
    assert_eq!(server.counters().refresh_calls, 1);
}

#[test]
fn logged_out_and_revoked_sessions_are_typed_failures() {
    let server = opaque();
    let client = logged_in(&server);
    client.logout().unwrap();
    assert!(matches!(client.access_token(), Err(Error::LoggedOut)));
    let client = logged_in(&server);
    let refused = client.access_token().unwrap();
    server.revoke_sessions();
    assert!(matches!(
        client.access_token_after_refusal(&refused),
        Err(Error::LoginRequired)
    ));
}
