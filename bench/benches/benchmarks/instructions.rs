//! Part 2b: instructions per request under callgrind, a deterministic
//! complement to the wall-clock table (which moves a few percent between
//! runs on a shared machine). The bench binary re-runs itself under
//! `valgrind --tool=callgrind` with [`ENV`] naming one client; that run sends
//! requests in a loop and exits. Two runs per client (few and many requests)
//! cancel start-up costs. Counts include the in-process server's work for the
//! same requests, as the wall-clock figures do.

use std::process::Command;

use crate::overhead;

/// Set to a client name, the bench binary runs only that client's loop.
pub(crate) const ENV: &str = "BENCH_PROFILE_CLIENT";

/// (name understood by [`run_client`], how the table calls it).
pub(crate) const CLIENTS: [(&str, &str); 4] = [
    ("bare-ureq", "bare ureq 3"),
    ("ours-ureq", "refresh-machine-ureq"),
    (
        "bare-reqwest",
        "bare reqwest 0.13 in an empty reqwest-middleware stack",
    ),
    ("ours-reqwest", "refresh-machine-reqwest (middleware)"),
];

/// One client's loop of `n` sequential `GET /api/me` with a valid token,
/// through the same code as the wall-clock benchmark.
pub(crate) fn run_client(which: &str, n: usize) {
    let (server, tokens) = overhead::server();
    let url = server.url("/api/me");
    let header = format!("Bearer {}", tokens.access_token.expose());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match which {
        "bare-ureq" => {
            let agent = overhead::bare_ureq_agent();
            for _ in 0..n {
                overhead::bare_ureq_get(&agent, &url, &header);
            }
        }
        "ours-ureq" => {
            let client = overhead::ours_ureq(&server, &tokens);
            for _ in 0..n {
                overhead::ours_ureq_get(&client, &url);
            }
        }
        "bare-reqwest" => {
            let empty = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
            rt.block_on(async {
                for _ in 0..n {
                    let send = empty.get(&url).header("authorization", &header).send();
                    overhead::reqwest_get("empty middleware stack", send).await;
                }
            });
        }
        "ours-reqwest" => {
            let ours = overhead::ours_reqwest(&server, &tokens);
            rt.block_on(async {
                for _ in 0..n {
                    overhead::reqwest_get("refresh-machine-reqwest", ours.get(&url).send()).await;
                }
            });
        }
        other => panic!("bare-ureq | ours-ureq | bare-reqwest | ours-reqwest, not {other:?}"),
    }
}

/// Instructions per request for each of [`CLIENTS`], or why they could not be counted.
pub(crate) fn measure(few: usize, many: usize) -> Result<Vec<(&'static str, f64)>, String> {
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
