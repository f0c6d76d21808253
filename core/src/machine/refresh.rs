//! The refresh round: at most one refresh attempt at a time, its id, its
//! deadline, its backoff, and the one abandoned attempt whose late success is
//! still welcome.
//!
//! Invariants: an outcome is accepted only for the attempt in flight, or (a
//! success only) for the last attempt abandoned by its deadline; every attempt
//! gets a new id, and ending a round retires the id it was using.

use core::time::Duration;

use super::retry::Jitter;
use crate::config::Config;
use crate::request::RefreshId;
use crate::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum State {
    Idle,
    /// Decided, not yet handed out by a poll; the deadline starts when decided.
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

/// What a transient failure did to the round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failed {
    /// Backing off before the next attempt.
    Retrying,
    /// Attempts exhausted: the round is over, its waiters fail.
    GaveUp,
    /// The round was superseded by a late success and is over: its waiters
    /// (if any came since) need a new decision.
    Ended,
}

/// What a timer firing did to the round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timeout {
    /// Nothing was due.
    Nothing,
    /// The attempt missed its deadline: count it as a transient failure.
    Missed,
    /// The backoff ended: a new attempt is queued.
    Requeued,
}

#[derive(Clone, Debug)]
pub(super) struct RefreshRound {
    state: State,
    /// Id of the latest attempt.
    seq: u32,
    /// Id of the last attempt abandoned by its deadline, whose late success is
    /// still welcome (0: none). Only one: an older one would be older tokens.
    abandoned: u32,
    /// Transient failures in the current round.
    failures: u8,
    /// A late success installed tokens while this round's attempt was in
    /// flight: its answer is still applied (a success is newer, a rejection
    /// is the family revoked), but its failure ends the round quietly.
    superseded: bool,
    /// The token endpoint's last `Retry-After` (clamped) ends here: no
    /// attempt before it, in this round or a new one.
    not_before: Option<Instant>,
}

impl RefreshRound {
    pub(super) const fn new() -> Self {
        RefreshRound {
            state: State::Idle,
            seq: 0,
            abandoned: 0,
            failures: 0,
            superseded: false,
            not_before: None,
        }
    }

    #[inline]
    pub(super) fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    #[inline]
    pub(super) fn is_queued(&self) -> bool {
        matches!(self.state, State::Queued { .. })
    }

    #[inline]
    pub(super) fn is_in_flight(&self) -> bool {
        matches!(self.state, State::InFlight { .. })
    }

    /// Begin a round with its first attempt.
    pub(super) fn start(&mut self, now: Instant, config: &Config) {
        self.failures = 0;
        self.superseded = false;
        match self.not_before {
            // The server asked for a pause that has not run out.
            Some(until) if now < until => self.state = State::Backoff { until },
            _ => self.queue(now, config),
        }
    }

    fn queue(&mut self, now: Instant, config: &Config) {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.state = State::Queued {
            deadline: now + config.refresh_timeout,
        };
    }

    /// Hand out the queued attempt: its id and the deadline for its outcome.
    pub(super) fn hand_out(&mut self) -> Option<(RefreshId, Instant)> {
        let State::Queued { deadline } = self.state else {
            return None;
        };
        self.state = State::InFlight { deadline };
        Some((RefreshId(self.seq), deadline))
    }

    /// `id` names the attempt in flight (not a late one).
    #[inline]
    pub(super) fn is_current(&self, id: RefreshId) -> bool {
        id.0 == self.seq && self.is_in_flight()
    }

    /// A late success installed tokens. An attempt in flight keeps going
    /// (one refresh at a time: it is still out there); one not yet handed
    /// out, or a backoff, is no longer needed. No other late success is welcome.
    pub(super) fn supersede(&mut self) {
        self.abandoned = 0;
        if self.is_in_flight() {
            self.superseded = true;
        } else {
            self.end(true);
        }
    }

    /// Whether an outcome for `id` is accepted: the attempt in flight, or a
    /// late success (`late_success_welcome`) of the last abandoned attempt.
    #[inline]
    pub(super) fn accepts(&self, id: RefreshId, late_success_welcome: bool) -> bool {
        let current = id.0 == self.seq && self.is_in_flight();
        let late = late_success_welcome && id.0 == self.abandoned && id.0 != 0;
        current || late
    }

    /// Stop the round; any outcome still out there becomes late. With
    /// `forget_abandoned`, no late success is welcome any more either.
    pub(super) fn end(&mut self, forget_abandoned: bool) {
        if forget_abandoned {
            self.abandoned = 0;
            self.not_before = None;
        }
        if self.state != State::Idle {
            self.seq = self.seq.wrapping_add(1);
        }
        self.state = State::Idle;
        self.failures = 0;
        self.superseded = false;
    }

    /// A transient failure of the current attempt.
    pub(super) fn fail(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        config: &Config,
        jitter: &mut Jitter,
    ) -> Failed {
        let retry_after = retry_after.map(|d| d.min(config.max_retry_after));
        if let Some(d) = retry_after {
            self.not_before = Some(now + d);
        }
        if self.superseded {
            // Fresh tokens came meanwhile: nothing left to retry for.
            self.end(false);
            return Failed::Ended;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= config.max_refresh_attempts {
            self.end(false);
            return Failed::GaveUp;
        }
        let delay =
            retry_after.unwrap_or_else(|| jitter.delay(config.refresh_backoff, self.failures - 1));
        self.state = State::Backoff { until: now + delay };
        Failed::Retrying
    }

    /// Fire the round's timer if it is due by `now`.
    pub(super) fn handle_timeout(&mut self, now: Instant, config: &Config) -> Timeout {
        match self.state {
            State::Queued { deadline } | State::InFlight { deadline } if deadline <= now => {
                // The attempt is abandoned; its id is retired so only a late success counts.
                if self.is_in_flight() {
                    self.abandoned = self.seq;
                }
                self.seq = self.seq.wrapping_add(1);
                self.state = State::Idle;
                Timeout::Missed
            }
            State::Backoff { until } if until <= now => {
                self.queue(now, config);
                Timeout::Requeued
            }
            _ => Timeout::Nothing,
        }
    }

    /// When the round's timer is due, if it has one.
    #[inline]
    pub(super) fn timer(&self) -> Option<Instant> {
        match self.state {
            State::Queued { deadline } | State::InFlight { deadline } => Some(deadline),
            State::Backoff { until } => Some(until),
            State::Idle => None,
        }
    }

    #[cfg(feature = "model")]
    pub(super) fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        use core::hash::Hash;
        self.state.hash(state);
        self.seq.hash(state);
        self.abandoned.hash(state);
        self.failures.hash(state);
        self.superseded.hash(state);
        self.not_before.hash(state);
    }
}
