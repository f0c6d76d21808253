//! Small contracts of the public API that the behaviour tests do not pin
//! down on their own (found by mutation testing: each test here kills
//! mutants that survived the behaviour, model and exhaustive tests).

use core::time::Duration;
#[cfg(feature = "model")]
use std::collections::hash_map::DefaultHasher;
#[cfg(feature = "model")]
use std::hash::Hasher;

use refresh_machine::grant::{parse_token_response, GrantError, OAuthError};
use refresh_machine::www_authenticate::BearerError;
use refresh_machine::{
    is_idempotent_method, Action, Config, Failure, Instant, RefreshMachine, RefreshOutcome,
    RequestId, RequestSpec, RequestState, Response, SendErrorKind, TokenSet,
};

type M = RefreshMachine<4, 64>;

fn secs(s: u64) -> Instant {
    Instant::from_duration(Duration::from_secs(s))
}

fn logged_in(config: Config, expires_s: Option<u64>) -> M {
    let mut m = M::new(config, 1);
    let mut set = TokenSet::new("a1").with_refresh_token("r1");
    if let Some(s) = expires_s {
        set = set.with_expires_in(Duration::from_secs(s));
    }
    m.login(Instant::ZERO, set).unwrap();
    while m.poll_action().is_some() {}
    m
}

/// Names of the actions `poll_action` gives now.
fn drain(m: &mut M) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(a) = m.poll_action() {
        out.push(match a {
            Action::Send { retry: None, .. } => "send".to_owned(),
            Action::Send { retry: Some(_), .. } => "retry".to_owned(),
            Action::Deliver { .. } => "deliver".to_owned(),
            Action::Fail { failure, .. } => format!("fail:{failure:?}"),
            Action::Refresh { .. } => "refresh".to_owned(),
            Action::PersistTokens { .. } => "persist".to_owned(),
            Action::LoginRequired => "login-required".to_owned(),
        });
    }
    out
}

/// Start an idempotent request at time zero.
fn start(m: &mut M) -> RequestId {
    m.start_request(Instant::ZERO, RequestSpec::IDEMPOTENT)
        .unwrap()
}

#[cfg(feature = "model")]
fn fingerprint(m: &M) -> u64 {
    let mut h = DefaultHasher::new();
    m.hash_state(&mut h);
    h.finish()
}

#[test]
fn action_request_and_is_outcome() {
    let mut m = logged_in(Config::DEFAULT, None);
    let id = start(&mut m);
    let a = m.poll_action().unwrap();
    assert!(matches!(a, Action::Send { .. }));
    assert_eq!(a.request(), Some(id));
    assert!(!a.is_outcome());
    m.handle_response(Instant::ZERO, id, Response::status(200))
        .unwrap();
    let a = m.poll_action().unwrap();
    assert_eq!(a.request(), Some(id));
    assert!(a.is_outcome());
    assert_eq!(Action::LoginRequired.request(), None);
    assert!(!Action::LoginRequired.is_outcome());
}

#[test]
fn max_sends_is_one_plus_the_retries() {
    assert_eq!(Config::DEFAULT.max_sends(), 1 + 1 + 3);
    let mut c = Config::DEFAULT;
    c.max_auth_retries = 2;
    c.max_transient_retries = 0;
    assert_eq!(c.max_sends(), 3);
}

#[test]
fn send_error_kinds_describe_themselves() {
    let texts = [
        SendErrorKind::Connect.to_string(),
        SendErrorKind::Timeout.to_string(),
        SendErrorKind::Io.to_string(),
    ];
    assert!(texts.iter().all(|t| !t.is_empty()));
    assert_ne!(texts[0], texts[1]);
    assert_ne!(texts[1], texts[2]);
}

#[test]
fn debug_output_names_the_type_and_hides_tokens() {
    let m = logged_in(Config::DEFAULT, None);
    let text = format!("{m:?}");
    assert!(text.contains("RefreshMachine"), "{text}");
    assert!(!text.contains("a1\"") && !text.contains("r1"), "{text}");
    let set = TokenSet::new("secret-access").with_refresh_token("secret-refresh");
    let text = format!("{set:?}");
    assert!(text.contains("TokenSet"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[test]
#[cfg(feature = "model")]
fn hash_state_tells_states_apart_and_clones_match() {
    let mut a = logged_in(Config::DEFAULT, None);
    let b = a.clone();
    assert_eq!(fingerprint(&a), fingerprint(&b));
    start(&mut a);
    assert_ne!(fingerprint(&a), fingerprint(&b));
}

#[test]
#[cfg(feature = "model")]
fn reseed_mixes_the_bits_into_the_state() {
    // reseed(b) on seed s is the same state as seed s^b reseeded with nothing.
    let mut a = M::new(Config::DEFAULT, 0b1100);
    a.reseed(0b1010);
    let mut b = M::new(Config::DEFAULT, 0b0110);
    b.reseed(0);
    assert_eq!(fingerprint(&a), fingerprint(&b));
    let c = M::new(Config::DEFAULT, 0b0110);
    assert_ne!(
        fingerprint(&b),
        fingerprint(&c),
        "reseed advances the generator"
    );
}

#[test]
fn snapshot_counts_each_phase() {
    let mut m = logged_in(Config::DEFAULT, None);
    let gen0 = m.snapshot().token_generation;
    let ids: Vec<RequestId> = (0..3).map(|_| start(&mut m)).collect();
    drain(&mut m);
    let s = m.snapshot();
    assert_eq!(
        (s.live, s.in_flight, s.waiting, s.backing_off),
        (3, 3, 0, 0)
    );
    // One goes into backoff, one gets a 401 (refresh: it and the rest wait).
    m.handle_response(Instant::ZERO, ids[0], Response::status(503))
        .unwrap();
    drain(&mut m);
    let s = m.snapshot();
    assert_eq!((s.live, s.in_flight, s.backing_off), (3, 2, 1));
    m.handle_response(Instant::ZERO, ids[1], Response::status(401))
        .unwrap();
    drain(&mut m);
    let s = m.snapshot();
    assert_eq!((s.in_flight, s.waiting, s.backing_off), (1, 1, 1));
    assert!(s.refresh_in_flight);
    assert_eq!(s.token_generation, gen0);
}

#[test]
fn token_generation_moves_with_each_new_token() {
    let mut m = logged_in(Config::DEFAULT, None);
    let g0 = m.snapshot().token_generation;
    let id = start(&mut m);
    drain(&mut m);
    m.handle_response(Instant::ZERO, id, Response::status(401))
        .unwrap();
    let refresh = loop {
        match m.poll_action() {
            Some(Action::Refresh { id, .. }) => break id,
            Some(_) => {}
            None => panic!("no refresh"),
        }
    };
    m.handle_refresh_outcome(
        Instant::ZERO,
        refresh,
        RefreshOutcome::Success(TokenSet::new("a2")),
    )
    .unwrap();
    assert_eq!(m.snapshot().token_generation, g0 + 1);
}

#[test]
fn sends_counts_each_send_of_a_request() {
    let mut m = logged_in(Config::DEFAULT, None);
    let id = start(&mut m);
    assert_eq!(m.sends(id), Ok(0));
    drain(&mut m);
    assert_eq!(m.sends(id), Ok(1));
    m.handle_response(Instant::ZERO, id, Response::status(503))
        .unwrap();
    drain(&mut m);
    let t = m.poll_timeout().unwrap();
    m.handle_timeout(t);
    assert_eq!(drain(&mut m), ["retry"]);
    assert_eq!(m.sends(id), Ok(2));
}

#[test]
fn poll_request_gives_that_request_its_action() {
    let mut m = logged_in(Config::DEFAULT, None);
    let a = start(&mut m);
    let b = start(&mut m);
    let action = m.poll_request(b).unwrap().expect("b has a send");
    assert_eq!(action.request(), Some(b));
    assert!(m.poll_request(b).unwrap().is_none());
    assert_eq!(
        m.poll_request(a).unwrap().and_then(|x| x.request()),
        Some(a)
    );
}

#[test]
fn waiting_and_backing_off_are_states_not_actions() {
    let mut m = logged_in(Config::DEFAULT, None);
    let a = start(&mut m);
    let b = start(&mut m);
    assert_eq!(m.request_state(a), Ok(RequestState::ReadyToSend));
    drain(&mut m);
    assert_eq!(m.request_state(a), Ok(RequestState::InFlight));
    m.handle_response(Instant::ZERO, a, Response::status(503))
        .unwrap();
    assert!(
        drain(&mut m).is_empty(),
        "a backoff asks nothing of the driver"
    );
    let until = m.poll_timeout().expect("the backoff's deadline");
    assert_eq!(m.request_state(a), Ok(RequestState::BackingOff { until }));
    m.handle_response(Instant::ZERO, b, Response::status(401))
        .unwrap();
    assert_eq!(drain(&mut m), ["refresh"]);
    assert_eq!(m.request_state(b), Ok(RequestState::WaitingForRefresh));
    m.cancel(b).unwrap();
    assert_eq!(
        m.request_state(b),
        Err(refresh_machine::Error::UnknownRequest)
    );
}

#[test]
fn deadlines_do_not_fire_early() {
    let mut c = Config::DEFAULT;
    c.refresh_timeout = Duration::from_secs(10);
    let mut m = logged_in(c, None);
    let id = start(&mut m);
    drain(&mut m);
    m.handle_response(Instant::ZERO, id, Response::status(401))
        .unwrap();
    drain(&mut m);
    assert!(m.snapshot().refresh_in_flight);
    m.handle_timeout(secs(9));
    assert!(
        m.snapshot().refresh_in_flight,
        "refresh abandoned before its deadline"
    );
    m.handle_timeout(secs(10));
    assert!(!m.snapshot().refresh_in_flight);
    // Now in refresh backoff: not re-queued before it ends.
    let until = m.poll_timeout().unwrap();
    assert!(until > secs(10));
    m.handle_timeout(Instant::from_duration(
        until.since_epoch() - Duration::from_nanos(1),
    ));
    assert!(!drain(&mut m).contains(&"refresh".to_owned()));
    m.handle_timeout(until);
    assert!(drain(&mut m).contains(&"refresh".to_owned()));
}

#[test]
fn expiry_margin_boundaries() {
    // expires_in 100 s, skew 30 s: usable strictly before t = 70 s.
    let mut m = logged_in(Config::DEFAULT, Some(100));
    m.start_request(secs(69), RequestSpec::IDEMPOTENT).unwrap();
    assert_eq!(drain(&mut m), ["send"]);
    let mut m = logged_in(Config::DEFAULT, Some(100));
    m.start_request(secs(70), RequestSpec::IDEMPOTENT).unwrap();
    let acts = drain(&mut m);
    assert!(
        acts.contains(&"refresh".to_owned()) && !acts.contains(&"send".to_owned()),
        "{acts:?}"
    );
    // expires_in 20 s (shorter than the skew): the margin is half the lifetime.
    let mut m = logged_in(Config::DEFAULT, Some(20));
    m.start_request(secs(9), RequestSpec::IDEMPOTENT).unwrap();
    assert_eq!(drain(&mut m), ["send"]);
    let mut m = logged_in(Config::DEFAULT, Some(20));
    m.start_request(secs(10), RequestSpec::IDEMPOTENT).unwrap();
    assert!(!drain(&mut m).contains(&"send".to_owned()));
}

#[test]
fn a_queued_request_does_not_go_out_with_a_refused_token() {
    let mut m = logged_in(Config::DEFAULT, None);
    let a = start(&mut m);
    assert_eq!(drain(&mut m), ["send"]);
    // b is queued (not polled yet) when a's 401 arrives.
    let _b = start(&mut m);
    m.handle_response(Instant::ZERO, a, Response::status(401))
        .unwrap();
    let acts = drain(&mut m);
    assert!(!acts.contains(&"send".to_owned()), "{acts:?}");
    let waiting = [a, _b]
        .iter()
        .filter(|&&id| m.request_state(id) == Ok(RequestState::WaitingForRefresh))
        .count();
    assert_eq!(waiting, 2, "{acts:?}");
}

#[test]
fn a_body_that_cannot_be_replayed_fails_with_that_reason() {
    let mut m = logged_in(Config::DEFAULT, None);
    let spec = RequestSpec {
        idempotent: true,
        replayable: false,
    };
    let id = m.start_request(Instant::ZERO, spec).unwrap();
    drain(&mut m);
    m.handle_send_error(Instant::ZERO, id, SendErrorKind::Connect)
        .unwrap();
    assert_eq!(
        drain(&mut m),
        [format!("fail:{:?}", Failure::BodyNotReplayable)]
    );
}

#[test]
fn successes_refill_the_retry_budget() {
    let mut c = Config::DEFAULT;
    c.retry_budget.max_tokens = 3; // retries allowed while more than 1500 milli are left
    c.retry_budget.success_credit_milli = 1000;
    let mut m = logged_in(c, None);
    let call = |m: &mut M, statuses: &[u16]| -> Vec<String> {
        let id = start(m);
        let mut all = drain(m);
        for &s in statuses {
            m.handle_response(
                Instant::ZERO,
                id,
                Response::status(s).with_retry_after(Duration::ZERO),
            )
            .unwrap();
            all.extend(drain(m));
            if let Some(t) = m.poll_timeout() {
                m.handle_timeout(t);
                all.extend(drain(m));
            }
        }
        all
    };
    // 3000 -> 2000: retried; 2000 -> 1000: not retried, delivered.
    assert_eq!(call(&mut m, &[503, 503]), ["send", "retry", "deliver"]);
    // One success: 2000. A failure then takes it to 1000: delivered as is.
    assert_eq!(call(&mut m, &[200]), ["send", "deliver"]);
    assert_eq!(call(&mut m, &[503]), ["send", "deliver"]);
    // Two successes: 3000 (capped). A failure is retried again.
    call(&mut m, &[200]);
    call(&mut m, &[200]);
    assert_eq!(call(&mut m, &[503, 200]), ["send", "retry", "deliver"]);
}

#[test]
fn idempotent_methods_per_rfc_9110() {
    for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
        assert!(is_idempotent_method(m), "{m}");
    }
    for m in ["POST", "PATCH", "CONNECT", "get"] {
        assert!(!is_idempotent_method(m), "{m}");
    }
}

#[cfg(feature = "std")]
#[test]
fn instants_and_the_std_clock() {
    use refresh_machine::StdClock;
    assert_eq!(
        secs(5).saturating_duration_since(secs(2)),
        Duration::from_secs(3)
    );
    assert_eq!(secs(2).saturating_duration_since(secs(5)), Duration::ZERO);
    let clock = StdClock::new();
    let std_now = std::time::Instant::now();
    let a = clock.to_instant(std_now + Duration::from_secs(5));
    assert!(a >= secs(5), "{a:?}");
    let back = clock.to_std(a);
    assert!(back >= std_now + Duration::from_secs(5));
    assert!(back <= std_now + Duration::from_secs(6));
    let t1 = clock.now();
    std::thread::sleep(Duration::from_millis(2));
    assert!(clock.now() > t1);
    let unix = StdClock::unix_now().unwrap();
    assert!(unix > 1_700_000_000, "{unix}");
}

#[test]
fn every_standard_oauth_error_code_is_recognised() {
    for (code, want) in [
        ("invalid_request", OAuthError::InvalidRequest),
        ("invalid_client", OAuthError::InvalidClient),
        ("invalid_grant", OAuthError::InvalidGrant),
        ("unauthorized_client", OAuthError::UnauthorizedClient),
        ("unsupported_grant_type", OAuthError::UnsupportedGrantType),
        ("invalid_scope", OAuthError::InvalidScope),
        (
            "temporarily_unavailable",
            OAuthError::TemporarilyUnavailable,
        ),
        ("server_error", OAuthError::ServerError),
        ("made_up", OAuthError::Other),
    ] {
        let mut body = format!(r#"{{"error":"{code}"}}"#).into_bytes();
        match parse_token_response(&mut body) {
            Err(GrantError::OAuth(got)) => assert_eq!(got, want, "{code}"),
            Err(e) => panic!("{code}: {e:?}"),
            Ok(_) => panic!("{code}: parsed as tokens"),
        }
        assert_eq!(want.code() == code, want != OAuthError::Other);
    }
}

#[cfg(feature = "std")]
#[test]
fn std_clock_saturates_far_future_instants() {
    use refresh_machine::StdClock;
    let clock = StdClock::new();
    let base = clock.to_std(Instant::ZERO);
    let far = clock.to_std(Instant::from_duration(Duration::MAX));
    assert_eq!(far - base, Duration::from_secs(86_400 * 365));
}

#[test]
fn oauth_errors_and_client_auth_print_safely() {
    assert_eq!(OAuthError::InvalidGrant.to_string(), "invalid_grant");
    let auth = refresh_machine::grant::ClientAuth::Basic {
        client_id: "app",
        client_secret: "hunter2",
    };
    let text = format!("{auth:?}");
    assert!(text.contains("app") && text.contains("redacted"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn password_grant_body_is_form_encoded() {
    let mut buf = [0u8; 128];
    let body = refresh_machine::grant::password_grant_body(
        &mut buf,
        "alice",
        "a b&c",
        &refresh_machine::grant::ClientAuth::Public { client_id: "app" },
        None,
    )
    .unwrap();
    assert_eq!(
        body,
        "grant_type=password&username=alice&password=a+b%26c&client_id=app"
    );
}

#[test]
fn a_401_from_a_hop_without_the_token_is_delivered_without_a_refresh() {
    let mut m = logged_in(Config::DEFAULT, None);
    let a = start(&mut m);
    drain(&mut m);
    // A redirect took the request to an origin the token is not for: its 401
    // says nothing about the token.
    m.handle_response(
        Instant::ZERO,
        a,
        Response::status(401).with_token_sent(false),
    )
    .unwrap();
    assert_eq!(drain(&mut m), ["deliver"]);
    assert!(!m.snapshot().refresh_pending);
    // The same 401 from a hop that carried the token is a refused token.
    let b = start(&mut m);
    drain(&mut m);
    m.handle_response(Instant::ZERO, b, Response::status(401))
        .unwrap();
    assert_eq!(drain(&mut m), ["refresh"]);
    // Other statuses from a token-less hop keep their meaning (503: backoff).
    let mut m = logged_in(Config::DEFAULT, None);
    let c = start(&mut m);
    drain(&mut m);
    m.handle_response(
        Instant::ZERO,
        c,
        Response::status(503).with_token_sent(false),
    )
    .unwrap();
    assert!(matches!(
        m.request_state(c),
        Ok(RequestState::BackingOff { .. })
    ));
    // As before the token-less hop became an input (the session rewrote such
    // a 401, and only a 401, to a 400): a token-less 401 is delivered even with
    // `insufficient_scope`, a token-less 403 with it is still `Forbidden`.
    let scope = |status| {
        Response::status(status)
            .with_bearer_error(BearerError::InsufficientScope)
            .with_token_sent(false)
    };
    let mut m = logged_in(Config::DEFAULT, None);
    let d = start(&mut m);
    let e = start(&mut m);
    drain(&mut m);
    m.handle_response(Instant::ZERO, d, scope(401)).unwrap();
    m.handle_response(Instant::ZERO, e, scope(403)).unwrap();
    assert_eq!(
        drain(&mut m),
        [
            "deliver".to_owned(),
            format!("fail:{:?}", Failure::Forbidden)
        ]
    );
}

#[test]
fn the_refresh_action_carries_its_deadline() {
    let mut c = Config::DEFAULT;
    c.refresh_timeout = Duration::from_secs(10);
    let mut m = logged_in(c, None);
    let a = m.start_request(secs(5), RequestSpec::IDEMPOTENT).unwrap();
    drain(&mut m);
    m.handle_response(secs(5), a, Response::status(401))
        .unwrap();
    match m.poll_refresh() {
        Some(Action::Refresh { deadline, .. }) => assert_eq!(deadline, secs(15)),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.poll_timeout(), Some(secs(15)));
    assert!(m.poll_refresh().is_none(), "handed out once");
    assert!(m.poll_notice().is_none());
}

/// Issue 14, rule 7: a backoff ceiling beyond u64 nanoseconds (584 years)
/// made the full-jitter draw overflow (`% (u64::MAX + 1)`) and panic.
#[test]
fn a_backoff_ceiling_of_centuries_does_not_panic() {
    let mut c = Config::DEFAULT;
    let centuries = Duration::from_secs(600 * 365 * 24 * 3600);
    c.request_backoff = refresh_machine::Backoff {
        base: centuries,
        max: centuries,
    };
    c.refresh_backoff = c.request_backoff;
    let mut m = logged_in(c, None);
    let a = start(&mut m);
    drain(&mut m);
    m.handle_response(Instant::ZERO, a, Response::status(503))
        .unwrap();
    assert!(matches!(
        m.request_state(a),
        Ok(RequestState::BackingOff { .. })
    ));
    // The refresh backoff draws from the same jitter.
    let b = start(&mut m);
    drain(&mut m);
    m.handle_response(Instant::ZERO, b, Response::status(401))
        .unwrap();
    let id = match m.poll_refresh() {
        Some(Action::Refresh { id, .. }) => id,
        other => panic!("{other:?}"),
    };
    m.handle_refresh_outcome(
        Instant::ZERO,
        id,
        RefreshOutcome::Transient { retry_after: None },
    )
    .unwrap();
    assert!(m.snapshot().refresh_pending, "backing off, not failed");
}

/// Issue 14, rule 7: request ids kept their slot in a `u16`, so above 65,536
/// slots two live requests had the same id.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "fills 65,537 slots (quadratic): .ci/run runs it in release"
)]
fn request_ids_do_not_alias_above_65536_slots() {
    // A machine this large does not fit a test thread's default stack.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            const N: usize = 65_537;
            let mut m: Box<RefreshMachine<N, 8>> =
                Box::new(RefreshMachine::new(Config::DEFAULT, 1));
            m.login(Instant::ZERO, TokenSet::new("a1").with_refresh_token("r1"))
                .unwrap();
            let ids: Vec<RequestId> = (0..N)
                .map(|_| {
                    m.start_request(Instant::ZERO, RequestSpec::IDEMPOTENT)
                        .unwrap()
                })
                .collect();
            assert_ne!(ids[0], ids[N - 1]);
            assert_eq!(ids[N - 1].slot(), N - 1);
            m.cancel(ids[N - 1]).unwrap();
            assert_eq!(
                m.request_state(ids[0]),
                Ok(RequestState::ReadyToSend),
                "cancelling the last request left the first alone"
            );
        })
        .unwrap()
        .join()
        .unwrap();
}

/// `Response::from_headers` reads the first `Retry-After` and the first
/// `WWW-Authenticate` that parses as a Bearer challenge, whatever the case
/// of the names, and nothing from other headers (mutants of its two guards
/// survived the whole suite: nothing called it).
#[test]
fn from_headers_reads_the_first_of_each_header() {
    let r = Response::from_headers(
        503,
        [("Retry-After", &b"5"[..]), ("retry-after", &b"9"[..])],
        None,
    );
    assert_eq!(r.retry_after, Some(Duration::from_secs(5)));
    assert_eq!(r.bearer_error, None);
    // A malformed first one still counts: the second is not used.
    let r = Response::from_headers(
        503,
        [("RETRY-AFTER", &b"soon"[..]), ("Retry-After", &b"9"[..])],
        None,
    );
    assert_eq!(r.retry_after, None);
    // An HTTP-date needs the wall clock.
    let date = &b"Sun, 06 Nov 1994 08:49:37 GMT"[..];
    let r = Response::from_headers(429, [("Retry-After", date)], Some(784_111_770));
    assert_eq!(r.retry_after, Some(Duration::from_secs(7)));
    let r = Response::from_headers(429, [("Retry-After", date)], None);
    assert_eq!(r.retry_after, None);

    let r = Response::from_headers(
        401,
        [(
            "WWW-Authenticate",
            &br#"Bearer error="insufficient_scope""#[..],
        )],
        None,
    );
    assert_eq!(r.bearer_error, Some(BearerError::InsufficientScope));
    assert_eq!(r.retry_after, None);
    assert_eq!(r.status, 401);
    assert!(r.token_sent);
    // The first Bearer challenge counts; one that is not Bearer (or does not
    // parse) is skipped; other headers are never read as challenges.
    let r = Response::from_headers(
        401,
        [
            ("X-Challenge", &b"Bearer error=invalid_request"[..]),
            ("www-authenticate", &br#"Basic realm="x""#[..]),
            ("WWW-Authenticate", &b"Bearer error=\"a"[..]),
            ("WWW-Authenticate", &b"Bearer error=invalid_token"[..]),
            ("WWW-Authenticate", &b"Bearer error=insufficient_scope"[..]),
        ],
        None,
    );
    assert_eq!(r.bearer_error, Some(BearerError::InvalidToken));
    // A challenge before the Retry-After does not hide it, nor the other way round.
    let r = Response::from_headers(
        401,
        [
            ("WWW-Authenticate", &b"Bearer error=invalid_token"[..]),
            ("Retry-After", &b"3"[..]),
        ],
        None,
    );
    assert_eq!(r.bearer_error, Some(BearerError::InvalidToken));
    assert_eq!(r.retry_after, Some(Duration::from_secs(3)));
}

/// A request's id names its slot, and a slot taken again gets a new id: the
/// finished request's id is refused instead of naming its successor
/// (mutants of `RequestId::slot` and of the slot generation survived).
#[test]
fn ids_name_their_slot_and_are_not_reused() {
    let mut m = logged_in(Config::DEFAULT, None);
    let ids: Vec<RequestId> = (0..3).map(|_| start(&mut m)).collect();
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(id.slot(), k);
    }
    drain(&mut m);
    m.handle_response(Instant::ZERO, ids[1], Response::status(200))
        .unwrap();
    assert_eq!(drain(&mut m), ["deliver"]);
    let again = start(&mut m);
    assert_eq!(again.slot(), 1);
    assert_ne!(again, ids[1]);
    assert_eq!(
        m.request_state(ids[1]),
        Err(refresh_machine::Error::UnknownRequest)
    );
    assert_eq!(
        m.cancel(ids[1]),
        Err(refresh_machine::Error::UnknownRequest)
    );
    assert_eq!(m.request_state(again), Ok(RequestState::ReadyToSend));
}

/// One request answered `status` at time zero, its outcome polled.
#[cfg(feature = "model")]
fn answered(config: Config, status: u16) -> M {
    let mut m = logged_in(config, None);
    let id = start(&mut m);
    drain(&mut m);
    m.handle_response(Instant::ZERO, id, Response::status(status))
        .unwrap();
    assert_eq!(drain(&mut m), ["deliver"]);
    m
}

/// `hash_state` covers each part of the state: machines that differ only
/// in the token store, the retry budget or the refresh round hash apart
/// (mutants emptying each part's `hash` survived the exhaustive test, which
/// only merges more states with them).
#[test]
#[cfg(feature = "model")]
fn hash_state_covers_tokens_budget_and_refresh_round() {
    // Tokens only: a 200 proves the token, a 500 does not; neither moves
    // the (full) budget.
    assert_ne!(
        fingerprint(&answered(Config::DEFAULT, 200)),
        fingerprint(&answered(Config::DEFAULT, 500))
    );
    // Budget only: with no transient retries a 503 is delivered as it is
    // but still costs a budget token; a 500 costs none.
    let mut no_retries = Config::DEFAULT;
    no_retries.max_transient_retries = 0;
    assert_ne!(
        fingerprint(&answered(no_retries, 503)),
        fingerprint(&answered(no_retries, 500))
    );
    // Refresh round only: a round given up with and without the token
    // endpoint's Retry-After, which outlives it.
    let gave_up = |retry_after: Option<Duration>| {
        let mut config = Config::DEFAULT;
        config.max_refresh_attempts = 1;
        let mut m = logged_in(config, None);
        let id = start(&mut m);
        drain(&mut m);
        m.handle_response(Instant::ZERO, id, Response::status(401))
            .unwrap();
        let Some(Action::Refresh { id: r, .. }) = m.poll_action() else {
            panic!("no refresh");
        };
        m.handle_refresh_outcome(Instant::ZERO, r, RefreshOutcome::Transient { retry_after })
            .unwrap();
        assert_eq!(drain(&mut m), ["fail:RefreshUnavailable"]);
        m
    };
    assert_ne!(
        fingerprint(&gave_up(Some(Duration::from_secs(5)))),
        fingerprint(&gave_up(None))
    );
}
