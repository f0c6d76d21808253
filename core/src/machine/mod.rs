//! The state machine: small owned parts, orchestrated here.
//!
//! - [`tokens`]: the token store (pair, expiry, margins, refused flag);
//! - [`refresh`]: the refresh round (single flight, ids, deadline, backoff);
//! - [`retry`]: the shared retry budget and the jitter source;
//! - [`slots`]: the request table (phases, counters, scan caches).
//!
//! This file holds the rules that tie them together: how a request is routed,
//! what a response or a refresh outcome does, and what each poll yields.

use core::time::Duration;

use crate::action::{Action, RetryReason};
use crate::config::Config;
use crate::error::{Error, Failure};
use crate::event::{RefreshOutcome, Response, SendErrorKind};
use crate::request::{RefreshId, RequestId, RequestSpec};
use crate::token::{StoredTokens, TokenSet};
use crate::www_authenticate::BearerError;
use crate::Instant;

mod refresh;
mod retry;
mod slots;
mod tokens;

use refresh::{Failed, RefreshRound, Timeout};
use retry::{Budget, Jitter};
pub use slots::RequestState;
use slots::{Emitted, Phase, Slots};
use tokens::TokenStore;

/// Where the session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// No tokens: before the first login or after logout. Requests fail `LoggedOut`.
    LoggedOut,
    /// Tokens are installed.
    Active,
    /// The refresh grant was rejected; requests fail `LoginRequired` until `login`.
    LoginRequired,
}

/// Why the session was lost ([`RefreshMachine::login_required_reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginRequiredReason {
    /// The token endpoint rejected the grant (`invalid_grant`: expired,
    /// revoked or reused refresh token).
    Rejected,
    /// The token endpoint answered 200 (so the refresh token presented may be
    /// spent) with nothing usable: no valid access token and no new refresh token.
    UnusableTokenResponse,
    /// A refresh was needed and the session has no refresh token.
    NoRefreshToken,
    /// A refresh was needed and the refresh token had expired
    /// (`refresh_expires_in`); it was not presented.
    RefreshTokenExpired,
}

/// Counts that describe the machine's state, for tests, metrics and invariant checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Live requests (anything not yet finished and polled).
    pub live: usize,
    /// Requests waiting for the refresh.
    pub waiting: usize,
    /// Requests sent and awaiting an answer.
    pub in_flight: usize,
    /// Requests in backoff.
    pub backing_off: usize,
    /// A refresh has been handed to the driver and has no outcome yet.
    pub refresh_in_flight: bool,
    /// A refresh round is under way (queued, in flight or backing off).
    pub refresh_pending: bool,
    /// Generation of the current access token (bumped on every change).
    pub token_generation: u32,
    /// When the refresh round's timer fires: the deadline of the attempt
    /// queued or in flight, or the end of its backoff.
    pub refresh_timer: Option<Instant>,
}

/// Session notices waiting for a poll.
#[derive(Clone, Copy, Debug, Default, Hash)]
struct Notices {
    persist: bool,
    login_required: bool,
}

/// The sans-IO machine: `N` concurrent requests, tokens of up to `TOKEN_CAP` bytes.
///
/// Inputs are the `start_request`, `handle_*`, `cancel`, `login` and `logout` calls;
/// outputs are drained with [`poll_action`](Self::poll_action) until `None`.
/// Timers: sleep until [`poll_timeout`](Self::poll_timeout), then call
/// [`handle_timeout`](Self::handle_timeout).
///
/// `Clone` copies the tokens too: a clone is a second handle on the same
/// secrets (useful to explore "what if" in tests, rarely in production).
#[derive(Clone)]
pub struct RefreshMachine<const N: usize, const TOKEN_CAP: usize = 2048> {
    config: Config,
    session: SessionState,
    lost: Option<LoginRequiredReason>,
    tokens: TokenStore<TOKEN_CAP>,
    refresh: RefreshRound,
    notices: Notices,
    budget: Budget,
    jitter: Jitter,
    slots: Slots<N>,
}

impl<const N: usize, const TOKEN_CAP: usize> core::fmt::Debug for RefreshMachine<N, TOKEN_CAP> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RefreshMachine")
            .field("session", &self.session)
            .field("tokens", &"<redacted>")
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl<const N: usize, const TOKEN_CAP: usize> RefreshMachine<N, TOKEN_CAP> {
    /// A logged-out machine. `seed` is the randomness for backoff jitter: the
    /// machine's decisions are a pure function of the seed and the inputs.
    pub fn new(config: Config, seed: u64) -> Self {
        RefreshMachine {
            tokens: TokenStore::new(),
            config,
            session: SessionState::LoggedOut,
            lost: None,
            refresh: RefreshRound::new(),
            notices: Notices::default(),
            budget: Budget::new(&config),
            jitter: Jitter::new(seed),
            slots: Slots::new(),
        }
    }

    /// Feeds the complete internal state, tokens included, to `state`
    /// (feature `model`: a hook for model checkers, not for applications).
    ///
    /// Two machines that feed the same bytes behave identically for every
    /// future input, so a state already explored can be skipped. Use a keyed
    /// or cryptographic hasher if the hash may leave the process, since the
    /// tokens are part of it.
    #[cfg(feature = "model")]
    pub fn hash_state<H: core::hash::Hasher>(&self, state: &mut H) {
        use core::hash::Hash;
        self.config.hash(state);
        self.session.hash(state);
        self.lost.hash(state);
        self.tokens.hash(state);
        self.refresh.hash(state);
        self.notices.hash(state);
        self.budget.hash(state);
        self.jitter.hash(state);
        self.slots.hash(state);
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the session stands.
    pub fn session(&self) -> SessionState {
        self.session
    }

    /// Why the session was lost, while it is (`None` otherwise).
    pub fn login_required_reason(&self) -> Option<LoginRequiredReason> {
        self.lost
    }

    /// Counts describing the current state.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            refresh_in_flight: self.refresh.is_in_flight(),
            refresh_pending: !self.refresh.is_idle(),
            token_generation: self.tokens.generation(),
            refresh_timer: self.refresh.timer(),
            ..Snapshot::default()
        };
        for slot in self.slots.live() {
            match slot.phase() {
                Phase::Waiting => s.waiting += 1,
                Phase::InFlight => s.in_flight += 1,
                Phase::Backoff { .. } => s.backing_off += 1,
                Phase::Free | Phase::Ready | Phase::Finished(_) => {}
            }
            s.live += 1;
        }
        s
    }

    /// Where a live request stands: ready to send, waiting for the refresh,
    /// in flight, backing off (until when), or finished (outcome not yet polled).
    pub fn request_state(&self, id: RequestId) -> Result<RequestState, Error> {
        Ok(self.slots.state(self.slots.index(id)?))
    }

    /// Sends made so far by a live request.
    pub fn sends(&self, id: RequestId) -> Result<u32, Error> {
        Ok(self.slots.get(self.slots.index(id)?).sends)
    }

    /// The current tokens, for storage or inspection (`None` when logged out).
    pub fn tokens(&self) -> Option<StoredTokens<'_>> {
        (self.session == SessionState::Active).then(|| self.tokens.stored())
    }

    // ----- inputs -------------------------------------------------------------

    /// Install a session (first login, or after `LoginRequired`/logout).
    /// Requests waiting for a refresh are released with the new token.
    pub fn login(&mut self, now: Instant, tokens: TokenSet<'_>) -> Result<(), Error> {
        TokenStore::<TOKEN_CAP>::check(&tokens)?;
        self.session = SessionState::Active;
        self.lost = None;
        self.tokens.forget_refresh_token();
        self.install(now, tokens, false);
        self.refresh.end(true);
        self.notices.login_required = false;
        self.release_waiters(now, false);
        // Tokens that arrive expired (a stored pair, `expires_in: 0`).
        self.hold_ready_if_unusable(now);
        Ok(())
    }

    /// End the session: tokens are dropped (the driver is told to delete them)
    /// and every pending request fails `LoggedOut`.
    pub fn logout(&mut self, _now: Instant) {
        self.tokens.clear();
        self.session = SessionState::LoggedOut;
        self.lost = None;
        self.refresh.end(true);
        self.notices.login_required = false;
        self.notices.persist = true;
        self.slots.set_all(
            |p| !matches!(p, Phase::Free | Phase::Finished(_)),
            Phase::Finished(Some(Failure::LoggedOut)),
        );
    }

    /// Reseed the jitter source (mixes the bits into the current state).
    pub fn reseed(&mut self, bits: u64) {
        self.jitter.reseed(bits);
    }

    /// Begin a request. Its next step comes from `poll_action`: usually `Send`,
    /// nothing while it waits for a refresh, or `Fail` when there is no session.
    pub fn start_request(&mut self, now: Instant, spec: RequestSpec) -> Result<RequestId, Error> {
        let i = self.slots.take(spec)?;
        self.route(now, i, false);
        Ok(self.slots.id(i))
    }

    /// Abandon a request at any point. Its state is released; if a refresh it
    /// triggered is in flight, that refresh still resolves for everyone else.
    pub fn cancel(&mut self, id: RequestId) -> Result<(), Error> {
        let i = self.slots.index(id)?;
        self.slots.free(i);
        Ok(())
    }

    /// A response arrived for a request that was sent.
    ///
    /// A response from a hop that did not carry the token (a redirect to
    /// another origin, see [`Response::with_token_sent`]) is delivered as it
    /// is: its 401 says nothing about the token.
    pub fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Response,
    ) -> Result<(), Error> {
        let i = self.in_flight(id)?;
        let insufficient_scope = response.bearer_error == Some(BearerError::InsufficientScope);
        match response.status {
            // Said by a hop that did not carry the token: nothing to learn about it.
            401 if !response.token_sent => self.succeed(i),
            401 | 403 if insufficient_scope => self.finish(i, Some(Failure::Forbidden)),
            401 => self.on_unauthorized(now, i),
            status if is_transient_status(status) => {
                // 502/504 come from a gateway: the origin may have acted. 429/503 mean it did not.
                let reached = matches!(status, 502 | 504);
                self.on_transient(now, i, reached, response.retry_after, None);
            }
            status => {
                // Anything but a refusal, a throttle or a server error says the
                // token got past authentication.
                if status < 500 && status != 429 {
                    self.accepted(i);
                }
                self.succeed(i)
            }
        }
        Ok(())
    }

    /// A send failed before any response.
    pub fn handle_send_error(
        &mut self,
        now: Instant,
        id: RequestId,
        kind: SendErrorKind,
    ) -> Result<(), Error> {
        let i = self.in_flight(id)?;
        self.on_transient(now, i, !kind.never_reached_server(), None, Some(kind));
        Ok(())
    }

    /// The outcome of a refresh handed out as `Action::Refresh { id, .. }`.
    ///
    /// A late success (after its attempt timed out) is still accepted: with
    /// rotation, those tokens may be the only valid ones left.
    pub fn handle_refresh_outcome(
        &mut self,
        now: Instant,
        id: RefreshId,
        outcome: RefreshOutcome<'_>,
    ) -> Result<(), Error> {
        let late_success_welcome =
            self.session == SessionState::Active && matches!(outcome, RefreshOutcome::Success(_));
        if !self.refresh.accepts(id, late_success_welcome) {
            return Err(Error::UnknownRefresh);
        }
        match outcome {
            RefreshOutcome::Success(mut tokens) => {
                let refresh_ok = tokens.refresh_token.map_or(Ok(()), |r| {
                    TokenStore::<TOKEN_CAP>::check_one(r.expose_secret())
                });
                let access_ok =
                    TokenStore::<TOKEN_CAP>::check_one(tokens.access_token.expose_secret());
                if let Err(e) = access_ok {
                    // No access token we can hold or send: as a 200 with nothing usable.
                    let refresh_token = tokens.refresh_token.filter(|_| refresh_ok.is_ok());
                    self.unusable(now, refresh_token, tokens.refresh_expires_in);
                    return Err(e);
                }
                if refresh_ok.is_err() {
                    // The old refresh token may be spent and the new one is
                    // unusable: work with the access token while it lasts.
                    self.tokens.forget_refresh_token();
                    tokens.refresh_token = None;
                    tokens.refresh_expires_in = None;
                }
                self.install(now, tokens, true);
                if self.refresh.is_current(id) {
                    self.refresh.end(true);
                } else {
                    self.refresh.supersede();
                }
                self.release_waiters(now, true);
            }
            RefreshOutcome::Unusable { refresh_token } => {
                let refresh_token = refresh_token
                    .filter(|r| TokenStore::<TOKEN_CAP>::check_one(r.expose_secret()).is_ok());
                self.unusable(now, refresh_token, None);
            }
            RefreshOutcome::Rejected => self.lose_session(LoginRequiredReason::Rejected),
            RefreshOutcome::Misconfigured(error) => {
                self.refresh.end(false);
                self.slots.set_all(
                    |p| matches!(p, Phase::Waiting),
                    Phase::Finished(Some(Failure::RefreshMisconfigured(error))),
                );
            }
            RefreshOutcome::Transient { retry_after } => self.refresh_failed(now, retry_after),
        }
        Ok(())
    }

    /// A 200 without a usable access token: the refresh token presented may
    /// be spent. Keep a new one (checked) and try again with it; without
    /// one, the session is over.
    fn unusable(
        &mut self,
        now: Instant,
        refresh_token: Option<crate::token::RefreshToken<'_>>,
        lifetime: Option<Duration>,
    ) {
        if refresh_token.is_none() {
            return self.lose_session(LoginRequiredReason::UnusableTokenResponse);
        }
        self.tokens.install_refresh(now, refresh_token, lifetime);
        self.notices.persist = true;
        self.refresh_failed(now, None);
    }

    /// The earliest instant at which `handle_timeout` has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .live()
            .filter_map(|s| match s.phase() {
                Phase::Backoff { until } => Some(until),
                _ => None,
            })
            .chain(self.refresh.timer())
            .min()
    }

    /// Time has passed: fire refresh deadlines, refresh backoffs and request backoffs due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.refresh.handle_timeout(now, &self.config) == Timeout::Missed {
            self.refresh_failed(now, None);
        }
        // Requests queued while the token was valid, still unsent now that it
        // is past its margin (a driver that polls late).
        self.hold_ready_if_unusable(now);
        for i in self.slots.live_range() {
            if let Phase::Backoff { until } = self.slots.phase(i) {
                if until <= now {
                    self.slots.set_phase(i, Phase::Ready);
                    self.route(now, i, false);
                }
            }
        }
    }

    // ----- outputs ------------------------------------------------------------

    /// The next action for the driver, or `None` when there is nothing to do now.
    /// Session actions (persist, login required, refresh) come before request actions.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action<'_>> {
        if self.notices.persist || self.notices.login_required {
            return self.poll_notice();
        }
        if self.refresh.is_queued() {
            return self.poll_refresh();
        }
        let i = self.slots.next_with_action()?;
        Some(self.emit(i))
    }

    /// The next session notice (`PersistTokens`, `LoginRequired`), if any. It
    /// never hands out the refresh: for drivers where whoever is free to
    /// perform the refresh claims it with [`poll_refresh`](Self::poll_refresh).
    #[must_use]
    pub fn poll_notice(&mut self) -> Option<Action<'_>> {
        if self.notices.persist {
            self.notices.persist = false;
            return Some(Action::PersistTokens {
                tokens: self.tokens(),
            });
        }
        if self.notices.login_required {
            self.notices.login_required = false;
            return Some(Action::LoginRequired);
        }
        None
    }

    /// The queued refresh (`Action::Refresh`), if one is waiting to be performed.
    /// Whoever takes it must report its outcome by its `deadline`.
    #[must_use]
    pub fn poll_refresh(&mut self) -> Option<Action<'_>> {
        // Drivers ask at every step: answer from the round's state first.
        if !self.refresh.is_queued() {
            return None;
        }
        // A queued round always has a refresh token: `start_refresh` checks it.
        debug_assert!(self.tokens.has_refresh_token());
        let refresh_token = self.tokens.refresh_token()?;
        let (id, deadline) = self.refresh.hand_out()?;
        Some(Action::Refresh {
            id,
            refresh_token,
            deadline,
        })
    }

    /// The next action for one request, if any (for drivers where each request
    /// has its own task or thread).
    pub fn poll_request(&mut self, id: RequestId) -> Result<Option<Action<'_>>, Error> {
        let i = self.slots.index(id)?;
        Ok(self.slots.has_action(i).then(|| self.emit(i)))
    }

    // ----- internals ----------------------------------------------------------

    /// Emit slot `i`'s action (it has one): a send, or its outcome.
    fn emit(&mut self, i: usize) -> Action<'_> {
        match self.slots.emit(i, self.tokens.generation()) {
            Emitted::Send { id, retry } => Action::Send {
                id,
                token: self.tokens.access(),
                retry,
            },
            Emitted::Outcome { id, failure: None } => Action::Deliver { id },
            Emitted::Outcome {
                id,
                failure: Some(failure),
            } => Action::Fail { id, failure },
        }
    }

    fn in_flight(&self, id: RequestId) -> Result<usize, Error> {
        let i = self.slots.index(id)?;
        if matches!(self.slots.phase(i), Phase::InFlight) {
            Ok(i)
        } else {
            Err(Error::UnexpectedEvent)
        }
    }

    fn finish(&mut self, i: usize, failure: Option<Failure>) {
        self.slots.set_phase(i, Phase::Finished(failure));
    }

    /// A final response: delivered, and it refills the retry budget.
    fn succeed(&mut self, i: usize) {
        self.budget.credit(&self.config);
        self.finish(i, None);
    }

    /// The resource server accepted the token slot `i` was sent with: if
    /// that is the current one, it is proven.
    fn accepted(&mut self, i: usize) {
        if self.slots.get(i).sent_gen == self.tokens.generation() {
            self.tokens.accept();
        }
    }

    /// Decide what a request that needs a token does next. The slot is
    /// `Ready` (every caller puts it there), and stays so if it may be sent.
    /// `just_obtained`: it waited for the token a refresh has just installed,
    /// which it uses whatever the token's announced lifetime.
    fn route(&mut self, now: Instant, i: usize, just_obtained: bool) {
        debug_assert!(matches!(self.slots.phase(i), Phase::Ready));
        match self.session {
            SessionState::LoggedOut => return self.finish(i, Some(Failure::LoggedOut)),
            SessionState::LoginRequired => return self.finish(i, Some(Failure::LoginRequired)),
            SessionState::Active => {}
        }
        if self.slots.get(i).sends >= self.config.max_sends() {
            // Reached by stale-token retries, which are progress but still bounded.
            return self.finish(i, Some(Failure::Unauthorized));
        }
        let generation = self.tokens.generation();
        if just_obtained {
            // It waited for this token: it goes out with it once, whatever
            // the token's announced lifetime (until it is sent).
            self.slots.get_mut(i).waited_for = generation;
        }
        if self.may_send(now, i) {
            if self.tokens.ahead_due(now) && self.refresh.is_idle() {
                self.start_refresh(now);
            }
        } else {
            self.slots.set_phase(i, Phase::Waiting);
            if self.refresh.is_idle() {
                self.start_refresh(now);
            }
            // Requests queued earlier would go out with the same unusable token: hold them too.
            self.park_ready(now);
        }
    }

    /// Slot `i` may be sent with the current token at `now`.
    #[inline]
    fn may_send(&self, now: Instant, i: usize) -> bool {
        let waited_for_it = self.slots.get(i).waited_for == self.tokens.generation();
        self.tokens
            .usable(now, self.config.expiry_skew, waited_for_it)
    }

    /// Park every queued request the current token may not go out with.
    fn park_ready(&mut self, now: Instant) {
        for j in self.slots.live_range() {
            if matches!(self.slots.phase(j), Phase::Ready) && !self.may_send(now, j) {
                self.slots.set_phase(j, Phase::Waiting);
            }
        }
    }

    fn on_unauthorized(&mut self, now: Instant, i: usize) {
        let token_generation = self.tokens.generation();
        let slot = self.slots.get_mut(i);
        // A 401 for a token that has been replaced since is progress, not a
        // failure: the retry goes out with the new token (still bounded by
        // `max_sends`, which `route` enforces).
        let stale = slot.sent_gen != token_generation;
        if !stale {
            slot.auth_failures = slot.auth_failures.saturating_add(1);
        }
        let spent = slot.auth_failures > self.config.max_auth_retries;
        let replayable = slot.spec.replayable;
        if !stale && self.session == SessionState::Active {
            if self.tokens.cooling_down(now) {
                // A fresh token was refused a moment ago: another refresh would not help.
                return self.finish(i, Some(Failure::Unauthorized));
            }
            if self.tokens.due_for_cool_down()
                && self.config.refused_token_cooldown > Duration::ZERO
            {
                self.tokens
                    .cool_down(now.saturating_add(self.config.refused_token_cooldown));
                return self.finish(i, Some(Failure::Unauthorized));
            }
            if !self.tokens.refused() {
                self.tokens.mark_refused();
                self.reroute_ready(now);
            }
        }
        if spent {
            self.finish(i, Some(Failure::Unauthorized));
        } else if !replayable {
            self.finish(i, Some(Failure::BodyNotReplayable));
        } else {
            self.slots.get_mut(i).retry_reason = if stale {
                RetryReason::StaleToken
            } else {
                RetryReason::NewToken
            };
            self.slots.set_phase(i, Phase::Ready);
            self.route(now, i, false);
        }
    }

    /// Queued requests refresh first instead of going out with a token that
    /// is past its margin at `now` (those that waited for it still use it once).
    fn hold_ready_if_unusable(&mut self, now: Instant) {
        if self.session == SessionState::Active
            && !self.tokens.usable(now, self.config.expiry_skew, false)
        {
            self.reroute_ready(now);
        }
    }

    /// A request queued to go out with a token that has just become known-bad must wait instead.
    fn reroute_ready(&mut self, now: Instant) {
        for j in self.slots.live_range() {
            if matches!(self.slots.phase(j), Phase::Ready) {
                self.route(now, j, false);
            }
        }
    }

    fn on_transient(
        &mut self,
        now: Instant,
        i: usize,
        may_have_reached_server: bool,
        retry_after: Option<Duration>,
        error: Option<SendErrorKind>,
    ) {
        self.budget.debit();
        let slot = *self.slots.get(i);
        let permitted = (!may_have_reached_server || slot.spec.idempotent)
            && slot.transient_retries < self.config.max_transient_retries
            && self.budget.allows_retry(&self.config)
            && retry_after.map_or(true, |d| d <= self.config.max_retry_after);
        if !permitted || !slot.spec.replayable {
            // A response is handed over as it is; a transport error becomes the failure.
            let failure = match error {
                None => None,
                Some(_) if permitted => Some(Failure::BodyNotReplayable),
                Some(kind) => Some(Failure::Transport(kind)),
            };
            return self.finish(i, failure);
        }
        let delay = match retry_after {
            Some(d) => d,
            None => self
                .jitter
                .delay(self.config.request_backoff, slot.transient_retries),
        };
        let slot = self.slots.get_mut(i);
        slot.transient_retries += 1;
        slot.retry_reason = RetryReason::Transient;
        self.slots
            .set_phase(i, Phase::Backoff { until: now + delay });
    }

    fn start_refresh(&mut self, now: Instant) {
        if !self.tokens.has_refresh_token() {
            // Nothing to refresh with: the session cannot recover by itself.
            return self.lose_session(LoginRequiredReason::NoRefreshToken);
        }
        if self.tokens.refresh_expired(now) {
            // Presenting it would only be refused (or counted as reuse).
            return self.lose_session(LoginRequiredReason::RefreshTokenExpired);
        }
        self.refresh.start(now, &self.config);
    }

    fn refresh_failed(&mut self, now: Instant, retry_after: Option<Duration>) {
        match self
            .refresh
            .fail(now, retry_after, &self.config, &mut self.jitter)
        {
            Failed::Retrying => {}
            // Gave up this round but kept the tokens: the next request starts a new round.
            Failed::GaveUp => self.slots.set_all(
                |p| matches!(p, Phase::Waiting),
                Phase::Finished(Some(Failure::RefreshUnavailable)),
            ),
            // A late success superseded the round: requests that started
            // waiting since decide again (the token, or a new round).
            Failed::Ended => self.release_waiters(now, false),
        }
    }

    fn lose_session(&mut self, reason: LoginRequiredReason) {
        if self.session == SessionState::Active {
            self.notices.login_required = true;
            self.notices.persist = true;
            self.lost = Some(reason);
        }
        self.session = SessionState::LoginRequired;
        self.tokens.clear();
        self.refresh.end(true);
        self.slots.set_all(
            |p| matches!(p, Phase::Waiting | Phase::Ready),
            Phase::Finished(Some(Failure::LoginRequired)),
        );
    }

    /// Caller validated with `TokenStore::check`.
    fn install(&mut self, now: Instant, tokens: TokenSet<'_>, from_refresh: bool) {
        // The jitter is drawn only when refresh-ahead is on, so it costs the
        // other configurations nothing (not even a draw from the seed).
        // Between half and all of `refresh_ahead` before expiry.
        let ahead = self.config.refresh_ahead.map(|ahead| {
            let half = ahead / 2;
            half + self.jitter.up_to(ahead - half)
        });
        self.tokens.install(now, tokens, from_refresh, ahead);
        self.notices.persist = true;
    }

    /// Route the requests that waited for new tokens; `just_obtained` (a
    /// refresh's tokens): they, and those already queued, use them at least once.
    fn release_waiters(&mut self, now: Instant, just_obtained: bool) {
        for i in self.slots.live_range() {
            match self.slots.phase(i) {
                Phase::Waiting => {
                    self.slots.set_phase(i, Phase::Ready);
                    self.route(now, i, just_obtained);
                }
                // Queued already (a background refresh): it goes out with
                // the new token, and may as much as a waiter.
                Phase::Ready if just_obtained => {
                    self.slots.get_mut(i).waited_for = self.tokens.generation();
                }
                _ => {}
            }
        }
    }
}

/// Statuses worth retrying: 429 and the gateway/availability 5xx.
fn is_transient_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_wipes_the_token_bytes() {
        let mut m: RefreshMachine<1, 16> = RefreshMachine::new(Config::DEFAULT, 0);
        m.login(
            Instant::ZERO,
            TokenSet::new("access-1").with_refresh_token("refresh-1"),
        )
        .unwrap();
        m.logout(Instant::ZERO);
        assert!(m.tokens.is_wiped());
    }
}
