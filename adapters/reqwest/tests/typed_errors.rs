//! `RequestError`: the middleware's typed failures, owned, through `?` into
//! an application's own thiserror enum, and the other two kinds of failure
//! (reqwest's own, another middleware's) kept apart from them.

mod common;

use common::{build, opaque, runtime, Tokio};
use refresh_machine_reqwest::{Error, RefreshMiddleware, RequestError, TypedResult};
use reqwest_middleware::ClientWithMiddleware;

/// An application's error type, as an SDK would write it.
#[derive(Debug, thiserror::Error)]
enum MyError {
    #[error(transparent)]
    Api(#[from] RequestError),
    #[error("unexpected status {0}")]
    Status(u16),
}

/// An SDK function: one `?` from the middleware's result to `MyError`.
async fn me(client: &ClientWithMiddleware, url: &str) -> Result<String, MyError> {
    let response = client.get(url).send().await.typed()?;
    if !response.status().is_success() {
        return Err(MyError::Status(response.status().as_u16()));
    }
    Ok(response.text().await.typed()?)
}

/// No retry of a transport failure: each test's single attempt decides.
fn no_retries() -> refresh_machine_reqwest::Config {
    let mut config = refresh_machine_reqwest::Config::DEFAULT;
    config.max_transient_retries = 0;
    config
}

#[test]
fn a_typed_failure_goes_through_question_mark_into_an_apps_error() {
    let s = opaque();
    let c = build(&s, refresh_machine_reqwest::Config::DEFAULT);
    let url = s.url("/api/me");
    let ok = runtime().block_on(me(&c.client, &url)).unwrap();
    assert_eq!(ok, r#"{"user":"alice"}"#);

    // The server ends the session: the refresh is refused, login required.
    s.revoke_sessions();
    s.revoke_access_tokens();
    let err = runtime().block_on(me(&c.client, &url)).unwrap_err();
    assert!(
        matches!(
            err,
            MyError::Api(RequestError::Refresh(Error::LoginRequired))
        ),
        "{err:?}"
    );
    // The chain: ours, then the driver's error inside.
    let source = std::error::Error::source(&err).expect("RequestError's source");
    assert_eq!(source.to_string(), "login required");

    // Logged out: typed too, and no request reached the server.
    c.auth.logout().unwrap();
    let before = s.counters().requests;
    let err = runtime().block_on(me(&c.client, &url)).unwrap_err();
    assert!(
        matches!(err, MyError::Api(RequestError::Refresh(Error::LoggedOut))),
        "{err:?}"
    );
    let MyError::Api(api) = &err else {
        unreachable!()
    };
    assert!(matches!(api.refresh_error(), Some(Error::LoggedOut)));
    assert_eq!(s.counters().requests, before);
}

/// A port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_refused_connection_is_reqwests_own_error() {
    let origin = closed_port_url();
    let auth = RefreshMiddleware::builder(Tokio)
        .token_endpoint(&format!("{origin}/token"), "demo-client")
        .unwrap()
        .allow_origin(&origin)
        .unwrap()
        .config(no_retries())
        .build();
    auth.set_tokens(
        &refresh_machine_reqwest::TokenPair::new("access").with_refresh_token("refresh"),
    )
    .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth.clone())
        .build();
    // A request on the token's origin: driven by the session, its transport
    // failure handed back as reqwest's error.
    let err = runtime()
        .block_on(me(&client, &format!("{origin}/api/me")))
        .unwrap_err();
    match err {
        MyError::Api(RequestError::Reqwest(e)) => assert!(e.is_connect(), "{e:?}"),
        other => panic!("expected Reqwest, got {other:?}"),
    }
    // A password login's transport failure sorts the same way.
    let login = runtime()
        .block_on(auth.login_with_password("alice", "wonderland"))
        .unwrap_err();
    assert!(matches!(login, Error::Transport(_)), "{login:?}");
    assert!(
        matches!(RequestError::from(login), RequestError::Reqwest(ref e) if e.is_connect()),
        "a login's transport error is reqwest's"
    );
}

/// Another middleware's failure.
#[derive(Debug, thiserror::Error)]
#[error("the quota middleware refused the request")]
struct QuotaExceeded;

struct Quota;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Quota {
    async fn handle(
        &self,
        _req: reqwest::Request,
        _extensions: &mut http::Extensions,
        _next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        Err(reqwest_middleware::Error::middleware(QuotaExceeded))
    }
}

#[test]
fn another_middlewares_failure_stays_its_own() {
    let s = opaque();
    let c = build(&s, no_retries());
    // Under ours: the refresh middleware gets its error as a send failure
    // and hands it back as it is.
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(c.auth.clone())
        .with(Quota)
        .build();
    let err = runtime()
        .block_on(me(&client, &s.url("/api/me")))
        .unwrap_err();
    match err {
        MyError::Api(RequestError::Middleware(e)) => {
            assert!(e.downcast_ref::<QuotaExceeded>().is_some(), "{e:?}")
        }
        other => panic!("expected Middleware, got {other:?}"),
    }
}
