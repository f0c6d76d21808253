//! Part 2: Adapter overhead on loopback, no expiry: each adapter against the bare
//! client it wraps, same server, batches interleaved (A B C, B C A, ...) so drift
//! and warm-up hit both alike.

use std::time::{Duration, Instant};

use refresh_machine_bench::stats::{summarize, Summary};
use refresh_machine_reqwest::{RefreshMiddleware, TokioTimer};
use refresh_machine_session::{Secret, TokenPair};
use refresh_machine_testkit::{AuthServer, ServerOptions};

/// One adapter against its bare client.
#[derive(Debug, Clone, Copy)]
pub struct Overhead {
    /// The bare client with a hand-set `Authorization` header.
    pub bare: Summary,
    /// The same requests through refresh-machine.
    pub ours: Summary,
    /// For middleware: the bare client inside an empty middleware stack.
    pub empty_stack: Option<Summary>,
}

fn server() -> (AuthServer, TokenPair) {
    let server = AuthServer::start_with(ServerOptions {
        access_ttl: Duration::from_secs(3600),
        ..ServerOptions::default()
    })
    .expect("start the loopback server");
    let t = server.login();
    let pair = TokenPair {
        access_token: Secret::from(t.access_token),
        refresh_token: Some(Secret::from(t.refresh_token)),
        expires_in: Some(t.expires_in),
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

/// refresh-machine-ureq against a bare `ureq::Agent` configured the same way.
pub fn ureq(rounds: usize, per_batch: usize) -> Overhead {
    let (server, tokens) = server();
    let url = server.url("/api/me");
    let bare: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let header = format!("Bearer {}", tokens.access_token.expose());
    let ours = refresh_machine_ureq::Client::builder()
        .token_endpoint(&server.token_url(), &server.options().client_id)
        .and_then(|b| b.allow_origin(&server.origin()))
        .expect("valid URLs")
        .timeout(Duration::from_secs(30))
        .build();
    ours.set_tokens(&tokens).expect("tokens fit");
    let bare_batch = |lat: &mut Vec<Duration>| {
        for _ in 0..per_batch {
            let t0 = Instant::now();
            let mut resp = bare
                .get(&url)
                .header("authorization", &header)
                .call()
                .expect("bare ureq request");
            let body = resp.body_mut().read_to_vec().expect("body");
            lat.push(t0.elapsed());
            assert_eq!(resp.status(), 200, "bare ureq");
            std::hint::black_box(body);
        }
    };
    let ours_batch = |lat: &mut Vec<Duration>| {
        for _ in 0..per_batch {
            let t0 = Instant::now();
            let resp = ours.get(&url).expect("refresh-machine-ureq request");
            lat.push(t0.elapsed());
            assert_eq!(resp.status(), 200, "refresh-machine-ureq");
            std::hint::black_box(resp.into_body());
        }
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

/// refresh-machine-reqwest (as middleware) against a bare `reqwest::Client`,
/// on a current-thread tokio runtime.
pub fn reqwest(rounds: usize, per_batch: usize) -> Overhead {
    let (server, tokens) = server();
    let url = server.url("/api/me");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let bare = reqwest::Client::new();
    let header = format!("Bearer {}", tokens.access_token.expose());
    let auth = RefreshMiddleware::builder(TokioTimer)
        .token_endpoint(&server.token_url(), &server.options().client_id)
        .and_then(|b| b.allow_origin(&server.origin()))
        .expect("valid URLs")
        .build();
    auth.set_tokens(&tokens).expect("tokens fit");
    let ours = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    let empty = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
    let empty_batch = |lat: &mut Vec<Duration>| {
        rt.block_on(async {
            for _ in 0..per_batch {
                let t0 = Instant::now();
                let resp = empty
                    .get(&url)
                    .header("authorization", &header)
                    .send()
                    .await
                    .expect("empty-stack request");
                let status = resp.status();
                let body = resp.bytes().await.expect("body");
                lat.push(t0.elapsed());
                assert_eq!(status, 200, "empty middleware stack");
                std::hint::black_box(body);
            }
        })
    };
    let bare_batch = |lat: &mut Vec<Duration>| {
        rt.block_on(async {
            for _ in 0..per_batch {
                let t0 = Instant::now();
                let resp = bare
                    .get(&url)
                    .header("authorization", &header)
                    .send()
                    .await
                    .expect("bare reqwest request");
                let status = resp.status();
                let body = resp.bytes().await.expect("body");
                lat.push(t0.elapsed());
                assert_eq!(status, 200, "bare reqwest");
                std::hint::black_box(body);
            }
        })
    };
    let ours_batch = |lat: &mut Vec<Duration>| {
        rt.block_on(async {
            for _ in 0..per_batch {
                let t0 = Instant::now();
                let resp = ours
                    .get(&url)
                    .send()
                    .await
                    .expect("refresh-machine-reqwest request");
                let status = resp.status();
                let body = resp.bytes().await.expect("body");
                lat.push(t0.elapsed());
                assert_eq!(status, 200, "refresh-machine-reqwest");
                std::hint::black_box(body);
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
