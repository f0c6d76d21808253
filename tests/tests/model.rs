//! Model-based property tests: random interleavings of up to 8 concurrent
//! requests, responses, refresh outcomes, timeouts, cancellations, logouts and
//! logins, against a fake resource server and a rotating token server. The
//! [`Checker`] asserts the invariants after every step; at the end the driver
//! keeps answering until the machine is idle and every request must have ended
//! with exactly one outcome.

use core::time::Duration;

use proptest::prelude::*;
use refresh_machine::www_authenticate::BearerError;
use refresh_machine::{
    Config, Error, Instant, RefreshId, RefreshMachine, RefreshOutcome, RequestId, RequestSpec,
    Response, SendErrorKind, SessionState, TokenSet,
};
use refresh_machine_tests::{drain, Act, Checker};

type M = RefreshMachine<8, 64>;

#[derive(Clone, Copy, Debug)]
enum Reply {
    Ok,
    /// 401 whatever the token.
    Unauthorized,
    /// 401 only if the token is not the server's current one.
    ServerDecides,
    InsufficientScope,
    Unavailable,
    BadGateway,
    TooMany(u64),
    ServerError,
}

#[derive(Clone, Copy, Debug)]
enum RefreshReply {
    Success {
        rotate: bool,
        expires_s: Option<u64>,
    },
    Rejected,
    Transient(Option<u64>),
    /// The answer never comes back (the machine's deadline must handle it).
    Lost,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Start {
        idempotent: bool,
        replayable: bool,
    },
    Respond {
        pick: usize,
        reply: Reply,
    },
    SendError {
        pick: usize,
        kind: u8,
    },
    Refresh(RefreshReply),
    /// Answer a refresh that was abandoned by its deadline (late success).
    LateSuccess,
    Advance(u64),
    FireTimeout,
    Cancel {
        pick: usize,
    },
    /// An event the machine must refuse without changing anything.
    Bogus {
        pick: usize,
        kind: u8,
    },
    Logout,
    Login {
        expires_s: Option<u64>,
    },
    /// Stop (or resume) draining actions after each input, as a driver that
    /// batches inputs would: requests then sit queued while time moves on.
    ToggleHold,
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        4 => Just(Reply::Ok),
        2 => Just(Reply::Unauthorized),
        3 => Just(Reply::ServerDecides),
        1 => Just(Reply::InsufficientScope),
        1 => Just(Reply::Unavailable),
        1 => Just(Reply::BadGateway),
        1 => (0u64..5).prop_map(Reply::TooMany),
        1 => Just(Reply::ServerError),
    ]
}

fn refresh_reply() -> impl Strategy<Value = RefreshReply> {
    prop_oneof![
        6 => (any::<bool>(), prop::option::of(1u64..120))
            .prop_map(|(rotate, expires_s)| RefreshReply::Success { rotate, expires_s }),
        1 => Just(RefreshReply::Rejected),
        2 => prop::option::of(0u64..3).prop_map(RefreshReply::Transient),
        1 => Just(RefreshReply::Lost),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any::<bool>(), prop::bool::weighted(0.9))
            .prop_map(|(idempotent, replayable)| Op::Start { idempotent, replayable }),
        8 => (any::<usize>(), reply()).prop_map(|(pick, reply)| Op::Respond { pick, reply }),
        1 => (any::<usize>(), 0u8..3).prop_map(|(pick, kind)| Op::SendError { pick, kind }),
        4 => refresh_reply().prop_map(Op::Refresh),
        1 => Just(Op::LateSuccess),
        2 => (0u64..40_000).prop_map(Op::Advance),
        2 => Just(Op::FireTimeout),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => (any::<usize>(), 0u8..4).prop_map(|(pick, kind)| Op::Bogus { pick, kind }),
        1 => Just(Op::Logout),
        1 => prop::option::of(1u64..120).prop_map(|expires_s| Op::Login { expires_s }),
        1 => Just(Op::ToggleHold),
    ]
}

/// The driver, the fake resource server and the fake token server in one.
struct World {
    m: M,
    checker: Checker,
    now: Instant,
    live: Vec<RequestId>,
    finished: Vec<RequestId>,
    in_flight: Vec<(RequestId, String)>,
    refresh: Option<(RefreshId, String)>,
    late: Vec<RefreshId>,
    /// Refreshes whose outcome was given: a second outcome is a duplicate.
    answered: Vec<RefreshId>,
    /// A refresh was abandoned or answered late: the server may legitimately
    /// see an old refresh token again, so the reuse check is off from then on.
    refresh_went_late: bool,
    server_access: String,
    server_refresh: String,
    issued: u32,
    hold: bool,
}

impl World {
    fn new(config: Config, seed: u64) -> Self {
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

    fn issue(&mut self, rotate: bool) -> (String, String) {
        self.issued += 1;
        self.server_access = format!("a{}", self.issued);
        if rotate || self.server_refresh.is_empty() {
            self.server_refresh = format!("r{}", self.issued);
        }
        (self.server_access.clone(), self.server_refresh.clone())
    }

    fn login(&mut self, expires_s: Option<u64>) {
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

    fn after_input(&mut self) {
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
                Act::Wait(_) | Act::Backoff(..) | Act::Persist(_) | Act::LoginRequired => {}
            }
        }
    }

    fn respond(&mut self, pick: usize, reply: Reply) {
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

    fn step(&mut self, op: Op) {
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
                ][kind as usize];
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
    fn bogus(&mut self, pick: usize, kind: u8) {
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

    /// Keep answering everything (200s, successful refreshes, timers) until idle.
    fn settle(&mut self) {
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

fn run(config: Config, seed: u64, ops: &[Op]) {
    let mut w = World::new(config, seed);
    for &op in ops {
        w.step(op);
    }
    w.settle();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The headline property: with the default configuration, any interleaving
    /// keeps every invariant (see `Checker`), never replays a request and never
    /// presents a spent refresh token.
    #[test]
    fn no_request_is_replayed_twice(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..120)) {
        run(Config::DEFAULT, seed, &ops);
    }

    /// The same model under non-default limits: refresh-ahead, two auth
    /// retries, a small retry budget and short refresh deadlines.
    #[test]
    fn invariants_hold_under_other_limits(
        seed in any::<u64>(),
        ahead in prop::option::of(1u64..90),
        auth in 0u8..3,
        transient in 0u8..5,
        budget in 1u32..5,
        attempts in 1u8..4,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut config = Config::DEFAULT;
        config.refresh_ahead = ahead.map(Duration::from_secs);
        config.max_auth_retries = auth;
        config.max_transient_retries = transient;
        config.retry_budget.max_tokens = budget;
        config.max_refresh_attempts = attempts;
        config.refresh_timeout = Duration::from_secs(5);
        run(config, seed, &ops);
    }
}

/// A regression guard for the model itself: a run with ordinary traffic does
/// send requests, refresh, and finish them (the invariants are not vacuous).
#[test]
fn model_exercises_the_machine() {
    let ops = [
        Op::Start {
            idempotent: true,
            replayable: true,
        },
        Op::Start {
            idempotent: false,
            replayable: true,
        },
        Op::Respond {
            pick: 0,
            reply: Reply::Unauthorized,
        },
        Op::Respond {
            pick: 0,
            reply: Reply::Unauthorized,
        },
        Op::Refresh(RefreshReply::Success {
            rotate: true,
            expires_s: None,
        }),
        Op::Respond {
            pick: 0,
            reply: Reply::Ok,
        },
        Op::Respond {
            pick: 0,
            reply: Reply::Ok,
        },
    ];
    let mut w = World::new(Config::DEFAULT, 1);
    for op in ops {
        w.step(op);
    }
    assert_eq!(w.checker.total_refreshes, 1);
    assert_eq!(w.checker.total_sends, 4);
    assert_eq!(w.checker.total_outcomes, 2);
    w.settle();
}
