//! Conversions from the `http` crate's types (feature `http`).

use crate::{RequestSpec, Response};
use http::{HeaderMap, Method, StatusCode};

/// Header that marks a non-idempotent request as safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl RequestSpec {
    /// From a method and headers: idempotent methods, or any carrying `Idempotency-Key`.
    pub fn from_http(method: &Method, headers: &HeaderMap) -> Self {
        RequestSpec::for_method(method.as_str(), headers.contains_key(IDEMPOTENCY_KEY))
    }
}

impl Response {
    /// Status plus the two headers the machine reads; see [`Response::from_headers`].
    pub fn from_http(status: StatusCode, headers: &HeaderMap, unix_now: Option<u64>) -> Self {
        Response::from_headers(
            status.as_u16(),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            unix_now,
        )
    }
}

impl From<StatusCode> for Response {
    fn from(status: StatusCode) -> Self {
        Response::status(status.as_u16())
    }
}
