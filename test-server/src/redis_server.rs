//! A `redis-server` for one test (or one demo run): on a free port of
//! 127.0.0.1, its data in a scratch folder, stopped by its PID.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process, stopped by its PID on [`stop`](Self::stop) or
/// drop. It needs `redis-server` on the `PATH` (Debian: `apt-get install
/// redis-server`; `.ci/run` installs it).
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// On a free port, with a new scratch folder.
    pub fn start() -> std::io::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Self::start_on(port, tempfile::tempdir()?)
    }

    /// On `port`, its data (append-only, fsync'ed on every write) in `dir`:
    /// what [`stop`](Self::stop) returns starts it again with its data.
    pub fn start_on(port: u16, dir: tempfile::TempDir) -> std::io::Result<RedisServer> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start redis-server (apt-get install redis-server): {e}"),
                )
            })?;
        let mut server = RedisServer {
            child,
            port,
            dir: Some(dir),
        };
        // Ready when it answers PING: bounded in count and time.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(std::io::Error::other(format!(
                    "redis-server exited during start-up on port {port}: {status}"
                )));
            }
            if ping(port) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.kill();
        Err(std::io::Error::other(format!(
            "redis-server did not answer PING on port {port} within 10 s"
        )))
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop it (SIGKILL, by its PID); its port and data folder, to start it
    /// again with [`start_on`](Self::start_on).
    pub fn stop(mut self) -> (u16, tempfile::TempDir) {
        self.kill();
        let dir = self.dir.take().expect("a running server has its folder");
        (self.port, dir)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `PING` answered `+PONG` within 200 ms.
fn ping(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut answer = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}
