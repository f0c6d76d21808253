//! One test per behaviour in the README's table. Virtual time only.

use core::time::Duration;
use refresh_machine::www_authenticate::BearerError;
use refresh_machine::*;

type M = RefreshMachine<8, 128>;

#[derive(Clone, Debug, PartialEq)]
enum Act {
    Send(RequestId, String),
    Retry(RequestId, String, RetryReason),
    Deliver(RequestId),
    Fail(RequestId, Failure),
    Refresh(RefreshId, String),
    Persist(Option<(String, Option<String>)>),
    LoginRequired,
}

fn drain(m: &mut M) -> Vec<Act> {
    let mut out = Vec::new();
    while let Some(a) = m.poll_action() {
        out.push(match a {
            Action::Send {
                id,
                token,
                retry: None,
            } => Act::Send(id, token.expose_secret().into()),
            Action::Send {
                id,
                token,
                retry: Some(reason),
            } => Act::Retry(id, token.expose_secret().into(), reason),
            Action::Deliver { id } => Act::Deliver(id),
            Action::Fail { id, failure } => Act::Fail(id, failure),
            Action::Refresh {
                id, refresh_token, ..
            } => Act::Refresh(id, refresh_token.expose_secret().into()),
            Action::PersistTokens { tokens } => Act::Persist(tokens.map(|t| {
                (
                    t.access_token.expose_secret().into(),
                    t.refresh_token.map(|r| r.expose_secret().into()),
                )
            })),
            Action::LoginRequired => Act::LoginRequired,
        });
        assert!(out.len() < 1000, "poll_action never returned None");
    }
    out
}

/// The request is parked until the refresh resolves.
fn waiting(m: &M, id: RequestId) -> bool {
    m.request_state(id) == Ok(RequestState::WaitingForRefresh)
}

/// When the request's backoff ends, if it is backing off.
fn backing_off(m: &M, id: RequestId) -> Option<Instant> {
    match m.request_state(id) {
        Ok(RequestState::BackingOff { until }) => Some(until),
        _ => None,
    }
}

const T0: Instant = Instant::ZERO;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn logged_in(config: Config) -> M {
    let mut m = M::new(config, 42);
    m.login(T0, TokenSet::new("a1").with_refresh_token("r1"))
        .unwrap();
    assert_eq!(
        drain(&mut m),
        vec![Act::Persist(Some(("a1".into(), Some("r1".into()))))]
    );
    m
}

fn refreshes(acts: &[Act]) -> Vec<RefreshId> {
    acts.iter()
        .filter_map(|a| match a {
            Act::Refresh(id, _) => Some(*id),
            _ => None,
        })
        .collect()
}

fn start_and_send(m: &mut M, now: Instant, spec: RequestSpec) -> RequestId {
    let id = m.start_request(now, spec).unwrap();
    let acts = drain(m);
    assert!(
        matches!(acts.as_slice(), [Act::Send(i, _)] if *i == id),
        "{acts:?}"
    );
    id
}

fn ok_refresh<'a>(access: &'a str, refresh: &'a str) -> RefreshOutcome<'a> {
    RefreshOutcome::Success(TokenSet::new(access).with_refresh_token(refresh))
}

#[test]
fn b01_single_flight_refresh() {
    let mut m = logged_in(Config::default());
    let ids: Vec<_> = (0..8)
        .map(|_| start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT))
        .collect();
    let mut all = Vec::new();
    for &id in &ids {
        m.handle_response(T0, id, Response::status(401)).unwrap();
        all.extend(drain(&mut m));
        assert!(m.snapshot().refresh_pending);
    }
    let r = refreshes(&all);
    assert_eq!(r.len(), 1, "{all:?}");
    assert!(ids.iter().all(|&id| waiting(&m, id)), "{all:?}");
    m.handle_refresh_outcome(T0, r[0], ok_refresh("a2", "r2"))
        .unwrap();
    let acts = drain(&mut m);
    let retried = acts
        .iter()
        .filter(|a| matches!(a, Act::Retry(_, t, RetryReason::NewToken) if t == "a2"))
        .count();
    assert_eq!(retried, 8, "{acts:?}");
    assert!(refreshes(&acts).is_empty());
}

#[test]
fn b02_requests_wait_during_refresh_and_are_released() {
    let mut m = logged_in(Config::default());
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    // New requests while the refresh is in flight must not be sent with the stale token.
    let b = m.start_request(T0, RequestSpec::IDEMPOTENT).unwrap();
    let c = m.start_request(T0, RequestSpec::NON_IDEMPOTENT).unwrap();
    assert_eq!(drain(&mut m), vec![]);
    assert!(waiting(&m, b) && waiting(&m, c));
    m.handle_refresh_outcome(T0, r, ok_refresh("a2", "r2"))
        .unwrap();
    let acts = drain(&mut m);
    assert!(acts.contains(&Act::Retry(a, "a2".into(), RetryReason::NewToken)));
    assert!(acts.contains(&Act::Send(b, "a2".into())));
    assert!(acts.contains(&Act::Send(c, "a2".into())));
    m.handle_response(T0, a, Response::status(200)).unwrap();
    drain(&mut m);
    // ... or released with a failure.
    let d = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, d, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    let e = m.start_request(T0, RequestSpec::IDEMPOTENT).unwrap();
    drain(&mut m);
    m.handle_refresh_outcome(T0, r, RefreshOutcome::Rejected)
        .unwrap();
    let acts = drain(&mut m);
    assert!(acts.contains(&Act::Fail(d, Failure::LoginRequired)));
    assert!(acts.contains(&Act::Fail(e, Failure::LoginRequired)));
}

#[test]
fn b03_stale_401_is_retried_without_refresh() {
    let mut m = logged_in(Config::default());
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    let b = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    m.handle_refresh_outcome(T0, r, ok_refresh("a2", "r2"))
        .unwrap();
    drain(&mut m);
    // b's 401 answers the old token: retry with the current one, no refresh.
    m.handle_response(T0, b, Response::status(401)).unwrap();
    assert_eq!(
        drain(&mut m),
        vec![Act::Retry(b, "a2".into(), RetryReason::StaleToken)]
    );
    assert!(!m.snapshot().refresh_pending);
}

#[test]
fn b04_second_401_after_refresh_fails_unauthorized_without_second_refresh() {
    let mut m = logged_in(Config::default());
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    m.handle_refresh_outcome(T0, r, ok_refresh("a2", "r2"))
        .unwrap();
    drain(&mut m);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    let acts = drain(&mut m);
    assert!(
        acts.contains(&Act::Fail(a, Failure::Unauthorized)),
        "{acts:?}"
    );
    assert!(refreshes(&acts).is_empty());
    // The fresh token was refused at its first use: refreshing again would
    // not help, so the next request's 401 fails too, without a refresh
    // (until `refused_token_cooldown` passes or a request succeeds).
    let b = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, b, Response::status(401)).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Fail(b, Failure::Unauthorized)]);

    // The limit is configurable (shown with the cool-down off, which would
    // otherwise stop the second refresh).
    let mut config = Config::default();
    config.max_auth_retries = 2;
    config.refused_token_cooldown = Duration::ZERO;
    let mut m = logged_in(config);
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    for round in 0..2 {
        m.handle_response(T0, a, Response::status(401)).unwrap();
        let r = refreshes(&drain(&mut m))[0];
        let (acc, rt) = (format!("a{}", round + 2), format!("r{}", round + 2));
        m.handle_refresh_outcome(T0, r, ok_refresh(&acc, &rt))
            .unwrap();
        drain(&mut m);
    }
    m.handle_response(T0, a, Response::status(401)).unwrap();
    assert!(drain(&mut m).contains(&Act::Fail(a, Failure::Unauthorized)));
}

#[test]
fn b05_no_replay_and_bounded_sends() {
    let mut config = Config::default();
    config.retry_budget.max_tokens = 1000;
    let mut m = logged_in(config);
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    let mut now = T0;
    // Answer every send with 503 forever: the request must stop after the bound.
    let mut sends = 1;
    loop {
        m.handle_response(now, a, Response::status(503)).unwrap();
        let acts = drain(&mut m);
        if acts.contains(&Act::Deliver(a)) {
            break;
        }
        now = now + Duration::from_secs(60);
        m.handle_timeout(now);
        let acts = drain(&mut m);
        assert!(matches!(acts.as_slice(), [Act::Retry(i, _, RetryReason::Transient)] if *i == a));
        sends += 1;
        assert!(sends <= config.max_sends());
    }
    assert_eq!(sends, 1 + u32::from(config.max_transient_retries));
    // Finished: no more events accepted, nothing re-sent.
    assert_eq!(
        m.handle_response(now, a, Response::status(200)),
        Err(Error::UnknownRequest)
    );
    m.handle_timeout(now + Duration::from_secs(3600));
    assert!(drain(&mut m).is_empty());

    // A request rejected with a token is never sent with that token again.
    let b = start_and_send(&mut m, now, RequestSpec::IDEMPOTENT);
    m.handle_response(now, b, Response::status(401)).unwrap();
    let acts = drain(&mut m);
    assert!(
        !acts
            .iter()
            .any(|x| matches!(x, Act::Send(..) | Act::Retry(..))),
        "{acts:?}"
    );
}

#[test]
fn b06_refresh_outcomes_are_classified() {
    // Success without rotation keeps the old refresh token.
    let mut m = logged_in(Config::default());
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    m.handle_refresh_outcome(T0, r, RefreshOutcome::Success(TokenSet::new("a2")))
        .unwrap();
    let acts = drain(&mut m);
    assert!(
        acts.contains(&Act::Persist(Some(("a2".into(), Some("r1".into()))))),
        "{acts:?}"
    );
    m.handle_response(T0, a, Response::status(200)).unwrap();
    drain(&mut m);

    // Rejected: login required once; new requests fail fast until login.
    let b = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, b, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    m.handle_refresh_outcome(T0, r, RefreshOutcome::Rejected)
        .unwrap();
    let acts = drain(&mut m);
    assert_eq!(acts.iter().filter(|x| **x == Act::LoginRequired).count(), 1);
    assert!(acts.contains(&Act::Fail(b, Failure::LoginRequired)));
    for _ in 0..3 {
        let c = m.start_request(T0, RequestSpec::IDEMPOTENT).unwrap();
        assert_eq!(drain(&mut m), vec![Act::Fail(c, Failure::LoginRequired)]);
    }
    assert_eq!(m.session(), SessionState::LoginRequired);
    m.login(T0, TokenSet::new("a9").with_refresh_token("r9"))
        .unwrap();
    drain(&mut m);
    start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);

    // Transient: retried with backoff while waiters wait; exhausted -> RefreshUnavailable, tokens kept.
    let mut m = logged_in(Config::default());
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    let mut r = refreshes(&drain(&mut m))[0];
    let mut now = T0;
    for attempt in 1..Config::default().max_refresh_attempts {
        m.handle_refresh_outcome(now, r, RefreshOutcome::Transient { retry_after: None })
            .unwrap();
        assert!(drain(&mut m).is_empty(), "waiter keeps waiting");
        let deadline = m.poll_timeout().unwrap();
        let ceiling = Duration::from_millis(200) * (1 << (attempt - 1));
        assert!(
            deadline.saturating_duration_since(now) <= ceiling,
            "full jitter within the ceiling"
        );
        now = deadline;
        m.handle_timeout(now);
        r = refreshes(&drain(&mut m))[0];
    }
    m.handle_refresh_outcome(now, r, RefreshOutcome::Transient { retry_after: None })
        .unwrap();
    assert_eq!(
        drain(&mut m),
        vec![Act::Fail(a, Failure::RefreshUnavailable)]
    );
    assert_eq!(m.session(), SessionState::Active);
    assert_eq!(
        m.tokens().unwrap().refresh_token.unwrap().expose_secret(),
        "r1"
    );
    // After the outage the next request starts a fresh round and succeeds.
    let b = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    let acts = drain(&mut m);
    let r = refreshes(&acts)[0];
    m.handle_refresh_outcome(now, r, ok_refresh("a2", "r2"))
        .unwrap();
    assert!(drain(&mut m).contains(&Act::Send(b, "a2".into())));
}

#[test]
fn b07_proactive_refresh_before_expiry_and_refresh_ahead() {
    let mut config = Config::default();
    config.expiry_skew = Duration::from_secs(30);
    let mut m = M::new(config, 1);
    m.login(
        T0,
        TokenSet::new("a1")
            .with_refresh_token("r1")
            .with_expires_in(Duration::from_secs(300)),
    )
    .unwrap();
    drain(&mut m);
    start_and_send(&mut m, at(100_000), RequestSpec::IDEMPOTENT);
    // Within the skew of expiry: refresh first, no 401 round trip.
    let b = m
        .start_request(at(271_000), RequestSpec::IDEMPOTENT)
        .unwrap();
    let acts = drain(&mut m);
    assert_eq!(acts[0..1], [Act::Refresh(refreshes(&acts)[0], "r1".into())]);
    assert!(waiting(&m, b));

    // Refresh-ahead: refresh in the background while the token is still served.
    let mut config = Config::default();
    config.refresh_ahead = Some(Duration::from_secs(120));
    let mut m = M::new(config, 1);
    m.login(
        T0,
        TokenSet::new("a1")
            .with_refresh_token("r1")
            .with_expires_in(Duration::from_secs(300)),
    )
    .unwrap();
    drain(&mut m);
    // The threshold is jittered between 60 and 120 s before expiry.
    let early = m
        .start_request(at(179_000), RequestSpec::IDEMPOTENT)
        .unwrap();
    assert_eq!(drain(&mut m), vec![Act::Send(early, "a1".into())]);
    let c = m
        .start_request(at(240_000), RequestSpec::IDEMPOTENT)
        .unwrap();
    let acts = drain(&mut m);
    assert_eq!(refreshes(&acts).len(), 1);
    assert!(acts.contains(&Act::Send(c, "a1".into())));
    let d = m
        .start_request(at(241_000), RequestSpec::IDEMPOTENT)
        .unwrap();
    assert_eq!(
        drain(&mut m),
        vec![Act::Send(d, "a1".into())],
        "one background refresh only"
    );
}

#[test]
fn b08_transient_retry_rules() {
    let mut m = logged_in(Config::default());
    // Retry-After is honoured.
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(
        T0,
        a,
        Response::status(503).with_retry_after(Duration::from_secs(7)),
    )
    .unwrap();
    assert_eq!(drain(&mut m), vec![]);
    assert_eq!(backing_off(&m, a), Some(at(7_000)));
    m.handle_timeout(at(6_999));
    assert!(drain(&mut m).is_empty());
    m.handle_timeout(at(7_000));
    assert_eq!(
        drain(&mut m),
        vec![Act::Retry(a, "a1".into(), RetryReason::Transient)]
    );
    m.handle_response(at(7_000), a, Response::status(200))
        .unwrap();
    assert_eq!(drain(&mut m), vec![Act::Deliver(a)]);

    // Non-idempotent after an error that may have reached the server: not replayed.
    let p = start_and_send(&mut m, T0, RequestSpec::NON_IDEMPOTENT);
    m.handle_send_error(T0, p, SendErrorKind::Timeout).unwrap();
    assert_eq!(
        drain(&mut m),
        vec![Act::Fail(p, Failure::Transport(SendErrorKind::Timeout))]
    );
    // ... but a connect error never reached it, and an idempotency key makes it safe.
    let p = start_and_send(&mut m, T0, RequestSpec::NON_IDEMPOTENT);
    m.handle_send_error(T0, p, SendErrorKind::Connect).unwrap();
    assert!(drain(&mut m).is_empty() && backing_off(&m, p).is_some());
    let k = start_and_send(&mut m, T0, RequestSpec::for_method("POST", true));
    m.handle_send_error(T0, k, SendErrorKind::Io).unwrap();
    assert!(drain(&mut m).is_empty() && backing_off(&m, k).is_some());
    // A 502 may have been acted on by the origin: POST gets the response.
    let q = start_and_send(&mut m, T0, RequestSpec::NON_IDEMPOTENT);
    m.handle_response(T0, q, Response::status(502)).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Deliver(q)]);
    // A 401 retry is always allowed, even for POST.
    let mut m = logged_in(Config::default());
    let p = start_and_send(&mut m, T0, RequestSpec::NON_IDEMPOTENT);
    m.handle_response(T0, p, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    m.handle_refresh_outcome(T0, r, ok_refresh("a2", "r2"))
        .unwrap();
    assert!(drain(&mut m).contains(&Act::Retry(p, "a2".into(), RetryReason::NewToken)));

    // Retry budget: an outage stops retries instead of multiplying load.
    let mut m = logged_in(Config::default());
    let mut retried = 0;
    for _ in 0..8 {
        let id = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
        m.handle_response(T0, id, Response::status(503)).unwrap();
        match drain(&mut m).as_slice() {
            [] if backing_off(&m, id).is_some() => retried += 1,
            [Act::Deliver(_)] => {}
            other => panic!("{other:?}"),
        }
    }
    // Bucket of 10, retries only while more than half is left: 4 retries.
    assert_eq!(retried, 4);
    // A Retry-After beyond the cap is not waited for.
    let mut m = logged_in(Config::default());
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(
        T0,
        a,
        Response::status(429).with_retry_after(Duration::from_secs(3600)),
    )
    .unwrap();
    assert_eq!(drain(&mut m), vec![Act::Deliver(a)]);
}

#[test]
fn b09_insufficient_scope_is_forbidden_not_refresh() {
    let mut m = logged_in(Config::default());
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(
        T0,
        a,
        Response::status(403).with_bearer_error(BearerError::InsufficientScope),
    )
    .unwrap();
    assert_eq!(drain(&mut m), vec![Act::Fail(a, Failure::Forbidden)]);
    let b = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(
        T0,
        b,
        Response::status(401).with_bearer_error(BearerError::InsufficientScope),
    )
    .unwrap();
    assert_eq!(drain(&mut m), vec![Act::Fail(b, Failure::Forbidden)]);
    assert!(!m.snapshot().refresh_pending);
    // invalid_token is a refresh case.
    let c = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(
        T0,
        c,
        Response::status(401).with_bearer_error(BearerError::InvalidToken),
    )
    .unwrap();
    assert_eq!(refreshes(&drain(&mut m)).len(), 1);
    // The parser's own cases are in www_authenticate's unit tests and the fuzz target.
}

#[test]
fn b10_cancellation_releases_state_and_refresh_still_resolves() {
    let mut m = logged_in(Config::default());
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    let b = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    m.handle_response(T0, b, Response::status(401)).unwrap();
    drain(&mut m);
    // The request whose 401 started the refresh is abandoned.
    m.cancel(a).unwrap();
    assert_eq!(m.cancel(a), Err(Error::UnknownRequest));
    assert_eq!(m.snapshot().live, 1);
    // Its refresh still resolves for b.
    m.handle_refresh_outcome(T0, r, ok_refresh("a2", "r2"))
        .unwrap();
    assert!(drain(&mut m).contains(&Act::Retry(b, "a2".into(), RetryReason::NewToken)));

    // If the refresh is abandoned by its driver too, the deadline hands it to the next attempt.
    let mut m = logged_in(Config::default());
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    let b = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    m.handle_response(T0, b, Response::status(401)).unwrap();
    let r1 = refreshes(&drain(&mut m))[0];
    m.cancel(a).unwrap();
    let deadline = m.poll_timeout().unwrap();
    assert_eq!(deadline, T0 + Config::default().refresh_timeout);
    m.handle_timeout(deadline);
    m.handle_timeout(m.poll_timeout().unwrap());
    let r2 = refreshes(&drain(&mut m))[0];
    assert_ne!(r1, r2);
    m.handle_refresh_outcome(deadline, r2, ok_refresh("a2", "r2"))
        .unwrap();
    assert!(drain(&mut m).contains(&Act::Retry(b, "a2".into(), RetryReason::NewToken)));
}

#[test]
fn b11_refresh_timeout_is_transient() {
    let mut config = Config::default();
    config.refresh_timeout = Duration::from_secs(5);
    config.max_refresh_attempts = 2;
    let mut m = logged_in(config);
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    let r1 = refreshes(&drain(&mut m))[0];
    assert_eq!(m.poll_timeout(), Some(at(5_000)));
    m.handle_timeout(at(5_000));
    assert!(
        drain(&mut m).is_empty(),
        "first timeout: backoff, waiter keeps waiting"
    );
    let t = m.poll_timeout().unwrap();
    m.handle_timeout(t);
    let r2 = refreshes(&drain(&mut m))[0];
    // The timed-out attempt's failure report is stale now.
    assert_eq!(
        m.handle_refresh_outcome(t, r1, RefreshOutcome::Transient { retry_after: None }),
        Err(Error::UnknownRefresh)
    );
    let d = m.poll_timeout().unwrap();
    m.handle_timeout(d);
    assert_eq!(
        drain(&mut m),
        vec![Act::Fail(a, Failure::RefreshUnavailable)]
    );
    assert_eq!(m.session(), SessionState::Active);
    // A late success for a timed-out attempt is still accepted: with rotation those may be
    // the only live tokens.
    m.handle_refresh_outcome(d, r2, ok_refresh("a2", "r2"))
        .unwrap();
    assert_eq!(m.tokens().unwrap().access_token.expose_secret(), "a2");
}

#[test]
fn b12_login_and_logout_are_inputs() {
    let mut m = M::new(Config::default(), 0);
    let a = m.start_request(T0, RequestSpec::IDEMPOTENT).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Fail(a, Failure::LoggedOut)]);
    m.login(T0, TokenSet::new("a1").with_refresh_token("r1"))
        .unwrap();
    drain(&mut m);
    let b = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    let c = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, c, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    m.logout(T0);
    let acts = drain(&mut m);
    assert!(acts.contains(&Act::Persist(None)));
    assert!(acts.contains(&Act::Fail(b, Failure::LoggedOut)));
    assert!(acts.contains(&Act::Fail(c, Failure::LoggedOut)));
    assert_eq!(
        m.handle_refresh_outcome(T0, r, RefreshOutcome::Rejected),
        Err(Error::UnknownRefresh)
    );
    assert!(!acts.contains(&Act::LoginRequired));
    // Login installs a new session.
    m.login(T0, TokenSet::new("b1")).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Persist(Some(("b1".into(), None)))]);
    start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
}

#[test]
fn b13_bad_input_is_an_error_not_a_panic() {
    let mut m = logged_in(Config::default());
    let a = m.start_request(T0, RequestSpec::IDEMPOTENT).unwrap();
    // Response before the send was handed out.
    assert_eq!(
        m.handle_response(T0, a, Response::status(200)),
        Err(Error::UnexpectedEvent)
    );
    drain(&mut m);
    m.handle_response(T0, a, Response::status(200)).unwrap();
    // Duplicate.
    assert_eq!(
        m.handle_response(T0, a, Response::status(200)),
        Err(Error::UnexpectedEvent)
    );
    assert_eq!(drain(&mut m), vec![Act::Deliver(a)], "exactly one outcome");
    // Finished / unknown ids.
    assert_eq!(
        m.handle_response(T0, a, Response::status(200)),
        Err(Error::UnknownRequest)
    );
    assert_eq!(
        m.handle_send_error(T0, a, SendErrorKind::Io),
        Err(Error::UnknownRequest)
    );
    assert_eq!(m.cancel(a), Err(Error::UnknownRequest));
    // Refresh outcome never asked for.
    let bogus = {
        let b = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
        m.handle_response(T0, b, Response::status(401)).unwrap();
        let r = refreshes(&drain(&mut m))[0];
        m.handle_refresh_outcome(T0, r, ok_refresh("a2", "r2"))
            .unwrap();
        drain(&mut m);
        m.handle_response(T0, b, Response::status(200)).unwrap();
        drain(&mut m);
        r
    };
    assert_eq!(
        m.handle_refresh_outcome(T0, bogus, RefreshOutcome::Rejected),
        Err(Error::UnknownRefresh)
    );
    // Oversized and invalid tokens.
    let big = "x".repeat(129);
    assert_eq!(
        m.login(T0, TokenSet::new(&big)),
        Err(Error::TokenTooLarge { capacity: 128 })
    );
    assert_eq!(
        m.login(T0, TokenSet::new("has space")),
        Err(Error::InvalidToken)
    );
    assert_eq!(m.login(T0, TokenSet::new("")), Err(Error::InvalidToken));
    assert_eq!(
        m.tokens().unwrap().access_token.expose_secret(),
        "a2",
        "refused login changes nothing"
    );
    // An oversized token from a refresh: typed error, and every waiter still gets its outcome.
    let c = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, c, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    assert_eq!(
        m.handle_refresh_outcome(T0, r, ok_refresh(&big, "r3")),
        Err(Error::TokenTooLarge { capacity: 128 })
    );
    // The refresh token that came with it is kept (the old one may be spent)
    // and the next attempt presents it.
    assert_eq!(
        drain(&mut m),
        vec![Act::Persist(Some(("a2".into(), Some("r3".into()))))]
    );
    m.handle_timeout(T0 + Duration::from_secs(60));
    let acts = drain(&mut m);
    let r = refreshes(&acts)[0];
    assert!(acts.contains(&Act::Refresh(r, "r3".into())), "{acts:?}");
    // Nothing usable at all: the session is over, and every waiter gets its outcome.
    assert_eq!(
        m.handle_refresh_outcome(T0, r, ok_refresh(&big, &big)),
        Err(Error::TokenTooLarge { capacity: 128 })
    );
    let acts = drain(&mut m);
    assert!(
        acts.contains(&Act::Fail(c, Failure::LoginRequired)),
        "{acts:?}"
    );
    // Full table.
    let mut m = logged_in(Config::default());
    for _ in 0..8 {
        m.start_request(T0, RequestSpec::IDEMPOTENT).unwrap();
    }
    assert_eq!(
        m.start_request(T0, RequestSpec::IDEMPOTENT),
        Err(Error::Full)
    );
}

#[test]
fn b14_tokens_are_persisted_whenever_they_change() {
    let mut m = M::new(Config::default(), 0);
    m.login(T0, TokenSet::new("a1").with_refresh_token("r1"))
        .unwrap();
    assert_eq!(
        drain(&mut m),
        vec![Act::Persist(Some(("a1".into(), Some("r1".into()))))]
    );
    let a = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, a, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    m.handle_refresh_outcome(T0, r, ok_refresh("a2", "r2"))
        .unwrap();
    let acts = drain(&mut m);
    // Persist comes first: the rotated refresh token is stored before anything else happens.
    assert_eq!(
        acts[0],
        Act::Persist(Some(("a2".into(), Some("r2".into()))))
    );
    m.handle_response(T0, a, Response::status(200)).unwrap();
    let acts = drain(&mut m);
    assert!(
        !acts.iter().any(|x| matches!(x, Act::Persist(_))),
        "no change, no persist"
    );
    let b = start_and_send(&mut m, T0, RequestSpec::IDEMPOTENT);
    m.handle_response(T0, b, Response::status(401)).unwrap();
    let r = refreshes(&drain(&mut m))[0];
    m.handle_refresh_outcome(T0, r, RefreshOutcome::Rejected)
        .unwrap();
    assert!(
        drain(&mut m).contains(&Act::Persist(None)),
        "lost session: delete stored tokens"
    );
    m.login(T0, TokenSet::new("a5")).unwrap();
    m.logout(T0);
    assert_eq!(drain(&mut m), vec![Act::Persist(None)]);
}

#[test]
fn b15_secrets_never_leak() {
    let mut m = M::new(Config::default(), 0);
    m.login(
        T0,
        TokenSet::new("SECRET-ACCESS").with_refresh_token("SECRET-REFRESH"),
    )
    .unwrap();
    let mut seen = String::new();
    let id = m.start_request(T0, RequestSpec::IDEMPOTENT).unwrap();
    while let Some(a) = m.poll_action() {
        seen += &format!("{a:?}");
        // The refresh token never appears in an action for the resource server.
        if let Action::Send { token, .. } = a {
            assert_eq!(token.expose_secret(), "SECRET-ACCESS");
        }
    }
    m.handle_response(T0, id, Response::status(401)).unwrap();
    while let Some(a) = m.poll_action() {
        seen += &format!("{a:?}");
    }
    seen += &format!("{m:?}{:?}", m.tokens());
    seen += &format!(
        "{:?}",
        TokenSet::new("SECRET-ACCESS").with_refresh_token("SECRET-REFRESH")
    );
    for e in [
        Error::Full,
        Error::TokenTooLarge { capacity: 1 },
        Error::InvalidToken,
    ] {
        seen += &format!("{e} {e:?}");
    }
    for f in [
        Failure::Unauthorized,
        Failure::LoginRequired,
        Failure::Transport(SendErrorKind::Io),
    ] {
        seen += &format!("{f} {f:?}");
    }
    assert!(seen.contains("redacted"));
    assert!(!seen.contains("SECRET"), "{seen}");
}

#[test]
fn determinism_same_inputs_same_actions() {
    let run = |seed| {
        let mut m = M::new(Config::default(), seed);
        m.login(T0, TokenSet::new("a1").with_refresh_token("r1"))
            .unwrap();
        let mut log = drain(&mut m);
        let ids: Vec<_> = (0..4)
            .map(|_| m.start_request(T0, RequestSpec::IDEMPOTENT).unwrap())
            .collect();
        log.extend(drain(&mut m));
        for &id in &ids {
            m.handle_response(T0, id, Response::status(503)).unwrap();
        }
        log.extend(drain(&mut m));
        let backoffs: Vec<_> = ids.iter().map(|&id| backing_off(&m, id)).collect();
        (log, backoffs)
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6), "the seed drives the jitter");
}
