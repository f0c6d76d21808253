//! Part 3: Refresh amplification and recovery: N concurrent requests that all find
//! the token expired, through refresh-machine-reqwest and through the naive
//! interceptor, against a server with a round-trip latency added to every
//! answer (as a remote authorization server and API have).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::overhead::ours_reqwest;
use refresh_machine_bench::naive::NaiveInterceptor;
use refresh_machine_bench::stats::median;
use refresh_machine_driver::{Secret, TokenPair};
use refresh_machine_test_server::{AuthServer, ServerOptions};
use reqwest_middleware::ClientWithMiddleware;

/// Latency the server adds to each token-endpoint answer.
pub(crate) const TOKEN_LATENCY: Duration = Duration::from_millis(20);
/// Latency the server adds to each API answer.
pub(crate) const RESOURCE_LATENCY: Duration = Duration::from_millis(10);

/// One burst's result.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Burst {
    /// Refresh grants the server received.
    pub(crate) refreshes: u64,
    /// Requests answered 200.
    pub(crate) ok: usize,
    /// Requests that ended otherwise.
    pub(crate) failed: usize,
    /// Spent refresh tokens presented again (each revoked the session).
    pub(crate) reuse_detections: u64,
    /// From the first request's start to the last answer.
    pub(crate) recovery: Duration,
}

/// Everything measured for one N.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    /// Concurrent requests.
    pub(crate) n: usize,
    /// The same burst with a valid token, bare reqwest: the floor.
    pub(crate) bare_burst: Duration,
    /// refresh-machine, expiry known from `expires_in` (refresh, then send).
    pub(crate) known: Burst,
    /// refresh-machine, token revoked on the server (every request gets a 401 first).
    pub(crate) revoked: Burst,
    /// The naive interceptor, token revoked on the server.
    pub(crate) naive: Burst,
}

/// Round trips measured in the same run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoundTrips {
    /// One refresh grant.
    pub(crate) refresh: Duration,
    /// One API request.
    pub(crate) request: Duration,
}

fn pair(server: &AuthServer, expires_in: Option<Duration>) -> TokenPair {
    let t = server.login();
    TokenPair {
        access_token: Secret::from(t.access_token),
        refresh_token: Some(Secret::from(t.refresh_token)),
        expires_at: expires_in.map(|d| std::time::SystemTime::now() + d),
        refresh_expires_at: None,
    }
}

/// Fire `n` GETs at once through `client`; what the server counted meanwhile.
async fn burst(server: &AuthServer, client: ClientWithMiddleware, url: &str, n: usize) -> Burst {
    let client = Arc::new(client);
    let before = server.counters();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                match client.get(&url).send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                }
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap_or(false));
    }
    let recovery = t0.elapsed();
    let after = server.counters();
    Burst {
        refreshes: after.refresh_calls - before.refresh_calls,
        ok,
        failed: n - ok,
        reuse_detections: after.reuse_detections - before.reuse_detections,
        recovery,
    }
}

/// Run every N, `trials` times each (the median recovery is kept, and the
/// largest refresh count, so one bad trial shows).
pub(crate) fn run(ns: &[usize], trials: usize) -> (RoundTrips, Vec<Row>) {
    let server = AuthServer::start_with(ServerOptions {
        access_ttl: Duration::from_secs(3600),
        token_latency: TOKEN_LATENCY,
        resource_latency: RESOURCE_LATENCY,
        ..ServerOptions::default()
    })
    .expect("start the loopback server");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let url = server.url("/api/me");
    rt.block_on(async {
        let rtt = round_trips(&server, &url).await;
        let mut rows = Vec::new();
        for &n in ns {
            let mut bare = Vec::new();
            let (mut known, mut revoked, mut naive) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..trials {
                // Floor: the same burst, valid token, no middleware.
                let t = pair(&server, None);
                let auth = format!("Bearer {}", t.access_token.expose());
                bare.push(bare_burst(&auth, &url, n).await);

                // refresh-machine, expiry known to the client.
                let client = ours_reqwest(&server, &pair(&server, Some(Duration::ZERO)));
                known.push(burst(&server, client, &url, n).await);

                // refresh-machine, token revoked on the server: 401s first.
                let client = ours_reqwest(&server, &pair(&server, None));
                server.revoke_access_tokens();
                revoked.push(burst(&server, client, &url, n).await);

                // The naive interceptor, same situation.
                let interceptor =
                    NaiveInterceptor::new(&server.token_url(), &server.options().client_id);
                let t = pair(&server, None);
                interceptor.set_tokens(
                    t.access_token.expose(),
                    t.refresh_token.as_ref().map_or("", |r| r.expose()),
                );
                server.revoke_access_tokens();
                let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                    .with(interceptor)
                    .build();
                naive.push(burst(&server, client, &url, n).await);
            }
            rows.push(Row {
                n,
                bare_burst: median(&bare).expect("trials"),
                known: typical(&known),
                revoked: typical(&revoked),
                naive: typical(&naive),
            });
            eprintln!("amplification: N = {n} done");
        }
        (rtt, rows)
    })
}

/// Median recovery; worst counts (largest refresh count, most failures).
fn typical(trials: &[Burst]) -> Burst {
    let recoveries: Vec<Duration> = trials.iter().map(|b| b.recovery).collect();
    let worst = trials
        .iter()
        .max_by_key(|b| (b.failed, b.refreshes))
        .copied()
        .unwrap_or_default();
    Burst {
        recovery: median(&recoveries).unwrap_or_default(),
        ..worst
    }
}

async fn bare_burst(auth: &str, url: &str, n: usize) -> Duration {
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, auth) = (client.clone(), url.to_owned(), auth.to_owned());
            tokio::spawn(async move {
                let r = client
                    .get(&url)
                    .header("authorization", auth)
                    .send()
                    .await
                    .expect("bare request");
                assert_eq!(r.status(), 200, "bare burst with a valid token");
                r.bytes().await.expect("body");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("bare request task");
    }
    t0.elapsed()
}

/// One refresh grant and one API request, each timed alone (median of 7),
/// on fresh connections as in the bursts.
async fn round_trips(server: &AuthServer, url: &str) -> RoundTrips {
    let (mut refresh, mut request) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = server.login();
        let client = reqwest::Client::new();
        let t0 = Instant::now();
        let r = client
            .post(server.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&refresh_token={}&client_id={}",
                t.refresh_token,
                server.options().client_id
            ))
            .send()
            .await
            .expect("refresh grant");
        assert_eq!(r.status(), 200, "refresh grant");
        r.bytes().await.expect("body");
        refresh.push(t0.elapsed());

        let client = reqwest::Client::new();
        let t = server.login();
        let t0 = Instant::now();
        let r = client
            .get(url)
            .header("authorization", format!("Bearer {}", t.access_token))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "request");
        r.bytes().await.expect("body");
        request.push(t0.elapsed());
    }
    RoundTrips {
        refresh: median(&refresh).expect("samples"),
        request: median(&request).expect("samples"),
    }
}
