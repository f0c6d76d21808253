//! Requests beyond the session's slots queue for one and are woken when a
//! slot frees; past their deadline they fail `Full`.

use std::time::{Duration, Instant};

use refresh_machine_driver::refresh_machine::{Config, Error, RequestSpec};
use refresh_machine_driver::{
    Hooks, RequestHandle, Session, Start, Step, TokenPair, Waiter, CAPACITY,
};

fn session() -> Session {
    let s = Session::new(Config::DEFAULT, 1, Hooks::default());
    s.login(&TokenPair {
        access_token: "a1".into(),
        refresh_token: Some("r1".into()),
        expires_at: Some(std::time::SystemTime::now() + Duration::from_secs(3600)),
        refresh_expires_at: None,
    })
    .unwrap();
    s
}

/// Take every slot.
fn fill(s: &Session) -> Vec<RequestHandle<'_>> {
    (0..CAPACITY)
        .map(|_| s.start(RequestSpec::IDEMPOTENT).unwrap())
        .collect()
}

/// One more request, which must queue.
fn queue(s: &Session, deadline: Instant) -> Waiter {
    let Ok(Start::Full(waiter)) = s.start_or_wait(RequestSpec::IDEMPOTENT, Some(deadline)) else {
        panic!("every slot is taken: the request must queue");
    };
    waiter
}

#[test]
fn a_full_session_queues_and_wakes_on_a_freed_slot() {
    let s = session();
    let mut handles = fill(&s);
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiter = queue(&s, deadline);
    // One request completes: its slot is freed and the queued one is woken.
    let mut done = handles.remove(0);
    assert!(matches!(done.next_step(), Step::Send { .. }));
    done.http_response(http::StatusCode::OK, &http::HeaderMap::new(), true);
    assert!(matches!(done.next_step(), Step::Done(Ok(()))));
    waiter.wait_blocking();
    assert!(
        Instant::now() < deadline,
        "woken by the freed slot, not by the deadline"
    );
    let Ok(Start::Started(mut queued)) = s.start_or_wait(RequestSpec::IDEMPOTENT, Some(deadline))
    else {
        panic!("a slot is free now");
    };
    assert!(matches!(queued.next_step(), Step::Send { .. }));
}

#[test]
fn a_cancelled_request_frees_its_slot_for_the_queue() {
    let s = session();
    let mut handles = fill(&s);
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiter = queue(&s, deadline);
    drop(handles.pop());
    waiter.wait_blocking();
    assert!(Instant::now() < deadline);
    assert!(matches!(
        s.start_or_wait(RequestSpec::IDEMPOTENT, Some(deadline)),
        Ok(Start::Started(_))
    ));
}

#[test]
fn past_its_deadline_a_queued_request_fails_full() {
    let s = session();
    let _handles = fill(&s);
    assert!(matches!(
        s.start_or_wait(RequestSpec::IDEMPOTENT, Some(Instant::now())),
        Err(Error::Full)
    ));
}

/// Issue 14: slots freed in a quick row, before any woken request has run,
/// wake as many queued requests. A `notify(1)` coalesces with the pending
/// one and leaves the second waiting until its deadline (a lost wake-up).
#[test]
fn slots_freed_in_a_row_wake_as_many_queued_requests() {
    let s = session();
    let mut handles = fill(&s);
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = queue(&s, deadline);
    let second = queue(&s, deadline);
    drop(handles.pop());
    drop(handles.pop());
    first.wait_blocking();
    second.wait_blocking();
    assert!(
        Instant::now() < deadline,
        "the second waiter was not woken: it sat until its deadline"
    );
}
