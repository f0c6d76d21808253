//! A worker process driven over its stdin and stdout (the multi-process
//! tests and the demo's `--processes`), stopped by its PID.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

/// A child process, its stdin, and the answers it prints.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
}

impl WorkerProcess {
    /// Start `command` with stdin and stdout piped. A line it prints that
    /// contains `marker` is an answer: what follows the marker (the marker
    /// may follow other output on the same line, as libtest's `test x ... `).
    pub fn start(mut command: Command, marker: &'static str) -> std::io::Result<WorkerProcess> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(std::io::Error::other("stdin and stdout not piped"));
        };
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find(marker) {
                    if tx.send(line[at + marker.len()..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(WorkerProcess {
            child,
            stdin,
            answers,
        })
    }

    /// Write `line` to its stdin.
    pub fn send(&mut self, line: &str) -> std::io::Result<()> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()
    }

    /// Its next answer, if one comes within `timeout`.
    pub fn answer(&self, timeout: Duration) -> Option<String> {
        self.answers.recv_timeout(timeout).ok()
    }

    /// Stop it now (SIGKILL on Unix), by its PID, and reap it.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(drop)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        // Stopped by its PID, whatever it is doing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
