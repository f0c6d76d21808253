//! Several OS processes sharing one Django OAuth Toolkit credential through a
//! store (a token file, or Redis): one refresh grant per expiry across all of
//! them, as the server counts it.
//!
//! Each worker is the calling test binary again, running its ignored
//! `worker` test (which calls [`worker_main`]), configured by one
//! environment variable and driven over its stdin and stdout: `go` fires a
//! burst of concurrent requests, answered `WORKER <ok> <failed>`. Half the
//! workers use the ureq client, half the reqwest middleware. Every worker is
//! stopped by its PID.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use refresh_machine::Backoff;
use refresh_machine_redis::{redis, RedisCoordinator};
use refresh_machine_test_server::{together, RedisServer, WorkerProcess};

use crate::{Config, Counts, Deployment, CLIENT_ID, PASSWORD, USERNAME};

/// The environment variable that makes the `worker` test a worker.
pub const WORKER_VAR: &str = "REFRESH_MACHINE_INTEROP_WORKER";

/// Processes sharing the credential.
pub const PROCESSES: usize = 4;
/// Concurrent requests per process and expiry.
pub const BURST: usize = 50;
/// Expiries per run.
pub const EXPIRIES: usize = 10;

/// Where the processes share the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A token file and its lock file (`FileCoordinator`).
    File,
    /// A `redis-server` of the test's own (`RedisCoordinator`).
    Redis,
}

/// A running store.
enum Store {
    File(tempfile::TempDir),
    Redis(RedisServer),
}

impl Store {
    fn start(kind: StoreKind) -> Store {
        match kind {
            StoreKind::File => Store::File(tempfile::tempdir().expect("a scratch folder")),
            StoreKind::Redis => Store::Redis(
                RedisServer::start().expect("redis-server (apt-get install redis-server)"),
            ),
        }
    }

    /// `file:<path>` or `redis:<url>`, as a worker reads it.
    fn location(&self) -> String {
        match self {
            Store::File(dir) => format!("file:{}", dir.path().join("tokens.json").display()),
            Store::Redis(server) => format!("redis:{}", server.url()),
        }
    }
}

/// The store at `location` as a coordinator.
fn coordinator(location: &str) -> Box<dyn refresh_machine_ureq::Coordinator> {
    if let Some(path) = location.strip_prefix("file:") {
        Box::new(refresh_machine_ureq::FileCoordinator::new(Path::new(path)))
    } else if let Some(url) = location.strip_prefix("redis:") {
        let client = redis::Client::open(url).expect("a Redis URL");
        Box::new(RedisCoordinator::new(client, "interop"))
    } else {
        panic!("unknown store {location}")
    }
}

/// What a worker process does, as passed to it.
#[derive(Debug, Clone)]
struct Spec {
    /// `ureq`, `reqwest`, or `hang` (ureq, whose refresh takes the lease,
    /// says `LEASED`, and hangs there until killed).
    client: String,
    store: String,
    token_url: String,
    api_origin: String,
    /// Refresh deadline in milliseconds (the lease lives 10 s longer).
    refresh_timeout_ms: u64,
    /// Refresh attempts before a request fails `RefreshUnavailable`.
    attempts: u8,
}

impl Spec {
    fn encode(&self) -> String {
        [
            self.client.as_str(),
            &self.store,
            &self.token_url,
            &self.api_origin,
            &self.refresh_timeout_ms.to_string(),
            &self.attempts.to_string(),
        ]
        .join("|")
    }

    fn decode(s: &str) -> Spec {
        let parts: Vec<&str> = s.split('|').collect();
        let [client, store, token_url, api_origin, timeout, attempts] = parts[..] else {
            panic!("bad worker specification: {s}");
        };
        Spec {
            client: client.to_owned(),
            store: store.to_owned(),
            token_url: token_url.to_owned(),
            api_origin: api_origin.to_owned(),
            refresh_timeout_ms: timeout.parse().expect("milliseconds"),
            attempts: attempts.parse().expect("attempts"),
        }
    }

    fn config(&self) -> Config {
        let mut config = Config::DEFAULT;
        config.refresh_timeout = Duration::from_millis(self.refresh_timeout_ms);
        config.max_refresh_attempts = self.attempts;
        config.refresh_backoff = Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(1),
        };
        config
    }
}

/// How the requests of a burst ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Answered 200.
    pub ok: usize,
    /// Failed `RefreshUnavailable` (typed, transient: the session is kept).
    pub unavailable: usize,
    /// Failed otherwise.
    pub other: usize,
}

impl Tally {
    /// `n` requests, all answered 200.
    pub fn all_ok(n: usize) -> Tally {
        Tally {
            ok: n,
            ..Tally::default()
        }
    }

    fn count(&mut self, outcome: Result<u16, bool>, what: &dyn std::fmt::Debug) {
        match outcome {
            Ok(200) => self.ok += 1,
            Err(true) => self.unavailable += 1,
            _ => {
                if self.other == 0 {
                    eprintln!("worker {}: a request ended {what:?}", std::process::id());
                }
                self.other += 1;
            }
        }
    }
}

/// A burst of `n` concurrent GETs of `url`.
type Burst = Box<dyn Fn(&str, usize) -> Tally>;

fn ureq_burst(client: refresh_machine_ureq::Client) -> Burst {
    use refresh_machine_ureq::Error;
    Box::new(move |url, n| {
        let (c, u) = (client.clone(), url.to_owned());
        let results = together(n, move || c.get(&u).map(|r| r.status().as_u16()));
        let mut tally = Tally::default();
        for r in &results {
            let outcome = match r {
                Ok(Ok(status)) => Ok(*status),
                Ok(Err(Error::RefreshUnavailable)) => Err(true),
                _ => Err(false),
            };
            tally.count(outcome, r);
        }
        tally
    })
}

fn reqwest_burst(spec: &Spec) -> Burst {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let auth =
        refresh_machine_reqwest::RefreshMiddleware::builder(refresh_machine_reqwest::TokioTimer)
            .token_endpoint(&spec.token_url, CLIENT_ID)
            .and_then(|b| b.allow_origin(&spec.api_origin))
            .expect("valid URLs")
            .config(spec.config())
            .coordinated_by(coordinator(&spec.store))
            .build();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .build();
    Box::new(move |url, n| {
        runtime.block_on(async {
            let requests: Vec<_> = (0..n)
                .map(|_| {
                    let (client, url) = (client.clone(), url.to_owned());
                    tokio::spawn(async move {
                        let r = client.get(url).send().await?;
                        let status = r.status().as_u16();
                        r.bytes().await?;
                        Ok::<u16, reqwest_middleware::Error>(status)
                    })
                })
                .collect();
            let mut tally = Tally::default();
            for r in requests {
                let r = r.await;
                let outcome = match &r {
                    Ok(Ok(status)) => Ok(*status),
                    Ok(Err(e)) => Err(matches!(
                        refresh_machine_reqwest::error_of(e),
                        Some(refresh_machine_reqwest::Error::RefreshUnavailable)
                    )),
                    Err(_) => Err(false),
                };
                tally.count(outcome, &r);
            }
            tally
        })
    })
}

/// The body of a worker process: build the client on the shared store, then
/// answer every `go` on stdin with a burst. Returns at once in a process
/// that is not a worker (`WORKER_VAR` unset).
pub fn worker_main() {
    let Ok(spec) = std::env::var(WORKER_VAR) else {
        return;
    };
    let spec = Spec::decode(&spec);
    let ureq_builder = || {
        refresh_machine_ureq::Client::builder()
            .token_endpoint(&spec.token_url, CLIENT_ID)
            .and_then(|b| b.allow_origin(&spec.api_origin))
            .expect("valid URLs")
            .config(spec.config())
            .coordinated_by(coordinator(&spec.store))
    };
    let burst = match spec.client.as_str() {
        "ureq" => ureq_burst(ureq_builder().build()),
        "reqwest" => reqwest_burst(&spec),
        "hang" => ureq_burst(
            ureq_builder()
                .refresh_with(|_| {
                    println!("WORKER LEASED");
                    std::io::stdout().flush().expect("stdout");
                    std::thread::sleep(Duration::from_secs(600));
                    refresh_machine_ureq::RefreshReply::Transient { retry_after: None }
                })
                .build(),
        ),
        other => panic!("unknown worker client {other}"),
    };
    let url = format!("{}/api/me", spec.api_origin);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Some(n) = line.strip_prefix("go ") else {
            break;
        };
        let t = burst(&url, n.parse().expect("a burst size"));
        println!("WORKER {} {} {}", t.ok, t.unavailable, t.other);
        std::io::stdout().flush().expect("stdout");
    }
}

/// A worker process.
struct Worker(WorkerProcess);

impl Worker {
    fn start(spec: &Spec) -> Worker {
        let mut command = Command::new(std::env::current_exe().expect("this test binary"));
        command
            .args([
                "worker",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WORKER_VAR, spec.encode())
            .stderr(Stdio::inherit());
        Worker(WorkerProcess::start(command, "WORKER ").expect("start a worker process"))
    }

    fn go(&mut self, n: usize) {
        self.0.send(&format!("go {n}")).expect("the worker reads");
    }

    /// How its last burst ended.
    fn done(&self, within: Duration) -> Tally {
        let line = self.0.answer(within).expect("the worker answered in time");
        let n: Vec<usize> = line
            .split(' ')
            .map(|x| x.parse().expect("counts"))
            .collect();
        let [ok, unavailable, other] = n[..] else {
            panic!("a worker said {line:?}");
        };
        Tally {
            ok,
            unavailable,
            other,
        }
    }
}

/// A deployment, a store, and one login published to the store.
fn logged_in(kind: StoreKind) -> (Deployment, Store) {
    let d = Deployment::start(3600);
    let store = Store::start(kind);
    let first = refresh_machine_ureq::Client::builder()
        .token_endpoint(&d.token_url(), CLIENT_ID)
        .expect("valid URL")
        .coordinated_by(coordinator(&store.location()))
        .build();
    first
        .login_with_password(USERNAME, PASSWORD)
        .expect("password grant at Django OAuth Toolkit");
    (d, store)
}

fn spec(client: &str, d: &Deployment, store: &Store) -> Spec {
    Spec {
        client: client.to_owned(),
        store: store.location(),
        token_url: d.token_url(),
        api_origin: d.api.origin(),
        refresh_timeout_ms: 30_000,
        attempts: 3,
    }
}

/// What a multi-process run did.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// How the requests ended, over all processes and expiries.
    pub tally: Tally,
    /// The server's counts.
    pub counts: Counts,
}

/// Every worker fires a burst of [`BURST`]; their tallies summed.
fn burst_all(workers: &mut [Worker]) -> Tally {
    for w in workers.iter_mut() {
        w.go(BURST);
    }
    let mut sum = Tally::default();
    for w in workers.iter() {
        let t = w.done(Duration::from_secs(120));
        sum.ok += t.ok;
        sum.unavailable += t.unavailable;
        sum.other += t.other;
    }
    sum
}

fn workers(d: &Deployment, store: &Store) -> Vec<Worker> {
    (0..PROCESSES)
        .map(|i| Worker::start(&spec(["ureq", "reqwest"][i % 2], d, store)))
        .collect()
}

/// [`PROCESSES`] workers (ureq and reqwest alternately) on one store, each
/// meeting [`EXPIRIES`] expiries with a burst of [`BURST`] requests: exactly
/// one refresh grant per expiry at the server, none presented twice, one
/// login, every request answered 200.
pub fn processes_make_one_refresh_per_expiry(kind: StoreKind) -> Run {
    let (d, store) = logged_in(kind);
    let mut workers = workers(&d, &store);
    let mut tally = Tally::default();
    for round in 1..=EXPIRIES {
        d.expire_access_tokens();
        let t = burst_all(&mut workers);
        tally.ok += t.ok;
        tally.unavailable += t.unavailable;
        tally.other += t.other;
        let c = d.counts();
        assert_eq!(
            c.refresh_grants, round as u32,
            "{kind:?}, expiry {round}: one refresh grant per expiry ({t:?}): {c:?}"
        );
    }
    let run = Run {
        tally,
        counts: d.counts(),
    };
    assert_eq!(
        run.tally,
        Tally::all_ok(PROCESSES * BURST * EXPIRIES),
        "{kind:?}: {run:?}"
    );
    let c = run.counts;
    assert_eq!(c.refresh_ok, EXPIRIES as u32, "{kind:?}: {c:?}");
    assert_eq!(
        c.invalid_grants, 0,
        "{kind:?}: no refresh token presented twice"
    );
    assert_eq!(c.logins, 1, "{kind:?}: the session was never lost");
    run
}

/// The lease holder is SIGKILLed after taking the lease and before sending
/// the grant. The other processes (refresh deadline 2 s, so a lease of 12 s,
/// and enough attempts to outlast it) finish their bursts once the lease is
/// free again, a file lock at the holder's death, a Redis lease at its
/// time-to-live: one refresh grant, no reuse, no failure. Returns how long
/// after the holder took the lease the others were done.
pub fn a_killed_lease_holder_is_taken_over(kind: StoreKind) -> Duration {
    let (d, store) = logged_in(kind);
    d.expire_access_tokens();
    // Every process with a 2 s refresh deadline: a 12 s lease.
    let short = |client: &str| Spec {
        refresh_timeout_ms: 2_000,
        attempts: 12,
        ..spec(client, &d, &store)
    };
    let mut holder = Worker::start(&short("hang"));
    holder.go(1);
    let said = holder
        .0
        .answer(Duration::from_secs(60))
        .expect("the holder took the lease");
    assert_eq!(said, "LEASED");
    let leased = Instant::now();
    let mut others: Vec<Worker> = (0..PROCESSES - 1)
        .map(|i| Worker::start(&short(["ureq", "reqwest"][i % 2])))
        .collect();
    for w in &mut others {
        w.go(BURST);
    }
    holder.0.kill().expect("kill the holder by its PID");
    for w in &others {
        assert_eq!(
            w.done(Duration::from_secs(120)),
            Tally::all_ok(BURST),
            "{kind:?}"
        );
    }
    let took = leased.elapsed();
    let c = d.counts();
    assert_eq!(
        (c.refresh_grants, c.invalid_grants, c.logins),
        (1, 0, 1),
        "{kind:?}: {c:?}"
    );
    took
}

/// Redis is stopped (SIGKILL, by its PID) between two expiries, then
/// started again with its data. While it is down, every request that meets
/// the expiry fails `RefreshUnavailable` (typed, transient), no grant is
/// sent and every process keeps its session; once it is back, the next
/// burst costs one refresh grant for all the processes, and no refresh
/// token is ever presented twice.
pub fn a_redis_outage_is_transient_across_processes() {
    let (d, mut store) = logged_in(StoreKind::Redis);
    let mut workers = workers(&d, &store);
    d.expire_access_tokens();
    assert_eq!(burst_all(&mut workers), Tally::all_ok(PROCESSES * BURST));
    assert_eq!(d.counts().refresh_grants, 1);

    let Store::Redis(server) = store else {
        unreachable!("a Redis store")
    };
    let (port, data) = server.stop();
    d.expire_access_tokens();
    let down = burst_all(&mut workers);
    assert_eq!(
        down,
        Tally {
            unavailable: PROCESSES * BURST,
            ..Tally::default()
        },
        "every request failed typed and transient while Redis was down"
    );
    assert_eq!(
        d.counts().refresh_grants,
        1,
        "nothing presented without the lease"
    );

    store = Store::Redis(RedisServer::start_on(port, data).expect("redis-server again"));
    assert_eq!(burst_all(&mut workers), Tally::all_ok(PROCESSES * BURST));
    let c = d.counts();
    assert_eq!(
        (c.refresh_grants, c.refresh_ok, c.invalid_grants, c.logins),
        (2, 2, 0, 1),
        "one grant for the recovery, no reuse, never logged out: {c:?}"
    );
    drop(store);
}
