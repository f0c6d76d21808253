//! The request table: one slot per live request, its phase and counters.
//!
//! Two derived caches keep scans short, and only this module's mutators touch
//! them: `live_end` (one past the highest live slot: scans stop there, so a
//! table sized for bursts costs little when few requests are live) and
//! `scan_from` (no slot below it has an action: a drain resumes where the last
//! one left off, so draining a 1,000-request burst is linear, not quadratic).

use crate::action::RetryReason;
use crate::error::{Error, Failure};
use crate::request::{RequestId, RequestSpec};
use crate::Instant;

/// Where one request stands, as [`RefreshMachine::request_state`](crate::RefreshMachine::request_state) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestState {
    /// It will be sent with the current token at the next poll.
    ReadyToSend,
    /// Parked until the refresh resolves.
    WaitingForRefresh,
    /// Sent; awaiting a response or a send error.
    InFlight,
    /// Parked until `until`, then re-routed (feed `handle_timeout` then).
    BackingOff {
        /// When its retry becomes due.
        until: Instant,
    },
    /// Its outcome is decided and will be emitted at the next poll.
    Finished,
}

/// What [`Slots::emit`] took from a slot.
#[derive(Clone, Copy, Debug)]
pub(super) enum Emitted {
    /// Send the request (again, when `retry` says why).
    Send {
        id: RequestId,
        retry: Option<RetryReason>,
    },
    /// The request's outcome: delivered, or failed.
    Outcome {
        id: RequestId,
        failure: Option<Failure>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Phase {
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

impl Phase {
    /// The phase has something for `poll_action` to emit.
    #[inline]
    fn has_action(self) -> bool {
        matches!(self, Phase::Ready | Phase::Finished(_))
    }
}

#[derive(Clone, Copy, Debug, Hash)]
pub(super) struct Slot {
    pub(super) generation: u32,
    phase: Phase,
    pub(super) spec: RequestSpec,
    /// Token generation of the last send.
    pub(super) sent_gen: u32,
    pub(super) sends: u32,
    pub(super) auth_failures: u8,
    pub(super) transient_retries: u8,
    pub(super) retry_reason: RetryReason,
    /// Generation of the token this request waited for while a refresh got
    /// it (0: none); it goes out with that token once, whatever its lifetime.
    pub(super) waited_for: u32,
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
        retry_reason: RetryReason::Transient,
        waited_for: 0,
    };

    #[inline]
    pub(super) fn phase(&self) -> Phase {
        self.phase
    }

    fn is_live(&self) -> bool {
        !matches!(self.phase, Phase::Free)
    }
}

/// `N` request slots. Invariants: every slot at or above `live_end` is free;
/// no slot below `scan_from` has an action.
#[derive(Clone, Debug)]
pub(super) struct Slots<const N: usize> {
    slots: [Slot; N],
    live_end: usize,
    scan_from: usize,
}

impl<const N: usize> Slots<N> {
    pub(super) const fn new() -> Self {
        Slots {
            slots: [Slot::FREE; N],
            live_end: 0,
            scan_from: 0,
        }
    }

    /// Take a free slot for a new request (phase `Ready`, counters zero).
    pub(super) fn take(&mut self, spec: RequestSpec) -> Result<usize, Error> {
        let i = self
            .slots
            .iter()
            .position(|s| !s.is_live())
            .ok_or(Error::Full)?;
        let generation = self.slots[i].generation.wrapping_add(1);
        self.slots[i] = Slot {
            generation,
            spec,
            phase: Phase::Ready,
            ..Slot::FREE
        };
        self.live_end = self.live_end.max(i + 1);
        // `Ready` has an action.
        self.scan_from = self.scan_from.min(i);
        Ok(i)
    }

    /// Release a slot.
    pub(super) fn free(&mut self, i: usize) {
        self.slots[i].phase = Phase::Free;
        while self.live_end > 0 && !self.slots[self.live_end - 1].is_live() {
            self.live_end -= 1;
        }
    }

    /// The slot of a live request, or `UnknownRequest`.
    #[inline]
    pub(super) fn index(&self, id: RequestId) -> Result<usize, Error> {
        let i = id.slot as usize;
        match self.slots.get(i) {
            Some(s) if s.is_live() && s.generation == id.generation => Ok(i),
            _ => Err(Error::UnknownRequest),
        }
    }

    #[inline]
    pub(super) fn id(&self, i: usize) -> RequestId {
        RequestId {
            slot: i as u32,
            generation: self.slots[i].generation,
        }
    }

    #[inline]
    pub(super) fn get(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    /// Counters only: the phase changes through [`set_phase`](Self::set_phase).
    #[inline]
    pub(super) fn get_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.slots[i]
    }

    pub(super) fn phase(&self, i: usize) -> Phase {
        self.slots[i].phase
    }

    #[inline]
    pub(super) fn set_phase(&mut self, i: usize, phase: Phase) {
        self.slots[i].phase = phase;
        if phase.has_action() {
            self.scan_from = self.scan_from.min(i);
        }
    }

    /// Indices that may be live (`0..live_end`); a range, so the table can be
    /// mutated while iterating.
    #[inline]
    pub(super) fn live_range(&self) -> core::ops::Range<usize> {
        0..self.live_end
    }

    pub(super) fn live(&self) -> impl Iterator<Item = &Slot> {
        self.slots[..self.live_end].iter().filter(|s| s.is_live())
    }

    /// Move every live slot in phase `from` to the phase `to` gives it.
    pub(super) fn set_all(&mut self, from: impl Fn(Phase) -> bool, to: Phase) {
        for i in self.live_range() {
            if from(self.slots[i].phase) {
                self.set_phase(i, to);
            }
        }
    }

    /// The lowest slot with an action, remembered so the next drain starts there.
    pub(super) fn next_with_action(&mut self) -> Option<usize> {
        // Checked by every test run (debug builds): the skipped slots are idle.
        debug_assert!(
            self.slots[..self.scan_from.min(self.live_end)]
                .iter()
                .all(|s| !s.phase.has_action()),
            "a slot below scan_from has an action"
        );
        let i = (self.scan_from..self.live_end).find(|&i| self.slots[i].phase.has_action())?;
        // Emitting changes only slot `i`, and nothing below it has an action.
        self.scan_from = i;
        Some(i)
    }

    pub(super) fn has_action(&self, i: usize) -> bool {
        self.slots[i].phase.has_action()
    }

    /// Take slot `i`'s action (it has one): a `Ready` request is sent with
    /// the token of `token_generation` (counted, now `InFlight`); a
    /// `Finished` one yields its outcome and frees the slot.
    pub(super) fn emit(&mut self, i: usize, token_generation: u32) -> Emitted {
        let id = self.id(i);
        let slot = &mut self.slots[i];
        match slot.phase {
            Phase::Finished(failure) => {
                self.free(i);
                Emitted::Outcome { id, failure }
            }
            // `Ready`: the only other phase with an action. `InFlight` has
            // none, so `scan_from` needs no update.
            _ => {
                slot.phase = Phase::InFlight;
                slot.sent_gen = token_generation;
                slot.waited_for = 0;
                slot.sends += 1;
                let retry = (slot.sends > 1).then_some(slot.retry_reason);
                Emitted::Send { id, retry }
            }
        }
    }

    /// The state a caller may see.
    pub(super) fn state(&self, i: usize) -> RequestState {
        match self.slots[i].phase {
            Phase::Ready => RequestState::ReadyToSend,
            Phase::Waiting => RequestState::WaitingForRefresh,
            Phase::InFlight => RequestState::InFlight,
            Phase::Backoff { until } => RequestState::BackingOff { until },
            Phase::Free | Phase::Finished(_) => RequestState::Finished,
        }
    }

    /// Feed the table (caches excluded: they are derived) to a hasher.
    #[cfg(feature = "model")]
    pub(super) fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        use core::hash::Hash;
        self.slots.hash(state);
    }
}
