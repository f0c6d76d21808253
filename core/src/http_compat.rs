//! Conversions from the `http` crate's types (feature `http`).

use crate::retry_after::parse_retry_after;
use crate::www_authenticate::parse_bearer_challenge;
use crate::{RequestSpec, Response};
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
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
    /// Status plus the two headers the machine reads. Malformed headers are ignored
    /// (as if absent): a bad `Retry-After` falls back to computed backoff, a bad
    /// `WWW-Authenticate` to plain-401 handling. `unix_now` enables HTTP-date `Retry-After`.
    pub fn from_http(status: StatusCode, headers: &HeaderMap, unix_now: Option<u64>) -> Self {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| parse_retry_after(v.as_bytes()).ok())
            .and_then(|r| r.delay(unix_now));
        let bearer_error = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .find_map(|v| parse_bearer_challenge(v.as_bytes()).ok())
            .and_then(|c| c.error);
        Response {
            status: status.as_u16(),
            retry_after,
            bearer_error,
        }
    }
}

impl From<StatusCode> for Response {
    fn from(status: StatusCode) -> Self {
        Response::status(status.as_u16())
    }
}
