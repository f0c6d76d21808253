//! A coordinated refresh (`Builder::coordinated_by`) on the shared drive
//! loop: a fake transport, a `FileCoordinator` on a temporary file, and
//! another `FileCoordinator` on the same file standing in for another
//! process (an `flock` is per open file, so two instances exclude each
//! other even in one process).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use refresh_machine_driver::refresh_machine::coordination::{Lease, StoreUnavailable};
use refresh_machine_driver::refresh_machine::{Config, RequestSpec, SendErrorKind};
use refresh_machine_driver::{
    block_on, event_listener, Attempt, BoxFuture, Builder, Coordinator, Driver, FileCoordinator,
    ReadAhead, RefreshReply, Secret, Sent, Stored, TokenAnswer, TokenPair, Transport, Waiter,
};

/// What a sleep of the coordinated run does.
#[derive(Clone, Copy, Default, PartialEq)]
enum Sleep {
    /// Return at once.
    #[default]
    Ready,
    /// Sleep for real (as the blocking client does).
    Real,
}

#[derive(Default)]
struct Fake {
    token_calls: AtomicU32,
    /// The timeout of each token call.
    timeouts: Mutex<Vec<Duration>>,
    sleep: Mutex<Sleep>,
    /// Run at the first sleep (another process releasing its lease, say).
    at_first_sleep: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The access tokens the API accepts.
    valid: Mutex<Vec<&'static str>>,
}

struct FakeClient(Arc<Driver<Fake>>);

impl From<Arc<Driver<Fake>>> for FakeClient {
    fn from(d: Arc<Driver<Fake>>) -> Self {
        FakeClient(d)
    }
}

impl Transport for Fake {
    type Response = StatusCode;
    type Error = ();
    type Detail = u16;
    type Client = FakeClient;

    fn head(response: &StatusCode) -> (StatusCode, &HeaderMap) {
        static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
        (*response, EMPTY.get_or_init(HeaderMap::new))
    }

    fn detail(response: StatusCode) -> u16 {
        response.as_u16()
    }

    fn error_kind(_: &()) -> SendErrorKind {
        SendErrorKind::Io
    }

    async fn read_body(
        response: StatusCode,
        _limit: usize,
    ) -> Result<ReadAhead<StatusCode>, Self::Error> {
        Ok(ReadAhead {
            response,
            body: Some(Vec::new()),
        })
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        if let Some(hook) = self.at_first_sleep.lock().unwrap().take() {
            hook();
        }
        let mode = *self.sleep.lock().unwrap();
        std::future::poll_fn(move |_| match mode {
            Sleep::Ready => Poll::Ready(()),
            Sleep::Real => {
                std::thread::sleep(duration);
                Poll::Ready(())
            }
        })
    }

    async fn wait(&self, waiter: Waiter) {
        waiter.into_parts().0.await;
    }

    async fn token_call(
        &self,
        _request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<TokenAnswer, ()> {
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        self.timeouts.lock().unwrap().extend(timeout);
        Ok(TokenAnswer {
            status: 200,
            headers: HeaderMap::new(),
            body: br#"{"access_token":"a2","token_type":"Bearer","refresh_token":"r2"}"#.to_vec(),
            body_too_large: false,
        })
    }
}

/// A GET that the API answers 200 with a valid token, else 401.
struct Get<'f>(&'f Fake);

impl Attempt<Fake> for Get<'_> {
    async fn send(&mut self, token: &Secret) -> Result<Sent<StatusCode>, ()> {
        let ok = self.0.valid.lock().unwrap().contains(&token.expose());
        Ok(Sent {
            response: if ok {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            },
            token_sent: true,
        })
    }
}

/// A request's future, polled by hand.
type Pending<'c> = Pin<Box<dyn Future<Output = Option<u16>> + 'c>>;

fn request(c: &FakeClient) -> Pending<'_> {
    let driver = &c.0;
    Box::pin(async move {
        let allowed = driver
            .origins()
            .allows(&"http://api.test/me".parse().unwrap())
            .unwrap();
        let mut get = Get(driver.transport());
        driver
            .drive(allowed, RequestSpec::IDEMPOTENT, &mut get)
            .await
            .ok()
            .map(|s| s.as_u16())
    })
}

fn poll<T>(f: &mut Pin<Box<dyn Future<Output = T> + '_>>) -> Poll<T> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// A client on the token file `file`, logged in as `a1`/`r1` (published
/// to the file); the API accepts only `a2`.
fn client(
    file: &std::path::Path,
    refresh_timeout: Duration,
    with: impl FnOnce(Builder<Fake>) -> Builder<Fake>,
) -> FakeClient {
    let mut config = Config::DEFAULT;
    config.refresh_timeout = refresh_timeout;
    let builder = Builder::new(Fake::default())
        .allow_origin("http://api.test")
        .unwrap()
        .config(config)
        .seed(1)
        .coordinated_by(FileCoordinator::new(file).with_recheck(Duration::from_millis(200)));
    let client: FakeClient = with(builder).build();
    client
        .0
        .set_tokens(&TokenPair::new("a1").with_refresh_token("r1"))
        .unwrap();
    *client.0.transport().valid.lock().unwrap() = vec!["a2"];
    client
}

fn endpoint(b: Builder<Fake>) -> Builder<Fake> {
    b.token_endpoint("http://auth.test/token", "id").unwrap()
}

/// Another process refreshed already (generation 2 in the file): this one
/// adopts its pair, and its refresher, a blocking one, is never called (it
/// would present `r1`, spent by the other process: a reuse).
#[test]
fn a_blocking_refresher_is_not_called_when_another_process_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let c = client(&file, Duration::from_secs(3600), move |b| {
        b.refresh_with(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            RefreshReply::Tokens(TokenPair::new("a3").with_refresh_token("r3"))
        })
    });
    // The other process: lease, publish generation 2, release.
    let other = FileCoordinator::new(&file);
    assert_eq!(
        block_on(other.take_lease(7, Duration::from_secs(60))),
        Ok(Lease::Taken)
    );
    let newer = TokenPair::new("a2").with_refresh_token("r2");
    assert_eq!(block_on(other.publish(7, 1, &newer)), Ok(true));
    block_on(other.release(7));

    let mut r = request(&c);
    assert_eq!(poll(&mut r), Poll::Ready(Some(200)), "adopted a2");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "r1 was presented again");
}

/// The run waited for another process's lease before calling the token
/// endpoint: the call gets what is left of the refresh deadline, not the
/// whole of it (else the process waits past its deadline, and the machine
/// starts another refresh while this call may still be processed).
#[test]
fn the_token_call_after_a_wait_gets_what_is_left_of_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let deadline = Duration::from_secs(5);
    let c = client(&file, deadline, endpoint);
    // Another process holds the lease, and releases it without publishing
    // (its call failed) while this one sleeps its first re-check (200 ms).
    let other = Arc::new(FileCoordinator::new(&file));
    assert_eq!(
        block_on(other.take_lease(7, Duration::from_secs(60))),
        Ok(Lease::Taken)
    );
    let fake = c.0.transport();
    *fake.sleep.lock().unwrap() = Sleep::Real;
    *fake.at_first_sleep.lock().unwrap() = Some(Box::new(move || block_on(other.release(7))));

    let mut r = request(&c);
    assert_eq!(poll(&mut r), Poll::Ready(Some(200)));
    let timeouts = fake.timeouts.lock().unwrap().clone();
    assert_eq!(timeouts.len(), 1);
    assert!(
        timeouts[0] <= deadline - Duration::from_millis(200),
        "the call may run {:?} after a 200 ms wait in a {deadline:?} deadline",
        timeouts[0]
    );
}
/// A coordinated run dropped while it holds the lease (here its refresher
/// panicked; also a run replaced after a logout and login, or after its
/// deadline) lets the lease go: else this process's `FileCoordinator`
/// keeps the lock for good, and no process sharing the file ever
/// refreshes again.
#[test]
fn a_run_that_ends_without_releasing_lets_the_lease_go() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let c = client(&file, Duration::from_secs(3600), |b| {
        b.refresh_with_async(|_| async { panic!("the refresher panics") })
    });
    let mut r = request(&c);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll(&mut r)));
    assert!(panicked.is_err(), "the refresher's panic is raised");
    drop(r);
    let other = FileCoordinator::new(&file);
    assert_eq!(
        block_on(other.take_lease(7, Duration::from_secs(60))),
        Ok(Lease::Taken),
        "the lease is still held by a run that is over"
    );
}

/// A login (`replace`) in one process while another publishes its refresh:
/// each write reads the generation and then writes the next one, so
/// without one lock around both, two writes got the same generation and
/// one pair silently replaced the other (a login lost, or an older pair
/// over a newer one). Every write that succeeded has its own generation.
#[test]
fn concurrent_writes_to_the_token_file_never_share_a_generation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let pair = TokenPair::new("a").with_refresh_token("r");
    let (published, replaced) = std::thread::scope(|s| {
        let publisher = s.spawn(|| {
            let store = FileCoordinator::new(&file);
            assert_eq!(
                block_on(store.take_lease(7, Duration::from_secs(60))),
                Ok(Lease::Taken)
            );
            let mut written = Vec::new();
            for _ in 0..60 {
                let expected = block_on(store.read()).unwrap().generation;
                if block_on(store.publish(7, expected, &pair)) == Ok(true) {
                    written.push(expected + 1);
                }
            }
            written
        });
        let login = s.spawn(|| {
            let store = FileCoordinator::new(&file);
            (0..60)
                .map(|_| block_on(store.replace(Some(&pair))).unwrap())
                .collect::<Vec<u64>>()
        });
        (publisher.join().unwrap(), login.join().unwrap())
    });
    let mut all = [published.clone(), replaced.clone()].concat();
    let writes = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        writes,
        "generations written twice: published {published:?}, replaced {replaced:?}"
    );
    let last = block_on(FileCoordinator::new(&file).read()).unwrap();
    assert_eq!(last.generation, writes as u64);
}

/// [`client`] on the token endpoint, giving up after one refresh attempt
/// (a failed refresh is `RefreshUnavailable` at once).
fn one_attempt_client(file: &std::path::Path) -> FakeClient {
    let mut one_attempt = Config::DEFAULT;
    one_attempt.max_refresh_attempts = 1;
    client(file, Duration::from_secs(3600), |b| {
        endpoint(b).config(one_attempt)
    })
}

/// A token file that cannot be read (corrupt, or half-written by some
/// other tool): a refresh presents nothing (`RefreshUnavailable`, the
/// lease cannot be trusted around an unreadable pair), and a login in any
/// process repairs it, with a generation above any the file held, so every
/// process adopts that login. Before, the login failed to write it too and
/// the file stayed unreadable: no process could refresh again.
#[test]
fn a_login_repairs_a_corrupt_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let c = one_attempt_client(&file);
    std::fs::write(&file, b"{\"generation\": 7, \"tok").unwrap();
    let mut r = request(&c);
    assert_eq!(poll(&mut r), Poll::Ready(None), "RefreshUnavailable");
    drop(r);
    assert_eq!(c.0.transport().token_calls.load(Ordering::SeqCst), 0);

    // Another process logs in: the file is readable again, and newer.
    let other: FakeClient = Builder::new(Fake::default())
        .coordinated_by(FileCoordinator::new(&file))
        .build();
    other
        .0
        .set_tokens(&TokenPair::new("a2").with_refresh_token("r2"))
        .expect("the login repairs the file");
    let stored = block_on(FileCoordinator::new(&file).read()).expect("readable again");
    assert!(stored.generation > 7, "{}", stored.generation);
    let mut r = request(&c);
    assert_eq!(poll(&mut r), Poll::Ready(Some(200)), "adopted a2");
    assert_eq!(c.0.transport().token_calls.load(Ordering::SeqCst), 0);
}

/// A login or logout the shared store cannot take is an error
/// (`StoreUnavailable`), not silence: the session here has logged in (or
/// out), but the other processes keep the store's pair. Before, both
/// returned as if shared.
#[test]
fn a_login_or_logout_the_store_cannot_take_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A token file in a folder that does not exist: nothing can be written.
    let file = dir.path().join("missing").join("tokens.json");
    let c: FakeClient = Builder::new(Fake::default())
        .coordinated_by(FileCoordinator::new(&file))
        .build();
    let login =
        c.0.set_tokens(&TokenPair::new("a1").with_refresh_token("r1"));
    assert!(
        matches!(login, Err(refresh_machine_driver::Error::StoreUnavailable)),
        "{login:?}"
    );
    assert!(c.0.session().tokens().is_some(), "logged in here");
    let logout = c.0.logout();
    assert!(
        matches!(logout, Err(refresh_machine_driver::Error::StoreUnavailable)),
        "{logout:?}"
    );
    assert!(c.0.session().tokens().is_none(), "logged out here");
}

/// A repair goes above every generation written, not only above the
/// clock: processes that know a generation beyond the current time in
/// milliseconds (here 9e12) still adopt the repaired pair. Before, the
/// repair took the clock (about 1.8e12) and they never adopted it.
#[test]
fn a_repaired_token_file_goes_above_every_generation_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let c = one_attempt_client(&file);
    // A store far along: generation 9e12, then a login on top (9e12 + 1).
    let far = r#"{"generation":9000000000000,"tokens":null}"#;
    std::fs::write(&file, far).unwrap();
    c.0.set_tokens(&TokenPair::new("a1").with_refresh_token("r1"))
        .unwrap();
    assert_eq!(
        block_on(FileCoordinator::new(&file).read())
            .unwrap()
            .generation,
        9_000_000_000_001
    );
    std::fs::write(&file, b"garbage").unwrap();
    let other: FakeClient = Builder::new(Fake::default())
        .coordinated_by(FileCoordinator::new(&file))
        .build();
    other
        .0
        .set_tokens(&TokenPair::new("a2").with_refresh_token("r2"))
        .unwrap();
    let stored = block_on(FileCoordinator::new(&file).read()).unwrap();
    assert!(
        stored.generation > 9_000_000_000_001,
        "{}",
        stored.generation
    );
    let mut r = request(&c);
    assert_eq!(poll(&mut r), Poll::Ready(Some(200)), "adopted a2");
}

/// A store with change notifications (as Redis pub/sub, or the tabs'
/// `storage` event): another process publishes while this one asks for the
/// lease, which it then finds held. The notification came before this
/// process began to wait: it must still wake it (the listener is taken
/// before the read), not leave it to the re-check, here 10 minutes away.
#[test]
fn a_change_while_the_lease_is_asked_for_wakes_the_wait() {
    struct Notifying {
        file: FileCoordinator,
        other: FileCoordinator,
        event: event_listener::Event,
    }
    impl Coordinator for Notifying {
        fn read(&self) -> BoxFuture<'_, Result<Stored, StoreUnavailable>> {
            self.file.read()
        }
        fn take_lease(
            &self,
            owner: u64,
            ttl: Duration,
        ) -> BoxFuture<'_, Result<Lease, StoreUnavailable>> {
            Box::pin(async move {
                // The other process got there first: it holds the lease,
                // publishes generation 2 and notifies, all before this
                // attempt is answered `Held`.
                if block_on(self.other.take_lease(7, ttl)) == Ok(Lease::Taken) {
                    let newer = TokenPair::new("a2").with_refresh_token("r2");
                    assert_eq!(block_on(self.other.publish(7, 1, &newer)), Ok(true));
                    self.event.notify(usize::MAX);
                    return Ok(Lease::Held { expires_in: None });
                }
                self.file.take_lease(owner, ttl).await
            })
        }
        fn publish<'a>(
            &'a self,
            owner: u64,
            expected: u64,
            tokens: &'a TokenPair,
        ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
            self.file.publish(owner, expected, tokens)
        }
        fn replace<'a>(
            &'a self,
            tokens: Option<&'a TokenPair>,
        ) -> BoxFuture<'a, Result<u64, StoreUnavailable>> {
            self.file.replace(tokens)
        }
        fn release(&self, owner: u64) -> BoxFuture<'_, ()> {
            self.file.release(owner)
        }
        fn recheck(&self) -> Duration {
            Duration::from_secs(600)
        }
        fn changed(&self) -> Option<event_listener::EventListener> {
            Some(self.event.listen())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let c: FakeClient = Builder::new(Fake::default())
        .allow_origin("http://api.test")
        .unwrap()
        .seed(1)
        .token_endpoint("http://auth.test/token", "id")
        .unwrap()
        .coordinated_by(Notifying {
            file: FileCoordinator::new(&file),
            other: FileCoordinator::new(&file),
            event: event_listener::Event::new(),
        })
        .build();
    c.0.set_tokens(&TokenPair::new("a1").with_refresh_token("r1"))
        .unwrap();
    *c.0.transport().valid.lock().unwrap() = vec!["a2"];
    // The fake's wait ignores deadlines: a missed notification pends here.
    let mut r = request(&c);
    assert_eq!(poll(&mut r), Poll::Ready(Some(200)), "adopted a2 at once");
    assert_eq!(
        c.0.transport().token_calls.load(Ordering::SeqCst),
        0,
        "r1 was presented again"
    );
}
