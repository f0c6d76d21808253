//! The `tracing` feature (on for the tests through the dev-dependency on
//! the driver): a refresh, a transient refresh failure and its backoff, a
//! request backoff, a stale 401 and a lost session, as a subscriber formats
//! them, and no token or client secret anywhere in that text.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use refresh_machine_test_server::{AuthServer, ResourceFault, ServerOptions, TokenFault};
use refresh_machine_ureq::{Client, Error, Hooks, RefreshReply, TokenPair};
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const CLIENT_SECRET: &str = "client-secret-5c1e7a";

/// The lines of `text` with every one of `parts`.
fn lines_with<'t>(text: &'t str, parts: &[&str]) -> Vec<&'t str> {
    text.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

/// A subscriber formatting everything (spans closed with their fields)
/// into the buffer; install it on each thread with `with_default`.
fn capture() -> (Captured, tracing::Dispatch) {
    let captured = Captured::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::CLOSE)
            .finish(),
    );
    (captured, dispatch)
}

/// `text` holds a line with every one of `parts`.
fn expect(text: &str, parts: &[&str]) {
    assert!(
        !lines_with(text, parts).is_empty(),
        "no line with {parts:?} in:\n{text}"
    );
}

/// `text` holds none of `secrets`.
fn assert_none_of<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret in:\n{text}");
    }
}

/// Both tokens of a pair.
fn tokens_of(pair: &TokenPair) -> impl Iterator<Item = &str> {
    std::iter::once(pair.access_token.expose())
        .chain(pair.refresh_token.as_ref().map(|r| r.expose()))
}

/// A confidential client: its secret must not reach the text either.
fn server() -> Arc<AuthServer> {
    Arc::new(
        AuthServer::start_with(ServerOptions {
            advertise_expiry: false,
            client_secret: Some(CLIENT_SECRET.into()),
            ..ServerOptions::default()
        })
        .unwrap(),
    )
}

fn client_for(s: &AuthServer, secret: &str) -> refresh_machine_ureq::ClientBuilder {
    Client::builder()
        .token_endpoint(&s.token_url(), &s.options().client_id)
        .unwrap()
        .client_secret(secret)
        .allow_origin(&s.origin())
        .unwrap()
        .timeout(Duration::from_secs(10))
        .seed(1)
}

/// A fresh family minted by the server, installed in `c`.
fn install_minted(c: &Client, s: &AuthServer) -> TokenPair {
    let t = s.login();
    let pair = TokenPair::new(t.access_token.as_str()).with_refresh_token(t.refresh_token.as_str());
    c.set_tokens(&pair).unwrap();
    pair
}

#[test]
fn refreshes_retries_and_a_lost_session_are_traced_without_secrets() {
    let (captured, dispatch) = capture();
    let s = server();
    // Every pair the client held: the tokens to look for in the text.
    let held: Arc<Mutex<Vec<TokenPair>>> = Arc::default();
    let lost = Arc::new(AtomicU32::new(0));
    let (sink, counter) = (held.clone(), lost.clone());
    let c = client_for(&s, CLIENT_SECRET)
        .hooks(Hooks {
            persist: Some(Box::new(move |t| {
                sink.lock().unwrap().extend(t.cloned());
            })),
            login_required: Some(Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })),
        })
        .build();

    tracing::dispatcher::with_default(&dispatch, || {
        c.login_with_password("alice", "wonderland").unwrap();

        // 1. A refresh (attempt 1, tokens), then the retry with the new token.
        s.revoke_access_tokens();
        assert_eq!(c.get(&s.url("/api/me")).unwrap().status(), 200);

        // 2. A stale 401: a request parked with the old token is refused
        // after another one refreshed; retried, no second refresh.
        let slow = {
            let (c, url, dispatch) = (c.clone(), s.url("/api/slow"), dispatch.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    c.get(&url).map(|r| r.status().as_u16())
                })
            })
        };
        assert!(
            s.wait_held(1, Duration::from_secs(10)),
            "slow request never arrived"
        );
        s.revoke_access_tokens();
        assert_eq!(c.get(&s.url("/api/me")).unwrap().status(), 200);
        s.release();
        assert_eq!(slow.join().unwrap().unwrap(), 200);
        assert_eq!(s.counters().refresh_ok, 2, "the stale 401 refreshed");

        // 3. A transient refresh failure: backoff, then attempt 2 succeeds.
        s.revoke_access_tokens();
        s.set_token_fault(TokenFault::Status(503, None), 1);
        assert_eq!(c.get(&s.url("/api/me")).unwrap().status(), 200);

        // 4. A 503 from the API, then a connection closed after the server
        // acted: each time the request backs off and is retried.
        s.set_resource_fault(ResourceFault::Unavailable(0), 1);
        assert_eq!(c.get(&s.url("/api/me")).unwrap().status(), 200);
        s.set_resource_fault(ResourceFault::CloseAfterProcessing, 1);
        assert_eq!(c.get(&s.url("/api/me")).unwrap().status(), 200);

        // 5. The session is revoked: the refresh is rejected, login required.
        s.revoke_sessions();
        s.revoke_access_tokens();
        assert!(matches!(
            c.get(&s.url("/api/me")),
            Err(Error::LoginRequired)
        ));
    });
    assert_eq!(lost.load(Ordering::SeqCst), 1);

    let text = captured.text();
    let expect = |parts: &[&str]| expect(&text, parts);
    expect(&["refresh started", "attempt=1"]);
    expect(&[
        "refresh finished",
        "attempt=1",
        "outcome=\"tokens\"",
        "duration_ms=",
    ]);
    expect(&["request retry", "reason=\"new_token\""]);
    expect(&["stale 401"]);
    expect(&["request retry", "reason=\"stale_token\""]);
    expect(&["refresh finished", "attempt=1", "outcome=\"transient\""]);
    expect(&["refresh backoff", "delay_ms="]);
    expect(&["refresh finished", "attempt=2", "outcome=\"tokens\""]);
    expect(&["request backoff", "status=503", "delay_ms="]);
    expect(&["request backoff", "send_error=\"io\"", "delay_ms="]);
    expect(&["request retry", "reason=\"transient\""]);
    expect(&["refresh finished", "outcome=\"rejected\""]);
    expect(&["login required", "reason=\"rejected\""]);
    // The span closes with its outcome and duration recorded.
    expect(&["refresh{", "outcome=\"rejected\"", "duration_ms=", "close"]);
    // Five attempts: tokens, tokens, transient then tokens, rejected.
    assert_eq!(lines_with(&text, &["refresh finished"]).len(), 5, "{text}");

    // No secret, anywhere: every token the client held, and the client secret.
    let held = held.lock().unwrap();
    assert!(held.len() >= 4, "login and three refreshes: {}", held.len());
    assert_none_of(&text, held.iter().flat_map(tokens_of));
    assert_none_of(&text, [CLIENT_SECRET]);
}

#[test]
fn refused_unusable_and_late_refresh_answers_are_traced_without_secrets() {
    let (captured, dispatch) = capture();
    let s = server();
    let wrong_secret = "wrong-secret-9d2b44";
    let mut installed = Vec::new();
    tracing::dispatcher::with_default(&dispatch, || {
        // The token endpoint refuses the client (a wrong secret): misconfigured.
        let refused = client_for(&s, wrong_secret).build();
        installed.push(install_minted(&refused, &s));
        s.revoke_access_tokens();
        let err = refused.get(&s.url("/api/me")).unwrap_err();
        assert!(matches!(err, Error::RefreshMisconfigured(_)), "{err:?}");

        // A 200 that is not JSON: unusable, and the session is lost.
        let unusable = client_for(&s, CLIENT_SECRET).build();
        installed.push(install_minted(&unusable, &s));
        s.revoke_access_tokens();
        s.set_token_fault(TokenFault::Malformed, 1);
        let err = unusable.get(&s.url("/api/me")).unwrap_err();
        assert!(matches!(err, Error::LoginRequired), "{err:?}");

        // An answer after the session gave up on the refresh: a blocking
        // refresher held until another request has seen its deadline pass.
        let (entered, in_refresher) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let late = client_for(&s, CLIENT_SECRET)
            .config({
                let mut config = refresh_machine_ureq::Config::DEFAULT;
                config.max_refresh_attempts = 1;
                config.refresh_timeout = Duration::from_millis(200);
                config
            })
            .refresh_with(move |_old| {
                entered.send(()).unwrap();
                released.lock().unwrap().recv().unwrap();
                RefreshReply::Transient { retry_after: None }
            })
            .build();
        installed.push(install_minted(&late, &s));
        s.revoke_access_tokens();
        let refreshing = {
            let (c, url, dispatch) = (late.clone(), s.url("/api/me"), dispatch.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || c.get(&url).map(|r| r.status()))
            })
        };
        in_refresher.recv().unwrap();
        // Waits for the refresh until its deadline, then gives up on it.
        let waiter = late.get(&s.url("/api/me")).unwrap_err();
        assert!(matches!(waiter, Error::RefreshUnavailable), "{waiter:?}");
        release.send(()).unwrap();
        let refreshing = refreshing.join().unwrap().unwrap_err();
        assert!(
            matches!(refreshing, Error::RefreshUnavailable),
            "{refreshing:?}"
        );
    });

    let text = captured.text();
    expect(&text, &["refresh finished", "outcome=\"misconfigured\""]);
    expect(&text, &["refresh finished", "outcome=\"unusable\""]);
    expect(
        &text,
        &["login required", "reason=\"unusable_token_response\""],
    );
    expect(
        &text,
        &[
            "refresh outcome ignored",
            "attempt=1",
            "outcome=\"transient\"",
            "duration_ms=",
        ],
    );
    assert_none_of(&text, installed.iter().flat_map(tokens_of));
    assert_none_of(&text, [CLIENT_SECRET, wrong_secret]);
}
