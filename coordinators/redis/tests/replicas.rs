//! Replicas sharing one credential through a real Redis: each test starts
//! its own `redis-server` on a free port of 127.0.0.1 and stops it by PID.
//! They need `redis-server` on the PATH: `.ci/run` installs it and runs
//! them with `--include-ignored`.

use std::time::{Duration, Instant};

use refresh_machine_redis::{redis, RedisCoordinator};
use refresh_machine_test_server::{together, AuthServer, RedisServer, ServerOptions};
use refresh_machine_ureq::{Client, Error};

/// A `redis-server` of this test, stopped by its PID on drop.
struct Redis(RedisServer);

impl Redis {
    fn start() -> Redis {
        Redis(RedisServer::start().expect("redis-server"))
    }

    fn start_on(port: u16, dir: tempfile::TempDir) -> Redis {
        Redis(RedisServer::start_on(port, dir).expect("redis-server"))
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(self.0.url()).unwrap()
    }

    fn stop(self) -> (u16, tempfile::TempDir) {
        self.0.stop()
    }
}

fn opaque() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap()
}

/// A replica: its own client and its own Redis connection.
fn replica(server: &AuthServer, redis: &Redis) -> Client {
    Client::builder()
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .coordinated_by(RedisCoordinator::new(redis.client(), "test-connection"))
        .build()
}

/// Four replicas, bursts of 50 concurrent requests each, 10 expiries: one
/// refresh per expiry between them, no reuse, no failure.
#[test]
#[ignore = "needs redis-server: run by .ci/run with --include-ignored"]
fn replicas_sharing_redis_make_one_refresh_per_expiry() {
    let redis = Redis::start();
    let server = opaque();
    let first = replica(&server, &redis);
    first.login_with_password("alice", "wonderland").unwrap();
    let replicas: Vec<Client> = (0..4).map(|_| replica(&server, &redis)).collect();
    for _ in 0..10 {
        server.revoke_access_tokens();
        let url = server.url("/api/me");
        let handles: Vec<_> = replicas
            .iter()
            .map(|r| {
                let (r, url) = (r.clone(), url.clone());
                std::thread::spawn(move || {
                    together(50, move || r.get(&url).map(|x| x.status().as_u16()))
                        .into_iter()
                        .filter(|o| matches!(o, Ok(Ok(200))))
                        .count()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 50);
        }
    }
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.reuse_detections), (10, 0), "{k:?}");
}

/// A holder that died holding the lease: the lease lapses after its
/// time-to-live, a replica takes it over and refreshes once.
#[test]
#[ignore = "needs redis-server: run by .ci/run with --include-ignored"]
fn a_lease_whose_holder_died_is_taken_over_after_its_ttl() {
    let redis = Redis::start();
    let server = opaque();
    let c = replica(&server, &redis);
    c.login_with_password("alice", "wonderland").unwrap();
    // A dead replica's lease, 300 ms left.
    let mut conn = redis.client().get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("test-connection:lease")
        .arg("4242")
        .arg("PX")
        .arg(300)
        .query(&mut conn)
        .unwrap();
    server.revoke_access_tokens();
    let started = Instant::now();
    assert_eq!(c.get(&server.url("/api/me")).unwrap().status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "waited for the lease"
    );
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
}

/// Redis stopped: a refresh is a typed transient failure and nothing is
/// presented; started again (its data kept), the session recovers with one
/// refresh and no reuse.
#[test]
#[ignore = "needs redis-server: run by .ci/run with --include-ignored"]
fn a_redis_outage_is_transient_and_the_session_recovers() {
    let redis = Redis::start();
    let server = opaque();
    let mut config = refresh_machine_ureq::Config::DEFAULT;
    config.max_refresh_attempts = 1;
    let c = Client::builder()
        .token_endpoint(&server.token_url(), "demo-client")
        .unwrap()
        .allow_origin(&server.origin())
        .unwrap()
        .config(config)
        .coordinated_by(
            RedisCoordinator::new(redis.client(), "test-connection")
                .with_timeout(Duration::from_millis(500)),
        )
        .build();
    c.login_with_password("alice", "wonderland").unwrap();
    let (port, dir) = redis.stop();
    server.revoke_access_tokens();
    let down = c.get(&server.url("/api/me"));
    assert!(matches!(down, Err(Error::RefreshUnavailable)), "{down:?}");
    assert_eq!(
        server.counters().refresh_calls,
        0,
        "nothing presented without the lease"
    );
    assert!(c.session().tokens().is_some(), "tokens kept");
    let _redis = Redis::start_on(port, dir);
    assert_eq!(c.get(&server.url("/api/me")).unwrap().status(), 200);
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
}

/// The store's own rules, operation by operation: the lease goes to one
/// owner at a time and only its owner releases it; a publish needs the
/// lease and the generation it replaces; a login replaces whatever is
/// there; nothing is readable as a secret in a key name.
#[test]
#[ignore = "needs redis-server: run by .ci/run with --include-ignored"]
fn the_store_fences_publishes_and_releases() {
    use refresh_machine_driver::{block_on, Coordinator, TokenPair};
    use refresh_machine_redis::redis::Commands;
    use refresh_machine_redis::Lease;

    let redis = Redis::start();
    let store = RedisCoordinator::new(redis.client(), "fenced");
    let other = RedisCoordinator::new(redis.client(), "fenced");
    let pair = |n: &str| TokenPair::new(format!("at-{n}")).with_refresh_token(format!("rt-{n}"));
    let ttl = Duration::from_secs(5);
    assert_eq!(block_on(store.read()).unwrap().generation, 0);
    assert_eq!(block_on(store.replace(Some(&pair("1")))).unwrap(), 1);

    assert_eq!(block_on(store.take_lease(7, ttl)), Ok(Lease::Taken));
    assert!(matches!(
        block_on(other.take_lease(8, ttl)),
        Ok(Lease::Held {
            expires_in: Some(_)
        })
    ));
    // Not the holder, or not the generation read: refused.
    assert_eq!(block_on(other.publish(8, 1, &pair("x"))), Ok(false));
    assert_eq!(block_on(store.publish(7, 0, &pair("x"))), Ok(false));
    assert_eq!(block_on(store.publish(7, 1, &pair("2"))), Ok(true));
    let read = block_on(other.read()).unwrap();
    assert_eq!(read.generation, 2);
    assert_eq!(read.tokens, Some(pair("2")));
    // Only the owner releases.
    block_on(other.release(8));
    assert!(matches!(
        block_on(other.take_lease(8, ttl)),
        Ok(Lease::Held { .. })
    ));
    block_on(store.release(7));
    assert_eq!(block_on(other.take_lease(8, ttl)), Ok(Lease::Taken));
    // A logout clears the pair and moves the generation on.
    assert_eq!(block_on(store.replace(None)).unwrap(), 3);
    assert_eq!(block_on(store.read()).unwrap().tokens, None);
    let mut conn = redis.client().get_connection().unwrap();
    let keys: Vec<String> = conn.keys("*").unwrap();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("fenced:") && !k.contains("rt-")),
        "{keys:?}"
    );
}

/// A replica waiting for another's refresh is woken by the store's push
/// (pub/sub) when the new pair lands: with a 60 s re-check and a 60 s
/// refresh deadline, it has the pair long before either (bounded at 20 s;
/// without the push it would sleep a minute).
#[test]
#[ignore = "needs redis-server: run by .ci/run with --include-ignored"]
fn a_waiting_replica_is_woken_by_the_new_pair() {
    use refresh_machine_test_server::TokenFault;
    let redis = Redis::start();
    let server = opaque();
    let mut config = refresh_machine_ureq::Config::DEFAULT;
    config.refresh_timeout = Duration::from_secs(60);
    config.max_refresh_attempts = 1;
    let replica = |server: &AuthServer| {
        Client::builder()
            .token_endpoint(&server.token_url(), "demo-client")
            .unwrap()
            .allow_origin(&server.origin())
            .unwrap()
            .config(config)
            .coordinated_by(
                RedisCoordinator::new(redis.client(), "test-connection")
                    .with_recheck(Duration::from_secs(60)),
            )
            .build()
    };
    let (holder, waiter) = (replica(&server), replica(&server));
    holder.login_with_password("alice", "wonderland").unwrap();
    server.revoke_access_tokens();
    // The holder's grant is processed at once and answered a second later.
    server.set_token_fault(TokenFault::Late(Duration::from_secs(1)), 1);
    let url = server.url("/api/me");
    let held = {
        let (holder, url) = (holder.clone(), url.clone());
        std::thread::spawn(move || holder.get(&url).map(|r| r.status().as_u16()))
    };
    let started = Instant::now();
    while server.counters().refresh_calls == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::yield_now();
    }
    assert_eq!(
        server.counters().refresh_calls,
        1,
        "the holder is refreshing"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(waiter.get(&url).map(|r| r.status().as_u16())));
    let woken = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the waiter was woken by the new pair");
    assert_eq!(woken.unwrap(), 200);
    assert_eq!(held.join().unwrap().unwrap(), 200);
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
}

/// A replica started before anyone logged in adopts the login another
/// replica publishes (and a logout there ends it here at its next look).
#[test]
#[ignore = "needs redis-server: run by .ci/run with --include-ignored"]
fn a_replica_started_before_the_login_adopts_it() {
    let redis = Redis::start();
    let server = opaque();
    let early = replica(&server, &redis);
    assert!(early.session().tokens().is_none());
    let other = replica(&server, &redis);
    other.login_with_password("alice", "wonderland").unwrap();
    assert_eq!(early.get(&server.url("/api/me")).unwrap().status(), 200);
    assert_eq!(server.counters().logins, 1);
}
