//! K OS processes sharing one credential, for the demo's `--processes` and
//! the bench's multi-process section: each process is the calling program
//! again (started with [`WORKER_FLAG`]), a ureq client on the shared store,
//! driven over its stdin and stdout, and stopped by its PID.
//!
//! The calling program's `main` first gives [`worker_main`] its chance: in
//! a worker it runs the worker and returns `true`.

use std::io::{BufRead, Write};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use refresh_machine_redis::{redis, RedisCoordinator};
use refresh_machine_test_server::{AuthServer, RedisServer, WorkerProcess};
use refresh_machine_ureq::event_listener::EventListener;
use refresh_machine_ureq::{
    BoxFuture, Client, Coordinator, FileCoordinator, Lease, StoreUnavailable, Stored, TokenPair,
};

/// The argument that makes the program a worker (followed by its spec).
pub const WORKER_FLAG: &str = "--fleet-worker";

/// The client ID the loopback test server knows.
const CLIENT_ID: &str = "demo-client";

/// How the processes share the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Each process on its own copy of the pair: single-flight within a
    /// process only (what you get without a coordinator).
    PerProcess,
    /// A token file and its lock ([`FileCoordinator`]).
    File,
    /// A `redis-server` started for the run ([`RedisCoordinator`]).
    Redis,
}

impl Sharing {
    /// `own`, `file` or `redis`.
    pub fn name(self) -> &'static str {
        match self {
            Sharing::PerProcess => "own",
            Sharing::File => "file",
            Sharing::Redis => "redis",
        }
    }
}

/// Store operations of one burst, summed over the processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOps {
    /// Reads of the generation and pair.
    pub reads: u64,
    /// Attempts to take the lease.
    pub leases: u64,
    /// Publishes, logins and logouts written.
    pub writes: u64,
    /// Releases of the lease.
    pub releases: u64,
}

impl StoreOps {
    /// All operations.
    pub fn total(&self) -> u64 {
        self.reads + self.leases + self.writes + self.releases
    }

    fn add(&mut self, other: StoreOps) {
        self.reads += other.reads;
        self.leases += other.leases;
        self.writes += other.writes;
        self.releases += other.releases;
    }
}

/// One burst of every process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Burst {
    /// Requests answered 200.
    pub ok: usize,
    /// Requests that failed.
    pub failed: usize,
    /// Processes whose session was lost (they logged in again).
    pub lost: usize,
    /// Store operations during the burst.
    pub ops: StoreOps,
    /// From the first `go` to the last process's answer.
    pub took: Duration,
}

/// K processes on one store.
pub struct Fleet {
    workers: Vec<WorkerProcess>,
    _store: Store,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("processes", &self.workers.len())
            .finish_non_exhaustive()
    }
}

enum Store {
    Folder(tempfile::TempDir),
    Redis(RedisServer),
}

impl Store {
    fn location(&self) -> String {
        match self {
            Store::Folder(dir) => dir.path().join("tokens.json").display().to_string(),
            Store::Redis(server) => server.url(),
        }
    }
}

fn coordinator(sharing: Sharing, location: &str) -> Box<dyn Coordinator> {
    match sharing {
        Sharing::Redis => Box::new(RedisCoordinator::new(
            redis::Client::open(location).expect("a Redis URL"),
            "fleet",
        )),
        Sharing::File | Sharing::PerProcess => Box::new(FileCoordinator::new(location)),
    }
}

impl Fleet {
    /// Log in once against `server` (its pair in the store; for
    /// [`Sharing::PerProcess`], in a file each process copies), then start
    /// `processes` workers, each firing `requests` concurrent GETs of
    /// `/api/me` per burst. [`Sharing::Redis`] needs `redis-server` on the
    /// PATH.
    pub fn start(
        server: &AuthServer,
        sharing: Sharing,
        processes: usize,
        requests: usize,
    ) -> std::io::Result<Fleet> {
        let store = match sharing {
            Sharing::Redis => Store::Redis(RedisServer::start()?),
            _ => Store::Folder(tempfile::tempdir()?),
        };
        let location = store.location();
        let first = Client::builder()
            .token_endpoint(&server.token_url(), CLIENT_ID)
            .map_err(std::io::Error::other)?
            .coordinated_by(coordinator(sharing, &location))
            .build();
        first
            .login_with_password("alice", "wonderland")
            .map_err(|e| std::io::Error::other(format!("login: {e}")))?;
        let spec = [
            sharing.name(),
            &server.token_url(),
            &server.origin(),
            &location,
            &requests.to_string(),
        ]
        .join("|");
        let exe = std::env::current_exe()?;
        let workers = (0..processes)
            .map(|_| {
                let mut command = Command::new(&exe);
                command.args([WORKER_FLAG, &spec]);
                WorkerProcess::start(command, "FLEET ")
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Fleet {
            workers,
            _store: store,
        })
    }

    /// Every process fires its burst at once; their totals.
    pub fn burst(&mut self) -> std::io::Result<Burst> {
        let started = Instant::now();
        for w in &mut self.workers {
            w.send("go")?;
        }
        let mut burst = Burst::default();
        for w in &self.workers {
            let line = w
                .answer(Duration::from_secs(120))
                .ok_or_else(|| std::io::Error::other("a worker did not answer within 120 s"))?;
            let n: Vec<u64> = line.split(' ').filter_map(|x| x.parse().ok()).collect();
            let [ok, failed, lost, reads, leases, writes, releases] = n[..] else {
                return Err(std::io::Error::other(format!("a worker said {line:?}")));
            };
            burst.ok += ok as usize;
            burst.failed += failed as usize;
            burst.lost += lost as usize;
            burst.ops.add(StoreOps {
                reads,
                leases,
                writes,
                releases,
            });
        }
        burst.took = started.elapsed();
        Ok(burst)
    }
}

/// In a worker process (started with [`WORKER_FLAG`]), run the worker and
/// return `true`; otherwise return `false` at once.
pub fn worker_main() -> bool {
    let Some(spec) = std::env::args().skip_while(|a| a != WORKER_FLAG).nth(1) else {
        return false;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [sharing, token_url, origin, location, requests] = parts[..] else {
        eprintln!("fleet: bad worker specification");
        std::process::exit(2);
    };
    let requests: usize = requests.parse().unwrap_or(1);
    let builder = Client::builder()
        .token_endpoint(token_url, CLIENT_ID)
        .and_then(|b| b.allow_origin(origin))
        .expect("valid URLs")
        .timeout(Duration::from_secs(10));
    let ops = Arc::new(Counts::default());
    let client = match sharing {
        "file" | "redis" => {
            let sharing = if sharing == "file" {
                Sharing::File
            } else {
                Sharing::Redis
            };
            builder
                .coordinated_by(Counted {
                    inner: coordinator(sharing, location),
                    ops: Arc::clone(&ops),
                })
                .build()
        }
        _ => {
            // Its own copy of the shared pair: single-flight in this process only.
            let client = builder.build();
            let stored: Stored = std::fs::read(location)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if let Some(tokens) = stored.tokens {
                let _ = client.set_tokens(&tokens);
            }
            client
        }
    };
    // The build read the store once (to start from its pair): not a
    // request's doing.
    ops.take();
    let url = format!("{origin}/api/me");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if line != "go" {
            break;
        }
        let (c, u) = (client.clone(), url.clone());
        let (ok, failed) = together(requests, move || c.get(&u).is_ok_and(|r| r.status() == 200));
        let lost = client.session().tokens().is_none();
        if lost {
            // Log in again to go on (the user would have to).
            let _ = client.login_with_password("alice", "wonderland");
        }
        let o = ops.take();
        println!(
            "FLEET {ok} {failed} {} {} {} {} {}",
            u8::from(lost),
            o.reads,
            o.leases,
            o.writes,
            o.releases
        );
        let _ = std::io::stdout().flush();
    }
    true
}

/// `n` threads released together, each running `f`: (true, false) counts
/// (a thread that panicked counts as false).
pub fn together<F>(n: usize, f: F) -> (usize, usize)
where
    F: Fn() -> bool + Send + Sync + 'static,
{
    let results = refresh_machine_test_server::together(n, f);
    let ok = results.iter().filter(|r| matches!(r, Ok(true))).count();
    (ok, n - ok)
}

/// Operation counts of one process, taken (and reset) per burst.
#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    leases: AtomicU64,
    writes: AtomicU64,
    releases: AtomicU64,
}

impl Counts {
    fn take(&self) -> StoreOps {
        StoreOps {
            reads: self.reads.swap(0, Ordering::Relaxed),
            leases: self.leases.swap(0, Ordering::Relaxed),
            writes: self.writes.swap(0, Ordering::Relaxed),
            releases: self.releases.swap(0, Ordering::Relaxed),
        }
    }
}

/// A store that counts the operations asked of it.
struct Counted {
    inner: Box<dyn Coordinator>,
    ops: Arc<Counts>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Coordinator for Counted {
    fn read(&self) -> BoxFuture<'_, Result<Stored, StoreUnavailable>> {
        bump(&self.ops.reads);
        self.inner.read()
    }

    fn take_lease(
        &self,
        owner: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Lease, StoreUnavailable>> {
        bump(&self.ops.leases);
        self.inner.take_lease(owner, ttl)
    }

    fn publish<'a>(
        &'a self,
        owner: u64,
        expected: u64,
        tokens: &'a TokenPair,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        bump(&self.ops.writes);
        self.inner.publish(owner, expected, tokens)
    }

    fn replace<'a>(
        &'a self,
        tokens: Option<&'a TokenPair>,
    ) -> BoxFuture<'a, Result<u64, StoreUnavailable>> {
        bump(&self.ops.writes);
        self.inner.replace(tokens)
    }

    fn release(&self, owner: u64) -> BoxFuture<'_, ()> {
        bump(&self.ops.releases);
        self.inner.release(owner)
    }

    fn recheck(&self) -> Duration {
        self.inner.recheck()
    }

    fn changed(&self) -> Option<EventListener> {
        self.inner.changed()
    }
}
