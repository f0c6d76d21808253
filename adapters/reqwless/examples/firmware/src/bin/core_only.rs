//! The state machine alone, driven by a sans-IO loop with event bytes the
//! optimiser cannot see: what `refresh-machine` costs without any HTTP stack.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::hint::black_box;

use panic_halt as _;
use refresh_machine::grant::parse_token_response;
use refresh_machine::www_authenticate::parse_bearer_challenge;
use refresh_machine::{
    Action, Config, Instant, RefreshMachine, RefreshOutcome, RequestSpec, Response, TokenSet,
};

#[cortex_m_rt::entry]
fn main() -> ! {
    let mut m: RefreshMachine<4, 1024> = RefreshMachine::new(Config::DEFAULT, black_box(7));
    let _ = m.login(
        Instant::ZERO,
        TokenSet::new(black_box("at-1")).with_refresh_token("rt-1"),
    );
    let mut body = *black_box(b"{\"access_token\":\"at-2\",\"token_type\":\"Bearer\"}");
    let mut t = 0u64;
    loop {
        t += 1;
        let now = Instant::from_millis(black_box(t));
        if let Ok(id) = m.start_request(now, RequestSpec::IDEMPOTENT) {
            black_box(id);
        }
        let challenge = parse_bearer_challenge(black_box(b"Bearer error=\"invalid_token\""));
        while let Some(a) = m.poll_action() {
            match a {
                Action::Send { id, token, .. } => {
                    black_box(token.expose_secret());
                    let mut r = Response::status(black_box(401));
                    r.bearer_error = challenge.ok().and_then(|c| c.error);
                    let _ = m.handle_response(now, id, r);
                    break;
                }
                Action::Refresh { id, .. } => {
                    let outcome = match parse_token_response(&mut body) {
                        Ok(t) => RefreshOutcome::Success(t.token_set()),
                        Err(_) => RefreshOutcome::Rejected,
                    };
                    let _ = m.handle_refresh_outcome(now, id, outcome);
                    break;
                }
                other => {
                    let _ = black_box(other);
                }
            }
        }
        if let Some(t) = m.poll_timeout() {
            m.handle_timeout(t);
        }
    }
}
