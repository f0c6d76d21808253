#![doc = include_str!("../README.md")]
use std::io::Read;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use refresh_machine_driver::refresh_machine::{RequestSpec, SendErrorKind};
use refresh_machine_driver::{
    block_on, redirect, Attempt, Builder, Options, ReadAhead, Sent, TokenAnswer, Transport, Waiter,
};

pub use refresh_machine_driver::grant::EndpointError;
pub use refresh_machine_driver::refresh_machine::coordination::{Lease, StoreUnavailable};
pub use refresh_machine_driver::refresh_machine::grant::OAuthError;
pub use refresh_machine_driver::refresh_machine::{Config, Failure};
pub use refresh_machine_driver::{
    event_listener, BoxFuture, ConfigError, Coordinator, FileCoordinator, Hooks, JsonEndpoint,
    Origins, RefreshReply, Secret, Session, StoreCounters, Stored, TokenCapacity, TokenError,
    TokenFile, TokenPair, WithoutToken,
};

/// Timeout of each attempt when the builder sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a request can end with, other than a delivered response: the
/// driver's [`Error`](refresh_machine_driver::Error) with the whole last
/// response (`Unauthorized`, `Forbidden`, `BodyNotReplayable`) and ureq's
/// transport error.
pub type Error = refresh_machine_driver::Error<Box<Response<Vec<u8>>>, ureq::Error>;

/// Builds a [`Client`]: token endpoint or refresher, allowed origins, limits, hooks.
pub type ClientBuilder = Builder<UreqTransport>;

/// The ureq side of the driver: the agent used for every call.
#[derive(Debug)]
pub struct UreqTransport {
    agent: ureq::Agent,
    /// The agent is the caller's: every call is configured on its own with
    /// what correctness needs (see [`Client::builder_with_agent`]).
    callers: Option<CallersAgent>,
    /// The most of a token-endpoint answer to read.
    token_limit: usize,
}

/// What every call on a caller's agent overrides.
#[derive(Debug, Clone, Copy)]
struct CallersAgent {
    /// Its own settings would break the client (4xx/5xx as errors, or
    /// redirects followed by ureq): corrected on every call.
    amend: bool,
    /// The builder's `timeout`, replacing the agent's global timeout.
    timeout: Option<Duration>,
}

impl UreqTransport {
    /// The client's own agent, configured once: no per-call overrides.
    fn agent(timeout: Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Redirects are followed by the client, with the origin check per hop.
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .build()
            .into()
    }

    /// Send `request` on the agent. On a caller's agent whose settings need
    /// it, this call alone is configured with statuses as responses (a 401
    /// must reach the session, not end as an error) and no redirect followed
    /// by ureq (the client follows them hop by hop, the token endpoint's
    /// never); `timeout` (a refresh's deadline) replaces any other.
    fn run<S: ureq::AsSendBody>(
        &self,
        request: Request<S>,
        timeout: Option<Duration>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let (amend, timeout) = match self.callers {
            Some(callers) => (callers.amend, timeout.or(callers.timeout)),
            None => (false, timeout),
        };
        if !amend && timeout.is_none() {
            return self.agent.run(request);
        }
        let mut config = self
            .agent
            .configure_request(request)
            .http_status_as_error(false)
            .max_redirects(0);
        if let Some(timeout) = timeout {
            config = config.timeout_global(Some(timeout));
        }
        self.agent.run(config.build())
    }
}

impl Transport for UreqTransport {
    type Response = Response<Vec<u8>>;
    type Error = ureq::Error;
    type Detail = Box<Response<Vec<u8>>>;
    type Client = Client;

    fn configure(&mut self, options: &Options) {
        self.token_limit = options.token_response_limit;
        match (&mut self.callers, options.timeout) {
            (_, None) => {}
            // The caller's agent is kept; the timeout is set per call.
            (Some(callers), Some(timeout)) => callers.timeout = Some(timeout),
            // `Client::builder` made the agent with the default timeout.
            (None, Some(timeout)) => self.agent = Self::agent(timeout),
        }
    }

    fn head(response: &Self::Response) -> (StatusCode, &HeaderMap) {
        (response.status(), response.headers())
    }

    fn detail(response: Self::Response) -> Self::Detail {
        Box::new(response)
    }

    fn error_kind(e: &ureq::Error) -> SendErrorKind {
        match e {
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => SendErrorKind::Connect,
            ureq::Error::Timeout(_) => SendErrorKind::Timeout,
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                SendErrorKind::Connect
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                SendErrorKind::Timeout
            }
            _ => SendErrorKind::Io,
        }
    }

    /// Bodies are read whole already.
    async fn read_body(
        response: Self::Response,
        limit: usize,
    ) -> Result<ReadAhead<Self::Response>, ureq::Error> {
        let body = (response.body().len() <= limit).then(|| response.body().clone());
        Ok(ReadAhead { response, body })
    }

    async fn wait(&self, waiter: Waiter) {
        waiter.wait_blocking();
    }

    async fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    async fn token_call(
        &self,
        request: Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<TokenAnswer, ureq::Error> {
        let response = self.run(request, timeout)?;
        let (head, mut body) = response.into_parts();
        let limit = self.token_limit as u64;
        let (body, body_too_large) = match body.with_config().limit(limit).read_to_vec() {
            Ok(body) => (body, false),
            Err(ureq::Error::BodyExceedsLimit(_)) => (Vec::new(), true),
            Err(e) => return Err(e),
        };
        Ok(TokenAnswer {
            status: head.status.as_u16(),
            headers: head.headers,
            body,
            body_too_large,
        })
    }
}

refresh_machine_driver::client_handle! {
    /// A cloneable, thread-safe client. All clones share one session. It
    /// derefs to the shared [`Driver`](refresh_machine_driver::Driver): `session()`, `set_tokens()`,
    /// `logout()`; the blocking [`Client::login_with_password`] comes first.
    pub struct Client(UreqTransport);
}

impl Client {
    /// Start building a client, on an agent of its own (30 s timeout per
    /// call unless [`timeout`](refresh_machine_driver::Builder::timeout) says otherwise).
    pub fn builder() -> ClientBuilder {
        Builder::new(UreqTransport {
            agent: UreqTransport::agent(DEFAULT_TIMEOUT),
            callers: None,
            token_limit: refresh_machine_driver::grant::MAX_TOKEN_RESPONSE,
        })
    }

    /// Start building a client on your agent: its TLS backend and roots,
    /// proxy, user agent, timeouts, connector, resolver, connection pool and
    /// middleware serve both the API calls and the token-endpoint calls.
    ///
    /// Two settings are overridden, per call (a ureq `Agent` cannot be
    /// amended, and a new one built from its `Config` would lose its
    /// connector, resolver and pool): 4xx and 5xx are responses, not errors
    /// (`http_status_as_error(false)`: a 401 must reach the session to be
    /// refreshed), and ureq follows no redirects (`max_redirects(0)`: the
    /// client follows them hop by hop, attaching the token only on its own
    /// allowed origin, and never follows the token endpoint's). An agent
    /// already configured that way is used as it is. The builder's
    /// [`timeout`](refresh_machine_driver::Builder::timeout), if set,
    /// replaces the agent's global timeout on every call; a refresh's token
    /// call is bounded by the refresh deadline.
    pub fn builder_with_agent(agent: ureq::Agent) -> ClientBuilder {
        let config = agent.config();
        let amend = config.http_status_as_error() || config.max_redirects() != 0;
        Builder::new(UreqTransport {
            agent,
            callers: Some(CallersAgent {
                amend,
                timeout: None,
            }),
            token_limit: refresh_machine_driver::grant::MAX_TOKEN_RESPONSE,
        })
    }

    /// Log in with the resource-owner password grant at the token endpoint
    /// (tests, demos and first-party apps). Blocking; see [`Driver::login_with_password`](refresh_machine_driver::Driver::login_with_password).
    pub fn login_with_password(&self, username: &str, password: &str) -> Result<(), Error> {
        block_on(self.driver.login_with_password(username, password))
    }

    /// Log in at an app backend's login route with JSON credentials, and
    /// keep the tokens it answers. Blocking; see
    /// [`Driver::login_with_json`](refresh_machine_driver::Driver::login_with_json).
    pub fn login_with_json(&self, url: &str, credentials: impl Into<Vec<u8>>) -> Result<(), Error> {
        block_on(self.driver.login_with_json(url, credentials))
    }

    /// Log out, then revoke the tokens at the server. Blocking; see
    /// [`Driver::logout_and_revoke`](refresh_machine_driver::Driver::logout_and_revoke).
    pub fn logout_and_revoke(&self) -> Result<(), Error> {
        block_on(self.driver.logout_and_revoke())
    }

    /// A currently valid access token, refreshed first if needed, for use
    /// outside this client (a websocket, gRPC metadata). Blocking; see
    /// [`Driver::access_token`](refresh_machine_driver::Driver::access_token).
    pub fn access_token(&self) -> Result<Secret, Error> {
        block_on(self.driver.access_token())
    }

    /// A new access token after `refused` was refused outside this client.
    /// Blocking; see [`Driver::access_token_after_refusal`](refresh_machine_driver::Driver::access_token_after_refusal).
    pub fn access_token_after_refusal(&self, refused: &Secret) -> Result<Secret, Error> {
        block_on(self.driver.access_token_after_refusal(refused))
    }

    /// `GET url`.
    pub fn get(&self, url: &str) -> Result<Response<Vec<u8>>, Error> {
        let req = Request::get(url)
            .body(Vec::new())
            .map_err(Error::InvalidRequest)?;
        self.send(req)
    }

    /// `POST url` with a body (not retried after errors that may have reached
    /// the server unless it carries an `Idempotency-Key`).
    pub fn post(&self, url: &str, body: impl Into<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        let req = Request::post(url)
            .body(body.into())
            .map_err(Error::InvalidRequest)?;
        self.send(req)
    }

    /// `POST url` with a JSON body you serialised (`Content-Type:
    /// application/json`); retried as [`post`](Self::post) is.
    pub fn post_json(
        &self,
        url: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Error> {
        let req = Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .map_err(Error::InvalidRequest)?;
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

    fn drive(&self, parts: http::request::Parts, body: Body) -> Result<Response<Vec<u8>>, Error> {
        let spec = RequestSpec {
            replayable: matches!(body, Body::Bytes(_)),
            ..RequestSpec::from_http(&parts.method, &parts.headers)
        };
        let mut attempt = UreqAttempt {
            transport: self.driver.transport(),
            origins: self.driver.origins(),
            parts,
            body,
        };
        let allowed = match attempt.parts.extensions.get::<WithoutToken>() {
            Some(WithoutToken) => None,
            None => self.driver.origins().allows(&attempt.parts.uri),
        };
        let Some(allowed) = allowed else {
            // Not ours, or asked to go without the token: no token, no
            // session; a plain request.
            return attempt
                .run(None)
                .map(|sent| sent.response)
                .map_err(Error::Transport);
        };
        block_on(self.driver.drive(allowed, spec, &mut attempt))
    }
}

enum Body {
    Bytes(Vec<u8>),
    /// Sent once; `None` after that.
    Stream(Option<Box<dyn Read + Send>>),
}

/// One request on ureq: sent with redirects followed here, per hop.
struct UreqAttempt<'a> {
    transport: &'a UreqTransport,
    origins: &'a Origins,
    parts: http::request::Parts,
    body: Body,
}

impl Attempt<UreqTransport> for UreqAttempt<'_> {
    async fn send(&mut self, token: &Secret) -> Result<Sent<Response<Vec<u8>>>, ureq::Error> {
        self.run(Some(token))
    }
}

impl UreqAttempt<'_> {
    /// One attempt, following redirects. Returns the final response and whether
    /// the token was attached to the final hop.
    fn run(&mut self, token: Option<&Secret>) -> Result<Sent<Response<Vec<u8>>>, ureq::Error> {
        let parts = &self.parts;
        let origin_uri = &parts.uri;
        let mut uri = parts.uri.clone();
        let mut method = parts.method.clone();
        // A GET or HEAD with an empty buffer goes out without a body, as a
        // plain ureq call would (no `Content-Length: 0`).
        let mut send_body = !matches!(&self.body, Body::Bytes(b) if b.is_empty() && matches!(method, Method::GET | Method::HEAD));
        let mut body_dropped = false;
        for hop in 0..=redirect::MAX_REDIRECTS {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .version(parts.version)
                .body(())
                .map_err(ureq::Error::Http)?;
            // The caller's headers, credentials only on the first origin (its
            // own `Authorization` included: kept where no token replaces it).
            *req.headers_mut() =
                redirect::hop_headers(&parts.headers, origin_uri, &uri, body_dropped);
            let attach =
                token.filter(|_| redirect::token_allowed(self.origins, origin_uri, hop, &uri));
            if token.is_some() {
                // Ours to set on an allowed origin: never the caller's and ours mixed.
                req.headers_mut().remove(AUTHORIZATION);
            }
            if let Some(t) = attach {
                let value = t.bearer_header().map_err(|e| ureq::Error::Http(e.into()))?;
                req.headers_mut().insert(AUTHORIZATION, value);
            }
            let resp = match (send_body, &mut self.body) {
                (true, Body::Bytes(b)) => {
                    let (p, ()) = req.into_parts();
                    self.transport
                        .run(Request::from_parts(p, b.as_slice()), None)?
                }
                (true, Body::Stream(s)) => match s.take() {
                    Some(reader) => {
                        let (p, ()) = req.into_parts();
                        let send = ureq::SendBody::from_owned_reader(ReadSend(reader));
                        self.transport.run(Request::from_parts(p, send), None)?
                    }
                    None => return Err(ureq::Error::Other("stream body already consumed".into())),
                },
                (false, _) => {
                    let (p, ()) = req.into_parts();
                    self.transport.run(Request::from_parts(p, ()), None)?
                }
            };
            match redirect::next_hop(&uri, &method, resp.status(), resp.headers()) {
                Some(next) => {
                    send_body &= next.keep_body;
                    body_dropped |= !next.keep_body;
                    method = next.method;
                    uri = next.uri;
                }
                None => {
                    // Keep ureq's head (status, headers, extensions) as it is.
                    let (head, mut body) = resp.into_parts();
                    let bytes = body.read_to_vec()?;
                    return Ok(Sent {
                        response: Response::from_parts(head, bytes),
                        token_sent: attach.is_some(),
                    });
                }
            }
        }
        Err(ureq::Error::TooManyRedirects)
    }
}

struct ReadSend(Box<dyn Read + Send>);

impl Read for ReadSend {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}
