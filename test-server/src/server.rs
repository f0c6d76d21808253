//! The loopback OAuth2 server.

mod browser;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::sync::{oneshot, Notify};

/// How the server behaves. Defaults: 60 s access tokens, user `alice`/`wonderland`,
/// public client `demo-client`, `expires_in` advertised.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Lifetime of access tokens (sub-second allowed).
    pub access_ttl: Duration,
    /// Put `expires_in` in token responses (many servers do; some do not).
    pub advertise_expiry: bool,
    /// The client id the token endpoint accepts.
    pub client_id: String,
    /// When set, the client must authenticate with HTTP Basic (RFC 6749 §2.3.1).
    pub client_secret: Option<String>,
    /// The resource owner for the password grant.
    pub username: String,
    /// Their password.
    pub password: String,
    /// Pad access tokens to at least this many bytes (to exercise token
    /// capacity limits); 0 leaves them short.
    pub access_token_padding: usize,
    /// Pad refresh tokens to at least this many bytes; 0 leaves them short.
    pub refresh_token_padding: usize,
    /// Added to every token-endpoint answer (a remote authorization server's
    /// round trip; the benchmarks use it). Zero by default.
    pub token_latency: Duration,
    /// Added to every resource answer (a remote API's round trip). Zero by default.
    pub resource_latency: Duration,
    /// A spent refresh token presented again within this long of its first
    /// use is answered with new tokens instead of revoking the family (the
    /// "reuse interval" or "grace period" of Auth0, Okta and others). Zero
    /// by default: strict, every reuse revokes.
    pub reuse_grace: Duration,
    /// Answer every 401 with a bare `WWW-Authenticate: Bearer realm="api"`,
    /// without an `error` code, whether the token is missing or expired (as
    /// Django REST framework's JWT authentication does). Off by default.
    pub bare_challenges: bool,
    /// Which kind of server this is: an RFC 6749 token endpoint (default)
    /// or a web tutorial's JSON backend.
    pub backend: Backend,
    /// The status of the answer to an expired, revoked or unknown access
    /// token (401 by default). Any other (403, Laravel's 419) comes with a
    /// JSON error code, `{"code":"TOKEN_EXPIRED","message":"jwt expired"}`,
    /// and no `WWW-Authenticate`. A missing token is still a 401.
    pub refused_status: u16,
    /// Answer cross-origin requests from any origin, for tests that run in a
    /// browser on another origin. Every answer (errors, 401s, 503s, token
    /// endpoint answers, `/counters`, the control routes) then carries
    /// `Access-Control-Allow-Origin: *` and exposes `WWW-Authenticate`,
    /// `Retry-After`, `Content-Type` and `Location`; an `OPTIONS` request to
    /// any path is a CORS preflight, answered 204 and counted nowhere (no
    /// counter moves, no fault is consumed). Off by default: `OPTIONS` is
    /// then routed as any other method.
    pub cors: bool,
    /// Serve the control routes, with which a test that cannot call this
    /// crate (one running in a browser) drives the server as
    /// [`AuthServer`]'s methods do. All take `POST` and query parameters
    /// (a body is ignored) and answer JSON; a bad or unknown parameter is a
    /// plain-text 400 with the reason, an unknown route a 404, another
    /// method a 405. Their requests are counted nowhere and touch no fault.
    ///
    /// - `/control/login`: [`AuthServer::login`] (which counts a login),
    ///   `{"access_token", "token_type": "Bearer", "refresh_token",
    ///   "expires_in", "expires_in_ms"}`: the lifetime in whole seconds,
    ///   rounded up (as the token endpoint writes it), and in milliseconds.
    /// - `/control/token-fault?kind=K&...&times=N`:
    ///   [`AuthServer::set_token_fault`]; `times` 1 by default, at least 1.
    ///   `kind=status&status=S[&retry_after=SECS]` ([`TokenFault::Status`],
    ///   S from 200 to 599), `kind=hang&ms=MS`, `kind=close`,
    ///   `kind=malformed`, `kind=redirect&port=PORT`,
    ///   `kind=huge&status=S&bytes=N` (N up to 16 MiB), `kind=late&ms=MS`,
    ///   `kind=unanswered&ms=MS` (MS up to an hour).
    /// - `/control/resource-fault?kind=K&...&times=N`:
    ///   [`AuthServer::set_resource_fault`];
    ///   `kind=unavailable[&retry_after=SECS]` (1 s by default),
    ///   `kind=always-unauthorized`, `kind=close-after-processing`.
    /// - `/control/clear-faults`, `/control/revoke-access-tokens`,
    ///   `/control/revoke-sessions`, `/control/reset`
    ///   ([`AuthServer::reset`]): `{"ok": true}`.
    ///
    /// Off by default: `/control/` is then an unknown path like any other.
    pub control: bool,
}

/// The shape of the server's authentication routes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// RFC 6749: `POST /token` with form-encoded password and refresh-token
    /// grants, OAuth error codes, `WWW-Authenticate` challenges.
    #[default]
    OAuth2,
    /// The Express/NestJS JWT backend of web tutorials: `POST /auth/login`
    /// with JSON `{"username", "password"}` and `POST /auth/refresh-token`
    /// with JSON `{"refreshToken"}`, both answered with camelCase
    /// `{"accessToken", "refreshToken"}` and no lifetime (the access token
    /// is a JWT whose `exp` claim carries it); a refused refresh token is a
    /// 403 `{"message"}`; an expired or unknown access token a plain 401
    /// without `WWW-Authenticate`. Rotation and reuse detection as in
    /// `OAuth2`. `POST /token` does not exist.
    AppJwt,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            access_ttl: Duration::from_secs(60),
            advertise_expiry: true,
            client_id: "demo-client".into(),
            client_secret: None,
            username: "alice".into(),
            password: "wonderland".into(),
            access_token_padding: 0,
            refresh_token_padding: 0,
            token_latency: Duration::ZERO,
            resource_latency: Duration::ZERO,
            reuse_grace: Duration::ZERO,
            bare_challenges: false,
            backend: Backend::OAuth2,
            refused_status: 401,
            cors: false,
            control: false,
        }
    }
}

/// A fault of the token endpoint, applied to the next `times` token requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFault {
    /// Answer with this status (e.g. 500, 503) and an optional `Retry-After` in seconds.
    Status(u16, Option<u64>),
    /// Do not answer for this long, then answer 504 without processing the grant.
    Hang(Duration),
    /// Close the connection without an answer.
    Close,
    /// Answer 200 with a body that is not valid JSON.
    Malformed,
    /// Answer 307 to `http://127.0.0.1:<port>/token` (another origin, e.g.
    /// a second server's token endpoint) without processing the grant.
    Redirect(u16),
    /// Answer this status with a body of this many bytes, without
    /// processing the grant.
    Huge(u16, usize),
    /// Process the grant (rotate, spend the refresh token), then answer
    /// only after this long: a slow authorization server.
    Late(Duration),
    /// Process the grant, hold the connection this long, then close it
    /// without an answer: the new tokens are issued and never delivered.
    Unanswered(Duration),
}

/// A fault of the resource routes, applied to the next `times` resource requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceFault {
    /// 503 with `Retry-After` in seconds.
    Unavailable(u64),
    /// 401 `invalid_token`, whatever the token.
    AlwaysUnauthorized,
    /// Process the request (an order is recorded), then close the connection
    /// without an answer: the response is lost after the server acted.
    CloseAfterProcessing,
}

/// What the server has seen. Fetch with [`AuthServer::counters`] or `GET /counters`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Password grants answered with tokens.
    pub logins: u64,
    /// Refresh-token grant requests (every one, whatever its outcome).
    pub refresh_calls: u64,
    /// Client-credentials grants answered with a token.
    pub client_credentials_grants: u64,
    /// Revocation requests (RFC 7009 `/revoke`, or an app backend's
    /// `/auth/logout`) that revoked a token's family.
    pub revocations: u64,
    /// Refresh grants answered with new tokens.
    pub refresh_ok: u64,
    /// Spent refresh tokens presented again (each one revoked a family).
    pub reuse_detections: u64,
    /// Spent refresh tokens presented again within
    /// [`ServerOptions::reuse_grace`] (answered with new tokens).
    pub grace_reuses: u64,
    /// Token requests answered `invalid_grant`.
    pub invalid_grants: u64,
    /// Token requests hit by a fault.
    pub token_faults: u64,
    /// Resource requests answered 2xx.
    pub ok: u64,
    /// Resource requests whose token was refused (401, or
    /// [`ServerOptions::refused_status`]).
    pub unauthorized: u64,
    /// Resource requests answered 403 `insufficient_scope`.
    pub forbidden: u64,
    /// Resource requests hit by a fault.
    pub resource_faults: u64,
    /// Orders recorded by `POST /api/orders` (including duplicates).
    pub orders: u64,
    /// Orders whose `Idempotency-Key` had been seen before.
    pub duplicate_orders: u64,
    /// Requests of any kind that carried an `Authorization` header.
    pub with_authorization: u64,
    /// Requests of any kind.
    pub requests: u64,
    /// Bytes of request bodies received, every request counted.
    pub request_body_bytes: u64,
}

#[derive(Debug)]
struct Access {
    family: usize,
    expires: Instant,
    revoked: bool,
}

#[derive(Debug)]
struct Refresh {
    family: usize,
    /// When it was first exchanged.
    spent: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    families_revoked: Vec<bool>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    issued: u64,
    counters: Counters,
    token_fault: Option<(TokenFault, u32)>,
    resource_fault: Option<(ResourceFault, u32)>,
    idempotency_keys: HashSet<String>,
    /// Requests to `/api/slow` parked until released.
    held: u64,
}

struct Shared {
    options: ServerOptions,
    state: Mutex<State>,
    gate: Notify,
    gate_open: std::sync::atomic::AtomicBool,
    held_changed: std::sync::Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // What `AuthServer`'s methods do, shared with the control routes.

    fn login(&self) -> IssuedTokens {
        let mut st = self.lock();
        st.counters.logins += 1;
        issue(&self.options, &mut st, None)
    }

    fn set_token_fault(&self, fault: TokenFault, times: u32) {
        self.lock().token_fault = Some((fault, times));
    }

    fn set_resource_fault(&self, fault: ResourceFault, times: u32) {
        self.lock().resource_fault = Some((fault, times));
    }

    fn clear_faults(&self) {
        let mut st = self.lock();
        st.token_fault = None;
        st.resource_fault = None;
    }

    fn revoke_access_tokens(&self) {
        for a in self.lock().access.values_mut() {
            a.revoked = true;
        }
    }

    fn revoke_sessions(&self) {
        for f in self.lock().families_revoked.iter_mut() {
            *f = true;
        }
    }

    fn reset(&self) {
        let mut st = self.lock();
        st.token_fault = None;
        st.resource_fault = None;
        for a in st.access.values_mut() {
            a.revoked = true;
        }
        for f in st.families_revoked.iter_mut() {
            *f = true;
        }
        st.idempotency_keys.clear();
        st.counters = Counters::default();
    }
}

/// A token pair issued by [`AuthServer::login`].
#[derive(Clone)]
pub struct IssuedTokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Its lifetime.
    pub expires_in: Duration,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A strict OAuth2 authorization + resource server on 127.0.0.1, in-process.
///
/// Routes: `POST /token` (password and refresh_token grants, rotation, reuse
/// detection; client credentials), `POST /revoke` (RFC 7009),
/// `GET /api/public` (no token needed), `GET /api/me`, `POST /api/orders` (counts `Idempotency-Key`
/// duplicates), `GET /api/admin` (403 `insufficient_scope`), `GET /api/slow`
/// (parked until [`AuthServer::release`]), `GET /counters`; with
/// [`ServerOptions::cors`], CORS preflights (`OPTIONS`) on every path; with
/// [`ServerOptions::control`], `POST /control/...`.
/// Stopped (and its thread joined) on drop.
pub struct AuthServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AuthServer {
    /// Start with default options.
    pub fn start() -> std::io::Result<AuthServer> {
        Self::start_with(ServerOptions::default())
    }

    /// Start on an ephemeral loopback port.
    pub fn start_with(options: ServerOptions) -> std::io::Result<AuthServer> {
        // A backlog for a thousand simultaneous connects (bursts in the
        // benchmarks); the default of 128 would drop SYNs and add seconds.
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        socket.listen(2048)?;
        let std_listener: std::net::TcpListener = socket.into();
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(State::default()),
            gate: Notify::new(),
            gate_open: std::sync::atomic::AtomicBool::new(false),
            held_changed: std::sync::Condvar::new(),
        });
        let (tx, mut rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("authserver-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(_) => return,
                    };
                    let mut connections = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let shared = server_shared.clone();
                                connections.spawn(async move {
                                    let io = hyper_util::rt::TokioIo::new(stream);
                                    let service = hyper::service::service_fn(move |req| {
                                        let shared = shared.clone();
                                        async move { handle(shared, req).await }
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(io, service)
                                        .await;
                                });
                            }
                        }
                    }
                    connections.abort_all();
                });
            })?;
        Ok(AuthServer {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `origin() + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.origin(), path)
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        self.url("/token")
    }

    /// Where refresh tokens are exchanged: `/token`, or an app backend's
    /// `/auth/refresh-token`.
    pub fn refresh_url(&self) -> String {
        match self.shared.options.backend {
            Backend::OAuth2 => self.token_url(),
            Backend::AppJwt => self.url("/auth/refresh-token"),
        }
    }

    /// An app backend's login route, `/auth/login` (JSON credentials).
    pub fn login_url(&self) -> String {
        self.url("/auth/login")
    }

    /// The options it runs with.
    pub fn options(&self) -> &ServerOptions {
        &self.shared.options
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters
    }

    /// Log in directly (as the password grant would): a new token family.
    pub fn login(&self) -> IssuedTokens {
        self.shared.login()
    }

    /// Fail the next `times` token requests with `fault`.
    pub fn set_token_fault(&self, fault: TokenFault, times: u32) {
        self.shared.set_token_fault(fault, times);
    }

    /// Fail the next `times` resource requests with `fault`.
    pub fn set_resource_fault(&self, fault: ResourceFault, times: u32) {
        self.shared.set_resource_fault(fault, times);
    }

    /// Remove all faults.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Revoke every access token issued so far (refresh tokens stay valid),
    /// as a server does after a key rotation.
    pub fn revoke_access_tokens(&self) {
        self.shared.revoke_access_tokens();
    }

    /// Revoke every token family: refresh tokens answer `invalid_grant` from now on.
    pub fn revoke_sessions(&self) {
        self.shared.revoke_sessions();
    }

    /// A fresh start for the next test on a shared server, in one step:
    /// clear the faults, revoke every token issued so far (access tokens
    /// and families), forget the `Idempotency-Key`s seen and zero the
    /// counters. Tokens issued later are new and valid; requests parked on
    /// `/api/slow` and the [`release`](Self::release) gate are left as they are.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Block until `n` requests are parked on `/api/slow` (false on timeout).
    pub fn wait_held(&self, n: u64, timeout: Duration) -> bool {
        let st = self.shared.lock();
        let (st, result) = self
            .shared
            .held_changed
            .wait_timeout_while(st, timeout, |st| st.held < n)
            .unwrap_or_else(|e| e.into_inner());
        drop(st);
        !result.timed_out()
    }

    /// Let every parked `/api/slow` request (and later ones) through.
    pub fn release(&self) {
        self.shared
            .gate_open
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.gate.notify_waiters();
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.release();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn issue(options: &ServerOptions, st: &mut State, family: Option<usize>) -> IssuedTokens {
    let family = family.unwrap_or_else(|| {
        st.families_revoked.push(false);
        st.families_revoked.len() - 1
    });
    st.issued += 1;
    let n = st.issued;
    // Unguessable enough for a test server; unique per issue.
    let mut access_token = match options.backend {
        Backend::OAuth2 => format!("at-{family}-{n}-{:016x}", mix(n ^ 0xA5A5)),
        Backend::AppJwt => jwt(options, family, n),
    };
    while access_token.len() < options.access_token_padding {
        access_token.push('x');
    }
    let mut refresh_token = format!("rt-{family}-{n}-{:016x}", mix(n ^ 0x5A5A));
    while refresh_token.len() < options.refresh_token_padding {
        refresh_token.push('y');
    }
    st.access.insert(
        access_token.clone(),
        Access {
            family,
            expires: Instant::now() + options.access_ttl,
            revoked: false,
        },
    );
    st.refresh.insert(
        refresh_token.clone(),
        Refresh {
            family,
            spent: None,
        },
    );
    IssuedTokens {
        access_token,
        refresh_token,
        expires_in: options.access_ttl,
    }
}

/// `url?to=<to>` (`to` percent-encoded): a URL on the server's open
/// redirect (`/api/redirect`) that sends the client to `to`.
pub fn redirect_to(url: &str, to: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(to.as_bytes()).collect();
    format!("{url}?to={encoded}")
}

/// A JWT as such backends sign them (`HS256`; the signature here is a
/// hash, never checked by clients), its `exp` claim the access token's
/// expiry in whole Unix seconds, rounded down: a client that trusts it
/// refreshes a little early, never late.
fn jwt(options: &ServerOptions, family: usize, n: u64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let exp = (now + options.access_ttl).as_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "id": family, "jti": n, "iat": now.as_secs(), "exp": exp,
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = URL_SAFE_NO_PAD.encode(mix(n ^ 0x0F0F).to_be_bytes());
    format!("{header}.{payload}.{signature}")
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

type Resp = Response<Full<Bytes>>;

/// Returned as the service's error: hyper then drops the connection unanswered.
#[derive(Debug)]
struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by fault injection")
    }
}

impl std::error::Error for CloseConnection {}

fn json(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn oauth_error(status: StatusCode, code: &str) -> Resp {
    json(status, format!(r#"{{"error":"{code}"}}"#))
}

fn with_retry_after(mut r: Resp, secs: Option<u64>) -> Resp {
    if let Some(s) = secs {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

fn take_fault<T: Copy>(slot: &mut Option<(T, u32)>) -> Option<T> {
    let (fault, times) = slot.as_mut()?;
    let fault = *fault;
    *times -= 1;
    if *times == 0 {
        *slot = None;
    }
    Some(fault)
}

/// A configured round trip; none (not even a yield) when zero.
async fn simulated_latency(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, CloseConnection> {
    let options = &shared.options;
    if options.cors && req.method() == Method::OPTIONS {
        // A preflight: before any counter or fault.
        return Ok(browser::preflight(req.headers()));
    }
    let answer = if options.control && req.uri().path().starts_with("/control/") {
        Ok(browser::control(&shared, req).await)
    } else {
        route(shared.clone(), req).await
    };
    match answer {
        Ok(r) if options.cors => Ok(browser::with_cors(r)),
        answer => answer,
    }
}

/// The server's own routes, every request counted.
async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, CloseConnection> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    {
        let mut st = shared.lock();
        st.counters.requests += 1;
        st.counters.request_body_bytes += body.len() as u64;
        if parts.headers.contains_key(AUTHORIZATION) {
            st.counters.with_authorization += 1;
        }
    }
    match (parts.method.clone(), parts.uri.path()) {
        (Method::POST, "/token") if shared.options.backend == Backend::OAuth2 => {
            simulated_latency(shared.options.token_latency).await;
            let params = form_urlencoded::parse(&body).into_owned().collect();
            token(&shared, &parts.headers, params).await
        }
        (Method::POST, "/revoke") if shared.options.backend == Backend::OAuth2 => {
            let params: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            if !client_ok(&shared.options, &parts.headers, &params) {
                return Ok(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"));
            }
            revoke(&shared, params.get("token").map(String::as_str));
            // RFC 7009 §2.2: 200 whether or not the token was valid.
            Ok(json(StatusCode::OK, String::new()))
        }
        (Method::POST, "/auth/logout") if shared.options.backend == Backend::AppJwt => {
            let json_body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            revoke(
                &shared,
                json_body.get("refreshToken").and_then(|v| v.as_str()),
            );
            Ok(json(StatusCode::OK, r#"{"message":"Logged out"}"#.into()))
        }
        (Method::POST, route @ ("/auth/login" | "/auth/refresh-token"))
            if shared.options.backend == Backend::AppJwt =>
        {
            simulated_latency(shared.options.token_latency).await;
            token(
                &shared,
                &parts.headers,
                app_grant(&shared.options, route, &body),
            )
            .await
        }
        (Method::GET, "/counters") => {
            let c = shared.lock().counters;
            Ok(json(
                StatusCode::OK,
                serde_json::to_string(&c).unwrap_or_default(),
            ))
        }
        (_, path) if path.starts_with("/api/") => {
            simulated_latency(shared.options.resource_latency).await;
            resource(&shared, &parts, path).await
        }
        _ => Ok(json(
            StatusCode::NOT_FOUND,
            r#"{"error":"not_found"}"#.into(),
        )),
    }
}

/// Revoke the family of `token` (a refresh or an access token), if known.
fn revoke(shared: &Shared, token: Option<&str>) {
    let mut st = shared.lock();
    let Some(token) = token else { return };
    let family = st
        .refresh
        .get(token)
        .map(|r| r.family)
        .or_else(|| st.access.get(token).map(|a| a.family));
    if let Some(family) = family {
        st.families_revoked[family] = true;
        st.counters.revocations += 1;
    }
}

/// An app backend's JSON login or refresh body, as the grant it stands for.
fn app_grant(options: &ServerOptions, route: &str, body: &[u8]) -> HashMap<String, String> {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let mut params = HashMap::from([("client_id".to_owned(), options.client_id.clone())]);
    if route == "/auth/login" {
        params.insert("grant_type".into(), "password".into());
        params.extend(field("username").map(|u| ("username".to_owned(), u)));
        params.extend(field("password").map(|p| ("password".to_owned(), p)));
    } else {
        params.insert("grant_type".into(), "refresh_token".into());
        params.extend(field("refreshToken").map(|r| ("refresh_token".to_owned(), r)));
    }
    params
}

async fn token(
    shared: &Shared,
    headers: &hyper::HeaderMap,
    params: HashMap<String, String>,
) -> Result<Resp, CloseConnection> {
    let fault = {
        let mut st = shared.lock();
        let f = take_fault(&mut st.token_fault);
        if f.is_some() {
            st.counters.token_faults += 1;
        }
        f
    };
    if params.get("grant_type").map(String::as_str) == Some("refresh_token") {
        shared.lock().counters.refresh_calls += 1;
    }
    match fault {
        Some(TokenFault::Status(code, retry)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(with_retry_after(
                oauth_error(status, "temporarily_unavailable"),
                retry,
            ));
        }
        Some(TokenFault::Hang(d)) => {
            // A gateway's timeout: the grant is never processed.
            tokio::time::sleep(d).await;
            return Ok(oauth_error(
                StatusCode::GATEWAY_TIMEOUT,
                "temporarily_unavailable",
            ));
        }
        Some(TokenFault::Close) => return Err(CloseConnection),
        Some(TokenFault::Malformed) => {
            return Ok(json(StatusCode::OK, r#"{"access_token": "#.into()))
        }
        Some(TokenFault::Redirect(port)) => {
            let mut r = json(StatusCode::TEMPORARY_REDIRECT, String::new());
            let location = format!("http://127.0.0.1:{port}/token");
            r.headers_mut().insert(
                hyper::header::LOCATION,
                HeaderValue::from_str(&location).expect("a valid Location"),
            );
            return Ok(r);
        }
        Some(TokenFault::Huge(code, bytes)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(json(status, " ".repeat(bytes)));
        }
        Some(TokenFault::Late(_) | TokenFault::Unanswered(_)) | None => {}
    }
    // Processed now, whatever happens to the answer.
    let answer = grant(shared, headers, &params);
    match fault {
        Some(TokenFault::Late(d)) => {
            tokio::time::sleep(d).await;
            Ok(answer)
        }
        Some(TokenFault::Unanswered(d)) => {
            tokio::time::sleep(d).await;
            Err(CloseConnection)
        }
        _ => Ok(answer),
    }
}

/// Process a grant: check the client, then the password or the refresh
/// token (rotation, reuse detection), and issue.
fn grant(shared: &Shared, headers: &hyper::HeaderMap, params: &HashMap<String, String>) -> Resp {
    let options = &shared.options;
    if !client_ok(options, headers, params) {
        let mut r = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="token""#),
        );
        return r;
    }
    let mut st = shared.lock();
    let issued = match params.get("grant_type").map(String::as_str) {
        Some("password") => {
            if params.get("username") != Some(&options.username)
                || params.get("password") != Some(&options.password)
            {
                st.counters.invalid_grants += 1;
                return refused(options);
            }
            st.counters.logins += 1;
            issue(options, &mut st, None)
        }
        Some("refresh_token") => {
            let presented = params.get("refresh_token").cloned().unwrap_or_default();
            let Some(r) = st.refresh.get(&presented) else {
                st.counters.invalid_grants += 1;
                return refused(options);
            };
            let (family, spent) = (r.family, r.spent);
            let within_grace = spent.is_some_and(|at| at.elapsed() <= options.reuse_grace);
            if within_grace && !st.families_revoked[family] {
                // A retry of an exchange whose answer was lost: tolerated.
                st.counters.grace_reuses += 1;
                st.counters.refresh_ok += 1;
                let issued = issue(options, &mut st, Some(family));
                return token_response(options, &issued);
            }
            if spent.is_some() {
                // Reuse: someone holds a copy of a rotated token. Revoke the family.
                st.counters.reuse_detections += 1;
                st.counters.invalid_grants += 1;
                st.families_revoked[family] = true;
                return refused(options);
            }
            if st.families_revoked[family] {
                st.counters.invalid_grants += 1;
                return refused(options);
            }
            if let Some(r) = st.refresh.get_mut(&presented) {
                r.spent = Some(Instant::now());
            }
            st.counters.refresh_ok += 1;
            issue(options, &mut st, Some(family))
        }
        Some("client_credentials") if options.client_secret.is_some() => {
            st.counters.client_credentials_grants += 1;
            let issued = issue(options, &mut st, None);
            // No refresh token: the client repeats the grant.
            let body = serde_json::json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": options.access_ttl.as_millis().div_ceil(1000).max(1) as u64,
            });
            return json(StatusCode::OK, body.to_string());
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    token_response(options, &issued)
}

/// A refused password or refresh token: `invalid_grant`, or an app
/// backend's 403 with a message.
fn refused(options: &ServerOptions) -> Resp {
    match options.backend {
        Backend::OAuth2 => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
        Backend::AppJwt => json(
            StatusCode::FORBIDDEN,
            r#"{"message":"Refresh token is not in database!"}"#.into(),
        ),
    }
}

/// A 200 with the issued pair, as a token endpoint writes it.
fn token_response(options: &ServerOptions, issued: &IssuedTokens) -> Resp {
    if options.backend == Backend::AppJwt {
        let body = serde_json::json!({
            "id": 1,
            "username": options.username,
            "accessToken": issued.access_token,
            "refreshToken": issued.refresh_token,
        });
        return json(StatusCode::OK, body.to_string());
    }
    let mut body = serde_json::json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "refresh_token": issued.refresh_token,
    });
    if options.advertise_expiry {
        // Whole seconds, rounded up, at least 1.
        let secs = options.access_ttl.as_millis().div_ceil(1000).max(1) as u64;
        body["expires_in"] = secs.into();
    }
    json(StatusCode::OK, body.to_string())
}

fn client_ok(
    options: &ServerOptions,
    headers: &hyper::HeaderMap,
    params: &HashMap<String, String>,
) -> bool {
    match &options.client_secret {
        Some(secret) => {
            let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
                return false;
            };
            let Some(encoded) = value.strip_prefix("Basic ") else {
                return false;
            };
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
                return false;
            };
            let Ok(decoded) = String::from_utf8(decoded) else {
                return false;
            };
            let Some((id, pw)) = decoded.split_once(':') else {
                return false;
            };
            let id: String = form_urlencoded::parse(format!("a={id}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let pw: String = form_urlencoded::parse(format!("a={pw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            id == options.client_id && &pw == secret
        }
        None => params.get("client_id") == Some(&options.client_id),
    }
}

fn unauthorized(options: &ServerOptions, st: &mut State, code: Option<&str>) -> Resp {
    st.counters.unauthorized += 1;
    if options.backend == Backend::AppJwt {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"message":"Unauthorized! Access Token was expired!"}"#.into(),
        );
    }
    let mut r = json(
        StatusCode::UNAUTHORIZED,
        format!(r#"{{"error":"{}"}}"#, code.unwrap_or("unauthorized")),
    );
    let challenge = match code {
        Some(code) => format!(r#"Bearer realm="api", error="{code}""#),
        None => r#"Bearer realm="api""#.into(),
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    r
}

async fn resource(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    path: &str,
) -> Result<Resp, CloseConnection> {
    if path == "/api/redirect" {
        // Open redirect for tests: `?to=<url>`; answers before any token check.
        let to = parts
            .uri
            .query()
            .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "to"))
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| "/api/me".into());
        let mut r = json(StatusCode::FOUND, String::new());
        if let Ok(v) = HeaderValue::from_str(&to) {
            r.headers_mut().insert(hyper::header::LOCATION, v);
        }
        return Ok(r);
    }
    if path == "/api/public" {
        // A public route: no token needed, none checked.
        let mut st = shared.lock();
        st.counters.ok += 1;
        return Ok(json(StatusCode::OK, r#"{"public":true}"#.into()));
    }
    if path == "/api/slow" {
        {
            let mut st = shared.lock();
            st.held += 1;
        }
        shared.held_changed.notify_all();
        loop {
            let notified = shared.gate.notified();
            if shared.gate_open.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            notified.await;
        }
    }
    let mut st = shared.lock();
    let fault = take_fault(&mut st.resource_fault);
    if fault.is_some() {
        st.counters.resource_faults += 1;
    }
    match fault {
        Some(ResourceFault::Unavailable(secs)) => {
            return Ok(with_retry_after(
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"error":"unavailable"}"#.into(),
                ),
                Some(secs),
            ))
        }
        Some(ResourceFault::AlwaysUnauthorized) => {
            return Ok(unauthorized(
                &shared.options,
                &mut st,
                Some("invalid_token"),
            ))
        }
        Some(ResourceFault::CloseAfterProcessing) | None => {}
    }
    let token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(token) = token else {
        return Ok(unauthorized(&shared.options, &mut st, None));
    };
    let valid = st.access.get(&token).is_some_and(|a| {
        !a.revoked && a.expires > Instant::now() && !st.families_revoked[a.family]
    });
    if !valid && shared.options.refused_status != 401 {
        st.counters.unauthorized += 1;
        let status =
            StatusCode::from_u16(shared.options.refused_status).unwrap_or(StatusCode::UNAUTHORIZED);
        return Ok(json(
            status,
            r#"{"code":"TOKEN_EXPIRED","message":"jwt expired"}"#.into(),
        ));
    }
    if !valid {
        let code = (!shared.options.bare_challenges).then_some("invalid_token");
        return Ok(unauthorized(&shared.options, &mut st, code));
    }
    let response = match (&parts.method, path) {
        (&Method::GET, "/api/me") | (&Method::GET, "/api/slow") => {
            json(StatusCode::OK, r#"{"user":"alice"}"#.into())
        }
        (&Method::GET, "/api/blob") => {
            // `?size=N`: a body of N bytes (capped at 1 MiB), for buffer limits.
            let size = parts
                .uri
                .query()
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "size"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0)
                .min(1 << 20);
            json(StatusCode::OK, "x".repeat(size))
        }
        (&Method::POST, "/api/orders") => {
            st.counters.orders += 1;
            if let Some(key) = parts
                .headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
            {
                if !st.idempotency_keys.insert(key.to_owned()) {
                    st.counters.duplicate_orders += 1;
                }
            }
            let n = st.counters.orders;
            json(StatusCode::CREATED, format!(r#"{{"order":{n}}}"#))
        }
        (&Method::GET, "/api/admin") => {
            st.counters.forbidden += 1;
            let mut r = json(
                StatusCode::FORBIDDEN,
                r#"{"error":"insufficient_scope"}"#.into(),
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    r#"Bearer realm="api", error="insufficient_scope", scope="admin""#,
                ),
            );
            return Ok(r);
        }
        _ => {
            return Ok(json(
                StatusCode::NOT_FOUND,
                r#"{"error":"not_found"}"#.into(),
            ))
        }
    };
    if fault == Some(ResourceFault::CloseAfterProcessing) {
        return Err(CloseConnection);
    }
    st.counters.ok += 1;
    Ok(response)
}
