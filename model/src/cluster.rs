//! The cross-process model: K processes, each running the core's
//! [`CoordinatedRefresh`] against one shared store and one strict token
//! server (rotation; a refresh token presented twice revokes its family),
//! with crashes, lost store replies, lost token answers and stalls, in time
//! the scheduler moves. The property tests and the exhaustive check drive
//! it with [`Event`]s and call [`Cluster::check`] after every one.
//!
//! What it asserts, cluster-wide:
//! - **no refresh token presented twice**, unless a fault the protocol
//!   cannot cover happened first (a token answer lost after the server
//!   processed it, a lease holder that crashed or stalled past its lease
//!   between deciding to present and the store having the new pair): the
//!   written limits of the protocol;
//! - **no pair overwritten by an older one**: the store's generation only
//!   grows, one at a time, and a generation's refresh token is the one the
//!   server issued after the previous generation's;
//! - **no waiter past its deadline**, and nothing presented after it;
//! - **every round concludes** once the store and the server answer and
//!   time passes the deadlines ([`Cluster::settle`]), and a live process
//!   between rounds holds no lease;
//! - **progress after faults**: once nothing is lost any more, the next
//!   expiry a live process meets ends with the store's latest pair in its
//!   hands, refreshed or adopted (a lease kept by an earlier round would
//!   make it unavailable).

use std::collections::BTreeSet;
use std::time::Duration;

use refresh_machine::coordination::{
    Conclusion, CoordinatedRefresh, CoordinationConfig, Lease, StoreAction, StoreUnavailable,
};
use refresh_machine::Instant;

/// The limits every process uses: a 20 ms refresh deadline, a 30 ms lease,
/// a 5 ms re-check.
pub const DEADLINE: Duration = Duration::from_millis(20);
/// See [`DEADLINE`].
pub const CONFIG: CoordinationConfig = CoordinationConfig {
    lease_ttl: Duration::from_millis(30),
    recheck: Duration::from_millis(5),
    publish_attempts: 2,
};

/// What the scheduler can make happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// Process `.0` finds its token expired and starts a round (if idle and alive).
    Expire(usize),
    /// Process `.0` performs its pending store action; `.1`: its reply is
    /// lost (the store applied it, the process sees it fail).
    Act(usize, bool),
    /// The store changed: every waiting process is notified.
    Notify,
    /// Time passes by this many milliseconds.
    Tick(u8),
    /// Process `.0` dies (its lease stays until it lapses).
    Crash(usize),
}

/// The shared store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Store {
    /// Generation of the pair stored.
    pub generation: u64,
    /// The stored pair's refresh token.
    pub refresh_token: u64,
    /// Lease owner and when it lapses.
    pub lease: Option<(u64, Instant)>,
}

/// The strict token server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Server {
    /// Refresh tokens presented so far.
    pub presented: BTreeSet<u64>,
    /// The token the server would accept next (the family's latest).
    pub current: u64,
    /// A reuse revoked the family.
    pub revoked: bool,
    /// Tokens issued so far (ids 1..=issued).
    pub issued: u64,
}

/// One process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Process {
    /// Alive (not crashed).
    pub alive: bool,
    /// Generation of the pair it holds.
    pub known: u64,
    /// Its refresh token.
    pub refresh_token: u64,
    /// Its round, if one is under way.
    pub round: Option<CoordinatedRefresh>,
    /// The action it was given and has not performed yet.
    pub pending: Option<StoreAction>,
    /// Its round's deadline.
    pub deadline: Instant,
    /// The token it obtained by its own call in this round (to publish).
    pub obtained: Option<u64>,
    /// It presented its refresh token in this round.
    pub presented: bool,
    /// The new pair it obtained this round is in the store.
    pub published: bool,
    /// Rounds it started (lease owner tokens are unique per round).
    pub rounds: u64,
}

/// K processes, a store, a server, a clock.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cluster {
    /// The processes.
    pub processes: Vec<Process>,
    /// The store.
    pub store: Store,
    /// The server.
    pub server: Server,
    /// Now.
    pub now: Instant,
    /// A fault the protocol cannot cover happened (see the module docs).
    pub uncovered_fault: bool,
    /// Faults injected so far (lost replies, crashes), to bound them.
    pub faults: u32,
}

impl Cluster {
    /// `k` processes holding the pair of generation 1 (refresh token 1).
    pub fn new(k: usize) -> Cluster {
        let process = Process {
            alive: true,
            known: 1,
            refresh_token: 1,
            round: None,
            pending: None,
            deadline: Instant::ZERO,
            obtained: None,
            presented: false,
            published: false,
            rounds: 0,
        };
        Cluster {
            processes: vec![process; k],
            store: Store {
                generation: 1,
                refresh_token: 1,
                lease: None,
            },
            server: Server {
                presented: BTreeSet::new(),
                current: 1,
                revoked: false,
                issued: 1,
            },
            now: Instant::ZERO,
            uncovered_fault: false,
            faults: 0,
        }
    }

    fn lease_holder(&self) -> Option<u64> {
        self.store
            .lease
            .filter(|&(_, until)| until > self.now)
            .map(|(owner, _)| owner)
    }

    fn owner(i: usize, round: u64) -> u64 {
        (i as u64 + 1) << 32 | round
    }

    /// Apply one event (events that do not apply are no-ops).
    pub fn step(&mut self, event: Event) {
        match event {
            Event::Expire(i) => self.expire(i),
            Event::Act(i, lost) => self.act(i, lost),
            Event::Notify => {
                for i in 0..self.processes.len() {
                    if matches!(self.processes[i].pending, Some(StoreAction::Wait { .. })) {
                        self.wake(i);
                    }
                }
            }
            Event::Tick(ms) => self.tick(Duration::from_millis(u64::from(ms))),
            Event::Crash(i) => {
                let Some(p) = self.processes.get_mut(i) else {
                    return;
                };
                if !p.alive {
                    return;
                }
                p.alive = false;
                self.faults += 1;
                // A holder that dies after presenting and before the store
                // has the new pair takes the pair with it.
                let holder = p
                    .round
                    .as_ref()
                    .is_some_and(CoordinatedRefresh::holds_lease);
                if holder && p.presented && !p.published {
                    self.uncovered_fault = true;
                }
            }
        }
        self.check();
    }

    fn expire(&mut self, i: usize) {
        let now = self.now;
        let Some(p) = self.processes.get_mut(i) else {
            return;
        };
        if !p.alive || p.round.is_some() {
            return;
        }
        p.rounds += 1;
        p.deadline = now.saturating_add(DEADLINE);
        p.obtained = None;
        p.presented = false;
        p.published = false;
        let mut round =
            CoordinatedRefresh::new(p.known, Self::owner(i, p.rounds), p.deadline, CONFIG);
        p.pending = round.poll_action();
        p.round = Some(round);
    }

    fn tick(&mut self, by: Duration) {
        let before = self.now;
        self.now = self.now.saturating_add(by);
        // A live holder whose lease lapsed: it stalled past its lease (a GC
        // pause, a laptop asleep), and another may take over while it
        // presents or publishes. Not covered: the protocol assumes a holder
        // is done within its lease.
        for (i, p) in self.processes.iter().enumerate() {
            let Some(round) = &p.round else { continue };
            if !p.alive || !round.holds_lease() {
                continue;
            }
            // Harmless before it decided to present (it will see its
            // deadline passed) and once the store has its pair.
            let exposed =
                p.pending == Some(StoreAction::CallTokenEndpoint) || (p.presented && !p.published);
            if !exposed {
                continue;
            }
            let ours = self
                .store
                .lease
                .filter(|&(o, _)| o == Self::owner(i, p.rounds));
            if let Some((_, until)) = ours {
                if until > before && until <= self.now {
                    self.uncovered_fault = true;
                }
            }
        }
        // Waits whose time came.
        for i in 0..self.processes.len() {
            if let Some(StoreAction::Wait { until }) = self.processes[i].pending {
                if until <= self.now {
                    self.wake(i);
                }
            }
        }
    }

    fn wake(&mut self, i: usize) {
        let now = self.now;
        let p = &mut self.processes[i];
        if !p.alive {
            return;
        }
        let Some(round) = p.round.as_mut() else {
            return;
        };
        round.handle_wake(now);
        p.pending = round.poll_action();
        self.conclude(i);
    }

    fn act(&mut self, i: usize, lost: bool) {
        let now = self.now;
        let Some(p) = self.processes.get(i) else {
            return;
        };
        if !p.alive || p.round.is_none() {
            return;
        }
        let Some(action) = p.pending else {
            return;
        };
        if lost {
            self.faults += 1;
        }
        let holder = self.lease_holder();
        let mut p = self.processes[i].clone();
        let round = p.round.as_mut().expect("checked above");
        match action {
            StoreAction::Read => {
                let read = if lost {
                    Err(StoreUnavailable)
                } else {
                    Ok(self.store.generation)
                };
                if let Ok(g) = read {
                    if g > p.known {
                        // The pair read with it, kept to install on adoption.
                        p.obtained = Some(self.store.refresh_token);
                    }
                }
                round.handle_read(now, read);
            }
            StoreAction::TakeLease { owner, ttl } => {
                let answer = match holder {
                    None => {
                        self.store.lease = Some((owner, now.saturating_add(ttl)));
                        Lease::Taken
                    }
                    Some(o) if o == owner => Lease::Taken,
                    Some(_) => Lease::Held {
                        expires_in: self
                            .store
                            .lease
                            .map(|(_, until)| until.saturating_duration_since(now)),
                    },
                };
                round.handle_lease(
                    now,
                    if lost {
                        Err(StoreUnavailable)
                    } else {
                        Ok(answer)
                    },
                );
            }
            StoreAction::CallTokenEndpoint => {
                let token = p.refresh_token;
                p.presented = true;
                let fresh = !self.server.presented.contains(&token);
                self.server.presented.insert(token);
                let accepted = fresh && !self.server.revoked && token == self.server.current;
                if !fresh {
                    self.server.revoked = true;
                }
                if accepted {
                    self.server.issued += 1;
                    self.server.current = self.server.issued;
                    if lost {
                        // Processed, never answered: the new pair is lost.
                        self.uncovered_fault = true;
                    } else {
                        p.obtained = Some(self.server.current);
                    }
                }
                round.handle_token_call(now, accepted && !lost);
            }
            StoreAction::Publish { owner, expected } => {
                let ours = holder == Some(owner);
                let written = ours && self.store.generation == expected;
                if written {
                    let token = p.obtained.expect("a publish follows new tokens");
                    assert!(
                        token > self.store.refresh_token,
                        "process {i} overwrites a newer pair with an older one"
                    );
                    self.store.generation = expected + 1;
                    self.store.refresh_token = token;
                    p.published = true;
                }
                round.handle_publish(
                    now,
                    if lost {
                        Err(StoreUnavailable)
                    } else {
                        Ok(written)
                    },
                );
            }
            StoreAction::ReleaseLease { owner } => {
                if self.store.lease.is_some_and(|(o, _)| o == owner) {
                    self.store.lease = None;
                }
                round.handle_release(now);
            }
            StoreAction::Wait { until } => {
                assert!(until <= p.deadline, "process {i} waits past its deadline");
                // Performed by `Notify` or `Tick`.
                return;
            }
            other => panic!("a store action the model does not know: {other:?}"),
        }
        p.pending = round.poll_action();
        if p.pending == Some(StoreAction::CallTokenEndpoint) {
            assert!(
                now < p.deadline,
                "process {i} decides to present after its deadline"
            );
        }
        self.processes[i] = p;
        self.conclude(i);
    }

    /// Install what a concluded round brought and make the process idle.
    fn conclude(&mut self, i: usize) {
        let p = &self.processes[i];
        let Some(conclusion) = p.round.as_ref().and_then(CoordinatedRefresh::conclusion) else {
            return;
        };
        match conclusion {
            Conclusion::Adopt { generation } => {
                let p = &mut self.processes[i];
                p.known = generation;
                p.refresh_token = p.obtained.expect("the pair read with the generation");
            }
            Conclusion::Refreshed { published } => {
                if p.obtained.is_some() && published.is_none() && self.store.generation == p.known {
                    // New tokens the store never got: the others will
                    // present the spent one. Not covered.
                    self.uncovered_fault = true;
                }
                let p = &mut self.processes[i];
                if let Some(token) = p.obtained {
                    p.refresh_token = token;
                    // Stored: the generation it is; not stored: newer than
                    // the store's (the next round finds the store not newer
                    // and refreshes with this token).
                    p.known = published.unwrap_or(p.known);
                }
            }
            _ => {}
        }
        let p = &mut self.processes[i];
        p.round = None;
        p.pending = None;
    }

    /// The invariants that hold after every event.
    pub fn check(&self) {
        let s = &self.server;
        if !self.uncovered_fault {
            assert!(
                !s.revoked,
                "a refresh token was presented twice without an uncovered fault: {self:#?}"
            );
        }
        // The store's pair is one the server issued, and only ever a newer one.
        assert!(self.store.refresh_token <= s.issued);
        assert!(self.store.generation >= 1);
        let holder = self.lease_holder();
        for (i, p) in self.processes.iter().enumerate() {
            if let Some(StoreAction::Wait { until }) = p.pending {
                assert!(until <= p.deadline, "process {i} waits past its deadline");
            }
            // A live process between rounds holds no lease: else the others
            // wait out its time-to-live at every expiry (with a file lock,
            // which has none, until it exits).
            if p.alive && p.round.is_none() {
                assert!(
                    holder.is_none_or(|o| (o >> 32) != i as u64 + 1),
                    "process {i} concluded its round and kept the lease: {self:#?}"
                );
            }
        }
    }

    /// Answer everything, move time past every deadline and lease: every
    /// live process's round must conclude.
    pub fn settle(&mut self) {
        for _ in 0..64 {
            for i in 0..self.processes.len() {
                self.step(Event::Act(i, false));
            }
            self.step(Event::Tick(5));
        }
        for (i, p) in self.processes.iter().enumerate() {
            assert!(
                !p.alive || p.round.is_none(),
                "process {i}'s round never concluded: {p:#?}"
            );
        }
        // Checked on a copy: the settled state is the caller's to inspect.
        self.clone().progress();
    }

    /// After [`settle`](Self::settle), with nothing lost any more: the next
    /// expiry met by a live process ends with it holding the store's
    /// latest pair, refreshed or adopted (not unavailable for want of a
    /// lease some earlier round kept). Not after an uncovered fault, whose
    /// spent token a strict server refuses.
    fn progress(&mut self) {
        if self.uncovered_fault || self.server.revoked {
            return;
        }
        let Some(i) = self.processes.iter().position(|p| p.alive) else {
            return;
        };
        let known = self.processes[i].known;
        self.step(Event::Expire(i));
        for _ in 0..64 {
            if self.processes[i].round.is_none() {
                break;
            }
            self.step(Event::Act(i, false));
            self.step(Event::Tick(1));
        }
        let p = &self.processes[i];
        assert!(
            p.round.is_none() && p.known > known && p.known == self.store.generation,
            "process {i} made no progress at the expiry after the faults: {self:#?}"
        );
    }
}
