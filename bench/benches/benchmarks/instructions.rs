//! Part 2b: instructions per request under callgrind, a deterministic
//! complement to the wall-clock table (which moves a few percent between
//! runs on a shared machine). The bench binary re-runs itself under
//! `valgrind --tool=callgrind` with [`ENV`] naming one client; that run sends
//! requests in a loop and exits. Two runs per client (few and many requests)
//! cancel start-up costs. Counts include the in-process server's work for the
//! same requests, as the wall-clock figures do.

use std::process::Command;
use std::time::Duration;

use refresh_machine_session::{Secret, TokenPair};
use refresh_machine_testkit::{AuthServer, ServerOptions};

/// Set to a client name, the bench binary runs only that client's loop.
pub const ENV: &str = "BENCH_PROFILE_CLIENT";

/// (name understood by [`run_client`], how the table calls it).
pub const CLIENTS: [(&str, &str); 4] = [
    ("bare-ureq", "bare ureq 3"),
    ("ours-ureq", "refresh-machine-ureq"),
    (
        "bare-reqwest",
        "bare reqwest 0.13 in an empty reqwest-middleware stack",
    ),
    ("ours-reqwest", "refresh-machine-reqwest (middleware)"),
];

/// One client's loop of `n` sequential `GET /api/me` with a valid token.
pub fn run_client(which: &str, n: usize) {
    let server = AuthServer::start_with(ServerOptions {
        access_ttl: Duration::from_secs(3600),
        ..ServerOptions::default()
    })
    .expect("server");
    let t = server.login();
    let url = server.url("/api/me");
    let header = format!("Bearer {}", t.access_token);
    match which {
        "bare-ureq" => {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into();
            for _ in 0..n {
                let mut r = agent
                    .get(&url)
                    .header("authorization", &header)
                    .call()
                    .expect("request");
                std::hint::black_box(r.body_mut().read_to_vec().expect("body"));
            }
        }
        "ours-ureq" => {
            let c = refresh_machine_ureq::Client::builder()
                .token_endpoint(&server.token_url(), &server.options().client_id)
                .and_then(|b| b.allow_origin(&server.origin()))
                .expect("urls")
                .timeout(Duration::from_secs(30))
                .build();
            c.set_tokens(&TokenPair {
                access_token: Secret::from(t.access_token.clone()),
                refresh_token: Some(Secret::from(t.refresh_token.clone())),
                expires_in: Some(t.expires_in),
            })
            .expect("tokens");
            for _ in 0..n {
                std::hint::black_box(c.get(&url).expect("request"));
            }
        }
        "bare-reqwest" | "ours-reqwest" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let client = if which == "bare-reqwest" {
                reqwest_middleware::ClientWithMiddleware::from(reqwest::Client::new())
            } else {
                let auth = refresh_machine_reqwest::RefreshMiddleware::builder(
                    refresh_machine_reqwest::TokioTimer,
                )
                .token_endpoint(&server.token_url(), &server.options().client_id)
                .and_then(|b| b.allow_origin(&server.origin()))
                .expect("urls")
                .build();
                auth.set_tokens(&TokenPair {
                    access_token: Secret::from(t.access_token.clone()),
                    refresh_token: Some(Secret::from(t.refresh_token.clone())),
                    expires_in: Some(t.expires_in),
                })
                .expect("tokens");
                reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                    .with(auth)
                    .build()
            };
            let bare = which == "bare-reqwest";
            rt.block_on(async {
                for _ in 0..n {
                    let mut req = client.get(&url);
                    if bare {
                        req = req.header("authorization", &header);
                    }
                    let r = req.send().await.expect("request");
                    std::hint::black_box(r.bytes().await.expect("body"));
                }
            });
        }
        other => panic!("bare-ureq | ours-ureq | bare-reqwest | ours-reqwest, not {other:?}"),
    }
}

/// Instructions per request for each of [`CLIENTS`], or why they could not be counted.
pub fn measure(few: usize, many: usize) -> Result<Vec<(&'static str, f64)>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let dir = std::env::temp_dir();
    let count = |which: &str, n: usize| -> Result<u64, String> {
        let out_file = dir.join(format!(
            "rm-bench-callgrind-{}-{which}-{n}",
            std::process::id()
        ));
        let out = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(&exe)
            .env(ENV, format!("{which}:{n}"))
            .output()
            .map_err(|e| format!("valgrind could not be started ({e})"))?;
        let _ = std::fs::remove_file(&out_file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!(
                "valgrind run of {which} failed: {}",
                stderr.lines().last().unwrap_or("")
            ));
        }
        stderr
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no instruction count in valgrind's output for {which}"))
    };
    let mut rows = Vec::new();
    for (which, name) in CLIENTS {
        let (a, b) = (count(which, few)?, count(which, many)?);
        rows.push((name, (b.saturating_sub(a)) as f64 / (many - few) as f64));
    }
    Ok(rows)
}
