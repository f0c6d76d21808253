//! The layer for gRPC channels (tonic's `Channel`, or any tower service
//! that sends gRPC over HTTP/2 to one server): request bodies that cannot
//! be cloned are recorded as they go out, and `grpc-status: 16`
//! (UNAUTHENTICATED) in a response's headers is a refused token.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::uri::{Authority, PathAndQuery, Scheme};
use http_body::Body;
use refresh_machine_driver::refresh_machine::RequestSpec;
use refresh_machine_driver::{Attempt, ConfigError, Origins, Sent, WithoutToken};
use tower::Service;

use crate::replay::{Recording, ReplayBody};
use crate::{
    bearer, boxed, call_ready, inner_error, BoxError, BoxFuture, Error, InnerError, RefreshLayer,
    ResponseBody, Secret, TowerTransport,
};

/// The most of a call's request body a [`GrpcRefreshLayer`] keeps to send
/// again, by default: 4 MiB of message and its 5-byte gRPC prefix, the
/// largest message a gRPC server accepts by default (tonic's and grpc-go's
/// decoding limit), so every unary call such a server takes can be retried.
pub const DEFAULT_REPLAY_LIMIT: usize = 4 * 1024 * 1024 + 5;

/// A [`RefreshLayer`] for a gRPC channel: tonic's `Channel` (or any tower
/// service sending gRPC to one server), whose request bodies are neither
/// `Clone` nor re-readable.
///
/// - The channel's origin is given here, because a tonic client's requests
///   carry only a path (`Grpc::new(channel)`) and the channel sends them
///   to its own endpoint whatever their URI says. Every request is sent to
///   this origin (its URI's scheme and host set to it, as the channel
///   does), with the token only if the layer allows this origin.
/// - A call's body is sent as it comes, while its first
///   [`replay_limit`](Self::replay_limit) bytes are kept: a call refused
///   for its token is sent again after the refresh, its body from the
///   start. A body that outgrew the limit (a long client stream) is still
///   sent once, whole; refused, the call fails
///   [`Error::BodyNotReplayable`] (the session is refreshed all the same:
///   make the call again).
/// - HTTP 200 with `grpc-status: 16` (UNAUTHENTICATED) in the headers (the
///   "trailers-only" answer servers give to a call they refuse before any
///   message) is reported to the session as a 401: refresh once, retry
///   once. UNAUTHENTICATED in the trailers after a body is delivered as it
///   is: the layer does not wait for a stream's end before handing it over.
/// - Failures are typed [`Error`]s, which tonic turns into a `Status` with
///   code `Unknown` whose source they are: [`find_error`](crate::find_error)`(&status)`.
///
/// The layer's refusal rules apply to these 401s: the default (401)
/// refreshes; with `refresh_on_statuses`/`refresh_when` of your own, keep
/// 401 among the statuses and let the predicate accept `grpc-status: 16`
/// (in the headers it is shown; the body is empty).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use refresh_machine_tower::{token_service, GrpcRefreshLayer, RefreshLayer, TokenPair};
/// use tonic::transport::Channel;
/// use tower::ServiceBuilder;
///
/// let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let auth = RefreshLayer::builder(token_service(http))
///     .token_endpoint("http://auth.example.com/token", "my-client-id")?
///     .allow_origin("http://grpc.example.com:50051")?
///     .build();
/// auth.set_tokens(&TokenPair::new("access").with_refresh_token("refresh"))?;
///
/// let channel = Channel::from_static("http://grpc.example.com:50051").connect().await?;
/// let channel = ServiceBuilder::new()
///     .layer(GrpcRefreshLayer::new(auth, "http://grpc.example.com:50051", tonic::body::Body::new)?)
///     .service(channel);
/// // Any tonic client over it: a generated `FooClient::new(channel)`, or
/// let mut grpc = tonic::client::Grpc::new(channel);
/// # let _ = &mut grpc;
/// # Ok(())
/// # }
/// ```
pub struct GrpcRefreshLayer<B> {
    auth: RefreshLayer,
    scheme: Scheme,
    authority: Authority,
    replay_limit: usize,
    make_body: fn(ReplayBody) -> B,
}

impl<B> GrpcRefreshLayer<B> {
    /// The layer for a channel to `origin` (the URI the channel was built
    /// with; its path is ignored), sharing `auth`'s session and rules.
    /// `make_body` makes the inner service's body from an attempt's:
    /// `tonic::body::Body::new` for a tonic channel.
    pub fn new(
        auth: RefreshLayer,
        origin: &str,
        make_body: fn(ReplayBody) -> B,
    ) -> Result<Self, ConfigError> {
        // Checked as an allowed origin is: http(s), a host.
        Origins::new().allow(origin)?;
        let uri: http::Uri = origin.parse().expect("checked above");
        let (Some(scheme), Some(host)) = (uri.scheme(), uri.host()) else {
            unreachable!("an allowed origin has a scheme and a host");
        };
        // Scheme, host and port: no user information.
        let authority = match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let (scheme, authority) = (
            scheme.clone(),
            Authority::try_from(authority).expect("the host and port of a URI"),
        );
        Ok(GrpcRefreshLayer {
            auth,
            scheme,
            authority,
            replay_limit: DEFAULT_REPLAY_LIMIT,
            make_body,
        })
    }

    /// Keep at most `bytes` of a call's request body to send it again
    /// ([`DEFAULT_REPLAY_LIMIT`] by default); 0 retries only calls with an
    /// empty body. The memory is held until the call's response arrives.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.replay_limit = bytes;
        self
    }

    /// The request's URI, on this layer's origin.
    fn pin(&self, uri: http::Uri) -> http::Uri {
        let mut parts = uri.into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        http::Uri::from_parts(parts).expect("scheme, authority and path make a URI")
    }
}

impl<B> Clone for GrpcRefreshLayer<B> {
    fn clone(&self) -> Self {
        GrpcRefreshLayer {
            auth: self.auth.clone(),
            scheme: self.scheme.clone(),
            authority: self.authority.clone(),
            replay_limit: self.replay_limit,
            make_body: self.make_body,
        }
    }
}

impl<B> std::fmt::Debug for GrpcRefreshLayer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcRefreshLayer")
            .field("auth", &self.auth)
            .field(
                "origin",
                &format_args!("{}://{}", self.scheme, self.authority),
            )
            .field("replay_limit", &self.replay_limit)
            .finish_non_exhaustive()
    }
}

impl<S, B> tower_layer::Layer<S> for GrpcRefreshLayer<B> {
    type Service = GrpcRefreshService<S, B>;

    fn layer(&self, inner: S) -> GrpcRefreshService<S, B> {
        GrpcRefreshService {
            inner,
            layer: self.clone(),
        }
    }
}

/// A gRPC channel whose calls carry the session's access token, refreshed
/// once for every call that meets an expired or refused one, and sent
/// again. Built by [`GrpcRefreshLayer`]; `B` is the channel's request body
/// (`tonic::body::Body`). Responses come back with their body boxed
/// ([`ResponseBody`]); errors are boxed ([`BoxError`]): the channel's own,
/// or a typed [`Error`].
pub struct GrpcRefreshService<S, B> {
    inner: S,
    layer: GrpcRefreshLayer<B>,
}

impl<S: Clone, B> Clone for GrpcRefreshService<S, B> {
    fn clone(&self) -> Self {
        GrpcRefreshService {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: std::fmt::Debug, B> std::fmt::Debug for GrpcRefreshService<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcRefreshService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for GrpcRefreshService<S, B>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
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

/// Set on a response whose headers say `grpc-status: 16`: the session is
/// shown it as a 401 ([`Transport::head`](refresh_machine_driver::Transport::head)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GrpcRefusal;

/// HTTP 200 with `grpc-status: 16` (UNAUTHENTICATED) in the headers.
fn is_unauthenticated<T>(response: &http::Response<T>) -> bool {
    response.status() == http::StatusCode::OK
        && response
            .headers()
            .get("grpc-status")
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"16")
}

impl<B> GrpcRefreshLayer<B> {
    async fn drive<S, ResBody>(
        &self,
        mut inner: S,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, BoxError>
    where
        S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let (mut head, body) = request.into_parts();
        head.uri = self.pin(head.uri);
        let driver = &self.auth.driver;
        let without = head.extensions.get::<WithoutToken>().is_some();
        let Some(allowed) = driver.origins().allows(&head.uri).filter(|_| !without) else {
            // Not ours, or asked to go without: no token, no session.
            if !without {
                head.headers.remove(AUTHORIZATION);
            }
            let request = http::Request::from_parts(head, body);
            let response = inner.call(request).await.map_err(Into::into)?;
            return Ok(response.map(boxed));
        };
        let spec = RequestSpec::from_http(&head.method, &head.headers);
        let recording = Recording::new(body, self.replay_limit);
        let first = recording.reader();
        let mut attempt = GrpcAttempt {
            inner,
            ready: true,
            head,
            recording,
            first,
            make_body: self.make_body,
            refused: None,
        };
        match driver.drive(allowed, spec, &mut attempt).await {
            Ok(mut response) => {
                response.extensions_mut().remove::<GrpcRefusal>();
                Ok(response)
            }
            // A transport failure is the inner service's own error (or
            // BodyNotReplayable, from a send that could not be made).
            Err(refresh_machine_driver::Error::Transport(e)) => Err(e.0),
            Err(typed) => Err(Box::new(typed)),
        }
    }
}

/// One call, sent through the inner service as many times as the session
/// decides, its body from the recording.
struct GrpcAttempt<S, B> {
    inner: S,
    /// Whether `inner` is ready for a call (see `call_ready`).
    ready: bool,
    /// The caller's request head, its URI on the layer's origin.
    head: http::request::Parts,
    recording: Recording,
    /// The first attempt's body.
    first: Option<ReplayBody>,
    make_body: fn(ReplayBody) -> B,
    /// The status of the last response refused by its `grpc-status`.
    refused: Option<u16>,
}

impl<S, B> Drop for GrpcAttempt<S, B> {
    /// The call has its outcome: keep no more of its body.
    fn drop(&mut self) {
        self.recording.finish();
    }
}

impl<S, B, ResBody> Attempt<TowerTransport> for GrpcAttempt<S, B>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    async fn send(
        &mut self,
        token: &Secret,
    ) -> Result<Sent<http::Response<ResponseBody>>, InnerError> {
        let Some(body) = self.first.take().or_else(|| self.recording.reader()) else {
            // Sent once already, longer than what is kept: nothing is
            // sent this time. Reported as a transport failure that may
            // have reached the server, which fails a call (a POST) with
            // this error at once; one with an `Idempotency-Key` is given
            // its transient retries first, each failing the same way.
            return Err(inner_error(Error::BodyNotReplayable(self.refused)));
        };
        let mut request = http::Request::new((self.make_body)(body));
        *request.method_mut() = self.head.method.clone();
        *request.uri_mut() = self.head.uri.clone();
        *request.version_mut() = self.head.version;
        *request.headers_mut() = self.head.headers.clone();
        *request.extensions_mut() = self.head.extensions.clone();
        request.headers_mut().insert(AUTHORIZATION, bearer(token)?);
        let mut response = call_ready(&mut self.inner, &mut self.ready, request).await?;
        if is_unauthenticated(&response) {
            self.refused = Some(response.status().as_u16());
            response.extensions_mut().insert(GrpcRefusal);
        }
        Ok(Sent {
            response,
            token_sent: true,
        })
    }
}
