#![doc = include_str!("../README.md")]
use std::time::Duration;

use futures_util::future::{select, Either};
use http::{Extensions, HeaderMap, StatusCode};
use refresh_machine_driver::refresh_machine::{www_authenticate, RequestSpec, SendErrorKind};
use refresh_machine_driver::{Attempt, Builder, Options, Sent, TokenAnswer, Transport, Waiter};
use reqwest::header::AUTHORIZATION;
use reqwest::{Request, Response};
use reqwest_middleware::Next;

pub use refresh_machine_driver::grant::EndpointError;
pub use refresh_machine_driver::refresh_machine::grant::OAuthError;
pub use refresh_machine_driver::refresh_machine::Config;
pub use refresh_machine_driver::{
    BoxFuture, ConfigError, Hooks, Origins, RefreshReply, Secret, Session, TokenCapacity,
    TokenError, TokenPair,
};

/// Typed failures, returned inside `reqwest_middleware::Error::Middleware`
/// (get them back with [`error_of`]): the driver's
/// [`Error`](refresh_machine_driver::Error) with the last status
/// (`Unauthorized`, `Forbidden`, `BodyNotReplayable`). A transport failure of
/// a request is returned as reqwest's own error, unwrapped; `Transport` here
/// only comes from a password login.
pub type Error = refresh_machine_driver::Error<u16, reqwest_middleware::Error>;

/// The typed failure inside a middleware error, if it is one of ours.
pub fn error_of(e: &reqwest_middleware::Error) -> Option<&Error> {
    match e {
        reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Error>(),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

/// Builds a [`RefreshMiddleware`]: token endpoint or refresher, allowed
/// origins, limits, hooks.
pub type MiddlewareBuilder = Builder<ReqwestTransport>;

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

/// The reqwest side of the driver: the runtime's timer and the client for
/// the token endpoint (API requests go through the middleware stack).
pub struct ReqwestTransport {
    timer: Box<dyn Timer>,
    /// Talks to the token endpoint (not through the middleware stack).
    http: reqwest::Client,
    timeout: Option<Duration>,
    /// The most of a token-endpoint answer to read.
    token_limit: usize,
}

impl std::fmt::Debug for ReqwestTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReqwestTransport")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ReqwestTransport {
    /// With the runtime's timer, and a default client for the token endpoint
    /// that follows no redirects.
    ///
    /// # Panics
    ///
    /// As `reqwest::Client::new` does, if the TLS backend cannot be initialised.
    pub fn new(timer: impl Timer) -> Self {
        Self::with_token_client(timer, reqwest::Client::builder())
            .expect("the default reqwest client builds (TLS backend available)")
    }

    /// With the runtime's timer and your settings for the token-endpoint
    /// client (proxy, TLS roots, timeouts). Its redirect policy is replaced
    /// by "follow none": a redirect from the token endpoint would re-send the
    /// refresh token, or the password, to wherever it points.
    pub fn with_token_client(
        timer: impl Timer,
        client: reqwest::ClientBuilder,
    ) -> Result<Self, reqwest::Error> {
        Ok(ReqwestTransport {
            timer: Box::new(timer),
            http: client.redirect(reqwest::redirect::Policy::none()).build()?,
            timeout: None,
            token_limit: refresh_machine_driver::grant::MAX_TOKEN_RESPONSE,
        })
    }
}

impl Transport for ReqwestTransport {
    type Response = Response;
    type Error = reqwest_middleware::Error;
    type Detail = u16;
    type Client = RefreshMiddleware;

    fn configure(&mut self, options: &Options) {
        self.timeout = options.timeout;
        self.token_limit = options.token_response_limit;
    }

    fn head(response: &Response) -> (StatusCode, &HeaderMap) {
        (response.status(), response.headers())
    }

    fn detail(response: Response) -> u16 {
        response.status().as_u16()
    }

    fn error_kind(e: &reqwest_middleware::Error) -> SendErrorKind {
        match e {
            reqwest_middleware::Error::Reqwest(e) if e.is_connect() => SendErrorKind::Connect,
            reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => SendErrorKind::Timeout,
            _ => SendErrorKind::Io,
        }
    }

    /// Until the session changes or the waiter's deadline passes.
    async fn wait(&self, waiter: Waiter) {
        let (listener, deadline) = waiter.into_parts();
        match deadline {
            None => listener.await,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                let sleep = self.timer.sleep(left);
                match select(listener, sleep).await {
                    Either::Left(_) | Either::Right(_) => {}
                }
            }
        }
    }

    async fn token_call(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<TokenAnswer, reqwest_middleware::Error> {
        let call = std::pin::pin!(self.read_token_answer(request));
        let Some(timeout) = timeout else {
            return call.await;
        };
        // Raced against the timer rather than given to reqwest as a request
        // timeout: the call is polled first, so an answer that arrived while
        // nobody polled the refresh (every waiter dropped) still wins over a
        // deadline that passed meanwhile. reqwest checks its timeout first.
        match select(call, self.timer.sleep(timeout)).await {
            Either::Left((answer, _)) => answer,
            Either::Right(_) => Err(reqwest_middleware::Error::middleware(TokenCallTimedOut)),
        }
    }
}

impl ReqwestTransport {
    /// Send a token request and read its answer, at most
    /// the limit of the session's token capacity.
    async fn read_token_answer(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<TokenAnswer, reqwest_middleware::Error> {
        let request = reqwest::Request::try_from(request)?;
        let mut response = self.http.execute(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // Read at most the limit: a token response is small, and a server
        // that sends more must not take the client's memory with it.
        let limit = self.token_limit;
        let mut body = Vec::new();
        let mut body_too_large = false;
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > limit {
                body_too_large = true;
                zeroize::Zeroize::zeroize(&mut body);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(TokenAnswer {
            status,
            headers,
            body,
            body_too_large,
        })
    }
}

/// The token endpoint did not answer before the refresh's deadline.
#[derive(Debug)]
struct TokenCallTimedOut;

impl std::fmt::Display for TokenCallTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the token endpoint did not answer in time")
    }
}

impl std::error::Error for TokenCallTimedOut {}

refresh_machine_driver::client_handle! {
    /// The middleware. Cheap to clone; clones share one session. It derefs
    /// to the shared [`Driver`](refresh_machine_driver::Driver): `session()`, `set_tokens()`,
    /// `login_with_password()` (async), `logout()`.
    pub struct RefreshMiddleware(ReqwestTransport);
}

impl RefreshMiddleware {
    /// Start building, with the runtime's timer.
    pub fn builder(timer: impl Timer) -> MiddlewareBuilder {
        Builder::new(ReqwestTransport::new(timer))
    }

    /// Start building on a transport you configured (e.g. its token-endpoint client).
    pub fn builder_with(transport: ReqwestTransport) -> MiddlewareBuilder {
        Builder::new(transport)
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

    async fn drive(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let url = req.url();
        let allowed = match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => {
                self.driver.origins().allows_parts(url.scheme(), host, port)
            }
            _ => None,
        };
        let Some(allowed) = allowed else {
            // Not ours: no token, no session.
            req.headers_mut().remove(AUTHORIZATION);
            return next.run(req, extensions).await;
        };
        // Same answer as `try_clone().is_some()`, without the clone.
        let replayable = req.body().is_none_or(|b| b.as_bytes().is_some());
        // A replayable request stays in `original` (clones are sent), so its URL
        // is at hand; a streamed one is sent itself, so keep its URL aside.
        let streamed_url = (!replayable).then(|| url.clone());
        let spec = RequestSpec {
            replayable,
            ..RequestSpec::from_http(req.method(), req.headers())
        };
        let mut attempt = ReqwestAttempt {
            original: Some(req),
            streamed_url,
            extensions,
            next,
            timeout: self.driver.transport().timeout,
        };
        match self.driver.drive(allowed, spec, &mut attempt).await {
            Ok(response) => Ok(response),
            // A transport failure is reqwest's own error, as without the middleware.
            Err(refresh_machine_driver::Error::Transport(e)) => Err(e),
            Err(typed) => Err(reqwest_middleware::Error::middleware(typed)),
        }
    }
}

/// One request sent through the rest of the middleware stack.
struct ReqwestAttempt<'a> {
    original: Option<Request>,
    streamed_url: Option<reqwest::Url>,
    extensions: &'a mut Extensions,
    next: Next<'a>,
    timeout: Option<Duration>,
}

impl Attempt<ReqwestTransport> for ReqwestAttempt<'_> {
    async fn send(&mut self, token: &Secret) -> Result<Sent<Response>, reqwest_middleware::Error> {
        let template = self.original.as_ref().and_then(Request::try_clone);
        let Some(mut attempt) = template.or_else(|| self.original.take()) else {
            // A stream already sent once; the session only gets here if the
            // spec said replayable, so this is a bug in reqwest's try_clone.
            return Err(reqwest_middleware::Error::middleware(
                Error::BodyNotReplayable(None),
            ));
        };
        let value = token.bearer_header().map_err(|_| {
            reqwest_middleware::Error::middleware(Error::Tokens(TokenError::Invalid))
        })?;
        attempt.headers_mut().insert(AUTHORIZATION, value);
        if self.timeout.is_some() {
            *attempt.timeout_mut() = self.timeout;
        }
        let response = self.next.clone().run(attempt, self.extensions).await?;
        let request_url = self.original.as_ref().map(Request::url);
        let token_sent = request_url
            .or(self.streamed_url.as_ref())
            .is_some_and(|u| last_hop_carried_token(u, &response));
        Ok(Sent {
            response,
            token_sent,
        })
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
/// Whether the hop that answered carried the token of a request sent to
/// `sent`. reqwest follows redirects and drops `Authorization` when a hop
/// changes origin, for that hop and every later one, and keeps no history:
/// - an answer from another origin did not carry it;
/// - an answer from the request's own URL did (no redirect);
/// - an answer from another URL on the same origin came through redirects
///   that may have left the origin and come back (A to B to A, the token
///   dropped at B). Its 401 is read as the server states it: a Bearer
///   challenge with no error code is the answer to a request without
///   credentials (RFC 6750 section 3.1), so the token did not arrive; any
///   other 401 is taken as a refusal of the token.
fn last_hop_carried_token(sent: &reqwest::Url, response: &Response) -> bool {
    let answered = response.url();
    if !same_origin(sent, answered) {
        return false;
    }
    if sent == answered || response.status() != StatusCode::UNAUTHORIZED {
        return true;
    }
    !response
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| www_authenticate::parse_bearer_challenge(v.as_bytes()).ok())
        .any(|c| c.error.is_none())
}

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}
