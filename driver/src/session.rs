//! One machine behind a mutex, driven by the requests themselves.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use event_listener::{Event, EventListener};
use refresh_machine::{
    Action, Config, Error, Failure, Instant, RefreshId, RefreshOutcome, RequestId, RequestSpec,
    Response, RetryReason, SendErrorKind, StdClock, StoredTokens, TokenSet,
};

use crate::capacity::{Machine, TokenCapacity};
use crate::platform::SystemTime;
use crate::secret::Secret;

/// Request slots per session. A full table is [`Error::Full`], returned to the caller.
pub const CAPACITY: usize = 256;
/// How long the adapters queue a request for a free slot when all
/// [`CAPACITY`] are taken, before failing it `Full`.
pub const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Tokens as the driver should store them (owned copies; redacted in `Debug`).
///
/// Expiries are wall-clock instants, so a pair read back after a restart does
/// not overstate its validity (a lifetime relative to when it was stored
/// would).
///
/// A pair is `Serialize` and `Deserialize` as
/// stored tokens: `access_token`, `refresh_token`, and the expiries
/// `expires_at` and `refresh_expires_at` as absolute Unix times in whole
/// seconds (integers; an expiry is truncated to the second, never moved
/// later). A field that is `None` is left out when writing; when reading,
/// a missing (or `null`) optional field is `None`, unknown fields are
/// ignored, and an expiry too far out for `SystemTime` is `None` (no known
/// expiry). This is the one way a token is written out on purpose: `Debug`
/// stays redacted.
///
/// ```json
/// {"access_token":"…","refresh_token":"…","expires_at":1764153600}
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPair {
    /// The access token.
    pub access_token: Secret,
    /// The refresh token, if any.
    pub refresh_token: Option<Secret>,
    /// When the access token expires, if known.
    pub expires_at: Option<SystemTime>,
    /// When the refresh token expires, if known (`refresh_expires_in`): an
    /// expired one is never presented.
    pub refresh_expires_at: Option<SystemTime>,
}

impl TokenPair {
    /// An access token with no refresh token and no known expiry.
    pub fn new(access_token: impl Into<Secret>) -> TokenPair {
        TokenPair {
            access_token: access_token.into(),
            refresh_token: None,
            expires_at: None,
            refresh_expires_at: None,
        }
    }

    /// The same pair with this refresh token.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<Secret>) -> TokenPair {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// The same pair with the access token expiring at `at`.
    pub fn with_expires_at(mut self, at: SystemTime) -> TokenPair {
        self.expires_at = Some(at);
        self
    }

    /// The tokens of a login or refresh answer as your backend wrote it
    /// (`body`, decoded in place: wipe it after), read with `format`'s field
    /// names: hand over what your login route returned, for example
    /// `TokenPair::from_json(&mut body, &TokenFormat::CAMEL_CASE)` for
    /// `{"accessToken": .., "refreshToken": ..}`. Other fields are ignored.
    ///
    /// Without a lifetime in the answer, the `exp` claim of a JWT access
    /// token (read, not verified: [`refresh_machine::jwt`]) becomes
    /// [`expires_at`](Self::expires_at), so the session refreshes ahead of
    /// expiry instead of after a 401.
    pub fn from_json(
        body: &mut [u8],
        format: &refresh_machine::grant::TokenFormat<'_>,
    ) -> Result<TokenPair, crate::grant::EndpointError> {
        let answer = refresh_machine::grant::parse_token_response_as(body, format)?;
        Ok(TokenPair::from_token_set(&answer.token_set()))
    }

    /// Owned copies of tokens as the token endpoint gave them, their
    /// lifetimes turned into wall-clock expiries (`None` past what
    /// `SystemTime` can hold); without a lifetime, a JWT's `exp` claim.
    pub(crate) fn from_token_set(set: &TokenSet<'_>) -> TokenPair {
        let wall_clock_in = |d: Duration| SystemTime::now().checked_add(d);
        let access = set.access_token.expose_secret();
        TokenPair {
            access_token: Secret::from(access),
            refresh_token: set.refresh_token.map(|r| Secret::from(r.expose_secret())),
            expires_at: set
                .expires_in
                .and_then(wall_clock_in)
                .or_else(|| jwt_expiry(access)),
            refresh_expires_at: set.refresh_expires_in.and_then(wall_clock_in),
        }
    }

    /// Owned copies of the machine's tokens, their expiries moved from the
    /// machine's clock (`now` there) to the wall clock.
    fn from_stored(t: StoredTokens<'_>, now: Instant) -> TokenPair {
        let wall = SystemTime::now();
        let to_wall = |e: Instant| {
            if e >= now {
                wall.checked_add(e.saturating_duration_since(now))
            } else {
                wall.checked_sub(now.saturating_duration_since(e))
            }
        };
        TokenPair {
            access_token: Secret::from(t.access_token.expose_secret()),
            refresh_token: t.refresh_token.map(|r| Secret::from(r.expose_secret())),
            expires_at: t.expires_at.and_then(to_wall),
            refresh_expires_at: t.refresh_expires_at.and_then(to_wall),
        }
    }

    /// As the machine's input: lifetimes left now (zero if already past).
    pub fn as_token_set(&self) -> TokenSet<'_> {
        let left = |at: SystemTime| {
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        };
        let mut set = TokenSet::new(self.access_token.expose());
        if let Some(r) = &self.refresh_token {
            set = set.with_refresh_token(r.expose());
        }
        if let Some(at) = self.expires_at {
            set = set.with_expires_in(left(at));
        }
        if let Some(at) = self.refresh_expires_at {
            set = set.with_refresh_expires_in(left(at));
        }
        set
    }
}

/// The expiry of a JWT access token just issued, as a wall-clock instant (a
/// hint, not verified): its lifetime (`exp - iat`, see
/// [`refresh_machine::jwt::lifetime`]) from now.
fn jwt_expiry(access_token: &str) -> Option<SystemTime> {
    let mut scratch = vec![0u8; refresh_machine::jwt::scratch_len(access_token)];
    let lifetime =
        refresh_machine::jwt::lifetime(access_token, &mut scratch, StdClock::unix_now())?;
    SystemTime::now().checked_add(Duration::from_secs(lifetime))
}

/// [`TokenPair`] as stored tokens.
mod stored {
    use std::time::Duration;

    use crate::platform::{SystemTime, UNIX_EPOCH};

    use super::TokenPair;
    use crate::secret::Secret;

    /// A pair as written: borrowed tokens, Unix seconds.
    #[derive(serde::Serialize)]
    struct Written<'a> {
        access_token: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        refresh_token: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        refresh_expires_at: Option<u64>,
    }

    /// A pair as read. Unknown fields are ignored; missing options are `None`.
    #[derive(serde::Deserialize)]
    struct Read {
        access_token: ReadSecret,
        #[serde(default)]
        refresh_token: Option<ReadSecret>,
        #[serde(default)]
        expires_at: Option<u64>,
        #[serde(default)]
        refresh_expires_at: Option<u64>,
    }

    /// A token read into a [`Secret`] at once: if a later field fails to
    /// parse, the tokens already read are wiped on drop.
    struct ReadSecret(Secret);

    impl<'de> serde::Deserialize<'de> for ReadSecret {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            String::deserialize(d).map(|s| ReadSecret(Secret::from(s)))
        }
    }

    /// Whole seconds since the Unix epoch, truncated (0 before it).
    fn unix_seconds(at: SystemTime) -> u64 {
        at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    /// `None` past what `SystemTime` holds: no known expiry.
    fn from_unix_seconds(seconds: u64) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
    }

    impl serde::Serialize for TokenPair {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Written {
                access_token: self.access_token.expose(),
                refresh_token: self.refresh_token.as_ref().map(Secret::expose),
                expires_at: self.expires_at.map(unix_seconds),
                refresh_expires_at: self.refresh_expires_at.map(unix_seconds),
            }
            .serialize(s)
        }
    }

    impl<'de> serde::Deserialize<'de> for TokenPair {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let read = Read::deserialize(d)?;
            Ok(TokenPair {
                access_token: read.access_token.0,
                refresh_token: read.refresh_token.map(|r| r.0),
                expires_at: read.expires_at.and_then(from_unix_seconds),
                refresh_expires_at: read.refresh_expires_at.and_then(from_unix_seconds),
            })
        }
    }
}

/// What a token endpoint answered, owned (see [`crate::grant::classify`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshReply {
    /// New tokens; `refresh_token` is `None` when the server did not rotate it.
    Tokens(TokenPair),
    /// The server answered 200 with no usable access token (a DPoP token,
    /// an `error` field, a body that is not JSON): the refresh token
    /// presented may be spent. A new one it carried is kept and presented by
    /// the next attempt; without one the session is lost.
    Unusable {
        /// A new refresh token the answer carried, if any.
        refresh_token: Option<Secret>,
    },
    /// The grant is dead (`invalid_grant`): the user must log in.
    Rejected,
    /// The token endpoint refused the client, not the grant
    /// (`invalid_client`, `invalid_scope`...), or the refresh request could
    /// not be built (`None`): tokens kept, requests fail
    /// [`Error::RefreshMisconfigured`](crate::Error::RefreshMisconfigured).
    Misconfigured(Option<refresh_machine::grant::OAuthError>),
    /// Try again later (network error, 5xx, 429, malformed body).
    Transient {
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
}

type PersistHook = Box<dyn Fn(Option<&TokenPair>) + Send + Sync>;
type LoginRequiredHook = Box<dyn Fn() + Send + Sync>;

/// Callbacks for session events. Called without the session's lock held.
#[derive(Default)]
pub struct Hooks {
    /// The tokens changed: store them; `None` means delete them.
    pub persist: Option<PersistHook>,
    /// The session is lost (signalled once per lost session).
    pub login_required: Option<LoginRequiredHook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("persist", &self.persist.is_some())
            .field("login_required", &self.login_required.is_some())
            .finish()
    }
}

enum Notice {
    /// The tokens as of change number `.0` (numbered under the machine's lock,
    /// so in the order the tokens changed).
    Persist(u64, Option<TokenPair>),
    /// The session is lost (why, for the `tracing` feature's event).
    LoginRequired(trace::LostReason),
}

/// A session shared by every request of a client: `Send + Sync`, put it in an `Arc`.
///
/// Each request drives the machine itself through its [`RequestHandle`]:
/// it asks for the next [`Step`], performs it (send, refresh) and reports the
/// result. A request that has nothing to do gets a [`Waiter`] that wakes on the
/// next change or at the machine's next deadline: no polling loop, no sleeps.
/// The refresh is performed by whichever request claims it first.
pub struct Session {
    machine: Mutex<Machine>,
    changed: Event,
    /// Notified (one listener at a time) whenever a request's slot is freed.
    slots: Event,
    clock: StdClock,
    hooks: Hooks,
    /// Token changes numbered so far (under the machine's lock).
    changes: std::sync::atomic::AtomicU64,
    /// The number of the last change handed to the persist hook. Held while
    /// the hook runs: hook calls never overlap, and a change older than one
    /// already stored is skipped.
    persisted: Mutex<u64>,
    /// Renewed by repeating a grant that needs no refresh token (client
    /// credentials): the machine holds [`GRANT_STAND_IN`] in its place.
    renew_by_grant: bool,
    /// Refresh attempts under way, for the `tracing` feature's spans (an
    /// empty type without it).
    refreshes: trace::Refreshes,
}

/// What the machine holds as the refresh token of a session renewed by
/// repeating a grant (client credentials), and as its access token before
/// the first grant: never sent anywhere (the grant ignores it, and an access
/// token that arrives expired is never sent), never shown (stripped from
/// [`Session::tokens`] and the persist hook).
const GRANT_STAND_IN: &str = "client-credentials-grant";

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("machine", &*self.lock())
            .finish_non_exhaustive()
    }
}

/// The next thing a request must do.
#[derive(Debug)]
pub enum Step<'s> {
    /// Send (or re-send) the request with `Authorization: Bearer <token>`,
    /// then report with [`RequestHandle::response`] or [`RequestHandle::send_error`].
    Send {
        /// Token to attach.
        token: Secret,
        /// `Some` when this is a retry.
        retry: Option<RetryReason>,
    },
    /// Perform the refresh, then [`RefreshTicket::complete`] it.
    Refresh(RefreshTicket<'s>),
    /// Nothing to do yet: wait, then ask again.
    Wait(Waiter),
    /// The request is over: deliver the last response, or fail.
    Done(Result<(), Failure>),
}

/// Parks a request until the session changes or its next deadline passes.
#[derive(Debug)]
pub struct Waiter {
    listener: EventListener,
    deadline: Option<crate::platform::Instant>,
}

impl Waiter {
    /// A waiter on `listener` until `deadline`.
    pub fn new(listener: EventListener, deadline: Option<crate::platform::Instant>) -> Waiter {
        Waiter { listener, deadline }
    }

    /// Block the thread until woken or the deadline passes (not in a
    /// browser, whose one thread must never block: await
    /// [`into_parts`](Self::into_parts)' listener there).
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    pub fn wait_blocking(self) {
        use event_listener::Listener;
        match self.deadline {
            Some(d) => {
                let _ = self.listener.wait_deadline(d);
            }
            None => self.listener.wait(),
        }
    }

    /// When the waiter stops waiting, if it has a deadline.
    pub fn deadline(&self) -> Option<crate::platform::Instant> {
        self.deadline
    }

    /// For async drivers: a future that resolves on the next change, and the
    /// deadline to race it against (with the runtime's timer).
    pub fn into_parts(self) -> (EventListener, Option<crate::platform::Instant>) {
        (self.listener, self.deadline)
    }
}

/// The right (and duty) to perform one refresh. Dropped without
/// [`complete`](Self::complete) or [`detach`](Self::detach) (the performing
/// request was cancelled or panicked before the token call began), it
/// reports a transient failure so another request takes over at once
/// instead of waiting for the refresh deadline. Once the token call has
/// begun, the server may process it whatever happens to the caller: the
/// [`Driver`](crate::Driver) detaches the ticket and keeps the exchange
/// for the session (see its run loop).
pub struct RefreshTicket<'s> {
    session: &'s Session,
    id: RefreshId,
    refresh_token: Secret,
    deadline: crate::platform::Instant,
    done: bool,
}

impl std::fmt::Debug for RefreshTicket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTicket")
            .field("id", &self.id)
            .field("refresh_token", &self.refresh_token)
            .finish()
    }
}

impl RefreshTicket<'_> {
    /// The refresh token to present to the token endpoint (and nowhere else).
    pub fn refresh_token(&self) -> &Secret {
        &self.refresh_token
    }

    /// When the session stops waiting for this refresh: the token call must
    /// end by then (its outcome counts as a transient failure after it).
    pub fn deadline(&self) -> crate::platform::Instant {
        self.deadline
    }

    /// Report the token endpoint's answer.
    pub fn complete(mut self, reply: RefreshReply) {
        self.done = true;
        self.session.complete_refresh(self.id, &reply);
    }

    /// Take the duty out of the ticket: the caller must report the outcome
    /// of refresh `id` with [`Session::complete_refresh`] (until then the
    /// session waits for it, up to the deadline).
    pub fn detach(mut self) -> RefreshId {
        self.done = true;
        self.id
    }
}

impl Drop for RefreshTicket<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.session
                .complete_refresh(self.id, &RefreshReply::Transient { retry_after: None });
        }
    }
}

/// What [`Session::start_or_wait`] gives.
#[derive(Debug)]
pub enum Start<'s> {
    /// The request has a slot.
    Started(RequestHandle<'s>),
    /// Every slot is taken: wait, then ask again.
    Full(Waiter),
}

/// One request's handle on the session. Dropping it before [`Step::Done`]
/// cancels the request (its slot is released).
#[derive(Debug)]
pub struct RequestHandle<'s> {
    session: &'s Session,
    id: RequestId,
    finished: bool,
    /// The machine's time at the last `next_step` (the send, for a response).
    sent_at: Instant,
}

impl Session {
    /// A logged-out session. `seed` feeds backoff jitter: pass real randomness
    /// (e.g. from the OS) in production; tests may fix it.
    pub fn new(config: Config, seed: u64, hooks: Hooks) -> Session {
        Session::with_token_capacity(config, seed, hooks, TokenCapacity::Standard)
    }

    /// [`new`](Self::new), holding tokens up to `capacity`.
    pub fn with_token_capacity(
        config: Config,
        seed: u64,
        hooks: Hooks,
        capacity: TokenCapacity,
    ) -> Session {
        Session {
            machine: Mutex::new(Machine::new(capacity, config, seed)),
            changed: Event::new(),
            slots: Event::new(),
            clock: StdClock::new(),
            hooks,
            changes: std::sync::atomic::AtomicU64::new(0),
            persisted: Mutex::new(0),
            renew_by_grant: false,
            refreshes: trace::Refreshes::default(),
        }
    }

    /// A session renewed by repeating a grant that needs no refresh token
    /// (client credentials), started with no token: the first request (or
    /// every request of a first burst) waits for one grant. The same
    /// single-flight, backoff and stale-401 rules as a refresh apply.
    pub(crate) fn renewed_by_grant(mut self) -> Session {
        self.renew_by_grant = true;
        let none_yet = TokenPair::new(GRANT_STAND_IN)
            .with_refresh_token(GRANT_STAND_IN)
            .with_expires_at(SystemTime::UNIX_EPOCH);
        {
            let mut m = self.lock();
            let now = self.clock.now();
            // A stand-in of a few header-safe bytes: always accepted.
            let _ = m.login(now, none_yet.as_token_set());
            // Nothing the application has to store or delete: its persist
            // hook is not told (a `None` would delete the tokens it stored).
            drop(self.collect_notices(&mut m));
        }
        self
    }

    /// The pair as the application sees it: no stand-in for a grant.
    fn shown(&self, pair: TokenPair) -> Option<TokenPair> {
        if !self.renew_by_grant {
            return Some(pair);
        }
        if pair.access_token.expose() == GRANT_STAND_IN {
            return None;
        }
        let refresh_token = pair.refresh_token.filter(|r| r.expose() != GRANT_STAND_IN);
        Some(TokenPair {
            refresh_token,
            ..pair
        })
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // A panic while holding the lock cannot leave the machine half-updated
        // (every input is applied as one call), so poisoning is ignored.
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Feed one input under the lock, then (lock released) deliver the session
    /// notices it produced and wake every parked request: a change may have
    /// released waiters or queued a refresh that a parked request can perform.
    fn apply<R>(&self, input: impl FnOnce(&mut Machine, Instant) -> R) -> R {
        self.apply_at(None, input)
    }

    /// [`apply`](Self::apply) at `now`, or at the clock's time when `None`.
    fn apply_at<R>(
        &self,
        now: Option<Instant>,
        input: impl FnOnce(&mut Machine, Instant) -> R,
    ) -> R {
        self.apply_then(now, input, |_| {})
    }

    /// [`apply_at`](Self::apply_at), calling `then` with the input's result
    /// once the lock is released, before the notices are delivered.
    fn apply_then<R>(
        &self,
        now: Option<Instant>,
        input: impl FnOnce(&mut Machine, Instant) -> R,
        then: impl FnOnce(&R),
    ) -> R {
        let (result, notices) = {
            let mut m = self.lock();
            let now = now.unwrap_or_else(|| self.clock.now());
            let result = input(&mut m, now);
            (result, self.collect_notices(&mut m))
        };
        then(&result);
        self.deliver(notices);
        self.changed.notify(usize::MAX);
        result
    }

    /// Wake every parked request, to look at the session again.
    pub(crate) fn wake_all(&self) {
        self.changed.notify(usize::MAX);
    }

    /// Install tokens (first login, or after `LoginRequired`).
    pub fn login(&self, tokens: &TokenPair) -> Result<(), Error> {
        let result = if self.renew_by_grant && tokens.refresh_token.is_none() {
            let renewable = tokens.clone().with_refresh_token(GRANT_STAND_IN);
            self.apply(|m, now| m.login(now, renewable.as_token_set()))
        } else {
            self.apply(|m, now| m.login(now, tokens.as_token_set()))
        };
        // A login ends any refresh round.
        self.refreshes.round_over();
        result
    }

    /// End the session: every pending request fails `LoggedOut`.
    pub fn logout(&self) {
        self.apply(|m, now| m.logout(now));
        self.refreshes.round_over();
    }

    /// The current tokens, if logged in.
    pub fn tokens(&self) -> Option<TokenPair> {
        let m = self.lock();
        let now = self.clock.now();
        let pair = m.tokens().map(|t| TokenPair::from_stored(t, now));
        drop(m);
        pair.and_then(|p| self.shown(p))
    }

    /// The longest token the session holds.
    pub fn token_capacity(&self) -> TokenCapacity {
        self.lock().capacity()
    }

    /// The limits the session runs with.
    pub fn config(&self) -> Config {
        *self.lock().config()
    }

    /// Where the session stands.
    pub fn state(&self) -> refresh_machine::SessionState {
        self.lock().session()
    }

    /// Counts describing the machine (requests live, waiting, refresh in flight...).
    pub fn snapshot(&self) -> refresh_machine::Snapshot {
        self.lock().snapshot()
    }

    /// Begin a request; `Err(Full)` at once when every slot is taken.
    pub fn start(&self, spec: RequestSpec) -> Result<RequestHandle<'_>, Error> {
        match self.start_or_wait(spec, Some(crate::platform::Instant::now()))? {
            Start::Started(handle) => Ok(handle),
            // A deadline of now never queues.
            Start::Full(_) => Err(Error::Full),
        }
    }

    /// Begin a request, or, when all [`CAPACITY`] slots are taken, get a
    /// [`Waiter`] that wakes when one is freed (then call again with the
    /// waiter's [`deadline`](Waiter::deadline)). Bursts larger than the
    /// session queue here instead of failing `Full`; past `deadline` the
    /// answer is `Err(Full)`. `None` means [`SLOT_WAIT`] from the moment the
    /// table is first found full, so a request that gets a slot at once
    /// reads no clock for it.
    pub fn start_or_wait(
        &self,
        spec: RequestSpec,
        deadline: Option<crate::platform::Instant>,
    ) -> Result<Start<'_>, Error> {
        let (id, notices) = {
            let mut m = self.lock();
            let now = self.clock.now();
            match m.start_request(now, spec) {
                Ok(id) => (id, self.collect_notices(&mut m)),
                Err(Error::Full)
                    if deadline.is_none_or(|d| crate::platform::Instant::now() < d) =>
                {
                    let deadline =
                        deadline.unwrap_or_else(|| crate::platform::Instant::now() + SLOT_WAIT);
                    // Listen under the lock: a slot freed after this wakes us.
                    let listener = self.slots.listen();
                    return Ok(Start::Full(Waiter {
                        listener,
                        deadline: Some(deadline),
                    }));
                }
                Err(e) => return Err(e),
            }
        };
        self.deliver(notices);
        self.changed.notify(usize::MAX);
        Ok(Start::Started(RequestHandle {
            session: self,
            id,
            finished: false,
            sent_at: Instant::ZERO,
        }))
    }

    /// A request's slot was freed: let one more queued request start.
    /// `additional`: a plain `notify(1)` is a no-op while an earlier woken
    /// waiter has not run yet, so slots freed in a quick row would wake one
    /// waiter between them.
    fn slot_freed(&self) {
        self.slots.notify_additional(1);
    }

    /// Drain persist/login-required notices; leave a queued refresh for a request to claim.
    fn collect_notices(&self, m: &mut Machine) -> Vec<Notice> {
        let mut notices = Vec::new();
        loop {
            match m.poll_notice() {
                Some(Action::PersistTokens { tokens }) => {
                    let now = self.clock.now();
                    // Numbered under the machine's lock: the order of the changes.
                    let n = 1 + self
                        .changes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let pair = tokens.map(|t| TokenPair::from_stored(t, now));
                    notices.push(Notice::Persist(n, pair.and_then(|p| self.shown(p))));
                }
                Some(Action::LoginRequired) => {
                    notices.push(Notice::LoginRequired(trace::lost_reason(m)));
                }
                _ => break,
            }
        }
        notices
    }

    fn deliver(&self, notices: Vec<Notice>) {
        for n in notices {
            match n {
                Notice::Persist(n, tokens) => {
                    if let Some(hook) = &self.hooks.persist {
                        self.persist_in_order(n, || hook(tokens.as_ref()));
                    }
                }
                Notice::LoginRequired(reason) => {
                    trace::login_required(reason);
                    if let Some(hook) = &self.hooks.login_required {
                        hook();
                    }
                }
            }
        }
    }

    /// Call the persist hook for change `n`, unless a newer change was stored
    /// already: the hook never sees an older pair after a newer one (a login
    /// racing a refresh stored the older refresh token last, and a restart
    /// presented a spent token). A hook that changes the tokens itself (on
    /// this thread, from inside the hook) is called inline.
    fn persist_in_order(&self, n: u64, call: impl FnOnce()) {
        std::thread_local! {
            static IN_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if IN_HOOK.with(std::cell::Cell::get) {
            return call();
        }
        let mut last = self.persisted.lock().unwrap_or_else(|e| e.into_inner());
        if n <= *last {
            return;
        }
        crate::thread_mark::marked(&IN_HOOK, true, call);
        *last = n.max(*last);
    }

    /// Report the outcome of refresh `id` (one taken out of its ticket with
    /// [`RefreshTicket::detach`]). An outcome the session no longer expects
    /// (it gave up on the refresh, or a logout ended it) is ignored, unless
    /// it is a late success the session can still use.
    pub fn complete_refresh(&self, id: RefreshId, reply: &RefreshReply) {
        let outcome = match reply {
            RefreshReply::Tokens(t) => RefreshOutcome::Success(t.as_token_set()),
            RefreshReply::Unusable { refresh_token } => RefreshOutcome::Unusable {
                refresh_token: refresh_token
                    .as_ref()
                    .map(|r| refresh_machine::RefreshToken::new(r.expose())),
            },
            RefreshReply::Rejected => RefreshOutcome::Rejected,
            RefreshReply::Misconfigured(code) => RefreshOutcome::Misconfigured(*code),
            RefreshReply::Transient { retry_after } => RefreshOutcome::Transient {
                retry_after: *retry_after,
            },
        };
        // An outcome the machine no longer expects (it timed out and moved on)
        // is refused; that is its decision to make, nothing to report.
        let _ = self.apply_then(
            None,
            |m, now| {
                let applied = m.handle_refresh_outcome(now, id, outcome).is_ok();
                (applied, trace::RoundAfter::read(m, now))
            },
            |&(applied, after)| self.refreshes.finished(id, reply, applied, after),
        );
    }
}

impl<'s> RequestHandle<'s> {
    /// The request's id in the machine.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// What to do next. Never blocks.
    pub fn next_step(&mut self) -> Step<'s> {
        let session = self.session;
        let mut m = session.lock();
        let now = session.clock.now();
        self.sent_at = now;
        m.handle_timeout(now);
        let notices = session.collect_notices(&mut m);
        if !notices.is_empty() {
            drop(m);
            session.deliver(notices);
            m = session.lock();
        }
        if let Some(Action::Refresh {
            id,
            refresh_token,
            deadline,
        }) = m.poll_refresh()
        {
            let ticket = RefreshTicket {
                session,
                id,
                refresh_token: Secret::from(refresh_token.expose_secret()),
                deadline: session.clock.to_std(deadline),
                done: false,
            };
            let max_attempts = m.config().max_refresh_attempts;
            drop(m);
            session.refreshes.started(id, max_attempts);
            return Step::Refresh(ticket);
        }
        let outcome = loop {
            let action = match m.poll_request(self.id) {
                Ok(a) => a,
                // Only after logout raced with us and the outcome was already taken.
                Err(_) => break Err(Failure::LoggedOut),
            };
            match action {
                Some(Action::Send { token, retry, .. }) => {
                    let token = Secret::from(token.expose_secret());
                    drop(m);
                    trace::sent(retry);
                    return Step::Send { token, retry };
                }
                Some(Action::Deliver { .. }) => break Ok(()),
                Some(Action::Fail { failure, .. }) => break Err(failure),
                // Session actions are not handed out per request.
                Some(_) => continue,
                None => {
                    // Listen before releasing the lock: no wake-up can be lost.
                    let listener = session.changed.listen();
                    let deadline = m.poll_timeout().map(|t| session.clock.to_std(t));
                    return Step::Wait(Waiter { listener, deadline });
                }
            }
        };
        // The request is over: its slot is free, let a queued request have it.
        self.finished = true;
        drop(m);
        session.slot_freed();
        Step::Done(outcome)
    }

    /// The response to the last send arrived.
    pub fn response(&mut self, response: Response) {
        let cause = trace::Cause::Status(response.status);
        let backoff = self.report(None, |m, now, id| {
            // Refused only if a logout already ended the request; `next_step` reports that.
            let _ = m.handle_response(now, id, response);
            trace::backoff_of(m, id, now)
        });
        trace::request_backoff(backoff, cause);
    }

    /// The response to the last send arrived, as `http` status and headers.
    /// `token_sent` is false when the hop that answered did not carry the token
    /// (a redirect to another origin): its 401 says nothing about the token, so
    /// the request ends with that response instead of refreshing.
    pub fn http_response(
        &mut self,
        status: http::StatusCode,
        headers: &http::HeaderMap,
        token_sent: bool,
    ) {
        if status.is_success() {
            // Delivered as it is: no challenge or `Retry-After` to read, and
            // no time either (a final response only ends the request), so it
            // is fed at the time of the send instead of reading the clock.
            let response = Response::status(status.as_u16());
            let sent_at = self.sent_at;
            // Refused only if a logout already ended the request; `next_step` reports that.
            let _ = self.report(Some(sent_at), |m, now, id| {
                m.handle_response(now, id, response)
            });
            return;
        }
        self.response(
            Response::from_http(status, headers, StdClock::unix_now()).with_token_sent(token_sent),
        );
    }

    /// The last send failed before a response.
    pub fn send_error(&mut self, kind: SendErrorKind) {
        let backoff = self.report(None, |m, now, id| {
            // Refused only if a logout already ended the request; `next_step` reports that.
            let _ = m.handle_send_error(now, id, kind);
            trace::backoff_of(m, id, now)
        });
        trace::request_backoff(backoff, trace::Cause::SendError(kind));
    }

    /// Feed one report about this request, at `now` or the clock's time.
    fn report<R>(
        &mut self,
        now: Option<Instant>,
        f: impl FnOnce(&mut Machine, Instant, RequestId) -> R,
    ) -> R {
        let id = self.id;
        self.session.apply_at(now, |m, now| f(m, now, id))
    }
}

impl Drop for RequestHandle<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let id = self.id;
            let _ = self.session.apply(|m, _| m.cancel(id));
            self.session.slot_freed();
        }
    }
}

/// The `tracing` feature: a span per refresh attempt and events for what
/// the session sees (see the driver's README for the names and fields).
/// Never a token, never a client secret: no field is taken from one.
#[cfg(feature = "tracing")]
mod trace {
    use std::sync::{Mutex, MutexGuard};
    use std::time::Duration;

    use refresh_machine::{
        Instant, LoginRequiredReason, RefreshId, RequestId, RequestState, RetryReason,
        SendErrorKind,
    };
    use tracing::field::Empty;

    use super::RefreshReply;
    use crate::capacity::Machine;

    /// At most this many attempts are tracked unanswered (a custom
    /// refresher may never answer an abandoned one): the oldest span is
    /// closed without an outcome.
    const MAX_OPEN: usize = 8;

    /// Refresh attempts handed out and not answered yet, each with its span,
    /// and the attempt count of the current round.
    #[derive(Debug, Default)]
    pub(super) struct Refreshes(Mutex<State>);

    #[derive(Debug, Default)]
    struct State {
        /// Attempts handed out in the current round.
        attempt: u32,
        open: Vec<Open>,
    }

    #[derive(Debug)]
    struct Open {
        id: RefreshId,
        attempt: u32,
        started: crate::platform::Instant,
        span: tracing::Span,
    }

    impl Refreshes {
        fn lock(&self) -> MutexGuard<'_, State> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Refresh `id` was handed to a request to perform.
        pub(super) fn started(&self, id: RefreshId, max_attempts: u8) {
            let mut st = self.lock();
            // Past the round's last attempt, a new round began (one that
            // ended at a deadline had no outcome to reset the count).
            st.attempt = if st.attempt >= u32::from(max_attempts.max(1)) {
                1
            } else {
                st.attempt + 1
            };
            let attempt = st.attempt;
            let span = tracing::info_span!(
                target: "refresh_machine",
                "refresh",
                attempt,
                outcome = Empty,
                duration_ms = Empty,
            );
            if st.open.len() >= MAX_OPEN {
                st.open.remove(0);
            }
            st.open.push(Open {
                id,
                attempt,
                started: crate::platform::Instant::now(),
                span: span.clone(),
            });
            drop(st);
            tracing::debug!(target: "refresh_machine", parent: &span, attempt, "refresh started");
        }

        /// A login or logout ended any round.
        pub(super) fn round_over(&self) {
            self.lock().attempt = 0;
        }

        /// Refresh `id` was answered with `reply`; `applied` is false when
        /// the session no longer expected it.
        pub(super) fn finished(
            &self,
            id: RefreshId,
            reply: &RefreshReply,
            applied: bool,
            after: RoundAfter,
        ) {
            let open = {
                let mut st = self.lock();
                if !after.pending {
                    st.attempt = 0;
                }
                let i = st.open.iter().position(|o| o.id == id);
                i.map(|i| st.open.remove(i))
            };
            let outcome = outcome_class(reply);
            let (span, attempt, duration_ms) = match open {
                Some(o) => (o.span, Some(o.attempt), Some(millis(o.started.elapsed()))),
                None => (tracing::Span::none(), None, None),
            };
            span.record("outcome", outcome);
            span.record("duration_ms", duration_ms);
            let _in_span = span.enter();
            if !applied {
                tracing::debug!(
                    target: "refresh_machine",
                    attempt,
                    outcome,
                    duration_ms,
                    "refresh outcome ignored"
                );
                return;
            }
            if matches!(reply, RefreshReply::Tokens(_)) {
                tracing::info!(target: "refresh_machine", attempt, outcome, duration_ms, "refresh finished");
            } else {
                tracing::warn!(target: "refresh_machine", attempt, outcome, duration_ms, "refresh finished");
            }
            if let (RefreshReply::Transient { .. }, Some(delay_ms)) = (reply, after.backoff_ms) {
                tracing::debug!(target: "refresh_machine", attempt, delay_ms, "refresh backoff");
            }
        }
    }

    /// The refresh round after an outcome was applied.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct RoundAfter {
        /// A round is still under way (queued, in flight or backing off).
        pending: bool,
        /// Until its next attempt, if it is waiting for one.
        backoff_ms: Option<u64>,
    }

    impl RoundAfter {
        /// Read once per refresh outcome (the snapshot scans the slots).
        pub(super) fn read(m: &Machine, now: Instant) -> RoundAfter {
            let s = m.snapshot();
            let waiting = s.refresh_pending && !s.refresh_in_flight;
            RoundAfter {
                pending: s.refresh_pending,
                backoff_ms: s
                    .refresh_timer
                    .filter(|_| waiting)
                    .map(|t| millis(t.saturating_duration_since(now))),
            }
        }
    }

    /// The outcome classes of the `refresh` span and its events.
    fn outcome_class(reply: &RefreshReply) -> &'static str {
        match reply {
            RefreshReply::Tokens(_) => "tokens",
            RefreshReply::Unusable { .. } => "unusable",
            RefreshReply::Rejected => "rejected",
            RefreshReply::Misconfigured(_) => "misconfigured",
            RefreshReply::Transient { .. } => "transient",
        }
    }

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// Why the session was lost, as the machine says.
    pub(super) type LostReason = Option<LoginRequiredReason>;

    pub(super) fn lost_reason(m: &Machine) -> LostReason {
        match m {
            Machine::Standard(m) => m.login_required_reason(),
            Machine::Large(m) => m.login_required_reason(),
        }
    }

    pub(super) fn login_required(reason: LostReason) {
        let reason = match reason {
            Some(LoginRequiredReason::Rejected) => "rejected",
            Some(LoginRequiredReason::UnusableTokenResponse) => "unusable_token_response",
            Some(LoginRequiredReason::NoRefreshToken) => "no_refresh_token",
            Some(LoginRequiredReason::RefreshTokenExpired) => "refresh_token_expired",
            Some(_) | None => "other",
        };
        tracing::warn!(target: "refresh_machine", reason, "login required");
    }

    /// A request is sent (again, when `retry` says why).
    pub(super) fn sent(retry: Option<RetryReason>) {
        let reason = match retry {
            None => return,
            Some(RetryReason::NewToken) => "new_token",
            Some(RetryReason::StaleToken) => {
                tracing::debug!(target: "refresh_machine", "stale 401");
                "stale_token"
            }
            Some(RetryReason::Transient) => "transient",
        };
        tracing::debug!(target: "refresh_machine", reason, "request retry");
    }

    /// What a request's backoff follows.
    #[derive(Clone, Copy, Debug)]
    pub(super) enum Cause {
        Status(u16),
        SendError(SendErrorKind),
    }

    /// A request's backoff in milliseconds, if it backs off.
    pub(super) type Backoff = Option<u64>;

    /// How long request `id` backs off from `now`, if it does.
    pub(super) fn backoff_of(m: &Machine, id: RequestId, now: Instant) -> Backoff {
        let state = match m {
            Machine::Standard(m) => m.request_state(id),
            Machine::Large(m) => m.request_state(id),
        };
        match state {
            Ok(RequestState::BackingOff { until }) => {
                Some(millis(until.saturating_duration_since(now)))
            }
            _ => None,
        }
    }

    pub(super) fn request_backoff(delay_ms: Backoff, cause: Cause) {
        let Some(delay_ms) = delay_ms else { return };
        match cause {
            Cause::Status(status) => {
                tracing::debug!(target: "refresh_machine", delay_ms, status, "request backoff");
            }
            Cause::SendError(kind) => {
                let send_error = match kind {
                    SendErrorKind::Connect => "connect",
                    SendErrorKind::Timeout => "timeout",
                    SendErrorKind::Io => "io",
                    _ => "other",
                };
                tracing::debug!(target: "refresh_machine", delay_ms, send_error, "request backoff");
            }
        }
    }
}

/// Without the `tracing` feature: the same calls, doing nothing (each one
/// inlined away).
#[cfg(not(feature = "tracing"))]
mod trace {
    use refresh_machine::{Instant, RefreshId, RequestId, RetryReason, SendErrorKind};

    use super::RefreshReply;
    use crate::capacity::Machine;

    /// Nothing tracked.
    #[derive(Debug)]
    pub(super) struct Refreshes {}

    impl Default for Refreshes {
        #[inline(always)]
        fn default() -> Self {
            Refreshes {}
        }
    }

    impl Refreshes {
        #[inline(always)]
        pub(super) fn started(&self, _: RefreshId, _: u8) {}
        #[inline(always)]
        pub(super) fn round_over(&self) {}
        #[inline(always)]
        pub(super) fn finished(&self, _: RefreshId, _: &RefreshReply, _: bool, _: RoundAfter) {}
    }

    #[derive(Clone, Copy, Debug)]
    pub(super) struct RoundAfter {}

    impl RoundAfter {
        #[inline(always)]
        pub(super) fn read(_: &Machine, _: Instant) -> RoundAfter {
            RoundAfter {}
        }
    }

    /// Nothing read.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct LostReason {}

    #[inline(always)]
    pub(super) fn lost_reason(_: &Machine) -> LostReason {
        LostReason {}
    }

    #[inline(always)]
    pub(super) fn login_required(_: LostReason) {}

    #[inline(always)]
    pub(super) fn sent(_: Option<RetryReason>) {}

    /// Built at the call sites, read only with the feature.
    #[allow(dead_code)]
    #[derive(Clone, Copy, Debug)]
    pub(super) enum Cause {
        Status(u16),
        SendError(SendErrorKind),
    }

    /// Nothing read.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Backoff {}

    #[inline(always)]
    pub(super) fn backoff_of(_: &Machine, _: RequestId, _: Instant) -> Backoff {
        Backoff {}
    }

    #[inline(always)]
    pub(super) fn request_backoff(_: Backoff, _: Cause) {}
}
