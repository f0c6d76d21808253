//! Django OAuth Toolkit processes on 127.0.0.1, started from the repository's
//! `interop/server/serve.py` with the Python the interop script installed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the Python interpreter that has Django
/// OAuth Toolkit installed (`bash interop/run` sets it).
pub const PYTHON_VAR: &str = "INTEROP_PYTHON";

/// The user and client `serve.py --setup` creates.
pub const USERNAME: &str = "alice";
/// Their password.
pub const PASSWORD: &str = "wonderland";
/// The public client (password grant, refresh tokens).
pub const CLIENT_ID: &str = "interop-client";

fn python() -> PathBuf {
    match std::env::var_os(PYTHON_VAR) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "{PYTHON_VAR} is not set: the interop suite needs Django OAuth Toolkit. \
             Run `bash interop/run`, which installs it into a virtualenv and runs the suite."
        ),
    }
}

fn serve_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("server/serve.py")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
    l.local_addr().expect("local address").port()
}

/// A scratch folder for one deployment's database and request log, removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "refresh-machine-interop-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch folder");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `serve.py` process. Killed by its PID on [`stop`](Self::stop) or drop.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    port: u16,
    role: &'static str,
    args: Vec<String>,
}

impl Process {
    fn spawn(role: &'static str, port: u16, args: Vec<String>) -> Process {
        let mut p = Process {
            child: None,
            port,
            role,
            args,
        };
        p.start();
        p
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port, and wait until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} server already running", self.role);
        let child = Command::new(python())
            .arg(serve_py())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} server ({}): {e}", self.role, python().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let url = format!("{}/healthz", self.origin());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{} server exited during start-up: {status}", self.role);
                }
            }
            if agent.get(&url).call().is_ok_and(|r| r.status() == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} server did not answer on {url} within 60 s", self.role);
    }

    /// Kill the process by its PID (SIGKILL: a crash, as far as clients can
    /// tell) and reap it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An authorization server and a separate API server on one database, as
/// deployed: the token endpoint and the resource server are different origins.
#[derive(Debug)]
pub struct Deployment {
    /// Serves `/o/token/` and `/o/revoke_token/`.
    pub auth: Process,
    /// Serves `/api/me` (DRF + DOT's `OAuth2Authentication`).
    pub api: Process,
    log: PathBuf,
    _scratch: Scratch,
}

impl Deployment {
    /// Start both, access tokens living `access_ttl` seconds.
    pub fn start(access_ttl: u32) -> Deployment {
        let scratch = Scratch::new();
        let db = scratch.0.join("db.sqlite3");
        let log = scratch.0.join("requests.jsonl");
        let args = |port: u16, role: &str, setup: bool| {
            let mut a = vec![
                "--db".to_owned(),
                db.display().to_string(),
                "--log".to_owned(),
                log.display().to_string(),
                "--port".to_owned(),
                port.to_string(),
                "--role".to_owned(),
                role.to_owned(),
                "--access-ttl".to_owned(),
                access_ttl.to_string(),
            ];
            if setup {
                a.push("--setup".to_owned());
            }
            a
        };
        let auth_port = free_port();
        let auth = Process::spawn("auth", auth_port, args(auth_port, "auth", true));
        let api_port = free_port();
        let api = Process::spawn("api", api_port, args(api_port, "api", false));
        Deployment {
            auth,
            api,
            log,
            _scratch: scratch,
        }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/o/token/", self.auth.origin())
    }

    /// The protected API route.
    pub fn me_url(&self) -> String {
        format!("{}/api/me", self.api.origin())
    }

    /// Expire every access token on the server (refresh tokens stay valid):
    /// the clients still think theirs are good.
    pub fn expire_access_tokens(&self) {
        let r = ureq::post(format!("{}/control/expire-access", self.api.origin()))
            .send_empty()
            .expect("expire access tokens");
        assert_eq!(r.status(), 200);
    }

    /// Revoke a token at the RFC 7009 endpoint (DOT revokes a refresh token's
    /// access token with it).
    pub fn revoke(&self, token: &str) {
        let r = ureq::post(format!("{}/o/revoke_token/", self.auth.origin()))
            .send_form([("token", token), ("client_id", CLIENT_ID)])
            .expect("revoke token");
        assert_eq!(r.status(), 200, "revocation endpoint");
    }

    /// What the servers have logged so far.
    pub fn counts(&self) -> Counts {
        Counts::read(&self.log)
    }
}

/// Counted from the servers' request log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Password grants answered 200.
    pub logins: u32,
    /// Refresh-token grant requests, whatever the answer.
    pub refresh_grants: u32,
    /// Refresh grants answered 200.
    pub refresh_ok: u32,
    /// Token-endpoint answers `invalid_grant` (a spent, revoked or unknown
    /// refresh token: with reuse protection, a spent one revokes the family).
    pub invalid_grants: u32,
    /// API requests answered 200.
    pub api_ok: u32,
    /// API requests answered 401.
    pub api_unauthorized: u32,
}

impl Counts {
    fn read(path: &Path) -> Counts {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut c = Counts::default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let status = v["status"].as_u64().unwrap_or(0);
            match (v["path"].as_str(), v["grant"].as_str()) {
                (Some("/o/token/"), Some("password")) if status == 200 => c.logins += 1,
                (Some("/o/token/"), Some("refresh_token")) => {
                    c.refresh_grants += 1;
                    c.refresh_ok += u32::from(status == 200);
                }
                (Some("/api/me"), _) => {
                    c.api_ok += u32::from(status == 200);
                    c.api_unauthorized += u32::from(status == 401);
                }
                _ => {}
            }
            if v["path"] == "/o/token/" && v["error"] == "invalid_grant" {
                c.invalid_grants += 1;
            }
        }
        c
    }
}
