//! Several OS processes sharing one credential through a token file
//! (`FileCoordinator`): one refresh per expiry across all of them. Each
//! worker is this test binary again, running the ignored `worker` test,
//! driven over its stdin and stdout; every worker is stopped by its PID.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use refresh_machine_test_server::{together, AuthServer, ServerOptions, WorkerProcess};
use refresh_machine_ureq::{Client, FileCoordinator};

/// Set for a worker: `coordinated|token_url|origin|token file|burst`.
const WORKER: &str = "REFRESH_MACHINE_WORKER";
const PROCESSES: usize = 4;
const BURST: usize = 50;
const EXPIRIES: usize = 10;

/// A worker process (started by the tests below, not by itself): builds
/// its client on the shared token file, then for every `go` on stdin fires
/// a burst of concurrent requests and prints `WORKER <ok> <failed>`.
#[test]
#[ignore = "a worker process, started by the multi-process tests"]
fn worker() {
    let Ok(config) = std::env::var(WORKER) else {
        return;
    };
    let parts: Vec<&str> = config.split('|').collect();
    let [coordinated, token_url, origin, file, burst] = parts[..] else {
        panic!("bad worker configuration: {config}");
    };
    let burst: usize = burst.parse().unwrap();
    let builder = Client::builder()
        .token_endpoint(token_url, "demo-client")
        .unwrap()
        .allow_origin(origin)
        .unwrap()
        .timeout(Duration::from_secs(10));
    let client = if coordinated == "hang" {
        // Takes the lease, says so, then hangs before sending the grant
        // (killed there by the test).
        builder
            .coordinated_by(FileCoordinator::new(file))
            .refresh_with(|_| {
                println!("WORKER LEASED");
                std::io::stdout().flush().unwrap();
                std::thread::sleep(Duration::from_secs(600));
                refresh_machine_ureq::RefreshReply::Transient { retry_after: None }
            })
            .build()
    } else if coordinated == "1" {
        builder.coordinated_by(FileCoordinator::new(file)).build()
    } else {
        // Each process on its own copy of the shared file: single-flight
        // per process only.
        let stored = std::fs::read(file).unwrap();
        let stored: refresh_machine_ureq::Stored = serde_json::from_slice(&stored).unwrap();
        let client = builder.build();
        client.set_tokens(&stored.tokens.unwrap()).unwrap();
        client
    };
    let url = format!("{origin}/api/me");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        if line != "go" {
            break;
        }
        let (c, u) = (client.clone(), url.clone());
        let results = together(burst, move || c.get(&u).map(|r| r.status().as_u16()));
        let ok = results.iter().filter(|r| matches!(r, Ok(Ok(200)))).count();
        println!("WORKER {ok} {}", burst - ok);
        std::io::stdout().flush().unwrap();
    }
}

struct Worker(WorkerProcess);

impl Worker {
    fn start(config: &str) -> Worker {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "worker",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WORKER, config)
            .stderr(Stdio::inherit());
        Worker(WorkerProcess::start(command, "WORKER ").unwrap())
    }

    fn go(&mut self) {
        self.0.send("go").unwrap();
    }

    /// (ok, failed) of the last burst.
    fn done(&self) -> (usize, usize) {
        let line = self
            .0
            .answer(Duration::from_secs(120))
            .expect("the worker answered in time");
        let mut n = line.split(' ').map(|x| x.parse::<usize>().unwrap());
        (n.next().unwrap(), n.next().unwrap())
    }
}

/// A loopback server, and a token file holding its first login.
fn logged_in_file(server: &AuthServer) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    // One login, published to the shared file.
    let first = Client::builder()
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .coordinated_by(FileCoordinator::new(&file))
        .build();
    first.login_with_password("alice", "wonderland").unwrap();
    (dir, file)
}

fn worker_config(mode: &str, server: &AuthServer, file: &std::path::Path) -> String {
    format!(
        "{mode}|{}|{}|{}|{BURST}",
        server.token_url(),
        server.origin(),
        file.display()
    )
}

/// `PROCESSES` workers on one token file, `EXPIRIES` expiries, a burst of
/// `BURST` requests per worker each time; the server's counters.
fn run(coordinated: bool) -> (refresh_machine_test_server::Counters, usize, usize) {
    let server = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap();
    let (_dir, file) = logged_in_file(&server);
    let config = worker_config(if coordinated { "1" } else { "0" }, &server, &file);
    let mut workers: Vec<Worker> = (0..PROCESSES).map(|_| Worker::start(&config)).collect();
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..EXPIRIES {
        server.revoke_access_tokens();
        for w in &mut workers {
            w.go();
        }
        for w in &workers {
            let (o, f) = w.done();
            ok += o;
            failed += f;
        }
    }
    (server.counters(), ok, failed)
}

#[test]
fn processes_sharing_a_token_file_make_one_refresh_per_expiry() {
    let (k, ok, failed) = run(true);
    println!("coordinated: {ok} ok, {failed} failed, {k:?}");
    assert_eq!((ok, failed), (PROCESSES * BURST * EXPIRIES, 0), "{k:?}");
    assert_eq!(
        k.refresh_calls, EXPIRIES as u64,
        "one refresh per expiry: {k:?}"
    );
    assert_eq!((k.reuse_detections, k.invalid_grants), (0, 0), "{k:?}");
}

/// The problem, measured: the same processes each on their own copy of the
/// file (single-flight per process only) present the same refresh token
/// several times at the first expiry, and the server revokes the family.
#[test]
fn processes_without_coordination_lose_the_session() {
    let (k, ok, failed) = run(false);
    println!("uncoordinated: {ok} ok, {failed} failed, {k:?}");
    assert!(k.reuse_detections >= 1, "{k:?}");
    assert!(failed > 0, "ok {ok}, failed {failed}: {k:?}");
}

/// The lease holder is killed (SIGKILL) after taking the lease and before
/// sending the grant: the OS releases its lock, another process takes the
/// lease over, and the expiry costs one refresh, no reuse, no failure.
#[test]
fn a_lease_holder_killed_before_sending_the_grant_is_taken_over() {
    let server = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap();
    let (_dir, file) = logged_in_file(&server);
    server.revoke_access_tokens();
    let mut holder = Worker::start(&worker_config("hang", &server, &file));
    holder.go();
    let said = holder
        .0
        .answer(Duration::from_secs(60))
        .expect("the holder took the lease");
    assert_eq!(said, "LEASED");
    let config = worker_config("1", &server, &file);
    let mut others: Vec<Worker> = (0..PROCESSES - 1).map(|_| Worker::start(&config)).collect();
    for w in &mut others {
        w.go();
    }
    // The others wait on the lease; the holder dies holding it.
    holder.0.kill().unwrap();
    for w in &others {
        assert_eq!(w.done(), (BURST, 0));
    }
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
}
