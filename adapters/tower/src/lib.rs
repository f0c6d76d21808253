#![doc = include_str!("../README.md")]

use std::future::Future;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{select, Either};
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use refresh_machine_driver::grant::TokenCallTimedOut;
use refresh_machine_driver::redirect::TooManyRedirects;
use refresh_machine_driver::refresh_machine::{RequestSpec, SendErrorKind};
use refresh_machine_driver::{
    read_ahead, redirect, Attempt, Builder, Options, ReadAhead, Sent, TokenAnswer, Transport,
    Waiter,
};
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

mod grpc;
mod replay;

pub use grpc::{GrpcRefreshLayer, GrpcRefreshService, DEFAULT_REPLAY_LIMIT};
pub use replay::ReplayBody;

pub use refresh_machine_driver::grant::EndpointError;
pub use refresh_machine_driver::refresh_machine::coordination::{Lease, StoreUnavailable};
pub use refresh_machine_driver::refresh_machine::grant::OAuthError;
pub use refresh_machine_driver::refresh_machine::{Config, Failure};
pub use refresh_machine_driver::{
    event_listener, BoxFuture, ConfigError, Coordinator, FileCoordinator, Hooks, JsonEndpoint,
    Origins, RefreshReply, Secret, Session, StoreCounters, Stored, TokenCapacity, TokenError,
    TokenFile, TokenPair, WithoutToken,
};

/// The error of a service, boxed (as tower's own combinators box them).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the layer returns: the inner service's
/// body, boxed (the layer may have read its start, to judge a refusal).
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// The service that calls the token endpoint (and the revocation or logout
/// route): any tower HTTP client, boxed.
pub type TokenService =
    BoxCloneService<http::Request<Full<Bytes>>, http::Response<ResponseBody>, BoxError>;

/// Typed failures, returned boxed as the service's error (downcast with
/// [`error_of`]): the driver's [`Error`](refresh_machine_driver::Error)
/// with the last status (`Unauthorized`, `Forbidden`). A transport failure
/// of a request is the inner service's own error, unwrapped; `Transport`
/// here only comes from a login or a revocation.
pub type Error = refresh_machine_driver::Error<u16, InnerError>;

/// An error of the inner service (or of the token service).
#[derive(Debug)]
pub struct InnerError(pub BoxError);

impl InnerError {
    /// The error as the service returned it.
    pub fn into_inner(self) -> BoxError {
        self.0
    }
}

impl std::fmt::Display for InnerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InnerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

fn inner_error(e: impl Into<BoxError>) -> InnerError {
    InnerError(e.into())
}

/// The typed failure inside a service error, if it is one of ours.
pub fn error_of(e: &BoxError) -> Option<&Error> {
    e.downcast_ref::<Error>()
}

/// The typed failure in `e` or its sources, if there is one: for errors
/// that wrap ours, such as the `tonic::Status` a tonic client makes of a
/// failed call (`find_error(&status)`; its code is `Unknown`).
pub fn find_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut source = Some(e);
    while let Some(e) = source {
        if let Some(typed) = e.downcast_ref::<Error>() {
            return Some(typed);
        }
        source = e.source();
    }
    None
}

/// Builds a [`RefreshLayer`]: token endpoint or refresher, allowed
/// origins, limits, hooks.
pub type LayerBuilder = Builder<TowerTransport>;

/// Box `service` (any tower HTTP client taking `Full<Bytes>` bodies: the
/// hyper-util client, a tower stack around it) as the [`TokenService`].
pub fn token_service<S, B>(service: S) -> TokenService
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneService::new(
        service
            .map_response(|r: http::Response<B>| r.map(boxed))
            .map_err(Into::into),
    )
}

/// A response body, boxed with its error.
fn boxed<B>(body: B) -> ResponseBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// The tower side of the driver: tokio's timer and the service that calls
/// the token endpoint (API requests go through the layered service).
pub struct TowerTransport {
    /// Cloned per call (a boxed service is `Send`, not `Sync`).
    token: Mutex<TokenService>,
    timeout: Option<Duration>,
    /// The most of a token-endpoint answer to read.
    token_limit: usize,
    /// Follow redirects of token-bearing requests here, hop by hop.
    follow_redirects: bool,
}

impl std::fmt::Debug for TowerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TowerTransport")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TowerTransport {
    /// Calling the token endpoint through `token` (see [`token_service`]).
    /// It must follow no redirects: one from the token endpoint would
    /// re-send the refresh token, or the password, wherever it points (the
    /// hyper-util client follows none).
    pub fn new(token: TokenService) -> Self {
        TowerTransport {
            token: Mutex::new(token),
            timeout: None,
            token_limit: refresh_machine_driver::grant::MAX_TOKEN_RESPONSE,
            follow_redirects: false,
        }
    }

    /// Follow the redirects of requests that carry the token, hop by hop,
    /// as the ureq client does: the token only on hops to its own allowed
    /// origin, the caller's credentials only on the first origin, the
    /// method and body as browsers change them (a body dropped is the
    /// body type's `Default`), at most
    /// [`MAX_REDIRECTS`](refresh_machine_driver::redirect::MAX_REDIRECTS)
    /// hops. The session then knows whether the hop that answered carried
    /// the token. Without it (the default) a redirect is delivered as it
    /// is, as the hyper-util client does; put no redirect-following layer
    /// under this one (it would carry the token wherever it points).
    pub fn follow_redirects(mut self) -> Self {
        self.follow_redirects = true;
        self
    }

    fn token_service(&self) -> TokenService {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `call`'s result, or a timeout if `timeout` passes first; `call` is
    /// polled first, so a result that is ready wins over a passed deadline.
    async fn within<T>(
        timeout: Duration,
        call: impl Future<Output = Result<T, InnerError>>,
    ) -> Result<T, InnerError> {
        match select(std::pin::pin!(call), Box::pin(tokio::time::sleep(timeout))).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(inner_error(TokenCallTimedOut)),
        }
    }

    /// A token-endpoint answer, at most the limit of it read.
    async fn read_token_answer(
        &self,
        response: http::Response<ResponseBody>,
    ) -> Result<TokenAnswer, InnerError> {
        let (parts, mut body) = response.into_parts();
        let mut read = Vec::new();
        let mut body_too_large = false;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(InnerError)?.into_data() else {
                continue;
            };
            if read.len() + data.len() > self.token_limit {
                body_too_large = true;
                zeroize::Zeroize::zeroize(&mut read);
                break;
            }
            read.extend_from_slice(&data);
        }
        Ok(TokenAnswer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: read,
            body_too_large,
        })
    }
}

/// How a service error counts for the retry rules: a refused or failed
/// connection (an `io::Error` of that kind anywhere in its sources) never
/// reached the server; a timeout may have; anything else may have too.
fn error_kind_of(error: &(dyn std::error::Error + 'static)) -> SendErrorKind {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return match io.kind() {
                ConnectionRefused | AddrNotAvailable | NotFound => SendErrorKind::Connect,
                TimedOut => SendErrorKind::Timeout,
                _ => SendErrorKind::Io,
            };
        }
        source = e.source();
    }
    SendErrorKind::Io
}

impl Transport for TowerTransport {
    type Response = http::Response<ResponseBody>;
    type Error = InnerError;
    type Detail = u16;
    type Client = RefreshLayer;

    fn configure(&mut self, options: &Options) {
        self.timeout = options.timeout;
        self.token_limit = options.token_response_limit;
    }

    /// Status and headers; a gRPC refusal (HTTP 200 with `grpc-status:
    /// 16`, marked by [`GrpcRefreshService`]) is a 401.
    fn head(response: &Self::Response) -> (StatusCode, &HeaderMap) {
        let status = match response.extensions().get::<grpc::GrpcRefusal>() {
            Some(_) => StatusCode::UNAUTHORIZED,
            None => response.status(),
        };
        (status, response.headers())
    }

    fn detail(response: Self::Response) -> u16 {
        response.status().as_u16()
    }

    fn error_kind(error: &InnerError) -> SendErrorKind {
        error_kind_of(error.0.as_ref())
    }

    /// Read ahead, then handed on as the same response: its body is what
    /// was read, followed by what was not.
    async fn read_body(
        response: Self::Response,
        limit: usize,
    ) -> Result<ReadAhead<Self::Response>, InnerError> {
        let (parts, body) = response.into_parts();
        let (body, shown) = read_ahead(body, limit).await.map_err(InnerError)?;
        Ok(ReadAhead {
            response: http::Response::from_parts(parts, body.boxed_unsync()),
            body: shown,
        })
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }

    /// Until the session changes or the waiter's deadline passes.
    async fn wait(&self, waiter: Waiter) {
        let (listener, deadline) = waiter.into_parts();
        match deadline {
            None => listener.await,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                let sleep = Box::pin(tokio::time::sleep(left));
                match select(listener, sleep).await {
                    Either::Left(_) | Either::Right(_) => {}
                }
            }
        }
    }

    /// On the tokio runtime of the request that starts it: a blocking
    /// client sharing the session only awaits its outcome.
    fn spawn(&self, task: BoxFuture<'static, ()>) -> Result<(), BoxFuture<'static, ()>> {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                drop(runtime.spawn(task));
                Ok(())
            }
            Err(_) => Err(task),
        }
    }

    async fn token_call(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<TokenAnswer, InnerError> {
        let request = request.map(|body| Full::new(Bytes::from(body)));
        let service = self.token_service();
        let call = async move { service.oneshot(request).await.map_err(InnerError) };
        let Some(timeout) = timeout else {
            let response = call.await?;
            return self.read_token_answer(response).await;
        };
        // The head is in: the body gets a budget of its own (a large
        // answer that arrived unread comes in several chunks).
        let response = Self::within(timeout, call).await?;
        Self::within(timeout, self.read_token_answer(response)).await
    }
}

refresh_machine_driver::client_handle! {
    /// The layer. Cheap to clone; clones, and every service it wraps, share
    /// one session. It derefs to the shared
    /// [`Driver`](refresh_machine_driver::Driver): `session()`,
    /// `set_tokens()`, `login_with_password()` (async), `logout()`.
    pub struct RefreshLayer(TowerTransport);
}

impl RefreshLayer {
    /// Start building, calling the token endpoint through `token` (see
    /// [`token_service`]).
    pub fn builder(token: TokenService) -> LayerBuilder {
        Builder::new(TowerTransport::new(token))
    }

    /// Start building on a transport you configured (to follow redirects).
    pub fn builder_with(transport: TowerTransport) -> LayerBuilder {
        Builder::new(transport)
    }
}

impl<S> tower_layer::Layer<S> for RefreshLayer {
    type Service = RefreshService<S>;

    fn layer(&self, inner: S) -> RefreshService<S> {
        RefreshService {
            inner,
            layer: self.clone(),
        }
    }
}

/// A service that sends each request with the session's access token (on
/// the origins allowed it), refreshes once for every request that meets
/// an expired or refused token, and retries them. Built by [`RefreshLayer`].
///
/// Request bodies must be `Clone` (`Full<Bytes>`, `String`...): a request
/// refused for its token is sent again (and `Default`: the body of a
/// redirect that drops it, when the layer follows redirects). For bodies
/// that are not (tonic's gRPC channels), see [`GrpcRefreshLayer`].
/// Responses come back with their body boxed ([`ResponseBody`]); errors
/// are boxed ([`BoxError`]): the inner service's own, or a typed [`Error`]
/// ([`error_of`]).
#[derive(Clone, Debug)]
pub struct RefreshService<S> {
    inner: S,
    layer: RefreshLayer,
}

impl<S, B, ResBody> Service<http::Request<B>> for RefreshService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Clone + Default + Send + Sync + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<ResponseBody>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was driven to readiness goes with this call.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let layer = self.layer.clone();
        Box::pin(async move { layer.drive(inner, request).await })
    }
}

impl RefreshLayer {
    async fn drive<S, B, ResBody>(
        &self,
        mut inner: S,
        mut request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, BoxError>
    where
        S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Clone + Default + Send + Sync + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        // Scheme and host in any case, the port the scheme's default if none.
        let allowed = self.driver.origins().allows(request.uri());
        let without = request.extensions().get::<WithoutToken>().is_some();
        let Some(allowed) = allowed.filter(|_| !without) else {
            // Not ours, or asked to go without: no token, no session.
            if !without {
                request.headers_mut().remove(AUTHORIZATION);
            }
            let response = inner.call(request).await.map_err(Into::into)?;
            return Ok(response.map(boxed));
        };
        let spec = RequestSpec::from_http(request.method(), request.headers());
        let mut attempt = TowerAttempt {
            inner,
            ready: true,
            original: request,
            follow: self
                .driver
                .transport()
                .follow_redirects
                .then(|| self.driver.origins()),
        };
        match self.driver.drive(allowed, spec, &mut attempt).await {
            Ok(response) => Ok(response),
            // A transport failure is the inner service's own error.
            Err(refresh_machine_driver::Error::Transport(e)) => Err(e.0),
            Err(typed) => Err(Box::new(typed)),
        }
    }
}

/// One request, sent through the inner service as many times as the
/// session decides.
struct TowerAttempt<'a, S, B> {
    /// The inner service, called for every send.
    inner: S,
    /// Whether it is ready for a call: the caller's `poll_ready` made it
    /// so for the first; it is made ready again before each later one.
    ready: bool,
    original: http::Request<B>,
    /// Follow redirects here, with these origins allowed the token.
    follow: Option<&'a Origins>,
}

/// `request` through `inner`, made ready first unless `ready` says the
/// caller's `poll_ready` just did (the first send of a request).
async fn call_ready<S, B, ResBody>(
    inner: &mut S,
    ready: &mut bool,
    request: http::Request<B>,
) -> Result<http::Response<ResponseBody>, InnerError>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    if !std::mem::replace(ready, false) {
        ServiceExt::ready(&mut *inner).await.map_err(inner_error)?;
    }
    let response = inner.call(request).await.map_err(inner_error)?;
    Ok(response.map(boxed))
}

impl<S, B> TowerAttempt<'_, S, B> {
    /// `request` through the inner service (see [`call_ready`]).
    async fn call<ResBody>(
        &mut self,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, InnerError>
    where
        S: Service<http::Request<B>, Response = http::Response<ResBody>>,
        S::Error: Into<BoxError>,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        call_ready(&mut self.inner, &mut self.ready, request).await
    }

    /// A copy of the caller's request, with `body`.
    fn copy(&self, body: B) -> http::Request<B> {
        let mut request = http::Request::new(body);
        *request.method_mut() = self.original.method().clone();
        *request.uri_mut() = self.original.uri().clone();
        *request.version_mut() = self.original.version();
        *request.headers_mut() = self.original.headers().clone();
        *request.extensions_mut() = self.original.extensions().clone();
        request
    }
}

impl<S, B, ResBody> Attempt<TowerTransport> for TowerAttempt<'_, S, B>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Clone + Default + Send + Sync + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    async fn send(
        &mut self,
        token: &Secret,
    ) -> Result<Sent<http::Response<ResponseBody>>, InnerError> {
        let mut request = self.copy(self.original.body().clone());
        request.headers_mut().insert(AUTHORIZATION, bearer(token)?);
        let mut response = self.call(request).await?;
        let Some(origins) = self.follow else {
            return Ok(Sent {
                response,
                token_sent: true,
            });
        };
        // Hop by hop: the token only where it is allowed.
        let first = self.original.uri().clone();
        let (mut uri, mut method) = (first.clone(), self.original.method().clone());
        let (mut body_dropped, mut token_sent) = (false, true);
        for hop in 1..=redirect::MAX_REDIRECTS + 1 {
            let Some(next) =
                redirect::next_hop(&uri, &method, response.status(), response.headers())
            else {
                break;
            };
            if hop > redirect::MAX_REDIRECTS {
                return Err(inner_error(TooManyRedirects));
            }
            body_dropped |= !next.keep_body;
            // Once a hop dropped the body, a later one keeping the body
            // keeps none.
            let body = if !body_dropped {
                self.original.body().clone()
            } else {
                B::default()
            };
            let mut request = self.copy(body);
            // The caller's headers, credentials only on the first origin;
            // `Authorization` is ours on this origin, set per hop.
            let mut headers =
                redirect::hop_headers(self.original.headers(), &first, &next.uri, body_dropped);
            headers.remove(AUTHORIZATION);
            token_sent = redirect::token_allowed(origins, &first, hop, &next.uri);
            if token_sent {
                headers.insert(AUTHORIZATION, bearer(token)?);
            }
            *request.headers_mut() = headers;
            *request.method_mut() = next.method.clone();
            *request.uri_mut() = next.uri.clone();
            response = self.call(request).await?;
            method = next.method;
            uri = next.uri;
        }
        Ok(Sent {
            response,
            token_sent,
        })
    }
}

/// `Authorization: Bearer <token>`, marked sensitive.
fn bearer(token: &Secret) -> Result<http::HeaderValue, InnerError> {
    token
        .bearer_header()
        .map_err(|_| inner_error(Error::Tokens(TokenError::Invalid)))
}
