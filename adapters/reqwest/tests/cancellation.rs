//! Issue 15, item 1: the refresh exchange belongs to the session, not to the
//! request that happened to start it. Dropping a request's future (a
//! timeout, an aborted task, a user who navigated away) never abandons a
//! refresh the server may already have processed: a second exchange would
//! present the spent refresh token, and a rotating server revokes the family.

mod common;

use std::time::{Duration, Instant};

use common::{build, build_with, opaque, runtime, AsyncClient};
use refresh_machine_reqwest::{Config, TokenCapacity};
use refresh_machine_test_server::{AuthServer, ServerOptions, TestClient, TokenFault};

/// A GET through the middleware: its status, or `None` for an error.
async fn get(c: &AsyncClient, url: &str) -> Option<u16> {
    c.client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Poll `done` every 10 ms for at most `limit`; false if it never held.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Start a GET on the runtime, wait until its refresh has reached the
/// server (the grant is being processed), then drop it mid-refresh.
async fn started_then_dropped(c: &AsyncClient, s: &AuthServer, url: &str) {
    let first = {
        let (c, url) = (c.clone(), url.to_owned());
        tokio::spawn(async move { get(&c, &url).await })
    };
    assert!(
        until(Duration::from_secs(10), || s.counters().refresh_calls == 1).await,
        "the refresh never reached the server"
    );
    first.abort();
    assert!(
        first.await.unwrap_err().is_cancelled(),
        "dropped mid-refresh"
    );
}

/// The case: the server processes the grant and answers after
/// 600 ms; the request that started the refresh is dropped while the server
/// holds the answer. Its waiters get the answer of that same exchange: one
/// refresh call, no reuse.
#[test]
fn a_cancelled_refresh_is_finished_for_its_waiters() {
    let s = opaque();
    let c = build(&s, Config::DEFAULT);
    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Late(Duration::from_millis(600)), 1);
    let url = s.url("/api/me");
    let others = runtime().block_on(async {
        let first = {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { get(&c, &url).await })
        };
        assert!(
            until(Duration::from_secs(10), || s.counters().refresh_calls == 1).await,
            "the refresh never reached the server"
        );
        let others: Vec<_> = (0..5)
            .map(|_| {
                let (c, url) = (c.clone(), url.clone());
                tokio::spawn(async move { get(&c, &url).await })
            })
            .collect();
        assert!(
            until(Duration::from_secs(10), || c
                .auth
                .session()
                .snapshot()
                .waiting
                >= 6)
            .await,
            "the others never parked behind the refresh"
        );
        first.abort();
        assert!(
            first.await.unwrap_err().is_cancelled(),
            "dropped mid-refresh"
        );
        let mut out = Vec::new();
        for t in others {
            out.push(
                tokio::time::timeout(Duration::from_secs(10), t)
                    .await
                    .expect("a waiter hung")
                    .unwrap(),
            );
        }
        out
    });
    assert!(others.iter().all(|r| *r == Some(200)), "{others:?}");
    let k = s.counters();
    assert_eq!(
        (k.refresh_calls, k.refresh_ok, k.reuse_detections),
        (1, 1, 0),
        "{k:?}"
    );
    assert_eq!(c.login_required_signals(), 0);
    assert_eq!(c.auth.session().snapshot().live, 0, "every slot released");
}

/// Every request waiting for the refresh is gone before the answer: the
/// exchange is kept, and the next request picks its answer up instead of
/// presenting the refresh token a second time.
#[test]
fn a_refresh_left_by_every_waiter_is_picked_up_by_the_next_request() {
    picked_up_after(Duration::from_millis(700), 0);
}

/// The same, with the next request coming after the refresh's deadline (1 s
/// here): the answer that arrived in time wins over the deadline that passed
/// while nobody was polling (reqwest's own timeout would have won).
#[test]
fn an_answer_that_arrived_in_time_is_used_after_the_deadline() {
    picked_up_after(Duration::from_millis(1500), 0);
}

/// The same with a large answer (60,000-byte access and refresh tokens with
/// the large token capacity: far more than the one chunk the HTTP client
/// buffers unread): its head arrived in time, so its body is read whole
/// after the deadline (it timed out after the first chunk).
#[test]
fn a_large_answer_that_arrived_in_time_is_read_whole_after_the_deadline() {
    picked_up_after(Duration::from_millis(1500), 60_000);
}

fn picked_up_after(idle: Duration, access_token_padding: usize) {
    let s = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        access_token_padding,
        refresh_token_padding: access_token_padding,
        ..ServerOptions::default()
    })
    .unwrap();
    let mut config = Config::DEFAULT;
    config.refresh_timeout = Duration::from_secs(1);
    // The default refresh backoff: past the deadline the request that
    // comes by waits it out, driving the exchange whose answer is waiting
    // unread. (With no backoff at all, a large answer that needs several
    // polls can still lose to the next refresh: a known gap, see the
    // closing note of 2026-11-26.)
    let c = build_with(&s, config, TokenCapacity::Large);
    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Late(Duration::from_millis(600)), 1);
    let url = s.url("/api/me");
    let next = runtime().block_on(async {
        started_then_dropped(&c, &s, &url).await;
        assert_eq!(c.auth.session().snapshot().live, 0, "its request is gone");
        // Past the server's answer: it waits, unread, for whoever comes next.
        tokio::time::sleep(idle).await;
        tokio::time::timeout(Duration::from_secs(10), get(&c, &url))
            .await
            .expect("the next request hung")
    });
    assert_eq!(next, Some(200));
    let k = s.counters();
    assert_eq!(
        (k.refresh_calls, k.refresh_ok, k.reuse_detections),
        (1, 1, 0),
        "{k:?}"
    );
    assert!(c.has_tokens());
}

/// Every request waiting for the refresh is dropped, and none comes
/// after: the exchange, running on tokio, applies its answer to the
/// session when it arrives (the rotated pair is held, and would be
/// persisted), without a next request or `settle`. Before, the answer
/// waited for one, and an application that exited first lost the rotated
/// pair: at its next start it presented the spent refresh token.
#[test]
fn a_refresh_every_request_left_is_applied_when_its_answer_arrives() {
    let s = opaque();
    let c = build(&s, Config::DEFAULT);
    let before = c.auth.session().tokens().unwrap();
    s.revoke_access_tokens();
    s.set_token_fault(TokenFault::Late(Duration::from_millis(300)), 1);
    let url = s.url("/api/me");
    let applied = runtime().block_on(async {
        started_then_dropped(&c, &s, &url).await;
        assert_eq!(c.auth.session().snapshot().live, 0, "its request is gone");
        until(Duration::from_secs(10), || {
            c.auth.session().tokens().map(|t| t.refresh_token) != Some(before.refresh_token.clone())
        })
        .await
    });
    assert!(applied, "the rotated pair was applied with no request left");
    let k = s.counters();
    assert_eq!((k.refresh_calls, k.refresh_ok), (1, 1), "{k:?}");
}

/// SplitMix64: the storm's schedule, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one storm trial saw.
#[derive(Debug, Default)]
struct Storm {
    completed: usize,
    cancelled: usize,
    elapsed: Duration,
    failed: usize,
    refresh_calls: u64,
    reuse_detections: u64,
    login_required: u32,
    session_lost: bool,
    live_after: usize,
}

/// 300 requests spread over five expiries of a 1 s token, every refresh
/// answered 400 ms after the server processed it; a third of the requests
/// are dropped at a random point (0 to 400 ms after they start).
fn storm(seed: u64) -> Storm {
    let s = AuthServer::start_with(ServerOptions {
        access_ttl: Duration::from_secs(1),
        ..ServerOptions::default()
    })
    .unwrap();
    let mut config = Config::DEFAULT;
    config.expiry_skew = Duration::from_millis(100);
    let c = build(&s, config);
    s.set_token_fault(TokenFault::Late(Duration::from_millis(400)), 10_000);
    let url = s.url("/api/me");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let results = runtime().block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..300 {
            let cancel_after = (rng.below(3) == 0).then(|| Duration::from_millis(rng.below(400)));
            let (c, url) = (c.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                match cancel_after {
                    Some(d) => tokio::time::timeout(d, get(&c, &url)).await.ok(),
                    None => Some(get(&c, &url).await),
                }
            }));
            tokio::time::sleep(Duration::from_millis(17)).await;
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(
                tokio::time::timeout(Duration::from_secs(30), t)
                    .await
                    .expect("a request hung")
                    .unwrap(),
            );
        }
        out
    });
    let elapsed = started.elapsed();
    let k = s.counters();
    Storm {
        elapsed,
        completed: results.iter().filter(|r| **r == Some(Some(200))).count(),
        cancelled: results.iter().filter(|r| r.is_none()).count(),
        failed: results
            .iter()
            .filter(|r| matches!(r, Some(x) if *x != Some(200)))
            .count(),
        refresh_calls: k.refresh_calls,
        reuse_detections: k.reuse_detections,
        login_required: c.login_required_signals(),
        session_lost: !c.has_tokens(),
        live_after: c.auth.session().snapshot().live,
    }
}

/// The storm: before the fix it lost the session in 2 to 5 trials
/// of 12. `STORM_TRIALS` sets how many trials run (2 by default, ~6 s each).
#[test]
fn a_cancellation_storm_loses_no_session() {
    let trials: u64 = std::env::var("STORM_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for seed in 1..=trials {
        let t = storm(seed);
        eprintln!("storm seed {seed}: {t:?}");
        assert_eq!(
            (t.reuse_detections, t.login_required, t.session_lost),
            (0, 0, false),
            "seed {seed}: {t:?}"
        );
        assert_eq!(t.failed, 0, "seed {seed}: {t:?}");
        assert_eq!(t.live_after, 0, "seed {seed}: every slot released: {t:?}");
        assert!(t.cancelled > 0 && t.completed > 150, "seed {seed}: {t:?}");
        // One refresh per expiry of the 1 s token (five when the pacing
        // holds; a loaded machine stretches the run), with room for the
        // ones a transient failure repeats: no refresh storm.
        let expiries = t.elapsed.as_secs_f64().ceil() as u64;
        assert!(t.refresh_calls <= 2 * expiries + 2, "seed {seed}: {t:?}");
    }
}

/// An async refresher that panics inside the exchange: the panic reaches
/// the one request that applies the outcome, the refresh counts as a
/// transient failure, and the next request refreshes again.
#[test]
fn a_refresher_panicking_in_the_exchange_leaves_the_session_usable() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    let server = Arc::new(opaque());
    let calls = Arc::new(AtomicU32::new(0));
    let (srv, n) = (server.clone(), calls.clone());
    let auth = refresh_machine_reqwest::RefreshMiddleware::builder(common::Tokio)
        .allow_origin(&server.origin())
        .unwrap()
        .refresh_with_async(move |_old| {
            let (srv, n) = (srv.clone(), n.clone());
            async move {
                tokio::task::yield_now().await;
                assert!(n.fetch_add(1, Ordering::SeqCst) != 0, "refresher bug");
                refresh_machine_reqwest::RefreshReply::Tokens(common::minted(&srv))
            }
        })
        .build();
    let client = common::expired_client(&auth, &server);
    let url = server.url("/api/me");
    let (c, u) = (client.clone(), url.clone());
    let task = runtime().spawn(async move { c.get(u).send().await.is_ok() });
    let joined = runtime().block_on(task);
    assert!(
        joined.unwrap_err().is_panic(),
        "the panic reached its caller"
    );
    assert_eq!(auth.session().snapshot().live, 0, "its slot was released");
    let status = runtime()
        .block_on(client.get(url).send())
        .map(|r| r.status().as_u16());
    assert_eq!(status.ok(), Some(200));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
