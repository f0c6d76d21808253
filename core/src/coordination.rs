//! One refresh per expiry across processes and machines that share their
//! tokens through a store (a file, Redis, a database row).
//!
//! Single-flight inside a process is the [`RefreshMachine`](crate::RefreshMachine)'s
//! job. Across processes, each one that meets a refused or expired token
//! runs a [`CoordinatedRefresh`] before it may present the refresh token:
//!
//! 1. Read the store. A generation newer than the one this process holds
//!    means another process refreshed already: adopt its pair, no refresh.
//! 2. Otherwise take the store's lease (a time-to-live longer than the
//!    refresh deadline), read again (another process may have just
//!    finished), then call the token endpoint, publish the new pair as the
//!    next generation only if the store is still at the generation read
//!    (fencing: a holder whose lease lapsed never overwrites a newer pair),
//!    and release the lease.
//! 3. A process that cannot take the lease waits for a new generation (a
//!    change notification, or its own bounded re-check), without presenting
//!    anything; if the lease lapses with nothing new (its holder died before
//!    sending the grant), it takes the lease over.
//!
//! Sans-IO like the machine: the store operations are actions
//! ([`StoreAction`], drained with [`CoordinatedRefresh::poll_action`]) and
//! their results inputs (`handle_*`); time is an input. One operation is
//! outstanding at a time. The pair itself never passes through here: the
//! driver reads and writes it beside the generation.
//!
//! What it cannot do, by construction: a holder that dies after the server
//! processed its grant takes the new pair with it. The others take the
//! lease over when it lapses and present the same refresh token again; a
//! server with a reuse grace period answers it, a strict one revokes the
//! family (`LoginRequired` once, as in a single process). A store that
//! cannot be read or leased ends the round as unavailable (the machine's
//! transient failure): presenting the refresh token without the lease could
//! be a reuse, so it is never done.

use core::time::Duration;

use crate::Instant;

/// The limits of a coordinated refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoordinationConfig {
    /// How long a taken lease lasts if its holder neither releases nor
    /// renews it (a holder that died): longer than the refresh deadline, so
    /// that a live holder's token call always ends inside its lease.
    pub lease_ttl: Duration,
    /// The longest a waiting process goes without reading the store again
    /// (a fallback for a store without change notifications, or a
    /// notification lost).
    pub recheck: Duration,
    /// Attempts to publish a new pair before giving up on the store.
    pub publish_attempts: u8,
}

impl CoordinationConfig {
    /// A lease of the refresh deadline plus 10 s, re-checked every second,
    /// three attempts to publish.
    pub const fn for_deadline(refresh_timeout: Duration) -> Self {
        CoordinationConfig {
            lease_ttl: refresh_timeout.saturating_add(Duration::from_secs(10)),
            recheck: Duration::from_secs(1),
            publish_attempts: 3,
        }
    }
}

/// A store operation to perform, then report with the matching `handle_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreAction {
    /// Read the store's generation (and keep the pair read with it).
    /// Report with [`CoordinatedRefresh::handle_read`].
    Read,
    /// Take the lease for `ttl` as `owner`, unless another owner holds an
    /// unexpired one. Report with [`CoordinatedRefresh::handle_lease`].
    TakeLease {
        /// This process's lease token.
        owner: u64,
        /// How long the lease lasts.
        ttl: Duration,
    },
    /// Call the token endpoint with the refresh token this process holds.
    /// Report with [`CoordinatedRefresh::handle_token_call`].
    CallTokenEndpoint,
    /// Write the new pair as generation `expected + 1`, only if the store is
    /// still at `expected` and the lease is still `owner`'s (atomically).
    /// Report with [`CoordinatedRefresh::handle_publish`].
    Publish {
        /// This process's lease token.
        owner: u64,
        /// The generation the new pair replaces.
        expected: u64,
    },
    /// Release the lease if it is still `owner`'s (compare and delete).
    /// Report with [`CoordinatedRefresh::handle_release`].
    ReleaseLease {
        /// This process's lease token.
        owner: u64,
    },
    /// Wait for the store to change (a notification) or until `until`,
    /// whichever first, then report with [`CoordinatedRefresh::handle_wake`].
    Wait {
        /// When to read again at the latest.
        until: Instant,
    },
}

/// How a coordinated refresh ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Conclusion {
    /// Another process refreshed: install the pair read with this
    /// generation (no refresh token was presented).
    Adopt {
        /// The store's generation.
        generation: u64,
    },
    /// This process called the token endpoint: report its answer to the
    /// machine as usual. `published` is the generation the new pair was
    /// stored as (`None`: not stored, because the call brought no tokens,
    /// the store moved on, or it could not be written).
    Refreshed {
        /// The new pair's generation in the store, if it was stored.
        published: Option<u64>,
    },
    /// No refresh could be coordinated (the store unreachable, or the
    /// refresh deadline passed while another process held the lease): a
    /// transient failure for the machine. Nothing was presented.
    Unavailable,
}

/// The store's answer to [`StoreAction::TakeLease`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// This process holds it now.
    Taken,
    /// Another process holds it, for at most this much longer (if the store
    /// says).
    Held {
        /// Time left on the other holder's lease.
        expires_in: Option<Duration>,
    },
}

/// A store operation that failed (the store unreachable, a timeout): its
/// effect is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreUnavailable;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// The first read.
    Reading,
    /// Asking for the lease.
    Leasing,
    /// Lease taken: reading again before presenting anything.
    Rechecking,
    /// The token call is under way.
    Calling,
    /// Writing the new pair.
    Publishing { attempts: u8 },
    /// Releasing the lease, then concluding.
    Releasing(Conclusion),
    /// Waiting for the store to change.
    Waiting { until: Instant },
    /// Over.
    Done(Conclusion),
}

/// One process's refresh, coordinated with the others through a store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoordinatedRefresh {
    phase: Phase,
    /// Whether the current phase's action was handed out (and awaits its report).
    issued: bool,
    /// The generation of the pair this process holds (the one refused or expired).
    known: u64,
    owner: u64,
    /// The machine's refresh deadline: nothing is started after it.
    deadline: Instant,
    config: CoordinationConfig,
}

impl CoordinatedRefresh {
    /// A coordinated refresh for a process holding the pair of generation
    /// `known`, with lease token `owner` (random, unique per process and
    /// refresh), to conclude by the machine's refresh `deadline`.
    pub fn new(known: u64, owner: u64, deadline: Instant, config: CoordinationConfig) -> Self {
        CoordinatedRefresh {
            phase: Phase::Reading,
            issued: false,
            known,
            owner,
            deadline,
            config,
        }
    }

    /// The next store operation, once per step (`None` while one is
    /// outstanding, and when concluded).
    pub fn poll_action(&mut self) -> Option<StoreAction> {
        if self.issued {
            return None;
        }
        let action = match self.phase {
            Phase::Reading | Phase::Rechecking => StoreAction::Read,
            Phase::Leasing => StoreAction::TakeLease {
                owner: self.owner,
                ttl: self.config.lease_ttl,
            },
            Phase::Calling => StoreAction::CallTokenEndpoint,
            Phase::Publishing { .. } => StoreAction::Publish {
                owner: self.owner,
                expected: self.known,
            },
            Phase::Releasing(_) => StoreAction::ReleaseLease { owner: self.owner },
            Phase::Waiting { until } => StoreAction::Wait { until },
            Phase::Done(_) => return None,
        };
        self.issued = true;
        Some(action)
    }

    /// How it ended, once it has.
    pub fn conclusion(&self) -> Option<Conclusion> {
        match self.phase {
            Phase::Done(c) => Some(c),
            _ => None,
        }
    }

    /// Whether this process holds the lease (as far as it knows).
    pub fn holds_lease(&self) -> bool {
        matches!(
            self.phase,
            Phase::Rechecking | Phase::Calling | Phase::Publishing { .. } | Phase::Releasing(_)
        )
    }

    /// Whether `phase` is the one whose action is outstanding.
    fn expects(&self, phase: fn(&Phase) -> bool) -> bool {
        self.issued && phase(&self.phase)
    }

    fn go(&mut self, phase: Phase) {
        self.phase = phase;
        self.issued = false;
    }

    /// The store was read: its generation, or unavailable. A report nobody
    /// asked for is ignored.
    pub fn handle_read(&mut self, now: Instant, read: Result<u64, StoreUnavailable>) {
        if !self.expects(|p| matches!(p, Phase::Reading | Phase::Rechecking)) {
            return;
        }
        let leased = self.phase == Phase::Rechecking;
        match read {
            // Someone refreshed since the pair this process holds.
            Ok(generation) if generation > self.known => {
                let adopt = Conclusion::Adopt { generation };
                self.go(if leased {
                    Phase::Releasing(adopt)
                } else {
                    Phase::Done(adopt)
                });
            }
            // Still ours to refresh, under the lease: present it, unless the
            // deadline passed meanwhile (the lease outlasts the deadline, not
            // a call started after it).
            Ok(_) if leased && now < self.deadline => self.go(Phase::Calling),
            Ok(_) if leased => self.go(Phase::Releasing(Conclusion::Unavailable)),
            Ok(_) if now >= self.deadline => self.go(Phase::Done(Conclusion::Unavailable)),
            Ok(_) => self.go(Phase::Leasing),
            Err(StoreUnavailable) if leased => {
                self.go(Phase::Releasing(Conclusion::Unavailable));
            }
            Err(StoreUnavailable) => self.go(Phase::Done(Conclusion::Unavailable)),
        }
    }

    /// The store's answer to taking the lease.
    pub fn handle_lease(&mut self, now: Instant, lease: Result<Lease, StoreUnavailable>) {
        if !self.expects(|p| *p == Phase::Leasing) {
            return;
        }
        match lease {
            // Taken: read again before presenting anything.
            Ok(Lease::Taken) => self.go(Phase::Rechecking),
            Ok(Lease::Held { expires_in }) => {
                if now >= self.deadline {
                    return self.go(Phase::Done(Conclusion::Unavailable));
                }
                // Until the next notification, the holder's lease lapsing,
                // the re-check interval or the deadline, whichever first.
                let mut wait = self.config.recheck;
                if let Some(left) = expires_in {
                    wait = wait.min(left);
                }
                let until = now.saturating_add(wait).min(self.deadline);
                self.go(Phase::Waiting { until });
            }
            // Unknown whether it was taken: release in case it was.
            Err(StoreUnavailable) => self.go(Phase::Releasing(Conclusion::Unavailable)),
        }
    }

    /// The token endpoint answered: with new tokens (`got_tokens`) or not
    /// (refused, unavailable, unusable: the machine decides what that means).
    pub fn handle_token_call(&mut self, _now: Instant, got_tokens: bool) {
        if !self.expects(|p| *p == Phase::Calling) {
            return;
        }
        self.go(if got_tokens {
            Phase::Publishing { attempts: 1 }
        } else {
            Phase::Releasing(Conclusion::Refreshed { published: None })
        });
    }

    /// The store's answer to publishing: written (`true`), or refused
    /// because it moved on or the lease is no longer this process's (`false`).
    pub fn handle_publish(&mut self, now: Instant, written: Result<bool, StoreUnavailable>) {
        let Phase::Publishing { attempts } = self.phase else {
            return;
        };
        if !self.issued {
            return;
        }
        let published = self.known.checked_add(1);
        match written {
            Ok(true) => self.go(Phase::Releasing(Conclusion::Refreshed { published })),
            Ok(false) => {
                self.go(Phase::Releasing(Conclusion::Refreshed { published: None }));
            }
            // The new pair exists only here: the others would present the
            // spent token once the lease is released. Try again while the
            // lease lasts.
            Err(StoreUnavailable)
                if attempts < self.config.publish_attempts && now < self.deadline =>
            {
                self.go(Phase::Publishing {
                    attempts: attempts + 1,
                });
            }
            Err(StoreUnavailable) => {
                self.go(Phase::Releasing(Conclusion::Refreshed { published: None }));
            }
        }
    }

    /// The lease was released (or the attempt failed: it lapses by itself).
    pub fn handle_release(&mut self, _now: Instant) {
        let Phase::Releasing(conclusion) = self.phase else {
            return;
        };
        if self.issued {
            self.go(Phase::Done(conclusion));
        }
    }

    /// The store changed, or the wait's time came: read again.
    pub fn handle_wake(&mut self, _now: Instant) {
        if self.expects(|p| matches!(p, Phase::Waiting { .. })) {
            self.go(Phase::Reading);
        }
    }
}
