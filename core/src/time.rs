//! Monotonic time as an input.
//!
//! The machine never reads a clock. The driver picks an epoch (boot, process
//! start, anything monotonic) and passes the elapsed time as an [`Instant`].

use core::ops::Add;
use core::time::Duration;

/// A point on the driver's monotonic clock, measured from an epoch the driver chooses.
///
/// Only differences between instants matter; the epoch itself has no meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// An instant `since_epoch` after the driver's epoch.
    pub const fn from_duration(since_epoch: Duration) -> Self {
        Instant(since_epoch)
    }

    /// An instant `ms` milliseconds after the epoch (handy for tick counters on firmware).
    pub const fn from_millis(ms: u64) -> Self {
        Instant(Duration::from_millis(ms))
    }

    /// Time since the driver's epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// `self + d`, saturating at the far future instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating: time arithmetic on inputs must never panic.
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

/// The platform's clocks: std's, or in a browser (wasm32-unknown-unknown,
/// where std's trap) web-time's, which read `performance.now()` and `Date.now()`.
#[cfg(all(
    feature = "std",
    not(all(target_arch = "wasm32", target_os = "unknown"))
))]
use std::time as platform;
#[cfg(all(feature = "std", target_arch = "wasm32", target_os = "unknown"))]
use web_time as platform;

/// Maps the platform's monotonic clock onto the machine's [`Instant`]
/// (feature `std`): `std::time::Instant`, or in a browser (wasm32-unknown-unknown)
/// `web_time::Instant`.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug)]
pub struct StdClock {
    epoch: platform::Instant,
}

#[cfg(feature = "std")]
impl StdClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        StdClock {
            epoch: platform::Instant::now(),
        }
    }

    /// The current time as a machine [`Instant`].
    pub fn now(&self) -> Instant {
        self.to_instant(platform::Instant::now())
    }

    /// Convert a std instant (instants before the epoch map to the epoch).
    pub fn to_instant(&self, t: platform::Instant) -> Instant {
        Instant(t.saturating_duration_since(self.epoch))
    }

    /// Convert a machine instant back to a std instant.
    pub fn to_std(&self, t: Instant) -> platform::Instant {
        self.epoch
            .checked_add(t.since_epoch())
            .unwrap_or_else(|| self.epoch + Duration::from_secs(86_400 * 365))
    }

    /// Seconds since the Unix epoch from the system wall clock, for `Retry-After` dates.
    pub fn unix_now() -> Option<u64> {
        platform::SystemTime::now()
            .duration_since(platform::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    }
}

#[cfg(feature = "std")]
impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}
