#![doc = include_str!("../README.md")]
use std::time::Duration;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod browser;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use browser::{BrowserTimer, TokenFetchFailed};

use futures_util::future::{select, Either};
use http::{Extensions, HeaderMap, StatusCode};
use refresh_machine_driver::grant::TokenCallTimedOut;
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
use refresh_machine_driver::read_ahead;
use refresh_machine_driver::redirect::TooManyRedirects;
use refresh_machine_driver::refresh_machine::{RequestSpec, SendErrorKind};
use refresh_machine_driver::{
    redirect, Attempt, Builder, Options, ReadAhead, Sent, TokenAnswer, Transport, Waiter,
};
use reqwest::header::AUTHORIZATION;
use reqwest::{Method, Request, Response};
use reqwest_middleware::Next;

pub use refresh_machine_driver::grant::EndpointError;
pub use refresh_machine_driver::refresh_machine::coordination::{Lease, StoreUnavailable};
pub use refresh_machine_driver::refresh_machine::grant::OAuthError;
pub use refresh_machine_driver::refresh_machine::{Config, Failure};
pub use refresh_machine_driver::{
    event_listener, BoxFuture, ConfigError, Coordinator, Hooks, JsonEndpoint, MaybeSend, Origins,
    RefreshReply, Secret, Session, StoreCounters, Stored, TokenCapacity, TokenError, TokenPair,
    WithoutToken, REFUSAL_BODY_LIMIT,
};
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use refresh_machine_driver::{FileCoordinator, TokenFile};

/// Typed failures, returned inside `reqwest_middleware::Error::Middleware`
/// (owned, with [`RequestError::from`] or [`TypedResult::typed`]; borrowed,
/// with [`error_of`]): the driver's [`Error`](refresh_machine_driver::Error)
/// with the last status (`Unauthorized`, `Forbidden`, `BodyNotReplayable`).
/// A transport failure of a request is returned as reqwest's own error,
/// unwrapped; `Transport` here only comes from a password login.
pub type Error = refresh_machine_driver::Error<u16, reqwest_middleware::Error>;

/// The typed failure inside a middleware error, if it is one of ours.
pub fn error_of(e: &reqwest_middleware::Error) -> Option<&Error> {
    match e {
        reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Error>(),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

/// A request's failure, owned and sorted by who reported it: this
/// middleware's typed [`Error`], reqwest's own error, or any other
/// middleware's. Converts from `reqwest_middleware::Error` (`From`, or
/// [`TypedResult::typed`] on a result) and goes into your own error type
/// with thiserror's `#[from]`.
///
/// `Display` names the kind; `source()` is the error inside (no token is in
/// either: the driver's errors carry none).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A typed failure of this middleware: `LoginRequired`, `LoggedOut`,
    /// `RefreshUnavailable`, `Unauthorized(status)`... Match on it.
    #[error("the token middleware failed the request")]
    Refresh(#[source] Error),
    /// reqwest's own error: the request's transport failure (connection
    /// refused, timeout, a broken body), as without the middleware.
    #[error("the HTTP request failed")]
    Reqwest(#[source] reqwest::Error),
    /// Another middleware's error (or an untyped one of this crate's, such
    /// as too many redirects when it follows them): downcast it yourself.
    #[error("a middleware failed the request")]
    Middleware(#[source] anyhow::Error),
}

impl From<reqwest_middleware::Error> for RequestError {
    fn from(e: reqwest_middleware::Error) -> Self {
        match e {
            reqwest_middleware::Error::Reqwest(e) => RequestError::Reqwest(e),
            reqwest_middleware::Error::Middleware(e) => match e.downcast::<Error>() {
                Ok(ours) => RequestError::from(ours),
                Err(other) => RequestError::Middleware(other),
            },
        }
    }
}

/// A typed failure, with its transport error (a password login's) sorted
/// as [`From<reqwest_middleware::Error>`] sorts it: `?` on
/// `login_with_password` goes into the same type as a request's failure.
impl From<Error> for RequestError {
    fn from(e: Error) -> Self {
        match e {
            refresh_machine_driver::Error::Transport(e) => RequestError::from(e),
            typed => RequestError::Refresh(typed),
        }
    }
}

impl RequestError {
    /// This middleware's typed failure, if it is one.
    pub fn refresh_error(&self) -> Option<&Error> {
        match self {
            RequestError::Refresh(e) => Some(e),
            _ => None,
        }
    }
}

/// A request's result with its error as a [`RequestError`], in one call:
/// `client.get(url).send().await.typed()?` in a function whose error type
/// has `#[from] RequestError` (`?` converts once, so it cannot go from
/// `reqwest_middleware::Error` to your type through ours by itself). Also
/// on a body read's `reqwest::Result` (`response.text().await.typed()?`).
pub trait TypedResult<T>: sealed::Sealed {
    /// The same result, its error sorted into a [`RequestError`].
    fn typed(self) -> Result<T, RequestError>;
}

impl<T> TypedResult<T> for reqwest_middleware::Result<T> {
    fn typed(self) -> Result<T, RequestError> {
        self.map_err(RequestError::from)
    }
}

/// Reading a response's body (`text()`, `bytes()`, `json()`): reqwest's
/// own error, [`RequestError::Reqwest`].
impl<T> TypedResult<T> for reqwest::Result<T> {
    fn typed(self) -> Result<T, RequestError> {
        self.map_err(RequestError::Reqwest)
    }
}

impl From<reqwest::Error> for RequestError {
    fn from(e: reqwest::Error) -> Self {
        RequestError::Reqwest(e)
    }
}

mod sealed {
    /// Only `reqwest_middleware::Result` and `reqwest::Result` are a
    /// [`TypedResult`](super::TypedResult).
    pub trait Sealed {}
    impl<T> Sealed for reqwest_middleware::Result<T> {}
    impl<T> Sealed for reqwest::Result<T> {}
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
#[cfg(all(
    feature = "tokio",
    not(all(target_arch = "wasm32", target_os = "unknown"))
))]
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioTimer;

#[cfg(all(
    feature = "tokio",
    not(all(target_arch = "wasm32", target_os = "unknown"))
))]
impl Timer for TokioTimer {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The reqwest side of the driver: the runtime's timer and the client for
/// the token endpoint (API requests go through the middleware stack).
pub struct ReqwestTransport {
    timer: Box<dyn Timer>,
    /// Talks to the token endpoint (not through the middleware stack; in a
    /// browser, `fetch` itself does).
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    http: reqwest::Client,
    timeout: Option<Duration>,
    /// The most of a token-endpoint answer to read.
    token_limit: usize,
    /// Follow redirects of token-bearing requests here, hop by hop.
    follow_redirects: bool,
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
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        return Self::with_token_client(timer, reqwest::Client::builder())
            .expect("the default reqwest client builds (TLS backend available)");
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        ReqwestTransport {
            timer: Box::new(timer),
            timeout: None,
            token_limit: refresh_machine_driver::grant::MAX_TOKEN_RESPONSE,
            follow_redirects: false,
        }
    }

    /// With the runtime's timer and your settings for the token-endpoint
    /// client (proxy, TLS roots, timeouts). Its redirect policy is replaced
    /// by "follow none": a redirect from the token endpoint would re-send the
    /// refresh token, or the password, to wherever it points. (Not in a
    /// browser: there the token endpoint is called with `fetch`, redirects
    /// refused.)
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    pub fn with_token_client(
        timer: impl Timer,
        client: reqwest::ClientBuilder,
    ) -> Result<Self, reqwest::Error> {
        Ok(ReqwestTransport {
            timer: Box::new(timer),
            http: client.redirect(reqwest::redirect::Policy::none()).build()?,
            timeout: None,
            token_limit: refresh_machine_driver::grant::MAX_TOKEN_RESPONSE,
            follow_redirects: false,
        })
    }

    /// Follow the redirects of requests that carry the token here, hop by
    /// hop, as the ureq client does: the token only on hops to its own
    /// allowed origin, the caller's credentials only on the first origin,
    /// the method and body as browsers change them, at most
    /// [`MAX_REDIRECTS`](refresh_machine_driver::redirect::MAX_REDIRECTS)
    /// hops. The session then knows whether the hop that answered carried
    /// the token (a chain that leaves the origin and comes back gets it
    /// again on the way back, and a 401 from a hop without it is delivered
    /// as it is).
    ///
    /// For this the reqwest client under the middleware must follow no
    /// redirects itself: build it with `redirect(reqwest::redirect::Policy::none())`.
    /// Left to reqwest (the default), redirects drop `Authorization` when a
    /// hop changes origin and keep it dropped, and reqwest keeps no history:
    /// an answer from the token's origin is taken as carrying the token, so a
    /// chain A to B to A costs a needless refresh before its 401 is returned.
    /// A streamed body cannot be sent twice: a 307 or 308 that keeps it is
    /// delivered as it is.
    ///
    /// Not in a browser: `fetch` follows redirects itself (and drops
    /// `Authorization` when one changes origin).
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    pub fn follow_redirects(mut self) -> Self {
        self.follow_redirects = true;
        self
    }
}

impl Transport for ReqwestTransport {
    type Response = Response;
    type Error = reqwest_middleware::Error;
    type Detail = u16;
    type Client = RefreshMiddleware;

    /// On the tokio runtime of the request that starts it (reqwest's
    /// connections need its context): a blocking client sharing the session
    /// then only awaits its outcome.
    ///
    /// In a browser, on the page's (or worker's) event loop.
    fn spawn(&self, task: BoxFuture<'static, ()>) -> Result<(), BoxFuture<'static, ()>> {
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        {
            wasm_bindgen_futures::spawn_local(task);
            Ok(())
        }
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                drop(runtime.spawn(task));
                return Ok(());
            }
            Err(task)
        }
    }

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
            #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
            reqwest_middleware::Error::Reqwest(e) if e.is_connect() => SendErrorKind::Connect,
            reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => SendErrorKind::Timeout,
            _ => SendErrorKind::Io,
        }
    }

    /// Read ahead, then handed on as the same response: its body is what
    /// was read, followed by what was not.
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    async fn read_body(
        response: Response,
        limit: usize,
    ) -> Result<ReadAhead<Response>, reqwest_middleware::Error> {
        let url = response.url().clone();
        let (mut parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let (body, shown) = read_ahead(body, limit).await?;
        let body = reqwest::Body::wrap(body);
        // `Response::url` comes from an extension only the builder sets.
        let marker = <http::response::Builder as reqwest::ResponseBuilderExt>::url(
            http::Response::builder(),
            url,
        )
        .body(())
        .map_err(reqwest_middleware::Error::middleware)?;
        parts.extensions.extend(marker.into_parts().0.extensions);
        Ok(ReadAhead {
            response: Response::from(http::Response::from_parts(parts, body)),
            body: shown,
        })
    }

    /// Not in a browser: reqwest's browser response cannot be rebuilt
    /// around a body read ahead, so a refusal predicate is shown no body
    /// there (a response it would refuse by its body is delivered as it is).
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    async fn read_body(
        response: Response,
        _limit: usize,
    ) -> Result<ReadAhead<Response>, reqwest_middleware::Error> {
        Ok(ReadAhead {
            response,
            body: None,
        })
    }

    fn sleep(&self, duration: Duration) -> impl std::future::Future<Output = ()> + MaybeSend {
        self.timer.sleep(duration)
    }

    /// Until the session changes or the waiter's deadline passes.
    async fn wait(&self, waiter: Waiter) {
        let (listener, deadline) = waiter.into_parts();
        match deadline {
            None => listener.await,
            Some(d) => {
                let left = d.saturating_duration_since(web_time::Instant::now());
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
        // In a browser, `fetch` itself, redirects refused (see `browser`).
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        return match timeout {
            None => browser::token_fetch(request, self.token_limit).await,
            Some(t) => {
                self.within(t, browser::token_fetch(request, self.token_limit))
                    .await
            }
        };
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        self.reqwest_token_call(request, timeout).await
    }
}

impl ReqwestTransport {
    /// `call`'s result, or a timeout if `timeout` passes first; `call` is
    /// polled first, so a result that is ready wins over a passed deadline.
    async fn within<T>(
        &self,
        timeout: Duration,
        call: impl std::future::Future<Output = Result<T, reqwest_middleware::Error>>,
    ) -> Result<T, reqwest_middleware::Error> {
        match select(std::pin::pin!(call), self.timer.sleep(timeout)).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(reqwest_middleware::Error::middleware(TokenCallTimedOut)),
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
impl ReqwestTransport {
    /// The token call on reqwest's own client.
    async fn reqwest_token_call(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<TokenAnswer, reqwest_middleware::Error> {
        let request = reqwest::Request::try_from(request)?;
        let Some(timeout) = timeout else {
            let response = self.http.execute(request).await?;
            return self.read_token_answer(response).await;
        };
        // Raced against the timer rather than given to reqwest as a request
        // timeout, the call polled first: an answer that arrived while
        // nobody polled the refresh (every waiter dropped) wins over a
        // deadline that passed meanwhile (reqwest checks its timeout first).
        let execute = async { Ok(self.http.execute(request).await?) };
        let response = self.within(timeout, execute).await?;
        // The head is in: the body gets a budget of its own. A large answer
        // that arrived unread comes in several chunks, each one read only
        // when polled, so the first deadline may have passed meanwhile.
        self.within(timeout, self.read_token_answer(response)).await
    }

    /// Read a token-endpoint answer, at most the limit of the session's
    /// token capacity of it.
    async fn read_token_answer(
        &self,
        mut response: Response,
    ) -> Result<TokenAnswer, reqwest_middleware::Error> {
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
        if extensions.get::<WithoutToken>().is_some() {
            // Asked to go without the token: the caller's request as it is.
            return next.run(req, extensions).await;
        }
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
        let spec = RequestSpec {
            replayable,
            ..RequestSpec::from_http(req.method(), req.headers())
        };
        let mut attempt = ReqwestAttempt {
            original: Some(req),
            extensions,
            next,
            timeout: self.driver.transport().timeout,
            follow: self
                .driver
                .transport()
                .follow_redirects
                .then(|| self.driver.origins()),
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
    extensions: &'a mut Extensions,
    next: Next<'a>,
    timeout: Option<Duration>,
    /// Follow redirects here, with these origins allowed the token.
    follow: Option<&'a Origins>,
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
        let first = attempt.url().clone();
        // What the next hops start from, if redirects are followed here.
        let head = self
            .follow
            .map(|origins| (origins, attempt.method().clone(), attempt.headers().clone()));
        let response = self.next.clone().run(attempt, self.extensions).await?;
        if let Some((origins, method, headers)) = head {
            return self
                .follow(origins, (first, method, headers), response, token)
                .await;
        }
        // reqwest followed any redirects, dropping the token when a hop
        // changed origin: the final hop carried it if it is on the same origin.
        let token_sent = same_origin(&first, response.url());
        Ok(Sent {
            response,
            token_sent,
        })
    }
}

impl ReqwestAttempt<'_> {
    /// Follow the redirects of `response`, hop by hop (see
    /// [`ReqwestTransport::follow_redirects`]).
    async fn follow(
        &mut self,
        origins: &Origins,
        (first, mut method, caller_headers): (reqwest::Url, Method, HeaderMap),
        mut response: Response,
        token: &Secret,
    ) -> Result<Sent<Response>, reqwest_middleware::Error> {
        let first_uri: http::Uri = first
            .as_str()
            .parse()
            .map_err(reqwest_middleware::Error::middleware)?;
        let mut uri = first_uri.clone();
        let mut body_dropped = false;
        let mut token_sent = true;
        for hop in 1..=redirect::MAX_REDIRECTS + 1 {
            let Some(next) =
                redirect::next_hop(&uri, &method, response.status(), response.headers())
            else {
                break;
            };
            if hop > redirect::MAX_REDIRECTS {
                return Err(reqwest_middleware::Error::middleware(TooManyRedirects));
            }
            body_dropped |= !next.keep_body;
            // The body again, from the replayable original (a stream is
            // gone), unless a hop dropped it: then it stays dropped.
            let body = if !body_dropped {
                match self.original.as_ref().map(Request::try_clone) {
                    Some(Some(mut copy)) => copy.body_mut().take(),
                    _ => break,
                }
            } else {
                None
            };
            let url = reqwest::Url::parse(&next.uri.to_string())
                .map_err(reqwest_middleware::Error::middleware)?;
            let mut request = Request::new(next.method.clone(), url);
            // The caller's headers, credentials only on the first origin;
            // `Authorization` is ours on this origin, set per hop below.
            let mut headers =
                redirect::hop_headers(&caller_headers, &first_uri, &next.uri, body_dropped);
            headers.remove(AUTHORIZATION);
            token_sent = redirect::token_allowed(origins, &first_uri, hop, &next.uri);
            if token_sent {
                let value = token.bearer_header().map_err(|_| {
                    reqwest_middleware::Error::middleware(Error::Tokens(TokenError::Invalid))
                })?;
                headers.insert(AUTHORIZATION, value);
            }
            *request.headers_mut() = headers;
            *request.body_mut() = body;
            if self.timeout.is_some() {
                *request.timeout_mut() = self.timeout;
            }
            response = self.next.clone().run(request, self.extensions).await?;
            method = next.method;
            uri = next.uri;
        }
        Ok(Sent {
            response,
            token_sent,
        })
    }
}

// reqwest-middleware's own choice: its futures are `Send` except in a browser.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
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
