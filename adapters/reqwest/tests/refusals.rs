//! Responses read ahead for a refusal predicate are delivered whole.

mod common;

use common::{runtime, Tokio};
use refresh_machine_reqwest::RefreshMiddleware;
use refresh_machine_test_server::AuthServer;

/// A predicate that sees every 200 and calls none a refusal: the bodies it
/// was shown (short) or not (over the limit, read ahead in part) reach the
/// caller byte for byte, with the response's URL.
#[test]
fn a_response_read_ahead_is_delivered_whole() {
    let server = AuthServer::start().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let shown = seen.clone();
    let auth = RefreshMiddleware::builder(Tokio)
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .refresh_on_statuses(&[401, 200])
        .refresh_when(move |status, _, body| {
            shown.lock().unwrap().push(body.len());
            status == 401
        })
        .build();
    runtime()
        .block_on(auth.login_with_password("alice", "wonderland"))
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    let limit = refresh_machine_reqwest::REFUSAL_BODY_LIMIT;
    for size in [0, 10, limit, limit + 1, 3 * limit + 7] {
        let url = server.url(&format!("/api/blob?size={size}"));
        let (status, got, body) = runtime().block_on(async {
            let r = client.get(&url).send().await.unwrap();
            let (status, got) = (r.status().as_u16(), r.url().to_string());
            (status, got, r.bytes().await.unwrap())
        });
        assert_eq!((status, got.as_str()), (200, url.as_str()));
        assert_eq!(body.len(), size, "body of {size} bytes");
        assert!(body.iter().all(|&b| b == b'x'));
    }
    // Shown whole up to the limit, not at all beyond it.
    assert_eq!(*seen.lock().unwrap(), [0, 10, limit]);
    assert_eq!(server.counters().refresh_calls, 0);
}

/// The re-assembled body keeps the size its response announced:
/// `Response::content_length` (read from the body's size hint) is the
/// body's length, for a body read whole and for one read in part.
#[test]
fn a_response_read_ahead_keeps_its_content_length() {
    let server = AuthServer::start().unwrap();
    let auth = RefreshMiddleware::builder(Tokio)
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .refresh_on_statuses(&[401, 200])
        .refresh_when(|status, _, _| status == 401)
        .build();
    runtime()
        .block_on(auth.login_with_password("alice", "wonderland"))
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    let limit = refresh_machine_reqwest::REFUSAL_BODY_LIMIT;
    for size in [0, 10, limit + 1, 3 * limit + 7] {
        let url = server.url(&format!("/api/blob?size={size}"));
        let (announced, len) = runtime().block_on(async {
            let r = client.get(&url).send().await.unwrap();
            (r.content_length(), r.bytes().await.unwrap().len())
        });
        assert_eq!(len, size);
        assert_eq!(
            announced,
            Some(size as u64),
            "content length of a {size}-byte body"
        );
    }
}
