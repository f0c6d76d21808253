//! Request identity and what the machine needs to know about a request.

/// Handle for one request in the machine. Ids are never reused: a slot's
/// generation changes each time it is taken, so a stale id is detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl RequestId {
    /// Index of the slot (stable for the request's life; useful for driver-side tables).
    pub const fn slot(self) -> usize {
        self.slot as usize
    }
}

/// Handle for one refresh attempt; its outcome must name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefreshId(pub(crate) u32);

/// Properties of a request that decide which retries are safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestSpec {
    /// Safe to send again after an error that may have reached the server:
    /// an idempotent method, or a request carrying an `Idempotency-Key`.
    pub idempotent: bool,
    /// The body can be sent again (false for a consumed stream).
    pub replayable: bool,
}

impl RequestSpec {
    /// Idempotent and replayable (e.g. a GET).
    pub const IDEMPOTENT: RequestSpec = RequestSpec {
        idempotent: true,
        replayable: true,
    };
    /// Replayable but not idempotent (e.g. a POST with a buffered body).
    pub const NON_IDEMPOTENT: RequestSpec = RequestSpec {
        idempotent: false,
        replayable: true,
    };

    /// From the method name and whether an idempotency key is attached.
    /// Idempotent methods per RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE.
    pub fn for_method(method: &str, has_idempotency_key: bool) -> Self {
        RequestSpec {
            idempotent: has_idempotency_key || is_idempotent_method(method),
            replayable: true,
        }
    }
}

/// RFC 9110 §9.2.2 (method names are case-sensitive).
pub fn is_idempotent_method(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}
