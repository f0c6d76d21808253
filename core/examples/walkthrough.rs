//! A 401 storm, driven by hand in virtual time, with a trace of every step.
//!
//! Eight requests go out with an access token the server has just revoked.
//! All eight get 401 together. The machine performs **one** refresh against a
//! token server that rotates refresh tokens (and would revoke the whole
//! family if a spent refresh token were presented twice), then retries the
//! eight with the new token. One request hits a 503 with `Retry-After` and is
//! retried after its backoff; a POST that meets a connection reset after it may
//! have reached the server is failed rather than replayed.
//!
//! Run: `cargo run -p refresh-machine --example walkthrough`

use core::time::Duration;

use refresh_machine::{
    Action, Config, Instant, RefreshMachine, RefreshOutcome, RequestId, RequestSpec, RequestState,
    Response, SendErrorKind, TokenSet,
};

/// The fake token server: rotates the refresh token on every use and detects reuse.
struct TokenServer {
    issued: u32,
    valid_refresh: String,
    family_revoked: bool,
    calls: u32,
}

impl TokenServer {
    fn refresh(&mut self, presented: &str) -> Result<(String, String), &'static str> {
        self.calls += 1;
        if self.family_revoked || presented != self.valid_refresh {
            self.family_revoked = true;
            return Err("invalid_grant (refresh token reuse: family revoked)");
        }
        self.issued += 1;
        self.valid_refresh = format!("refresh-{}", self.issued);
        Ok((
            format!("access-{}", self.issued),
            self.valid_refresh.clone(),
        ))
    }
}

/// What the fake resource server will do to each request on its next send.
#[derive(Clone, Copy)]
enum Fate {
    Normal,
    /// 503 + Retry-After: 2 once, then normal.
    BusyOnce,
    /// Connection reset after the request was written, once.
    ResetOnce,
}

/// One line per action; tokens are secrets even in a demo, so only their length shows.
fn describe(action: &Action<'_>) -> String {
    match action {
        Action::Send {
            token, retry: None, ..
        } => {
            format!("send (token of {} bytes)", token.expose_secret().len())
        }
        Action::Send {
            token,
            retry: Some(reason),
            ..
        } => {
            format!(
                "retry, {reason:?} (token of {} bytes)",
                token.expose_secret().len()
            )
        }
        Action::Deliver { .. } => "deliver the response".into(),
        Action::Fail { failure, .. } => format!("fail: {failure}"),
        Action::Refresh { .. } => "refresh (POST to the token endpoint)".into(),
        Action::PersistTokens { tokens: Some(_) } => "persist the new token pair".into(),
        Action::PersistTokens { tokens: None } => "delete the stored tokens".into(),
        Action::LoginRequired => "login required".into(),
    }
}

fn main() {
    let mut m: RefreshMachine<8, 64> = RefreshMachine::new(Config::DEFAULT, 2026);
    let mut tokens = TokenServer {
        issued: 1,
        valid_refresh: "refresh-1".into(),
        family_revoked: false,
        calls: 0,
    };
    // The resource server accepts only the newest access token; "access-1" was revoked.
    let mut accepted_access = "access-2".to_string();
    let mut now = Instant::ZERO;
    m.login(
        now,
        TokenSet::new("access-1").with_refresh_token("refresh-1"),
    )
    .expect("valid tokens");

    let mut fates = [Fate::Normal; 8];
    let mut ids: Vec<(RequestId, &str)> = Vec::new();
    for (k, name) in [
        "GET /me",
        "GET /orders",
        "GET /a",
        "GET /b",
        "GET /c",
        "GET /d",
        "GET /e",
        "POST /orders",
    ]
    .into_iter()
    .enumerate()
    {
        let spec = if name.starts_with("POST") {
            RequestSpec::NON_IDEMPOTENT
        } else {
            RequestSpec::IDEMPOTENT
        };
        let id = m.start_request(now, spec).expect("8 slots");
        fates[id.slot()] = match k {
            3 => Fate::BusyOnce,
            7 => Fate::ResetOnce,
            _ => Fate::Normal,
        };
        ids.push((id, name));
    }
    let name = |id: RequestId| ids.iter().find(|(x, _)| *x == id).map_or("?", |(_, n)| *n);

    println!("  t (ms)  request        action");
    // Sends are answered in batches, as a real client would see them arrive.
    let mut on_the_wire: Vec<(RequestId, String)> = Vec::new();
    let mut sends = 0;
    let mut outcomes = 0;
    for _round in 0..100 {
        while let Some(action) = m.poll_action() {
            let t = now.since_epoch().as_millis();
            match action {
                Action::Send { id, token, .. } => {
                    sends += 1;
                    println!("{t:>8}  {:<14} {}", name(id), describe(&action));
                    on_the_wire.push((id, token.expose_secret().to_string()));
                }
                Action::Refresh {
                    id, refresh_token, ..
                } => {
                    println!("{t:>8}  {:<14} {}", "(token server)", describe(&action));
                    match tokens.refresh(refresh_token.expose_secret()) {
                        Ok((access, refresh)) => {
                            accepted_access = access.clone();
                            let set = TokenSet::new(&access)
                                .with_refresh_token(&refresh)
                                .with_expires_in(Duration::from_secs(3600));
                            m.handle_refresh_outcome(now, id, RefreshOutcome::Success(set))
                                .expect("current refresh");
                        }
                        Err(why) => {
                            println!("{t:>8}  {:<14} {why}", "(token server)");
                            m.handle_refresh_outcome(now, id, RefreshOutcome::Rejected)
                                .expect("current refresh");
                        }
                    }
                }
                Action::Deliver { id } | Action::Fail { id, .. } => {
                    outcomes += 1;
                    println!("{t:>8}  {:<14} {}", name(id), describe(&action));
                }
                other => {
                    let who = other.request().map_or("(session)", name);
                    println!("{t:>8}  {who:<14} {}", describe(&other));
                }
            }
        }
        if !on_the_wire.is_empty() {
            for (id, token) in on_the_wire.drain(..) {
                if token != accepted_access {
                    m.handle_response(now, id, Response::status(401)).unwrap();
                    continue;
                }
                match core::mem::replace(&mut fates[id.slot()], Fate::Normal) {
                    Fate::BusyOnce => m
                        .handle_response(
                            now,
                            id,
                            Response::status(503).with_retry_after(Duration::from_secs(2)),
                        )
                        .unwrap(),
                    Fate::ResetOnce => m.handle_send_error(now, id, SendErrorKind::Io).unwrap(),
                    Fate::Normal => m.handle_response(now, id, Response::status(200)).unwrap(),
                }
                // Parked requests ask nothing of the driver; their state says why they wait.
                let t = now.since_epoch().as_millis();
                match m.request_state(id) {
                    Ok(RequestState::WaitingForRefresh) => {
                        println!("{t:>8}  {:<14} waits for the refresh", name(id))
                    }
                    Ok(RequestState::BackingOff { until }) => println!(
                        "{t:>8}  {:<14} backs off until t={} ms",
                        name(id),
                        until.since_epoch().as_millis()
                    ),
                    _ => {}
                }
            }
            now = now + Duration::from_millis(40);
            continue;
        }
        match m.poll_timeout() {
            Some(deadline) if m.snapshot().live > 0 => {
                now = now.max(deadline);
                m.handle_timeout(now);
            }
            _ => break,
        }
    }
    println!();
    println!(
        "requests: {}  outcomes: {outcomes}  sends: {sends}  token-endpoint calls: {}  family revoked: {}",
        ids.len(),
        tokens.calls,
        tokens.family_revoked
    );
    assert_eq!(
        outcomes,
        ids.len(),
        "every request ends with exactly one outcome"
    );
    assert_eq!(tokens.calls, 1, "one refresh for eight 401s");
    assert!(!tokens.family_revoked);
}
