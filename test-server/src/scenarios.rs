//! The end-to-end scenario table, shared by every adapter.
//!
//! An adapter implements [`Harness`] (build a logged-in client against a
//! server) and [`TestClient`] (a blocking facade: async adapters block on
//! their runtime), then instantiates every scenario with
//! [`scenario_tests!`](crate::scenario_tests). Each scenario asserts on the
//! server's counters, not only on what the client returned.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::server::{AuthServer, Backend, ResourceFault, ServerOptions, TokenFault};

/// How a request ended, as the scenarios compare it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response was delivered with this status.
    Status(u16),
    /// Typed failure: the session is lost.
    LoginRequired,
    /// Typed failure: the token endpoint stayed unavailable.
    RefreshUnavailable,
    /// Typed failure: still 401 with a fresh token.
    Unauthorized,
    /// Typed failure: `insufficient_scope`.
    Forbidden,
    /// Typed failure: no session (never logged in, or logged out).
    LoggedOut,
    /// Typed failure: transport error not retried.
    Transport,
    /// Typed failure: a retry was needed but the body was a stream.
    BodyNotReplayable,
    /// Anything else (the text says what).
    Other(String),
}

/// A blocking facade over an adapter's client.
pub trait TestClient: Clone + Send + Sync + 'static {
    /// `GET url`.
    fn get(&self, url: &str) -> Outcome;
    /// `POST url` with a small JSON body, with an `Idempotency-Key` if given.
    fn post(&self, url: &str, idempotency_key: Option<&str>) -> Outcome;
    /// Whether the session still holds tokens.
    fn has_tokens(&self) -> bool;
    /// How many times the client signalled "login required".
    fn login_required_signals(&self) -> u32;
    /// `GET url` without the token and outside the session (the client's
    /// `WithoutToken` marker). Clients without one answer `Other`.
    fn get_without_token(&self, url: &str) -> Outcome {
        let _ = url;
        Outcome::Other("no request without the token in this client".into())
    }
    /// End the session.
    fn logout(&self);
}

/// Builds clients for the scenarios.
pub trait Harness {
    /// The client type.
    type Client: TestClient;
    /// A client for `server` (token endpoint `server.token_url()`, client id
    /// from its options, its origin allowed), logged in with the password
    /// grant. For a server whose [`ServerOptions::refused_status`] is not
    /// 401, the client also refreshes on that status when the body carries
    /// the server's `TOKEN_EXPIRED` code.
    fn client(&self, server: &AuthServer, config: refresh_machine::Config) -> Self::Client;

    /// The kind of server the scenarios run against (the client is built
    /// for `server.options().backend`).
    fn backend(&self) -> Backend {
        Backend::OAuth2
    }
}

/// A harness whose scenarios run against a web tutorial's JSON backend
/// ([`Backend::AppJwt`]): the inner harness builds the client for it.
#[derive(Clone, Copy, Debug)]
pub struct AppBackend<H>(pub H);

impl<H: Harness> Harness for AppBackend<H> {
    type Client = H::Client;

    fn client(&self, server: &AuthServer, config: refresh_machine::Config) -> Self::Client {
        self.0.client(server, config)
    }

    fn backend(&self) -> Backend {
        Backend::AppJwt
    }
}

/// A server of the harness's [`Backend`] kind.
fn server<H: Harness>(h: &H, options: ServerOptions) -> AuthServer {
    let options = ServerOptions {
        backend: h.backend(),
        ..options
    };
    AuthServer::start_with(options).expect("start the test server on 127.0.0.1")
}

/// Servers that do not advertise `expires_in`: expiry is discovered by 401.
fn opaque_expiry() -> ServerOptions {
    ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    }
}

/// Run `f` on `n` threads released together by a barrier; each thread's
/// result (`Err` if it panicked), in thread order.
pub fn together<T, F>(n: usize, f: F) -> Vec<std::thread::Result<T>>
where
    T: Send + 'static,
    F: Fn() -> T + Send + Sync + 'static,
{
    let (f, barrier) = (Arc::new(f), Arc::new(Barrier::new(n)));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join()).collect()
}

fn burst<C: TestClient>(client: &C, n: usize, url: &str) -> Vec<Outcome> {
    let (client, url) = (client.clone(), url.to_owned());
    together(n, move || client.get(&url))
        .into_iter()
        .map(|r| r.expect("request thread panicked"))
        .collect()
}

/// N threads meet an expired token together: exactly one refresh, all succeed.
pub fn expiry_burst<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.revoke_access_tokens();
    let outcomes = burst(&c, 16, &s.url("/api/me"));
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Status(200)),
        "{outcomes:?}"
    );
    let k = s.counters();
    assert_eq!(k.refresh_calls, 1, "one refresh for one expiry: {k:?}");
    assert_eq!(k.reuse_detections, 0);
    assert_eq!(k.ok, 16);
}

/// A 401 for a token that was already replaced is retried without a refresh.
pub fn stale_401<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    // A slow request leaves with the first token and is parked by the server.
    let slow = {
        let (c, url) = (c.clone(), s.url("/api/slow"));
        std::thread::spawn(move || c.get(&url))
    };
    assert!(
        s.wait_held(1, Duration::from_secs(10)),
        "slow request never arrived"
    );
    // Meanwhile the token is revoked and another request refreshes it.
    s.revoke_access_tokens();
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    assert_eq!(s.counters().refresh_calls, 1);
    // The slow one now gets 401 for the old token: retried with the new one.
    s.release();
    assert_eq!(slow.join().unwrap(), Outcome::Status(200));
    let k = s.counters();
    assert_eq!(
        k.refresh_calls, 1,
        "a stale 401 must not refresh again: {k:?}"
    );
    assert_eq!(k.unauthorized, 2);
}

/// With the lifetime known, the token is refreshed before it expires: no 401.
pub fn proactive_refresh<H: Harness>(h: &H) {
    let s = server(
        h,
        ServerOptions {
            access_ttl: Duration::from_secs(2),
            ..ServerOptions::default()
        },
    );
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    // Past half the lifetime (the margin for a short token), before expiry.
    // (A JWT's `exp` and `iat` are whole seconds: the client reads a 2 s
    // lifetime, or 1 to 2 s from `exp` alone, and refreshes by 1 s.)
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    let k = s.counters();
    assert_eq!(k.refresh_calls, 1, "{k:?}");
    assert_eq!(
        k.unauthorized, 0,
        "the refresh must come before any 401: {k:?}"
    );
}

/// The token endpoint answers 503 once, then works: the request succeeds.
pub fn refresh_503_then_success<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Status(503, Some(0)), 1);
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    let k = s.counters();
    assert_eq!(
        (k.refresh_calls, k.token_faults, k.refresh_ok),
        (2, 1, 1),
        "{k:?}"
    );
    assert!(c.has_tokens());
}

/// `invalid_grant`: every request fails `LoginRequired`, signalled once.
pub fn refresh_invalid_grant<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.revoke_access_tokens();
    s.revoke_sessions();
    let outcomes = burst(&c, 6, &s.url("/api/me"));
    assert!(
        outcomes.iter().all(|o| *o == Outcome::LoginRequired),
        "{outcomes:?}"
    );
    // New requests fail fast, without touching the network.
    let before = s.counters().requests;
    assert_eq!(c.get(&s.url("/api/me")), Outcome::LoginRequired);
    let k = s.counters();
    assert_eq!(k.requests, before, "a lost session must fail fast");
    assert_eq!(k.refresh_calls, 1, "{k:?}");
    assert_eq!(c.login_required_signals(), 1);
    assert!(!c.has_tokens());
}

/// The token endpoint hangs: the refresh times out, waiters get
/// `RefreshUnavailable`, tokens are kept, and after recovery requests succeed.
pub fn refresh_hangs<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let mut config = refresh_machine::Config::DEFAULT;
    config.refresh_timeout = Duration::from_millis(300);
    config.max_refresh_attempts = 2;
    config.refresh_backoff.base = Duration::from_millis(10);
    config.refresh_backoff.max = Duration::from_millis(50);
    let c = h.client(&s, config);
    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Hang(Duration::from_secs(3)), 2);
    let started = Instant::now();
    assert_eq!(c.get(&s.url("/api/me")), Outcome::RefreshUnavailable);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline must not wait for the server"
    );
    assert!(c.has_tokens(), "a network blip never logs the user out");
    assert_eq!(c.login_required_signals(), 0);
    s.clear_faults();
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    let k = s.counters();
    assert_eq!(k.reuse_detections, 0, "{k:?}");
    assert_eq!(k.refresh_ok, 1, "{k:?}");
}

/// The policy for a refresh the server processed but never answered: no
/// client can know whether it was processed. At the refresh's deadline the
/// session presents the same refresh token again (the only one it holds;
/// not presenting it would end the session for certain). A server with a
/// reuse grace period (Auth0's reuse interval, Okta's grace period) answers
/// it with new tokens and the session survives.
pub fn unanswered_refresh_within_a_reuse_grace_period<H: Harness>(h: &H) {
    let s = server(
        h,
        ServerOptions {
            reuse_grace: Duration::from_secs(60),
            ..opaque_expiry()
        },
    );
    let c = h.client(&s, short_refresh_deadline());
    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Unanswered(Duration::from_secs(5)), 1);
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    let k = s.counters();
    assert_eq!(
        (
            k.refresh_calls,
            k.refresh_ok,
            k.grace_reuses,
            k.reuse_detections
        ),
        (2, 2, 1, 0),
        "{k:?}"
    );
    assert_eq!(c.login_required_signals(), 0);
}

/// The same on a strict server (every reuse revokes the family): the second
/// presentation is refused and the session ends with `LoginRequired`, once.
/// The client cannot do better; the server's grace period is what saves it.
pub fn unanswered_refresh_on_a_strict_server<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, short_refresh_deadline());
    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Unanswered(Duration::from_secs(5)), 1);
    assert_eq!(c.get(&s.url("/api/me")), Outcome::LoginRequired);
    let k = s.counters();
    assert_eq!(
        (k.refresh_calls, k.refresh_ok, k.reuse_detections),
        (2, 1, 1),
        "{k:?}"
    );
    assert_eq!(c.login_required_signals(), 1);
    assert!(!c.has_tokens());
}

/// A 1 s refresh deadline (room for the second exchange on a loaded
/// machine) and quick backoff, for the unanswered refresh.
fn short_refresh_deadline() -> refresh_machine::Config {
    let mut config = refresh_machine::Config::DEFAULT;
    config.refresh_timeout = Duration::from_secs(1);
    config.refresh_backoff.base = Duration::from_millis(10);
    config.refresh_backoff.max = Duration::from_millis(50);
    config
}

/// A server that always answers 401: bounded, one refresh, no loop.
pub fn always_401<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.set_resource_fault(ResourceFault::AlwaysUnauthorized, 1000);
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Unauthorized);
    let k = s.counters();
    assert_eq!(k.refresh_calls, 1, "{k:?}");
    assert_eq!(
        k.unauthorized, 2,
        "first try and one retry with the new token: {k:?}"
    );
}

/// `insufficient_scope` is not a refresh case.
pub fn insufficient_scope<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    assert_eq!(c.get(&s.url("/api/admin")), Outcome::Forbidden);
    let k = s.counters();
    assert_eq!((k.refresh_calls, k.forbidden), (0, 1), "{k:?}");
}

/// A backend that answers an expired token with 403 and a JSON error code
/// (`TOKEN_EXPIRED`), and a 403 about something else (`insufficient_scope`):
/// the first is one refresh and a retry, the second is delivered as it is.
pub fn refused_with_403_and_an_error_code<H: Harness>(h: &H) {
    let s = server(
        h,
        ServerOptions {
            refused_status: 403,
            ..opaque_expiry()
        },
    );
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.revoke_access_tokens();
    let outcomes = burst(&c, 8, &s.url("/api/me"));
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Status(200)),
        "{outcomes:?}"
    );
    assert_eq!(c.get(&s.url("/api/admin")), Outcome::Forbidden);
    let k = s.counters();
    assert_eq!(
        (k.refresh_calls, k.reuse_detections, k.forbidden),
        (1, 0, 1),
        "{k:?}"
    );
}

/// Laravel's 419 for an expired token, the same way.
pub fn refused_with_419<H: Harness>(h: &H) {
    let s = server(
        h,
        ServerOptions {
            refused_status: 419,
            ..opaque_expiry()
        },
    );
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.revoke_access_tokens();
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    let k = s.counters();
    assert_eq!((k.refresh_calls, k.unauthorized, k.ok), (1, 1, 1), "{k:?}");
}

/// While logged out, a request for the API fails `LoggedOut` without going
/// out; one marked to go without the token goes out plain (a public route,
/// the login call).
pub fn logged_out_requests<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    c.logout();
    let before = s.counters().requests;
    assert_eq!(c.get(&s.url("/api/me")), Outcome::LoggedOut);
    assert_eq!(s.counters().requests, before, "nothing went out");
    assert_eq!(
        c.get_without_token(&s.url("/api/public")),
        Outcome::Status(200)
    );
    // Nor does a marked request carry the token while logged in.
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    let with_token = s.counters().with_authorization;
    assert_eq!(
        c.get_without_token(&s.url("/api/public")),
        Outcome::Status(200)
    );
    let k = s.counters();
    assert_eq!(k.with_authorization, with_token, "{k:?}");
    assert_eq!(c.get_without_token(&s.url("/api/me")), Outcome::Status(401));
    assert_eq!(s.counters().refresh_calls, 0);
}

/// A POST whose connection broke after the server acted is not replayed;
/// with an `Idempotency-Key` it is replayed once (and the server dedupes).
pub fn post_after_connection_error<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.set_resource_fault(ResourceFault::CloseAfterProcessing, 1);
    assert_eq!(c.post(&s.url("/api/orders"), None), Outcome::Transport);
    let k = s.counters();
    assert_eq!(
        (k.orders, k.duplicate_orders),
        (1, 0),
        "not replayed: {k:?}"
    );

    s.set_resource_fault(ResourceFault::CloseAfterProcessing, 1);
    assert_eq!(
        c.post(&s.url("/api/orders"), Some("order-42")),
        Outcome::Status(201)
    );
    let k = s.counters();
    assert_eq!(
        (k.orders, k.duplicate_orders),
        (3, 1),
        "replayed exactly once: {k:?}"
    );
}

/// 503 with `Retry-After: 1` is retried after at least that long.
pub fn retry_after_honoured<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.set_resource_fault(ResourceFault::Unavailable(1), 1);
    let started = Instant::now();
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    let k = s.counters();
    assert_eq!((k.resource_faults, k.ok), (1, 1), "{k:?}");
}

/// The token never reaches an origin it was not configured for, directly or by redirect.
pub fn token_stays_on_its_origin<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let other = server(h, ServerOptions::default());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    // Directly: delivered as the other server answers (401, no token), no refresh.
    assert_eq!(c.get(&other.url("/api/me")), Outcome::Status(401));
    // By redirect from the trusted origin to the other one.
    let hop = s.url(&format!("/api/redirect?to={}", other.url("/api/me")));
    assert_eq!(c.get(&hop), Outcome::Status(401));
    // A same-origin redirect keeps it.
    let same = s.url(&format!("/api/redirect?to={}", s.url("/api/me")));
    assert_eq!(c.get(&same), Outcome::Status(200));
    let o = other.counters();
    assert_eq!(o.requests, 2, "{o:?}");
    assert_eq!(
        o.with_authorization, 0,
        "token leaked to another origin: {o:?}"
    );
    assert_eq!(s.counters().refresh_calls, 0);
}

/// Issue 15: a token endpoint that redirects (307) elsewhere. The refresh
/// token is never re-posted to the other origin; the redirect is a failed
/// attempt (transient), the next attempt succeeds.
pub fn token_endpoint_redirect_is_not_followed<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let elsewhere = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Redirect(elsewhere.port()), 1);
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    let e = elsewhere.counters();
    assert_eq!(
        (e.requests, e.refresh_calls),
        (0, 0),
        "the refresh token followed a redirect: {e:?}"
    );
    let k = s.counters();
    assert_eq!((k.token_faults, k.refresh_ok), (1, 1), "{k:?}");
}

/// Issue 15: token-endpoint bodies are read up to a limit. A huge 503 is
/// still transient (the session survives); a huge 200 may have spent the
/// refresh token, so it is never presented again: the session ends.
pub fn token_endpoint_bodies_are_capped<H: Harness>(h: &H) {
    let s = server(h, opaque_expiry());
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Huge(503, 8 << 20), 1);
    assert_eq!(c.get(&s.url("/api/me")), Outcome::Status(200));
    assert_eq!(s.counters().refresh_ok, 1);
    assert!(c.has_tokens());

    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Huge(200, 8 << 20), 1);
    let before = s.counters().refresh_calls;
    assert_eq!(c.get(&s.url("/api/me")), Outcome::LoginRequired);
    assert_eq!(
        s.counters().refresh_calls,
        before + 1,
        "the refresh token was presented again after a 200"
    );
    assert_eq!(c.login_required_signals(), 1);
}

/// Issue 14: more requests at once than the session has slots, across an
/// expiry. The rest queue and are woken as slots free (a lost wake-up would
/// leave one waiting until `SLOT_WAIT`, 30 s, and then fail `Full`); all
/// succeed, through one refresh handed to whichever request claims it.
pub fn a_burst_larger_than_the_session_queues<H: Harness>(h: &H) {
    let s = server(
        h,
        ServerOptions {
            resource_latency: Duration::from_millis(200),
            ..opaque_expiry()
        },
    );
    let c = h.client(&s, refresh_machine::Config::DEFAULT);
    s.revoke_access_tokens();
    let n = 600;
    let outcomes = burst(&c, n, &s.url("/api/me"));
    let failures: Vec<_> = outcomes
        .iter()
        .filter(|o| **o != Outcome::Status(200))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let k = s.counters();
    assert_eq!(k.refresh_calls, 1, "{k:?}");
    assert_eq!(k.ok, n as u64);
}

/// Instantiate every scenario as a `#[test]` for a harness expression.
#[macro_export]
macro_rules! scenario_tests {
    ($harness:expr) => {
        $crate::scenario_tests!(@each $harness;
            expiry_burst, stale_401, proactive_refresh, refresh_503_then_success,
            refresh_invalid_grant, refresh_hangs, always_401, insufficient_scope,
            post_after_connection_error, retry_after_honoured, token_stays_on_its_origin,
            token_endpoint_redirect_is_not_followed, token_endpoint_bodies_are_capped,
            a_burst_larger_than_the_session_queues,
            unanswered_refresh_within_a_reuse_grace_period, unanswered_refresh_on_a_strict_server,
            refused_with_403_and_an_error_code, refused_with_419, logged_out_requests);
    };
    (@each $harness:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::scenarios::$name(&$harness);
            }
        )*
    };
}
