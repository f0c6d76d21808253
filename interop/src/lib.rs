//! Interop suite: refresh-machine's std adapters against a real, widely used
//! OAuth2 authorization server, Django OAuth Toolkit (with Django REST
//! framework for the protected API), started on 127.0.0.1 by
//! `interop/server/serve.py`.
//!
//! Our own test server (`refresh-machine-test-server`) can share our
//! misunderstandings of the RFCs; this one cannot. It runs with refresh-token
//! rotation and reuse protection on (`REFRESH_TOKEN_REUSE_PROTECTION`: a spent
//! refresh token presented again revokes the whole token family), answers
//! expired tokens with `401` and `WWW-Authenticate: Bearer error="invalid_token"`,
//! and revokes tokens at its RFC 7009 endpoint.
//!
//! The tests are `#[ignore]`d in a plain `cargo test`, which has no Python
//! server; `bash interop/run` installs the server into a virtualenv and runs
//! them (CI does). Every test starts its own authorization server and API
//! server processes on a fresh database and kills them by PID when done.

pub mod clients;
pub mod processes;
pub mod server;

use std::time::{Duration, Instant};

use refresh_machine::Backoff;
pub use refresh_machine::Config;
pub use refresh_machine_test_server::Outcome;

pub use server::{Counts, Deployment, CLIENT_ID, PASSWORD, USERNAME};

/// A blocking facade over an adapter's client.
pub trait InteropClient: Clone + Send + Sync + 'static {
    /// `GET url`.
    fn get(&self, url: &str) -> Outcome;
    /// The adapter's shared session.
    fn session(&self) -> &refresh_machine_ureq::Session;
    /// How many times the client signalled "login required".
    fn login_required_signals(&self) -> u32;

    /// Whether the session still holds tokens.
    fn has_tokens(&self) -> bool {
        self.session().tokens().is_some()
    }

    /// The refresh token the session holds (to revoke it from outside).
    fn refresh_token(&self) -> Option<String> {
        let t = self.session().tokens()?;
        Some(t.refresh_token?.expose().to_owned())
    }
}

/// Builds logged-in clients for a deployment.
pub trait Adapter {
    /// The client type.
    type Client: InteropClient;
    /// A client whose token endpoint is the deployment's authorization
    /// server and whose only token origin is its API server, logged in with
    /// the password grant.
    fn client(&self, deployment: &Deployment, config: Config) -> Self::Client;
}

/// `n` concurrent GETs from `n` threads released together.
pub fn burst<C: InteropClient>(client: &C, url: &str, n: usize) -> Vec<Outcome> {
    let (client, url) = (client.clone(), url.to_owned());
    refresh_machine_test_server::together(n, move || client.get(&url))
        .into_iter()
        .map(|r| r.unwrap_or_else(|_| Outcome::Other("panicked".into())))
        .collect()
}

fn all(outcomes: &[Outcome], expected: &Outcome) -> bool {
    outcomes.iter().all(|o| o == expected)
}

/// The server is as strict as we claim: a refresh token used twice is
/// refused, and the rotated token issued for its first use dies with it.
/// (Without this, "zero reuse detections" below would prove nothing.)
pub fn server_revokes_the_family_on_reuse() {
    let d = Deployment::start(3600);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let grant = |form: &[(&str, &str)]| -> (u16, serde_json::Value) {
        let mut r = agent
            .post(d.token_url())
            .send_form(form.iter().copied())
            .expect("token endpoint");
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or_default())
    };
    let refresh = |token: &str| {
        grant(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", CLIENT_ID),
        ])
    };
    let (status, login) = grant(&[
        ("grant_type", "password"),
        ("username", USERNAME),
        ("password", PASSWORD),
        ("client_id", CLIENT_ID),
    ]);
    assert_eq!(status, 200, "password grant: {login}");
    let first = login["refresh_token"].as_str().expect("a refresh token");
    let (status, rotated) = refresh(first);
    assert_eq!(status, 200, "first refresh");
    let second = rotated["refresh_token"].as_str().expect("rotated");
    assert_ne!(first, second, "the server rotates refresh tokens");
    let (status, reuse) = refresh(first);
    assert_eq!(
        (status, reuse["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, after) = refresh(second);
    assert_eq!(
        (status, after["error"].as_str()),
        (400, Some("invalid_grant")),
        "reuse revoked the whole family, including the rotated token"
    );
    let c = d.counts();
    assert_eq!((c.refresh_grants, c.invalid_grants), (3, 2));
}

/// `rounds` times: the server expires the access token behind the client's
/// back, then `per_round` concurrent requests meet it. Every request
/// succeeds, the server sees exactly one refresh per round and no refresh
/// token presented twice, and the session is never lost.
pub fn expiry_bursts_keep_the_session<A: Adapter>(adapter: &A, rounds: usize, per_round: usize) {
    let d = Deployment::start(3600);
    let client = adapter.client(&d, Config::DEFAULT);
    assert_eq!(client.get(&d.me_url()), Outcome::Status(200));
    for round in 1..=rounds {
        d.expire_access_tokens();
        let outcomes = burst(&client, &d.me_url(), per_round);
        assert!(
            all(&outcomes, &Outcome::Status(200)),
            "round {round}: {:?}",
            outcomes
                .iter()
                .filter(|o| **o != Outcome::Status(200))
                .collect::<Vec<_>>()
        );
        let c = d.counts();
        assert_eq!(
            c.refresh_grants, round as u32,
            "round {round}: one refresh per expiry"
        );
    }
    let c = d.counts();
    assert_eq!(c.refresh_ok, rounds as u32);
    assert_eq!(c.invalid_grants, 0, "no refresh token was presented twice");
    assert_eq!(c.logins, 1, "the session was never lost");
    assert_eq!(client.login_required_signals(), 0);
    assert_eq!(c.api_ok, (rounds * per_round + 1) as u32);
}

/// Short-lived access tokens (2 s) that expire on the server's clock while
/// requests keep coming: the client refreshes ahead of expiry from
/// `expires_in`, never twice for one token, and no request fails.
pub fn short_lived_tokens_expire_on_the_servers_clock<A: Adapter>(adapter: &A) {
    let d = Deployment::start(2);
    let client = adapter.client(&d, Config::DEFAULT);
    let start = Instant::now();
    let mut sent = 0;
    // Bounded: at most 24 rounds of 10, about 5 s of wall time.
    for _ in 0..24 {
        let outcomes = burst(&client, &d.me_url(), 10);
        sent += outcomes.len();
        assert!(all(&outcomes, &Outcome::Status(200)), "{outcomes:?}");
        if start.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = start.elapsed();
    let c = d.counts();
    assert_eq!(c.api_ok as usize, sent);
    assert_eq!(c.invalid_grants, 0);
    assert_eq!(c.logins, 1);
    assert!(
        c.refresh_grants >= 2,
        "tokens of 2 s over {elapsed:?}: {c:?}"
    );
    // Refreshing once per half lifetime at most (the machine's skew is capped
    // at half the lifetime), plus one: not once per request.
    let bound = (elapsed.as_secs_f64() / 1.0).ceil() as u32 + 1;
    assert!(
        c.refresh_grants <= bound,
        "{} refreshes in {elapsed:?}",
        c.refresh_grants
    );
    assert_eq!(client.login_required_signals(), 0);
}

/// The grant is revoked at the server's RFC 7009 endpoint: a burst gets
/// `LoginRequired` everywhere, signalled once, after a single refresh
/// attempt; later requests fail fast without traffic.
pub fn revoked_grant_means_one_login_required<A: Adapter>(adapter: &A) {
    let d = Deployment::start(3600);
    let client = adapter.client(&d, Config::DEFAULT);
    assert_eq!(client.get(&d.me_url()), Outcome::Status(200));
    let refresh = client.refresh_token().expect("a refresh token");
    d.revoke(&refresh);
    let outcomes = burst(&client, &d.me_url(), 10);
    assert!(all(&outcomes, &Outcome::LoginRequired), "{outcomes:?}");
    assert_eq!(client.login_required_signals(), 1, "signalled once");
    let c = d.counts();
    assert_eq!(c.refresh_grants, 1, "one refresh attempt for the burst");
    assert_eq!(c.invalid_grants, 1);
    assert!(!client.has_tokens(), "the dead tokens were dropped");
    let api_before = c.api_ok + c.api_unauthorized;
    assert_eq!(client.get(&d.me_url()), Outcome::LoginRequired);
    let c = d.counts();
    assert_eq!(
        c.api_ok + c.api_unauthorized,
        api_before,
        "no traffic after login required"
    );
    assert_eq!(c.refresh_grants, 1);
}

/// The authorization server goes down (killed by PID) while the access token
/// has expired: requests fail `RefreshUnavailable`, the session and its
/// refresh token are kept; when the server is back, the next requests
/// refresh once and succeed. Never a logout.
pub fn auth_server_restart_is_not_a_logout<A: Adapter>(adapter: &A) {
    let mut d = Deployment::start(3600);
    let mut config = Config::DEFAULT;
    config.max_refresh_attempts = 2;
    config.refresh_backoff = Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let client = adapter.client(&d, config);
    assert_eq!(client.get(&d.me_url()), Outcome::Status(200));
    let refresh_before = client.refresh_token();

    d.auth.stop();
    d.expire_access_tokens();
    let outcomes = burst(&client, &d.me_url(), 10);
    assert!(all(&outcomes, &Outcome::RefreshUnavailable), "{outcomes:?}");
    assert!(client.has_tokens(), "tokens kept while the server is down");
    assert_eq!(
        client.refresh_token(),
        refresh_before,
        "refresh token kept as is"
    );
    assert_eq!(client.login_required_signals(), 0);

    d.auth.start();
    let outcomes = burst(&client, &d.me_url(), 10);
    assert!(all(&outcomes, &Outcome::Status(200)), "{outcomes:?}");
    let c = d.counts();
    assert_eq!(c.refresh_ok, 1, "one refresh after the restart");
    assert_eq!(c.invalid_grants, 0);
    assert_eq!(c.logins, 1, "never logged out");
    assert_eq!(client.login_required_signals(), 0);
}

/// Instantiate every interop scenario for an adapter (ignored unless run by
/// `bash interop/run`).
#[macro_export]
macro_rules! interop_tests {
    ($adapter:expr) => {
        #[test]
        #[ignore = "needs Django OAuth Toolkit: run `bash interop/run`"]
        fn expiry_bursts_keep_the_session() {
            $crate::expiry_bursts_keep_the_session(&$adapter, 20, 50);
        }

        #[test]
        #[ignore = "needs Django OAuth Toolkit: run `bash interop/run`"]
        fn short_lived_tokens_expire_on_the_servers_clock() {
            $crate::short_lived_tokens_expire_on_the_servers_clock(&$adapter);
        }

        #[test]
        #[ignore = "needs Django OAuth Toolkit: run `bash interop/run`"]
        fn revoked_grant_means_one_login_required() {
            $crate::revoked_grant_means_one_login_required(&$adapter);
        }

        #[test]
        #[ignore = "needs Django OAuth Toolkit: run `bash interop/run`"]
        fn auth_server_restart_is_not_a_logout() {
            $crate::auth_server_restart_is_not_a_logout(&$adapter);
        }
    };
}
