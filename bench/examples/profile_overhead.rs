//! Instruction profile of one client's hot path (for callgrind), not a benchmark:
//! `cargo build --release -p refresh-machine-bench --example profile_overhead`, then
//! `valgrind --tool=callgrind target/release/examples/profile_overhead ours-ureq`
//! (or `bare-ureq`, `ours-reqwest`, `bare-reqwest`; the bare reqwest client runs
//! in an empty middleware stack, so the difference is the middleware alone).

use std::time::Duration;

use refresh_machine_session::{Secret, TokenPair};
use refresh_machine_testkit::{AuthServer, ServerOptions};

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let server = AuthServer::start_with(ServerOptions {
        access_ttl: Duration::from_secs(3600),
        ..ServerOptions::default()
    })
    .expect("server");
    let t = server.login();
    let url = server.url("/api/me");
    let header = format!("Bearer {}", t.access_token);
    match which.as_str() {
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
