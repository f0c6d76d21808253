//! Time for the driver: the machine reads no clock, the firmware's timer does.

use core::future::Future;

use refresh_machine::Instant;

/// The firmware's monotonic clock and timer (e.g. `embassy_time`).
///
/// `now` is on the machine's own timeline: any monotonic epoch, such as boot.
pub trait Clock {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Wall-clock Unix seconds, if the device knows them (enables HTTP-date
    /// `Retry-After`; without it, such a header is ignored).
    fn unix_now(&self) -> Option<u64> {
        None
    }

    /// Resolve at `deadline` (at once if it has passed).
    fn sleep_until(&mut self, deadline: Instant) -> impl Future<Output = ()>;
}
