//! `TokenPair` as stored tokens: the format, a round trip, a pair from a
//! previous process, redaction.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use refresh_machine_test_server::{AuthServer, ServerOptions};
use refresh_machine_ureq::{Client, Secret, TokenPair};

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn a_stored_pair_round_trips_through_json_to_the_second() {
    let now = SystemTime::now();
    let pair = TokenPair {
        access_token: Secret::from("access-round-trip"),
        refresh_token: Some(Secret::from("refresh-round-trip")),
        expires_at: Some(now + Duration::from_millis(3_600_700)),
        refresh_expires_at: Some(now + Duration::from_secs(86_400)),
    };
    let json = serde_json::to_string(&pair).unwrap();
    // The format: snake_case names, integer Unix seconds.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["access_token"], "access-round-trip");
    assert_eq!(value["refresh_token"], "refresh-round-trip");
    let expires_at = pair.expires_at.unwrap();
    assert_eq!(
        value["expires_at"].as_u64(),
        Some(unix(expires_at)),
        "{json}"
    );
    assert_eq!(
        value["refresh_expires_at"].as_u64(),
        Some(unix(pair.refresh_expires_at.unwrap()))
    );

    let back: TokenPair = serde_json::from_str(&json).unwrap();
    assert_eq!(back.access_token, pair.access_token);
    assert_eq!(back.refresh_token, pair.refresh_token);
    // Each expiry to the second, truncated (never later than it was).
    for (read, written) in [
        (back.expires_at, pair.expires_at),
        (back.refresh_expires_at, pair.refresh_expires_at),
    ] {
        let (read, written) = (read.unwrap(), written.unwrap());
        assert_eq!(unix(read), unix(written));
        assert_eq!(read.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(), 0);
        assert!(read <= written);
    }

    // Only the access token: the options are left out, and read back as None.
    let bare = serde_json::to_string(&TokenPair::new("only-access")).unwrap();
    assert_eq!(bare, r#"{"access_token":"only-access"}"#);
    let bare: TokenPair = serde_json::from_str(&bare).unwrap();
    assert_eq!(bare, TokenPair::new("only-access"));

    // Written by another version: unknown fields ignored, nulls are None.
    let other: TokenPair = serde_json::from_str(
        r#"{"access_token":"a","refresh_token":null,"expires_at":null,"scope":"read","version":2}"#,
    )
    .unwrap();
    assert_eq!(other, TokenPair::new("a"));
    // A token is a string: anything else is an error, not a guess.
    assert!(serde_json::from_str::<TokenPair>(r#"{"refresh_token":"r"}"#).is_err());
    assert!(serde_json::from_str::<TokenPair>(r#"{"access_token":"a","expires_at":1.5}"#).is_err());
}

#[test]
fn a_pair_stored_by_a_previous_process_is_refreshed_before_the_first_request() {
    let s = AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap();
    let issued = s.login();
    // What a previous process wrote: its access token expired two minutes ago.
    let written = serde_json::json!({
        "access_token": issued.access_token,
        "refresh_token": issued.refresh_token,
        "expires_at": unix(SystemTime::now()) - 120,
    })
    .to_string();
    s.revoke_access_tokens();

    let stored: TokenPair = serde_json::from_str(&written).unwrap();
    let c = Client::builder()
        .token_endpoint(&s.token_url(), &s.options().client_id)
        .unwrap()
        .allow_origin(&s.origin())
        .unwrap()
        .seed(1)
        .build();
    c.set_tokens(&stored).unwrap();
    assert_eq!(c.get(&s.url("/api/me")).unwrap().status(), 200);
    let k = s.counters();
    assert_eq!(k.unauthorized, 0, "the expired token was sent first: {k:?}");
    assert_eq!((k.refresh_calls, k.refresh_ok, k.ok), (1, 1, 1), "{k:?}");
}

#[test]
fn a_deserialised_pair_shows_no_token_in_debug() {
    let stored: TokenPair = serde_json::from_str(
        r#"{"access_token":"at-stored-7f3a","refresh_token":"rt-stored-91bc","expires_at":4102444800}"#,
    )
    .unwrap();
    let shown = format!("{stored:?} {stored:#?}");
    for token in ["at-stored-7f3a", "rt-stored-91bc"] {
        assert!(!shown.contains(token), "{token} in {shown}");
    }
    assert!(shown.contains("redacted"), "{shown}");
}
