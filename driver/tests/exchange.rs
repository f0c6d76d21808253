//! The refresh exchange belongs to the session (issue 15), checked on the
//! shared drive loop itself, so for every std client: a fake transport whose
//! token call the test answers by hand, and request futures polled by hand
//! (no runtime, no threads, no sleeps). Dropping a future is cancelling it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use refresh_machine_driver::refresh_machine::{Config, RequestSpec, SendErrorKind};
use refresh_machine_driver::{
    Attempt, Builder, Driver, ReadAhead, Secret, Sent, TokenAnswer, TokenPair, Transport, Waiter,
};

/// The token endpoint's answer, given by the test when it chooses.
#[derive(Default)]
struct Gate {
    answer: Option<String>,
    wakers: Vec<Waker>,
}

#[derive(Default)]
struct Fake {
    token_calls: AtomicU32,
    gate: Arc<Mutex<Gate>>,
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

    async fn sleep(&self, _duration: std::time::Duration) {}

    async fn wait(&self, waiter: Waiter) {
        waiter.into_parts().0.await;
    }

    fn token_call(
        &self,
        _request: http::Request<Vec<u8>>,
        _timeout: Option<Duration>,
    ) -> impl Future<Output = Result<TokenAnswer, ()>> + Send {
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.clone();
        std::future::poll_fn(move |cx| {
            // A test's request, polled once while the exchange is being
            // started (before another request can see it).
            if let Some(mut other) = DURING_FIRST_POLL.with(|d| d.borrow_mut().take()) {
                assert!(poll(&mut other).is_pending());
                DURING_FIRST_POLL.with(|d| *d.borrow_mut() = Some(other));
            }
            let mut g = gate.lock().unwrap();
            match g.answer.clone() {
                Some(body) => Poll::Ready(Ok(TokenAnswer {
                    status: 200,
                    headers: HeaderMap::new(),
                    body: body.into_bytes(),
                    body_too_large: false,
                })),
                None => {
                    g.wakers.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}

/// A request's future, polled by hand.
type Pending<'c> = Pin<Box<dyn Future<Output = Option<u16>> + 'c>>;

std::thread_local! {
    static DURING_FIRST_POLL: std::cell::RefCell<Option<Pending<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A GET that the API answers 200 with the valid token, else 401.
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

/// A client holding `a1`/`r1`; the API accepts only `a2`, which the refresh brings.
fn client() -> FakeClient {
    let mut config = Config::DEFAULT;
    config.refresh_timeout = Duration::from_secs(3600);
    let client: FakeClient = Builder::new(Fake::default())
        .token_endpoint("http://auth.test/token", "id")
        .unwrap()
        .allow_origin("http://api.test")
        .unwrap()
        .config(config)
        .seed(1)
        .build();
    client
        .0
        .set_tokens(&TokenPair::new("a1").with_refresh_token("r1"))
        .unwrap();
    *client.0.transport().valid.lock().unwrap() = vec!["a2"];
    client
}

/// One request through the drive loop, as a future to poll by hand.
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

/// The server answers: new tokens (the API now accepts `a2`).
fn answer(c: &FakeClient) {
    let mut g = c.0.transport().gate.lock().unwrap();
    g.answer = Some(r#"{"access_token":"a2","token_type":"Bearer","refresh_token":"r2"}"#.into());
    for w in g.wakers.drain(..) {
        w.wake();
    }
}

#[test]
fn dropping_the_request_that_started_the_refresh_leaves_it_to_its_waiters() {
    let c = client();
    let mut first = request(&c);
    assert!(poll(&mut first).is_pending(), "401, then the token call");
    assert_eq!(c.0.transport().token_calls.load(Ordering::SeqCst), 1);
    let mut waiter = request(&c);
    assert!(poll(&mut waiter).is_pending(), "waits for the refresh");
    drop(first);
    answer(&c);
    assert_eq!(poll(&mut waiter), Poll::Ready(Some(200)));
    assert_eq!(
        c.0.transport().token_calls.load(Ordering::SeqCst),
        1,
        "the refresh token was presented once"
    );
    assert_eq!(c.0.session().snapshot().live, 0);
    let tokens = c.0.session().tokens().unwrap();
    assert_eq!(tokens.refresh_token.unwrap().expose(), "r2");
}

#[test]
fn a_refresh_every_waiter_left_is_picked_up_by_the_next_request() {
    let c = client();
    let mut first = request(&c);
    assert!(poll(&mut first).is_pending());
    drop(first);
    assert_eq!(c.0.session().snapshot().live, 0, "its slot is free");
    answer(&c);
    let mut next = request(&c);
    assert_eq!(poll(&mut next), Poll::Ready(Some(200)));
    assert_eq!(c.0.transport().token_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_refresh_still_unanswered_is_awaited_by_the_next_request() {
    let c = client();
    let mut first = request(&c);
    assert!(poll(&mut first).is_pending());
    drop(first);
    // Nobody polls it now; a new request drives the same exchange.
    let mut next = request(&c);
    assert!(poll(&mut next).is_pending());
    answer(&c);
    assert_eq!(poll(&mut next), Poll::Ready(Some(200)));
    assert_eq!(c.0.transport().token_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn settle_applies_a_refresh_every_request_left() {
    let c = client();
    let mut first = request(&c);
    assert!(poll(&mut first).is_pending());
    drop(first);
    answer(&c);
    // Before the application exits: the rotated tokens are applied (and
    // persisted) without another request.
    let mut settle: Pin<Box<dyn Future<Output = ()> + '_>> = Box::pin(c.0.settle());
    assert_eq!(poll(&mut settle), Poll::Ready(()));
    let tokens = c.0.session().tokens().unwrap();
    assert_eq!(tokens.refresh_token.unwrap().expose(), "r2");
    assert_eq!(c.0.transport().token_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn the_request_that_started_a_refresh_hears_of_a_logout() {
    let c = client();
    let mut first = request(&c);
    assert!(poll(&mut first).is_pending());
    c.0.logout().unwrap();
    // It does not wait for the token call to end.
    assert_eq!(poll(&mut first), Poll::Ready(None));
}

/// A request that is told to wait for the refresh in the instant between
/// the refresh being handed out and its exchange being installed (here:
/// during the exchange's first poll) parks without the exchange; it is woken
/// once the exchange is installed, so it drives it when the starting
/// request is dropped (else it slept until the refresh deadline).
#[test]
fn a_request_parked_before_the_exchange_was_installed_drives_it() {
    let c: &'static FakeClient = Box::leak(Box::new(client()));
    let mut first = request(c);
    DURING_FIRST_POLL.with(|d| *d.borrow_mut() = Some(request(c)));
    assert!(poll(&mut first).is_pending());
    let mut other = DURING_FIRST_POLL
        .with(|d| d.borrow_mut().take())
        .expect("polled during the first poll");
    // The starting request stalls (held, never polled again): only the
    // other one can drive the exchange.
    answer(c);
    assert_eq!(poll(&mut other), Poll::Ready(Some(200)));
    assert_eq!(c.0.transport().token_calls.load(Ordering::SeqCst), 1);
    drop(first);
}
