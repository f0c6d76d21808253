//! `Builder::token_file`: the tokens kept in a file across restarts.

use refresh_machine_test_server::{AuthServer, Backend, ServerOptions};
use refresh_machine_ureq::{Client, ConfigError, Error};

fn app_backend() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        backend: Backend::AppJwt,
        ..ServerOptions::default()
    })
    .unwrap()
}

fn client(server: &AuthServer, path: &std::path::Path) -> Result<Client, ConfigError> {
    Ok(Client::builder()
        .json_endpoint(&server.refresh_url())?
        .allow_origin(&server.origin())?
        .token_file(path)?
        .build())
}

const CREDENTIALS: &str = r#"{"username":"alice","password":"wonderland"}"#;

#[test]
fn tokens_are_written_whole_owner_only_and_removed_at_logout() {
    let server = app_backend();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let c = client(&server, &path).unwrap();
    assert!(c.session().tokens().is_none(), "no file, no session");
    c.login_with_json(&server.login_url(), CREDENTIALS).unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let tokens = c.session().tokens().unwrap();
    assert_eq!(written["access_token"], tokens.access_token.expose());
    assert_eq!(
        written["refresh_token"],
        tokens.refresh_token.as_ref().unwrap().expose()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
    }
    // Nothing but the file is left in the directory (no temporary files).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert!(c.token_file().unwrap().last_error().is_none());
    c.logout().unwrap();
    assert!(!path.exists(), "logout removes the file");
}

#[test]
fn a_file_that_holds_no_token_pair_is_a_configuration_error() {
    let server = app_backend();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    for junk in ["", "{", r#"{"refresh_token":"r"}"#, "[1,2]"] {
        std::fs::write(&path, junk).unwrap();
        let built = client(&server, &path);
        assert!(
            matches!(
                built,
                Err(ConfigError::TokenFile(std::io::ErrorKind::InvalidData))
            ),
            "{junk:?}: {built:?}"
        );
    }
    // A directory where the file should be cannot be read.
    let built = client(&server, dir.path());
    assert!(matches!(built, Err(ConfigError::TokenFile(_))), "{built:?}");
}

#[test]
fn a_failed_write_is_reported_and_the_session_goes_on() {
    let server = app_backend();
    let dir = tempfile::tempdir().unwrap();
    // The file's directory does not exist: every write fails.
    let path = dir.path().join("missing").join("tokens.json");
    let c = client(&server, &path).unwrap();
    c.login_with_json(&server.login_url(), CREDENTIALS).unwrap();
    assert_eq!(
        c.token_file().unwrap().last_error(),
        Some(std::io::ErrorKind::NotFound)
    );
    assert_eq!(c.get(&server.url("/api/me")).unwrap().status(), 200);
    assert!(matches!(
        c.login_with_json(&server.login_url(), "{}"),
        Err(Error::Endpoint(_))
    ));
}

#[test]
fn a_pair_that_expired_while_stopped_is_refreshed_before_the_first_request() {
    let server = app_backend();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let issued = {
        let c = client(&server, &path).unwrap();
        c.login_with_json(&server.login_url(), CREDENTIALS).unwrap();
        c.session().tokens().unwrap()
    };
    // The saved expiry is in the past (the app was stopped for a day).
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    saved["expires_at"] = (saved["expires_at"].as_u64().unwrap() - 86_400).into();
    std::fs::write(&path, saved.to_string()).unwrap();
    let c = client(&server, &path).unwrap();
    assert_eq!(c.get(&server.url("/api/me")).unwrap().status(), 200);
    let k = server.counters();
    assert_eq!((k.refresh_calls, k.unauthorized), (1, 0), "{k:?}");
    let now = c.session().tokens().unwrap();
    assert_ne!(now.refresh_token, issued.refresh_token, "rotated and saved");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        written["refresh_token"],
        now.refresh_token.as_ref().unwrap().expose()
    );
}
