//! A blocking HTTP client on [ureq] 3 that survives access-token expiry.
//!
//! [`Client`] wraps a `ureq::Agent` and a shared [`Session`]: clone it into as
//! many threads as you like. When requests meet an expired or revoked token,
//! exactly one of them refreshes it (RFC 6749 refresh-token grant, or your own
//! function) while the others block until the refresh resolves, then all are
//! retried with the new token. Transient failures are retried with backoff,
//! honouring `Retry-After`, only when that is safe (idempotent methods, or an
//! `Idempotency-Key`). Every failure is a typed [`Error`].
//!
//! ```no_run
//! use refresh_machine_ureq::Client;
//!
//! let client = Client::builder()
//!     .token_endpoint("https://auth.example.com/token", "my-client-id")?
//!     .allow_origin("https://api.example.com")?
//!     .build();
//! client.login_with_password("alice", "wonderland")?;
//! let me = client.get("https://api.example.com/me")?;
//! assert_eq!(me.status(), 200);
//! # Ok::<(), refresh_machine_ureq::Error>(())
//! ```
//!
//! ## Why a wrapper and not a ureq middleware
//!
//! ureq 3 has middleware (`ureq::middleware::Middleware`), but a middleware gets
//! one `MiddlewareNext` that is consumed by the single call it may make: it
//! cannot send the request a second time, so it cannot retry after a refresh or
//! a 503. Retrying needs the request (and a replayable body) in hand, so the
//! client owns the send loop and uses the agent for each attempt.
//!
//! ## Tokens stay where they belong
//!
//! The bearer token is attached only to requests whose origin (scheme, host,
//! port) was configured with [`ClientBuilder::allow_origin`]. Redirects are
//! followed here, not by ureq: a hop to another origin goes out without the
//! token, and so does everything after it.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, LOCATION};
use http::{Method, Request, Response, StatusCode, Uri};
use refresh_machine_driver::grant::{self, EndpointError, TokenEndpoint};
pub use refresh_machine_driver::refresh_machine::Config;
use refresh_machine_driver::refresh_machine::{
    self as core_machine, Failure, RequestSpec, SendErrorKind,
};
pub use refresh_machine_driver::{Hooks, Origins, RefreshReply, Secret, Session, TokenPair};
use refresh_machine_driver::{InvalidOrigin, Start, Step, SLOT_WAIT};

/// Redirect hops followed per attempt.
const MAX_REDIRECTS: usize = 10;

/// Everything a request can end with, other than a delivered response.
#[derive(Debug, thiserror::Error)]
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
    /// Still 401 after a fresh token: the server refuses this request.
    #[error("unauthorized even with a fresh token")]
    Unauthorized(Box<Response<Vec<u8>>>),
    /// 401/403 with `insufficient_scope`: a new token would not help.
    #[error("forbidden: insufficient scope")]
    Forbidden(Box<Response<Vec<u8>>>),
    /// The request needed a retry but its body was a one-shot stream; the
    /// response that asked for the retry (e.g. the 401) is returned unchanged.
    #[error("retry needed but the body cannot be replayed")]
    BodyNotReplayable(Option<Box<Response<Vec<u8>>>>),
    /// The last attempt failed in transport and was not (or no longer) retried.
    #[error("transport: {0}")]
    Transport(#[source] ureq::Error),
    /// Every session slot stayed taken for `SLOT_WAIT` (30 s): the request
    /// queued for one and gave up.
    #[error("too many concurrent requests")]
    Full,
    /// The request or the configuration is not usable.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The token endpoint could not be used (login).
    #[error("token endpoint: {0}")]
    Endpoint(#[from] EndpointError),
}

impl From<InvalidOrigin> for Error {
    fn from(e: InvalidOrigin) -> Self {
        Error::Invalid(e.to_string())
    }
}

type CustomRefresh = dyn Fn(&Secret) -> RefreshReply + Send + Sync;

enum Refresher {
    Endpoint(TokenEndpoint),
    Custom(Box<CustomRefresh>),
    None,
}

struct Inner {
    agent: ureq::Agent,
    session: Session,
    origins: Origins,
    refresher: Refresher,
}

/// A cloneable, thread-safe client. All clones share one session.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("origins", &self.inner.origins)
            .field("session", &self.inner.session)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    config: Config,
    origins: Origins,
    refresher: Refresher,
    agent_timeout: Option<Duration>,
    hooks: Hooks,
    seed: Option<u64>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Refresh with the RFC 6749 refresh-token grant at `url` as a public client.
    /// The token endpoint's origin does not receive the access token unless allowed.
    pub fn token_endpoint(mut self, url: &str, client_id: &str) -> Result<Self, Error> {
        self.refresher = Refresher::Endpoint(TokenEndpoint::new(url, client_id)?);
        Ok(self)
    }

    /// A confidential client: the secret is sent as HTTP Basic (RFC 6749 §2.3.1).
    /// Call after [`token_endpoint`](Self::token_endpoint).
    pub fn client_secret(mut self, secret: &str) -> Self {
        if let Refresher::Endpoint(e) = self.refresher {
            self.refresher = Refresher::Endpoint(e.with_client_secret(secret));
        }
        self
    }

    /// Refresh with your own function instead (it is given the refresh token).
    pub fn refresh_with(
        mut self,
        f: impl Fn(&Secret) -> RefreshReply + Send + Sync + 'static,
    ) -> Self {
        self.refresher = Refresher::Custom(Box::new(f));
        self
    }

    /// Attach the token to requests for this origin (scheme, host and port of `url`).
    pub fn allow_origin(mut self, url: &str) -> Result<Self, Error> {
        self.origins.allow(url)?;
        Ok(self)
    }

    /// Retry, backoff and refresh limits.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Timeout for each attempt (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.agent_timeout = Some(timeout);
        self
    }

    /// Called when the tokens change (store them) and when login is required.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Fix the jitter seed (tests). By default it comes from the OS's hasher keys.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Redirects are followed by the client, with the origin check per hop.
            .max_redirects(0)
            .timeout_global(Some(self.agent_timeout.unwrap_or(Duration::from_secs(30))))
            .build()
            .into();
        let seed = self
            .seed
            .unwrap_or_else(refresh_machine_driver::random_seed);
        Client {
            inner: Arc::new(Inner {
                agent,
                session: Session::new(self.config, seed, self.hooks),
                origins: self.origins,
                refresher: self.refresher,
            }),
        }
    }
}

enum Body {
    Bytes(Vec<u8>),
    /// Sent once; `None` after that.
    Stream(Option<Box<dyn Read + Send>>),
}

enum Last {
    None,
    Response(Response<Vec<u8>>),
    Error(ureq::Error),
}

impl Client {
    /// Start building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            config: Config::DEFAULT,
            origins: Origins::new(),
            refresher: Refresher::None,
            agent_timeout: None,
            hooks: Hooks::default(),
            seed: None,
        }
    }

    /// The shared session (state, tokens, snapshot).
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// Install tokens obtained elsewhere (e.g. an authorization-code flow, or storage).
    pub fn set_tokens(&self, tokens: &TokenPair) -> Result<(), Error> {
        self.inner
            .session
            .login(tokens)
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Log in with the resource-owner password grant at the token endpoint
    /// (tests, demos and first-party apps).
    pub fn login_with_password(&self, username: &str, password: &str) -> Result<(), Error> {
        let Refresher::Endpoint(endpoint) = &self.inner.refresher else {
            return Err(Error::Invalid("no token endpoint configured".into()));
        };
        let req = endpoint.password_request(username, password)?;
        let mut resp = self.inner.agent.run(req).map_err(Error::Transport)?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_vec().map_err(Error::Transport)?;
        let tokens = grant::parse_login(status, body)?;
        self.set_tokens(&tokens)
    }

    /// End the session; pending requests fail `LoggedOut`.
    pub fn logout(&self) {
        self.inner.session.logout();
    }

    /// `GET url`.
    pub fn get(&self, url: &str) -> Result<Response<Vec<u8>>, Error> {
        let req = Request::get(url)
            .body(Vec::new())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.send(req)
    }

    /// `POST url` with a body (not retried after errors that may have reached
    /// the server unless it carries an `Idempotency-Key`).
    pub fn post(&self, url: &str, body: impl Into<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        let req = Request::post(url)
            .body(body.into())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.send(req)
    }

    /// Send a request with a buffered (replayable) body.
    pub fn send(&self, req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        let (parts, body) = req.into_parts();
        self.drive(parts, Body::Bytes(body))
    }

    /// Send a request whose body is a one-shot stream. If a retry is needed the
    /// request fails with [`Error::BodyNotReplayable`] carrying the response.
    pub fn send_streaming(
        &self,
        req: Request<()>,
        body: impl Read + Send + 'static,
    ) -> Result<Response<Vec<u8>>, Error> {
        let (parts, ()) = req.into_parts();
        self.drive(parts, Body::Stream(Some(Box::new(body))))
    }

    fn drive(
        &self,
        parts: http::request::Parts,
        mut body: Body,
    ) -> Result<Response<Vec<u8>>, Error> {
        if !self.inner.origins.contains(&parts.uri) {
            // Not ours: no token, no machine; a plain request.
            return self
                .attempt(&parts, &mut body, None)
                .map(|(r, _)| r)
                .map_err(Error::Transport);
        }
        let spec = RequestSpec {
            replayable: matches!(body, Body::Bytes(_)),
            ..RequestSpec::from_http(&parts.method, &parts.headers)
        };
        // More requests than the session has slots queue for one.
        let queue_deadline = std::time::Instant::now() + SLOT_WAIT;
        let mut handle = loop {
            match self.inner.session.start_or_wait(spec, queue_deadline) {
                Ok(Start::Started(h)) => break h,
                Ok(Start::Full(waiter)) => waiter.wait_blocking(),
                Err(core_machine::Error::Full) => return Err(Error::Full),
                Err(e) => return Err(Error::Invalid(e.to_string())),
            }
        };
        let mut last = Last::None;
        loop {
            match handle.next_step() {
                Step::Send { token, .. } => match self.attempt(&parts, &mut body, Some(&token)) {
                    Ok((resp, token_went)) => {
                        handle.http_response(resp.status(), resp.headers(), token_went);
                        last = Last::Response(resp);
                    }
                    Err(e) => {
                        handle.send_error(send_error_kind(&e));
                        last = Last::Error(e);
                    }
                },
                Step::Refresh(ticket) => {
                    let reply = self.refresh(ticket.refresh_token());
                    ticket.complete(reply);
                }
                Step::Wait(waiter) => waiter.wait_blocking(),
                Step::Done(Ok(())) => {
                    return match last {
                        Last::Response(r) => Ok(r),
                        Last::Error(e) => Err(Error::Transport(e)),
                        Last::None => Err(Error::Invalid("delivered without a response".into())),
                    }
                }
                Step::Done(Err(failure)) => return Err(failure_to_error(failure, last)),
            }
        }
    }

    /// One attempt, following redirects. Returns the final response and whether
    /// the token was attached to the final hop.
    fn attempt(
        &self,
        parts: &http::request::Parts,
        body: &mut Body,
        token: Option<&Secret>,
    ) -> Result<(Response<Vec<u8>>, bool), ureq::Error> {
        let origin_uri = &parts.uri;
        let mut uri = parts.uri.clone();
        let mut method = parts.method.clone();
        // A GET or HEAD with an empty buffer goes out without a body, as a
        // plain ureq call would (no `Content-Length: 0`).
        let mut send_body = !matches!(body, Body::Bytes(b) if b.is_empty() && matches!(method, Method::GET | Method::HEAD));
        for hop in 0..=MAX_REDIRECTS {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .version(parts.version)
                .body(())
                .map_err(ureq::Error::Http)?;
            *req.headers_mut() = parts.headers.clone();
            req.headers_mut().remove(AUTHORIZATION);
            // The first hop is the request itself, whose origin `drive` checked
            // before passing a token; later hops must stay on that origin.
            let attach = token.filter(|_| {
                hop == 0
                    || (Origins::same_origin(origin_uri, &uri) && self.inner.origins.contains(&uri))
            });
            if let Some(t) = attach {
                let value = t.bearer_header().map_err(|e| ureq::Error::Http(e.into()))?;
                req.headers_mut().insert(AUTHORIZATION, value);
            }
            let resp = match (send_body, &mut *body) {
                (true, Body::Bytes(b)) => {
                    let (p, ()) = req.into_parts();
                    self.inner.agent.run(Request::from_parts(p, b.as_slice()))?
                }
                (true, Body::Stream(s)) => match s.take() {
                    Some(reader) => {
                        let (p, ()) = req.into_parts();
                        let send = ureq::SendBody::from_owned_reader(ReadSend(reader));
                        self.inner.agent.run(Request::from_parts(p, send))?
                    }
                    None => return Err(ureq::Error::Other("stream body already consumed".into())),
                },
                (false, _) => {
                    let (p, ()) = req.into_parts();
                    self.inner.agent.run(Request::from_parts(p, ()))?
                }
            };
            let status = resp.status();
            // `Location` is only read when the status says to follow it.
            let next = if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                resp.headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| resolve(&uri, l))
            } else {
                None
            };
            match next {
                Some(next) => {
                    // 303 (and 301/302 for POST, as browsers do) become GET without a body.
                    if status == StatusCode::SEE_OTHER
                        || (matches!(status.as_u16(), 301 | 302) && method == Method::POST)
                    {
                        method = Method::GET;
                        send_body = false;
                    }
                    uri = next;
                }
                None => {
                    // Keep ureq's head (status, headers, extensions) as it is.
                    let (head, mut body) = resp.into_parts();
                    let bytes = body.read_to_vec()?;
                    return Ok((Response::from_parts(head, bytes), attach.is_some()));
                }
            }
        }
        Err(ureq::Error::TooManyRedirects)
    }

    fn refresh(&self, refresh_token: &Secret) -> RefreshReply {
        match &self.inner.refresher {
            Refresher::Custom(f) => f(refresh_token),
            Refresher::None => RefreshReply::Rejected,
            Refresher::Endpoint(endpoint) => {
                let Ok(req) = endpoint.refresh_request(refresh_token) else {
                    return RefreshReply::Rejected;
                };
                // The refresh must end before the machine's deadline gives up on it.
                let req = self
                    .inner
                    .agent
                    .configure_request(req)
                    .timeout_global(Some(self.inner.session.config().refresh_timeout))
                    .build();
                match self.inner.agent.run(req) {
                    Ok(mut resp) => {
                        let status = resp.status().as_u16();
                        let headers = resp.headers().clone();
                        match resp.body_mut().read_to_vec() {
                            Ok(body) => grant::classify(status, &headers, body).0,
                            Err(_) => grant::transport_failure(),
                        }
                    }
                    Err(_) => grant::transport_failure(),
                }
            }
        }
    }
}

struct ReadSend(Box<dyn Read + Send>);

impl Read for ReadSend {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

/// Resolve a `Location` against the current URL (absolute, or absolute-path).
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if let Ok(u) = location.parse::<Uri>() {
        if u.scheme().is_some() {
            return Some(u);
        }
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let scheme = base.scheme_str()?;
        let authority = base.authority()?;
        return format!("{scheme}://{authority}{location}").parse().ok();
    }
    None
}

fn send_error_kind(e: &ureq::Error) -> SendErrorKind {
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => SendErrorKind::Connect,
        ureq::Error::Timeout(_) => SendErrorKind::Timeout,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            SendErrorKind::Connect
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => SendErrorKind::Timeout,
        _ => SendErrorKind::Io,
    }
}

fn failure_to_error(failure: Failure, last: Last) -> Error {
    let (response, transport) = match last {
        Last::Response(r) => (Some(Box::new(r)), None),
        Last::Error(e) => (None, Some(e)),
        Last::None => (None, None),
    };
    match failure {
        Failure::LoginRequired => Error::LoginRequired,
        Failure::LoggedOut => Error::LoggedOut,
        Failure::RefreshUnavailable => Error::RefreshUnavailable,
        Failure::Unauthorized => response.map_or(Error::LoginRequired, Error::Unauthorized),
        Failure::Forbidden => response.map_or_else(
            || Error::Invalid("forbidden without a response".into()),
            Error::Forbidden,
        ),
        Failure::BodyNotReplayable => Error::BodyNotReplayable(response),
        Failure::Transport(kind) => transport.map_or_else(
            || Error::Invalid(format!("transport failure {kind}")),
            Error::Transport,
        ),
        other => Error::Invalid(format!("request failed: {other}")),
    }
}
