//! The token endpoint's answer: the core's no_std JSON parser and classifier,
//! the session's login parser, and the tokens it yields fed to a machine with
//! a small token capacity (oversized tokens must be a typed error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use refresh_machine::grant::{classify_token_response, parse_token_response};
use refresh_machine::{
    Action, Config, Error, Instant, RefreshMachine, RefreshOutcome, RequestSpec, Response, TokenSet,
};

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data.split_first() {
        Some((&b, rest)) => ([200, 400, 401, 429, 500, 503][usize::from(b) % 6], rest),
        None => (200, data),
    };

    let mut buf = body.to_vec();
    let _ = parse_token_response(&mut buf);

    let mut buf = body.to_vec();
    let classified = classify_token_response(status, &mut buf, None);
    match classified.outcome {
        RefreshOutcome::Success(set) => {
            assert_eq!(status, 200, "success from a {status}");
            assert!(classified.problem.is_none());
            let mut m = RefreshMachine::<1, 32>::new(Config::DEFAULT, 0);
            match m.login(Instant::ZERO, set) {
                Ok(()) => {
                    let stored = m.tokens().expect("logged in");
                    assert_eq!(
                        stored.access_token.expose_secret(),
                        set.access_token.expose_secret()
                    );
                }
                Err(Error::TokenTooLarge { .. } | Error::InvalidToken) => {}
                Err(e) => panic!("login refused with {e:?}"),
            }
        }
        RefreshOutcome::Rejected | RefreshOutcome::Misconfigured(_) => {
            assert!(
                matches!(status, 400 | 401),
                "{:?} from a {status}",
                classified.outcome
            );
            assert!(classified.problem.is_some());
        }
        // A 200 is never "transient, present the old refresh token again".
        RefreshOutcome::Transient { .. } => assert_ne!(status, 200, "transient 200"),
        RefreshOutcome::Unusable { .. } => {
            assert_eq!(status, 200, "unusable from a {status}");
            assert!(classified.problem.is_some());
            // Fed to a machine whose refresh presented "old": "old" is never
            // presented again, whatever the body carried.
            let mut m = RefreshMachine::<1, 32>::new(Config::DEFAULT, 0);
            m.login(Instant::ZERO, TokenSet::new("a").with_refresh_token("old"))
                .expect("valid login");
            let id = m
                .start_request(Instant::ZERO, RequestSpec::IDEMPOTENT)
                .unwrap();
            while m.poll_action().is_some() {}
            m.handle_response(Instant::ZERO, id, Response::status(401))
                .unwrap();
            let rid = loop {
                match m.poll_action() {
                    Some(Action::Refresh { id, .. }) => break id,
                    Some(_) => {}
                    None => panic!("no refresh after a 401"),
                }
            };
            let _ = m.handle_refresh_outcome(Instant::ZERO, rid, classified.outcome);
            let later = Instant::from_millis(3_600_000);
            m.handle_timeout(later);
            while let Some(a) = m.poll_action() {
                if let Action::Refresh { refresh_token, .. } = a {
                    assert_ne!(
                        refresh_token.expose_secret(),
                        "old",
                        "spent token presented again"
                    );
                }
            }
        }
    }

    let _ = refresh_machine_driver::grant::parse_login(status, body.to_vec());
});
