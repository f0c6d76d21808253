//! The model world shared by the property tests, the exhaustive small-scope
//! test and the fuzz targets: a driver, a fake resource server and a rotating
//! token server around one [`RefreshMachine`], checked by [`Checker`] after
//! every step.

use core::time::Duration;
use std::hash::{Hash, Hasher};

use refresh_machine::www_authenticate::BearerError;
use refresh_machine::{
    Config, Error, Instant, RefreshId, RefreshMachine, RefreshOutcome, RequestId, RequestSpec,
    Response, SendErrorKind, SessionState, TokenSet,
};

use crate::{drain, Act, Checker};

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
    /// 502.
    BadGateway,
    /// 429 with `Retry-After` in seconds.
    TooMany(u64),
    /// 500: delivered as is.
    ServerError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// What the fake token server answers to one refresh.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RefreshReply {
    /// New tokens.
    Success {
        /// A new refresh token comes with them.
        rotate: bool,
        /// `expires_in`.
        expires_s: Option<u64>,
    },
    /// `invalid_grant`: the session is over.
    Rejected,
    /// Unreachable or 5xx, with an optional `Retry-After` in seconds.
    Transient(Option<u64>),
    /// The answer never comes back (the machine's deadline must handle it).
    Lost,
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
    /// Answer the refresh in flight.
    Refresh(RefreshReply),
    /// Answer a refresh that was abandoned by its deadline (late success).
    LateSuccess,
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

/// The driver, the fake resource server and the fake token server in one.
#[derive(Clone, Debug)]
pub struct World {
    /// The machine.
    pub m: M,
    /// The invariants.
    pub checker: Checker,
    /// Virtual time.
    pub now: Instant,
    /// Requests started and not ended or cancelled.
    pub live: Vec<RequestId>,
    /// Requests that ended.
    pub finished: Vec<RequestId>,
    /// Sends awaiting an answer, with the token they carry.
    pub in_flight: Vec<(RequestId, String)>,
    /// The refresh in flight and the refresh token it presents.
    pub refresh: Option<(RefreshId, String)>,
    /// Refreshes abandoned by their deadline (or by logout) that may still answer.
    pub late: Vec<RefreshId>,
    /// Refreshes whose outcome was given: a second outcome is a duplicate.
    pub answered: Vec<RefreshId>,
    /// A refresh was abandoned or answered late: the server may legitimately
    /// see an old refresh token again, so the reuse check is off from then on.
    pub refresh_went_late: bool,
    /// The token server's current access token.
    pub server_access: String,
    /// The token server's current refresh token.
    pub server_refresh: String,
    /// Token pairs issued so far.
    pub issued: u32,
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
        self.refresh.hash(h);
        self.late.hash(h);
        self.answered.hash(h);
        self.refresh_went_late.hash(h);
        self.server_access.hash(h);
        self.server_refresh.hash(h);
        self.issued.hash(h);
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
            refresh: None,
            late: Vec::new(),
            answered: Vec::new(),
            refresh_went_late: false,
            server_access: String::new(),
            server_refresh: String::new(),
            issued: 0,
            hold: false,
        };
        w.login(Some(300));
        w
    }

    /// The token server issues a new pair.
    pub fn issue(&mut self, rotate: bool) -> (String, String) {
        self.issued += 1;
        self.server_access = format!("a{}", self.issued);
        if rotate || self.server_refresh.is_empty() {
            self.server_refresh = format!("r{}", self.issued);
        }
        (self.server_access.clone(), self.server_refresh.clone())
    }

    /// Log in with a fresh pair.
    pub fn login(&mut self, expires_s: Option<u64>) {
        self.server_refresh.clear();
        let (a, r) = self.issue(true);
        let mut set = TokenSet::new(&a).with_refresh_token(&r);
        if let Some(s) = expires_s {
            set = set.with_expires_in(Duration::from_secs(s));
        }
        self.m.login(self.now, set).expect("valid login");
        self.checker.on_login(&a);
        self.refresh_went_late |= self.refresh.is_some();
        self.after_input();
    }

    /// Check the machine after an input and, unless holding, drain and check its actions.
    pub fn after_input(&mut self) {
        self.checker.after_input(&self.m);
        if self.refresh.is_some() && !self.m.snapshot().refresh_in_flight {
            let (id, _) = self.refresh.take().unwrap();
            self.late.push(id);
            self.refresh_went_late = true;
        }
        if self.hold {
            return;
        }
        for act in drain(&mut self.m) {
            self.checker.on_action(&act);
            match act {
                Act::Send(id, token) | Act::Retry(id, token, _) => self.in_flight.push((id, token)),
                Act::Deliver(id) | Act::Fail(id, _) => {
                    self.live.retain(|x| *x != id);
                    self.in_flight.retain(|(x, _)| *x != id);
                    self.finished.push(id);
                }
                Act::Refresh(id, presented) => {
                    if !self.refresh_went_late {
                        assert_eq!(
                            presented, self.server_refresh,
                            "refresh token reuse: the server would revoke the family"
                        );
                    }
                    self.refresh = Some((id, presented));
                }
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
            Reply::ServerDecides if token == self.server_access => Response::status(200),
            Reply::ServerDecides => {
                Response::status(401).with_bearer_error(BearerError::InvalidToken)
            }
            Reply::InsufficientScope => {
                Response::status(403).with_bearer_error(BearerError::InsufficientScope)
            }
            Reply::Unavailable => Response::status(503),
            Reply::BadGateway => Response::status(502),
            Reply::TooMany(s) => Response::status(429).with_retry_after(Duration::from_secs(s)),
            Reply::ServerError => Response::status(500),
        };
        let refused = response.status == 401;
        let transient = matches!(response.status, 429 | 502 | 503);
        self.checker.on_response(id, refused, transient);
        self.m
            .handle_response(self.now, id, response)
            .expect("response for a request in flight");
        self.after_input();
    }

    /// Apply one operation.
    pub fn step(&mut self, op: Op) {
        match op {
            Op::Start {
                idempotent,
                replayable,
            } => match self.m.start_request(
                self.now,
                RequestSpec {
                    idempotent,
                    replayable,
                },
            ) {
                Ok(id) => {
                    self.checker.on_start(id);
                    self.live.push(id);
                    self.after_input();
                }
                Err(Error::Full) => assert_eq!(self.m.snapshot().live, 8),
                Err(e) => panic!("start_request: {e}"),
            },
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
                self.checker.on_response(id, false, true);
                self.m
                    .handle_send_error(self.now, id, kind)
                    .expect("send error for a request in flight");
                self.after_input();
            }
            Op::Refresh(reply) => {
                let Some((id, _)) = self.refresh.take() else {
                    return;
                };
                let tokens;
                let outcome = match reply {
                    RefreshReply::Success { rotate, expires_s } => {
                        tokens = self.issue(rotate);
                        let mut set = TokenSet::new(&tokens.0);
                        if rotate {
                            set = set.with_refresh_token(&tokens.1);
                        }
                        if let Some(s) = expires_s {
                            set = set.with_expires_in(Duration::from_secs(s));
                        }
                        RefreshOutcome::Success(set)
                    }
                    RefreshReply::Rejected => RefreshOutcome::Rejected,
                    RefreshReply::Transient(s) => RefreshOutcome::Transient {
                        retry_after: s.map(Duration::from_secs),
                    },
                    RefreshReply::Lost => {
                        // Nobody will ever answer: only the deadline can move things on.
                        self.late.push(id);
                        self.refresh_went_late = true;
                        return;
                    }
                };
                self.checker.on_refresh_outcome(id);
                self.answered.push(id);
                self.m
                    .handle_refresh_outcome(self.now, id, outcome)
                    .expect("outcome of the refresh in flight");
                self.after_input();
            }
            Op::LateSuccess => {
                let Some(id) = self.late.pop() else { return };
                self.answered.push(id);
                self.checker.on_refresh_outcome(id);
                let (a, r) = self.issue(true);
                let set = TokenSet::new(&a).with_refresh_token(&r);
                let active = self.m.session() == SessionState::Active;
                let before = self.m.snapshot();
                match self
                    .m
                    .handle_refresh_outcome(self.now, id, RefreshOutcome::Success(set))
                {
                    Ok(()) => assert!(active, "late success accepted without a session"),
                    Err(Error::UnknownRefresh) => {
                        assert_eq!(before, self.m.snapshot(), "refused event changed state")
                    }
                    Err(e) => panic!("late success: {e}"),
                }
                self.after_input();
            }
            Op::Advance(ms) => {
                self.now = self.now.saturating_add(Duration::from_millis(ms));
                self.m.handle_timeout(self.now);
                self.after_input();
            }
            Op::FireTimeout => {
                if let Some(t) = self.m.poll_timeout() {
                    self.now = self.now.max(t);
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
                if let Some((id, _)) = self.refresh.take() {
                    self.late.push(id);
                    self.refresh_went_late = true;
                }
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
                    RefreshOutcome::Success(TokenSet::new("x"))
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
            if let Some((id, _)) = self.refresh.take() {
                self.checker.on_refresh_outcome(id);
                self.answered.push(id);
                let (a, _) = self.issue(false);
                self.m
                    .handle_refresh_outcome(
                        self.now,
                        id,
                        RefreshOutcome::Success(TokenSet::new(&a)),
                    )
                    .expect("refresh in flight");
                self.after_input();
            } else if !self.in_flight.is_empty() {
                self.respond(0, Reply::Ok);
            } else if let Some(t) = self.m.poll_timeout() {
                self.now = self.now.max(t);
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
