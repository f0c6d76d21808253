//! The shared end-to-end scenario table, against the loopback test server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use refresh_machine_test_server::{AppBackend, AuthServer, Backend, Harness, Outcome, TestClient};
use refresh_machine_ureq::{Client, Error, Hooks, WithoutToken};

#[derive(Clone)]
struct UreqClient {
    client: Client,
    login_required: Arc<AtomicU32>,
}

impl TestClient for UreqClient {
    fn get(&self, url: &str) -> Outcome {
        outcome(self.client.get(url))
    }

    fn post(&self, url: &str, idempotency_key: Option<&str>) -> Outcome {
        let mut req = http::Request::post(url).header("content-type", "application/json");
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        outcome(
            self.client
                .send(req.body(br#"{"item":"book"}"#.to_vec()).unwrap()),
        )
    }

    fn has_tokens(&self) -> bool {
        self.client.session().tokens().is_some()
    }

    fn login_required_signals(&self) -> u32 {
        self.login_required.load(Ordering::SeqCst)
    }

    fn get_without_token(&self, url: &str) -> Outcome {
        let mut req = http::Request::get(url).body(Vec::new()).unwrap();
        req.extensions_mut().insert(WithoutToken);
        outcome(self.client.send(req))
    }

    fn logout(&self) {
        self.client.logout().unwrap();
    }
}

fn outcome(r: Result<http::Response<Vec<u8>>, Error>) -> Outcome {
    match r {
        Ok(resp) => Outcome::Status(resp.status().as_u16()),
        Err(Error::LoginRequired) => Outcome::LoginRequired,
        Err(Error::RefreshUnavailable) => Outcome::RefreshUnavailable,
        Err(Error::Unauthorized(_)) => Outcome::Unauthorized,
        Err(Error::Forbidden(_)) => Outcome::Forbidden,
        Err(Error::LoggedOut) => Outcome::LoggedOut,
        Err(Error::Transport(_)) => Outcome::Transport,
        Err(Error::BodyNotReplayable(_)) => Outcome::BodyNotReplayable,
        Err(e) => Outcome::Other(e.to_string()),
    }
}

struct Ureq;

impl Harness for Ureq {
    type Client = UreqClient;

    fn client(&self, server: &AuthServer, config: refresh_machine_ureq::Config) -> UreqClient {
        let login_required = Arc::new(AtomicU32::new(0));
        let counter = login_required.clone();
        let o = server.options();
        let builder = match o.backend {
            Backend::AppJwt => Client::builder().json_endpoint(&server.refresh_url()),
            _ => Client::builder().token_endpoint(&server.token_url(), &o.client_id),
        };
        let client = refusals(o, builder.unwrap())
            .allow_origin(&server.origin())
            .unwrap()
            .config(config)
            .timeout(Duration::from_secs(10))
            .seed(7)
            .hooks(Hooks {
                login_required: Some(Box::new(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                })),
                ..Hooks::default()
            })
            .build();
        match o.backend {
            Backend::AppJwt => client.login_with_json(&server.login_url(), credentials(o)),
            _ => client.login_with_password(&o.username, &o.password),
        }
        .unwrap();
        UreqClient {
            client,
            login_required,
        }
    }
}

/// A server that refuses tokens with another status than 401 is asked to
/// refresh on it when the body says `TOKEN_EXPIRED`.
fn refusals(
    o: &refresh_machine_test_server::ServerOptions,
    builder: refresh_machine_ureq::ClientBuilder,
) -> refresh_machine_ureq::ClientBuilder {
    if o.refused_status == 401 {
        return builder;
    }
    builder
        .refresh_on_statuses(&[401, o.refused_status])
        .refresh_when(|_, _, body| body.windows(13).any(|w| w == b"TOKEN_EXPIRED"))
}

/// `{"username": .., "password": ..}` for an app backend's login route.
fn credentials(o: &refresh_machine_test_server::ServerOptions) -> String {
    format!(
        r#"{{"username":"{}","password":"{}"}}"#,
        o.username, o.password
    )
}

refresh_machine_test_server::scenario_tests!(Ureq);

/// The same table against a web tutorial's JSON backend (camelCase
/// answers, JWT access tokens without `expires_in`, bare 401s, 403 for a
/// refused refresh token).
mod app_backend {
    use super::*;
    refresh_machine_test_server::scenario_tests!(AppBackend(Ureq));
}
