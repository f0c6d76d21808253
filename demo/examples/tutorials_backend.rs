//! The README's first quick start: the tutorials' Express/NestJS JWT
//! backend (`POST /auth/login`, `POST /auth/refresh-token` with
//! `{"refreshToken"}`, camelCase answers), tokens kept in a file.
//!
//! `cargo run -p refresh-machine-demo --example tutorials_backend -- http://localhost:3000`
//! against such a backend; `demo/tests/tutorials_backend.rs` runs it
//! against the test server's and checks that the README shows this code.

use refresh_machine_ureq::{Client, Error};

fn main() {
    let api = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://localhost:3000".into());
    match run(&api) {
        Ok(me) => println!("{}: {}", me.status(), String::from_utf8_lossy(me.body())),
        Err(e) => eprintln!("{e}"),
    }
}

/// The quick start, as the README shows it (between the markers).
pub(crate) fn run(api: &str) -> Result<http::Response<Vec<u8>>, Error> {
    // README:begin
    let client = Client::builder()
        .json_endpoint(&format!("{api}/auth/refresh-token"))? // {"refreshToken"} in, camelCase out
        .allow_origin(api)? // the token goes nowhere else
        .token_file("tokens.json")? // kept across restarts
        .build();
    if client.session().tokens().is_none() {
        let credentials = r#"{"username":"alice","password":"wonderland"}"#;
        client.login_with_json(&format!("{api}/auth/login"), credentials)?;
    }
    let me = client.get(&format!("{api}/api/me"))?; // expired? one refresh, then the retry
                                                    // README:end
    Ok(me)
}
