//! `logout_and_revoke`: the session ends here, then at the server (RFC 7009,
//! or an app backend's logout route).

use refresh_machine_test_server::{AuthServer, Backend, ServerOptions};
use refresh_machine_ureq::{Client, EndpointError, Error, JsonEndpoint, TokenPair};

fn confidential() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        client_secret: Some("secret".into()),
        ..ServerOptions::default()
    })
    .unwrap()
}

fn client(server: &AuthServer, revocation: &str) -> Client {
    Client::builder()
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .client_secret("secret")
        .revocation_endpoint(revocation)
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .build()
}

/// The pair is useless afterwards: another process that still holds it
/// (restored from storage) cannot refresh it, and the session here is over.
#[test]
fn revoked_tokens_cannot_be_refreshed_by_anyone() {
    let server = confidential();
    let c = client(&server, &server.url("/revoke"));
    c.login_with_password("alice", "wonderland").unwrap();
    let copy: TokenPair = c.session().tokens().unwrap();
    c.logout_and_revoke().unwrap();
    assert_eq!(server.counters().revocations, 1);
    assert!(c.session().tokens().is_none());
    assert!(matches!(
        c.get(&server.url("/api/me")),
        Err(Error::LoggedOut)
    ));

    let elsewhere = client(&server, &server.url("/revoke"));
    elsewhere.set_tokens(&copy).unwrap();
    assert!(matches!(
        elsewhere.get(&server.url("/api/me")),
        Err(Error::LoginRequired)
    ));
    let k = server.counters();
    assert_eq!((k.refresh_ok, k.invalid_grants), (0, 1), "{k:?}");
}

#[test]
fn an_app_backends_logout_route_is_told() {
    let server = AuthServer::start_with(ServerOptions {
        backend: Backend::AppJwt,
        ..ServerOptions::default()
    })
    .unwrap();
    let refresh = JsonEndpoint::new(&server.refresh_url()).unwrap();
    let c = Client::builder()
        .json_endpoint_with(refresh)
        .revocation_endpoint(&server.url("/auth/logout"))
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .build();
    let credentials = r#"{"username":"alice","password":"wonderland"}"#;
    c.login_with_json(&server.login_url(), credentials).unwrap();
    let copy = c.session().tokens().unwrap();
    c.logout_and_revoke().unwrap();
    assert_eq!(server.counters().revocations, 1);
    c.set_tokens(&copy).unwrap();
    server.revoke_access_tokens();
    assert!(matches!(
        c.get(&server.url("/api/me")),
        Err(Error::LoginRequired)
    ));
}

/// A revocation the server did not confirm is an error, and the session is
/// logged out all the same.
#[test]
fn an_unconfirmed_revocation_is_an_error_after_the_local_logout() {
    let server = confidential();
    let c = client(&server, &server.url("/no-such-route"));
    c.login_with_password("alice", "wonderland").unwrap();
    let result = c.logout_and_revoke();
    assert!(
        matches!(
            result,
            Err(Error::Endpoint(EndpointError::Status { status: 404 }))
        ),
        "{result:?}"
    );
    assert!(c.session().tokens().is_none());
    assert_eq!(server.counters().revocations, 0);
    // Logged out already: nothing to revoke, nothing sent.
    let before = server.counters().requests;
    c.logout_and_revoke().unwrap();
    assert_eq!(server.counters().requests, before);
}

#[test]
fn a_revocation_endpoint_needs_a_token_endpoint() {
    let built = Client::builder().revocation_endpoint("https://auth.example/revoke");
    assert!(matches!(
        built,
        Err(refresh_machine_ureq::ConfigError::NoTokenEndpoint)
    ));
}

/// Coordinated, the logout that revokes also clears the shared store, as a
/// plain logout does: the other processes do not adopt the revoked pair.
#[test]
fn a_coordinated_logout_that_revokes_clears_the_store() {
    let server = confidential();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let c = Client::builder()
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .client_secret("secret")
        .revocation_endpoint(&server.url("/revoke"))
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .coordinated_by(refresh_machine_ureq::FileCoordinator::new(&file))
        .build();
    c.login_with_password("alice", "wonderland").unwrap();
    c.logout_and_revoke().unwrap();
    let stored: refresh_machine_ureq::Stored =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        stored.tokens, None,
        "the revoked pair is still in the store"
    );
    assert_eq!(server.counters().revocations, 1);
}
