//! What every reqwest test binary shares: the runtime, the timer, a logged-in
//! client on the test server, bursts.
#![allow(dead_code)] // each test binary uses its own part

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use refresh_machine_reqwest::{BoxFuture, Error, Hooks, RefreshMiddleware, Timer, WithoutToken};
use refresh_machine_test_server::{AuthServer, Backend, Outcome, ServerOptions, TestClient};
use reqwest_middleware::ClientWithMiddleware;

/// The tests' timer (the crate's own `TokioTimer` sits behind a feature).
pub(crate) struct Tokio;

impl Timer for Tokio {
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

#[derive(Clone)]
pub(crate) struct AsyncClient {
    pub(crate) client: ClientWithMiddleware,
    pub(crate) auth: RefreshMiddleware,
    pub(crate) login_required: Arc<AtomicU32>,
}

pub(crate) fn outcome(r: reqwest_middleware::Result<reqwest::Response>) -> Outcome {
    match r {
        Ok(resp) => Outcome::Status(resp.status().as_u16()),
        Err(e) => match refresh_machine_reqwest::error_of(&e) {
            Some(Error::LoginRequired) => Outcome::LoginRequired,
            Some(Error::RefreshUnavailable) => Outcome::RefreshUnavailable,
            Some(Error::Unauthorized(_)) => Outcome::Unauthorized,
            Some(Error::Forbidden(_)) => Outcome::Forbidden,
            Some(Error::LoggedOut) => Outcome::LoggedOut,
            Some(Error::BodyNotReplayable(_)) => Outcome::BodyNotReplayable,
            Some(other) => Outcome::Other(other.to_string()),
            None => Outcome::Transport,
        },
    }
}

impl TestClient for AsyncClient {
    fn get(&self, url: &str) -> Outcome {
        let (c, url) = (self.client.clone(), url.to_owned());
        runtime().block_on(async move { outcome(c.get(url).send().await) })
    }

    fn post(&self, url: &str, idempotency_key: Option<&str>) -> Outcome {
        let (c, url) = (self.client.clone(), url.to_owned());
        let key = idempotency_key.map(str::to_owned);
        runtime().block_on(async move {
            let mut req = c
                .post(url)
                .header("content-type", "application/json")
                .body(r#"{"item":"book"}"#);
            if let Some(k) = key {
                req = req.header("idempotency-key", k);
            }
            outcome(req.send().await)
        })
    }

    fn has_tokens(&self) -> bool {
        self.auth.session().tokens().is_some()
    }

    fn login_required_signals(&self) -> u32 {
        self.login_required.load(Ordering::SeqCst)
    }

    fn get_without_token(&self, url: &str) -> Outcome {
        let (c, url) = (self.client.clone(), url.to_owned());
        runtime()
            .block_on(async move { outcome(c.get(url).with_extension(WithoutToken).send().await) })
    }

    fn logout(&self) {
        self.auth.logout().unwrap();
    }
}

pub(crate) fn build(server: &AuthServer, config: refresh_machine_reqwest::Config) -> AsyncClient {
    build_with(
        server,
        config,
        refresh_machine_reqwest::TokenCapacity::Standard,
    )
}

/// [`build`] with another token capacity.
pub(crate) fn build_with(
    server: &AuthServer,
    config: refresh_machine_reqwest::Config,
    capacity: refresh_machine_reqwest::TokenCapacity,
) -> AsyncClient {
    let login_required = Arc::new(AtomicU32::new(0));
    let counter = login_required.clone();
    let o = server.options().clone();
    let builder = RefreshMiddleware::builder(Tokio).token_capacity(capacity);
    let builder = match o.backend {
        Backend::AppJwt => builder.json_endpoint(&server.refresh_url()),
        _ => builder.token_endpoint(&server.token_url(), &o.client_id),
    };
    let mut builder = builder.unwrap();
    if o.refused_status != 401 {
        // Refused with another status: refresh when the body says so.
        builder = builder
            .refresh_on_statuses(&[401, o.refused_status])
            .refresh_when(|_, _, body| body.windows(13).any(|w| w == b"TOKEN_EXPIRED"));
    }
    let auth = builder
        .allow_origin(&server.origin())
        .unwrap()
        .config(config)
        .seed(7)
        .hooks(Hooks {
            login_required: Some(Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })),
            ..Hooks::default()
        })
        .build();
    let (a, login) = (auth.clone(), server.login_url());
    runtime()
        .block_on(async move {
            match o.backend {
                Backend::AppJwt => {
                    let credentials = format!(
                        r#"{{"username":"{}","password":"{}"}}"#,
                        o.username, o.password
                    );
                    a.login_with_json(&login, credentials).await
                }
                _ => a.login_with_password(&o.username, &o.password).await,
            }
        })
        .unwrap();
    let reqwest = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest)
        .with(auth.clone())
        .build();
    AsyncClient {
        client,
        auth,
        login_required,
    }
}

pub(crate) fn opaque() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap()
}

/// `n` GETs spawned at once on the runtime; each one's status or error.
pub(crate) fn spawn_burst(
    client: &ClientWithMiddleware,
    url: &str,
    n: usize,
) -> Vec<reqwest_middleware::Result<u16>> {
    runtime().block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (client, url) = (client.clone(), url.to_owned());
                tokio::spawn(
                    async move { client.get(url).send().await.map(|r| r.status().as_u16()) },
                )
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
}

/// A new token family minted by the server (stands in for any custom grant).
pub(crate) fn minted(s: &AuthServer) -> refresh_machine_reqwest::TokenPair {
    let t = s.login();
    refresh_machine_reqwest::TokenPair::new(t.access_token.as_str())
        .with_refresh_token(t.refresh_token.as_str())
}

/// `auth` logged in with a fresh family whose access token the server then
/// revokes, behind a plain reqwest client: the next request refreshes.
pub(crate) fn expired_client(auth: &RefreshMiddleware, s: &AuthServer) -> ClientWithMiddleware {
    auth.set_tokens(&minted(s)).unwrap();
    s.revoke_access_tokens();
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth.clone())
        .build()
}
