//! The shared end-to-end scenario table, on the firmware client, wherever its
//! shape allows. The client serves one request at a time and is owned by one
//! task: here a thread that owns it and takes the scenario's requests one by
//! one (bursts arrive in sequence, as they would through a firmware task's
//! queue). Left out: `stale_401` (it needs a second request while one is
//! parked at the server), `a_burst_larger_than_the_session_queues` (600
//! requests of 200 ms in sequence) and `token_stays_on_its_origin` (requests
//! are paths on the one API origin: no other origin can be named; redirects
//! are delivered, see `redirects_are_delivered_not_followed` in host.rs).

mod common;

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use common::{Parts, TestClock, CAP};
use futures::executor::block_on;
use refresh_machine::grant::TokenFormat;
use refresh_machine::{Config, SessionState};
use refresh_machine_reqwless::{
    Client, Error, JsonEndpoint, Refresher, Request, SavedTokens, TokenStore,
};
use refresh_machine_test_server::{AuthServer, Backend, Harness, Outcome, TestClient};
use std_embedded_nal_async::Stack;

/// What the scenario asks of the client's thread.
enum Command {
    Get(String),
    Post(String, Option<String>),
    HasTokens,
    Logout,
}

/// A command and where to answer it.
type Ask = (Command, Sender<Answer>);

/// A handle on the thread that owns the client.
#[derive(Clone)]
struct Firmware {
    commands: Sender<Ask>,
    /// Sessions that ended (the store was told to erase the tokens).
    ended: Arc<AtomicU32>,
}

enum Answer {
    Outcome(Outcome),
    HasTokens(bool),
}

impl Firmware {
    fn ask(&self, command: Command) -> Answer {
        let (tx, rx) = channel();
        self.commands
            .send((command, tx))
            .expect("the client thread is running");
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the client thread answered")
    }

    fn outcome(&self, command: Command) -> Outcome {
        match self.ask(command) {
            Answer::Outcome(o) => o,
            Answer::HasTokens(_) => unreachable!("asked for an outcome"),
        }
    }
}

impl TestClient for Firmware {
    fn get(&self, url: &str) -> Outcome {
        self.outcome(Command::Get(url.to_owned()))
    }

    fn post(&self, url: &str, idempotency_key: Option<&str>) -> Outcome {
        self.outcome(Command::Post(
            url.to_owned(),
            idempotency_key.map(str::to_owned),
        ))
    }

    fn has_tokens(&self) -> bool {
        matches!(self.ask(Command::HasTokens), Answer::HasTokens(true))
    }

    fn login_required_signals(&self) -> u32 {
        self.ended.load(Ordering::SeqCst)
    }

    fn logout(&self) {
        self.ask(Command::Logout);
    }
}

/// Counts the ends of the session: the firmware's "login required" signal
/// is the store being told to erase the tokens.
struct CountEnds(Arc<AtomicU32>);

impl TokenStore for CountEnds {
    async fn save(&mut self, tokens: Option<SavedTokens<'_>>) {
        if tokens.is_none() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// How a request ended, as the scenarios compare it. A failure that ended
/// the session (a rejected grant, an unusable token answer) is
/// `LoginRequired`, whatever the more precise error.
fn outcome(result: Result<u16, Error>, session: SessionState) -> Outcome {
    match result {
        Ok(status) => Outcome::Status(status),
        Err(_) if session == SessionState::LoginRequired => Outcome::LoginRequired,
        Err(Error::RefreshUnavailable) => Outcome::RefreshUnavailable,
        Err(Error::Unauthorized) => Outcome::Unauthorized,
        Err(Error::Forbidden) => Outcome::Forbidden,
        Err(Error::LoggedOut) => Outcome::LoggedOut,
        Err(Error::Transport(_)) => Outcome::Transport,
        Err(other) => Outcome::Other(format!("{other:?}")),
    }
}

struct Reqwless;

impl Harness for Reqwless {
    type Client = Firmware;

    fn client(&self, server: &AuthServer, config: Config) -> Firmware {
        let (commands, inbox) = channel::<Ask>();
        let ended = Arc::new(AtomicU32::new(0));
        let origin = server.origin();
        let backend = server.options().backend;
        let (refresh_url, login_url) = (server.refresh_url(), server.login_url());
        let mut parts = Parts::new(server, 1024);
        if backend == Backend::AppJwt {
            parts = parts.with_real_wall_clock();
        }
        let count = CountEnds(ended.clone());
        let (ready_tx, ready) = channel();
        std::thread::spawn(move || {
            let offset = Cell::new(Duration::ZERO);
            let client = parts.client(&offset, config).with_token_store(count);
            let mut rx = vec![0u8; 4096];
            if backend == Backend::AppJwt {
                let mut client = client.with_refresher(JsonEndpoint::new(&refresh_url));
                let credentials = br#"{"username":"alice","password":"wonderland"}"#;
                let format = TokenFormat::CAMEL_CASE;
                let login =
                    block_on(client.login_with_json(&login_url, credentials, &format, &mut rx));
                ready_tx.send(login.is_ok()).unwrap();
                serve(client, &origin, &inbox, &mut rx);
            } else {
                let mut client = client;
                let login = block_on(client.login_with_password("alice", "wonderland", &mut rx));
                ready_tx.send(login.is_ok()).unwrap();
                serve(client, &origin, &inbox, &mut rx);
            }
        });
        assert!(
            ready.recv_timeout(Duration::from_secs(30)).unwrap(),
            "login"
        );
        Firmware { commands, ended }
    }
}

/// Answer the scenario's commands until every handle is dropped.
fn serve<'a, R, S>(
    mut client: Client<'a, Stack, Stack, TestClock<'a>, CAP, R, S>,
    origin: &str,
    inbox: &Receiver<Ask>,
    rx: &mut [u8],
) where
    R: Refresher<'a, Stack, Stack>,
    S: TokenStore,
{
    while let Ok((command, reply)) = inbox.recv() {
        let path = |url: &str| url.strip_prefix(origin).map(str::to_owned);
        let answer = match command {
            Command::HasTokens => Answer::HasTokens(client.tokens().is_some()),
            Command::Logout => {
                block_on(client.logout());
                Answer::HasTokens(false)
            }
            Command::Get(url) => {
                let path = path(&url).expect("a URL on the API origin");
                let sent = block_on(client.send(Request::get(&path), rx));
                let result = sent.map(|r| r.status);
                Answer::Outcome(outcome(result, client.session()))
            }
            Command::Post(url, key) => {
                let path = path(&url).expect("a URL on the API origin");
                let key = key.unwrap_or_default();
                let headers = [("Idempotency-Key", key.as_str())];
                let mut request = Request::post_json(&path, br#"{"item":"book"}"#);
                if !key.is_empty() {
                    request = request.with_headers(&headers);
                }
                let sent = block_on(client.send(request, rx));
                let result = sent.map(|r| r.status);
                Answer::Outcome(outcome(result, client.session()))
            }
        };
        let _ = reply.send(answer);
    }
}

refresh_machine_test_server::scenario_tests!(@each Reqwless;
    expiry_burst, proactive_refresh, refresh_503_then_success, refresh_invalid_grant,
    refresh_hangs, always_401, insufficient_scope, post_after_connection_error,
    retry_after_honoured, token_endpoint_redirect_is_not_followed,
    token_endpoint_bodies_are_capped, unanswered_refresh_within_a_reuse_grace_period,
    unanswered_refresh_on_a_strict_server);

/// The same scenarios against a web tutorial's JSON backend, with the JSON
/// refresher and login.
mod app_backend {
    use super::Reqwless;
    use refresh_machine_test_server::AppBackend;
    refresh_machine_test_server::scenario_tests!(@each AppBackend(Reqwless);
        expiry_burst, proactive_refresh, refresh_503_then_success, refresh_invalid_grant,
        refresh_hangs, always_401, insufficient_scope, post_after_connection_error,
        retry_after_honoured, token_endpoint_redirect_is_not_followed,
        token_endpoint_bodies_are_capped, unanswered_refresh_within_a_reuse_grace_period,
        unanswered_refresh_on_a_strict_server);
}
