//! A [`reqwest_middleware::Middleware`] that survives access-token expiry.
//!
//! Add [`RefreshMiddleware`] to a `ClientWithMiddleware` (next to tracing or
//! anything else of that ecosystem). When requests meet an expired or revoked
//! token, exactly one of them refreshes it (RFC 6749 refresh-token grant, or
//! your own async function) while the others wait on an async event, then all
//! are retried with the new token. Transient failures are retried with
//! backoff, honouring `Retry-After`, only when safe (idempotent methods, or an
//! `Idempotency-Key`). The retry logic lives in the shared sans-IO core, so
//! do not stack a second retry middleware for the same statuses.
//!
//! Runtime-agnostic: waiting uses `event-listener`; backoff deadlines go
//! through the [`Timer`] you supply (`TokioTimer` with the `tokio` feature).
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use refresh_machine_reqwest::{RefreshMiddleware, TokioTimer, TokenPair, Secret};
//!
//! let auth = RefreshMiddleware::builder(TokioTimer)
//!     .token_endpoint("https://auth.example.com/token", "my-client-id")?
//!     .allow_origin("https://api.example.com")?
//!     .build();
//! auth.set_tokens(&TokenPair {
//!     access_token: Secret::from("stored access token"),
//!     refresh_token: Some(Secret::from("stored refresh token")),
//!     expires_in: None,
//! })?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(auth)
//!     .build();
//! let me = client.get("https://api.example.com/me").send().await?;
//! # Ok(()) }
//! ```
//!
//! Cancellation: dropping a request future at any await point releases its
//! slot; if it was performing the refresh, the refresh is reported as a
//! transient failure at once and another waiting request takes it over.
//!
//! Redirects are followed by reqwest, which drops `Authorization` when a
//! redirect changes host, port or scheme.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{select, Either};
use http::Extensions;
use refresh_machine_driver::grant::{self, EndpointError, TokenEndpoint};
pub use refresh_machine_driver::refresh_machine::Config;
use refresh_machine_driver::refresh_machine::{
    self as core_machine, Failure, RequestSpec, SendErrorKind,
};
pub use refresh_machine_driver::{Hooks, Origins, RefreshReply, Secret, Session, TokenPair};
use refresh_machine_driver::{InvalidOrigin, Start, Step, Waiter, SLOT_WAIT};
use reqwest::header::AUTHORIZATION;
use reqwest::{Request, Response};
use reqwest_middleware::Next;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sleeps for the runtime in use.
pub trait Timer: Send + Sync + 'static {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// [`Timer`] on tokio's clock.
#[cfg(feature = "tokio")]
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioTimer;

#[cfg(feature = "tokio")]
impl Timer for TokioTimer {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Typed failures, returned inside `reqwest_middleware::Error::Middleware`;
/// get them back with [`Error::of`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The refresh grant was rejected: the user must log in again.
    #[error("login required")]
    LoginRequired,
    /// No session: never logged in, or logged out.
    #[error("logged out")]
    LoggedOut,
    /// The token endpoint stayed unreachable; the tokens were kept, try later.
    #[error("token refresh unavailable")]
    RefreshUnavailable,
    /// Still 401 after a fresh token.
    #[error("unauthorized even with a fresh token (status {status})")]
    Unauthorized {
        /// The last status (401).
        status: u16,
    },
    /// `insufficient_scope`: a new token would not help.
    #[error("forbidden: insufficient scope (status {status})")]
    Forbidden {
        /// The last status (401 or 403).
        status: u16,
    },
    /// A retry was needed but the body is a stream (`try_clone` failed).
    #[error("retry needed but the body cannot be replayed (status {status:?})")]
    BodyNotReplayable {
        /// The status that asked for the retry, if a response came.
        status: Option<u16>,
    },
    /// Every session slot stayed taken for `SLOT_WAIT` (30 s): the request
    /// queued for one and gave up.
    #[error("too many concurrent requests")]
    Full,
    /// Configuration or request not usable.
    #[error("invalid: {0}")]
    Invalid(String),
}

impl Error {
    /// The typed failure inside a middleware error, if it is one of ours.
    pub fn of(e: &reqwest_middleware::Error) -> Option<&Error> {
        match e {
            reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Error>(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }
}

impl From<InvalidOrigin> for Error {
    fn from(e: InvalidOrigin) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<EndpointError> for Error {
    fn from(e: EndpointError) -> Self {
        Error::Invalid(e.to_string())
    }
}

type CustomRefresh = dyn Fn(Secret) -> BoxFuture<'static, RefreshReply> + Send + Sync;

enum Refresher {
    Endpoint(TokenEndpoint),
    Custom(Box<CustomRefresh>),
    None,
}

struct Inner {
    session: Session,
    origins: Origins,
    refresher: Refresher,
    /// Talks to the token endpoint (not through the middleware stack).
    http: reqwest::Client,
    timer: Box<dyn Timer>,
}

/// The middleware. Cheap to clone; clones share one session.
#[derive(Clone)]
pub struct RefreshMiddleware {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RefreshMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshMiddleware")
            .field("origins", &self.inner.origins)
            .field("session", &self.inner.session)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RefreshMiddleware`].
pub struct Builder {
    config: Config,
    origins: Origins,
    refresher: Refresher,
    hooks: Hooks,
    seed: Option<u64>,
    http: Option<reqwest::Client>,
    timer: Box<dyn Timer>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Refresh with the RFC 6749 refresh-token grant at `url` as a public client.
    pub fn token_endpoint(mut self, url: &str, client_id: &str) -> Result<Self, Error> {
        self.refresher = Refresher::Endpoint(TokenEndpoint::new(url, client_id)?);
        Ok(self)
    }

    /// A confidential client (HTTP Basic, RFC 6749 §2.3.1). After `token_endpoint`.
    pub fn client_secret(mut self, secret: &str) -> Self {
        if let Refresher::Endpoint(e) = self.refresher {
            self.refresher = Refresher::Endpoint(e.with_client_secret(secret));
        }
        self
    }

    /// Refresh with your own async function (given the refresh token).
    pub fn refresh_with<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Secret) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = RefreshReply> + Send + 'static,
    {
        self.refresher = Refresher::Custom(Box::new(move |t| Box::pin(f(t))));
        self
    }

    /// Attach the token to requests for this origin (scheme, host, port).
    pub fn allow_origin(mut self, url: &str) -> Result<Self, Error> {
        self.origins.allow(url)?;
        Ok(self)
    }

    /// Retry, backoff and refresh limits.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Called when the tokens change and when login is required.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Fix the jitter seed (tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The client used for the token endpoint (default: `reqwest::Client::new()`).
    pub fn token_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The middleware.
    pub fn build(self) -> RefreshMiddleware {
        let seed = self
            .seed
            .unwrap_or_else(refresh_machine_driver::random_seed);
        RefreshMiddleware {
            inner: Arc::new(Inner {
                session: Session::new(self.config, seed, self.hooks),
                origins: self.origins,
                refresher: self.refresher,
                http: self.http.unwrap_or_default(),
                timer: self.timer,
            }),
        }
    }
}

enum Last {
    None,
    Response(Response),
    Error(reqwest_middleware::Error),
}

impl RefreshMiddleware {
    /// Start building, with the runtime's timer.
    pub fn builder(timer: impl Timer) -> Builder {
        Builder {
            config: Config::DEFAULT,
            origins: Origins::new(),
            refresher: Refresher::None,
            hooks: Hooks::default(),
            seed: None,
            http: None,
            timer: Box::new(timer),
        }
    }

    /// The common case: token endpoint, client id, the API's origin and the tokens you hold.
    pub fn new(
        timer: impl Timer,
        token_url: &str,
        client_id: &str,
        api_origin: &str,
        tokens: &TokenPair,
    ) -> Result<Self, Error> {
        let m = Self::builder(timer)
            .token_endpoint(token_url, client_id)?
            .allow_origin(api_origin)?
            .build();
        m.set_tokens(tokens)?;
        Ok(m)
    }

    /// The shared session.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// Install tokens (first login, from storage, or after `LoginRequired`).
    pub fn set_tokens(&self, tokens: &TokenPair) -> Result<(), Error> {
        self.inner
            .session
            .login(tokens)
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Log in with the password grant at the token endpoint (tests, demos, first-party apps).
    pub async fn login_with_password(&self, username: &str, password: &str) -> Result<(), Error> {
        let Refresher::Endpoint(endpoint) = &self.inner.refresher else {
            return Err(Error::Invalid("no token endpoint configured".into()));
        };
        let req = reqwest::Request::try_from(endpoint.password_request(username, password)?)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let resp = self
            .inner
            .http
            .execute(req)
            .await
            .map_err(|e| Error::Invalid(format!("token endpoint: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::Invalid(format!("token endpoint: {e}")))?;
        let tokens = grant::parse_login(status, body.to_vec())?;
        self.set_tokens(&tokens)
    }

    /// End the session; pending requests fail `LoggedOut`.
    pub fn logout(&self) {
        self.inner.session.logout();
    }

    async fn refresh(&self, refresh_token: &Secret) -> RefreshReply {
        match &self.inner.refresher {
            Refresher::Custom(f) => f(refresh_token.clone()).await,
            Refresher::None => RefreshReply::Rejected,
            Refresher::Endpoint(endpoint) => {
                let Ok(req) = endpoint.refresh_request(refresh_token) else {
                    return RefreshReply::Rejected;
                };
                let Ok(mut req) = reqwest::Request::try_from(req) else {
                    return RefreshReply::Rejected;
                };
                *req.timeout_mut() = Some(self.inner.session.config().refresh_timeout);
                let resp = match self.inner.http.execute(req).await {
                    Ok(r) => r,
                    Err(_) => return grant::transport_failure(),
                };
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(body) => grant::classify(status, &headers, body.to_vec()).0,
                    Err(_) => grant::transport_failure(),
                }
            }
        }
    }

    /// Until the session changes or the waiter's deadline passes.
    async fn wait(&self, waiter: Waiter) {
        let (listener, deadline) = waiter.into_parts();
        match deadline {
            None => listener.await,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                let sleep = self.inner.timer.sleep(left);
                match select(listener, sleep).await {
                    Either::Left(_) | Either::Right(_) => {}
                }
            }
        }
    }

    async fn drive(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let url = req.url();
        let ours = match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => self.inner.origins.contains_parts(url.scheme(), host, port),
            _ => false,
        };
        if !ours {
            // Not ours: no token, no machine.
            let mut req = req;
            req.headers_mut().remove(AUTHORIZATION);
            return next.run(req, extensions).await;
        }
        // Same answer as `try_clone().is_some()`, without the clone.
        let replayable = req.body().map_or(true, |b| b.as_bytes().is_some());
        // A replayable request stays in `original` (clones are sent), so its URL
        // is at hand; a streamed one is sent itself, so keep its URL aside.
        let streamed_url = (!replayable).then(|| url.clone());
        let spec = RequestSpec {
            replayable,
            ..RequestSpec::from_http(req.method(), req.headers())
        };
        let mut original = Some(req);
        // More requests than the session has slots queue for one.
        let queue_deadline = std::time::Instant::now() + SLOT_WAIT;
        let mut handle = loop {
            match self.inner.session.start_or_wait(spec, queue_deadline) {
                Ok(Start::Started(h)) => break h,
                Ok(Start::Full(waiter)) => self.wait(waiter).await,
                Err(e) => {
                    return Err(reqwest_middleware::Error::middleware(match e {
                        core_machine::Error::Full => Error::Full,
                        e => Error::Invalid(e.to_string()),
                    }))
                }
            }
        };
        let mut last = Last::None;
        loop {
            match handle.next_step() {
                Step::Send { token, .. } => {
                    let template = original.as_ref().and_then(Request::try_clone);
                    let Some(mut attempt) = template.or_else(|| original.take()) else {
                        // A stream already sent once; the machine only gets here if the
                        // spec said replayable, so this is a bug in reqwest's try_clone.
                        return Err(reqwest_middleware::Error::middleware(
                            Error::BodyNotReplayable { status: None },
                        ));
                    };
                    let value = token.bearer_header().map_err(|e| {
                        reqwest_middleware::Error::middleware(Error::Invalid(e.to_string()))
                    })?;
                    attempt.headers_mut().insert(AUTHORIZATION, value);
                    match next.clone().run(attempt, extensions).await {
                        Ok(resp) => {
                            // reqwest follows redirects and drops the token when the
                            // origin changes: the final hop carried it only if same-origin.
                            let request_url = original.as_ref().map(Request::url);
                            let token_sent = request_url
                                .or(streamed_url.as_ref())
                                .is_some_and(|u| same_origin(u, resp.url()));
                            handle.http_response(resp.status(), resp.headers(), token_sent);
                            last = Last::Response(resp);
                        }
                        Err(e) => {
                            handle.send_error(send_error_kind(&e));
                            last = Last::Error(e);
                        }
                    }
                }
                Step::Refresh(ticket) => {
                    let reply = self.refresh(ticket.refresh_token()).await;
                    ticket.complete(reply);
                }
                Step::Wait(waiter) => self.wait(waiter).await,
                Step::Done(Ok(())) => {
                    return match last {
                        Last::Response(r) => Ok(r),
                        Last::Error(e) => Err(e),
                        Last::None => Err(reqwest_middleware::Error::middleware(Error::Invalid(
                            "delivered without a response".into(),
                        ))),
                    }
                }
                Step::Done(Err(failure)) => return Err(failure_to_error(failure, last)),
            }
        }
    }
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for RefreshMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.drive(req, extensions, next).await
    }
}

/// Scheme, host and port equal (`url` has already lowercased scheme and host).
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn send_error_kind(e: &reqwest_middleware::Error) -> SendErrorKind {
    match e {
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => SendErrorKind::Connect,
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => SendErrorKind::Timeout,
        _ => SendErrorKind::Io,
    }
}

fn failure_to_error(failure: Failure, last: Last) -> reqwest_middleware::Error {
    let status = match last {
        Last::Response(r) => Some(r.status().as_u16()),
        Last::Error(e) => {
            if let Failure::Transport(_) = failure {
                return e;
            }
            None
        }
        Last::None => None,
    };
    let typed = match failure {
        Failure::LoginRequired => Error::LoginRequired,
        Failure::LoggedOut => Error::LoggedOut,
        Failure::RefreshUnavailable => Error::RefreshUnavailable,
        Failure::Unauthorized => Error::Unauthorized {
            status: status.unwrap_or(401),
        },
        Failure::Forbidden => Error::Forbidden {
            status: status.unwrap_or(403),
        },
        Failure::BodyNotReplayable => Error::BodyNotReplayable { status },
        other => Error::Invalid(format!("request failed: {other}")),
    };
    reqwest_middleware::Error::middleware(typed)
}
