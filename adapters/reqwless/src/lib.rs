#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

mod clock;
mod error;
mod refresher;
mod saved;

use core::fmt::Write as _;
use core::time::Duration;

use embassy_futures::select::{select, Either};
use embedded_nal_async::{Dns, TcpConnect};
use refresh_machine::grant::{
    parse_token_response_as, password_grant_body, ClientAuth, Refusals, TokenFormat,
    FORM_CONTENT_TYPE,
};
use refresh_machine::{
    Action, Config, Instant, RefreshId, RefreshMachine, RequestId, RequestSpec, Response,
    SendErrorKind, SessionState, StoredTokens, TokenSet,
};
use reqwless::client::HttpClient;
use reqwless::request::{Method, RequestBuilder};

pub use clock::Clock;
pub use error::Error;
pub use refresh_machine;
pub use refresher::{JsonEndpoint, RefreshCall, Refreshed, Refresher, TokenEndpoint};
pub use reqwless;
pub use saved::{NoStore, SavedTokens, TokenStore};

/// Content type of JSON token-call bodies (an app backend's refresh and login routes).
const JSON_CONTENT_TYPE: &str = "application/json";

/// Longest URL (origin plus path) the client will build.
pub const URL_CAP: usize = 256;
/// Most caller headers per request.
pub const MAX_HEADERS: usize = 8;

/// What a token-endpoint answer takes besides its two tokens: a status line
/// and headers as servers send them (up to 768 bytes) and the JSON around the
/// tokens (`token_type`, `expires_in`, `scope`...: up to 256 bytes).
pub const TOKEN_RESPONSE_OVERHEAD: usize = 1024;

/// The smallest `rx` for a token-endpoint answer that carries an access and
/// a refresh token of `token_cap` bytes each: [`TOKEN_RESPONSE_OVERHEAD`] plus
/// each token twice over (a server may escape `/` as `\/` in JSON). API
/// responses are read into the same buffer: size it for the larger of the two.
pub const fn token_response_rx_len(token_cap: usize) -> usize {
    TOKEN_RESPONSE_OVERHEAD + 4 * token_cap
}

/// The smallest scratch buffer (given to [`Client::new`]) for tokens of
/// `token_cap` bytes, with `credentials_len` the length of the client id,
/// client secret and scope together: `Bearer <token>`, or the refresh grant
/// body (percent-encoding at most triples a byte) followed by the HTTP Basic
/// header of a confidential client. A password login also needs three times
/// the username and password lengths.
pub const fn scratch_len(token_cap: usize, credentials_len: usize) -> usize {
    128 + 3 * token_cap + 8 * credentials_len
}

/// Where the client talks to.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints<'a> {
    /// The API origin the access token belongs to, e.g. `http://10.0.0.2:8080`
    /// (no trailing slash, no path).
    pub api_origin: &'a str,
    /// The token endpoint URL.
    pub token_url: &'a str,
    /// How the client identifies itself to the token endpoint.
    pub client: ClientAuth<'a>,
    /// `scope` for refresh and password grants.
    pub scope: Option<&'a str>,
}

/// One API request: a path on the API origin, never a full URL.
#[derive(Clone, Copy, Debug)]
pub struct Request<'r> {
    /// HTTP method.
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: &'r str,
    /// Body, if any.
    pub body: Option<&'r [u8]>,
    /// `Content-Type` of the body.
    pub content_type: Option<&'r str>,
    /// Extra headers (at most [`MAX_HEADERS`]); an `Idempotency-Key` makes a
    /// POST safe to resend.
    pub headers: &'r [(&'r str, &'r str)],
}

impl<'r> Request<'r> {
    /// The request can go on the wire as it is: a path that starts with `/`
    /// and has no spaces or control characters, header names that are HTTP
    /// tokens, header values (and the content type) without CR, LF or NUL.
    /// A CR/LF would end the header and let the rest be read as another.
    fn check(&self) -> Result<(), Error> {
        let path_ok = self.path.starts_with('/')
            && self.path.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80);
        let value_ok = |v: &str| !v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        let headers_ok = self.headers.iter().all(|(n, v)| name_ok(n) && value_ok(v));
        if path_ok && headers_ok && self.content_type.is_none_or(value_ok) {
            Ok(())
        } else {
            Err(Error::InvalidRequest)
        }
    }

    /// `GET path`.
    pub const fn get(path: &'r str) -> Self {
        Request {
            method: Method::GET,
            path,
            body: None,
            content_type: None,
            headers: &[],
        }
    }

    /// `POST path` with a JSON body.
    pub const fn post_json(path: &'r str, body: &'r [u8]) -> Self {
        Request {
            method: Method::POST,
            path,
            body: Some(body),
            content_type: Some("application/json"),
            headers: &[],
        }
    }

    /// The same request with these extra headers.
    pub const fn with_headers(mut self, headers: &'r [(&'r str, &'r str)]) -> Self {
        self.headers = headers;
        self
    }
}

/// A response the machine delivered.
#[derive(Debug)]
pub struct Reply<'rx> {
    /// HTTP status.
    pub status: u16,
    /// The body, in the caller's receive buffer.
    pub body: &'rx [u8],
}

/// What the run loop must do next for the caller's request.
enum Step {
    Send,
    /// Perform refresh `id`; its outcome is due by the deadline.
    Refresh(RefreshId, Instant),
    Deliver,
    Idle,
}

/// An HTTP client that refreshes its access token correctly, with no heap.
///
/// `TOKEN_CAP` bounds each token; the scratch buffer must hold
/// `"Bearer " + TOKEN_CAP` and the refresh grant's form body
/// ([`scratch_len`]). `R` performs refreshes (the RFC 6749 grant at the
/// token endpoint unless [`with_refresher`](Client::with_refresher) says
/// otherwise); `S` saves the tokens when they change
/// ([`with_token_store`](Client::with_token_store)).
pub struct Client<'a, T, D, C, const TOKEN_CAP: usize, R = TokenEndpoint, S = NoStore>
where
    T: TcpConnect,
    D: Dns,
{
    http: HttpClient<'a, T, D>,
    clock: C,
    machine: RefreshMachine<1, TOKEN_CAP>,
    endpoints: Endpoints<'a>,
    scratch: &'a mut [u8],
    request_timeout: Duration,
    refresher: R,
    store: S,
    /// The tokens changed and the store has not seen it yet.
    unsaved: bool,
    tokens_changed: bool,
    /// Why the last refresh or send could not be used, for the error the
    /// caller gets if the machine then fails the request.
    problem: Option<Error>,
    /// The request `send` started; released by the next `send` if it is
    /// still open (every outcome the machine emits frees it already).
    open: Option<RequestId>,
}

/// Tokens and buffers are not shown.
impl<T: TcpConnect, D: Dns, C, const TOKEN_CAP: usize, R, S> core::fmt::Debug
    for Client<'_, T, D, C, TOKEN_CAP, R, S>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("machine", &self.machine)
            .field("api_origin", &self.endpoints.api_origin)
            .finish_non_exhaustive()
    }
}

impl<'a, T, D, C, const TOKEN_CAP: usize> Client<'a, T, D, C, TOKEN_CAP>
where
    T: TcpConnect + 'a,
    D: Dns + 'a,
    C: Clock,
{
    /// A logged-out client that refreshes at the token endpoint and saves
    /// nothing itself. `seed` is randomness for backoff jitter (from the
    /// chip's RNG); `scratch` is the request-building buffer.
    pub fn new(
        http: HttpClient<'a, T, D>,
        clock: C,
        endpoints: Endpoints<'a>,
        config: Config,
        seed: u64,
        scratch: &'a mut [u8],
    ) -> Self {
        Client {
            http,
            clock,
            machine: RefreshMachine::new(config, seed),
            endpoints,
            scratch,
            request_timeout: Duration::from_secs(30),
            refresher: TokenEndpoint,
            store: NoStore,
            unsaved: false,
            tokens_changed: false,
            problem: None,
            open: None,
        }
    }
}

impl<'a, T, D, C, const TOKEN_CAP: usize, R, S> Client<'a, T, D, C, TOKEN_CAP, R, S>
where
    T: TcpConnect + 'a,
    D: Dns + 'a,
    C: Clock,
    R: Refresher<'a, T, D>,
    S: TokenStore,
{
    /// Refresh with `refresher` instead of the RFC 6749 grant at the token
    /// endpoint (a token service of another shape).
    pub fn with_refresher<R2: Refresher<'a, T, D>>(
        self,
        refresher: R2,
    ) -> Client<'a, T, D, C, TOKEN_CAP, R2, S> {
        self.map_parts(|_, store| (refresher, store))
    }

    /// Save the tokens in `store` whenever they change, before anything else
    /// goes out (see [`TokenStore`]).
    pub fn with_token_store<S2: TokenStore>(
        self,
        store: S2,
    ) -> Client<'a, T, D, C, TOKEN_CAP, R, S2> {
        self.map_parts(|refresher, _| (refresher, store))
    }

    /// The same client with its refresher and store replaced by `f`.
    fn map_parts<R2, S2>(
        self,
        f: impl FnOnce(R, S) -> (R2, S2),
    ) -> Client<'a, T, D, C, TOKEN_CAP, R2, S2> {
        let (refresher, store) = f(self.refresher, self.store);
        Client {
            http: self.http,
            clock: self.clock,
            machine: self.machine,
            endpoints: self.endpoints,
            scratch: self.scratch,
            request_timeout: self.request_timeout,
            refresher,
            store,
            unsaved: self.unsaved,
            tokens_changed: self.tokens_changed,
            problem: self.problem,
            open: self.open,
        }
    }

    /// Give up on an API request that has not answered in this long (default 30 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The token store (e.g. to reach the flash driver it owns).
    pub fn token_store(&self) -> &S {
        &self.store
    }

    /// Start a session with tokens obtained elsewhere (lifetimes from now).
    /// For tokens read back from flash, use [`restore_tokens`](Self::restore_tokens).
    pub fn set_tokens(&mut self, tokens: TokenSet<'_>) -> Result<(), Error> {
        let now = self.clock.now();
        self.machine.login(now, tokens)?;
        self.drain_notices();
        // The application has these; the store is not asked to save them back.
        self.unsaved = false;
        Ok(())
    }

    /// Start a session with tokens saved before a restart: their expiries
    /// are Unix seconds, read against [`Clock::unix_now`] (a token that
    /// expired meanwhile is refreshed before anything is sent; without a
    /// wall clock the expiry is unknown and a 401 tells).
    pub fn restore_tokens(&mut self, saved: SavedTokens<'_>) -> Result<(), Error> {
        self.set_tokens(saved.token_set(self.clock.unix_now()))
    }

    /// The current tokens as they are saved: expiries in Unix seconds
    /// (rounded down; `None` without a wall clock). Save these, not
    /// [`tokens`](Self::tokens), whose instants count from boot.
    pub fn saved_tokens(&self) -> Option<SavedTokens<'_>> {
        let tokens = self.machine.tokens()?;
        Some(SavedTokens::from_stored(
            tokens,
            self.clock.now(),
            self.clock.unix_now(),
        ))
    }

    /// Give pending token changes to the store, if any.
    async fn save_changes(&mut self) {
        if core::mem::take(&mut self.unsaved) {
            let tokens = self
                .machine
                .tokens()
                .map(|t| SavedTokens::from_stored(t, self.clock.now(), self.clock.unix_now()));
            self.store.save(tokens).await;
        }
    }

    /// First login with the resource-owner password grant. `rx` receives the
    /// token endpoint's answer and must hold it whole.
    pub async fn login_with_password(
        &mut self,
        username: &str,
        password: &str,
        rx: &mut [u8],
    ) -> Result<(), Error> {
        let len = password_grant_body(
            self.scratch,
            username,
            password,
            &self.endpoints.client,
            self.endpoints.scope,
        )
        .map_err(|_| Error::ScratchTooSmall)?
        .len();
        let token_url = self.endpoints.token_url;
        let client = self.endpoints.client;
        self.login_at(
            token_url,
            &client,
            FORM_CONTENT_TYPE,
            len,
            rx,
            &TokenFormat::OAUTH2,
        )
        .await
    }

    /// First login at an app backend's login route: `POST url` with
    /// `credentials` as a JSON body (for example
    /// `{"username": .., "password": ..}`), the answer read with `format`'s
    /// names ([`TokenFormat::CAMEL_CASE`] for
    /// `{"accessToken": .., "refreshToken": ..}`; any 2xx with an access
    /// token is a success). Without a lifetime in the answer, a JWT access
    /// token's `exp` claim is used. `credentials` must fit the scratch buffer;
    /// `rx` receives the answer and must hold it whole.
    pub async fn login_with_json(
        &mut self,
        url: &str,
        credentials: &[u8],
        format: &TokenFormat<'_>,
        rx: &mut [u8],
    ) -> Result<(), Error> {
        let len = credentials.len();
        self.scratch
            .get_mut(..len)
            .ok_or(Error::ScratchTooSmall)?
            .copy_from_slice(credentials);
        let no_client_auth = ClientAuth::Public { client_id: "" };
        self.login_at(url, &no_client_auth, JSON_CONTENT_TYPE, len, rx, format)
            .await
    }

    /// Send the login body in `scratch[..len]` to `url`, install the tokens
    /// of the answer.
    async fn login_at(
        &mut self,
        url: &str,
        client: &ClientAuth<'_>,
        content_type: &str,
        len: usize,
        rx: &mut [u8],
        format: &TokenFormat<'_>,
    ) -> Result<(), Error> {
        let unix_now = self.clock.unix_now();
        let answered = token_call(
            &mut self.http,
            url,
            client,
            content_type,
            self.scratch,
            len,
            rx,
            unix_now,
        )
        .await;
        // The credentials are not left in the scratch buffer.
        self.scratch[..len].fill(0);
        let (answer, body) = answered.map_err(|e| match e {
            TokenCallError::TooLarge(_) => Error::TokenResponseTooLarge,
            TokenCallError::Scratch => Error::ScratchTooSmall,
            TokenCallError::Transport => Error::Transport(SendErrorKind::Io),
        })?;
        let ok = match format.refusals {
            Refusals::OAuthCodes => answer.status == 200,
            _ => (200..300).contains(&answer.status),
        };
        if !ok {
            return Err(Error::LoginRefused {
                status: answer.status,
            });
        }
        let mut tokens = parse_token_response_as(body, format)?.token_set();
        refresher::with_jwt_expiry(&mut tokens, self.scratch, unix_now);
        let now = self.clock.now();
        self.machine.login(now, tokens)?;
        self.drain_notices();
        self.save_changes().await;
        Ok(())
    }

    /// End the session: tokens are forgotten, and the store is told to
    /// erase them.
    pub async fn logout(&mut self) {
        let now = self.clock.now();
        self.machine.logout(now);
        self.drain_notices();
        self.save_changes().await;
    }

    /// The current tokens, on the machine's timeline (instants since boot).
    /// To persist them, use [`saved_tokens`](Self::saved_tokens).
    pub fn tokens(&self) -> Option<StoredTokens<'_>> {
        self.machine.tokens()
    }

    /// Whether the tokens changed (refresh, login, loss) since the last call.
    pub fn take_tokens_changed(&mut self) -> bool {
        core::mem::take(&mut self.tokens_changed)
    }

    /// Where the session stands.
    pub fn session(&self) -> SessionState {
        self.machine.session()
    }

    /// The machine's counters (for tests and metrics).
    pub fn snapshot(&self) -> refresh_machine::Snapshot {
        self.machine.snapshot()
    }

    /// Take the session's notices (token changes), leaving request actions
    /// and a queued refresh in the machine.
    fn drain_notices(&mut self) {
        while let Some(a) = self.machine.poll_notice() {
            if let Action::PersistTokens { .. } = a {
                self.tokens_changed = true;
                self.unsaved = true;
            }
        }
    }

    /// Send `req` to the API origin with the current access token, refreshing
    /// and retrying as the machine decides. The response body is read into `rx`.
    /// Token changes reach the store before each send and before this
    /// returns, whatever the outcome.
    pub async fn send<'rx>(
        &mut self,
        req: Request<'_>,
        rx: &'rx mut [u8],
    ) -> Result<Reply<'rx>, Error> {
        let result = self.run(req, rx).await;
        // Every exit, early ones included: a rotated refresh token the
        // machine installed is saved before the caller hears of the failure.
        self.drain_notices();
        self.save_changes().await;
        result
    }

    /// The run loop of one request.
    async fn run<'rx>(&mut self, req: Request<'_>, rx: &'rx mut [u8]) -> Result<Reply<'rx>, Error> {
        let has_key = req
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("idempotency-key"));
        let spec = RequestSpec::for_method(req.method.as_str(), has_key);
        // Refused before it takes a slot or touches the network.
        req.check()?;
        self.problem = None;
        // One request at a time: a request still open here was left by an
        // early return (a buffer too small, a refused input) or by a dropped
        // `send` future. Release it, so its slot never blocks this one.
        if let Some(open) = self.open.take() {
            let _ = self.machine.cancel(open);
        }
        let id = self.machine.start_request(self.clock.now(), spec)?;
        self.open = Some(id);
        let mut delivered: Option<(u16, Result<usize, Error>)> = None;
        let mut last: Option<(u16, Result<usize, Error>)> = None;
        let mut token_len = 0;
        loop {
            let mut step = Step::Idle;
            let mut failed = None;
            while let Some(action) = self.machine.poll_action() {
                match action {
                    Action::Send { token, .. } => {
                        token_len = bearer(self.scratch, token.expose_secret())?;
                        step = Step::Send;
                    }
                    Action::Refresh { id, deadline, .. } => {
                        step = Step::Refresh(id, deadline);
                        // Perform the refresh before taking anything else (a
                        // refresh-ahead comes in the same drain as the
                        // request's `Send`, which stays queued in the machine
                        // until then; both would use the scratch buffer).
                        break;
                    }
                    Action::Deliver { .. } => {
                        delivered = last.take();
                        step = Step::Deliver;
                    }
                    Action::Fail { failure, .. } => failed = Some(failure),
                    Action::PersistTokens { .. } => {
                        self.tokens_changed = true;
                        self.unsaved = true;
                    }
                    Action::LoginRequired => {}
                }
            }
            // New tokens reach the store before anything else goes out.
            self.save_changes().await;
            if let Some(failure) = failed {
                return Err(self.problem.take().unwrap_or(failure.into()));
            }
            match step {
                Step::Deliver => break,
                Step::Send => {
                    let outcome = self.perform_send(&req, token_len, rx).await;
                    let now = self.clock.now();
                    match outcome {
                        Ok((response, body)) => {
                            last = Some((response.status, body));
                            self.machine.handle_response(now, id, response)?;
                        }
                        Err(kind) => self.machine.handle_send_error(now, id, kind)?,
                    }
                }
                Step::Refresh(rid, deadline) => self.refresh(rid, deadline, rx).await?,
                Step::Idle => match self.machine.poll_timeout() {
                    Some(deadline) => {
                        self.clock.sleep_until(deadline).await;
                        self.machine.handle_timeout(self.clock.now());
                    }
                    None => return Err(Error::Stalled),
                },
            }
        }
        match delivered {
            Some((status, Ok(len))) => Ok(Reply {
                status,
                body: &rx[..len],
            }),
            Some((_, Err(e))) => Err(e),
            None => Err(Error::Stalled),
        }
    }

    /// One API request; the body is read into `rx` when it fits.
    async fn perform_send(
        &mut self,
        req: &Request<'_>,
        token_len: usize,
        rx: &mut [u8],
    ) -> Result<(Response, Result<usize, Error>), SendErrorKind> {
        let mut url: heapless::String<URL_CAP> = heapless::String::new();
        if !req.path.starts_with('/')
            || write!(url, "{}{}", self.endpoints.api_origin, req.path).is_err()
        {
            // Caught before anything went out: the server never saw it.
            return Err(SendErrorKind::Connect);
        }
        let authorization =
            core::str::from_utf8(&self.scratch[..token_len]).map_err(|_| SendErrorKind::Connect)?;
        let mut headers: heapless::Vec<(&str, &str), { MAX_HEADERS + 2 }> = heapless::Vec::new();
        let _ = headers.push(("Authorization", authorization));
        if let Some(ct) = req.content_type {
            let _ = headers.push(("Content-Type", ct));
        }
        for h in req.headers.iter().take(MAX_HEADERS) {
            if !h.0.eq_ignore_ascii_case("authorization") {
                let _ = headers.push(*h);
            }
        }
        let unix_now = self.clock.unix_now();
        let deadline = self.clock.now().saturating_add(self.request_timeout);
        let problem = &mut self.problem;
        let io = async {
            let handle = self
                .http
                .request(req.method, &url)
                .await
                .map_err(|_| SendErrorKind::Connect)?;
            let mut handle = handle.headers(&headers);
            // Reads status, the two headers the machine needs, and the body.
            macro_rules! read {
                ($response:expr) => {{
                    let response = match $response {
                        Ok(r) => r,
                        Err(reqwless::Error::BufferTooSmall) => {
                            // Answered, but unreadable here: a retry would fare no better.
                            *problem = Some(Error::ResponseHeadersTooLarge);
                            return Err(SendErrorKind::Io);
                        }
                        Err(_) => return Err(SendErrorKind::Io),
                    };
                    let event =
                        Response::from_headers(response.status.0, response.headers(), unix_now);
                    let body = match response.body().read_to_end().await {
                        Ok(b) => Ok(b.len()),
                        Err(reqwless::Error::BufferTooSmall) => Err(Error::ResponseTooLarge {
                            status: event.status,
                        }),
                        Err(_) => return Err(SendErrorKind::Io),
                    };
                    Ok((event, body))
                }};
            }
            match req.body {
                Some(body) => {
                    let mut handle = handle.body(body);
                    read!(handle.send(rx).await)
                }
                None => read!(handle.send(rx).await),
            }
        };
        match select(io, self.clock.sleep_until(deadline)).await {
            Either::First(r) => r,
            Either::Second(()) => Err(SendErrorKind::Timeout),
        }
    }

    /// Perform refresh `rid` with the refresher, bounded by the machine's
    /// deadline, and feed its outcome.
    async fn refresh(
        &mut self,
        rid: RefreshId,
        deadline: Instant,
        rx: &mut [u8],
    ) -> Result<(), Error> {
        let unix_now = self.clock.unix_now();
        let Client {
            http,
            clock,
            machine,
            endpoints,
            scratch,
            refresher,
            ..
        } = self;
        let Some(refresh_token) = machine.tokens().and_then(|t| t.refresh_token) else {
            // The machine hands out a refresh only with a refresh token.
            return Err(Error::Stalled);
        };
        let call = RefreshCall {
            http,
            endpoints,
            refresh_token: refresh_token.expose_secret(),
            scratch,
            unix_now,
        };
        let refreshed = match select(refresher.refresh(call, rx), clock.sleep_until(deadline)).await
        {
            Either::First(refreshed) => refreshed,
            // The machine abandons it at its deadline; handle_timeout says so.
            Either::Second(()) => {
                self.machine.handle_timeout(self.clock.now());
                return Ok(());
            }
        };
        let now = self.clock.now();
        if refreshed.problem.is_some() {
            self.problem = refreshed.problem;
        }
        match self
            .machine
            .handle_refresh_outcome(now, rid, refreshed.outcome)
        {
            // A late answer the machine gave up on: nothing to do.
            Ok(()) | Err(refresh_machine::Error::UnknownRefresh) => Ok(()),
            // Not installed (the session went on as the machine decided:
            // a new refresh token the answer carried is kept); the caller
            // learns why if the request fails for it.
            Err(
                e @ (refresh_machine::Error::TokenTooLarge { .. }
                | refresh_machine::Error::InvalidToken),
            ) => {
                self.problem = Some(e.into());
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

pub(crate) enum TokenCallError {
    /// The answer did not fit `rx`; its status, when the status line could
    /// still be read.
    TooLarge(Option<u16>),
    Scratch,
    Transport,
}

/// The status of an HTTP/1.x status line at the start of `head` (what is
/// left in the receive buffer when the head did not fit it).
fn status_line(head: &[u8]) -> Option<u16> {
    let line = head.get(..12)?;
    if !line.starts_with(b"HTTP/1.") || line[8] != b' ' {
        return None;
    }
    line[9..12].iter().try_fold(0u16, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
    })
}

/// POST the form body in `scratch[..len]` to the token endpoint; read the
/// answer into `rx`. The `Response` carries the status and `Retry-After`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn token_call<'rx, T: TcpConnect, D: Dns>(
    http: &mut HttpClient<'_, T, D>,
    token_url: &str,
    client: &ClientAuth<'_>,
    content_type: &str,
    scratch: &mut [u8],
    len: usize,
    rx: &'rx mut [u8],
    unix_now: Option<u64>,
) -> Result<(Response, &'rx mut [u8]), TokenCallError> {
    let (form, rest) = scratch.split_at_mut(len);
    let form: &[u8] = form;
    let form_type = ("Content-Type", content_type);
    let with_basic;
    let headers: &[(&str, &str)] = match client
        .authorization(rest)
        .map_err(|_| TokenCallError::Scratch)?
    {
        Some(basic) => {
            with_basic = [("Authorization", basic), form_type];
            &with_basic
        }
        None => &[form_type],
    };
    // Where the body lies in `rx`, so that `rx` can be read again when the
    // head did not fit (the borrow of a failed `send` would otherwise last).
    let base = rx.as_ptr() as usize;
    let call = async {
        let handle = http
            .request(Method::POST, token_url)
            .await
            .map_err(|_| TokenCallError::Transport)?;
        let mut handle = handle.headers(headers).body(form);
        let response = handle.send(&mut *rx).await.map_err(|e| match e {
            reqwless::Error::BufferTooSmall => TokenCallError::TooLarge(None),
            _ => TokenCallError::Transport,
        })?;
        let status = response.status.0;
        let answer = Response::from_headers(status, response.headers(), unix_now);
        let body = response.body().read_to_end().await.map_err(|e| match e {
            reqwless::Error::BufferTooSmall => TokenCallError::TooLarge(Some(status)),
            _ => TokenCallError::Transport,
        })?;
        Ok((answer, body.as_ptr() as usize - base, body.len()))
    };
    match call.await {
        Ok((answer, at, len)) => Ok((answer, &mut rx[at..at + len])),
        // The head did not fit; its status line, at the start of `rx`, did.
        Err(TokenCallError::TooLarge(None)) => Err(TokenCallError::TooLarge(status_line(rx))),
        Err(e) => Err(e),
    }
}

/// `Bearer <token>` into `buf`; its length.
fn bearer(buf: &mut [u8], token: &str) -> Result<usize, Error> {
    const PREFIX: &[u8] = b"Bearer ";
    let len = PREFIX.len() + token.len();
    let out = buf.get_mut(..len).ok_or(Error::ScratchTooSmall)?;
    out[..PREFIX.len()].copy_from_slice(PREFIX);
    out[PREFIX.len()..].copy_from_slice(token.as_bytes());
    Ok(len)
}

#[cfg(test)]
mod status_line_tests {
    use super::status_line;

    /// What is left of a head that did not fit the buffer still names its status.
    #[test]
    fn the_status_line_is_read_from_a_truncated_head() {
        assert_eq!(
            status_line(b"HTTP/1.1 503 Service Unavailable\r\nContent-"),
            Some(503)
        );
        assert_eq!(status_line(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(status_line(b"HTTP/1.1 20"), None, "cut inside the code");
        assert_eq!(status_line(b"HTTP/2 200 \r\n\r\n"), None);
        assert_eq!(status_line(b"HTTP/1.1 2x0 OK\r\n"), None);
        assert_eq!(status_line(b""), None);
    }
}
