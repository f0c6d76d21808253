//! The drive loop, written once for every std client.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::platform::Instant;

use futures_util::future::{select, Either, FutureExt};
use refresh_machine::RequestSpec;

use crate::builder::{BoxFuture, Refresher};
use crate::coordinator::Coordinator;
use crate::error::{ConfigError, Error, Last};
use crate::exchange::{Claim, Exchange, Finished, InFlight};
use crate::grant;
use crate::refusal::{Judged, Refusals, REFUSAL_BODY_LIMIT};
use crate::session::{
    RefreshReply, RefreshTicket, RequestHandle, Session, Start, Step, TokenPair, Waiter,
};
use crate::thread_mark::marked;
use crate::transport::{Attempt, ReadAhead, Sent, TokenAnswer, Transport};
use crate::{AllowedOrigin, Origins, Secret};

/// The error type of a driver on transport `T`.
pub type DriverError<T> = Error<<T as Transport>::Detail, <T as Transport>::Error>;

/// A session, its policy (allowed origins, refresher) and a transport: all a
/// client crate wraps. Shared by every clone of the client (`Arc`).
pub struct Driver<T> {
    /// The session and its refresh in flight: this client's own, or shared
    /// with clients of other kinds ([`Builder::share_session`](crate::Builder::share_session)).
    pub(crate) shared: Arc<SharedSession>,
    pub(crate) origins: Origins,
    pub(crate) refresher: Arc<Refresher>,
    /// Shared with the refresh exchange in flight, which outlives the
    /// request that started it.
    pub(crate) transport: Arc<T>,
    pub(crate) refusals: Refusals,
}

/// What clients sharing a session share: the machine, the refresh exchange
/// in flight (any client's request drives or picks up any client's refresh),
/// and the token file.
pub(crate) struct SharedSession {
    pub(crate) session: Session,
    pub(crate) exchange: InFlight,
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    pub(crate) token_file: Option<Arc<crate::TokenFile>>,
    /// The store shared with other processes, if the refresh is coordinated.
    pub(crate) coordinator: Option<Arc<dyn Coordinator>>,
    /// The store generation of the pair the session holds.
    pub(crate) generation: Arc<AtomicU64>,
}

impl SharedSession {
    /// Apply refresh `id`'s reply (its exchange is over), once: the caller
    /// holds the exchange's claim.
    fn apply(&self, id: refresh_machine::RefreshId, reply: &RefreshReply) {
        self.exchange.end(id);
        self.session.complete_refresh(id, reply);
    }

    /// Start the session from the store's pair, if it holds one newer than
    /// the session's (a login made by another process, or at build).
    pub(crate) fn adopt(&self, stored: &crate::Stored) {
        let known = self.generation.load(Ordering::Acquire);
        if let (Some(tokens), true) = (&stored.tokens, stored.generation > known) {
            if self.session.login(tokens).is_ok() {
                self.generation.store(stored.generation, Ordering::Release);
            }
        }
    }
}

impl<T> std::fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("origins", &self.origins)
            .field("session", &self.shared.session)
            .field("exchange", &self.shared.exchange)
            .finish_non_exhaustive()
    }
}

impl<T> Driver<T> {
    /// The shared session (state, tokens, snapshot).
    pub fn session(&self) -> &Session {
        &self.shared.session
    }

    /// What this driver shares with the clients that share its session.
    pub(crate) fn shared_session(&self) -> &Arc<SharedSession> {
        &self.shared
    }
}

impl<T: Transport> Driver<T> {
    /// The session's identity for the re-entry check (its address, stable
    /// behind its `Arc`): a refresher calling through any client that
    /// shares the session would wait for its own refresh.
    fn identity(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// The origins that get the token.
    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    /// The file the tokens are kept in, if one was configured
    /// ([`Builder::token_file`](crate::Builder::token_file)).
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    pub fn token_file(&self) -> Option<&crate::TokenFile> {
        self.shared.token_file.as_deref()
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Install tokens obtained elsewhere (storage, an authorization-code flow),
    /// or after `LoginRequired`.
    pub fn set_tokens(&self, tokens: &TokenPair) -> Result<(), DriverError<T>> {
        self.shared.session.login(tokens)?;
        // Coordinated: the other processes adopt this login at their next refresh.
        self.replace_in_store(Some(tokens))
    }

    /// End the session; pending requests fail `LoggedOut`. Coordinated,
    /// the store is cleared too: the other processes lose the session at
    /// their next refresh. The session here ends whatever happens; an error
    /// ([`StoreUnavailable`](Error::StoreUnavailable)) says the store could
    /// not be cleared, and the other processes are still logged in.
    pub fn logout(&self) -> Result<(), DriverError<T>> {
        self.shared.session.logout();
        self.replace_in_store(None)
    }

    /// A login or logout, published to the store shared with other
    /// processes (if any) as its next generation. A store that cannot be
    /// written leaves this process's session as it is, and says so; the
    /// others keep the store's pair.
    fn replace_in_store(&self, tokens: Option<&TokenPair>) -> Result<(), DriverError<T>> {
        if let Some(store) = &self.shared.coordinator {
            let generation = store_now(store.replace(tokens))
                .ok_or(Error::StoreUnavailable)?
                .map_err(|_| Error::StoreUnavailable)?;
            self.shared.generation.store(generation, Ordering::Release);
        }
        Ok(())
    }

    /// End the session here, then revoke its tokens at the server (see
    /// [`Builder::revocation_endpoint`](crate::Builder::revocation_endpoint);
    /// without one, only the local logout). Pending requests fail
    /// `LoggedOut` at once and the tokens are dropped (the persist hook is
    /// told to delete them) before the revocation goes out, so nothing uses
    /// them meanwhile; a refresh in flight is awaited first (bounded by its
    /// deadline), so that the pair it brings is the one revoked. A revocation the server did not confirm (a status
    /// other than 2xx, a transport failure) is an error; the session is
    /// logged out either way.
    pub async fn logout_and_revoke(&self) -> Result<(), DriverError<T>> {
        // A refresh in flight may have rotated the pair at the server:
        // revoke what it brings, not the token it spent.
        self.settle().await;
        let tokens = self.shared.session.tokens();
        // Revoked whether or not the store could be cleared (then the
        // other processes' pair dies at the server); that failure is
        // reported once the revocation went well.
        let cleared = self.logout();
        let Some(tokens) = tokens else {
            return cleared;
        };
        let request = match &*self.refresher {
            Refresher::Endpoint(e) | Refresher::ClientCredentials(e) => {
                e.revocation_request(&tokens)?
            }
            Refresher::Json(e) => e.logout_request(&tokens)?,
            Refresher::Custom(_) | Refresher::None => None,
        };
        let Some(request) = request else {
            return cleared;
        };
        let answer = self
            .transport
            .token_call(request, None)
            .await
            .map_err(Error::Transport)?;
        if (200..300).contains(&answer.status) {
            cleared
        } else {
            Err(grant::EndpointError::Status {
                status: answer.status,
            }
            .into())
        }
    }

    /// Log in with the resource-owner password grant at the token endpoint
    /// (tests, demos and first-party apps).
    pub async fn login_with_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(), DriverError<T>> {
        let Refresher::Endpoint(endpoint) = &*self.refresher else {
            return Err(ConfigError::NoTokenEndpoint.into());
        };
        let request = endpoint.password_request(username, password)?;
        let answer = self.login_call(request).await?;
        let tokens = grant::parse_login(answer.status, answer.body)?;
        self.set_tokens(&tokens)
    }

    /// A login request's answer, read whole (a longer one is `ResponseTooLarge`).
    async fn login_call(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<TokenAnswer, DriverError<T>> {
        let answer = self
            .transport
            .token_call(request, None)
            .await
            .map_err(Error::Transport)?;
        if answer.body_too_large {
            return Err(grant::EndpointError::ResponseTooLarge {
                status: answer.status,
            }
            .into());
        }
        Ok(answer)
    }

    /// Install the tokens of a login answer as your backend wrote it: the
    /// body your login route returned (read with the JSON endpoint's field
    /// names, or RFC 6749's with a token endpoint). See [`TokenPair::from_json`].
    pub fn set_tokens_from_json(&self, body: &[u8]) -> Result<(), DriverError<T>> {
        let mut body = body.to_vec();
        let tokens = TokenPair::from_json(&mut body, &self.answer_format());
        zeroize::Zeroize::zeroize(&mut body);
        self.set_tokens(&tokens?)
    }

    /// Log in at an app backend's login route: `POST url` with `credentials`
    /// as a JSON body (for example `{"username": .., "password": ..}`), the
    /// answer read as [`set_tokens_from_json`](Self::set_tokens_from_json)
    /// does. A 2xx without an access token, or any other status, is an
    /// [`EndpointError`](grant::EndpointError); the session is unchanged.
    pub async fn login_with_json(
        &self,
        url: &str,
        credentials: impl Into<Vec<u8>>,
    ) -> Result<(), DriverError<T>> {
        let url = grant::endpoint_url(url)?;
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(credentials.into())
            .map_err(Error::InvalidRequest)?;
        let answer = self.login_call(request).await?;
        let format = self.answer_format();
        let format = refresh_machine::grant::TokenFormat {
            refusals: refresh_machine::grant::Refusals::Statuses,
            ..format
        };
        let tokens = grant::parse_login_as(answer.status, answer.body, &format)?;
        self.set_tokens(&tokens)
    }

    /// How token answers are read: the JSON endpoint's names, else RFC 6749's.
    fn answer_format(&self) -> refresh_machine::grant::TokenFormat<'_> {
        match &*self.refresher {
            Refresher::Json(endpoint) => endpoint.format(),
            _ => refresh_machine::grant::TokenFormat::OAUTH2,
        }
    }

    /// Drive one request to its outcome: send it with the current token,
    /// refresh when it is refused or expired (once for everyone waiting),
    /// retry when the rules allow, and return the response to deliver or the
    /// typed failure. More requests than the session has slots queue for one.
    ///
    /// `allowed` is the proof, from [`Origins::allows`], that the request's
    /// origin may carry the token; `attempt` must send it there.
    pub async fn drive<A: Attempt<T>>(
        &self,
        allowed: AllowedOrigin,
        spec: RequestSpec,
        attempt: &mut A,
    ) -> Result<T::Response, DriverError<T>> {
        let _ = allowed;
        if REFRESHING.with(Cell::get) == self.identity() {
            return Err(Error::ReentrantRefresh);
        }
        let mut handle = self.start(spec).await?;
        let mut last = Last::None;
        loop {
            // Whoever comes by progresses the refresh in flight, so a refresh
            // every waiter left is picked up (its answer may be waiting).
            self.poll_exchange().await;
            match handle.next_step() {
                Step::Send { token, .. } => match self.judged(attempt.send(&token).await).await {
                    Ok((response, judged, token_sent)) => {
                        let (status, headers) = T::head(&response);
                        let (status, token_sent) = match judged {
                            Judged::AsItIs => (status, token_sent),
                            Judged::Refused => (http::StatusCode::UNAUTHORIZED, token_sent),
                            Judged::NotAboutTheToken => (status, false),
                        };
                        handle.http_response(status, headers, token_sent);
                        last = Last::Response(response);
                    }
                    Err(e) => {
                        handle.send_error(T::error_kind(&e));
                        last = Last::Error(e);
                    }
                },
                Step::Refresh(ticket) => self.start_refresh(ticket).await,
                Step::Wait(waiter) => self.wait(waiter).await,
                Step::Done(Ok(())) => {
                    return match last {
                        Last::Response(response) => Ok(response),
                        Last::Error(e) => Err(Error::Transport(e)),
                        // Not reached: the machine delivers only after a reported response.
                        Last::None => Err(Error::Failed(refresh_machine::Failure::LoggedOut)),
                    };
                }
                Step::Done(Err(failure)) => {
                    let last = match last {
                        Last::Response(r) => Last::Response(T::detail(r)),
                        Last::Error(e) => Last::Error(e),
                        Last::None => Last::None,
                    };
                    return Err(Error::from_failure(failure, last));
                }
            }
        }
    }

    /// A currently valid access token, refreshed first if it expired (or is
    /// about to): for what is not an HTTP request through this client (a
    /// websocket handshake, gRPC metadata, a signed URL). It counts as a
    /// request while it waits (single-flight with every other one). If the
    /// token is then refused, call [`access_token_after_refusal`](Self::access_token_after_refusal).
    pub async fn access_token(&self) -> Result<Secret, DriverError<T>> {
        self.token_for_use(None).await
    }

    /// A new access token after `refused` was refused (a websocket closed
    /// for an expired token, say): one refresh for everyone who reports the
    /// same token, none if it was replaced already (the current one is
    /// returned), and the rules of a 401 otherwise (a fresh token refused
    /// again fails `Unauthorized` instead of refreshing in a loop).
    pub async fn access_token_after_refusal(
        &self,
        refused: &Secret,
    ) -> Result<Secret, DriverError<T>> {
        self.token_for_use(Some(refused)).await
    }

    /// The machine's token for a use outside this client, after reporting
    /// `refused` as a 401 if it is the one the machine hands out.
    async fn token_for_use(&self, refused: Option<&Secret>) -> Result<Secret, DriverError<T>> {
        if REFRESHING.with(Cell::get) == self.identity() {
            return Err(Error::ReentrantRefresh);
        }
        let spec = RequestSpec::from_http(&http::Method::GET, &http::HeaderMap::new());
        let mut handle = self.start(spec).await?;
        let mut reported = false;
        loop {
            self.poll_exchange().await;
            match handle.next_step() {
                Step::Send { token, .. } => {
                    if reported || refused != Some(&token) {
                        // Not used by a request: dropping the handle
                        // cancels it, nothing is reported for the token.
                        return Ok(token);
                    }
                    reported = true;
                    handle.http_response(
                        http::StatusCode::UNAUTHORIZED,
                        &http::HeaderMap::new(),
                        true,
                    );
                }
                Step::Refresh(ticket) => self.start_refresh(ticket).await,
                Step::Wait(waiter) => self.wait(waiter).await,
                Step::Done(Ok(())) => {
                    return Err(Error::Failed(refresh_machine::Failure::LoggedOut))
                }
                Step::Done(Err(failure)) => return Err(Error::from_failure(failure, Last::None)),
            }
        }
    }

    /// A slot in the session for `spec`, queueing while every slot is taken.
    async fn start(&self, spec: RequestSpec) -> Result<RequestHandle<'_>, DriverError<T>> {
        self.adopt_login_elsewhere().await;
        let mut queue_deadline = None;
        loop {
            match self.shared.session.start_or_wait(spec, queue_deadline)? {
                Start::Started(handle) => return Ok(handle),
                Start::Full(waiter) => {
                    queue_deadline = waiter.deadline();
                    self.transport.wait(waiter).await;
                }
            }
        }
    }

    /// Coordinated and logged out: a login made by another process (or one
    /// made since this one was lost) is in the store; adopt it. Only a
    /// coordinated session that is not active reads the store here.
    async fn adopt_login_elsewhere(&self) {
        let Some(store) = &self.shared.coordinator else {
            return;
        };
        if self.shared.session.state() == refresh_machine::SessionState::Active {
            return;
        }
        if let Ok(stored) = store.read().await {
            self.shared.adopt(&stored);
        }
    }

    /// Start the refresh this request was given.
    async fn start_refresh(&self, ticket: RefreshTicket<'_>) {
        // From here the exchange belongs to the session: if this request is
        // dropped, its waiters (or the next request) carry the same token
        // call on. (A refresher that panics while making its future still
        // holds the ticket, whose drop reports the failure.)
        let timeout = ticket.deadline().saturating_duration_since(Instant::now());
        let call = self.refresh(ticket.refresh_token(), timeout);
        let id = ticket.detach();
        // At its end, a reply is applied to the session at once, whoever
        // is left to wait for it (none, if every request was dropped: the
        // rotated pair is kept and persisted all the same); a panic is left
        // to a request, which raises it. Then the waiters are woken. A
        // weak handle: an exchange left in flight does not keep a dropped
        // session alive.
        let session = Arc::downgrade(&self.shared);
        let ended = move |finished: Option<Finished>, claim: Claim| {
            let Some(shared) = session.upgrade() else {
                return;
            };
            if let Some(Finished::Reply(reply)) = finished {
                if claim.claim() {
                    shared.apply(id, &reply);
                }
            }
            shared.session.wake_all();
        };
        let transport = Arc::clone(&self.transport);
        let exchange = InFlight::prepare(id, call, |task| transport.spawn(task), ended);
        // Polled here first: a blocking refresher runs in this request,
        // never in another one's non-blocking poll.
        if !self.poll_once(&exchange).await {
            self.shared.exchange.install(exchange);
            // Requests told to wait before it was installed look again, to
            // drive it while they wait.
            self.shared.session.wake_all();
        }
        // The request then waits for it like any other (and hears of a
        // logout meanwhile).
    }

    /// Wait for the session to change; while a refresh is in flight, drive it.
    async fn wait(&self, waiter: Waiter) {
        match self.shared.exchange.get() {
            Some(exchange) => {
                // An exchange that ended after this request last looked,
                // but before its waiter listened, woke nobody: look again.
                if self.poll_once(&exchange).await {
                    return;
                }
                let wait = std::pin::pin!(self.transport.wait(waiter));
                if let Either::Right((finished, _)) = select(wait, exchange.future.clone()).await {
                    self.finish(&exchange, finished);
                }
            }
            None => self.transport.wait(waiter).await,
        }
    }

    /// A sent request's response with what the refusal rules make of it
    /// (the body read first if a predicate must see it).
    async fn judged(
        &self,
        sent: Result<Sent<T::Response>, T::Error>,
    ) -> Result<(T::Response, Judged, bool), T::Error> {
        let Sent {
            response,
            token_sent,
        } = sent?;
        if self.refusals.is_default() {
            return Ok((response, Judged::AsItIs, token_sent));
        }
        let (status, _) = T::head(&response);
        let ReadAhead { response, body } = if self.refusals.needs_body(status) {
            T::read_body(response, REFUSAL_BODY_LIMIT).await?
        } else {
            ReadAhead {
                response,
                body: None,
            }
        };
        let (status, headers) = T::head(&response);
        let judged = self.refusals.judge(status, headers, body.as_deref());
        Ok((response, judged, token_sent))
    }

    /// Wait for the refresh exchange in flight, if any, and apply its
    /// outcome. Await it before the application exits: a refresh the server
    /// may have processed would otherwise end with the process, and its
    /// rotated pair with it. (An exchange every request left is applied when
    /// it ends, by its task, for the clients that run it in the background,
    /// the reqwest and tower ones; else by the next request or this.)
    pub async fn settle(&self) {
        if let Some(exchange) = self.shared.exchange.get() {
            let finished = exchange.future.clone().await;
            self.finish(&exchange, finished);
        }
    }

    /// Poll the refresh exchange in flight once, without waiting; apply its
    /// outcome if it has one.
    async fn poll_exchange(&self) {
        if let Some(exchange) = self.shared.exchange.get() {
            self.poll_once(&exchange).await;
        }
    }

    /// Poll `exchange` once, without waiting; apply its outcome if it has
    /// one. Whether it had.
    async fn poll_once(&self, exchange: &Exchange) -> bool {
        let mut future = exchange.future.clone();
        match std::future::poll_fn(|cx| Poll::Ready(future.poll_unpin(cx))).await {
            Poll::Ready(finished) => {
                self.finish(exchange, finished);
                true
            }
            Poll::Pending => false,
        }
    }

    /// Apply an exchange's outcome to the session, once (every poller sees it).
    fn finish(&self, exchange: &Exchange, finished: Finished) {
        if !exchange.claim_outcome() {
            return;
        }
        match finished {
            Finished::Reply(reply) => self.shared.apply(exchange.id, &reply),
            Finished::Panicked(payload) => {
                self.shared
                    .apply(exchange.id, &RefreshReply::Transient { retry_after: None });
                let payload = payload.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(payload) = payload {
                    std::panic::resume_unwind(payload);
                }
            }
        }
    }

    /// The token call of one refresh with the configured refresher, as a
    /// future that owns what it needs (it may outlive the request).
    fn refresh(
        &self,
        refresh_token: &Secret,
        timeout: Duration,
    ) -> BoxFuture<'static, RefreshReply> {
        let Some(store) = &self.shared.coordinator else {
            return token_call_of(
                &self.refresher,
                self.identity(),
                &self.transport,
                refresh_token,
                timeout,
            );
        };
        // Coordinated, the refresher is called only when the protocol
        // decides to present the refresh token (under the lease, after the
        // re-read): a blocking one would present it here and now.
        let (refresher, me, transport) = (
            Arc::clone(&self.refresher),
            self.identity(),
            Arc::clone(&self.transport),
        );
        let token = refresh_token.clone();
        let call: DeferredCall =
            Box::new(move |timeout| token_call_of(&refresher, me, &transport, &token, timeout));
        let run = CoordinatedRun {
            store: Arc::clone(store),
            generation: Arc::clone(&self.shared.generation),
            refresh_token: refresh_token.clone(),
            timeout,
            config: self.shared.session.config(),
        };
        let transport = Arc::clone(&self.transport);
        Box::pin(async move { run.run(call, transport).await })
    }
}

/// A refresher's call, made when the coordinated run decides to present
/// the refresh token, with the time it has.
type DeferredCall = Box<dyn FnOnce(Duration) -> BoxFuture<'static, RefreshReply> + Send>;

/// The refresher's call, uncoordinated, by the driver `me`.
fn token_call_of<T: Transport>(
    refresher: &Refresher,
    me: usize,
    transport: &Arc<T>,
    refresh_token: &Secret,
    timeout: Duration,
) -> BoxFuture<'static, RefreshReply> {
    match refresher {
        Refresher::Custom(f) => {
            // Marked as this driver's refresher while it runs (a blocking
            // one runs in the call, an async one in its polls): a request
            // it makes through this same client fails fast instead of
            // waiting for the refresh it is part of.
            let mut reply = marked(&REFRESHING, me, || f(refresh_token.clone()));
            Box::pin(std::future::poll_fn(move |cx| {
                marked(&REFRESHING, me, || reply.as_mut().poll(cx))
            }))
        }
        Refresher::None => Box::pin(std::future::ready(RefreshReply::Rejected)),
        Refresher::Endpoint(endpoint) => token_call(
            transport,
            endpoint.refresh_request(refresh_token),
            timeout,
            |answer| grant::classify(answer.status, &answer.headers, answer.body).0,
        ),
        Refresher::ClientCredentials(endpoint) => token_call(
            transport,
            endpoint.client_credentials_request(),
            timeout,
            |answer| {
                // Nothing to lose by asking again: no refresh token is
                // spent, and a machine has no login to go back to. A
                // 200 without a token is an outage; a refused grant,
                // the client's configuration (both retried later).
                match grant::classify(answer.status, &answer.headers, answer.body).0 {
                    RefreshReply::Unusable { .. } => RefreshReply::Transient { retry_after: None },
                    RefreshReply::Rejected => RefreshReply::Misconfigured(Some(
                        refresh_machine::grant::OAuthError::InvalidGrant,
                    )),
                    reply => reply,
                }
            },
        ),
        Refresher::Json(endpoint) => {
            let classify = endpoint.clone();
            token_call(
                transport,
                endpoint.refresh_request(refresh_token),
                timeout,
                move |a| classify.classify(a.status, &a.headers, a.body).0,
            )
        }
    }
}

/// One refresh request to a token endpoint, its answer classified.
fn token_call<T: Transport>(
    transport: &Arc<T>,
    request: Result<http::Request<Vec<u8>>, grant::EndpointError>,
    timeout: Duration,
    classify: impl FnOnce(TokenAnswer) -> RefreshReply + Send + 'static,
) -> BoxFuture<'static, RefreshReply> {
    // Built locally: a failure here says nothing about the grant, which
    // was never presented.
    let Ok(request) = request else {
        return Box::pin(std::future::ready(RefreshReply::Misconfigured(None)));
    };
    let transport = Arc::clone(transport);
    Box::pin(async move {
        match transport.token_call(request, Some(timeout)).await {
            Ok(answer) if answer.body_too_large => grant::too_large(answer.status),
            Ok(answer) => classify(answer),
            Err(_) => grant::transport_failure(),
        }
    })
}

/// One refresh run through the protocol with the other processes
/// ([`refresh_machine::coordination`]).
struct CoordinatedRun {
    store: Arc<dyn Coordinator>,
    generation: Arc<AtomicU64>,
    /// The token presented if this process refreshes (kept in the published
    /// pair when the server does not rotate it).
    refresh_token: Secret,
    timeout: Duration,
    config: refresh_machine::Config,
}

impl CoordinatedRun {
    async fn run<T: Transport>(self, call: DeferredCall, transport: Arc<T>) -> RefreshReply {
        use refresh_machine::coordination::{
            Conclusion, CoordinatedRefresh, CoordinationConfig, Lease, StoreAction,
            StoreUnavailable,
        };
        let clock = refresh_machine::StdClock::new();
        let known = self.generation.load(Ordering::Acquire);
        let deadline = clock.now().saturating_add(self.timeout);
        let mut config = CoordinationConfig::for_deadline(self.config.refresh_timeout);
        config.recheck = self.store.recheck();
        let owner = crate::random_seed() | 1;
        let mut round = CoordinatedRefresh::new(known, owner, deadline, config);
        // Released if the run ends holding the lease without releasing it.
        let mut lease = LeaseGuard {
            store: Arc::clone(&self.store),
            owner: None,
        };
        let (mut call, mut reply, mut read) = (Some(call), None, None);
        // Taken before each read: a change after it (another process
        // publishing while this one reads or asks for the lease) wakes the
        // wait that may follow, instead of being missed until the re-check.
        let mut changed = None;
        while let Some(action) = round.poll_action() {
            match action {
                StoreAction::Read => {
                    changed = self.store.changed();
                    let result = self.store.read().await;
                    let generation = result.as_ref().map(|s| s.generation).map_err(|e| *e);
                    read = result.ok();
                    round.handle_read(clock.now(), generation);
                }
                StoreAction::TakeLease { owner, ttl } => {
                    lease.owner = Some(owner);
                    let taken = self.store.take_lease(owner, ttl).await;
                    if let Ok(Lease::Held { .. }) = taken {
                        lease.owner = None;
                    }
                    round.handle_lease(clock.now(), taken);
                }
                StoreAction::CallTokenEndpoint => {
                    // What is left of the deadline: the wait for another
                    // process's lease came out of it.
                    let left = deadline.saturating_duration_since(clock.now());
                    let answer = match call.take() {
                        Some(call) => call(left).await,
                        None => RefreshReply::Transient { retry_after: None },
                    };
                    let got = matches!(answer, RefreshReply::Tokens(_));
                    reply = Some(answer);
                    round.handle_token_call(clock.now(), got);
                }
                StoreAction::Publish { owner, expected } => {
                    let written = match &reply {
                        Some(RefreshReply::Tokens(pair)) => {
                            let mut pair = pair.clone();
                            if pair.refresh_token.is_none() {
                                // Not rotated: the one presented stays valid.
                                pair.refresh_token = Some(self.refresh_token.clone());
                            }
                            self.store.publish(owner, expected, &pair).await
                        }
                        _ => Err(StoreUnavailable),
                    };
                    round.handle_publish(clock.now(), written);
                }
                StoreAction::ReleaseLease { owner } => {
                    self.store.release(owner).await;
                    lease.owner = None;
                    round.handle_release(clock.now());
                }
                StoreAction::Wait { until } => {
                    let left = until.saturating_duration_since(clock.now());
                    let wait = left.min(self.store.recheck());
                    match changed.take().or_else(|| self.store.changed()) {
                        // Woken by the store's change since the last read,
                        // or at the re-check.
                        Some(listener) => {
                            let deadline = Instant::now() + wait;
                            transport.wait(Waiter::new(listener, Some(deadline))).await;
                        }
                        None => transport.sleep(wait).await,
                    }
                    round.handle_wake(clock.now());
                }
                // An operation this driver does not know: as an unreachable store.
                _ => return RefreshReply::Transient { retry_after: None },
            }
        }
        match round.conclusion() {
            Some(Conclusion::Adopt { generation }) => {
                match read.and_then(|stored| stored.tokens) {
                    Some(pair) => {
                        self.generation.store(generation, Ordering::Release);
                        RefreshReply::Tokens(pair)
                    }
                    // Logged out elsewhere.
                    None => RefreshReply::Rejected,
                }
            }
            Some(Conclusion::Refreshed { published }) => {
                if let Some(generation) = published {
                    self.generation.store(generation, Ordering::Release);
                }
                reply.unwrap_or(RefreshReply::Transient { retry_after: None })
            }
            _ => RefreshReply::Transient { retry_after: None },
        }
    }
}

/// The lease a coordinated run may hold: released when the run is dropped
/// before releasing it (its exchange replaced after a logout and login or
/// after its deadline, its refresher panicked). Else a `FileCoordinator`
/// keeps the lock for good, and no process sharing the store refreshes
/// again. A store whose release does not complete at once (a network one)
/// lets the lease lapse instead.
struct LeaseGuard {
    store: Arc<dyn Coordinator>,
    owner: Option<u64>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            let _ = self.store.release(owner).now_or_never();
        }
    }
}

std::thread_local! {
    /// The driver whose custom refresher is running on this thread (0: none).
    static REFRESHING: Cell<usize> = const { Cell::new(0) };
}

/// A store operation run from a synchronous call (`set_tokens`, `logout`,
/// building a client): to completion; in a browser, whose one thread must
/// never block, only if it is ready at once (`None` otherwise: the store
/// cannot take it now).
pub(crate) fn store_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    return Some(block_on(future));
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    return future.now_or_never();
}

/// Run a future to completion on this thread: a blocking client's drive loop.
///
/// Its futures never pend (they block the thread instead), so one poll with
/// a no-op waker finishes it, at no cost per call; a future that does pend is
/// handed to `pollster`, which parks the thread until it is woken. Not in a
/// browser, whose one thread must never block.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll};
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(futures_task::noop_waker_ref());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => pollster::block_on(future),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::block_on;

    /// Pends `n` times (waking itself each time), then yields `n`.
    struct PendsThenReady(u32, u32);

    impl Future for PendsThenReady {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.0 == self.1 {
                return Poll::Ready(self.1);
            }
            self.0 += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn block_on_finishes_ready_and_pending_futures() {
        assert_eq!(block_on(async { 7 }), 7);
        // One poll with the no-op waker, then the parking executor takes over.
        assert_eq!(block_on(PendsThenReady(0, 3)), 3);
    }
}
