//! The core's conversions from the `http` crate's types (feature `http`).
//! Nothing else among the crates that judge the core's mutants calls them:
//! a mutant replacing any of them with a default survived.

use core::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use refresh_machine::www_authenticate::BearerError;
use refresh_machine::{RequestSpec, Response};

#[test]
fn request_spec_from_method_and_idempotency_key() {
    let none = HeaderMap::new();
    let mut keyed = HeaderMap::new();
    keyed.insert("Idempotency-Key", HeaderValue::from_static("k-1"));
    assert_eq!(
        RequestSpec::from_http(&Method::GET, &none),
        RequestSpec::IDEMPOTENT
    );
    assert_eq!(
        RequestSpec::from_http(&Method::POST, &none),
        RequestSpec::NON_IDEMPOTENT
    );
    assert_eq!(
        RequestSpec::from_http(&Method::POST, &keyed),
        RequestSpec::IDEMPOTENT
    );
}

#[test]
fn response_from_status_and_headers() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("7"));
    headers.insert(
        "www-authenticate",
        HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
    );
    let r = Response::from_http(StatusCode::UNAUTHORIZED, &headers, None);
    assert_eq!(
        r,
        Response::status(401)
            .with_retry_after(Duration::from_secs(7))
            .with_bearer_error(BearerError::InsufficientScope)
    );
    let mut dated = HeaderMap::new();
    dated.insert(
        "Retry-After",
        HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
    );
    let r = Response::from_http(StatusCode::SERVICE_UNAVAILABLE, &dated, Some(784_111_767));
    assert_eq!(r.retry_after, Some(Duration::from_secs(10)));
    assert_eq!(
        Response::from(StatusCode::TOO_MANY_REQUESTS),
        Response::status(429)
    );
}
