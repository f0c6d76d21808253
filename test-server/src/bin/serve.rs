//! `serve`: the test server as a process of its own, for tests that run in a
//! browser (wasm-bindgen-test) and reach it over HTTP from another origin.
//!
//! ```text
//! cargo run -p refresh-machine-test-server --bin serve -- [--access-ttl-ms N]
//! ```
//!
//! Starts an [`AuthServer`] on an ephemeral 127.0.0.1 port with
//! [`ServerOptions::cors`] and [`ServerOptions::control`] on (the control
//! routes are listed there) and access tokens that live `N` ms (60,000 by
//! default), prints one line, `origin=http://127.0.0.1:PORT`, on stdout,
//! then serves until its stdin reaches end of file: the parent that started
//! it stops it by closing the pipe to its stdin (or by `kill PID`). Nothing
//! else is written to stdout; diagnostics go to stderr. Exit status 0 once
//! stopped, 2 for bad arguments, 1 if the server cannot start.
//!
//! Its stdin must stay open while it serves: `serve < /dev/null` stops at
//! once. From a shell, start it with a pipe to its stdin (bash's `coproc`,
//! or a FIFO held open) or stop it with `kill`.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use refresh_machine_test_server::{AuthServer, ServerOptions};

const USAGE: &str = "usage: serve [--access-ttl-ms N]
  Serve the refresh-machine test server (CORS and /control/ routes on) on
  127.0.0.1, print `origin=http://127.0.0.1:PORT` on stdout, stop at EOF on stdin.
  --access-ttl-ms N   lifetime of access tokens in milliseconds (default 60000)";

fn main() -> ExitCode {
    let access_ttl = match parse_args(std::env::args().skip(1)) {
        Ok(Some(ttl)) => ttl,
        Ok(None) => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(reason) => {
            eprintln!("serve: {reason}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match AuthServer::start_with(ServerOptions {
        access_ttl,
        cors: true,
        control: true,
        ..ServerOptions::default()
    }) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("serve: cannot start the server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "origin={}", server.origin()).and_then(|()| stdout.flush()) {
        eprintln!("serve: cannot write the origin to stdout: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "serve: listening on {} (access tokens live {} ms); stops at EOF on stdin",
        server.origin(),
        access_ttl.as_millis()
    );
    // Whatever comes in is ignored; end of file (or a broken stdin) stops it.
    let mut buffer = [0u8; 1024];
    loop {
        match std::io::stdin().read(&mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("serve: stdin: {e}; stopping");
                break;
            }
        }
    }
    drop(server);
    eprintln!("serve: stopped");
    ExitCode::SUCCESS
}

/// The access tokens' lifetime, or `None` for `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Duration>, String> {
    let mut ttl = Duration::from_secs(60);
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--access-ttl-ms" => args
                .next()
                .ok_or("--access-ttl-ms needs a number of milliseconds")?,
            other => match other.strip_prefix("--access-ttl-ms=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        };
        let ms: u64 = value
            .parse()
            .ok()
            .filter(|&ms| ms > 0)
            .ok_or_else(|| format!("--access-ttl-ms: {value:?} is not a positive integer"))?;
        ttl = Duration::from_millis(ms);
    }
    Ok(Some(ttl))
}
