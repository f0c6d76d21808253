//! Part 5: processes sharing one credential. K OS processes (this bench
//! binary again, as `refresh_machine_demo::fleet` workers with the ureq
//! client) each fire a burst of N concurrent requests; the server revokes
//! the access token before each burst, so every request meets a 401 first.
//! Per-process single-flight (each process its own copy of the pair) is set
//! against the store-coordinated refresh (a token file; Redis when
//! `redis-server` is on the PATH), and both against one process alone.

use std::time::Duration;

use refresh_machine_bench::stats::median;
use refresh_machine_demo::fleet::{Burst, Fleet, Sharing, StoreOps};
use refresh_machine_test_server::{AuthServer, ServerOptions};

use crate::amplification::{RESOURCE_LATENCY, TOKEN_LATENCY};

/// One setup's figures.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// How the processes shared the credential.
    pub(crate) sharing: Sharing,
    /// Processes.
    pub(crate) processes: usize,
    /// Requests per process per burst.
    pub(crate) requests: usize,
    /// Expiries met.
    pub(crate) expiries: usize,
    /// Refresh grants the server received.
    pub(crate) refreshes: u64,
    /// Spent refresh tokens presented again (each revoked the session).
    pub(crate) reuse_detections: u64,
    /// Requests answered 200 / failed, over every expiry.
    pub(crate) ok: usize,
    /// Requests that failed.
    pub(crate) failed: usize,
    /// Sessions lost (a process had to log in again).
    pub(crate) lost: usize,
    /// Store operations during the bursts with a valid token (the hot path).
    pub(crate) hot_ops: u64,
    /// Store operations during the expiry bursts, summed.
    pub(crate) expiry_ops: StoreOps,
    /// Median time from the bursts' start to the last answer, with a valid
    /// token (the floor) and after an expiry (the recovery).
    pub(crate) floor: Duration,
    /// See `floor`.
    pub(crate) recovery: Duration,
}

/// Whether `redis-server` can be started here.
pub(crate) fn redis_available() -> bool {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// K processes of one setup: `expiries` rounds of a valid-token burst then
/// an expiry burst.
pub(crate) fn run(
    sharing: Sharing,
    processes: usize,
    requests: usize,
    expiries: usize,
) -> Result<Row, String> {
    let server = AuthServer::start_with(ServerOptions {
        access_ttl: Duration::from_secs(3600),
        advertise_expiry: false,
        token_latency: TOKEN_LATENCY,
        resource_latency: RESOURCE_LATENCY,
        ..ServerOptions::default()
    })
    .map_err(|e| format!("loopback server: {e}"))?;
    let mut fleet = Fleet::start(&server, sharing, processes, requests)
        .map_err(|e| format!("{} processes ({}): {e}", processes, sharing.name()))?;
    let (mut floors, mut recoveries) = (Vec::new(), Vec::new());
    let mut row = Row {
        sharing,
        processes,
        requests,
        expiries,
        refreshes: 0,
        reuse_detections: 0,
        ok: 0,
        failed: 0,
        lost: 0,
        hot_ops: 0,
        expiry_ops: StoreOps::default(),
        floor: Duration::ZERO,
        recovery: Duration::ZERO,
    };
    let burst = |fleet: &mut Fleet| -> Result<Burst, String> {
        fleet.burst().map_err(|e| format!("burst: {e}"))
    };
    for _ in 0..expiries {
        let valid = burst(&mut fleet)?;
        floors.push(valid.took);
        row.hot_ops += valid.ops.total();
        server.revoke_access_tokens();
        let b = burst(&mut fleet)?;
        recoveries.push(b.took);
        row.ok += b.ok;
        row.failed += b.failed;
        row.lost += b.lost;
        row.expiry_ops.reads += b.ops.reads;
        row.expiry_ops.leases += b.ops.leases;
        row.expiry_ops.writes += b.ops.writes;
        row.expiry_ops.releases += b.ops.releases;
    }
    let c = server.counters();
    row.refreshes = c.refresh_calls;
    row.reuse_detections = c.reuse_detections;
    row.floor = median(&floors).unwrap_or_default();
    row.recovery = median(&recoveries).unwrap_or_default();
    Ok(row)
}

/// Every setup: one process alone, then K processes per process, on a
/// token file, and on Redis if it is installed.
pub(crate) fn run_all(
    processes: usize,
    requests: usize,
    expiries: usize,
) -> (Vec<Row>, Vec<String>) {
    let mut setups = vec![
        (Sharing::PerProcess, 1),
        (Sharing::PerProcess, processes),
        (Sharing::File, processes),
    ];
    let mut skipped = Vec::new();
    if redis_available() {
        setups.push((Sharing::Redis, processes));
    } else {
        skipped.push("Redis: no redis-server on the PATH".to_owned());
    }
    let mut rows = Vec::new();
    for (sharing, k) in setups {
        eprintln!("   {} process(es), {}", k, sharing.name());
        match run(sharing, k, requests, expiries) {
            Ok(row) => rows.push(row),
            Err(why) => skipped.push(why),
        }
    }
    (rows, skipped)
}
