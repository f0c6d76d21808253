//! The shared end-to-end scenario table on a tokio multi-thread runtime, a
//! 200-request burst across an expiry, and cancellation of the refreshing future.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use refresh_machine_reqwest::{BoxFuture, Error, Hooks, RefreshMiddleware, Timer};
use refresh_machine_test_server::{
    AuthServer, Harness, Outcome, ServerOptions, TestClient, TokenFault,
};
use reqwest_middleware::ClientWithMiddleware;

/// The tests' timer (the crate's own `TokioTimer` sits behind a feature).
struct Tokio;

impl Timer for Tokio {
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
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
struct AsyncClient {
    client: ClientWithMiddleware,
    auth: RefreshMiddleware,
    login_required: Arc<AtomicU32>,
}

fn outcome(r: reqwest_middleware::Result<reqwest::Response>) -> Outcome {
    match r {
        Ok(resp) => Outcome::Status(resp.status().as_u16()),
        Err(e) => match refresh_machine_reqwest::error_of(&e) {
            Some(Error::LoginRequired) => Outcome::LoginRequired,
            Some(Error::RefreshUnavailable) => Outcome::RefreshUnavailable,
            Some(Error::Unauthorized(_)) => Outcome::Unauthorized,
            Some(Error::Forbidden(_)) => Outcome::Forbidden,
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
}

struct Reqwest;

fn build(server: &AuthServer, config: refresh_machine_reqwest::Config) -> AsyncClient {
    let login_required = Arc::new(AtomicU32::new(0));
    let counter = login_required.clone();
    let auth = RefreshMiddleware::builder(Tokio)
        .token_endpoint(&server.token_url(), &server.options().client_id)
        .unwrap()
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
    let o = server.options().clone();
    let a = auth.clone();
    runtime()
        .block_on(async move { a.login_with_password(&o.username, &o.password).await })
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

impl Harness for Reqwest {
    type Client = AsyncClient;

    fn client(&self, server: &AuthServer, config: refresh_machine_reqwest::Config) -> AsyncClient {
        build(server, config)
    }
}

refresh_machine_test_server::scenario_tests!(Reqwest);

fn opaque() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap()
}

/// `n` GETs spawned at once on the runtime; each one's status or error.
fn spawn_burst(
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
fn dropping_the_refreshing_future_hands_the_refresh_over() {
    let s = opaque();
    let mut config = refresh_machine_reqwest::Config::DEFAULT;
    // Long enough that only the hand-over (not the deadline) can explain a quick finish.
    config.refresh_timeout = Duration::from_secs(20);
    config.refresh_backoff.base = Duration::from_millis(1);
    config.refresh_backoff.max = Duration::from_millis(5);
    let c = build(&s, config);
    s.revoke_access_tokens();
    // The first refresh hangs at the server; later ones work.
    s.set_token_fault(TokenFault::Hang(Duration::from_secs(30)), 1);
    let url = s.url("/api/me");
    let server = Arc::new(s);
    let srv = server.clone();
    let results = runtime().block_on(async move {
        // The first request claims the refresh and hangs in it.
        let first = {
            let (client, url) = (c.client.clone(), url.clone());
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        };
        // Bounded wait until the hanging refresh has reached the server.
        let mut waited = 0;
        while srv.counters().token_faults == 0 {
            assert!(waited < 500, "the refresh never reached the server");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        let others: Vec<_> = (0..5)
            .map(|_| {
                let (client, url) = (c.client.clone(), url.clone());
                tokio::spawn(
                    async move { client.get(url).send().await.map(|r| r.status().as_u16()) },
                )
            })
            .collect();
        // Bounded wait until the five wait too (the first waits while it refreshes).
        let mut waited = 0;
        while c.auth.session().snapshot().waiting < 6 {
            assert!(waited < 500, "the others never parked behind the refresh");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert!(c.auth.session().snapshot().refresh_in_flight);
        assert_eq!(
            srv.counters().refresh_calls,
            1,
            "nobody else refreshed meanwhile"
        );
        // Cancel the refreshing request mid-refresh.
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        for t in others {
            out.push(
                tokio::time::timeout(Duration::from_secs(10), t)
                    .await
                    .expect("a waiter hung")
                    .unwrap(),
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the deadline instead"
        );
        out
    });
    assert!(results.iter().all(|r| matches!(r, Ok(200))), "{results:?}");
    let k = server.counters();
    assert_eq!(
        (k.refresh_calls, k.refresh_ok, k.reuse_detections),
        (2, 1, 0),
        "{k:?}"
    );
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
                let t = srv.login();
                refresh_machine_reqwest::RefreshReply::Tokens(refresh_machine_reqwest::TokenPair {
                    access_token: t.access_token.as_str().into(),
                    refresh_token: Some(t.refresh_token.as_str().into()),
                    expires_at: None,
                    refresh_expires_at: None,
                })
            }
        })
        .seed(3)
        .build();
    let first = server.login();
    auth.set_tokens(&refresh_machine_reqwest::TokenPair {
        access_token: first.access_token.as_str().into(),
        refresh_token: Some(first.refresh_token.as_str().into()),
        expires_at: None,
        refresh_expires_at: None,
    })
    .unwrap();
    server.revoke_access_tokens();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
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
    let first = server.login();
    auth.set_tokens(&refresh_machine_reqwest::TokenPair {
        access_token: first.access_token.as_str().into(),
        refresh_token: Some(first.refresh_token.as_str().into()),
        expires_at: None,
        refresh_expires_at: None,
    })
    .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    own.set(client.clone()).unwrap();
    server.revoke_access_tokens();
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
