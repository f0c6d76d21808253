//! Shared test support for refresh-machine: owned copies of actions and an
//! invariant checker that watches a machine from the outside.
//!
//! The checker is fed every input the driver gives and every action the
//! machine emits, and panics with a description as soon as one of the
//! invariants breaks. The model test, the exhaustive small-scope test and the
//! fuzz targets all reuse it, so "what correct means" is written once.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

pub mod world;

use refresh_machine::{
    Action, Config, Failure, RefreshId, RefreshMachine, RequestId, RetryReason, SessionState,
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
    /// `Action::Refresh`.
    Refresh(RefreshId, String),
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
                id, refresh_token, ..
            } => Act::Refresh(id, refresh_token.expose_secret().into()),
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

/// Drain `poll_action` until `None` (bounded: a machine that never stops is a bug).
pub fn drain<const N: usize, const C: usize>(m: &mut RefreshMachine<N, C>) -> Vec<Act> {
    let mut out = Vec::new();
    while let Some(a) = m.poll_action() {
        out.push(Act::from(a));
        assert!(out.len() <= 10 * N + 16, "poll_action never returned None");
    }
    out
}

#[derive(Default, Debug, Clone, Hash)]
struct RequestRecord {
    sends: u32,
    /// Tokens this request got a (non-scope) 401 for.
    rejected: BTreeSet<String>,
    /// (token, transient retries so far) of every send: never repeated.
    sent: BTreeSet<(String, u32)>,
    last_token: Option<String>,
    transient: u32,
    outcomes: u32,
    cancelled: bool,
    in_flight: bool,
    started_after_loss: bool,
    started_logged_out: bool,
}

/// Watches a machine from the outside and checks the invariants after every step.
///
/// Invariants:
/// 1. at most one refresh in flight (a second `Refresh` only after the first
///    was answered or abandoned by its deadline);
/// 2. no replay: a request is never sent again with a token it was refused
///    with, and no (request, token, attempt) triple is sent twice: the same
///    token is only reused by a transient retry, each one a new attempt;
/// 3. no send while an urgent refresh is under way (unless refresh-ahead is
///    configured, which by design serves the still-valid token) and none
///    while the session is lost or logged out; sends carry the current token;
/// 4. sends per request never exceed `Config::max_sends`;
/// 5. `LoginRequired` at most once per lost session;
/// 6. at most one outcome per request, none for a cancelled request; and,
///    after [`Checker::assert_all_finished`], exactly one for every other.
#[derive(Debug, Clone)]
pub struct Checker {
    config: Config,
    requests: BTreeMap<RequestId, RequestRecord>,
    order: Vec<RequestId>,
    outstanding_refresh: Option<RefreshId>,
    /// The access token the driver was last told to persist.
    current_access: Option<String>,
    session_lost: bool,
    logged_out: bool,
    login_required_signals: u32,
    /// Total sends and refreshes seen, for test statistics.
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
        self.outstanding_refresh.hash(h);
        self.current_access.hash(h);
        self.session_lost.hash(h);
        self.logged_out.hash(h);
        self.login_required_signals.hash(h);
    }

    /// A checker for a machine built with `config`.
    pub fn new(config: Config) -> Self {
        Checker {
            config,
            requests: BTreeMap::new(),
            order: Vec::new(),
            outstanding_refresh: None,
            current_access: None,
            session_lost: false,
            logged_out: true,
            login_required_signals: 0,
            total_sends: 0,
            total_refreshes: 0,
            total_outcomes: 0,
        }
    }

    /// The driver logged in with this access token.
    pub fn on_login(&mut self, access: &str) {
        self.current_access = Some(access.to_owned());
        self.session_lost = false;
        self.logged_out = false;
        self.login_required_signals = 0;
        self.outstanding_refresh = None;
    }

    /// The driver logged out.
    pub fn on_logout(&mut self) {
        self.current_access = None;
        self.session_lost = false;
        self.logged_out = true;
        self.outstanding_refresh = None;
        // Logout aborts requests on the wire: their answers are dropped by the driver.
        for rec in self.requests.values_mut() {
            rec.in_flight = false;
        }
    }

    /// A request was started.
    pub fn on_start(&mut self, id: RequestId) {
        assert!(
            !self.requests.contains_key(&id),
            "request id {id:?} handed out twice"
        );
        let rec = RequestRecord {
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
    }

    /// A response was fed for a request; `refused` when it was a 401 that is
    /// a refresh case (not `insufficient_scope`).
    pub fn on_response(&mut self, id: RequestId, refused: bool, transient: bool) {
        let rec = self.requests.get_mut(&id).expect("response for unknown id");
        rec.in_flight = false;
        if refused {
            let token = rec
                .last_token
                .clone()
                .expect("401 for a request never sent");
            rec.rejected.insert(token);
        }
        if transient {
            rec.transient += 1;
        }
    }

    /// The driver reported the outcome of the refresh in flight (or a late one).
    pub fn on_refresh_outcome(&mut self, id: RefreshId) {
        if self.outstanding_refresh == Some(id) {
            self.outstanding_refresh = None;
        }
    }

    /// Call after every input: the machine may have abandoned a refresh by its deadline.
    pub fn after_input<const N: usize, const C: usize>(&mut self, m: &RefreshMachine<N, C>) {
        let snap = m.snapshot();
        if !snap.refresh_in_flight {
            self.outstanding_refresh = None;
        }
        if m.session() != SessionState::Active {
            assert!(!snap.refresh_pending, "refresh pending without a session");
        }
    }

    /// Check one emitted action against the invariants.
    pub fn on_action(&mut self, act: &Act) {
        match act {
            Act::Send(id, token) | Act::Retry(id, token, _) => self.on_send(*id, token, act),
            Act::Deliver(id) | Act::Fail(id, _) => {
                let session_lost = self.session_lost;
                let logged_out = self.logged_out;
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
            Act::Refresh(id, _) => {
                assert!(
                    self.outstanding_refresh.is_none(),
                    "second refresh {id:?} while {:?} is in flight",
                    self.outstanding_refresh
                );
                assert!(!self.session_lost, "refresh after the session was lost");
                self.outstanding_refresh = Some(*id);
                self.total_refreshes += 1;
            }
            Act::Persist(tokens) => match tokens {
                Some((access, _)) => self.current_access = Some(access.clone()),
                None => self.current_access = None,
            },
            Act::LoginRequired => {
                self.session_lost = true;
                self.login_required_signals += 1;
                assert_eq!(
                    self.login_required_signals, 1,
                    "LoginRequired twice for one lost session"
                );
            }
        }
    }

    fn on_send(&mut self, id: RequestId, token: &str, act: &Act) {
        let urgent_refresh_forbidden =
            self.config.refresh_ahead.is_none() && self.outstanding_refresh.is_some();
        assert!(
            !urgent_refresh_forbidden,
            "{act:?} while a refresh is in flight"
        );
        assert!(!self.session_lost, "{act:?} after login was required");
        assert!(!self.logged_out, "{act:?} while logged out");
        assert_eq!(
            self.current_access.as_deref(),
            Some(token),
            "{act:?} does not carry the current token"
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
