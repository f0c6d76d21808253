//! The `WWW-Authenticate` parser, directly and through `Response::from_http`
//! (the path every adapter takes): typed result, never a panic, and a parsed
//! challenge's error code is one the parser knows.
#![no_main]

use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use libfuzzer_sys::fuzz_target;
use refresh_machine::www_authenticate::parse_bearer_challenge;
use refresh_machine::Response;

fuzz_target!(|data: &[u8]| {
    let direct = parse_bearer_challenge(data);
    // Deterministic: the same bytes give the same answer.
    assert_eq!(direct, parse_bearer_challenge(data));

    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(WWW_AUTHENTICATE, value.clone());
        headers.insert(RETRY_AFTER, value);
        let r = Response::from_http(StatusCode::UNAUTHORIZED, &headers, Some(1_700_000_000));
        assert_eq!(r.status, 401);
        // The adapter path agrees with the parser on the error code.
        assert_eq!(r.bearer_error, direct.ok().and_then(|c| c.error));
    }
});
