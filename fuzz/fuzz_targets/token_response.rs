//! The token endpoint's answer: the core's no_std JSON parser and classifier,
//! the session's login parser, and the tokens it yields fed to a machine with
//! a small token capacity (oversized tokens must be a typed error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use refresh_machine::grant::{classify_token_response, parse_token_response};
use refresh_machine::{Config, Error, Instant, RefreshMachine, RefreshOutcome};

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
        RefreshOutcome::Rejected => assert!(matches!(status, 400 | 401)),
        RefreshOutcome::Transient { .. } => assert!(classified.problem.is_some() || status != 200),
    }

    let _ = refresh_machine_driver::grant::parse_login(status, body.to_vec());
});
