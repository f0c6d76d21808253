//! The shared end-to-end scenario table, through the hyper-util client
//! under `RefreshLayer` (tower's `ServiceBuilder`), on a tokio multi-thread
//! runtime; against the RFC 6749 test server and a web tutorial's JSON
//! backend. Plus a 200-request burst across an expiry and the typed errors.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use refresh_machine_test_server::{
    AuthServer, Backend, Harness, Outcome, ServerOptions, TestClient,
};
use refresh_machine_tower::{
    error_of, token_service, BoxError, Error, Hooks, RefreshLayer, RefreshService, TowerTransport,
    WithoutToken,
};
use tower::{ServiceBuilder, ServiceExt};

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

type Api = RefreshService<Client<HttpConnector, Full<Bytes>>>;

#[derive(Clone)]
struct TowerClient {
    api: Api,
    auth: RefreshLayer,
    login_required: Arc<AtomicU32>,
}

/// The status of a response read to its end, or what the error says.
async fn outcome(api: Api, request: http::Request<Full<Bytes>>) -> Outcome {
    match api.oneshot(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.into_body().collect().await {
                Ok(_) => Outcome::Status(status),
                Err(_) => Outcome::Transport,
            }
        }
        Err(e) => typed(&e),
    }
}

fn typed(e: &BoxError) -> Outcome {
    match error_of(e) {
        Some(Error::LoginRequired) => Outcome::LoginRequired,
        Some(Error::RefreshUnavailable) => Outcome::RefreshUnavailable,
        Some(Error::Unauthorized(_)) => Outcome::Unauthorized,
        Some(Error::Forbidden(_)) => Outcome::Forbidden,
        Some(Error::LoggedOut) => Outcome::LoggedOut,
        Some(Error::BodyNotReplayable(_)) => Outcome::BodyNotReplayable,
        Some(other) => Outcome::Other(other.to_string()),
        None => Outcome::Transport,
    }
}

fn get(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

impl TestClient for TowerClient {
    fn get(&self, url: &str) -> Outcome {
        runtime().block_on(outcome(self.api.clone(), get(url)))
    }

    fn post(&self, url: &str, idempotency_key: Option<&str>) -> Outcome {
        let mut request = http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"item":"book"}"#)))
            .unwrap();
        if let Some(k) = idempotency_key {
            request
                .headers_mut()
                .insert("idempotency-key", k.parse().unwrap());
        }
        runtime().block_on(outcome(self.api.clone(), request))
    }

    fn has_tokens(&self) -> bool {
        self.auth.session().tokens().is_some()
    }

    fn login_required_signals(&self) -> u32 {
        self.login_required.load(Ordering::SeqCst)
    }

    fn get_without_token(&self, url: &str) -> Outcome {
        let mut request = get(url);
        request.extensions_mut().insert(WithoutToken);
        runtime().block_on(outcome(self.api.clone(), request))
    }

    fn logout(&self) {
        self.auth.logout().unwrap();
    }
}

fn build(server: &AuthServer, config: refresh_machine_tower::Config) -> TowerClient {
    let login_required = Arc::new(AtomicU32::new(0));
    let counter = login_required.clone();
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let o = server.options().clone();
    // Redirects followed here, hop by hop (the scenario table follows some).
    let builder = RefreshLayer::builder_with(
        TowerTransport::new(token_service(http.clone())).follow_redirects(),
    );
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
        .timeout(Duration::from_secs(10))
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
    let api = ServiceBuilder::new().layer(auth.clone()).service(http);
    TowerClient {
        api,
        auth,
        login_required,
    }
}

struct Tower;

impl Harness for Tower {
    type Client = TowerClient;

    fn client(&self, server: &AuthServer, config: refresh_machine_tower::Config) -> TowerClient {
        build(server, config)
    }
}

refresh_machine_test_server::scenario_tests!(Tower);

/// The same table against a web tutorial's JSON backend.
mod app_backend {
    use super::Tower;
    use refresh_machine_test_server::AppBackend;
    refresh_machine_test_server::scenario_tests!(AppBackend(Tower));
}

fn opaque() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap()
}

/// 200 requests spawned at once meet a revoked token: one refresh, every
/// request answered 200, no reuse.
#[test]
fn burst_of_200_across_an_expiry_one_refresh_no_failure() {
    let s = opaque();
    let c = build(&s, refresh_machine_tower::Config::DEFAULT);
    s.revoke_access_tokens();
    let url = s.url("/api/me");
    let outcomes = runtime().block_on(async {
        let tasks: Vec<_> = (0..200)
            .map(|_| tokio::spawn(outcome(c.api.clone(), get(&url))))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| **o != Outcome::Status(200))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let k = s.counters();
    assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
}

/// A request to an origin not allowed the token goes without it, and an
/// `Authorization` the caller set for it is removed.
#[test]
fn another_origin_never_gets_the_token() {
    let s = opaque();
    let other = opaque();
    let c = build(&s, refresh_machine_tower::Config::DEFAULT);
    let mut request = get(&other.url("/api/me"));
    request
        .headers_mut()
        .insert("authorization", "Bearer stale".parse().unwrap());
    assert_eq!(
        runtime().block_on(outcome(c.api.clone(), request)),
        Outcome::Status(401)
    );
    let k = other.counters();
    assert_eq!((k.with_authorization, k.unauthorized), (0, 1), "{k:?}");
}

/// The inner service's transport error comes back as it is (not wrapped),
/// and a refused grant comes back typed.
#[test]
fn errors_are_the_inner_services_or_typed() {
    let s = opaque();
    let c = build(&s, refresh_machine_tower::Config::DEFAULT);
    // Nothing listens on port 9 of 127.0.0.1 here: allowed, unreachable.
    let unreachable = RefreshLayer::builder(token_service(
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>(),
    ))
    .token_endpoint(&s.token_url(), "demo-client")
    .unwrap()
    .allow_origin("http://127.0.0.1:9")
    .unwrap()
    .build();
    unreachable
        .set_tokens(&refresh_machine_tower::TokenPair::new("a"))
        .unwrap();
    let api = ServiceBuilder::new()
        .layer(unreachable)
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let e = runtime()
        .block_on(api.oneshot(get("http://127.0.0.1:9/api/me")))
        .expect_err("nothing listens there");
    assert!(error_of(&e).is_none(), "not wrapped: {e:?}");
    assert!(
        e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(hyper_util::client::legacy::Error::is_connect),
        "{e:?}"
    );

    s.revoke_sessions();
    s.revoke_access_tokens();
    assert_eq!(c.get(&s.url("/api/me")), Outcome::LoginRequired);
}

/// Without `follow_redirects` (the default, as the hyper-util client), a
/// redirect is delivered as it is: the layer sends nothing to where it
/// points, and a 302 is no reason to refresh.
#[test]
fn a_redirect_is_delivered_as_it_is_by_default() {
    let s = opaque();
    let other = opaque();
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let auth = RefreshLayer::builder(token_service(http.clone()))
        .token_endpoint(&s.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&s.origin())
        .unwrap()
        .build();
    runtime()
        .block_on(auth.login_with_password("alice", "wonderland"))
        .unwrap();
    let api = ServiceBuilder::new().layer(auth).service(http);
    let hop = s.url(&format!("/api/redirect?to={}", other.url("/api/me")));
    assert_eq!(
        runtime().block_on(outcome(api, get(&hop))),
        Outcome::Status(302)
    );
    assert_eq!(other.counters().requests, 0);
    assert_eq!(s.counters().refresh_calls, 0);
}

/// The allowed origin however the URI spells its host (`LOCALHOST` for
/// an allowed `localhost`); another name for the same address is another
/// origin (no token); an origin-form URI (no scheme or host) gets none.
#[test]
fn the_allowed_origin_is_recognised_however_its_host_is_written() {
    let s = opaque();
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let port = s.origin().rsplit(':').next().unwrap().to_owned();
    let auth = RefreshLayer::builder(token_service(http.clone()))
        .token_endpoint(&s.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&format!("http://localhost:{port}"))
        .unwrap()
        .build();
    runtime()
        .block_on(auth.login_with_password("alice", "wonderland"))
        .unwrap();
    let api = ServiceBuilder::new().layer(auth).service(http);
    let shouting = format!("http://LOCALHOST:{port}/api/me");
    assert_eq!(
        runtime().block_on(outcome(api.clone(), get(&shouting))),
        Outcome::Status(200)
    );
    assert_eq!(s.counters().with_authorization, 1);
    // 127.0.0.1 is the same server, not the allowed origin.
    assert_eq!(
        runtime().block_on(outcome(api.clone(), get(&s.url("/api/me")))),
        Outcome::Status(401)
    );
    assert!(runtime().block_on(api.oneshot(get("/api/me"))).is_err());
    let k = s.counters();
    assert_eq!((k.with_authorization, k.refresh_calls), (1, 0), "{k:?}");
}
