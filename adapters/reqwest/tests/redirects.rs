//! Issue 15: which hop of a redirect chain carried the token. reqwest drops
//! `Authorization` when a hop changes origin and keeps it dropped for every
//! later hop, and it exposes no redirect history: a chain that leaves the
//! token's origin and comes back (A to B to A) ends on A without the token.

mod common;

use common::{build, opaque, runtime};
use refresh_machine_reqwest::Config;
use refresh_machine_test_server::TestClient;

/// `url` with `to` as its form-encoded `to` parameter.
fn redirect_to(url: &str, to: &str) -> String {
    reqwest::Url::parse_with_params(url, &[("to", to)])
        .unwrap()
        .to_string()
}

/// A to B to A: the last hop arrives without the token and its 401 (a
/// challenge with no error code, RFC 6750 section 3.1) says nothing about
/// the token. It was taken as a refusal: a needless refresh, then
/// `Unauthorized`. Now the response is delivered as it is.
#[test]
fn a_redirect_that_leaves_and_returns_is_judged_by_its_last_hop() {
    let a = opaque();
    let b = opaque();
    let c = build(&a, Config::DEFAULT);
    let back_to_a = a.url("/api/me");
    let via_b = redirect_to(&b.url("/api/redirect"), &back_to_a);
    let first = redirect_to(&a.url("/api/redirect"), &via_b);
    let status = runtime()
        .block_on(c.client.get(first).send())
        .map(|r| r.status().as_u16());
    assert_eq!(status.ok(), Some(401), "the last hop's answer, delivered");
    assert_eq!(b.counters().with_authorization, 0, "B never saw the token");
    let k = a.counters();
    assert_eq!((k.refresh_calls, k.unauthorized), (0, 1), "{k:?}");
    assert!(c.has_tokens());
}

/// A redirect that stays on the origin keeps the token (reqwest keeps it
/// there): a 401 `invalid_token` at its last hop is a refused token, and is
/// refreshed as without the redirect.
#[test]
fn a_same_origin_redirect_still_refreshes_an_expired_token() {
    let a = opaque();
    let c = build(&a, Config::DEFAULT);
    a.revoke_access_tokens();
    let url = redirect_to(&a.url("/api/redirect"), "/api/me");
    let status = runtime()
        .block_on(c.client.get(url).send())
        .map(|r| r.status().as_u16());
    assert_eq!(status.ok(), Some(200));
    let k = a.counters();
    assert_eq!((k.refresh_calls, k.refresh_ok), (1, 1), "{k:?}");
}
