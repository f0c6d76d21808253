//! A token endpoint that never stops talking: one connection, a 200 with a
//! chunked body of up to `limit` bytes. A client that caps what it reads
//! closes early, and the server stops with far fewer bytes written.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;

/// A one-shot endless token endpoint on 127.0.0.1.
#[derive(Debug)]
pub struct EndlessTokenEndpoint {
    url: String,
    thread: Option<JoinHandle<u64>>,
}

impl EndlessTokenEndpoint {
    /// Listen; the first connection gets a 200 whose chunked body runs to
    /// `limit` bytes, or until the client hangs up.
    pub fn start(limit: u64) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/token", listener.local_addr()?);
        let thread = std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return 0;
            };
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            // The request head; the form body is not needed.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut out = stream;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if out.write_all(head.as_bytes()).is_err() {
                return 0;
            }
            let chunk = vec![b' '; 64 * 1024];
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            let mut written = 0u64;
            while written < limit {
                if out.write_all(&framed).is_err() {
                    break;
                }
                written += chunk.len() as u64;
            }
            let _ = out.write_all(b"0\r\n\r\n");
            written
        });
        Ok(EndlessTokenEndpoint {
            url,
            thread: Some(thread),
        })
    }

    /// Its token URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Wait for the connection to end; the body bytes the server managed to write.
    pub fn written(mut self) -> u64 {
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("the endless endpoint thread"))
    }
}
