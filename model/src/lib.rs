//! Shared test support for refresh-machine: owned copies of actions and a
//! checker that watches a machine from the outside.
//!
//! The checker is fed every input the driver gives and every action the
//! machine emits. It holds two things, both written once and reused by the
//! model test, the exhaustive small-scope test and the fuzz targets:
//!
//! - **invariants** (safety): no refresh token presented after the machine
//!   learned it was rotated, one refresh at a time (tracked by the checker
//!   itself, from the action until its answer or recorded deadline), no
//!   replayed send, sends bounded, one outcome per request, one
//!   login-required signal per lost session;
//! - **rules** (a reference model of what the machine must do next): after
//!   each input it states what the next drain must contain (a stale 401 is
//!   retried with the current token and no refresh, the auth-retry bound, no
//!   resend of a non-idempotent request that may have reached the server,
//!   rejected versus transient versus misconfigured refresh outcomes, the
//!   expiry margin, backoff and `Retry-After` within their bounds, the
//!   waiters of a refresh using its token, the refused-token cool-down), so a
//!   rule change that keeps every invariant still fails.
//!
//! It panics with a description as soon as either breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

pub mod cluster;
pub mod world;

use refresh_machine::{
    Action, Config, Failure, Instant, RefreshId, RefreshMachine, RequestId, RequestSpec,
    RequestState, RetryReason, SendErrorKind, SessionState,
};

/// An [`Action`] with its borrowed tokens copied out, so it can outlive the poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// `Action::Send`, first send.
    Send(RequestId, String),
    /// `Action::Send` again, and why.
    Retry(RequestId, String, RetryReason),
    /// `Action::Deliver`.
    Deliver(RequestId),
    /// `Action::Fail`.
    Fail(RequestId, Failure),
    /// `Action::Refresh`: id, refresh token presented, deadline.
    Refresh(RefreshId, String, Instant),
    /// `Action::PersistTokens`: access and refresh token, or `None` to delete.
    Persist(Option<(String, Option<String>)>),
    /// `Action::LoginRequired`.
    LoginRequired,
}

impl From<Action<'_>> for Act {
    fn from(a: Action<'_>) -> Self {
        match a {
            Action::Send {
                id,
                token,
                retry: None,
            } => Act::Send(id, token.expose_secret().into()),
            Action::Send {
                id,
                token,
                retry: Some(reason),
            } => Act::Retry(id, token.expose_secret().into(), reason),
            Action::Deliver { id } => Act::Deliver(id),
            Action::Fail { id, failure } => Act::Fail(id, failure),
            Action::Refresh {
                id,
                refresh_token,
                deadline,
            } => Act::Refresh(id, refresh_token.expose_secret().into(), deadline),
            Action::PersistTokens { tokens } => Act::Persist(tokens.map(|t| {
                (
                    t.access_token.expose_secret().into(),
                    t.refresh_token.map(|r| r.expose_secret().into()),
                )
            })),
            Action::LoginRequired => Act::LoginRequired,
        }
    }
}

impl Act {
    /// The request this action is about, if any.
    pub fn request(&self) -> Option<RequestId> {
        match self {
            Act::Send(id, _) | Act::Retry(id, _, _) | Act::Deliver(id) | Act::Fail(id, _) => {
                Some(*id)
            }
            _ => None,
        }
    }

    /// `Deliver` or `Fail`: a request's one outcome.
    pub fn is_outcome(&self) -> bool {
        matches!(self, Act::Deliver(_) | Act::Fail(..))
    }
}

/// Drain `poll_action` until `None` (bounded: a machine that never stops is a bug).
pub fn drain<const N: usize, const C: usize>(m: &mut RefreshMachine<N, C>) -> Vec<Act> {
    let mut out = Vec::new();
    while let Some(a) = m.poll_action() {
        out.push(Act::from(a));
        assert!(out.len() <= 10 * N + 16, "poll_action never returned None");
    }
    out
}

/// What a refresh's answer was, as the checker needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshAnswer {
    /// New tokens: the access token, its lifetime, and whether the refresh
    /// token was rotated.
    Success {
        /// The new access token.
        access: String,
        /// `expires_in`.
        expires_in: Option<Duration>,
        /// A new refresh token came with it (the presented one is spent).
        rotated: bool,
    },
    /// `invalid_grant`.
    Rejected,
    /// Try again later, with an optional `Retry-After`.
    Transient(Option<Duration>),
    /// The client is misconfigured.
    Misconfigured,
    /// A 200 with no usable access token; whether a new refresh token came.
    Unusable {
        /// A new refresh token came with it.
        rotated: bool,
    },
}

#[derive(Default, Debug, Clone, Hash)]
struct RequestRecord {
    spec: Option<RequestSpec>,
    sends: u32,
    /// Tokens this request got a (non-scope) 401 for.
    rejected: BTreeSet<String>,
    /// (token, transient retries so far) of every send: never repeated.
    sent: BTreeSet<(String, u32)>,
    last_token: Option<String>,
    transient: u32,
    /// 401s for the token that was current when they arrived.
    auth_failures: u32,
    outcomes: u32,
    cancelled: bool,
    in_flight: bool,
    started_after_loss: bool,
    started_logged_out: bool,
}

/// A refresh the checker has seen handed out and not yet seen answered.
#[derive(Debug, Clone, Hash)]
struct Outstanding {
    id: RefreshId,
    deadline: Instant,
    /// The access token current when it was handed out (the one it replaces).
    replaces: Option<String>,
}

/// The checker's own view of the current access token, to judge the
/// expiry margin and the cool-down without asking the machine.
#[derive(Debug, Clone, Default, Hash)]
struct TokenView {
    access: Option<String>,
    expires_at: Option<Instant>,
    lifetime: Option<Duration>,
    refused: bool,
    from_refresh: bool,
    accepted: bool,
    unconfirmed: u32,
    cooldown_until: Option<Instant>,
}

impl TokenView {
    fn install(&mut self, now: Instant, access: &str, expires_in: Option<Duration>, refresh: bool) {
        self.access = Some(access.to_owned());
        self.expires_at = expires_in.map(|d| now.saturating_add(d));
        self.lifetime = expires_in;
        self.refused = false;
        self.from_refresh = refresh;
        self.accepted = false;
        self.cooldown_until = None;
        self.unconfirmed = if refresh { self.unconfirmed + 1 } else { 0 };
    }

    /// May a request that did not just wait for it be sent with it at `now`?
    fn usable(&self, now: Instant, skew: Duration) -> bool {
        let margin = self.lifetime.map_or(skew, |l| skew.min(l / 2));
        !self.refused
            && (self.unconfirmed >= 3
                || self
                    .expires_at
                    .is_none_or(|e| now.saturating_add(margin) < e))
    }
}

/// What the next drain must show, stated by the rules after an input.
#[derive(Debug, Clone, Hash)]
enum Expect {
    /// No `Refresh` action.
    NoRefresh,
    /// The request ends with exactly this failure.
    Fails(RequestId, Failure),
    /// The response is handed over: `Deliver`, and no resend.
    Delivered(RequestId),
    /// Retried with the current token for this reason, or parked for a refresh.
    RetriedOrWaiting(RequestId, RetryReason),
    /// Parked for a refresh (or the refresh is decided in this drain).
    AwaitsRefresh(RequestId),
    /// Backing off until exactly `now + d`, or within `now + [0, d]` when `exact` is false.
    BacksOff(RequestId, Duration, bool),
    /// `LoginRequired` is signalled.
    LoginRequired,
    /// No `LoginRequired` signal, and the session stays active.
    StaysActive,
    /// The refresh round's timer is at exactly `now + d`, unless the round gave up.
    RefreshTimerAt(Duration),
    /// Each of these requests (those still live) is sent with this token.
    SentWith(Vec<RequestId>, String),
}

/// Watches a machine from the outside and checks the invariants and the
/// rules after every step (see the crate documentation).
#[derive(Debug, Clone)]
pub struct Checker {
    config: Config,
    requests: BTreeMap<RequestId, RequestRecord>,
    order: Vec<RequestId>,
    now: Instant,
    /// Refreshes handed out and neither answered nor past their deadline.
    refreshes: Vec<Outstanding>,
    /// Refresh tokens the machine has been told were replaced.
    known_spent: BTreeSet<String>,
    /// Refreshes may not be handed out before this (a `Retry-After`).
    refresh_not_before: Option<Instant>,
    token: TokenView,
    /// The mirror of the machine's retry budget, in thousandths of a token.
    budget_milli: u64,
    /// Requests released by a refresh, with the token they must use once.
    just_obtained: BTreeMap<RequestId, String>,
    session_lost: bool,
    logged_out: bool,
    login_required_signals: u32,
    expect: Vec<Expect>,
    /// Total sends seen, for test statistics.
    pub total_sends: u64,
    /// Refresh actions seen.
    pub total_refreshes: u64,
    /// Outcomes seen.
    pub total_outcomes: u64,
}

impl Checker {
    /// Feed the checker's state (statistics excluded) to `h`.
    pub fn hash_state<H: Hasher>(&self, h: &mut H) {
        self.config.hash(h);
        self.requests.hash(h);
        self.order.hash(h);
        self.now.hash(h);
        self.refreshes.hash(h);
        self.known_spent.hash(h);
        self.refresh_not_before.hash(h);
        self.token.hash(h);
        self.budget_milli.hash(h);
        self.just_obtained.hash(h);
        self.session_lost.hash(h);
        self.logged_out.hash(h);
        self.login_required_signals.hash(h);
        self.expect.hash(h);
    }

    /// A checker for a machine built with `config`.
    pub fn new(config: Config) -> Self {
        Checker {
            config,
            requests: BTreeMap::new(),
            order: Vec::new(),
            now: Instant::ZERO,
            refreshes: Vec::new(),
            known_spent: BTreeSet::new(),
            refresh_not_before: None,
            token: TokenView::default(),
            budget_milli: u64::from(config.retry_budget.max_tokens) * 1000,
            just_obtained: BTreeMap::new(),
            session_lost: false,
            logged_out: true,
            login_required_signals: 0,
            expect: Vec::new(),
            total_sends: 0,
            total_refreshes: 0,
            total_outcomes: 0,
        }
    }

    /// The clock moved (call before feeding an input at `now`).
    pub fn at(&mut self, now: Instant) {
        assert!(now >= self.now, "time went backwards");
        self.now = now;
    }

    /// The driver fired the machine's timers at the current time: a refresh
    /// whose recorded deadline has come is over for the machine.
    pub fn timers_fired(&mut self) {
        let now = self.now;
        self.refreshes.retain(|r| r.deadline > now);
    }

    /// The driver logged in with this access token.
    pub fn on_login(&mut self, access: &str, expires_in: Option<Duration>) {
        self.token.install(self.now, access, expires_in, false);
        self.session_lost = false;
        self.logged_out = false;
        self.login_required_signals = 0;
        // A login starts a new token family: a refresh of the old one still
        // out there cannot clash with the new family's.
        self.refreshes.clear();
        self.refresh_not_before = None;
        self.just_obtained.clear();
    }

    /// The driver logged out.
    pub fn on_logout(&mut self) {
        self.token = TokenView::default();
        self.session_lost = false;
        self.logged_out = true;
        self.refreshes.clear();
        self.refresh_not_before = None;
        self.just_obtained.clear();
        // Logout aborts requests on the wire: their answers are dropped by the driver.
        for rec in self.requests.values_mut() {
            rec.in_flight = false;
        }
    }

    /// A request was started.
    pub fn on_start(&mut self, id: RequestId, spec: RequestSpec) {
        assert!(
            !self.requests.contains_key(&id),
            "request id {id:?} handed out twice"
        );
        let rec = RequestRecord {
            spec: Some(spec),
            started_after_loss: self.session_lost,
            started_logged_out: self.logged_out,
            ..RequestRecord::default()
        };
        self.requests.insert(id, rec);
        self.order.push(id);
    }

    /// The driver cancelled a request.
    pub fn on_cancel(&mut self, id: RequestId) {
        let rec = self.requests.get_mut(&id).expect("cancel of unknown id");
        rec.cancelled = true;
        rec.in_flight = false;
        self.just_obtained.remove(&id);
    }

    fn active(&self) -> bool {
        !self.session_lost && !self.logged_out
    }

    /// Backoff ceiling of the `n`th retry (full jitter: the delay is in `[0, ceiling]`).
    fn ceiling(b: refresh_machine::Backoff, n: u32) -> Duration {
        b.base
            .checked_mul(1u32 << n.min(31))
            .unwrap_or(b.max)
            .min(b.max)
    }

    /// A response to a send: `status`, its `Retry-After`, whether it is a
    /// 401/403 `insufficient_scope`, and whether the hop carried the token.
    pub fn on_response(
        &mut self,
        id: RequestId,
        status: u16,
        retry_after: Option<Duration>,
        insufficient_scope: bool,
    ) {
        let now = self.now;
        let current = self.token.access.clone();
        let active = self.active();
        let rec = self.requests.get_mut(&id).expect("response for unknown id");
        rec.in_flight = false;
        let sent = rec
            .last_token
            .clone()
            .expect("response to a request never sent");
        let spec = rec.spec.expect("started");
        let max_sends = self.config.max_sends();
        match status {
            401 | 403 if insufficient_scope => {
                self.expect.push(Expect::Fails(id, Failure::Forbidden));
            }
            401 => {
                rec.rejected.insert(sent.clone());
                let stale = current.as_deref() != Some(sent.as_str());
                if !active {
                    return;
                }
                if stale {
                    // The token was replaced since: progress, no refresh of its own.
                    if !spec.replayable {
                        self.expect
                            .push(Expect::Fails(id, Failure::BodyNotReplayable));
                    } else if rec.sends >= max_sends {
                        self.expect.push(Expect::Fails(id, Failure::Unauthorized));
                    } else {
                        self.expect
                            .push(Expect::RetriedOrWaiting(id, RetryReason::StaleToken));
                    }
                    // (Refresh-ahead may start one in the background.)
                    if self.token.usable(now, self.config.expiry_skew)
                        && self.config.refresh_ahead.is_none()
                    {
                        self.expect.push(Expect::NoRefresh);
                    }
                    return;
                }
                rec.auth_failures += 1;
                let cooling = self.token.cooldown_until.is_some_and(|t| now < t);
                let due = self.token.from_refresh
                    && !self.token.accepted
                    && self.token.cooldown_until.is_none()
                    && self.config.refused_token_cooldown > Duration::ZERO;
                if cooling || due {
                    if due {
                        self.token.cooldown_until =
                            Some(now.saturating_add(self.config.refused_token_cooldown));
                    }
                    self.expect.push(Expect::Fails(id, Failure::Unauthorized));
                    self.expect.push(Expect::NoRefresh);
                    return;
                }
                self.token.refused = true;
                if rec.auth_failures > u32::from(self.config.max_auth_retries) {
                    self.expect.push(Expect::Fails(id, Failure::Unauthorized));
                } else if !spec.replayable {
                    self.expect
                        .push(Expect::Fails(id, Failure::BodyNotReplayable));
                } else if rec.sends >= max_sends {
                    self.expect.push(Expect::Fails(id, Failure::Unauthorized));
                } else {
                    self.expect.push(Expect::AwaitsRefresh(id));
                }
            }
            429 | 502 | 503 | 504 => {
                let reached = matches!(status, 502 | 504);
                self.transient(id, reached, retry_after, None);
            }
            _ => {
                if status < 500 && current.as_deref() == Some(sent.as_str()) {
                    self.token.accepted = true;
                    self.token.unconfirmed = 0;
                    self.token.cooldown_until = None;
                }
                self.credit();
                self.expect.push(Expect::Delivered(id));
            }
        }
    }

    fn credit(&mut self) {
        let max = u64::from(self.config.retry_budget.max_tokens) * 1000;
        self.budget_milli =
            (self.budget_milli + u64::from(self.config.retry_budget.success_credit_milli)).min(max);
    }

    /// The transient-failure rules, mirrored: retried after a backoff within
    /// its bounds, or ended at once (never resent when it may have reached
    /// the server and is not idempotent).
    fn transient(
        &mut self,
        id: RequestId,
        reached: bool,
        retry_after: Option<Duration>,
        error: Option<SendErrorKind>,
    ) {
        self.budget_milli = self.budget_milli.saturating_sub(1000);
        let budget_ok = self.budget_milli > u64::from(self.config.retry_budget.max_tokens) * 500;
        let rec = self.requests.get_mut(&id).expect("known request");
        let spec = rec.spec.expect("started");
        let permitted = (!reached || spec.idempotent)
            && rec.transient < u32::from(self.config.max_transient_retries)
            && budget_ok
            && retry_after.is_none_or(|d| d <= self.config.max_retry_after);
        let n = rec.transient;
        rec.transient += 1;
        if !permitted || !spec.replayable {
            let expect = match error {
                None => Expect::Delivered(id),
                Some(_) if permitted => Expect::Fails(id, Failure::BodyNotReplayable),
                Some(kind) => Expect::Fails(id, Failure::Transport(kind)),
            };
            self.expect.push(expect);
            return;
        }
        self.expect.push(match retry_after {
            Some(d) => Expect::BacksOff(id, d, true),
            None => Expect::BacksOff(id, Self::ceiling(self.config.request_backoff, n), false),
        });
    }

    /// A send failed before any response.
    pub fn on_send_error(&mut self, id: RequestId, kind: SendErrorKind) {
        let rec = self
            .requests
            .get_mut(&id)
            .expect("send error for unknown id");
        rec.in_flight = false;
        self.transient(id, !kind.never_reached_server(), None, Some(kind));
    }

    /// The driver fed the answer of refresh `id`, which presented `presented`;
    /// `accepted` is what the machine said (`Ok`), `waiting` the requests that
    /// were parked for it just before.
    pub fn on_refresh_outcome(
        &mut self,
        id: RefreshId,
        presented: &str,
        answer: &RefreshAnswer,
        accepted: bool,
        waiting: Vec<RequestId>,
    ) {
        let outstanding = self.refreshes.iter().any(|r| r.id == id);
        self.refreshes.retain(|r| r.id != id);
        if !accepted {
            return;
        }
        assert!(
            outstanding || matches!(answer, RefreshAnswer::Success { .. }),
            "the machine accepted {answer:?} for {id:?}, which was not outstanding"
        );
        let now = self.now;
        match answer {
            RefreshAnswer::Success {
                access,
                expires_in,
                rotated,
            } => {
                if *rotated {
                    self.known_spent.insert(presented.to_owned());
                }
                self.token.install(now, access, *expires_in, true);
                self.refresh_not_before = None;
                for w in &waiting {
                    self.just_obtained.insert(*w, access.clone());
                }
                self.expect.push(Expect::SentWith(waiting, access.clone()));
            }
            RefreshAnswer::Rejected => {
                self.expect.push(Expect::LoginRequired);
                for w in waiting {
                    self.expect.push(Expect::Fails(w, Failure::LoginRequired));
                }
            }
            RefreshAnswer::Misconfigured => {
                self.expect.push(Expect::StaysActive);
                for w in waiting {
                    self.expect.push(Expect::Fails(
                        w,
                        Failure::RefreshMisconfigured(Some(
                            refresh_machine::grant::OAuthError::InvalidClient,
                        )),
                    ));
                }
            }
            RefreshAnswer::Transient(retry_after) => {
                self.expect.push(Expect::StaysActive);
                if let Some(d) = retry_after {
                    // Honoured by this round's next attempt and by any new round.
                    let d = (*d).min(self.config.max_retry_after);
                    self.refresh_not_before = Some(now.saturating_add(d));
                    self.expect.push(Expect::RefreshTimerAt(d));
                }
            }
            RefreshAnswer::Unusable { rotated: true } => {
                self.known_spent.insert(presented.to_owned());
                self.expect.push(Expect::StaysActive);
            }
            RefreshAnswer::Unusable { rotated: false } => {
                self.expect.push(Expect::LoginRequired);
            }
        }
    }

    /// Call after every input, with the machine, before its actions are drained.
    pub fn after_input<const N: usize, const C: usize>(&mut self, m: &RefreshMachine<N, C>) {
        if m.session() != SessionState::Active {
            assert!(
                !m.snapshot().refresh_pending,
                "refresh pending without a session"
            );
        }
    }

    /// The driver did not drain after this input (it batches): the rules'
    /// expectations about "the next drain" do not apply.
    pub fn skip_expectations(&mut self) {
        self.expect.clear();
    }

    /// Check a drained batch of actions against the rules stated by the
    /// inputs since the last drain, then the machine's state after it.
    pub fn after_drain<const N: usize, const C: usize>(
        &mut self,
        acts: &[Act],
        m: &RefreshMachine<N, C>,
    ) {
        let now = self.now;
        let expect = std::mem::take(&mut self.expect);
        let state = |id: RequestId| m.request_state(id).ok();
        let live = |id: RequestId, this: &Checker| {
            this.requests
                .get(&id)
                .is_some_and(|r| !r.cancelled && r.outcomes <= 1)
        };
        for e in &expect {
            match e {
                Expect::NoRefresh => assert!(
                    !acts.iter().any(|a| matches!(a, Act::Refresh(..))),
                    "rule: no refresh here, got {acts:?}"
                ),
                Expect::Fails(id, failure) => {
                    if live(*id, self) {
                        assert!(
                            acts.contains(&Act::Fail(*id, *failure)),
                            "rule: {id:?} must fail {failure:?}, got {acts:?}"
                        );
                    }
                }
                Expect::Delivered(id) => assert!(
                    acts.contains(&Act::Deliver(*id)),
                    "rule: {id:?} must be delivered as it is, got {acts:?}"
                ),
                Expect::RetriedOrWaiting(id, reason) => {
                    let retried = acts.iter().any(|a| {
                        matches!(a, Act::Retry(i, t, r) if i == id && r == reason
                            && Some(t) == self.token.access.as_ref())
                    });
                    let waits = state(*id) == Some(RequestState::WaitingForRefresh);
                    assert!(
                        retried || waits,
                        "rule: {id:?} must be retried ({reason:?}) with the current token or wait for the refresh, got {acts:?} / {:?}",
                        state(*id)
                    );
                }
                Expect::AwaitsRefresh(id) => {
                    let refresh = acts.iter().any(|a| matches!(a, Act::Refresh(..)))
                        || m.snapshot().refresh_pending;
                    let waits = state(*id) == Some(RequestState::WaitingForRefresh);
                    assert!(
                        refresh && waits,
                        "rule: {id:?} got 401 for the current token: it must wait for a refresh, got {acts:?} / {:?}",
                        state(*id)
                    );
                }
                Expect::BacksOff(id, d, exact) => match state(*id) {
                    Some(RequestState::BackingOff { until }) => {
                        let wait = until.saturating_duration_since(now);
                        // (At the far end of time the clock saturates.)
                        let d = &now.saturating_add(*d).saturating_duration_since(now);
                        if *exact {
                            assert_eq!(wait, *d, "rule: {id:?} must honour Retry-After");
                        } else {
                            assert!(
                                wait <= *d,
                                "rule: {id:?} backs off {wait:?}, over the ceiling {d:?}"
                            );
                        }
                    }
                    other => {
                        panic!("rule: {id:?} must back off ({d:?}), is {other:?} after {acts:?}")
                    }
                },
                Expect::LoginRequired => assert!(
                    acts.contains(&Act::LoginRequired),
                    "rule: the session is lost: LoginRequired, got {acts:?}"
                ),
                Expect::StaysActive => {
                    assert!(
                        !acts.contains(&Act::LoginRequired),
                        "rule: this refresh outcome must not end the session: {acts:?}"
                    );
                    assert_eq!(m.session(), SessionState::Active);
                }
                Expect::RefreshTimerAt(d) => {
                    // Unless the round gave up (its waiters failed RefreshUnavailable).
                    if let Some(t) = m.snapshot().refresh_timer {
                        assert_eq!(
                            t,
                            now.saturating_add(*d),
                            "rule: the next refresh attempt waits for Retry-After (clamped to max_retry_after)"
                        );
                    }
                }
                Expect::SentWith(ids, token) => {
                    for id in ids {
                        if !live(*id, self) {
                            continue;
                        }
                        let sent = acts.iter().any(|a| {
                            matches!(a, Act::Send(i, t) | Act::Retry(i, t, _) if i == id && t == token)
                        });
                        let ended = acts
                            .iter()
                            .any(|a| a.request() == Some(*id) && a.is_outcome());
                        assert!(
                            sent || ended,
                            "rule: {id:?} waited for {token:?} and must use it at least once, got {acts:?}"
                        );
                    }
                }
            }
        }
        for act in acts {
            self.on_action(act);
        }
        // After a drain, a round that is pending but not in flight is
        // backing off: no attempt before its timer (a new request does not
        // cut the backoff short).
        let snap = m.snapshot();
        if snap.refresh_pending && !snap.refresh_in_flight {
            if let Some(t) = snap.refresh_timer {
                self.refresh_not_before = Some(self.refresh_not_before.map_or(t, |n| n.max(t)));
            }
        }
    }

    /// Check one emitted action against the invariants.
    pub fn on_action(&mut self, act: &Act) {
        match act {
            Act::Send(id, token) | Act::Retry(id, token, _) => self.on_send(*id, token, act),
            Act::Deliver(id) | Act::Fail(id, _) => {
                let session_lost = self.session_lost;
                let logged_out = self.logged_out;
                self.just_obtained.remove(id);
                let rec = self.requests.get_mut(id).expect("outcome for unknown id");
                assert!(!rec.cancelled, "outcome {act:?} for a cancelled request");
                rec.outcomes += 1;
                assert_eq!(rec.outcomes, 1, "second outcome {act:?}");
                assert!(!rec.in_flight, "outcome {act:?} while a send is unanswered");
                if rec.started_after_loss && session_lost && rec.sends == 0 {
                    assert!(
                        matches!(act, Act::Fail(_, Failure::LoginRequired)),
                        "request started after the session was lost ended {act:?}"
                    );
                }
                if rec.started_logged_out && logged_out && rec.sends == 0 {
                    assert!(
                        matches!(act, Act::Fail(_, Failure::LoggedOut)),
                        "request started while logged out ended {act:?}"
                    );
                }
                self.total_outcomes += 1;
            }
            Act::Refresh(id, token, deadline) => {
                assert!(
                    self.refreshes.is_empty(),
                    "second refresh {id:?} while {:?} is neither answered nor past its deadline",
                    self.refreshes
                );
                assert!(!self.session_lost, "refresh after the session was lost");
                assert!(
                    !self.known_spent.contains(token),
                    "refresh {id:?} presents a refresh token the machine knows was rotated"
                );
                if let Some(t) = self.refresh_not_before.take() {
                    assert!(
                        self.now >= t,
                        "refresh {id:?} before its backoff or the token endpoint's Retry-After ran out"
                    );
                }
                self.refreshes.push(Outstanding {
                    id: *id,
                    deadline: *deadline,
                    replaces: self.token.access.clone(),
                });
                self.total_refreshes += 1;
            }
            Act::Persist(tokens) => match tokens {
                Some((access, _)) => assert_eq!(
                    self.token.access.as_ref(),
                    Some(access),
                    "persisted an access token that is not the current one"
                ),
                None => self.token.access = None,
            },
            Act::LoginRequired => {
                self.session_lost = true;
                self.login_required_signals += 1;
                self.refreshes.clear();
                assert_eq!(
                    self.login_required_signals, 1,
                    "LoginRequired twice for one lost session"
                );
            }
        }
    }

    fn on_send(&mut self, id: RequestId, token: &str, act: &Act) {
        let just_obtained = self.just_obtained.remove(&id).as_deref() == Some(token);
        // A refresh under way to replace this very token: wait for it
        // (unless refresh-ahead, which serves the still-valid token meanwhile,
        // or the request waited for this token and uses it once).
        let urgent_refresh_forbidden = self.config.refresh_ahead.is_none()
            && !just_obtained
            && self
                .refreshes
                .iter()
                .any(|r| r.replaces.as_deref() == Some(token));
        assert!(
            !urgent_refresh_forbidden,
            "{act:?} while a refresh of that token is in flight"
        );
        assert!(!self.session_lost, "{act:?} after login was required");
        assert!(!self.logged_out, "{act:?} while logged out");
        assert_eq!(
            self.token.access.as_deref(),
            Some(token),
            "{act:?} does not carry the current token"
        );
        assert!(
            just_obtained || self.token.usable(self.now, self.config.expiry_skew),
            "rule: {act:?} at {:?} with a token past its expiry margin or refused ({:?})",
            self.now,
            self.token
        );
        let max = self.config.max_sends();
        let rec = self.requests.get_mut(&id).expect("send for unknown id");
        assert!(!rec.cancelled, "{act:?} for a cancelled request");
        assert_eq!(rec.outcomes, 0, "{act:?} after the outcome");
        assert!(
            !rec.in_flight,
            "{act:?} while the previous send is unanswered"
        );
        assert!(
            !rec.rejected.contains(token),
            "{act:?} replays a token this request was refused with"
        );
        assert!(
            rec.sent.insert((token.to_owned(), rec.transient)),
            "{act:?} replays the same token for the same attempt"
        );
        rec.sends += 1;
        assert!(
            rec.sends <= max,
            "{act:?}: {} sends > bound {max}",
            rec.sends
        );
        rec.in_flight = true;
        rec.last_token = Some(token.to_owned());
        self.total_sends += 1;
    }

    /// Every request that was not cancelled has exactly one outcome.
    pub fn assert_all_finished(&self) {
        for id in &self.order {
            let rec = &self.requests[id];
            if !rec.cancelled {
                assert_eq!(rec.outcomes, 1, "request {id:?} ended with {rec:?}");
            }
        }
    }

    /// Requests started so far.
    pub fn started(&self) -> usize {
        self.order.len()
    }

    /// Sends made so far by one request.
    pub fn sends_of(&self, id: RequestId) -> u32 {
        self.requests.get(&id).map_or(0, |r| r.sends)
    }
}
