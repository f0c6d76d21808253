//! The state machine.

use core::time::Duration;

use crate::action::{Action, RetryReason};
use crate::config::{Backoff, Config};
use crate::error::{Error, Failure};
use crate::event::{RefreshOutcome, Response, SendErrorKind};
use crate::request::{RefreshId, RequestId, RequestSpec};
use crate::token::{
    check_token, AccessToken, RefreshToken, StoredTokens, TokenBuf, TokenCheck, TokenSet,
};
use crate::www_authenticate::BearerError;
use crate::Instant;

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

/// Where the single refresh slot stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RefreshState {
    Idle,
    /// Decided, not yet handed out by `poll`; the deadline starts when decided.
    Queued {
        deadline: Instant,
    },
    InFlight {
        deadline: Instant,
    },
    Backoff {
        until: Instant,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Free,
    /// Will be sent with the current token at the next poll.
    Ready,
    /// Parked until the refresh resolves.
    Waiting,
    /// Sent; awaiting a response or send error.
    InFlight,
    /// Parked until `until`, then re-routed.
    Backoff {
        until: Instant,
    },
    /// Outcome decided; emitted (and the slot freed) at the next poll.
    Finished(Option<Failure>),
}

#[derive(Clone, Copy, Debug, Hash)]
struct Slot {
    generation: u32,
    phase: Phase,
    spec: RequestSpec,
    /// Token generation of the last send.
    sent_gen: u32,
    sends: u32,
    auth_failures: u8,
    transient_retries: u8,
    /// Wait/Backoff notice already emitted for the current phase.
    announced: bool,
    retry_reason: RetryReason,
}

impl Slot {
    const FREE: Slot = Slot {
        generation: 0,
        phase: Phase::Free,
        spec: RequestSpec::IDEMPOTENT,
        sent_gen: 0,
        sends: 0,
        auth_failures: 0,
        transient_retries: 0,
        announced: false,
        retry_reason: RetryReason::Transient,
    };

    fn is_live(&self) -> bool {
        !matches!(self.phase, Phase::Free)
    }
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
    access: TokenBuf<TOKEN_CAP>,
    refresh_token: TokenBuf<TOKEN_CAP>,
    has_refresh_token: bool,
    token_gen: u32,
    expires_at: Option<Instant>,
    /// Lifetime the server gave the current token (`expires_in`).
    lifetime: Option<Duration>,
    /// A 401 was seen for the current token.
    token_rejected: bool,
    refresh: RefreshState,
    /// Id of the latest refresh attempt.
    refresh_seq: u32,
    /// Id of the last attempt abandoned by its deadline, whose late success is
    /// still welcome (0: none). Only one: an older one would be older tokens.
    abandoned: u32,
    /// Transient failures in the current refresh round.
    refresh_failures: u8,
    persist_pending: bool,
    login_required_pending: bool,
    /// Retry bucket in thousandths of a token.
    budget_milli: u64,
    rng: u64,
    /// One past the highest slot that may be live: scans stop here, so a
    /// machine sized for bursts costs little when few requests are live.
    /// Derived from `slots` (never below the truth), so not part of `hash_state`.
    live_end: usize,
    /// No slot below this has an action for `poll_action`: a drain resumes
    /// where the last one left off instead of rescanning from slot 0 (a
    /// 1,000-request burst would otherwise cost O(N^2)). Reset by every input.
    /// Derived, like `live_end`, so not part of `hash_state`.
    scan_from: usize,
    slots: [Slot; N],
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
            config,
            session: SessionState::LoggedOut,
            access: TokenBuf::new(),
            refresh_token: TokenBuf::new(),
            has_refresh_token: false,
            token_gen: 0,
            expires_at: None,
            lifetime: None,
            token_rejected: false,
            refresh: RefreshState::Idle,
            refresh_seq: 0,
            abandoned: 0,
            refresh_failures: 0,
            persist_pending: false,
            login_required_pending: false,
            budget_milli: u64::from(config.retry_budget.max_tokens) * 1000,
            rng: seed,
            live_end: 0,
            scan_from: 0,
            slots: [Slot::FREE; N],
        }
    }

    /// Feeds the complete internal state, tokens included, to `state`.
    ///
    /// For model checkers: two machines that feed the same bytes behave
    /// identically for every future input, so a state already explored can be
    /// skipped. Use a keyed or cryptographic hasher if the hash may leave
    /// the process, since the tokens are part of it.
    pub fn hash_state<H: core::hash::Hasher>(&self, state: &mut H) {
        use core::hash::Hash;
        self.config.hash(state);
        self.session.hash(state);
        self.access.as_str().hash(state);
        self.refresh_token.as_str().hash(state);
        self.has_refresh_token.hash(state);
        self.token_gen.hash(state);
        self.expires_at.hash(state);
        self.lifetime.hash(state);
        self.token_rejected.hash(state);
        self.refresh.hash(state);
        self.refresh_seq.hash(state);
        self.abandoned.hash(state);
        self.refresh_failures.hash(state);
        self.persist_pending.hash(state);
        self.login_required_pending.hash(state);
        self.budget_milli.hash(state);
        self.rng.hash(state);
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

    /// Counts describing the current state.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            refresh_in_flight: matches!(self.refresh, RefreshState::InFlight { .. }),
            refresh_pending: self.refresh != RefreshState::Idle,
            token_generation: self.token_gen,
            ..Snapshot::default()
        };
        for slot in &self.slots {
            match slot.phase {
                Phase::Free => continue,
                Phase::Waiting => s.waiting += 1,
                Phase::InFlight => s.in_flight += 1,
                Phase::Backoff { .. } => s.backing_off += 1,
                Phase::Ready | Phase::Finished(_) => {}
            }
            s.live += 1;
        }
        s
    }

    /// Sends made so far by a live request.
    pub fn sends(&self, id: RequestId) -> Result<u32, Error> {
        Ok(self.slots[self.index(id)?].sends)
    }

    /// The current tokens, for storage or inspection (`None` when logged out).
    pub fn tokens(&self) -> Option<StoredTokens<'_>> {
        if self.session != SessionState::Active {
            return None;
        }
        Some(StoredTokens {
            access_token: AccessToken::new(self.access.as_str()),
            refresh_token: self
                .has_refresh_token
                .then(|| RefreshToken::new(self.refresh_token.as_str())),
            expires_at: self.expires_at,
        })
    }

    // ----- inputs -------------------------------------------------------------

    /// Install a session (first login, or after `LoginRequired`/logout).
    /// Requests waiting for a refresh are released with the new token.
    pub fn login(&mut self, now: Instant, tokens: TokenSet<'_>) -> Result<(), Error> {
        self.scan_from = 0;
        self.check_set(&tokens)?;
        self.session = SessionState::Active;
        self.has_refresh_token = false;
        self.install(now, tokens);
        self.abandoned = 0;
        self.end_refresh_round();
        self.login_required_pending = false;
        self.release_waiters(now);
        Ok(())
    }

    /// End the session: tokens are dropped (the driver is told to delete them)
    /// and every pending request fails `LoggedOut`.
    pub fn logout(&mut self, _now: Instant) {
        self.scan_from = 0;
        self.clear_tokens();
        self.session = SessionState::LoggedOut;
        self.abandoned = 0;
        self.end_refresh_round();
        self.login_required_pending = false;
        self.persist_pending = true;
        self.fail_all(Failure::LoggedOut);
    }

    /// Reseed the jitter source (mixes the bits into the current state).
    pub fn reseed(&mut self, bits: u64) {
        self.rng ^= bits;
        let _ = self.next_random();
    }

    /// Begin a request. Its next step comes from `poll_action`: usually `Send`,
    /// `Wait` while a refresh is needed, or `Fail` when there is no session.
    pub fn start_request(&mut self, now: Instant, spec: RequestSpec) -> Result<RequestId, Error> {
        self.scan_from = 0;
        let index = self
            .slots
            .iter()
            .position(|s| !s.is_live())
            .ok_or(Error::Full)?;
        self.live_end = self.live_end.max(index + 1);
        let generation = self.slots[index].generation.wrapping_add(1);
        self.slots[index] = Slot {
            generation,
            spec,
            ..Slot::FREE
        };
        self.slots[index].phase = Phase::Ready;
        self.route(now, index);
        Ok(RequestId {
            slot: index as u16,
            generation,
        })
    }

    /// Abandon a request at any point. Its state is released; if a refresh it
    /// triggered is in flight, that refresh still resolves for everyone else.
    pub fn cancel(&mut self, id: RequestId) -> Result<(), Error> {
        let i = self.index(id)?;
        self.slots[i].phase = Phase::Free;
        self.trim_live_end();
        Ok(())
    }

    /// A response arrived for a request that was sent.
    pub fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Response,
    ) -> Result<(), Error> {
        self.scan_from = 0;
        let i = self.in_flight(id)?;
        let insufficient_scope = response.bearer_error == Some(BearerError::InsufficientScope);
        match response.status {
            401 | 403 if insufficient_scope => self.finish(i, Some(Failure::Forbidden)),
            401 => self.on_unauthorized(now, i),
            status if is_transient_status(status) => {
                // 502/504 come from a gateway: the origin may have acted. 429/503 mean it did not.
                let reached = matches!(status, 502 | 504);
                self.on_transient(now, i, reached, response.retry_after, None);
            }
            _ => {
                self.credit_budget();
                self.finish(i, None);
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
        self.scan_from = 0;
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
        self.scan_from = 0;
        let current =
            id.0 == self.refresh_seq && matches!(self.refresh, RefreshState::InFlight { .. });
        let late_success = id.0 == self.abandoned
            && id.0 != 0
            && self.session == SessionState::Active
            && matches!(outcome, RefreshOutcome::Success(_));
        if !current && !late_success {
            return Err(Error::UnknownRefresh);
        }
        match outcome {
            RefreshOutcome::Success(tokens) => {
                if let Err(e) = self.check_set(&tokens) {
                    // The server has issued tokens we cannot hold: the old grant may be
                    // spent already, so the session cannot be trusted to continue.
                    self.lose_session();
                    return Err(e);
                }
                self.install(now, tokens);
                self.abandoned = 0;
                self.end_refresh_round();
                self.release_waiters(now);
            }
            RefreshOutcome::Rejected => self.lose_session(),
            RefreshOutcome::Transient { retry_after } => self.refresh_failed(now, retry_after),
        }
        Ok(())
    }

    /// The earliest instant at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let refresh = match self.refresh {
            RefreshState::Queued { deadline } | RefreshState::InFlight { deadline } => {
                Some(deadline)
            }
            RefreshState::Backoff { until } => Some(until),
            RefreshState::Idle => None,
        };
        self.slots[..self.live_end]
            .iter()
            .filter_map(|s| match s.phase {
                Phase::Backoff { until } => Some(until),
                _ => None,
            })
            .chain(refresh)
            .min()
    }

    /// Time has passed: fire refresh deadlines, refresh backoffs and request backoffs due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.scan_from = 0;
        match self.refresh {
            RefreshState::Queued { deadline } | RefreshState::InFlight { deadline }
                if deadline <= now =>
            {
                // The attempt is abandoned; its id is retired so only a late success counts.
                if matches!(self.refresh, RefreshState::InFlight { .. }) {
                    self.abandoned = self.refresh_seq;
                }
                self.refresh_seq = self.refresh_seq.wrapping_add(1);
                self.refresh = RefreshState::Idle;
                self.refresh_failed(now, None);
            }
            RefreshState::Backoff { until } if until <= now => self.queue_refresh(now),
            _ => {}
        }
        self.trim_live_end();
        for i in 0..self.live_end {
            if let Phase::Backoff { until } = self.slots[i].phase {
                if until <= now {
                    self.slots[i].phase = Phase::Ready;
                    self.route(now, i);
                }
            }
        }
    }

    // ----- outputs ------------------------------------------------------------

    /// The next action for the driver, or `None` when there is nothing to do now.
    /// Session actions (persist, login required, refresh) come before request actions.
    pub fn poll_action(&mut self) -> Option<Action<'_>> {
        if self.has_session_action() {
            return self.poll_session();
        }
        self.trim_live_end();
        // Checked by every test run (debug builds): the skipped slots are idle.
        debug_assert!(
            (0..self.scan_from.min(self.live_end)).all(|j| !self.slot_has_action(j)),
            "a slot below scan_from has an action"
        );
        let i = (self.scan_from..self.live_end).find(|&i| self.slot_has_action(i))?;
        // Emitting changes only slot `i`, and nothing below it has an action.
        self.scan_from = i;
        self.emit(i)
    }

    /// The next session-level action (`PersistTokens`, `LoginRequired`, `Refresh`), if any.
    pub fn poll_session(&mut self) -> Option<Action<'_>> {
        if self.persist_pending || self.login_required_pending {
            return self.poll_notice();
        }
        if let RefreshState::Queued { deadline } = self.refresh {
            self.refresh = RefreshState::InFlight { deadline };
            return Some(Action::Refresh {
                id: RefreshId(self.refresh_seq),
                refresh_token: RefreshToken::new(self.refresh_token.as_str()),
            });
        }
        None
    }

    /// The next session notice (`PersistTokens`, `LoginRequired`), if any. Unlike
    /// [`poll_session`](Self::poll_session) it never hands out the refresh, for
    /// drivers where whoever is free to perform the refresh claims it later.
    pub fn poll_notice(&mut self) -> Option<Action<'_>> {
        if self.persist_pending {
            self.persist_pending = false;
            return Some(Action::PersistTokens {
                tokens: self.tokens(),
            });
        }
        if self.login_required_pending {
            self.login_required_pending = false;
            return Some(Action::LoginRequired);
        }
        None
    }

    /// The next action for one request, if any (for drivers where each request
    /// has its own task or thread).
    pub fn poll_request(&mut self, id: RequestId) -> Result<Option<Action<'_>>, Error> {
        let i = self.index(id)?;
        self.trim_live_end();
        if self.slot_has_action(i) {
            Ok(self.emit(i))
        } else {
            Ok(None)
        }
    }

    // ----- internals ----------------------------------------------------------

    /// Lower `live_end` past free slots at the top.
    fn trim_live_end(&mut self) {
        while self.live_end > 0 && !self.slots[self.live_end - 1].is_live() {
            self.live_end -= 1;
        }
    }

    fn has_session_action(&self) -> bool {
        self.persist_pending
            || self.login_required_pending
            || matches!(self.refresh, RefreshState::Queued { .. })
    }

    fn slot_has_action(&self, i: usize) -> bool {
        let s = &self.slots[i];
        match s.phase {
            Phase::Ready | Phase::Finished(_) => true,
            Phase::Waiting | Phase::Backoff { .. } => !s.announced,
            Phase::Free | Phase::InFlight => false,
        }
    }

    fn emit(&mut self, i: usize) -> Option<Action<'_>> {
        let slot = &mut self.slots[i];
        let id = RequestId {
            slot: i as u16,
            generation: slot.generation,
        };
        match slot.phase {
            Phase::Ready => {
                slot.phase = Phase::InFlight;
                slot.sent_gen = self.token_gen;
                slot.sends += 1;
                let token = AccessToken::new(self.access.as_str());
                if slot.sends == 1 {
                    Some(Action::Send { id, token })
                } else {
                    Some(Action::Retry {
                        id,
                        token,
                        reason: slot.retry_reason,
                    })
                }
            }
            Phase::Finished(failure) => {
                slot.phase = Phase::Free;
                Some(match failure {
                    None => Action::Deliver { id },
                    Some(failure) => Action::Fail { id, failure },
                })
            }
            Phase::Waiting if !slot.announced => {
                slot.announced = true;
                Some(Action::Wait { id })
            }
            Phase::Backoff { until } if !slot.announced => {
                slot.announced = true;
                Some(Action::Backoff { id, until })
            }
            _ => None,
        }
    }

    fn index(&self, id: RequestId) -> Result<usize, Error> {
        let i = id.slot as usize;
        match self.slots.get(i) {
            Some(s) if s.is_live() && s.generation == id.generation => Ok(i),
            _ => Err(Error::UnknownRequest),
        }
    }

    fn in_flight(&self, id: RequestId) -> Result<usize, Error> {
        let i = self.index(id)?;
        if self.slots[i].phase == Phase::InFlight {
            Ok(i)
        } else {
            Err(Error::UnexpectedEvent)
        }
    }

    fn finish(&mut self, i: usize, failure: Option<Failure>) {
        self.slots[i].phase = Phase::Finished(failure);
    }

    fn set_phase(&mut self, i: usize, phase: Phase) {
        self.slots[i].phase = phase;
        self.slots[i].announced = false;
    }

    /// The current token may be attached to a new send.
    fn token_usable(&self, now: Instant) -> bool {
        !self.token_rejected
            && self.expires_at.map_or(true, |exp| {
                now.saturating_add(self.margin(self.config.expiry_skew)) < exp
            })
    }

    /// A safety margin before expiry, at most half the token's lifetime: a server
    /// that issues tokens shorter than the skew still gets each one used.
    fn margin(&self, wanted: Duration) -> Duration {
        self.lifetime.map_or(wanted, |l| wanted.min(l / 2))
    }

    /// Decide what a request that needs a token does next (slot is `Ready`).
    fn route(&mut self, now: Instant, i: usize) {
        match self.session {
            SessionState::LoggedOut => return self.finish(i, Some(Failure::LoggedOut)),
            SessionState::LoginRequired => return self.finish(i, Some(Failure::LoginRequired)),
            SessionState::Active => {}
        }
        if self.slots[i].sends >= self.config.max_sends() {
            // Unreachable with consistent counters; kept so the bound holds by construction.
            return self.finish(i, Some(Failure::Unauthorized));
        }
        if self.token_usable(now) {
            self.set_phase(i, Phase::Ready);
            if let Some(ahead) = self.config.refresh_ahead {
                let due = self
                    .expires_at
                    .is_some_and(|exp| now.saturating_add(self.margin(ahead)) >= exp);
                if due && self.refresh == RefreshState::Idle {
                    self.start_refresh(now);
                }
            }
        } else {
            self.set_phase(i, Phase::Waiting);
            if self.refresh == RefreshState::Idle {
                self.start_refresh(now);
            }
            // Requests queued earlier would go out with the same unusable token: hold them too.
            for slot in self.slots[..self.live_end].iter_mut() {
                if slot.phase == Phase::Ready {
                    slot.phase = Phase::Waiting;
                    slot.announced = false;
                }
            }
        }
    }

    fn on_unauthorized(&mut self, now: Instant, i: usize) {
        let slot = &mut self.slots[i];
        slot.auth_failures = slot.auth_failures.saturating_add(1);
        let stale = slot.sent_gen != self.token_gen;
        let spent = slot.auth_failures > self.config.max_auth_retries;
        let replayable = slot.spec.replayable;
        if !stale && self.session == SessionState::Active && !self.token_rejected {
            self.token_rejected = true;
            self.reroute_ready(now);
        }
        if spent {
            self.finish(i, Some(Failure::Unauthorized));
        } else if !replayable {
            self.finish(i, Some(Failure::BodyNotReplayable));
        } else {
            self.slots[i].retry_reason = if stale {
                RetryReason::StaleToken
            } else {
                RetryReason::NewToken
            };
            self.slots[i].phase = Phase::Ready;
            self.route(now, i);
        }
    }

    /// A request queued to go out with a token that has just become known-bad must wait instead.
    fn reroute_ready(&mut self, now: Instant) {
        for j in 0..self.live_end {
            if self.slots[j].phase == Phase::Ready {
                self.route(now, j);
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
        self.debit_budget();
        let slot = self.slots[i];
        let permitted = (!may_have_reached_server || slot.spec.idempotent)
            && slot.transient_retries < self.config.max_transient_retries
            && self.budget_allows_retry()
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
            None => self.jitter(self.config.request_backoff, slot.transient_retries),
        };
        let slot = &mut self.slots[i];
        slot.transient_retries += 1;
        slot.retry_reason = RetryReason::Transient;
        self.set_phase(i, Phase::Backoff { until: now + delay });
    }

    fn start_refresh(&mut self, now: Instant) {
        if !self.has_refresh_token {
            // Nothing to refresh with: the session cannot recover by itself.
            return self.lose_session();
        }
        self.refresh_failures = 0;
        self.queue_refresh(now);
    }

    fn queue_refresh(&mut self, now: Instant) {
        self.refresh_seq = self.refresh_seq.wrapping_add(1).max(1);
        self.refresh = RefreshState::Queued {
            deadline: now + self.config.refresh_timeout,
        };
    }

    fn refresh_failed(&mut self, now: Instant, retry_after: Option<Duration>) {
        self.refresh_failures = self.refresh_failures.saturating_add(1);
        if self.refresh_failures >= self.config.max_refresh_attempts {
            // Give up this round but keep the tokens: the next request starts a new round.
            self.end_refresh_round();
            for slot in self.slots[..self.live_end].iter_mut() {
                if slot.phase == Phase::Waiting {
                    slot.phase = Phase::Finished(Some(Failure::RefreshUnavailable));
                }
            }
        } else {
            let delay = retry_after
                .map(|d| d.min(self.config.max_retry_after))
                .unwrap_or_else(|| {
                    self.jitter(self.config.refresh_backoff, self.refresh_failures - 1)
                });
            self.refresh = RefreshState::Backoff { until: now + delay };
        }
    }

    /// Stop the current refresh round; any outcome still out there becomes late.
    fn end_refresh_round(&mut self) {
        if self.refresh != RefreshState::Idle {
            self.refresh_seq = self.refresh_seq.wrapping_add(1);
        }
        self.refresh = RefreshState::Idle;
        self.refresh_failures = 0;
    }

    fn lose_session(&mut self) {
        if self.session == SessionState::Active {
            self.login_required_pending = true;
            self.persist_pending = true;
        }
        self.session = SessionState::LoginRequired;
        self.abandoned = 0;
        self.clear_tokens();
        self.end_refresh_round();
        for slot in self.slots[..self.live_end].iter_mut() {
            if matches!(slot.phase, Phase::Waiting | Phase::Ready) {
                slot.phase = Phase::Finished(Some(Failure::LoginRequired));
            }
        }
    }

    fn fail_all(&mut self, failure: Failure) {
        for slot in self.slots[..self.live_end].iter_mut() {
            if !matches!(slot.phase, Phase::Free | Phase::Finished(_)) {
                slot.phase = Phase::Finished(Some(failure));
            }
        }
    }

    fn clear_tokens(&mut self) {
        self.access.clear();
        self.refresh_token.clear();
        self.has_refresh_token = false;
        self.expires_at = None;
        self.lifetime = None;
        self.token_rejected = false;
        self.token_gen = self.token_gen.wrapping_add(1);
    }

    fn check_set(&self, tokens: &TokenSet<'_>) -> Result<(), Error> {
        let map = |e| match e {
            TokenCheck::TooLarge => Error::TokenTooLarge {
                capacity: TOKEN_CAP,
            },
            TokenCheck::Invalid => Error::InvalidToken,
        };
        check_token(tokens.access_token.expose_secret(), TOKEN_CAP).map_err(map)?;
        if let Some(r) = tokens.refresh_token {
            check_token(r.expose_secret(), TOKEN_CAP).map_err(map)?;
        }
        Ok(())
    }

    /// Caller validated with `check_set`.
    fn install(&mut self, now: Instant, tokens: TokenSet<'_>) {
        self.access.set(tokens.access_token.expose_secret());
        if let Some(r) = tokens.refresh_token {
            self.refresh_token.set(r.expose_secret());
            self.has_refresh_token = true;
        }
        self.expires_at = tokens.expires_in.map(|d| now + d);
        self.lifetime = tokens.expires_in;
        self.token_gen = self.token_gen.wrapping_add(1);
        self.token_rejected = false;
        self.persist_pending = true;
    }

    fn release_waiters(&mut self, now: Instant) {
        for i in 0..self.live_end {
            if self.slots[i].phase == Phase::Waiting {
                self.slots[i].phase = Phase::Ready;
                self.route(now, i);
            }
        }
    }

    fn budget_allows_retry(&self) -> bool {
        self.budget_milli > u64::from(self.config.retry_budget.max_tokens) * 500
    }

    fn debit_budget(&mut self) {
        self.budget_milli = self.budget_milli.saturating_sub(1000);
    }

    fn credit_budget(&mut self) {
        let max = u64::from(self.config.retry_budget.max_tokens) * 1000;
        self.budget_milli =
            (self.budget_milli + u64::from(self.config.retry_budget.success_credit_milli)).min(max);
    }

    /// SplitMix64: tiny, good enough for jitter, deterministic in the seed.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Full jitter: uniform in `[0, min(max, base * 2^attempt)]`.
    fn jitter(&mut self, backoff: Backoff, attempt: u8) -> Duration {
        let ceiling = backoff
            .base
            .checked_mul(1u32 << attempt.min(31))
            .unwrap_or(backoff.max)
            .min(backoff.max);
        let nanos = ceiling.as_nanos().min(u128::from(u64::MAX)) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_random() % (nanos + 1))
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
    fn jitter_source_is_splitmix64() {
        // Reference outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut m: RefreshMachine<1, 8> = RefreshMachine::new(Config::DEFAULT, 0);
        assert_eq!(m.next_random(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(m.next_random(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(m.next_random(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn jitter_is_full_jitter_up_to_the_ceiling() {
        let mut m: RefreshMachine<1, 8> = RefreshMachine::new(Config::DEFAULT, 9);
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for (attempt, ceiling_ms) in [
            (0u8, 100u64),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let ceiling = Duration::from_millis(ceiling_ms);
            let mut highest = Duration::ZERO;
            for _ in 0..400 {
                let d = m.jitter(b, attempt);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                highest = highest.max(d);
            }
            assert!(
                highest * 10 > ceiling * 9,
                "attempt {attempt}: max {highest:?}"
            );
        }
        // The ceiling itself is a possible draw: with a 1 ns base both 0 and 1 occur.
        let tiny = Backoff {
            base: Duration::from_nanos(1),
            max: Duration::from_nanos(1),
        };
        let draws: [Duration; 64] = core::array::from_fn(|_| m.jitter(tiny, 0));
        assert!(draws.contains(&Duration::ZERO));
        assert!(draws.contains(&Duration::from_nanos(1)));
    }

    #[test]
    fn logout_wipes_the_token_bytes() {
        let mut m: RefreshMachine<1, 16> = RefreshMachine::new(Config::DEFAULT, 0);
        m.login(
            Instant::ZERO,
            TokenSet::new("access-1").with_refresh_token("refresh-1"),
        )
        .unwrap();
        m.logout(Instant::ZERO);
        assert_eq!(m.access.as_str(), "");
        assert_eq!(m.refresh_token.as_str(), "");
        assert!(!m.has_refresh_token);
        assert_eq!(m.expires_at, None);
        assert_eq!(m.lifetime, None);
    }
}
