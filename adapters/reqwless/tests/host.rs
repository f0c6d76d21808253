//! The embedded adapter on the host: the same `Client` firmware uses, over
//! `std-embedded-nal-async` (real loopback sockets implementing the
//! `embedded-nal-async` traits), against the test authorization server.
//!
//! The clock is the host's monotonic clock plus an offset the test can move
//! forward, so token expiry is reached by shifting time, not by sleeping.
//! Backoff delays are configured in milliseconds; every wait is bounded by the
//! machine's own limits (refresh attempts, deadlines).

use std::cell::Cell;
use std::time::Duration;

use futures::executor::block_on;
use refresh_machine::grant::OAuthError;
use refresh_machine::{Backoff, Config, SessionState, TokenSet};
use refresh_machine_reqwless::{Client, Error, Request};
use refresh_machine_test_server::{AuthServer, ResourceFault, ServerOptions, TokenFault};
use std_embedded_nal_async::Stack;

mod common;

use common::{Parts, TestClock, CAP, UNIX_AT_EPOCH};

fn config() -> Config {
    let mut c = Config::DEFAULT;
    c.refresh_backoff = Backoff {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
    };
    c.request_backoff = c.refresh_backoff;
    c.refresh_timeout = Duration::from_secs(10);
    c
}

/// Build a client on `server` and hand it to `body`.
fn with_client<R>(
    server: &AuthServer,
    offset: &Cell<Duration>,
    body: impl AsyncFnOnce(&mut Client<'_, Stack, Stack, TestClock<'_>, CAP>) -> R,
) -> R {
    with_client_scratch(server, offset, 512, body)
}

/// [`with_client`] with a scratch buffer of `scratch_len` bytes.
fn with_client_scratch<R>(
    server: &AuthServer,
    offset: &Cell<Duration>,
    scratch_len: usize,
    body: impl AsyncFnOnce(&mut Client<'_, Stack, Stack, TestClock<'_>, CAP>) -> R,
) -> R {
    with_client_config(server, offset, scratch_len, config(), body)
}

/// [`with_client_scratch`] with another configuration.
fn with_client_config<R>(
    server: &AuthServer,
    offset: &Cell<Duration>,
    scratch_len: usize,
    config: Config,
    body: impl AsyncFnOnce(&mut Client<'_, Stack, Stack, TestClock<'_>, CAP>) -> R,
) -> R {
    let mut parts = Parts::new(server, scratch_len);
    let mut client = parts.client(offset, config);
    block_on(body(&mut client))
}

async fn login(client: &mut Client<'_, Stack, Stack, TestClock<'_>, CAP>) {
    let mut rx = [0u8; 1024];
    client
        .login_with_password("alice", "wonderland", &mut rx)
        .await
        .expect("login");
    assert!(client.take_tokens_changed());
}

async fn me(client: &mut Client<'_, Stack, Stack, TestClock<'_>, CAP>) -> Result<u16, Error> {
    let mut rx = [0u8; 1024];
    let reply = client.send(Request::get("/api/me"), &mut rx).await?;
    assert_eq!(reply.body, br#"{"user":"alice"}"#);
    Ok(reply.status)
}

#[test]
fn expired_token_costs_one_refresh_and_one_retry() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        assert_eq!(me(c).await, Ok(200));
        server.revoke_access_tokens();
        assert_eq!(me(c).await, Ok(200));
    });
    let k = server.counters();
    assert_eq!(k.refresh_calls, 1);
    assert_eq!(k.refresh_ok, 1);
    assert_eq!(
        k.unauthorized, 1,
        "exactly one 401, then the retry succeeded"
    );
    assert_eq!(k.ok, 2);
    assert_eq!(k.reuse_detections, 0);
}

#[test]
fn known_expiry_is_refreshed_before_sending() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        assert_eq!(me(c).await, Ok(200));
        // The server said expires_in=60: one minute later on the device's clock
        // the machine refreshes first instead of sending a dead token.
        offset.set(Duration::from_secs(61));
        assert_eq!(me(c).await, Ok(200));
        assert!(c.take_tokens_changed());
    });
    let k = server.counters();
    assert_eq!(k.refresh_calls, 1);
    assert_eq!(k.unauthorized, 0);
}

#[test]
fn rotation_presents_each_refresh_token_once() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        let mut seen = Vec::new();
        for _ in 0..5 {
            let rt = c.tokens().unwrap().refresh_token.unwrap();
            seen.push(rt.expose_secret().to_owned());
            server.revoke_access_tokens();
            assert_eq!(me(c).await, Ok(200));
            assert!(c.take_tokens_changed(), "rotated tokens must be persisted");
        }
        seen.dedup();
        assert_eq!(seen.len(), 5, "every round used a new refresh token");
    });
    let k = server.counters();
    assert_eq!(k.refresh_calls, 5);
    assert_eq!(k.refresh_ok, 5);
    assert_eq!(k.reuse_detections, 0);
}

#[test]
fn invalid_grant_means_login_required_and_no_more_traffic() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        server.revoke_sessions();
        assert_eq!(
            me(c).await,
            Err(Error::RefreshRejected(OAuthError::InvalidGrant))
        );
        assert_eq!(c.session(), SessionState::LoginRequired);
        let before = server.counters().requests;
        assert_eq!(me(c).await, Err(Error::LoginRequired));
        assert_eq!(server.counters().requests, before, "nothing was sent");
        // A new login recovers.
        login(c).await;
        assert_eq!(me(c).await, Ok(200));
    });
    let k = server.counters();
    assert_eq!(k.refresh_calls, 1);
    assert_eq!(k.invalid_grants, 1);
}

#[test]
fn token_endpoint_outage_keeps_the_session() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        server.set_token_fault(TokenFault::Status(503, None), 100);
        server.revoke_access_tokens();
        assert_eq!(me(c).await, Err(Error::RefreshUnavailable));
        assert_eq!(
            c.session(),
            SessionState::Active,
            "an outage is not a logout"
        );
        let attempts = server.counters().refresh_calls;
        assert_eq!(attempts, u64::from(config().max_refresh_attempts));
        server.clear_faults();
        assert_eq!(me(c).await, Ok(200));
    });
    let k = server.counters();
    assert_eq!(k.refresh_ok, 1);
    assert_eq!(k.reuse_detections, 0);
}

#[test]
fn connection_closed_by_the_token_endpoint_is_transient() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        server.set_token_fault(TokenFault::Close, 1);
        server.revoke_access_tokens();
        assert_eq!(me(c).await, Ok(200), "retried after backoff");
    });
    let k = server.counters();
    assert_eq!(k.refresh_calls, 2);
    assert_eq!(k.refresh_ok, 1);
}

#[test]
fn oversized_token_is_a_typed_error() {
    let server = AuthServer::start_with(ServerOptions {
        access_token_padding: CAP + 1,
        ..ServerOptions::default()
    })
    .unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        let mut rx = [0u8; 1024];
        assert_eq!(
            c.login_with_password("alice", "wonderland", &mut rx).await,
            Err(Error::TokenTooLarge { capacity: CAP })
        );
        assert_eq!(c.session(), SessionState::LoggedOut);
        assert_eq!(me(c).await, Err(Error::LoggedOut));
        // Tokens handed in directly are checked the same way.
        let long = "t".repeat(CAP + 1);
        assert_eq!(
            c.set_tokens(TokenSet::new(&long)),
            Err(Error::TokenTooLarge { capacity: CAP })
        );
    });
}

#[test]
fn token_response_larger_than_the_buffer_ends_the_session_without_reuse() {
    let server = AuthServer::start_with(ServerOptions {
        access_token_padding: CAP,
        ..ServerOptions::default()
    })
    .unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        server.revoke_access_tokens();
        // Big enough for the API's answer, too small for the token response:
        // the new refresh token cannot be read, so the old one must not be
        // presented again (it would look like reuse and revoke the family).
        let mut rx = [0u8; 220];
        let r = c.send(Request::get("/api/me"), &mut rx).await;
        assert_eq!(r.map(|r| r.status), Err(Error::TokenResponseTooLarge));
        assert_eq!(c.session(), SessionState::LoginRequired);
    });
    let k = server.counters();
    assert_eq!(k.refresh_calls, 1);
    assert_eq!(k.reuse_detections, 0);
}

#[test]
fn post_is_not_resent_after_the_server_acted() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        server.set_resource_fault(ResourceFault::CloseAfterProcessing, 1);
        let mut rx = [0u8; 512];
        let r = c
            .send(Request::post_json("/api/orders", b"{}"), &mut rx)
            .await;
        assert!(matches!(r, Err(Error::Transport(_))), "{r:?}");
        // With an Idempotency-Key the same failure is retried.
        server.set_resource_fault(ResourceFault::CloseAfterProcessing, 1);
        let headers = [("Idempotency-Key", "order-2")];
        let r = c
            .send(
                Request::post_json("/api/orders", b"{}").with_headers(&headers),
                &mut rx,
            )
            .await
            .expect("retried");
        assert_eq!(r.status, 201);
    });
    let k = server.counters();
    assert_eq!(
        k.orders, 3,
        "one order for the POST, two for the keyed retry"
    );
    assert_eq!(k.duplicate_orders, 1);
}

#[test]
fn redirects_are_delivered_not_followed() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        let mut rx = [0u8; 512];
        let r = c
            .send(
                Request::get("/api/redirect?to=http://127.0.0.1:9/steal"),
                &mut rx,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 302);
    });
    assert_eq!(server.counters().with_authorization, 1);
}

#[test]
fn a_response_larger_than_the_buffer_is_a_typed_error_with_its_status() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        let mut rx = [0u8; 512];
        let r = c.send(Request::get("/api/blob?size=400"), &mut rx).await;
        assert_eq!(r.unwrap().body.len(), 400);
        let r = c.send(Request::get("/api/blob?size=600"), &mut rx).await;
        assert_eq!(
            r.map(|r| r.status),
            Err(Error::ResponseTooLarge { status: 200 })
        );
        let mut tiny = [0u8; 32];
        let r = c.send(Request::get("/api/me"), &mut tiny).await;
        assert_eq!(r.map(|r| r.status), Err(Error::ResponseHeadersTooLarge));
        assert_eq!(c.session(), SessionState::Active);
    });
    let k = server.counters();
    assert_eq!(k.refresh_calls, 0);
}

/// Issue 15 (firmware): an early return from `send` used to leave the single
/// request slot in use, so every later `send` failed `Machine(Full)`.
#[test]
fn an_early_error_releases_the_request_slot() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    // Room for "Bearer <access token>" (about 30 bytes), not for the refresh
    // grant body (about 85): the refresh cannot be built.
    with_client_scratch(&server, &offset, 48, async |c| {
        let first = server.login();
        c.set_tokens(TokenSet::new(&first.access_token).with_refresh_token(&first.refresh_token))
            .unwrap();
        assert_eq!(me(c).await, Ok(200));
        server.revoke_access_tokens();
        assert_eq!(me(c).await, Err(Error::ScratchTooSmall));
        // The slot was released: new tokens (obtained elsewhere) work at once.
        let next = server.login();
        c.set_tokens(TokenSet::new(&next.access_token).with_refresh_token(&next.refresh_token))
            .unwrap();
        assert_eq!(me(c).await, Ok(200));
    });
}

/// A `send` future dropped part-way (a task cancelled, a timeout in the
/// caller) must not keep the request slot either.
#[test]
fn a_dropped_send_releases_its_slot() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        {
            let mut rx = [0u8; 1024];
            let send = c.send(Request::get("/api/me"), &mut rx);
            let mut send = core::pin::pin!(send);
            // One poll: the request is started and waits on the network.
            let first = core::future::poll_fn(|cx| {
                core::task::Poll::Ready(std::future::Future::poll(send.as_mut(), cx).is_pending())
            })
            .await;
            assert!(first, "the first poll should wait on the connection");
        } // dropped here, mid-request
        assert_eq!(me(c).await, Ok(200));
    });
}

/// Issue 15: a 503 from the token endpoint whose error page exceeds `rx` (a
/// 5 KB HTML page against the documented 2 KiB buffer) ended the session as
/// `TokenResponseTooLarge`. Judged by its status first, it is transient.
#[test]
fn an_oversized_error_page_from_the_token_endpoint_is_transient() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        server.set_token_fault(TokenFault::Huge(503, 5 * 1024), 1);
        server.revoke_access_tokens();
        let mut rx = [0u8; 2048];
        let r = c.send(Request::get("/api/me"), &mut rx).await;
        assert_eq!(r.map(|r| r.status), Ok(200), "retried after backoff");
        assert_eq!(c.session(), SessionState::Active);
    });
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.refresh_ok), (2, 1), "{k:?}");
    assert_eq!(k.reuse_detections, 0);
}

/// Issue 15: the run loop kept only the last action of a drain. With
/// refresh-ahead, a `Refresh` and the request's `Send` come in one drain, and
/// the refresh was lost (handed out, never performed: the background refresh
/// never happened, and both wrote the same scratch buffer).
#[test]
fn refresh_ahead_is_performed_before_the_request_goes_out() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    let mut c = config();
    c.expiry_skew = Duration::from_secs(5);
    c.refresh_ahead = Some(Duration::from_secs(50));
    with_client_config(&server, &offset, 512, c, async |c| {
        login(c).await;
        // 40 s into a 60 s token: still usable, and inside the refresh-ahead window.
        offset.set(Duration::from_secs(40));
        assert_eq!(me(c).await, Ok(200));
        assert!(
            c.take_tokens_changed(),
            "the refreshed tokens are to be stored"
        );
    });
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.refresh_ok), (1, 1), "{k:?}");
    assert_eq!(k.ok, 1);
}

/// Issue 15: CR/LF in a caller's path or header values reached the wire (a
/// header injection). Such requests are a typed error; nothing is sent.
#[test]
fn header_injection_is_refused_before_anything_is_sent() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    with_client(&server, &offset, async |c| {
        login(c).await;
        let before = server.counters().requests;
        let mut rx = [0u8; 1024];
        let injected = [("X-Trace", "1\r\nX-Admin: yes")];
        let bad_requests = [
            Request::get("/api/me\r\nX-Admin: yes"),
            Request::get("/api/me x"),
            Request::get("api/me"),
            Request {
                headers: &injected,
                ..Request::get("/api/me")
            },
            Request {
                headers: &[("X Trace", "1")],
                ..Request::get("/api/me")
            },
        ];
        for req in bad_requests {
            let r = c.send(req, &mut rx).await.map(|r| r.status);
            assert_eq!(r, Err(Error::InvalidRequest));
        }
        assert_eq!(server.counters().requests, before, "nothing went out");
        // The client is unharmed.
        assert_eq!(me(c).await, Ok(200));
    });
}

/// Issue 15: buffer sizing was prose only, and the documented sizes could
/// not hold a token response carrying two full-size tokens. The helpers'
/// sizes hold both, through a login and a refresh.
#[test]
fn the_helper_sizes_hold_two_full_size_tokens() {
    use refresh_machine_reqwless::{scratch_len, token_response_rx_len};
    let server = AuthServer::start_with(ServerOptions {
        access_token_padding: CAP,
        refresh_token_padding: CAP,
        ..ServerOptions::default()
    })
    .unwrap();
    let offset = Cell::new(Duration::ZERO);
    let credentials = server.options().client_id.len();
    // A login puts the username and password in the scratch buffer too.
    let scratch = scratch_len(CAP, credentials) + 3 * "alicewonderland".len();
    with_client_scratch(&server, &offset, scratch, async |c| {
        let mut rx = vec![0u8; token_response_rx_len(CAP)];
        c.login_with_password("alice", "wonderland", &mut rx)
            .await
            .expect("login with full-size tokens");
        let stored = c.tokens().expect("logged in");
        assert_eq!(stored.access_token.expose_secret().len(), CAP);
        assert_eq!(stored.refresh_token.unwrap().expose_secret().len(), CAP);
        server.revoke_access_tokens();
        let reply = c.send(Request::get("/api/me"), &mut rx).await;
        assert_eq!(reply.map(|r| r.status), Ok(200));
    });
    let k = server.counters();
    assert_eq!((k.refresh_ok, k.reuse_detections), (1, 0), "{k:?}");
}

/// A server that does not advertise `expires_in`: expiry is discovered by 401.
fn opaque_server() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap()
}

/// Records what the store was given, and what the server had answered by then.
struct Recorder<'s> {
    server: &'s AuthServer,
    /// (the saved refresh token, resource requests answered 2xx by then)
    saved: Vec<(Option<String>, u64)>,
}

impl<'s> Recorder<'s> {
    fn new(server: &'s AuthServer) -> Self {
        Recorder {
            server,
            saved: Vec::new(),
        }
    }
}

impl refresh_machine_reqwless::TokenStore for Recorder<'_> {
    async fn save(&mut self, tokens: Option<refresh_machine_reqwless::SavedTokens<'_>>) {
        let rt = tokens.and_then(|t| t.refresh_token.map(str::to_owned));
        self.saved.push((rt, self.server.counters().ok));
    }
}

/// Issue 15: the rotated refresh token reaches the store before the retried
/// request goes out, so a power loss between the two cannot leave a spent
/// refresh token in flash; the session's end is saved (as `None`) before
/// `send` returns.
#[test]
fn a_refresh_is_saved_before_the_retried_request_goes_out() {
    let server = opaque_server();
    let offset = Cell::new(Duration::ZERO);
    let mut parts = Parts::new(&server, 512);
    let recorder = Recorder::new(&server);
    let mut c = parts.client(&offset, config()).with_token_store(recorder);
    let mut rx = [0u8; 1024];
    let current = block_on(async {
        c.login_with_password("alice", "wonderland", &mut rx)
            .await
            .unwrap();
        server.revoke_access_tokens();
        let reply = c.send(Request::get("/api/me"), &mut rx).await.unwrap();
        assert_eq!(reply.status, 200);
        let current = c.saved_tokens().unwrap().refresh_token.map(str::to_owned);
        server.revoke_access_tokens();
        server.revoke_sessions();
        let lost = c
            .send(Request::get("/api/me"), &mut rx)
            .await
            .map(|r| r.status);
        assert_eq!(lost, Err(Error::RefreshRejected(OAuthError::InvalidGrant)));
        current
    });
    let saved = &c.token_store().saved;
    assert_eq!(saved.len(), 3, "login, refresh, end: {saved:?}");
    assert!(saved[0].0.is_some());
    assert_ne!(saved[1].0, saved[0].0, "the rotated refresh token");
    assert_eq!(saved[1].0, current);
    assert_eq!(
        saved[1].1, 0,
        "saved before the retried request was answered"
    );
    assert_eq!(saved[2].0, None, "the session's end is saved too");
    assert_eq!(server.counters().ok, 1);
}

/// Issue 15: saved expiries are Unix seconds. Saved at login (60 s token),
/// restored after a restart two minutes later: the client knows the token is
/// expired and refreshes before sending (no 401). The machine's own instants
/// count from boot and would have claimed a minute of validity left.
#[test]
fn tokens_saved_before_a_restart_do_not_overstate_their_validity() {
    let server = AuthServer::start().unwrap();
    let (at, rt, expires_at) = {
        let offset = Cell::new(Duration::ZERO);
        let mut parts = Parts::new(&server, 512);
        let mut c = parts.client(&offset, config());
        block_on(login(&mut c));
        let saved = c.saved_tokens().unwrap();
        let unix_now = UNIX_AT_EPOCH;
        let expires_at = saved.expires_at.unwrap();
        assert!(
            (unix_now + 59..=unix_now + 60).contains(&expires_at),
            "{expires_at} for a 60 s token saved at {unix_now}"
        );
        (
            saved.access_token.to_owned(),
            saved.refresh_token.map(str::to_owned),
            saved.expires_at,
        )
    };
    // The next boot: its clock starts from zero, the wall clock is 2 min later.
    let offset = Cell::new(Duration::from_secs(120));
    let mut parts = Parts::new(&server, 512);
    let mut c = parts.client(&offset, config());
    c.restore_tokens(refresh_machine_reqwless::SavedTokens {
        access_token: &at,
        refresh_token: rt.as_deref(),
        expires_at,
        refresh_expires_at: None,
    })
    .unwrap();
    assert_eq!(block_on(me(&mut c)), Ok(200));
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.unauthorized), (1, 0), "{k:?}");
}

/// A refresher of the firmware's own: here it writes the grant by hand
/// (standing in for a token service that is not RFC 6749), over the
/// client's HTTP client, and reads the answer into `rx`.
struct ByHand {
    calls: u32,
}

impl<'a> refresh_machine_reqwless::Refresher<'a, Stack, Stack> for ByHand {
    async fn refresh<'rx>(
        &mut self,
        call: refresh_machine_reqwless::RefreshCall<'_, 'a, Stack, Stack>,
        rx: &'rx mut [u8],
    ) -> refresh_machine_reqwless::Refreshed<'rx> {
        use refresh_machine::RefreshOutcome;
        use refresh_machine_reqwless::reqwless::request::{Method, RequestBuilder};
        use refresh_machine_reqwless::Refreshed;
        self.calls += 1;
        let transient = Refreshed::new(RefreshOutcome::Transient { retry_after: None });
        let form = format!(
            "grant_type=refresh_token&client_id=demo-client&refresh_token={}",
            call.refresh_token
        );
        let Ok(handle) = call
            .http
            .request(Method::POST, call.endpoints.token_url)
            .await
        else {
            return transient;
        };
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let mut handle = handle.headers(&headers).body(form.as_bytes());
        let Ok(response) = handle.send(rx).await else {
            return transient;
        };
        let status = response.status.0;
        let Ok(body) = response.body().read_to_end().await else {
            return transient;
        };
        if status != 200 {
            return Refreshed::new(RefreshOutcome::Rejected);
        }
        match refresh_machine::grant::parse_token_response(body) {
            Ok(parsed) => Refreshed::new(RefreshOutcome::Success(parsed.token_set())),
            Err(_) => Refreshed::new(RefreshOutcome::Unusable {
                refresh_token: None,
            }),
        }
    }
}

/// Issue 15: firmware can refresh at a token service that is not RFC 6749:
/// the custom refresher is called once per expiry with the current refresh
/// token, its tokens are installed and the request retried.
#[test]
fn a_custom_refresher_is_used_by_firmware() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    let mut parts = Parts::new(&server, 512);
    let mut c = parts
        .client(&offset, config())
        .with_refresher(ByHand { calls: 0 });
    let mut rx = [0u8; 1024];
    block_on(async {
        c.login_with_password("alice", "wonderland", &mut rx)
            .await
            .unwrap();
        for _ in 0..3 {
            server.revoke_access_tokens();
            let reply = c.send(Request::get("/api/me"), &mut rx).await.unwrap();
            assert_eq!(reply.status, 200);
        }
        server.revoke_access_tokens();
        server.revoke_sessions();
        let lost = c
            .send(Request::get("/api/me"), &mut rx)
            .await
            .map(|r| r.status);
        assert_eq!(lost, Err(Error::LoginRequired));
    });
    let k = server.counters();
    assert_eq!(
        (k.refresh_calls, k.refresh_ok, k.reuse_detections),
        (4, 3, 0),
        "{k:?}"
    );
    assert_eq!(c.session(), SessionState::LoginRequired);
}

/// A refresher whose answer carries a new refresh token and an access token
/// the machine refuses (a space in it): the machine keeps the new refresh
/// token (the old one may be spent).
struct BadAccessToken;

impl<'a> refresh_machine_reqwless::Refresher<'a, Stack, Stack> for BadAccessToken {
    async fn refresh<'rx>(
        &mut self,
        _call: refresh_machine_reqwless::RefreshCall<'_, 'a, Stack, Stack>,
        rx: &'rx mut [u8],
    ) -> refresh_machine_reqwless::Refreshed<'rx> {
        let text = b"not ascii okrt-new";
        rx[..text.len()].copy_from_slice(text);
        let (at, rt) = rx[..text.len()].split_at(12);
        let outcome = refresh_machine::RefreshOutcome::Success(TokenSet {
            access_token: refresh_machine::AccessToken::new(std::str::from_utf8(at).unwrap()),
            refresh_token: Some(refresh_machine::RefreshToken::new(
                std::str::from_utf8(rt).unwrap(),
            )),
            expires_in: None,
            refresh_expires_in: None,
        });
        refresh_machine_reqwless::Refreshed::new(outcome)
    }
}

/// Review of issue 15: a refresh whose answer the machine refused returned
/// from `send` before the rotated refresh token was saved (the error path
/// skipped the store). Every exit of `send` saves what changed.
#[test]
fn a_rotated_refresh_token_is_saved_even_when_the_request_fails() {
    let server = opaque_server();
    let offset = Cell::new(Duration::ZERO);
    let mut parts = Parts::new(&server, 512);
    let recorder = Recorder::new(&server);
    let mut c = parts
        .client(&offset, config())
        .with_token_store(recorder)
        .with_refresher(BadAccessToken);
    let mut rx = [0u8; 1024];
    let result = block_on(async {
        c.login_with_password("alice", "wonderland", &mut rx)
            .await
            .unwrap();
        server.revoke_access_tokens();
        c.send(Request::get("/api/me"), &mut rx)
            .await
            .map(|r| r.status)
    });
    assert!(result.is_err(), "{result:?}");
    let saved = &c.token_store().saved;
    assert_eq!(
        saved.last().map(|s| s.0.as_deref()),
        Some(Some("rt-new")),
        "{saved:?}"
    );
}

/// Review of issue 15: `logout` reaches the store (the saved tokens are
/// erased), so a device that logs out and powers off does not come back
/// logged in.
#[test]
fn logout_erases_the_saved_tokens() {
    let server = AuthServer::start().unwrap();
    let offset = Cell::new(Duration::ZERO);
    let mut parts = Parts::new(&server, 512);
    let recorder = Recorder::new(&server);
    let mut c = parts.client(&offset, config()).with_token_store(recorder);
    let mut rx = [0u8; 1024];
    block_on(async {
        c.login_with_password("alice", "wonderland", &mut rx)
            .await
            .unwrap();
        c.logout().await;
    });
    let saved = &c.token_store().saved;
    assert_eq!(saved.len(), 2, "{saved:?}");
    assert_eq!(saved[1].0, None);
}
