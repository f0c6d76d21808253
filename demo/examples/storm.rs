//! The demo: a burst of concurrent requests meets an expired token, round
//! after round, for refresh-machine and for a naive "refresh on every 401"
//! client, each against its own strict OAuth2 server (refresh-token rotation
//! with reuse detection, like production servers).
//!
//! Run: `cargo run --release --example storm [-- --requests N --rounds K]`
//!
//! With `--processes K` (and `--store file`, the default, or `--store
//! redis`), the same storm hits K OS processes that share one credential:
//! each process's own single-flight against one refresh per expiry for all
//! of them (`FileCoordinator`, or `RedisCoordinator` on a `redis-server` the
//! demo starts: it must be on the PATH), side by side, each against its own
//! server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use refresh_machine_demo::fleet::{together, Sharing};
use refresh_machine_test_server::{AuthServer, Counters, ServerOptions};
use refresh_machine_ureq::Client;

struct Args {
    requests: usize,
    rounds: usize,
    ttl: Duration,
    processes: usize,
    store: Sharing,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        requests: 50,
        rounds: 3,
        ttl: Duration::from_millis(1500),
        processes: 1,
        store: Sharing::File,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // Out-of-range values are refused, never silently changed.
        let mut value = |name: &str, range: std::ops::RangeInclusive<u64>| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|v| range.contains(v))
                .ok_or(format!(
                    "{name} needs a number from {} to {}",
                    range.start(),
                    range.end()
                ))
        };
        match flag.as_str() {
            // One thread per request: 1,000 is plenty for a loopback demo.
            "--requests" => args.requests = value("--requests", 1..=1000)? as usize,
            "--rounds" => args.rounds = value("--rounds", 1..=100)? as usize,
            "--ttl-ms" => args.ttl = Duration::from_millis(value("--ttl-ms", 200..=60_000)?),
            "--processes" => args.processes = value("--processes", 1..=16)? as usize,
            "--store" => {
                args.store = match it.next().as_deref() {
                    Some("file") => Sharing::File,
                    Some("redis") => Sharing::Redis,
                    _ => return Err("--store needs `file` or `redis`".into()),
                }
            }
            "-h" | "--help" => {
                println!(
                    "storm [--requests N (50, 1..=1000)] [--rounds K (3, 1..=100)] [--ttl-ms MS (1500, 200..=60000)] [--processes K (1, 1..=16) [--store file|redis]]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(args)
}

/// Totals for one client over all rounds.
#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    sessions_lost: usize,
    wall: Duration,
}

/// What nearly every hand-written interceptor does: on 401, refresh with the
/// refresh token it holds, store the result, retry once.
#[derive(Clone)]
struct NaiveClient {
    agent: ureq::Agent,
    token_url: String,
    client_id: String,
    tokens: Arc<Mutex<(String, String)>>,
}

impl NaiveClient {
    fn login(server: &AuthServer) -> NaiveClient {
        let t = server.login();
        NaiveClient {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
            token_url: server.token_url(),
            client_id: server.options().client_id.clone(),
            tokens: Arc::new(Mutex::new((t.access_token, t.refresh_token))),
        }
    }

    fn relogin(&self, server: &AuthServer) {
        let t = server.login();
        *self.tokens.lock().unwrap() = (t.access_token, t.refresh_token);
    }

    fn get(&self, url: &str) -> bool {
        let access = self.tokens.lock().unwrap().0.clone();
        if self.send(url, &access) == Some(200) {
            return true;
        }
        // 401: refresh (every thread that saw a 401 does this) and retry once.
        let refresh = self.tokens.lock().unwrap().1.clone();
        let Some(new_access) = self.refresh(&refresh) else {
            return false;
        };
        self.send(url, &new_access) == Some(200)
    }

    fn send(&self, url: &str, access: &str) -> Option<u16> {
        let resp = self
            .agent
            .get(url)
            .header("authorization", &format!("Bearer {access}"))
            .call()
            .ok()?;
        Some(resp.status().as_u16())
    }

    fn refresh(&self, refresh: &str) -> Option<String> {
        let mut resp = self
            .agent
            .post(&self.token_url)
            .send_form([
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", &self.client_id),
            ])
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        let body = resp.body_mut().read_to_string().ok()?;
        let field = |name: &str| -> Option<String> {
            let start = body.find(&format!("\"{name}\":\""))? + name.len() + 4;
            let len = body[start..].find('"')?;
            Some(body[start..start + len].to_owned())
        };
        let (access, refresh) = (field("access_token")?, field("refresh_token")?);
        *self.tokens.lock().unwrap() = (access.clone(), refresh);
        Some(access)
    }
}

fn row(name: &str, requests: usize, t: &Tally, c: &Counters) {
    println!(
        "{name:<16} {:>9} {:>7} {:>7} {:>9} {:>10} {:>10} {:>9.2}s",
        requests,
        t.ok,
        t.failed,
        c.refresh_calls,
        c.reuse_detections,
        t.sessions_lost,
        t.wall.as_secs_f64()
    );
}

fn main() {
    if refresh_machine_demo::fleet::worker_main() {
        return;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("storm: {e}");
            std::process::exit(2);
        }
    };
    if args.processes > 1 {
        return processes::demo(&args);
    }
    let options = ServerOptions {
        access_ttl: args.ttl,
        // Expiry is discovered by 401, as with servers that omit `expires_in`:
        // the hard case, where every request of the burst fails at once.
        advertise_expiry: false,
        ..ServerOptions::default()
    };
    let ours_server = AuthServer::start_with(options.clone()).expect("start test server");
    let naive_server = AuthServer::start_with(options).expect("start test server");

    println!("refresh-machine storm demo");
    println!(
        "{} rounds x {} concurrent GET /api/me; access tokens live {} ms; the server rotates",
        args.rounds,
        args.requests,
        args.ttl.as_millis()
    );
    println!("refresh tokens and revokes the whole session if a spent one is presented again.");
    println!();

    let ours = Client::builder()
        .token_endpoint(&ours_server.token_url(), &ours_server.options().client_id)
        .and_then(|b| b.allow_origin(&ours_server.origin()))
        .expect("valid URLs")
        .timeout(Duration::from_secs(10))
        .build();
    ours.login_with_password("alice", "wonderland")
        .expect("login to the test server");
    let naive = NaiveClient::login(&naive_server);

    let mut ours_tally = Tally::default();
    let mut naive_tally = Tally::default();
    for round in 1..=args.rounds {
        // Let the access tokens expire.
        std::thread::sleep(args.ttl + Duration::from_millis(100));

        let url = ours_server.url("/api/me");
        let client = ours.clone();
        let t0 = Instant::now();
        let (ok, failed) = together(args.requests, move || {
            client.get(&url).is_ok_and(|r| r.status() == 200)
        });
        ours_tally.wall += t0.elapsed();
        ours_tally.ok += ok;
        ours_tally.failed += failed;
        if ours.session().tokens().is_none() {
            ours_tally.sessions_lost += 1;
            ours.login_with_password("alice", "wonderland")
                .expect("login to the test server");
        }

        let url = naive_server.url("/api/me");
        let client = naive.clone();
        let t0 = Instant::now();
        let (nok, nfailed) = together(args.requests, move || client.get(&url));
        naive_tally.wall += t0.elapsed();
        naive_tally.ok += nok;
        naive_tally.failed += nfailed;
        let lost = naive_server.counters().reuse_detections > 0 && {
            // Revoked family: the naive client's tokens no longer work.
            let access = naive.tokens.lock().unwrap().0.clone();
            naive.send(&naive_server.url("/api/me"), &access) != Some(200)
        };
        if lost {
            naive_tally.sessions_lost += 1;
            naive.relogin(&naive_server);
        }
        println!(
            "round {round}/{}: refresh-machine {ok}/{} ok, {} refreshes so far | naive {nok}/{} ok, {} refreshes so far{}",
            args.rounds,
            args.requests,
            ours_server.counters().refresh_calls,
            args.requests,
            naive_server.counters().refresh_calls,
            if lost { ", session lost" } else { "" }
        );
    }

    println!();
    println!(
        "{:<16} {:>9} {:>7} {:>7} {:>9} {:>10} {:>10} {:>10}",
        "client", "requests", "ok", "failed", "refreshes", "reuse det.", "sess. lost", "wall time"
    );
    let total = args.requests * args.rounds;
    row(
        "refresh-machine",
        total,
        &ours_tally,
        &ours_server.counters(),
    );
    row(
        "naive 401-retry",
        total,
        &naive_tally,
        &naive_server.counters(),
    );
    println!();
    println!(
        "refresh-machine: one refresh per expiry ({} for {} rounds), no session lost.",
        ours_server.counters().refresh_calls,
        args.rounds
    );
    println!(
        "naive client: every request that saw the 401 refreshed on its own; the second use of a\n\
         spent refresh token made the server revoke the session ({} times).",
        naive_tally.sessions_lost
    );
    let c = ours_server.counters();
    let healthy = c.refresh_calls == args.rounds as u64
        && c.reuse_detections == 0
        && ours_tally.sessions_lost == 0
        && ours_tally.failed == 0;
    if !healthy {
        eprintln!("storm: refresh-machine did not meet its promise; see the table above");
        std::process::exit(1);
    }
}

/// `--processes K`: the storm across OS processes sharing one credential.
mod processes {
    use std::time::Duration;

    use refresh_machine_demo::fleet::{Fleet, Sharing};
    use refresh_machine_test_server::{AuthServer, ServerOptions};

    use super::Args;

    /// Totals of one setup.
    #[derive(Default)]
    struct Totals {
        ok: usize,
        failed: usize,
        lost: usize,
        wall: Duration,
    }

    fn run(sharing: Sharing, args: &Args) -> (Totals, refresh_machine_test_server::Counters) {
        let server = AuthServer::start_with(ServerOptions {
            access_ttl: args.ttl,
            advertise_expiry: false,
            ..ServerOptions::default()
        })
        .expect("start test server");
        let mut fleet = match Fleet::start(&server, sharing, args.processes, args.requests) {
            Ok(fleet) => fleet,
            Err(e) => {
                eprintln!(
                    "storm: cannot start the processes ({}): {e}",
                    sharing.name()
                );
                std::process::exit(1);
            }
        };
        let mut totals = Totals::default();
        for _ in 0..args.rounds {
            std::thread::sleep(args.ttl + Duration::from_millis(100));
            let b = fleet.burst().expect("every process answered");
            totals.ok += b.ok;
            totals.failed += b.failed;
            totals.lost += b.lost;
            totals.wall += b.took;
        }
        (totals, server.counters())
    }

    pub(super) fn demo(args: &Args) {
        println!(
            "refresh-machine storm demo, {} processes sharing one credential",
            args.processes
        );
        println!(
            "{} rounds x {} processes x {} concurrent GET /api/me; access tokens live {} ms;",
            args.rounds,
            args.processes,
            args.requests,
            args.ttl.as_millis()
        );
        println!("the server rotates refresh tokens and revokes the session on a reuse.");
        println!();
        let own = run(Sharing::PerProcess, args);
        let shared = run(args.store, args);
        println!(
            "{:<28} {:>9} {:>7} {:>7} {:>9} {:>10} {:>10} {:>10}",
            "processes",
            "requests",
            "ok",
            "failed",
            "refreshes",
            "reuse det.",
            "sess. lost",
            "wall time"
        );
        let total = args.rounds * args.processes * args.requests;
        let coordinated = format!("coordinated (--store {})", args.store.name());
        for (name, (t, c)) in [
            ("single-flight per process", &own),
            (coordinated.as_str(), &shared),
        ] {
            println!(
                "{name:<28} {total:>9} {:>7} {:>7} {:>9} {:>10} {:>10} {:>9.2}s",
                t.ok,
                t.failed,
                c.refresh_calls,
                c.reuse_detections,
                t.lost,
                t.wall.as_secs_f64()
            );
        }
        let (t, c) = &shared;
        let healthy = c.refresh_calls == args.rounds as u64
            && c.reuse_detections == 0
            && t.lost == 0
            && t.failed == 0;
        println!();
        if !healthy {
            eprintln!("storm: the coordinated processes did not meet the promise; see the table");
            std::process::exit(1);
        }
        println!(
            "coordinated: one refresh per expiry for all {} processes ({} for {} rounds), no session lost.",
            args.processes, c.refresh_calls, args.rounds
        );
    }
}
