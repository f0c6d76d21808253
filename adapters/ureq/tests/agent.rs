//! The caller's `ureq::Agent` (`Client::builder_with_agent`) and
//! `post_json`, seen from the wire: a recording relay in front of the test
//! server keeps every byte the client sends.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use refresh_machine_test_server::{redirect_to, AuthServer, ServerOptions, TokenFault};
use refresh_machine_ureq::{Client, Secret, TokenPair};

fn opaque() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        advertise_expiry: false,
        ..ServerOptions::default()
    })
    .unwrap()
}

/// A loopback TCP relay to a test server that records what clients send,
/// per connection. A request's bytes are recorded before they are passed
/// on, so once its response is in, the request is in the record.
struct Recorder {
    port: u16,
    connections: Connections,
}

/// The bytes each connection's client sent, in the order accepted.
type Connections = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// One request as the server received it.
#[derive(Debug)]
struct Recorded {
    method: String,
    path: String,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Recorder {
    fn start(upstream: &AuthServer) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = upstream.port();
        let connections = Connections::default();
        let all = connections.clone();
        // Runs until the test binary exits (a blocked accept has no timeout).
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let log: Arc<Mutex<Vec<u8>>> = Arc::default();
                all.lock().unwrap().push(log.clone());
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        match from_client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                log.lock().unwrap().extend_from_slice(&buf[..n]);
                                if to_server.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to_server.shutdown(Shutdown::Write);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Both);
                });
            }
        });
        Recorder { port, connections }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Every request received so far, in order per connection, connections
    /// in the order they were accepted.
    fn requests(&self) -> Vec<Recorded> {
        let connections = self.connections.lock().unwrap();
        let mut out = Vec::new();
        for log in connections.iter() {
            parse_requests(&log.lock().unwrap(), &mut out);
        }
        out
    }
}

/// HTTP/1.1 requests with `Content-Length` bodies (or none), back to back.
fn parse_requests(mut bytes: &[u8], out: &mut Vec<Recorded>) {
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete request head");
        let head = std::str::from_utf8(&bytes[..end]).expect("an ASCII head");
        let mut lines = head.split("\r\n");
        let mut start = lines.next().unwrap().split(' ');
        let (method, path) = (start.next().unwrap(), start.next().unwrap());
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("a header line");
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        assert!(
            !headers.iter().any(|(n, _)| n == "transfer-encoding"),
            "chunked bodies are not expected here"
        );
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let body = bytes[end + 4..end + 4 + len].to_vec();
        bytes = &bytes[end + 4 + len..];
        out.push(Recorded {
            method: method.to_owned(),
            path: path.to_owned(),
            headers,
            body,
        });
    }
}

fn routes(requests: &[Recorded]) -> Vec<(&str, &str)> {
    requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect()
}

#[test]
fn a_callers_agent_carries_its_user_agent_on_api_and_token_calls() {
    let s = opaque();
    let relay = Recorder::start(&s);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .user_agent("sdk-test/1.0")
        .build()
        .into();
    let c = Client::builder_with_agent(agent)
        .token_endpoint(&relay.url("/token"), &s.options().client_id)
        .unwrap()
        .allow_origin(&relay.origin())
        .unwrap()
        .seed(1)
        .build();
    c.login_with_password("alice", "wonderland").unwrap();
    s.revoke_access_tokens();
    assert_eq!(c.get(&relay.url("/api/me")).unwrap().status(), 200);
    assert_eq!(s.counters().refresh_ok, 1);

    let requests = relay.requests();
    // The password grant, the 401, the refresh grant, the retry.
    let mut seen = routes(&requests);
    seen.sort_unstable();
    assert_eq!(
        seen,
        [
            ("GET", "/api/me"),
            ("GET", "/api/me"),
            ("POST", "/token"),
            ("POST", "/token")
        ]
    );
    for r in &requests {
        assert_eq!(r.header("user-agent"), Some("sdk-test/1.0"), "{r:?}");
    }
    let refresh = requests
        .iter()
        .find(|r| r.body.starts_with(b"grant_type=refresh_token"))
        .expect("the refresh grant went through the relay");
    assert_eq!(refresh.header("user-agent"), Some("sdk-test/1.0"));
}

#[test]
fn a_callers_status_errors_and_redirects_do_not_change_the_rules() {
    let a = opaque();
    let b = opaque();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(true)
        .max_redirects(5)
        .build()
        .into();
    let c = Client::builder_with_agent(agent)
        .token_endpoint(&a.token_url(), &a.options().client_id)
        .unwrap()
        .allow_origin(&a.origin())
        .unwrap()
        // No builder timeout: it alone would configure every call.
        .seed(1)
        .build();
    let t = a.login();
    c.set_tokens(
        &TokenPair::new(Secret::from(t.access_token))
            .with_refresh_token(Secret::from(t.refresh_token)),
    )
    .unwrap();

    // A 401 reaches the session as a response: one refresh, then 200.
    a.revoke_access_tokens();
    assert_eq!(c.get(&a.url("/api/me")).unwrap().status(), 200);
    let k = a.counters();
    assert_eq!((k.unauthorized, k.refresh_ok), (1, 1), "{k:?}");

    // A redirect to another origin: followed here, without the token; B's
    // 401 is delivered as a response and costs no refresh.
    let to_b = c
        .get(&redirect_to(&a.url("/api/redirect"), &b.url("/api/me")))
        .unwrap();
    assert_eq!(to_b.status(), 401);
    assert_eq!(b.counters().with_authorization, 0, "B never saw the token");
    assert_eq!(a.counters().refresh_calls, 1, "no refresh for B's 401");

    // A to B to A: the token again on A's hop, so 200 and no refresh.
    let via_b = redirect_to(&b.url("/api/redirect"), &a.url("/api/me"));
    let back = c
        .get(&redirect_to(&a.url("/api/redirect"), &via_b))
        .unwrap();
    assert_eq!(back.status(), 200);
    assert_eq!(b.counters().with_authorization, 0);
    assert_eq!(a.counters().refresh_calls, 1);

    // The token endpoint's redirect is not followed: B sees no grant.
    let before = b.counters().requests;
    a.revoke_access_tokens();
    a.set_token_fault(TokenFault::Redirect(b.port()), 1);
    assert_eq!(c.get(&a.url("/api/me")).unwrap().status(), 200);
    let kb = b.counters();
    assert_eq!((kb.requests, kb.refresh_calls), (before, 0), "{kb:?}");
    let k = a.counters();
    assert_eq!((k.token_faults, k.refresh_ok), (1, 2), "{k:?}");
}

#[test]
fn post_json_sends_a_json_content_type() {
    let s = opaque();
    let relay = Recorder::start(&s);
    let c = Client::builder()
        .token_endpoint(&relay.url("/token"), &s.options().client_id)
        .unwrap()
        .allow_origin(&relay.origin())
        .unwrap()
        .seed(1)
        .build();
    c.login_with_password("alice", "wonderland").unwrap();
    let created = c
        .post_json(&relay.url("/api/orders"), br#"{"item":"pen"}"#.to_vec())
        .unwrap();
    assert_eq!(created.status(), 201);
    let plain = c
        .post(&relay.url("/api/orders"), b"item=pen".to_vec())
        .unwrap();
    assert_eq!(plain.status(), 201);
    assert_eq!(s.counters().orders, 2);

    let requests = relay.requests();
    let orders: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.path == "/api/orders")
        .collect();
    assert_eq!(orders.len(), 2);
    let json = orders
        .iter()
        .find(|r| r.body == br#"{"item":"pen"}"#)
        .unwrap();
    assert_eq!(json.method, "POST");
    assert_eq!(json.header("content-type"), Some("application/json"));
    let form = orders.iter().find(|r| r.body == b"item=pen").unwrap();
    assert_eq!(form.header("content-type"), None, "post sets none");
}

#[test]
fn the_builders_timeout_replaces_the_agents_on_a_callers_agent() {
    let s = opaque();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let c = Client::builder_with_agent(agent)
        .token_endpoint(&s.token_url(), &s.options().client_id)
        .unwrap()
        .allow_origin(&s.origin())
        .unwrap()
        .timeout(Duration::from_millis(300))
        .config({
            let mut config = refresh_machine_ureq::Config::DEFAULT;
            config.max_transient_retries = 0;
            config
        })
        .seed(1)
        .build();
    c.login_with_password("alice", "wonderland").unwrap();
    // `/api/slow` is held until the server is dropped: only a timeout ends it.
    let started = std::time::Instant::now();
    let err = c.get(&s.url("/api/slow")).unwrap_err();
    assert!(
        matches!(
            err,
            refresh_machine_ureq::Error::Transport(ureq::Error::Timeout(_))
        ),
        "{err:?}"
    );
    // The agent's own 60 s would still be waiting.
    assert!(started.elapsed() < Duration::from_secs(30));
}
