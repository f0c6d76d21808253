//! Issue 15: which hop of a redirect chain carried the token. Left to
//! reqwest, redirects drop `Authorization` when a hop changes origin and keep
//! it dropped, and reqwest keeps no history; with
//! `ReqwestTransport::follow_redirects` (and a client that follows none
//! itself) the middleware follows them hop by hop and knows.

mod common;

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use common::{build, runtime, AsyncClient, Tokio};
use refresh_machine_reqwest::{Config, RefreshMiddleware, ReqwestTransport};
use refresh_machine_test_server::{redirect_to, AuthServer, ServerOptions, TestClient};

fn server(options: ServerOptions) -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..options
    })
    .unwrap()
}

/// A client on `s` whose redirects the middleware follows, hop by hop.
fn following(s: &AuthServer) -> AsyncClient {
    let transport = ReqwestTransport::new(Tokio).follow_redirects();
    let auth = RefreshMiddleware::builder_with(transport)
        .token_endpoint(&s.token_url(), &s.options().client_id)
        .unwrap()
        .allow_origin(&s.origin())
        .unwrap()
        .seed(7)
        .build();
    let a = auth.clone();
    runtime()
        .block_on(async move { a.login_with_password("alice", "wonderland").await })
        .unwrap();
    let inner = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    AsyncClient {
        client: reqwest_middleware::ClientBuilder::new(inner)
            .with(auth.clone())
            .build(),
        auth,
        login_required: Arc::new(AtomicU32::new(0)),
    }
}

fn status(c: &AsyncClient, url: String) -> Option<u16> {
    runtime()
        .block_on(c.client.get(url).send())
        .ok()
        .map(|r| r.status().as_u16())
}

/// A to B to A, followed by the middleware: the token goes to A's hops only
/// (never to B) and comes back with the chain: 200, no refresh. Left to
/// reqwest, the last hop had no token and its 401 cost a needless refresh,
/// then `Unauthorized`.
#[test]
fn a_redirect_that_leaves_and_returns_carries_the_token_only_on_its_origin() {
    let a = server(ServerOptions::default());
    let b = server(ServerOptions::default());
    let c = following(&a);
    let via_b = redirect_to(&b.url("/api/redirect"), &a.url("/api/me"));
    let first = redirect_to(&a.url("/api/redirect"), &via_b);
    assert_eq!(status(&c, first), Some(200));
    assert_eq!(b.counters().with_authorization, 0, "B never saw the token");
    assert_eq!(a.counters().refresh_calls, 0);
}

/// A chain that ends on another origin: that hop had no token, its 401 says
/// nothing about ours and is delivered as it is (no refresh); a same-origin
/// chain still refreshes an expired token.
#[test]
fn the_middleware_knows_which_hop_carried_the_token() {
    let a = server(ServerOptions::default());
    let b = server(ServerOptions::default());
    let c = following(&a);
    let to_b = redirect_to(&a.url("/api/redirect"), &b.url("/api/me"));
    assert_eq!(status(&c, to_b), Some(401));
    assert_eq!(b.counters().with_authorization, 0);
    assert_eq!(a.counters().refresh_calls, 0);
    a.revoke_access_tokens();
    let same = redirect_to(&a.url("/api/redirect"), "/api/me");
    assert_eq!(status(&c, same), Some(200));
    let k = a.counters();
    assert_eq!((k.refresh_calls, k.refresh_ok), (1, 1), "{k:?}");
    assert!(c.has_tokens());
}

/// Left to reqwest: a redirect that stays on the origin keeps the token, and
/// a 401 at its last hop is a refused token, refreshed as without the
/// redirect, also from a server whose challenges carry no error code (as
/// Django REST framework's: the same `Bearer realm="api"` for a missing and
/// an expired token; a trailing-slash redirect is its everyday case).
#[test]
fn a_same_origin_redirect_still_refreshes_an_expired_token() {
    for bare_challenges in [false, true] {
        let a = server(ServerOptions {
            bare_challenges,
            ..ServerOptions::default()
        });
        let c = build(&a, Config::DEFAULT);
        a.revoke_access_tokens();
        let url = redirect_to(&a.url("/api/redirect"), "/api/me");
        assert_eq!(status(&c, url), Some(200), "bare: {bare_challenges}");
        let k = a.counters();
        assert_eq!((k.refresh_calls, k.refresh_ok), (1, 1), "{k:?}");
    }
}

/// A POST redirected by a 302 becomes a GET without its body, and stays
/// without it on the next hop (a GET redirected again): the body is sent
/// once, with the POST. Before, the second hop sent it again with the GET.
#[test]
fn a_body_dropped_by_a_redirect_stays_dropped_on_later_hops() {
    let s = server(ServerOptions::default());
    let c = following(&s);
    let last = redirect_to(&s.url("/api/redirect"), &s.url("/api/me"));
    let first = redirect_to(&s.url("/api/redirect"), &last);
    let before = s.counters().request_body_bytes;
    let status = runtime()
        .block_on(c.client.post(first).body("fifteen bytes!!").send())
        .map(|r| r.status().as_u16())
        .unwrap();
    assert_eq!(status, 200);
    let k = s.counters();
    assert_eq!(k.request_body_bytes - before, 15, "{k:?}");
}
