//! The model world shared by the property tests, the exhaustive small-scope
//! test and the fuzz targets: a driver, a fake resource server and a strict
//! rotating token server around one [`RefreshMachine`], checked by
//! [`Checker`] after every step.
//!
//! The token server is adversarial the way production servers are: it
//! rotates the refresh token on every grant, remembers spent ones, and on
//! seeing a spent one again revokes the whole family. Every refresh the
//! client sends stays pending at the server until the world answers it, in
//! any order and however late; the server may process a grant and lose the
//! answer (the client sees a broken connection, or nothing until its
//! deadline), or never receive it (a connect failure).

use core::time::Duration;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use refresh_machine::grant::OAuthError;
use refresh_machine::www_authenticate::BearerError;
use refresh_machine::{
    Config, Error, Instant, RefreshId, RefreshMachine, RefreshOutcome, RefreshToken, RequestId,
    RequestSpec, RequestState, Response, SendErrorKind, SessionState, TokenSet,
};

use crate::{drain, Act, Checker, RefreshAnswer};

/// The machine under test: 8 concurrent requests, 64-byte tokens.
pub type M = RefreshMachine<8, 64>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// What the fake resource server answers to one send.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Reply {
    /// 200.
    Ok,
    /// 401 whatever the token.
    Unauthorized,
    /// 401 only if the token is not the server's current one.
    ServerDecides,
    /// 403 `insufficient_scope`: a refresh would not help.
    InsufficientScope,
    /// 503.
    Unavailable,
    /// 502 (a gateway: the origin may have acted).
    BadGateway,
    /// 504 (a gateway: the origin may have acted).
    GatewayTimeout,
    /// 429 with `Retry-After` in seconds.
    TooMany(u64),
    /// 500: delivered as is.
    ServerError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// What happens to one refresh at the token server.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RefreshReply {
    /// The server processes the grant (a strict server: a spent or revoked
    /// refresh token is refused and revokes the family) and the answer
    /// arrives.
    Success {
        /// Rotate the refresh token.
        rotate: bool,
        /// `expires_in`.
        expires_s: Option<u64>,
    },
    /// The server has revoked the grant: `invalid_grant`.
    Rejected,
    /// 5xx or 429 before processing, with an optional `Retry-After` in seconds.
    Transient(Option<u64>),
    /// `invalid_client`: the client is misconfigured.
    Misconfigured,
    /// The server processes the grant but answers 200 with a DPoP token;
    /// with `rotated`, the body carries the new refresh token.
    Unusable {
        /// A new refresh token in the body.
        rotated: bool,
    },
    /// The answer is lost. `processed`: the server did process (and rotate)
    /// first. `reported`: the driver sees a broken connection at once
    /// (a transient outcome); otherwise it sees nothing until the deadline.
    Lost {
        /// The server processed the grant.
        processed: bool,
        /// The driver reports a transient failure now.
        reported: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// One step of the driver. `pick` chooses among the candidates modulo their number.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    /// Start a request.
    Start {
        /// `RequestSpec::idempotent`.
        idempotent: bool,
        /// `RequestSpec::replayable`.
        replayable: bool,
    },
    /// Answer one send in flight.
    Respond {
        /// Which one.
        pick: usize,
        /// With what.
        reply: Reply,
    },
    /// Fail one send in flight (connect, timeout, I/O).
    SendError {
        /// Which one.
        pick: usize,
        /// `SendErrorKind` index, modulo 3.
        kind: u8,
    },
    /// Answer the newest refresh pending at the token server.
    Refresh(RefreshReply),
    /// Answer any refresh pending at the token server (late, out of order).
    Late {
        /// Which one.
        pick: usize,
        /// With what.
        reply: RefreshReply,
    },
    /// Move the clock forward by this many milliseconds.
    Advance(u64),
    /// Jump to the machine's next deadline and fire it.
    FireTimeout,
    /// Cancel one live request.
    Cancel {
        /// Which one.
        pick: usize,
    },
    /// An event the machine must refuse without changing anything.
    Bogus {
        /// Which request or refresh it names.
        pick: usize,
        /// Which kind of misuse.
        kind: u8,
    },
    /// Log out.
    Logout,
    /// Log in again with fresh tokens.
    Login {
        /// `expires_in`.
        expires_s: Option<u64>,
    },
    /// Stop (or resume) draining actions after each input, as a driver that
    /// batches inputs would: requests then sit queued while time moves on.
    ToggleHold,
}

/// A refresh the client sent that the token server has not answered.
#[derive(Clone, Debug, Hash)]
pub struct Pending {
    /// Its id at the machine.
    pub id: RefreshId,
    /// The refresh token it presents.
    pub presented: String,
}

/// The strict token server: rotation, spent tokens, family revocation.
#[derive(Clone, Debug, Default, Hash)]
pub struct TokenServer {
    /// The one valid refresh token of the current family (empty: none).
    pub refresh: String,
    /// The current access token.
    pub access: String,
    /// Refresh tokens rotated away: presenting one again is reuse.
    pub spent: BTreeSet<String>,
    /// The family was revoked (reuse, or an administrator): every refresh fails.
    pub revoked: bool,
    /// Pairs issued so far.
    pub issued: u32,
    /// Reuses detected (each revoked the family).
    pub reuse_detections: u32,
}

impl TokenServer {
    /// A new family (a login).
    fn login(&mut self) -> (String, String) {
        self.issued += 1;
        self.revoked = false;
        // Spent tokens are per family: the old family's are now simply unknown.
        self.spent.clear();
        self.access = format!("a{}", self.issued);
        self.refresh = format!("r{}", self.issued);
        (self.access.clone(), self.refresh.clone())
    }

    /// Process a refresh grant: the new pair, or `None` (`invalid_grant`).
    fn grant(&mut self, presented: &str, rotate: bool) -> Option<(String, Option<String>)> {
        if self.revoked || presented != self.refresh {
            if self.spent.contains(presented) && !self.revoked {
                // A strict server: reuse of a rotated token revokes the family.
                self.reuse_detections += 1;
                self.revoked = true;
            }
            return None;
        }
        self.issued += 1;
        self.access = format!("a{}", self.issued);
        if rotate {
            self.spent.insert(std::mem::take(&mut self.refresh));
            self.refresh = format!("r{}", self.issued);
        }
        Some((self.access.clone(), rotate.then(|| self.refresh.clone())))
    }
}

/// The driver, the fake resource server and the fake token server in one.
#[derive(Clone, Debug)]
pub struct World {
    /// The machine.
    pub m: M,
    /// The invariants and rules.
    pub checker: Checker,
    /// Virtual time.
    pub now: Instant,
    /// Requests started and not ended or cancelled.
    pub live: Vec<RequestId>,
    /// Requests that ended.
    pub finished: Vec<RequestId>,
    /// Sends awaiting an answer, with the token they carry.
    pub in_flight: Vec<(RequestId, String)>,
    /// Refreshes sent and not yet answered by the token server.
    pub pending: Vec<Pending>,
    /// Refreshes whose outcome was given: a second outcome is a duplicate.
    pub answered: Vec<RefreshId>,
    /// The token server.
    pub server: TokenServer,
    /// Actions are not drained after inputs (see [`Op::ToggleHold`]).
    pub hold: bool,
}

impl World {
    /// Feed everything that decides the world's future to `h` (statistics
    /// counters excluded), so an explorer can skip a state it has seen.
    pub fn hash_state<H: Hasher>(&self, h: &mut H) {
        self.m.hash_state(h);
        self.checker.hash_state(h);
        self.now.hash(h);
        self.live.hash(h);
        self.finished.hash(h);
        self.in_flight.hash(h);
        self.pending.hash(h);
        self.answered.hash(h);
        self.server.hash(h);
        self.hold.hash(h);
    }

    /// A world logged in with a 300 s token.
    pub fn new(config: Config, seed: u64) -> Self {
        let mut w = World {
            m: M::new(config, seed),
            checker: Checker::new(config),
            now: Instant::ZERO,
            live: Vec::new(),
            finished: Vec::new(),
            in_flight: Vec::new(),
            pending: Vec::new(),
            answered: Vec::new(),
            server: TokenServer::default(),
            hold: false,
        };
        w.login(Some(300));
        w
    }

    /// Log in with a fresh pair (a new family).
    pub fn login(&mut self, expires_s: Option<u64>) {
        let (a, r) = self.server.login();
        let expires_in = expires_s.map(Duration::from_secs);
        let mut set = TokenSet::new(&a).with_refresh_token(&r);
        if let Some(d) = expires_in {
            set = set.with_expires_in(d);
        }
        self.m.login(self.now, set).expect("valid login");
        self.checker.on_login(&a, expires_in);
        self.after_input();
    }

    /// Check the machine after an input and, unless holding, drain and check its actions.
    pub fn after_input(&mut self) {
        self.checker.after_input(&self.m);
        if self.hold {
            self.checker.skip_expectations();
            return;
        }
        let acts = drain(&mut self.m);
        self.checker.after_drain(&acts, &self.m);
        for act in acts {
            match act {
                Act::Send(id, token) | Act::Retry(id, token, _) => self.in_flight.push((id, token)),
                Act::Deliver(id) | Act::Fail(id, _) => {
                    self.live.retain(|x| *x != id);
                    self.in_flight.retain(|(x, _)| *x != id);
                    self.finished.push(id);
                }
                Act::Refresh(id, presented, _) => self.pending.push(Pending { id, presented }),
                Act::Persist(_) | Act::LoginRequired => {}
            }
        }
    }

    /// Answer one send in flight.
    pub fn respond(&mut self, pick: usize, reply: Reply) {
        if self.in_flight.is_empty() {
            return;
        }
        let (id, token) = self.in_flight.remove(pick % self.in_flight.len());
        let response = match reply {
            Reply::Ok => Response::status(200),
            Reply::Unauthorized => Response::status(401),
            Reply::ServerDecides if token == self.server.access => Response::status(200),
            Reply::ServerDecides => {
                Response::status(401).with_bearer_error(BearerError::InvalidToken)
            }
            Reply::InsufficientScope => {
                Response::status(403).with_bearer_error(BearerError::InsufficientScope)
            }
            Reply::Unavailable => Response::status(503),
            Reply::BadGateway => Response::status(502),
            Reply::GatewayTimeout => Response::status(504),
            Reply::TooMany(s) => Response::status(429).with_retry_after(Duration::from_secs(s)),
            Reply::ServerError => Response::status(500),
        };
        self.checker.at(self.now);
        self.checker.on_response(
            id,
            response.status,
            response.retry_after,
            response.bearer_error == Some(BearerError::InsufficientScope),
        );
        self.m
            .handle_response(self.now, id, response)
            .expect("response for a request in flight");
        self.after_input();
    }

    /// The token server deals with pending refresh `index` as `reply` says,
    /// and the driver reports what it saw.
    pub fn answer_refresh(&mut self, index: usize, reply: RefreshReply) {
        let Pending { id, presented } = self.pending.remove(index);
        let tokens;
        let new_refresh;
        let (outcome, answer) = match reply {
            RefreshReply::Success { rotate, expires_s } => {
                match self.server.grant(&presented, rotate) {
                    Some((a, r)) => {
                        tokens = (a, r);
                        let expires_in = expires_s.map(Duration::from_secs);
                        let mut set = TokenSet::new(&tokens.0);
                        if let Some(r) = &tokens.1 {
                            set = set.with_refresh_token(r);
                        }
                        if let Some(d) = expires_in {
                            set = set.with_expires_in(d);
                        }
                        (
                            RefreshOutcome::Success(set),
                            RefreshAnswer::Success {
                                access: tokens.0.clone(),
                                expires_in,
                                rotated: tokens.1.is_some(),
                            },
                        )
                    }
                    None => (RefreshOutcome::Rejected, RefreshAnswer::Rejected),
                }
            }
            RefreshReply::Rejected => {
                self.server.revoked = true;
                (RefreshOutcome::Rejected, RefreshAnswer::Rejected)
            }
            RefreshReply::Transient(s) => {
                let retry_after = s.map(Duration::from_secs);
                (
                    RefreshOutcome::Transient { retry_after },
                    RefreshAnswer::Transient(retry_after),
                )
            }
            RefreshReply::Misconfigured => (
                RefreshOutcome::Misconfigured(Some(OAuthError::InvalidClient)),
                RefreshAnswer::Misconfigured,
            ),
            RefreshReply::Unusable { rotated } => match self.server.grant(&presented, rotated) {
                Some((_, r)) => {
                    new_refresh = r;
                    (
                        RefreshOutcome::Unusable {
                            refresh_token: new_refresh.as_deref().map(RefreshToken::new),
                        },
                        RefreshAnswer::Unusable { rotated },
                    )
                }
                None => (RefreshOutcome::Rejected, RefreshAnswer::Rejected),
            },
            RefreshReply::Lost {
                processed,
                reported,
            } => {
                if processed {
                    let _ = self.server.grant(&presented, true);
                }
                if !reported {
                    // Nobody will ever answer: only the deadline moves things on.
                    return;
                }
                (
                    RefreshOutcome::Transient { retry_after: None },
                    RefreshAnswer::Transient(None),
                )
            }
        };
        let waiting: Vec<RequestId> = self
            .live
            .iter()
            .copied()
            .filter(|id| {
                matches!(
                    self.m.request_state(*id),
                    Ok(RequestState::WaitingForRefresh | RequestState::ReadyToSend)
                )
            })
            .collect();
        let active = self.m.session() == SessionState::Active;
        let before = self.m.snapshot();
        self.checker.at(self.now);
        let accepted = match self.m.handle_refresh_outcome(self.now, id, outcome) {
            Ok(()) => {
                assert!(active, "refresh outcome accepted without a session");
                true
            }
            Err(Error::UnknownRefresh) => {
                assert_eq!(before, self.m.snapshot(), "refused event changed state");
                false
            }
            Err(e) => panic!("refresh outcome: {e}"),
        };
        self.answered.push(id);
        self.checker
            .on_refresh_outcome(id, &presented, &answer, accepted, waiting);
        self.after_input();
    }

    /// Apply one operation.
    pub fn step(&mut self, op: Op) {
        match op {
            Op::Start {
                idempotent,
                replayable,
            } => {
                let spec = RequestSpec {
                    idempotent,
                    replayable,
                };
                self.checker.at(self.now);
                match self.m.start_request(self.now, spec) {
                    Ok(id) => {
                        self.checker.on_start(id, spec);
                        self.live.push(id);
                        self.after_input();
                    }
                    Err(Error::Full) => assert_eq!(self.m.snapshot().live, 8),
                    Err(e) => panic!("start_request: {e}"),
                }
            }
            Op::Respond { pick, reply } => self.respond(pick, reply),
            Op::SendError { pick, kind } => {
                if self.in_flight.is_empty() {
                    return;
                }
                let (id, _) = self.in_flight.remove(pick % self.in_flight.len());
                let kind = [
                    SendErrorKind::Connect,
                    SendErrorKind::Timeout,
                    SendErrorKind::Io,
                ][usize::from(kind % 3)];
                self.checker.at(self.now);
                self.checker.on_send_error(id, kind);
                self.m
                    .handle_send_error(self.now, id, kind)
                    .expect("send error for a request in flight");
                self.after_input();
            }
            Op::Refresh(reply) => {
                if let Some(last) = self.pending.len().checked_sub(1) {
                    self.answer_refresh(last, reply);
                }
            }
            Op::Late { pick, reply } => {
                if !self.pending.is_empty() {
                    self.answer_refresh(pick % self.pending.len(), reply);
                }
            }
            Op::Advance(ms) => {
                self.now = self.now.saturating_add(Duration::from_millis(ms));
                self.checker.at(self.now);
                self.checker.timers_fired();
                self.m.handle_timeout(self.now);
                self.after_input();
            }
            Op::FireTimeout => {
                if let Some(t) = self.m.poll_timeout() {
                    self.now = self.now.max(t);
                    self.checker.at(self.now);
                    self.checker.timers_fired();
                    self.m.handle_timeout(self.now);
                    self.after_input();
                }
            }
            Op::Cancel { pick } => {
                if self.live.is_empty() {
                    return;
                }
                let id = self.live.remove(pick % self.live.len());
                self.in_flight.retain(|(x, _)| *x != id);
                self.m.cancel(id).expect("cancel of a live request");
                self.checker.on_cancel(id);
                self.after_input();
            }
            Op::Bogus { pick, kind } => self.bogus(pick, kind),
            Op::Logout => {
                self.m.logout(self.now);
                self.checker.on_logout();
                self.in_flight.clear();
                self.after_input();
            }
            Op::Login { expires_s } => self.login(expires_s),
            Op::ToggleHold => {
                self.hold = !self.hold;
                self.after_input();
            }
        }
    }

    /// Events out of order, duplicated or for finished requests: typed errors, no change.
    pub fn bogus(&mut self, pick: usize, kind: u8) {
        let before = self.m.snapshot();
        let not_in_flight: Vec<RequestId> = self
            .live
            .iter()
            .copied()
            .filter(|id| !self.in_flight.iter().any(|(x, _)| x == id))
            .chain(self.finished.iter().copied())
            .collect();
        let result = match kind {
            0 | 1 if !not_in_flight.is_empty() => {
                let id = not_in_flight[pick % not_in_flight.len()];
                if kind == 0 {
                    self.m.handle_response(self.now, id, Response::status(200))
                } else {
                    self.m
                        .handle_send_error(self.now, id, SendErrorKind::Connect)
                }
            }
            2 if !self.finished.is_empty() => {
                let id = self.finished[pick % self.finished.len()];
                self.m.cancel(id)
            }
            _ if !self.answered.is_empty() => {
                // A duplicate of an outcome already given.
                let id = self.answered[pick % self.answered.len()];
                let outcome = if kind == 3 {
                    RefreshOutcome::Rejected
                } else {
                    RefreshOutcome::Transient { retry_after: None }
                };
                self.m.handle_refresh_outcome(self.now, id, outcome)
            }
            _ => return,
        };
        match result {
            Err(Error::UnknownRequest | Error::UnexpectedEvent | Error::UnknownRefresh) => {}
            other => panic!("bogus event (kind {kind}) accepted: {other:?}; live {:?} in flight {:?} finished {:?} answered {:?}", self.live, self.in_flight, self.finished, self.answered),
        }
        assert_eq!(before, self.m.snapshot(), "a refused event changed state");
        self.after_input();
    }

    /// Keep answering everything (200s, successful refreshes, timers) until idle,
    /// then check every request ended exactly once.
    pub fn settle(&mut self) {
        self.hold = false;
        self.after_input();
        for _ in 0..2_000 {
            if let Some(last) = self.pending.len().checked_sub(1) {
                self.answer_refresh(
                    last,
                    RefreshReply::Success {
                        rotate: true,
                        expires_s: None,
                    },
                );
            } else if !self.in_flight.is_empty() {
                self.respond(0, Reply::Ok);
            } else if let Some(t) = self.m.poll_timeout() {
                self.now = self.now.max(t);
                self.checker.at(self.now);
                self.checker.timers_fired();
                self.m.handle_timeout(self.now);
                self.after_input();
            } else {
                break;
            }
        }
        assert_eq!(self.m.snapshot().live, 0, "machine not idle after settling");
        assert!(
            self.live.is_empty(),
            "requests left without an outcome: {:?}",
            self.live
        );
        self.checker.assert_all_finished();
    }
}

/// Apply `ops` to a fresh world, then settle it.
pub fn run(config: Config, seed: u64, ops: &[Op]) {
    let mut w = World::new(config, seed);
    for &op in ops {
        w.step(op);
    }
    w.settle();
}
