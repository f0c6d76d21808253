//! The core rules of issue 14 that lost or hung sessions, one named test
//! each (every one failed before its fix). Virtual time only.

use core::time::Duration;

use refresh_machine::grant::{classify_token_response, parse_token_response, OAuthError};
use refresh_machine::{
    Config, Failure, Instant, LoginRequiredReason, RefreshId, RefreshMachine, RefreshOutcome,
    RequestId, RequestSpec, Response, RetryReason, SessionState, TokenSet,
};
use refresh_machine_model::{drain, Act};

type M = RefreshMachine<8, 64>;

fn secs(s: u64) -> Instant {
    Instant::from_duration(Duration::from_secs(s))
}

fn logged_in(config: Config, expires_s: Option<u64>) -> M {
    let mut m = M::new(config, 3);
    let mut set = TokenSet::new("a1").with_refresh_token("r1");
    if let Some(s) = expires_s {
        set = set.with_expires_in(Duration::from_secs(s));
    }
    m.login(Instant::ZERO, set).unwrap();
    drain(&mut m);
    m
}

fn refresh_of(acts: &[Act]) -> Option<RefreshId> {
    acts.iter().find_map(|a| match a {
        Act::Refresh(id, _, _) => Some(*id),
        _ => None,
    })
}

fn sent_with(acts: &[Act], id: RequestId) -> Option<&str> {
    acts.iter().find_map(|a| match a {
        Act::Send(i, t) | Act::Retry(i, t, _) if *i == id => Some(t.as_str()),
        _ => None,
    })
}

fn tokens<'a>(access: &'a str, refresh: &'a str, expires_s: u64) -> RefreshOutcome<'a> {
    RefreshOutcome::Success(
        TokenSet::new(access)
            .with_refresh_token(refresh)
            .with_expires_in(Duration::from_secs(expires_s)),
    )
}

/// Rule 1: `expires_in: 0` made the machine refresh forever: the new token
/// was already "expired", the waiting request asked for another refresh, and
/// the request never went out.
#[test]
fn a_token_that_arrives_expired_is_still_used_by_its_waiters() {
    let mut m = logged_in(Config::DEFAULT, Some(60));
    let now = secs(100);
    let a = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    let b = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    let r = refresh_of(&drain(&mut m)).expect("expired token: refresh first");
    m.handle_refresh_outcome(now, r, tokens("a2", "r2", 0))
        .unwrap();
    let acts = drain(&mut m);
    assert_eq!(refresh_of(&acts), None, "refreshed again at once: {acts:?}");
    assert_eq!(sent_with(&acts, a), Some("a2"), "{acts:?}");
    assert_eq!(sent_with(&acts, b), Some("a2"), "{acts:?}");
    m.handle_response(now, a, Response::status(200)).unwrap();
    m.handle_response(now, b, Response::status(200)).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Deliver(a), Act::Deliver(b)]);
}

/// Rule 1, the bound: a server that always answers `expires_in: 0` costs at
/// most one refresh per request, however the requests interleave, and the
/// token endpoint is never called twice without a send in between.
#[test]
fn refreshes_with_no_response_between_them_are_bounded() {
    let mut m = logged_in(Config::DEFAULT, Some(0));
    let now = secs(1);
    let mut refreshes = 0;
    let mut issued = 1;
    let mut in_flight = Vec::new();
    for _ in 0..20 {
        // Requests pile up; nothing is answered yet.
        m.start_request(now, RequestSpec::IDEMPOTENT).ok();
        for _ in 0..10 {
            let acts = drain(&mut m);
            for act in &acts {
                if let Act::Send(id, _) | Act::Retry(id, _, _) = act {
                    in_flight.push(*id);
                }
            }
            let Some(r) = refresh_of(&acts) else { break };
            refreshes += 1;
            issued += 1;
            let (a, rt) = (format!("a{issued}"), format!("r{issued}"));
            m.handle_refresh_outcome(now, r, tokens(&a, &rt, 0))
                .unwrap();
        }
    }
    assert!(
        refreshes <= 3,
        "{refreshes} refreshes without a single response"
    );
    for id in in_flight.drain(..) {
        m.handle_response(now, id, Response::status(200)).unwrap();
    }
    drain(&mut m);
    assert_eq!(m.snapshot().live, 0);
}

/// Rule 2: a resource that answers 401 to every token cost one refresh per
/// request, and left the token marked refused so the next unrelated request
/// refreshed too (20 sequential requests: 40 token calls).
#[test]
fn a_fresh_token_refused_stops_refreshing_until_the_cool_down() {
    let mut config = Config::DEFAULT;
    config.refused_token_cooldown = Duration::from_secs(30);
    let mut m = logged_in(config, None);
    let mut refreshes = 0;
    let mut issued = 1;
    for k in 0..20u64 {
        let now = secs(k);
        let id = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
        let mut acts = drain(&mut m);
        for _ in 0..10 {
            if let Some(r) = refresh_of(&acts) {
                refreshes += 1;
                issued += 1;
                let (a, rt) = (format!("a{issued}"), format!("r{issued}"));
                m.handle_refresh_outcome(now, r, tokens(&a, &rt, 3600))
                    .unwrap();
            } else if sent_with(&acts, id).is_some() {
                m.handle_response(now, id, Response::status(401)).unwrap();
            } else {
                break;
            }
            acts = drain(&mut m);
        }
        assert!(
            acts.contains(&Act::Fail(id, Failure::Unauthorized)),
            "{acts:?}"
        );
    }
    assert_eq!(refreshes, 1, "one refresh, then the cool-down holds");

    // After the cool-down a 401 may refresh again, once.
    let now = secs(20 + 31);
    let id = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    let acts = drain(&mut m);
    assert_eq!(acts, vec![Act::Send(id, format!("a{issued}"))]);
    m.handle_response(now, id, Response::status(401)).unwrap();
    let acts = drain(&mut m);
    assert!(refresh_of(&acts).is_some(), "{acts:?}");
}

/// Rule 2: a success with the fresh token ends the cool-down at once (the
/// 401 was about one resource, not the token).
#[test]
fn a_success_ends_the_refused_token_cool_down() {
    let mut m = logged_in(Config::DEFAULT, None);
    let now = secs(1);
    let a = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    drain(&mut m);
    m.handle_response(now, a, Response::status(401)).unwrap();
    let r = refresh_of(&drain(&mut m)).unwrap();
    m.handle_refresh_outcome(now, r, tokens("a2", "r2", 3600))
        .unwrap();
    drain(&mut m);
    // The fresh token is refused: a fails, no refresh.
    m.handle_response(now, a, Response::status(401)).unwrap();
    let acts = drain(&mut m);
    assert_eq!(acts, vec![Act::Fail(a, Failure::Unauthorized)]);
    // Another request succeeds with it.
    let b = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Send(b, "a2".into())]);
    m.handle_response(now, b, Response::status(200)).unwrap();
    drain(&mut m);
    // Now a 401 is news again: refresh.
    let c = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    drain(&mut m);
    m.handle_response(now, c, Response::status(401)).unwrap();
    assert!(refresh_of(&drain(&mut m)).is_some());
}

/// Rule 3: a request retried once after a refresh, whose new token expired
/// while it was in flight (another request refreshed meanwhile), failed
/// `Unauthorized` "even with a fresh token". The token changed since its last
/// attempt: that is progress, not a loop.
#[test]
fn a_retry_after_the_token_changed_again_is_progress() {
    let mut m = logged_in(Config::DEFAULT, Some(3600));
    let now = secs(1);
    let a = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    drain(&mut m);
    m.handle_response(now, a, Response::status(401)).unwrap();
    let r = refresh_of(&drain(&mut m)).unwrap();
    // A short token: it expires while a's retry is in flight.
    m.handle_refresh_outcome(now, r, tokens("a2", "r2", 2))
        .unwrap();
    assert_eq!(sent_with(&drain(&mut m), a), Some("a2"));
    let later = secs(10);
    let c = m.start_request(later, RequestSpec::IDEMPOTENT).unwrap();
    let r = refresh_of(&drain(&mut m)).expect("a2 expired: refresh");
    m.handle_refresh_outcome(later, r, tokens("a3", "r3", 3600))
        .unwrap();
    assert_eq!(sent_with(&drain(&mut m), c), Some("a3"));
    // a's answer for a2 comes back 401: a2 is no longer current, so retry with a3.
    m.handle_response(later, a, Response::status(401)).unwrap();
    assert_eq!(
        drain(&mut m),
        vec![Act::Retry(a, "a3".into(), RetryReason::StaleToken)]
    );
    // Still bounded by the per-request send limit.
    assert!(m.sends(a).unwrap() <= Config::DEFAULT.max_sends());
    assert_eq!(m.session(), SessionState::Active);
}

/// Rule 9: refresh-ahead fired at one fixed threshold, so clients sharing an
/// issuer refreshed in lockstep. Each token's threshold is now drawn between
/// half of `refresh_ahead` and all of it.
#[test]
fn refresh_ahead_thresholds_are_spread_between_half_and_all_of_it() {
    let mut config = Config::DEFAULT;
    config.refresh_ahead = Some(Duration::from_secs(120));
    let mut thresholds = Vec::new();
    for seed in 0..64 {
        let mut m = M::new(config, seed);
        let set = TokenSet::new("a1")
            .with_refresh_token("r1")
            .with_expires_in(Duration::from_secs(600));
        m.login(Instant::ZERO, set).unwrap();
        drain(&mut m);
        // The first second (before expiry) at which a request starts the refresh.
        let fired = (400..600u64).find(|&s| {
            let mut probe = m.clone();
            probe
                .start_request(secs(s), RequestSpec::IDEMPOTENT)
                .unwrap();
            refresh_of(&drain(&mut probe)).is_some()
        });
        let before_expiry = 600 - fired.expect("refresh-ahead never fired");
        assert!(
            (60..=120).contains(&before_expiry),
            "seed {seed}: refreshed {before_expiry} s before expiry"
        );
        thresholds.push(before_expiry);
    }
    thresholds.sort_unstable();
    thresholds.dedup();
    assert!(
        thresholds.len() >= 20,
        "thresholds not spread: {thresholds:?}"
    );
}

/// Feeds a token endpoint answer, classified as every driver does, to a
/// machine whose one request waits for the refresh; returns the actions.
fn answer_refresh(m: &mut M, status: u16, body: &str) -> (Vec<Act>, RequestId) {
    let now = secs(10);
    let id = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    drain(m);
    m.handle_response(now, id, Response::status(401)).unwrap();
    let r = refresh_of(&drain(m)).expect("401: refresh");
    let mut body = body.as_bytes().to_vec();
    let c = classify_token_response(status, &mut body, None);
    let _ = m.handle_refresh_outcome(now, r, c.outcome);
    (drain(m), id)
}

/// Rule 4: only `invalid_grant` means the refresh token is dead. The other
/// RFC 6749 section 5.2 codes are a configuration fault (typed, tokens kept,
/// no login-required signal); `server_error`, `temporarily_unavailable`,
/// unknown codes and non-JSON bodies are transient. A 400 `server_error`
/// logged the user out.
#[test]
fn only_invalid_grant_ends_the_session() {
    for (code, error) in [
        ("invalid_client", OAuthError::InvalidClient),
        ("unauthorized_client", OAuthError::UnauthorizedClient),
        ("unsupported_grant_type", OAuthError::UnsupportedGrantType),
        ("invalid_scope", OAuthError::InvalidScope),
        ("invalid_request", OAuthError::InvalidRequest),
    ] {
        let mut m = logged_in(Config::DEFAULT, None);
        let (acts, id) = answer_refresh(&mut m, 400, &format!(r#"{{"error":"{code}"}}"#));
        assert_eq!(
            acts,
            vec![Act::Fail(id, Failure::RefreshMisconfigured(Some(error)))],
            "{code}"
        );
        assert_eq!(m.session(), SessionState::Active, "{code}");
        let kept = m.tokens().unwrap();
        assert_eq!(kept.refresh_token.unwrap().expose_secret(), "r1", "{code}");
    }
    for body in [
        r#"{"error":"server_error"}"#,
        r#"{"error":"temporarily_unavailable"}"#,
        r#"{"error":"no_such_code"}"#,
        "<html>proxy error</html>",
    ] {
        let mut m = logged_in(Config::DEFAULT, None);
        let (acts, _) = answer_refresh(&mut m, 400, body);
        assert_eq!(acts, vec![], "{body}: waits for the next attempt");
        assert_eq!(m.session(), SessionState::Active, "{body}");
        assert!(m.snapshot().refresh_pending, "{body}: retried later");
    }
    let mut m = logged_in(Config::DEFAULT, None);
    let (acts, id) = answer_refresh(&mut m, 400, r#"{"error":"invalid_grant"}"#);
    assert!(acts.contains(&Act::Fail(id, Failure::LoginRequired)));
    assert!(acts.contains(&Act::LoginRequired));
}

/// Rule 5: a 200 from the token endpoint means the refresh token presented
/// may be spent. A DPoP token, an `error` field or no access token with a new
/// refresh token: the new refresh token is kept (and persisted) and the next
/// attempt presents it; nothing usable at all: the session ends, with its
/// reason. Before, these were transient and the spent token went out again.
#[test]
fn a_200_never_leads_to_presenting_the_old_refresh_token_again() {
    for body in [
        r#"{"access_token":"a2","token_type":"DPoP","refresh_token":"r2"}"#,
        r#"{"error":"server_error","refresh_token":"r2"}"#,
        r#"{"token_type":"Bearer","refresh_token":"r2"}"#,
    ] {
        let mut m = logged_in(Config::DEFAULT, None);
        let (acts, _) = answer_refresh(&mut m, 200, body);
        assert_eq!(
            acts,
            vec![Act::Persist(Some(("a1".into(), Some("r2".into()))))],
            "{body}"
        );
        m.handle_timeout(secs(60));
        let acts = drain(&mut m);
        assert!(
            acts.iter()
                .any(|a| matches!(a, Act::Refresh(_, rt, _) if rt == "r2")),
            "{body}: next attempt presents the new refresh token: {acts:?}"
        );
    }
    for body in [
        r#"{"access_token":"a2","token_type":"DPoP"}"#,
        r#"{"error":"server_error"}"#,
        "<html>welcome to the hotel wifi</html>",
    ] {
        let mut m = logged_in(Config::DEFAULT, None);
        let (acts, id) = answer_refresh(&mut m, 200, body);
        assert!(
            acts.contains(&Act::Fail(id, Failure::LoginRequired)),
            "{body}: {acts:?}"
        );
        assert!(acts.contains(&Act::LoginRequired), "{body}");
        assert_eq!(
            m.login_required_reason(),
            Some(LoginRequiredReason::UnusableTokenResponse),
            "{body}"
        );
    }
    // A usable access token with an unusable refresh token: keep working with
    // the access token; the old refresh token is never presented again.
    let mut m = logged_in(Config::DEFAULT, None);
    let (acts, id) = answer_refresh(
        &mut m,
        200,
        r#"{"access_token":"a2","token_type":"Bearer","refresh_token":"","expires_in":60}"#,
    );
    assert_eq!(sent_with(&acts, id), Some("a2"), "{acts:?}");
    assert!(
        acts.contains(&Act::Persist(Some(("a2".into(), None)))),
        "{acts:?}"
    );
    m.handle_response(secs(10), id, Response::status(200))
        .unwrap();
    drain(&mut m);
    // At expiry there is nothing to refresh with: the session ends, with its reason.
    let late = m.start_request(secs(100), RequestSpec::IDEMPOTENT).unwrap();
    let acts = drain(&mut m);
    assert!(
        acts.contains(&Act::Fail(late, Failure::LoginRequired)),
        "{acts:?}"
    );
    assert_eq!(
        m.login_required_reason(),
        Some(LoginRequiredReason::NoRefreshToken)
    );
}

/// Rule 6: `expires_in` in exponent form read as 1 s, a UTF-8 byte order
/// mark made the body transient, and `refresh_expires_in` was dropped.
#[test]
fn token_responses_are_read_as_servers_write_them() {
    let mut body = br#"{"access_token":"a","expires_in":1E3}"#.to_vec();
    assert_eq!(
        parse_token_response(&mut body).unwrap().expires_in,
        Some(1000)
    );
    let mut body = br#"{"access_token":"a","expires_in":3.6e3}"#.to_vec();
    assert_eq!(
        parse_token_response(&mut body).unwrap().expires_in,
        Some(3600)
    );
    let mut body = br#"{"access_token":"a","expires_in":1e30}"#.to_vec();
    assert_eq!(
        parse_token_response(&mut body).unwrap().expires_in,
        Some(u64::MAX)
    );
    let mut body = br#"{"access_token":"a","expires_in":36e-1}"#.to_vec();
    assert_eq!(parse_token_response(&mut body).unwrap().expires_in, Some(3));
    let mut body = b"\xEF\xBB\xBF{\"access_token\":\"a\"}".to_vec();
    assert_eq!(
        parse_token_response(&mut body)
            .unwrap()
            .access_token
            .expose_secret(),
        "a"
    );
    let mut body =
        br#"{"access_token":"a","refresh_token":"r","expires_in":300,"refresh_expires_in":1800}"#
            .to_vec();
    let t = parse_token_response(&mut body).unwrap();
    assert_eq!(t.refresh_expires_in, Some(1800));
    assert_eq!(
        t.token_set().refresh_expires_in,
        Some(Duration::from_secs(1800))
    );
}

/// Rule 6: a refresh token known to be expired is not presented (the server
/// would refuse it; some count that as reuse); the app learns when the
/// session ends from the stored tokens.
#[test]
fn an_expired_refresh_token_is_not_presented() {
    let mut m = M::new(Config::DEFAULT, 3);
    let set = TokenSet::new("a1")
        .with_refresh_token("r1")
        .with_expires_in(Duration::from_secs(300))
        .with_refresh_expires_in(Duration::from_secs(1800));
    m.login(Instant::ZERO, set).unwrap();
    drain(&mut m);
    assert_eq!(m.tokens().unwrap().refresh_expires_at, Some(secs(1800)));
    // Before the refresh token expires, an expired access token is refreshed.
    let mut early = m.clone();
    early
        .start_request(secs(600), RequestSpec::IDEMPOTENT)
        .unwrap();
    assert!(refresh_of(&drain(&mut early)).is_some());
    // After, the session is over without presenting it.
    let id = m
        .start_request(secs(1800), RequestSpec::IDEMPOTENT)
        .unwrap();
    let acts = drain(&mut m);
    assert_eq!(refresh_of(&acts), None, "{acts:?}");
    assert!(acts.contains(&Act::Fail(id, Failure::LoginRequired)));
    assert_eq!(
        m.login_required_reason(),
        Some(LoginRequiredReason::RefreshTokenExpired)
    );
}

/// One refresh at a time, even after a late answer: a success that arrives
/// for an abandoned attempt while a newer one is in flight installs its
/// tokens, but the newer attempt stays tracked until it is answered or its
/// deadline passes (no third refresh meanwhile). When it then fails, the
/// requests that started waiting since are not stranded. (Found by the
/// model: the first version of this rule left such a request waiting forever.)
#[test]
fn a_late_success_supersedes_the_attempt_in_flight_without_stranding_waiters() {
    use refresh_machine_model::world::{run, Op, RefreshReply, Reply};
    run(
        Config::DEFAULT,
        0,
        &[
            Op::Start {
                idempotent: false,
                replayable: true,
            },
            Op::Respond {
                pick: 0,
                reply: Reply::Unauthorized,
            },
            Op::Late {
                pick: 0,
                reply: RefreshReply::Unusable { rotated: true },
            },
            Op::Advance(188),
            Op::FireTimeout,
            Op::Advance(294),
            Op::Late {
                pick: 0,
                reply: RefreshReply::Success {
                    rotate: false,
                    expires_s: Some(0),
                },
            },
            Op::Late {
                pick: 0,
                reply: RefreshReply::Lost {
                    processed: false,
                    reported: false,
                },
            },
            Op::Start {
                idempotent: false,
                replayable: false,
            },
        ],
    );
}

/// A machine whose one refresh round gave up at `now` on a transient
/// answer with this `Retry-After` (its waiting request failed
/// `RefreshUnavailable`).
fn gave_up_at(now: Instant, retry_after: Duration) -> M {
    let mut config = Config::DEFAULT;
    config.max_refresh_attempts = 1;
    let mut m = logged_in(config, None);
    let a = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    drain(&mut m);
    m.handle_response(now, a, Response::status(401)).unwrap();
    let r = refresh_of(&drain(&mut m)).unwrap();
    let outcome = RefreshOutcome::Transient {
        retry_after: Some(retry_after),
    };
    m.handle_refresh_outcome(now, r, outcome).unwrap();
    assert_eq!(
        drain(&mut m),
        vec![Act::Fail(a, Failure::RefreshUnavailable)]
    );
    m
}

/// The token endpoint's `Retry-After` holds for the next round too: after
/// a round gave up (its waiters failed `RefreshUnavailable`), the next
/// request did not wait for it and called the endpoint at once. Clamped to
/// `max_retry_after`.
#[test]
fn a_token_endpoint_retry_after_outlives_its_round() {
    let config = Config::DEFAULT;
    let now = secs(1);
    let mut m = gave_up_at(now, Duration::from_secs(3600));
    // A new request 10 s later: it waits for the (clamped) Retry-After.
    let b = m.start_request(secs(11), RequestSpec::IDEMPOTENT).unwrap();
    assert_eq!(drain(&mut m), vec![], "no refresh before Retry-After");
    let until = now + config.max_retry_after;
    assert_eq!(m.snapshot().refresh_timer, Some(until));
    m.handle_timeout(until);
    let acts = drain(&mut m);
    assert!(refresh_of(&acts).is_some(), "{acts:?}");
    assert_eq!(
        m.request_state(b),
        Ok(refresh_machine::RequestState::WaitingForRefresh)
    );
}

/// The expiry margin holds for a driver that polls late: a request queued
/// while the token was valid went out with it after its expiry, although
/// `handle_timeout` had been told the time. Found by the model.
#[test]
fn a_request_queued_before_expiry_is_not_sent_after_it() {
    let mut m = logged_in(Config::DEFAULT, Some(60));
    let id = m.start_request(secs(10), RequestSpec::IDEMPOTENT).unwrap();
    // The driver does not poll until much later, but feeds the time.
    m.handle_timeout(secs(100));
    let acts = drain(&mut m);
    assert_eq!(sent_with(&acts, id), None, "{acts:?}");
    assert!(refresh_of(&acts).is_some(), "{acts:?}");
}

/// A login whose tokens arrive expired (a stored pair, `expires_in: 0`):
/// requests already queued refresh first instead of going out with them.
/// Found by `every_config_value_is_safe`.
#[test]
fn queued_requests_do_not_go_out_with_an_expired_login_token() {
    let mut m = logged_in(Config::DEFAULT, None);
    let id = m.start_request(secs(1), RequestSpec::IDEMPOTENT).unwrap();
    // Not polled yet; a new login with a token that is already expired.
    let set = TokenSet::new("a9")
        .with_refresh_token("r9")
        .with_expires_in(Duration::ZERO);
    m.login(secs(1), set).unwrap();
    let acts = drain(&mut m);
    assert_eq!(sent_with(&acts, id), None, "{acts:?}");
    assert!(
        acts.iter()
            .any(|a| matches!(a, Act::Refresh(_, rt, _) if rt == "r9")),
        "{acts:?}"
    );
}

/// A refreshed token refused by the resource server, with one 401 already
/// behind it: the next 401 for it starts the cool-down (no refresh).
fn refused_fresh_token(m: &mut M, now: Instant) -> RequestId {
    let a = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    drain(m);
    m.handle_response(now, a, Response::status(401)).unwrap();
    let r = refresh_of(&drain(m)).unwrap();
    m.handle_refresh_outcome(now, r, tokens("a2", "r2", 3600))
        .unwrap();
    assert_eq!(sent_with(&drain(m), a), Some("a2"));
    a
}

/// Only an answer that got past authentication proves a token: a 500 (not
/// transient, so delivered) does not, and a 401 for the fresh token after it
/// still starts the cool-down instead of another refresh. Mutants counting
/// a 500 as acceptance survived the model.
#[test]
fn a_500_does_not_prove_a_fresh_token() {
    let mut m = logged_in(Config::DEFAULT, None);
    let now = secs(1);
    let a = refused_fresh_token(&mut m, now);
    m.handle_response(now, a, Response::status(500)).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Deliver(a)]);
    let c = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Send(c, "a2".into())]);
    m.handle_response(now, c, Response::status(401)).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Fail(c, Failure::Unauthorized)]);
}

/// The refused-token cool-down ends at `refused_token_cooldown` after the
/// refusal, to the instant: a 401 then refreshes again.
#[test]
fn the_cool_down_ends_at_its_instant() {
    let config = Config::DEFAULT;
    let mut m = logged_in(config, None);
    let now = secs(1);
    let a = refused_fresh_token(&mut m, now);
    m.handle_response(now, a, Response::status(401)).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Fail(a, Failure::Unauthorized)]);
    let just_before = now + (config.refused_token_cooldown - Duration::from_millis(1));
    let b = m
        .start_request(just_before, RequestSpec::IDEMPOTENT)
        .unwrap();
    drain(&mut m);
    m.handle_response(just_before, b, Response::status(401))
        .unwrap();
    assert_eq!(drain(&mut m), vec![Act::Fail(b, Failure::Unauthorized)]);
    let end = now + config.refused_token_cooldown;
    let c = m.start_request(end, RequestSpec::IDEMPOTENT).unwrap();
    drain(&mut m);
    m.handle_response(end, c, Response::status(401)).unwrap();
    let acts = drain(&mut m);
    assert!(refresh_of(&acts).is_some(), "{acts:?}");
}

/// The token endpoint's `Retry-After` ends to the instant: a round started
/// exactly then calls the endpoint at once, without waiting for a timer.
#[test]
fn a_token_endpoint_retry_after_ends_at_its_instant() {
    let now = secs(1);
    let mut m = gave_up_at(now, Duration::from_secs(5));
    let until = now + Duration::from_secs(5);
    let b = m.start_request(until, RequestSpec::IDEMPOTENT).unwrap();
    let acts = drain(&mut m);
    assert!(refresh_of(&acts).is_some(), "{acts:?}");
    assert_eq!(
        m.request_state(b),
        Ok(refresh_machine::RequestState::WaitingForRefresh)
    );
}

/// Refresh-ahead waits for a refreshed token to be proven: inside its
/// window, a fresh token nothing has accepted yet goes out as it is (its own
/// refresh would follow at once otherwise); once accepted, the window applies.
#[test]
fn refresh_ahead_waits_for_a_fresh_token_to_be_proven() {
    let mut config = Config::DEFAULT;
    config.refresh_ahead = Some(Duration::from_secs(60));
    config.expiry_skew = Duration::from_secs(5);
    let mut m = logged_in(config, None);
    let now = secs(1);
    let a = m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    drain(&mut m);
    m.handle_response(now, a, Response::status(401)).unwrap();
    let r = refresh_of(&drain(&mut m)).unwrap();
    m.handle_refresh_outcome(now, r, tokens("a2", "r2", 100))
        .unwrap();
    assert_eq!(sent_with(&drain(&mut m), a), Some("a2"));
    // 70 s on, a2 (expiring at 101 s) is inside its window (30 to 50 s
    // before expiry: at most half its lifetime) and still usable.
    let later = now + Duration::from_secs(70);
    let b = m.start_request(later, RequestSpec::IDEMPOTENT).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Send(b, "a2".into())]);
    m.handle_response(later, b, Response::status(200)).unwrap();
    assert_eq!(drain(&mut m), vec![Act::Deliver(b)]);
    let c = m.start_request(later, RequestSpec::IDEMPOTENT).unwrap();
    let acts = drain(&mut m);
    assert!(refresh_of(&acts).is_some(), "{acts:?}");
    assert_eq!(sent_with(&acts, c), Some("a2"), "{acts:?}");
}

/// A request queued while the token was valid, and not yet polled, is held
/// with the requests that found the token past its margin: it does not go
/// out with the expired token at the next poll. (The model drains after
/// every step, so it never leaves a request queued across an expiry: an
/// emptied `park_ready` survived it.)
#[test]
fn a_queued_request_is_held_with_the_one_that_found_the_token_expired() {
    let mut m = logged_in(Config::DEFAULT, Some(60));
    let a = m.start_request(secs(10), RequestSpec::IDEMPOTENT).unwrap();
    let b = m.start_request(secs(100), RequestSpec::IDEMPOTENT).unwrap();
    let acts = drain(&mut m);
    assert_eq!(sent_with(&acts, a), None, "{acts:?}");
    assert_eq!(sent_with(&acts, b), None, "{acts:?}");
    assert!(refresh_of(&acts).is_some(), "{acts:?}");
    for id in [a, b] {
        assert_eq!(
            m.request_state(id),
            Ok(refresh_machine::RequestState::WaitingForRefresh)
        );
    }
}

/// `handle_timeout` fires what is due (deadlines, backoffs) and holds
/// queued requests whose token is past its margin; it does not start a
/// refresh-ahead by itself: that is decided when a request is routed.
#[test]
fn handle_timeout_starts_no_refresh_ahead() {
    let mut config = Config::DEFAULT;
    config.refresh_ahead = Some(Duration::from_secs(60));
    config.expiry_skew = Duration::from_secs(1);
    let mut m = logged_in(config, Some(600));
    let a = m.start_request(secs(10), RequestSpec::IDEMPOTENT).unwrap();
    assert_eq!(m.poll_timeout(), None);
    // Inside the refresh-ahead window (30 to 60 s before expiry), before the skew.
    m.handle_timeout(secs(580));
    assert_eq!(drain(&mut m), vec![Act::Send(a, "a1".into())]);
    // The next request routed there starts it.
    let b = m.start_request(secs(580), RequestSpec::IDEMPOTENT).unwrap();
    let acts = drain(&mut m);
    assert!(refresh_of(&acts).is_some(), "{acts:?}");
    assert_eq!(sent_with(&acts, b), Some("a1"), "{acts:?}");
}

/// A request queued while a background refresh (refresh-ahead) was in flight
/// may use the token that refresh brings at least once, as a waiter may,
/// even when that token arrives expired and the request is routed again
/// before it is polled.
#[test]
fn a_request_queued_during_a_background_refresh_may_use_its_token() {
    let mut config = Config::DEFAULT;
    config.refresh_ahead = Some(Duration::from_secs(60));
    config.expiry_skew = Duration::from_secs(1);
    let mut m = logged_in(config, Some(600));
    let first = m.start_request(secs(580), RequestSpec::IDEMPOTENT).unwrap();
    let acts = drain(&mut m);
    let r = refresh_of(&acts).expect("refresh-ahead");
    assert_eq!(sent_with(&acts, first), Some("a1"));
    // Queued, not yet polled, while the refresh is out.
    let a = m.start_request(secs(581), RequestSpec::IDEMPOTENT).unwrap();
    m.handle_refresh_outcome(secs(581), r, tokens("a2", "r2", 0))
        .unwrap();
    // The driver feeds the time before polling: a2 is past its margin.
    m.handle_timeout(secs(581));
    let acts = drain(&mut m);
    assert_eq!(sent_with(&acts, a), Some("a2"), "{acts:?}");
    assert_eq!(refresh_of(&acts), None, "{acts:?}");
}
