//! Part 1 of BENCHMARKS.md: What the core costs per request (criterion), and its allocations.

use std::hint::black_box;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use criterion::{BatchSize, Criterion};
use refresh_machine::{
    Action, Config, Instant, RefreshId, RefreshMachine, RefreshOutcome, RequestId, RequestSpec,
    Response, TokenSet,
};
use refresh_machine_driver::{Hooks, Session, Step, TokenPair};

/// Requests in the burst benchmark.
pub(crate) const BURST: usize = 1000;

type Firmware = RefreshMachine<1, 1024>;
type Desktop =
    RefreshMachine<{ refresh_machine_driver::CAPACITY }, { refresh_machine_driver::TOKEN_CAP }>;
type BurstMachine = RefreshMachine<1024, 2048>;

/// One request on a valid token: start, Send, 200, Deliver.
fn hot_path<const N: usize, const T: usize>(m: &mut RefreshMachine<N, T>, now: Instant) {
    let id = m
        .start_request(now, RequestSpec::IDEMPOTENT)
        .expect("a free slot");
    let mut sent = None;
    while let Some(a) = m.poll_action() {
        if let Action::Send { id, token, .. } = a {
            black_box(token.expose_secret());
            sent = Some(id);
        }
    }
    assert_eq!(sent, Some(id), "a valid token is sent at once");
    m.handle_response(now, id, Response::status(200))
        .expect("known request");
    let mut delivered = false;
    while let Some(a) = m.poll_action() {
        delivered |= matches!(a, Action::Deliver { .. });
    }
    assert!(delivered);
}

fn logged_in<const N: usize, const T: usize>() -> RefreshMachine<N, T> {
    let mut m = RefreshMachine::new(Config::DEFAULT, 7);
    m.login(
        Instant::ZERO,
        TokenSet::new("access-token-0123456789abcdef")
            .with_refresh_token("refresh-token-0123456789abcdef")
            .with_expires_in(Duration::from_secs(3600)),
    )
    .expect("tokens fit");
    m
}

/// Drain actions: sends and retries into `sent`, the refresh id, deliveries counted.
fn drain(
    m: &mut BurstMachine,
    sent: &mut Vec<RequestId>,
    refresh: &mut Option<RefreshId>,
) -> (usize, usize) {
    let (mut refreshes, mut delivered) = (0, 0);
    while let Some(a) = m.poll_action() {
        match a {
            Action::Send { id, .. } => sent.push(id),
            Action::Refresh { id, .. } => {
                *refresh = Some(id);
                refreshes += 1;
            }
            Action::Deliver { .. } => delivered += 1,
            _ => {}
        }
    }
    (refreshes, delivered)
}

/// Answer every request in `sent` with `status`, then forget them.
fn answer_all(m: &mut BurstMachine, sent: &mut Vec<RequestId>, status: u16) {
    for &id in sent.iter() {
        m.handle_response(Instant::ZERO, id, Response::status(status))
            .expect("known request");
    }
    sent.clear();
}

/// 1,000 requests sent with a token the server has revoked: 1,000 401s, one
/// refresh, 1,000 retries, 1,000 deliveries. Returns (refreshes, delivered).
/// `sent` must have capacity for `BURST` ids (so nothing allocates).
fn expiry_burst(m: &mut BurstMachine, sent: &mut Vec<RequestId>) -> (usize, usize) {
    let now = Instant::ZERO;
    let mut refresh = None;
    sent.clear();
    for _ in 0..BURST {
        m.start_request(now, RequestSpec::IDEMPOTENT)
            .expect("a free slot");
    }
    let (mut refreshes, mut delivered) = drain(m, sent, &mut refresh);
    answer_all(m, sent, 401);
    let (r, d) = drain(m, sent, &mut refresh);
    (refreshes, delivered) = (refreshes + r, delivered + d);
    let rid = refresh.take().expect("one refresh for the burst");
    m.handle_refresh_outcome(
        now,
        rid,
        RefreshOutcome::Success(
            TokenSet::new("access-token-fedcba9876543210")
                .with_refresh_token("refresh-token-fedcba9876543210")
                .with_expires_in(Duration::from_secs(3600)),
        ),
    )
    .expect("expected outcome");
    let (r, d) = drain(m, sent, &mut refresh);
    (refreshes, delivered) = (refreshes + r, delivered + d);
    answer_all(m, sent, 200);
    let (r, d) = drain(m, sent, &mut refresh);
    (refreshes + r, delivered + d)
}

/// The same request through the std session the ureq and reqwest adapters
/// share (lock, clock, owned token copy, notices).
fn session_hot_path(s: &Session, headers: &http::HeaderMap) {
    let mut h = s.start(RequestSpec::IDEMPOTENT).expect("a free slot");
    match h.next_step() {
        Step::Send { token, .. } => {
            black_box(token.expose());
        }
        other => panic!("expected a send, got {other:?}"),
    }
    h.http_response(http::StatusCode::OK, headers, true);
    assert!(matches!(h.next_step(), Step::Done(Ok(()))));
}

/// What a hand-written interceptor does per request instead: lock the shared
/// token pair and copy the access token out.
fn naive_bookkeeping(tokens: &Mutex<(String, String)>) {
    let access = tokens.lock().unwrap_or_else(|e| e.into_inner()).0.clone();
    black_box(access);
}

/// Allocations made by one hot-path request and by one whole burst, and the
/// burst's refresh and delivery counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreChecks {
    /// Allocations per request on the hot path (core).
    pub(crate) hot_path_allocations: u64,
    /// Allocations in one 1,000-request expiry burst (core).
    pub(crate) burst_allocations: u64,
    /// Refreshes the burst asked for.
    pub(crate) burst_refreshes: usize,
    /// Requests delivered by the burst.
    pub(crate) burst_delivered: usize,
    /// Allocations per request through the std session.
    pub(crate) session_allocations: u64,
}

/// Count allocations (outside criterion, same code).
pub(crate) fn checks() -> CoreChecks {
    let mut m: Box<Firmware> = Box::new(logged_in());
    let mut hot = allocation_counter::measure(|| {
        for _ in 0..100 {
            hot_path(&mut m, Instant::ZERO);
        }
    })
    .count_total;
    let mut d: Box<Desktop> = Box::new(logged_in());
    hot += allocation_counter::measure(|| {
        for _ in 0..100 {
            hot_path(&mut d, Instant::ZERO);
        }
    })
    .count_total;
    let mut b: Box<BurstMachine> = Box::new(logged_in());
    let mut sent = Vec::with_capacity(BURST);
    let mut result = (0, 0);
    let burst = allocation_counter::measure(|| {
        result = expiry_burst(&mut b, &mut sent);
    })
    .count_total;
    let s = logged_in_session();
    let headers = http::HeaderMap::new();
    session_hot_path(&s, &headers);
    let session = allocation_counter::measure(|| {
        for _ in 0..100 {
            session_hot_path(&s, &headers);
        }
    })
    .count_total;
    CoreChecks {
        hot_path_allocations: hot / 200,
        burst_allocations: burst,
        burst_refreshes: result.0,
        burst_delivered: result.1,
        session_allocations: session / 100,
    }
}

fn logged_in_session() -> Session {
    let s = Session::new(Config::DEFAULT, 7, Hooks::default());
    s.login(&TokenPair {
        access_token: "access-token-0123456789abcdef".into(),
        refresh_token: Some("refresh-token-0123456789abcdef".into()),
        expires_at: Some(std::time::SystemTime::now() + Duration::from_secs(3600)),
        refresh_expires_at: None,
    })
    .expect("tokens fit");
    s
}

/// Names of the criterion benchmarks, as (group, function, what it is).
pub(crate) const BENCHES: [(&str, &str, &str); 5] = [
    (
        "core",
        "hot_path_1x1024",
        "core, `RefreshMachine<1, 1024>` (firmware size): valid token, send, 200, deliver",
    ),
    (
        "core",
        "hot_path_256x4096",
        "core, `RefreshMachine<256, 4096>` (the std session's size): same request",
    ),
    (
        "core",
        "expiry_burst_1000",
        "core, `RefreshMachine<1024, 2048>`: 1,000 requests, 1,000 401s, one refresh, 1,000 retries and deliveries (time per request)",
    ),
    (
        "session",
        "hot_path",
        "std session shared by the ureq and reqwest adapters (lock, clock, token copy): same request",
    ),
    (
        "naive",
        "lock_and_clone_token",
        "peer: a hand-written interceptor's per-request bookkeeping (lock the token pair, clone the access token)",
    ),
];

/// Run the criterion benchmarks, results under `home` (CRITERION_HOME).
pub(crate) fn run(quick: bool) {
    let (warm, measure, samples) = if quick {
        (Duration::from_millis(200), Duration::from_millis(500), 10)
    } else {
        (Duration::from_secs(1), Duration::from_secs(4), 60)
    };
    let mut c = Criterion::default()
        .warm_up_time(warm)
        .measurement_time(measure)
        .sample_size(samples)
        .configure_from_args();
    {
        let mut g = c.benchmark_group("core");
        let mut small: Box<Firmware> = Box::new(logged_in());
        g.bench_function("hot_path_1x1024", |b| {
            b.iter(|| hot_path(&mut small, Instant::ZERO))
        });
        let mut desk: Box<Desktop> = Box::new(logged_in());
        g.bench_function("hot_path_256x4096", |b| {
            b.iter(|| hot_path(&mut desk, Instant::ZERO))
        });
        let mut sent = Vec::with_capacity(BURST);
        g.bench_function("expiry_burst_1000", |b| {
            b.iter_batched_ref(
                || Box::new(logged_in::<1024, 2048>()),
                |m| black_box(expiry_burst(m, &mut sent)),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("session");
        let s = logged_in_session();
        let headers = http::HeaderMap::new();
        g.bench_function("hot_path", |b| b.iter(|| session_hot_path(&s, &headers)));
        g.finish();
    }
    {
        let mut g = c.benchmark_group("naive");
        let tokens = Mutex::new((
            "access-token-0123456789abcdef".to_owned(),
            "refresh-token-0123456789abcdef".to_owned(),
        ));
        g.bench_function("lock_and_clone_token", |b| {
            b.iter(|| naive_bookkeeping(&tokens))
        });
        g.finish();
    }
    c.final_summary();
}

/// Criterion's mean and median estimate for one benchmark, in nanoseconds.
pub(crate) fn estimate(home: &Path, group: &str, function: &str) -> Option<(f64, f64)> {
    let path = home.join(group).join(function).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let point = |k: &str| v.get(k)?.get("point_estimate")?.as_f64();
    Some((point("mean")?, point("median")?))
}
