//! ureq-specific behaviour beyond the shared scenario table.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use refresh_machine_test_server::{redirect_to, AuthServer, ServerOptions};
use refresh_machine_ureq::{Client, Error, Hooks, RefreshReply, Secret, TokenPair};

fn opaque() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap()
}

fn client_for(s: &AuthServer) -> refresh_machine_ureq::ClientBuilder {
    Client::builder()
        .token_endpoint(&s.token_url(), &s.options().client_id)
        .unwrap()
        .allow_origin(&s.origin())
        .unwrap()
        .timeout(Duration::from_secs(10))
        .seed(1)
}

#[test]
fn a_streamed_body_gets_the_401_back_unchanged() {
    let s = opaque();
    let c = client_for(&s).build();
    c.login_with_password("alice", "wonderland").unwrap();
    s.revoke_access_tokens();
    let req = http::Request::post(s.url("/api/orders")).body(()).unwrap();
    let body = std::io::Cursor::new(br#"{"item":"pen"}"#.to_vec());
    match c.send_streaming(req, body) {
        Err(Error::BodyNotReplayable(Some(resp))) => {
            assert_eq!(resp.status(), 401);
            assert!(resp.headers().contains_key("www-authenticate"));
        }
        other => panic!("expected BodyNotReplayable with the 401, got {other:?}"),
    }
    assert_eq!(s.counters().orders, 0);
    // The next buffered request refreshes and succeeds.
    let ok = c
        .post(&s.url("/api/orders"), br#"{"item":"pen"}"#.to_vec())
        .unwrap();
    assert_eq!(ok.status(), 201);
    assert_eq!(s.counters().refresh_calls, 1);
}

#[test]
fn a_custom_refresher_is_used_and_rotated_tokens_are_persisted() {
    let s = opaque();
    let calls = Arc::new(AtomicU32::new(0));
    let stored: Arc<Mutex<Vec<Option<TokenPair>>>> = Arc::default();
    let server = Arc::new(s);
    let (srv, n) = (server.clone(), calls.clone());
    let sink = stored.clone();
    let c = client_for(&server)
        .refresh_with(move |_old: &Secret| {
            n.fetch_add(1, Ordering::SeqCst);
            // Stands in for any custom grant: here the server mints a new family.
            let t = srv.login();
            RefreshReply::Tokens(
                TokenPair::new(Secret::from(t.access_token))
                    .with_refresh_token(Secret::from(t.refresh_token)),
            )
        })
        .hooks(Hooks {
            persist: Some(Box::new(move |t| sink.lock().unwrap().push(t.cloned()))),
            ..Hooks::default()
        })
        .build();
    let first = server.login();
    c.set_tokens(
        &TokenPair::new(Secret::from(first.access_token))
            .with_refresh_token(Secret::from(first.refresh_token)),
    )
    .unwrap();
    server.revoke_access_tokens();
    assert_eq!(c.get(&server.url("/api/me")).unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stored = stored.lock().unwrap();
    assert_eq!(stored.len(), 2, "login and refresh are both persisted");
    assert_eq!(
        stored[1].as_ref().map(|t| t.access_token.clone()),
        c.session().tokens().map(|t| t.access_token),
    );
    drop(stored);
    c.logout().unwrap();
    assert!(matches!(
        c.get(&server.url("/api/me")),
        Err(Error::LoggedOut)
    ));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let s = opaque();
    let c = client_for(&s).client_secret("s3cret-value").build();
    c.set_tokens(
        &TokenPair::new(Secret::from("access-abc-123"))
            .with_refresh_token(Secret::from("refresh-xyz-789")),
    )
    .unwrap();
    let text = format!("{c:?} {:?}", c.session().tokens());
    for secret in ["access-abc-123", "refresh-xyz-789", "s3cret-value"] {
        assert!(!text.contains(secret), "{secret} leaked in {text}");
    }
}

#[test]
fn a_confidential_client_authenticates_with_basic() {
    let s = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        client_secret: Some("top secret".into()),
        ..ServerOptions::default()
    })
    .unwrap();
    let c = client_for(&s).client_secret("top secret").build();
    c.login_with_password("alice", "wonderland").unwrap();
    s.revoke_access_tokens();
    assert_eq!(c.get(&s.url("/api/me")).unwrap().status(), 200);
    assert_eq!(s.counters().refresh_ok, 1);
    // A wrong secret cannot log in: typed endpoint error, no token in the text.
    let bad = client_for(&s).client_secret("wrong").build();
    let err = bad.login_with_password("alice", "wonderland").unwrap_err();
    assert!(matches!(err, Error::Endpoint(_)), "{err:?}");
}

/// Issue 14, rule 4: a refresh request that could not be built locally (a
/// client secret too long for the fixed 1 KiB header buffer) was reported as
/// a rejected grant: the session was lost without contacting the server.
/// The header is now sized from the credentials.
#[test]
fn a_long_client_secret_still_refreshes() {
    let secret = "s".repeat(2_000);
    let s = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        client_secret: Some(secret.clone()),
        ..ServerOptions::default()
    })
    .unwrap();
    let c = client_for(&s).client_secret(&secret).build();
    c.login_with_password("alice", "wonderland").unwrap();
    s.revoke_access_tokens();
    assert_eq!(c.get(&s.url("/api/me")).unwrap().status(), 200);
    assert_eq!(s.counters().refresh_ok, 1);
}

/// Issue 14, rule 4: `invalid_client` from the token endpoint is a
/// configuration fault: typed, tokens kept, no login-required signal.
#[test]
fn a_refused_client_is_a_configuration_fault_not_a_lost_session() {
    let s = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        client_secret: Some("right".into()),
        ..ServerOptions::default()
    })
    .unwrap();
    let lost = Arc::new(AtomicU32::new(0));
    let counter = lost.clone();
    let login = client_for(&s).client_secret("right").build();
    login.login_with_password("alice", "wonderland").unwrap();
    let tokens = login.session().tokens().expect("logged in");
    // The same tokens in a client whose secret is wrong (a rotated secret,
    // a copy-paste error): its refreshes are refused as `invalid_client`.
    let c = client_for(&s)
        .client_secret("wrong")
        .hooks(Hooks {
            persist: None,
            login_required: Some(Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })),
        })
        .build();
    c.set_tokens(&tokens).unwrap();
    s.revoke_access_tokens();
    let err = c.get(&s.url("/api/me")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RefreshMisconfigured(Some(refresh_machine_ureq::OAuthError::InvalidClient))
        ),
        "{err:?}"
    );
    assert_eq!(lost.load(Ordering::SeqCst), 0, "no login-required signal");
    assert_eq!(c.session().tokens(), Some(tokens), "tokens kept");
}

/// Issue 15: token-endpoint bodies are read up to a limit. An endpoint that
/// streams 256 MiB is cut off after `MAX_TOKEN_RESPONSE`: a typed error, and
/// the server could write only what the socket buffers hold.
#[test]
fn an_endless_token_response_is_not_read_to_the_end() {
    let endless = refresh_machine_test_server::EndlessTokenEndpoint::start(256 << 20).unwrap();
    let c = Client::builder()
        .token_endpoint(endless.url(), "demo-client")
        .unwrap()
        .timeout(Duration::from_secs(30))
        .build();
    let err = c.login_with_password("alice", "wonderland").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Endpoint(refresh_machine_ureq::EndpointError::ResponseTooLarge { status: 200 })
        ),
        "{err:?}"
    );
    drop(c);
    let written = endless.written();
    assert!(written < 64 << 20, "the client read {written} bytes");
}

/// Issue 15: a caller's own `Authorization` on a request to an origin the
/// client holds no token for was silently dropped. It goes out unchanged.
#[test]
fn a_callers_own_authorization_reaches_an_origin_that_is_not_ours() {
    let s = opaque();
    let other = opaque();
    let c = client_for(&s).build();
    let req = http::Request::get(other.url("/api/me"))
        .header("authorization", "Bearer the-callers-own")
        .body(Vec::new())
        .unwrap();
    let resp = c.send(req).unwrap();
    assert_eq!(resp.status(), 401, "the other server does not know it");
    assert_eq!(other.counters().with_authorization, 1);
    assert_eq!(s.counters().requests, 0);
}

/// Issue 15: a refresher that calls through the same client (as one of the
/// React tutorials does) waited on its own refresh until the deadline. The
/// re-entry is detected and fails fast with a typed error.
#[test]
fn a_refresher_that_calls_through_its_own_client_fails_fast() {
    let s = Arc::new(opaque());
    let own: Arc<std::sync::OnceLock<Client>> = Arc::default();
    let inner: Arc<Mutex<Option<String>>> = Arc::default();
    let (srv, client_cell, seen) = (s.clone(), own.clone(), inner.clone());
    let c = client_for(&s)
        // Short: without the check, the inner call would wait this long and
        // end RefreshUnavailable instead.
        .timeout(Duration::from_secs(2))
        .refresh_with(move |_old: &Secret| {
            let c = client_cell.get().expect("client set");
            let r = c.get(&srv.url("/api/me"));
            *seen.lock().unwrap() = Some(format!("{:?}", r.map(|r| r.status())));
            RefreshReply::Transient { retry_after: None }
        })
        .config({
            let mut config = refresh_machine_ureq::Config::DEFAULT;
            config.max_refresh_attempts = 1;
            config
        })
        .build();
    own.set(c.clone()).unwrap();
    let t = s.login();
    c.set_tokens(
        &TokenPair::new(Secret::from(t.access_token))
            .with_refresh_token(Secret::from(t.refresh_token)),
    )
    .unwrap();
    s.revoke_access_tokens();
    let outer = c.get(&s.url("/api/me")).unwrap_err();
    assert!(matches!(outer, Error::RefreshUnavailable), "{outer:?}");
    assert_eq!(
        inner.lock().unwrap().as_deref(),
        Some("Err(ReentrantRefresh)")
    );
    // Outside the refresher the same client works as ever.
    assert!(matches!(
        c.get(&s.url("/api/me")),
        Err(Error::RefreshUnavailable)
    ));
}

/// Issue 15: the std drivers capped tokens at 4 KiB, and a 4,097-byte token
/// from a refresh ended the session. Large JWTs fit (16 KiB).
#[test]
fn a_large_jwt_sized_token_survives_a_refresh() {
    let s = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        access_token_padding: 12_000,
        ..ServerOptions::default()
    })
    .unwrap();
    let c = client_for(&s).build();
    c.login_with_password("alice", "wonderland").unwrap();
    s.revoke_access_tokens();
    assert_eq!(c.get(&s.url("/api/me")).unwrap().status(), 200);
    assert_eq!(s.counters().refresh_ok, 1);
}

/// Issue 15: stored tokens carried their remaining lifetime, relative to an
/// unknown "now": read back after a restart they overstated their validity
/// and the first request went out with an expired token (a 401 round trip).
/// They carry wall-clock expiries; an access token that expired while the
/// app was stopped is refreshed before it is sent.
#[test]
fn tokens_stored_before_a_restart_do_not_overstate_their_validity() {
    let s = opaque();
    let saved: Arc<Mutex<Option<TokenPair>>> = Arc::default();
    let sink = saved.clone();
    let before = client_for(&s)
        .hooks(Hooks {
            persist: Some(Box::new(move |t| *sink.lock().unwrap() = t.cloned())),
            login_required: None,
        })
        .build();
    let t = s.login();
    before
        .set_tokens(&TokenPair {
            access_token: Secret::from(t.access_token),
            refresh_token: Some(Secret::from(t.refresh_token)),
            expires_at: Some(std::time::SystemTime::now() + Duration::from_secs(60)),
            refresh_expires_at: None,
        })
        .unwrap();
    let mut stored = saved.lock().unwrap().clone().expect("persisted");
    let at = stored.expires_at.expect("an absolute expiry is stored");
    let left = at.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(50));
    // The app stops for two minutes: the same stored pair, read back later.
    stored.expires_at = stored.expires_at.map(|at| at - Duration::from_secs(120));
    s.revoke_access_tokens();
    let after = client_for(&s).build();
    after.set_tokens(&stored).unwrap();
    assert_eq!(after.get(&s.url("/api/me")).unwrap().status(), 200);
    let k = s.counters();
    assert_eq!(k.unauthorized, 0, "sent an expired token first: {k:?}");
    assert_eq!(k.refresh_ok, 1);
}

/// A refresher that panics: the panic reaches the caller that ran it (once),
/// the refresh counts as a transient failure, and the session is not left
/// waiting for an exchange nobody will finish: the next request refreshes.
/// Both shapes: a blocking refresher panics while the ticket is held (its
/// drop reports the failure); an async one panics inside the exchange
/// (caught there, re-raised in the request that applies it).
#[test]
fn a_panicking_refresher_fails_its_caller_and_leaves_the_session_usable() {
    for in_the_exchange in [false, true] {
        let server = Arc::new(opaque());
        let calls = Arc::new(AtomicU32::new(0));
        let (srv, n) = (server.clone(), calls.clone());
        let refresh = move || {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("refresher bug");
            }
            let t = srv.login();
            RefreshReply::Tokens(
                TokenPair::new(Secret::from(t.access_token))
                    .with_refresh_token(Secret::from(t.refresh_token)),
            )
        };
        let builder = client_for(&server);
        let c = if in_the_exchange {
            builder
                .refresh_with_async(move |_old| {
                    let refresh = refresh.clone();
                    async move { refresh() }
                })
                .build()
        } else {
            builder.refresh_with(move |_old: &Secret| refresh()).build()
        };
        let first = server.login();
        c.set_tokens(
            &TokenPair::new(Secret::from(first.access_token))
                .with_refresh_token(Secret::from(first.refresh_token)),
        )
        .unwrap();
        server.revoke_access_tokens();
        let url = server.url("/api/me");
        let (c2, u2) = (c.clone(), url.clone());
        let panicked = std::thread::spawn(move || c2.get(&u2).map(|r| r.status()))
            .join()
            .expect_err("the refresher's panic reaches its caller");
        assert_eq!(
            panicked.downcast_ref::<&str>().copied(),
            Some("refresher bug")
        );
        assert_eq!(c.session().snapshot().live, 0, "its slot was released");
        assert!(!c.session().snapshot().refresh_in_flight);
        assert_eq!(c.get(&url).unwrap().status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

/// A to B to A: ureq's follower tracks every hop, so the token goes to A's
/// hops only (never to B) and the chain ends with it: 200, no refresh.
#[test]
fn a_redirect_that_leaves_and_returns_carries_the_token_only_on_its_origin() {
    let a = opaque();
    let b = opaque();
    let c = client_for(&a).build();
    let t = a.login();
    c.set_tokens(
        &TokenPair::new(Secret::from(t.access_token))
            .with_refresh_token(Secret::from(t.refresh_token)),
    )
    .unwrap();
    let via_b = redirect_to(&b.url("/api/redirect"), &a.url("/api/me"));
    let first = redirect_to(&a.url("/api/redirect"), &via_b);
    assert_eq!(c.get(&first).unwrap().status(), 200);
    assert_eq!(b.counters().with_authorization, 0, "B never saw the token");
    assert_eq!(a.counters().refresh_calls, 0);
}

/// Issue 15: the token capacity is configurable. A 60,000-byte access token
/// and a 10,000-byte refresh token (beyond the 16 KiB default: an identity
/// provider that puts every group in the token; together more than the
/// 64 KiB a standard session reads of a token response) survive a refresh
/// with the large capacity; with the default they are a typed error.
#[test]
fn tokens_beyond_16_kib_fit_the_large_token_capacity() {
    let s = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        access_token_padding: 60_000,
        refresh_token_padding: 10_000,
        ..ServerOptions::default()
    })
    .unwrap();
    let large = client_for(&s)
        .token_capacity(refresh_machine_ureq::TokenCapacity::Large)
        .build();
    large.login_with_password("alice", "wonderland").unwrap();
    s.revoke_access_tokens();
    assert_eq!(large.get(&s.url("/api/me")).unwrap().status(), 200);
    assert_eq!(s.counters().refresh_ok, 1);

    let standard = client_for(&s).build();
    let refused = standard.login_with_password("alice", "wonderland");
    assert!(
        matches!(
            refused,
            Err(Error::Endpoint(
                refresh_machine_ureq::EndpointError::ResponseTooLarge { status: 200 }
            ))
        ),
        "{refused:?}"
    );
}
