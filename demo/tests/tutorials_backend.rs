//! The README's first quick start (`examples/tutorials_backend.rs`) against
//! the test server's tutorial backend, and the README showing exactly it.

#[allow(dead_code)] // its `main` is the example's
#[path = "../examples/tutorials_backend.rs"]
mod example;

use refresh_machine_test_server::{AuthServer, Backend, ServerOptions};

/// One process after another, each running the quick start from scratch in
/// the same directory: the first logs in, the next ones start from the
/// token file; an expiry costs one refresh, and the rotated refresh token
/// is what the next process presents (no reuse).
#[test]
fn the_quick_start_logs_in_once_and_survives_restarts_and_expiry() {
    let server = AuthServer::start_with(ServerOptions {
        backend: Backend::AppJwt,
        ..ServerOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The quick start keeps `tokens.json` in the working directory (the only
    // test in this binary that changes it).
    std::env::set_current_dir(dir.path()).unwrap();
    let api = server.origin();

    let me = example::run(&api).unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(server.counters().logins, 1);
    let saved = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert!(
        saved["expires_at"].as_u64().is_some(),
        "the JWT's exp is kept: {saved}"
    );

    // A restart: the tokens come from the file, no second login.
    assert_eq!(example::run(&api).unwrap().status(), 200);
    assert_eq!(server.counters().logins, 1);

    // The access token expires while the app is stopped.
    server.revoke_access_tokens();
    assert_eq!(example::run(&api).unwrap().status(), 200);
    let k = server.counters();
    assert_eq!(
        (k.logins, k.refresh_calls, k.refresh_ok),
        (1, 1, 1),
        "{k:?}"
    );

    // The next start presents the rotated pair it saved: no refresh, no reuse.
    assert_eq!(example::run(&api).unwrap().status(), 200);
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.reuse_detections), (1, 0), "{k:?}");
    std::env::set_current_dir(std::env::temp_dir()).unwrap();
}

/// The README's first quick start is the example's code, line for line.
#[test]
fn the_readme_shows_the_example() {
    let example = include_str!("../examples/tutorials_backend.rs");
    let readme = include_str!("../../README.md");
    let between = |text: &'static str, begin: &str, end: &str| -> Vec<String> {
        let start = text.find(begin).expect(begin) + begin.len();
        let len = text[start..].find(end).expect(end);
        text[start..start + len]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("# ") && *l != "#")
            .map(|l| l.split(" // ").next().unwrap().trim_end().to_owned())
            .collect()
    };
    let shown = between(
        readme,
        "<!-- tutorials_backend:begin -->\n```rust,no_run\n",
        "```",
    );
    let tested = between(example, "// README:begin\n", "// README:end");
    let shown: Vec<_> = shown
        .into_iter()
        .filter(|l| !l.starts_with("let api = "))
        .collect();
    assert_eq!(
        shown, tested,
        "README.md and examples/tutorials_backend.rs differ"
    );
}
