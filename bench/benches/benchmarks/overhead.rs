//! Part 2: Adapter overhead on loopback, no expiry: each adapter against the bare
//! client it wraps, same server, batches interleaved (A B C, B C A, ...) so drift
//! and warm-up hit both alike.

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use refresh_machine_bench::stats::{summarize, Summary};
use refresh_machine_driver::{Secret, TokenPair};
use refresh_machine_reqwest::{RefreshMiddleware, TokioTimer};
use refresh_machine_test_server::{AuthServer, ServerOptions};
use reqwest_middleware::ClientWithMiddleware;

/// One adapter against its bare client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Overhead {
    /// The bare client with a hand-set `Authorization` header.
    pub(crate) bare: Summary,
    /// The same requests through refresh-machine.
    pub(crate) ours: Summary,
    /// For middleware: the bare client inside an empty middleware stack.
    pub(crate) empty_stack: Option<Summary>,
}

/// The loopback server (long-lived tokens: no expiry) and a pair it issued.
pub(crate) fn server() -> (AuthServer, TokenPair) {
    let server = AuthServer::start_with(ServerOptions {
        access_ttl: Duration::from_secs(3600),
        ..ServerOptions::default()
    })
    .expect("start the loopback server");
    let t = server.login();
    let pair = TokenPair {
        access_token: Secret::from(t.access_token),
        refresh_token: Some(Secret::from(t.refresh_token)),
        expires_at: Some(std::time::SystemTime::now() + t.expires_in),
        refresh_expires_at: None,
    };
    (server, pair)
}

type Batch<'a> = Box<dyn FnMut(&mut Vec<Duration>) + 'a>;

/// Run each client's batch in turn, `rounds` times, rotating who goes first.
fn interleave(rounds: usize, mut clients: Vec<Batch<'_>>) -> Vec<Summary> {
    let mut latencies = vec![Vec::new(); clients.len()];
    for r in 0..rounds {
        for k in 0..clients.len() {
            let i = (r + k) % clients.len();
            clients[i](&mut latencies[i]);
        }
    }
    latencies
        .iter()
        .map(|l| summarize(l).expect("samples"))
        .collect()
}

/// A bare ureq agent, configured as refresh-machine-ureq configures its own.
pub(crate) fn bare_ureq_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// refresh-machine-ureq for `server`, holding `tokens`.
pub(crate) fn ours_ureq(server: &AuthServer, tokens: &TokenPair) -> refresh_machine_ureq::Client {
    let client = refresh_machine_ureq::Client::builder()
        .token_endpoint(&server.token_url(), &server.options().client_id)
        .and_then(|b| b.allow_origin(&server.origin()))
        .expect("valid URLs")
        .timeout(Duration::from_secs(30))
        .build();
    client.set_tokens(tokens).expect("tokens fit");
    client
}

/// reqwest with refresh-machine's middleware for `server`, holding `tokens`.
pub(crate) fn ours_reqwest(server: &AuthServer, tokens: &TokenPair) -> ClientWithMiddleware {
    let auth = RefreshMiddleware::builder(TokioTimer)
        .token_endpoint(&server.token_url(), &server.options().client_id)
        .and_then(|b| b.allow_origin(&server.origin()))
        .expect("valid URLs")
        .build();
    auth.set_tokens(tokens).expect("tokens fit");
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build()
}

/// One bare ureq GET with the token set by hand; its time, body read.
pub(crate) fn bare_ureq_get(agent: &ureq::Agent, url: &str, authorization: &str) -> Duration {
    let t0 = Instant::now();
    let mut resp = agent
        .get(url)
        .header("authorization", authorization)
        .call()
        .expect("bare ureq request");
    let body = resp.body_mut().read_to_vec().expect("body");
    let elapsed = t0.elapsed();
    assert_eq!(resp.status(), 200, "bare ureq");
    black_box(body);
    elapsed
}

/// One GET through refresh-machine-ureq; its time, body read.
pub(crate) fn ours_ureq_get(client: &refresh_machine_ureq::Client, url: &str) -> Duration {
    let t0 = Instant::now();
    let resp = client.get(url).expect("refresh-machine-ureq request");
    let elapsed = t0.elapsed();
    assert_eq!(resp.status(), 200, "refresh-machine-ureq");
    black_box(resp.into_body());
    elapsed
}

/// One reqwest GET (`send` is the request on its way); its time, body read.
pub(crate) async fn reqwest_get<E: std::fmt::Debug>(
    label: &str,
    send: impl Future<Output = Result<reqwest::Response, E>>,
) -> Duration {
    let t0 = Instant::now();
    let resp = send
        .await
        .unwrap_or_else(|e| panic!("{label} request: {e:?}"));
    let status = resp.status();
    let body = resp.bytes().await.expect("body");
    let elapsed = t0.elapsed();
    assert_eq!(status, 200, "{label}");
    black_box(body);
    elapsed
}

/// refresh-machine-ureq against a bare `ureq::Agent` configured the same way.
pub(crate) fn ureq(rounds: usize, per_batch: usize) -> Overhead {
    let (server, tokens) = server();
    let url = server.url("/api/me");
    let bare = bare_ureq_agent();
    let header = format!("Bearer {}", tokens.access_token.expose());
    let ours = ours_ureq(&server, &tokens);
    let bare_batch = |lat: &mut Vec<Duration>| {
        lat.extend((0..per_batch).map(|_| bare_ureq_get(&bare, &url, &header)));
    };
    let ours_batch = |lat: &mut Vec<Duration>| {
        lat.extend((0..per_batch).map(|_| ours_ureq_get(&ours, &url)));
    };
    // Warm both (connections, allocator).
    bare_batch(&mut Vec::new());
    ours_batch(&mut Vec::new());
    let s = interleave(rounds, vec![Box::new(bare_batch), Box::new(ours_batch)]);
    let c = server.counters();
    assert_eq!(c.refresh_calls, 0, "no expiry in this benchmark");
    Overhead {
        bare: s[0],
        ours: s[1],
        empty_stack: None,
    }
}

/// refresh-machine-reqwest (as middleware) against a bare `reqwest::Client`
/// and the same client in an empty middleware stack, on a current-thread
/// tokio runtime.
pub(crate) fn reqwest(rounds: usize, per_batch: usize) -> Overhead {
    let (server, tokens) = server();
    let url = server.url("/api/me");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let bare = reqwest::Client::new();
    let header = format!("Bearer {}", tokens.access_token.expose());
    let ours = ours_reqwest(&server, &tokens);
    let empty = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
    let bare_batch = |lat: &mut Vec<Duration>| {
        rt.block_on(async {
            for _ in 0..per_batch {
                let send = bare.get(&url).header("authorization", &header).send();
                lat.push(reqwest_get("bare reqwest", send).await);
            }
        })
    };
    let ours_batch = |lat: &mut Vec<Duration>| {
        rt.block_on(async {
            for _ in 0..per_batch {
                let send = ours.get(&url).send();
                lat.push(reqwest_get("refresh-machine-reqwest", send).await);
            }
        })
    };
    let empty_batch = |lat: &mut Vec<Duration>| {
        rt.block_on(async {
            for _ in 0..per_batch {
                let send = empty.get(&url).header("authorization", &header).send();
                lat.push(reqwest_get("empty middleware stack", send).await);
            }
        })
    };
    bare_batch(&mut Vec::new());
    ours_batch(&mut Vec::new());
    empty_batch(&mut Vec::new());
    let s = interleave(
        rounds,
        vec![
            Box::new(bare_batch),
            Box::new(ours_batch),
            Box::new(empty_batch),
        ],
    );
    assert_eq!(
        server.counters().refresh_calls,
        0,
        "no expiry in this benchmark"
    );
    Overhead {
        bare: s[0],
        ours: s[1],
        empty_stack: Some(s[2]),
    }
}
