//! The core allocates nothing: a whole session (login, concurrent requests,
//! 401s, a rotating refresh, transient retries with backoff, cancellation,
//! login required, re-login, logout) runs under a counting global allocator.

use core::time::Duration;

use refresh_machine::www_authenticate::parse_bearer_challenge;
use refresh_machine::{
    grant, retry_after, Action, Config, Instant, RefreshMachine, RefreshOutcome, RequestId,
    RequestSpec, RequestState, Response, SendErrorKind, TokenSet,
};

type M = RefreshMachine<8, 256>;

/// Drains actions without allocating: ids go into a fixed array.
fn drain(
    m: &mut M,
    sent: &mut [Option<RequestId>; 8],
    refresh: &mut Option<refresh_machine::RefreshId>,
) -> usize {
    let mut n = 0;
    while let Some(a) = m.poll_action() {
        n += 1;
        match a {
            Action::Send { id, .. } => sent[id.slot()] = Some(id),
            Action::Deliver { id } | Action::Fail { id, .. } => sent[id.slot()] = None,
            Action::Refresh { id, .. } => *refresh = Some(id),
            _ => {}
        }
    }
    // Requests parked (waiting for the refresh, backing off) are not on the wire.
    for slot in sent.iter_mut() {
        if slot.is_some_and(|id| m.request_state(id) != Ok(RequestState::InFlight)) {
            *slot = None;
        }
    }
    n
}

fn session() -> (usize, M) {
    let mut m = M::new(Config::DEFAULT, 7);
    let mut sent = [None; 8];
    let mut refresh = None;
    let mut actions = 0;
    let mut now = Instant::ZERO;
    m.login(
        now,
        TokenSet::new("a1")
            .with_refresh_token("r1")
            .with_expires_in(Duration::from_secs(600)),
    )
    .unwrap();
    for i in 0..8 {
        let spec = if i % 2 == 0 {
            RequestSpec::IDEMPOTENT
        } else {
            RequestSpec::NON_IDEMPOTENT
        };
        m.start_request(now, spec).unwrap();
    }
    actions += drain(&mut m, &mut sent, &mut refresh);
    // All eight get 401 at once: one refresh.
    // `sent` is a plain array: iterate over a copy while `drain` may update it.
    for id in sent.into_iter().flatten() {
        m.handle_response(now, id, Response::status(401)).unwrap();
    }
    actions += drain(&mut m, &mut sent, &mut refresh);
    let rid = refresh.take().unwrap();
    m.handle_refresh_outcome(
        now,
        rid,
        RefreshOutcome::Success(
            TokenSet::new("a2")
                .with_refresh_token("r2")
                .with_expires_in(Duration::from_secs(600)),
        ),
    )
    .unwrap();
    actions += drain(&mut m, &mut sent, &mut refresh);
    // Half get 503 with Retry-After, one a connect error, one is cancelled, the rest succeed.
    let ids = sent;
    for (k, id) in ids.iter().flatten().enumerate() {
        match k {
            0..=3 => m
                .handle_response(
                    now,
                    *id,
                    Response::status(503).with_retry_after(Duration::from_secs(1)),
                )
                .unwrap(),
            4 => m
                .handle_send_error(now, *id, SendErrorKind::Connect)
                .unwrap(),
            5 => {
                m.cancel(*id).unwrap();
                sent[id.slot()] = None;
            }
            _ => m.handle_response(now, *id, Response::status(200)).unwrap(),
        }
    }
    actions += drain(&mut m, &mut sent, &mut refresh);
    while let Some(t) = m.poll_timeout() {
        now = t;
        m.handle_timeout(now);
        actions += drain(&mut m, &mut sent, &mut refresh);
        let ids = sent;
        for id in ids.iter().flatten() {
            m.handle_response(now, *id, Response::status(200)).unwrap();
        }
        actions += drain(&mut m, &mut sent, &mut refresh);
    }
    // Expiry: the next request triggers a proactive refresh, which is rejected.
    now = now + Duration::from_secs(590);
    m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    actions += drain(&mut m, &mut sent, &mut refresh);
    m.handle_refresh_outcome(now, refresh.take().unwrap(), RefreshOutcome::Rejected)
        .unwrap();
    actions += drain(&mut m, &mut sent, &mut refresh);
    m.login(now, TokenSet::new("a3").with_refresh_token("r3"))
        .unwrap();
    m.start_request(now, RequestSpec::IDEMPOTENT).unwrap();
    m.logout(now);
    actions += drain(&mut m, &mut sent, &mut refresh);
    assert_eq!(m.snapshot().live, 0);
    (actions, m)
}

#[test]
fn the_core_never_allocates() {
    let mut actions = 0;
    let info = allocation_counter::measure(|| {
        let (n, m) = session();
        actions = n;
        assert_eq!(m.snapshot().live, 0);
    });
    // 36 actions: the same session as before the renovation, which also
    // counted 13 informational Wait/Backoff actions that no longer exist.
    assert!(
        actions > 30,
        "the session did too little to prove anything ({actions} actions)"
    );
    assert_eq!(info.count_total, 0, "the core allocated: {info:?}");
}

#[test]
fn the_parsers_never_allocate() {
    let mut parsed = 0;
    let info = allocation_counter::measure(|| {
        let challenge = br#"Bearer realm="api", error="insufficient_scope", scope="orders:write""#;
        parsed += usize::from(parse_bearer_challenge(challenge).is_ok());
        parsed +=
            usize::from(retry_after::parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT").is_ok());
        let mut body = *br#"{"access_token":"a\u0032","token_type":"Bearer","expires_in":3600,"refresh_token":"r2"}"#;
        parsed += usize::from(grant::parse_token_response(&mut body).is_ok());
    });
    assert_eq!(parsed, 3);
    assert_eq!(info.count_total, 0, "a parser allocated: {info:?}");
}

#[test]
fn the_counter_sees_allocations() {
    // The check above could pass vacuously if the counter were not installed.
    let info = allocation_counter::measure(|| {
        let v = std::hint::black_box(vec![1u8; 64]);
        drop(v);
    });
    assert!(info.count_total >= 1);
}
