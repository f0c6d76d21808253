//! Exhaustive small-scope checking: every interleaving of events for 2 and 3
//! concurrent requests up to a bounded depth, with the same invariants and
//! rules as the property tests (see `Checker`), against the same strict
//! rotating token server (see `World`).
//!
//! Proptest samples long random runs; this test guarantees that *no* short run
//! over a small alphabet breaks an invariant or a rule. The alphabet: start a
//! request (the first and third idempotent, the second a non-idempotent POST);
//! answer any send in flight with 200, 401, 503, 504 or 429, or fail it with
//! a connect error or a timeout; answer the newest pending refresh with
//! success (rotating, with a 60 s or an already expired token),
//! `invalid_grant`, `invalid_client`, a transient failure with no or a
//! two-hour `Retry-After` (above the clamp), or lose it after the server
//! processed it; answer any older pending refresh late with success; repeat an
//! answer already given; fire the next timer; cancel any live request; log
//! out, and log in again after a logout or a lost session. After every step
//! the checker runs; from every distinct state a copy of the world is settled
//! (answered until idle) to check that every request still ends with exactly
//! one outcome.
//!
//! `EXHAUSTIVE_SHORTEST=1` first searches depth by depth and reports the
//! first depth at which a rule breaks (the planted-bug table's "steps").
//!
//! The machine is deterministic, so a state reached twice with at least as
//! much depth left is not explored again: the explorer hashes the complete
//! state (machine, world and checker) and counts the interleavings each state
//! stands for, so the reported interleaving count is exact.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::Hasher;

use refresh_machine::{Config, SessionState};
use refresh_machine_model::world::{Op, RefreshReply, Reply, World};

struct Explorer {
    max_requests: usize,
    /// (state, depth left) -> interleavings from there.
    memo: HashMap<(u64, u32), u64>,
    /// Distinct states seen at any depth (each settled once).
    settled: HashSet<u64>,
    transitions: u64,
}

fn fingerprint(w: &World) -> u64 {
    let mut h = DefaultHasher::new();
    w.hash_state(&mut h);
    h.finish()
}

impl Explorer {
    fn new(max_requests: usize) -> Self {
        Explorer {
            max_requests,
            memo: HashMap::new(),
            settled: HashSet::new(),
            transitions: 0,
        }
    }

    fn enabled(&self, w: &World) -> Vec<Op> {
        let mut ops = Vec::new();
        let started = w.checker.started();
        if started < self.max_requests {
            ops.push(Op::Start {
                idempotent: started != 1,
                replayable: true,
            });
        }
        for pick in 0..w.in_flight.len() {
            for reply in [
                Reply::Ok,
                Reply::Unauthorized,
                Reply::Unavailable,
                Reply::GatewayTimeout,
                Reply::TooMany(1),
            ] {
                ops.push(Op::Respond { pick, reply });
            }
            for kind in [0, 1] {
                // Connect (never reached the server), timeout (may have).
                ops.push(Op::SendError { pick, kind });
            }
        }
        if !w.pending.is_empty() {
            for reply in [
                RefreshReply::Success {
                    rotate: true,
                    expires_s: Some(60),
                },
                // A token that arrives already expired.
                RefreshReply::Success {
                    rotate: true,
                    expires_s: Some(0),
                },
                RefreshReply::Rejected,
                RefreshReply::Misconfigured,
                RefreshReply::Transient(None),
                RefreshReply::Transient(Some(7200)),
                // Processed by the server, answer lost: only the deadline tells.
                RefreshReply::Lost {
                    processed: true,
                    reported: false,
                },
            ] {
                ops.push(Op::Refresh(reply));
            }
            // A late or out-of-order answer to an older refresh.
            for pick in 0..w.pending.len() - 1 {
                ops.push(Op::Late {
                    pick,
                    reply: RefreshReply::Success {
                        rotate: true,
                        expires_s: Some(60),
                    },
                });
            }
        }
        if !w.answered.is_empty() {
            // A duplicate answer.
            ops.push(Op::Bogus { pick: 0, kind: 3 });
        }
        if w.m.poll_timeout().is_some() {
            ops.push(Op::FireTimeout);
        }
        for pick in 0..w.live.len() {
            ops.push(Op::Cancel { pick });
        }
        match w.m.session() {
            SessionState::Active => ops.push(Op::Logout),
            _ => ops.push(Op::Login {
                expires_s: Some(60),
            }),
        }
        ops
    }

    /// Interleavings of length `depth` (or shorter, where nothing is enabled) from `w`.
    fn explore(&mut self, w: &World, depth: u32) -> u64 {
        let fp = fingerprint(w);
        if self.settled.insert(fp) {
            let mut copy = w.clone();
            copy.settle();
        }
        if let Some(&n) = self.memo.get(&(fp, depth)) {
            return n;
        }
        let ops = if depth == 0 {
            Vec::new()
        } else {
            self.enabled(w)
        };
        let mut paths = 0u64;
        for op in &ops {
            let mut next = w.clone();
            next.step(*op);
            self.transitions += 1;
            paths += self.explore(&next, depth - 1);
        }
        let paths = paths.max(1);
        self.memo.insert((fp, depth), paths);
        paths
    }
}

fn check(requests: usize, depth: u32) -> (usize, u64, u64) {
    let root = World::new(Config::DEFAULT, 7);
    if std::env::var_os("EXHAUSTIVE_SHORTEST").is_some() {
        // Iterative deepening (for the planted-bug table): the first depth at
        // which some interleaving breaks a rule is the fewest steps to failure.
        for d in 1..depth {
            let found = std::panic::catch_unwind(|| {
                Explorer::new(requests).explore(&root, d);
            });
            if found.is_err() {
                println!("exhaustive: {requests} requests: first failure at depth {d}");
                std::panic::resume_unwind(Box::new("planted bug found"));
            }
        }
    }
    let mut e = Explorer::new(requests);
    let interleavings = e.explore(&root, depth);
    println!(
        "exhaustive: {requests} requests, depth {depth}: {} distinct states, {} transitions executed, {interleavings} interleavings covered",
        e.settled.len(),
        e.transitions,
    );
    (e.settled.len(), e.transitions, interleavings)
}

#[test]
fn every_interleaving_of_two_requests() {
    let (states, _, interleavings) = check(2, 11);
    // Not vacuous: the alphabet reaches refreshes, logouts and lost sessions.
    assert!(states > 1_000, "only {states} states");
    assert!(interleavings > states as u64);
}

#[test]
fn every_interleaving_of_three_requests() {
    let (states, _, interleavings) = check(3, 9);
    assert!(states > 1_000, "only {states} states");
    assert!(interleavings > states as u64);
}

/// The explorer itself reaches the interesting corners (guards against an
/// alphabet that silently stops exercising the machine).
#[test]
fn the_alphabet_reaches_refresh_and_login_required() {
    let e = Explorer::new(2);
    let mut w = World::new(Config::DEFAULT, 7);
    let mut saw_refresh = false;
    // Start, 401, refresh rejected: the walk must find each op enabled in turn.
    for want in [
        Op::Start {
            idempotent: true,
            replayable: true,
        },
        Op::Respond {
            pick: 0,
            reply: Reply::Unauthorized,
        },
        Op::Refresh(RefreshReply::Rejected),
        Op::Login {
            expires_s: Some(60),
        },
    ] {
        assert!(e.enabled(&w).contains(&want), "{want:?} not enabled");
        saw_refresh |= !w.pending.is_empty();
        w.step(want);
    }
    assert!(saw_refresh);
    assert_eq!(w.checker.total_refreshes, 1);
    assert_eq!(w.m.session(), SessionState::Active);
}
