#![doc = include_str!("../README.md")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use refresh_machine_driver::event_listener::{Event, EventListener};

use redis::{Client, Connection, Script};
use refresh_machine_driver::refresh_machine::coordination::StoreUnavailable;
use refresh_machine_driver::{ready, BoxFuture, Coordinator, Stored, TokenPair};

pub use redis;
pub use refresh_machine_driver::refresh_machine::coordination::Lease;

/// The replicas of a service sharing one credential through Redis: the pair
/// and its generation in one hash (`<prefix>:tokens`), the lease a key
/// (`<prefix>:lease`) set with `SET NX PX` to an owner token and deleted
/// only by its owner (compare and delete, a Lua script), every publish
/// fenced by generation and lease in one script. Nothing secret is in a key
/// name. A lease whose holder died lapses after its time-to-live.
///
/// Operations are blocking calls on one connection, with a timeout: a
/// Redis that does not answer is [`StoreUnavailable`] (the refresh is
/// transient, nothing is presented), and the connection is made again at
/// the next operation.
pub struct RedisCoordinator {
    client: Client,
    connection: Mutex<Option<Connection>>,
    tokens_key: String,
    lease_key: String,
    /// Every publish, login and logout is announced here (pub/sub).
    channel: String,
    changes: Arc<Changes>,
    timeout: Duration,
    recheck: Duration,
}

/// The store's changes, as the subscriber thread hears them.
#[derive(Default)]
struct Changes {
    event: Event,
    /// The subscriber thread was started.
    started: AtomicBool,
    /// The coordinator is gone: the thread ends.
    stop: AtomicBool,
}

impl std::fmt::Debug for RedisCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoordinator")
            .field("tokens_key", &self.tokens_key)
            .field("lease_key", &self.lease_key)
            .finish_non_exhaustive()
    }
}

/// Write `ARGV[3]` (the pair, JSON) as generation `ARGV[2] + 1` if the
/// lease (`KEYS[2]`) is `ARGV[1]`'s and the generation is `ARGV[2]`;
/// announce it on `KEYS[3]`.
const PUBLISH: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local g = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if g ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'generation', g + 1, 'tokens', ARGV[3])
redis.call('PUBLISH', KEYS[3], g + 1)
return 1
";

/// Write `ARGV[1]` (the pair, JSON, or empty: logged out) as the next
/// generation, announce it on `KEYS[2]`; the generation.
const REPLACE: &str = r"
local g = redis.call('HINCRBY', KEYS[1], 'generation', 1)
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'tokens')
else redis.call('HSET', KEYS[1], 'tokens', ARGV[1]) end
redis.call('PUBLISH', KEYS[2], g)
return g
";

/// Delete the lease if it is `ARGV[1]`'s.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

impl RedisCoordinator {
    /// On the Redis of `client` (its URL carries TLS, the password and the
    /// database: `rediss://:password@host:6380/2`), keys under `prefix`.
    pub fn new(client: Client, prefix: &str) -> RedisCoordinator {
        RedisCoordinator {
            client,
            connection: Mutex::new(None),
            tokens_key: format!("{prefix}:tokens"),
            lease_key: format!("{prefix}:lease"),
            channel: format!("{prefix}:changed"),
            changes: Arc::default(),
            timeout: Duration::from_secs(2),
            recheck: Duration::from_millis(250),
        }
    }

    /// The longest an operation may take (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> RedisCoordinator {
        self.timeout = timeout;
        self
    }

    /// How often a waiting replica reads the store again besides the push
    /// of every change (default 250 ms: a fallback for a notification lost,
    /// or a subscription not yet made).
    pub fn with_recheck(mut self, every: Duration) -> RedisCoordinator {
        self.recheck = every;
        self
    }

    /// Run `f` on the connection, made first if needed; a failure drops it.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreUnavailable> {
        let mut slot = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            let connection = self
                .client
                .get_connection_with_timeout(self.timeout)
                .map_err(|_| StoreUnavailable)?;
            connection
                .set_read_timeout(Some(self.timeout))
                .and_then(|()| connection.set_write_timeout(Some(self.timeout)))
                .map_err(|_| StoreUnavailable)?;
            *slot = Some(connection);
        }
        let connection = slot.as_mut().ok_or(StoreUnavailable)?;
        let result = f(connection);
        if result.is_err() {
            *slot = None;
        }
        result.map_err(|_| StoreUnavailable)
    }

    fn read_now(&self) -> Result<Stored, StoreUnavailable> {
        let (generation, tokens): (Option<u64>, Option<String>) = self.with(|c| {
            redis::cmd("HMGET")
                .arg(&self.tokens_key)
                .arg("generation")
                .arg("tokens")
                .query(c)
        })?;
        let tokens = match tokens {
            Some(mut json) => {
                let pair = serde_json::from_str::<TokenPair>(&json);
                zeroize::Zeroize::zeroize(&mut json);
                Some(pair.map_err(|_| StoreUnavailable)?)
            }
            None => None,
        };
        Ok(Stored {
            generation: generation.unwrap_or(0),
            tokens,
        })
    }

    fn lease_now(&self, owner: u64, ttl: Duration) -> Result<Lease, StoreUnavailable> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let taken: Option<String> = self.with(|c| {
            redis::cmd("SET")
                .arg(&self.lease_key)
                .arg(owner.to_string())
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query(c)
        })?;
        if taken.is_some() {
            return Ok(Lease::Taken);
        }
        let holder: Option<String> =
            self.with(|c| redis::cmd("GET").arg(&self.lease_key).query(c))?;
        if holder.as_deref() == Some(owner.to_string().as_str()) {
            return Ok(Lease::Taken);
        }
        let left: i64 = self.with(|c| redis::cmd("PTTL").arg(&self.lease_key).query(c))?;
        Ok(Lease::Held {
            expires_in: u64::try_from(left).ok().map(Duration::from_millis),
        })
    }
}

/// The pair as stored: JSON (wiped by the caller after use).
fn json(tokens: &TokenPair) -> Result<String, StoreUnavailable> {
    serde_json::to_string(tokens).map_err(|_| StoreUnavailable)
}

impl Coordinator for RedisCoordinator {
    fn read(&self) -> BoxFuture<'_, Result<Stored, StoreUnavailable>> {
        ready(self.read_now())
    }

    fn take_lease(
        &self,
        owner: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Lease, StoreUnavailable>> {
        ready(self.lease_now(owner, ttl))
    }

    fn publish<'a>(
        &'a self,
        owner: u64,
        expected: u64,
        tokens: &'a TokenPair,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        let publish = || {
            let mut pair = json(tokens)?;
            let written: Result<i64, _> = self.with(|c| {
                Script::new(PUBLISH)
                    .key(&self.tokens_key)
                    .key(&self.lease_key)
                    .key(&self.channel)
                    .arg(owner.to_string())
                    .arg(expected)
                    .arg(&pair)
                    .invoke(c)
            });
            zeroize::Zeroize::zeroize(&mut pair);
            Ok(written? == 1)
        };
        ready(publish())
    }

    fn replace<'a>(
        &'a self,
        tokens: Option<&'a TokenPair>,
    ) -> BoxFuture<'a, Result<u64, StoreUnavailable>> {
        let replace = || {
            let mut pair = match tokens {
                Some(t) => json(t)?,
                None => String::new(),
            };
            let generation: Result<u64, _> = self.with(|c| {
                Script::new(REPLACE)
                    .key(&self.tokens_key)
                    .key(&self.channel)
                    .arg(&pair)
                    .invoke(c)
            });
            zeroize::Zeroize::zeroize(&mut pair);
            generation
        };
        ready(replace())
    }

    fn release(&self, owner: u64) -> BoxFuture<'_, ()> {
        let _: Result<i64, _> = self.with(|c| {
            Script::new(RELEASE)
                .key(&self.lease_key)
                .arg(owner.to_string())
                .invoke(c)
        });
        ready(())
    }

    fn recheck(&self) -> Duration {
        self.recheck
    }

    fn changed(&self) -> Option<EventListener> {
        // Listening first: a change announced from now on wakes it.
        let listener = self.changes.event.listen();
        self.subscribe();
        Some(listener)
    }
}

impl RedisCoordinator {
    /// Start the thread that subscribes to the store's changes, once.
    fn subscribe(&self) {
        if self.changes.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let (client, channel, changes) = (
            self.client.clone(),
            self.channel.clone(),
            Arc::clone(&self.changes),
        );
        let spawned = std::thread::Builder::new()
            .name("refresh-machine-redis-changes".into())
            .spawn(move || listen(&client, &channel, &changes));
        if spawned.is_err() {
            // No thread: waiters fall back to the re-check.
            self.changes.started.store(false, Ordering::Release);
        }
    }
}

/// Hear the store's changes on `channel` until the coordinator is dropped,
/// connecting again after a failure.
fn listen(client: &Client, channel: &str, changes: &Changes) {
    let tick = Duration::from_millis(500);
    while !changes.stop.load(Ordering::Acquire) {
        let Ok(mut connection) = client.get_connection_with_timeout(tick) else {
            std::thread::sleep(tick);
            continue;
        };
        if connection.set_read_timeout(Some(tick)).is_err() {
            continue;
        }
        let mut pubsub = connection.as_pubsub();
        if pubsub.subscribe(channel).is_err() {
            std::thread::sleep(tick);
            continue;
        }
        // Subscribed: anything may have changed while it was not.
        changes.event.notify(usize::MAX);
        while !changes.stop.load(Ordering::Acquire) {
            match pubsub.get_message() {
                Ok(_) => {
                    changes.event.notify(usize::MAX);
                }
                Err(e) if e.is_timeout() => {}
                Err(_) => break,
            }
        }
    }
}

impl Drop for RedisCoordinator {
    fn drop(&mut self) {
        self.changes.stop.store(true, Ordering::Release);
    }
}
