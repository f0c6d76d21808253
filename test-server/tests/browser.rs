//! What browser tests need of the server: CORS (`ServerOptions::cors`), the
//! control routes (`ServerOptions::control`) and the `serve` binary. Plain
//! HTTP/1.1 over `TcpStream`, one connection per request, as a browser's
//! `fetch` would send them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use refresh_machine_test_server::{
    AuthServer, Counters, IssuedTokens, ResourceFault, ServerOptions, TokenFault,
};

/// Long enough for a loaded 2-core machine; only reached when something is wrong.
const TIMEOUT: Duration = Duration::from_secs(60);
const EXPOSED: &str = "www-authenticate, retry-after, content-type, location";
const PAGE: &str = "http://127.0.0.1:9";

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// The headers every answer of a CORS server carries.
    fn assert_cors(&self) {
        assert_eq!(
            self.header("access-control-allow-origin"),
            Some("*"),
            "{self:?}"
        );
        assert_eq!(
            self.header("access-control-expose-headers"),
            Some(EXPOSED),
            "{self:?}"
        );
    }
}

/// One request on a connection of its own; `None` if the server closed the
/// connection without an answer.
fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Answer> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {PAGE}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{method} {path}: {e}"),
    }
    if raw.is_empty() {
        return None;
    }
    let raw = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("a status line")[9..12]
        .parse()
        .expect("a status");
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("a header");
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn addr(server: &AuthServer) -> String {
    format!("127.0.0.1:{}", server.port())
}

fn post(server: &AuthServer, path: &str) -> Answer {
    send(&addr(server), "POST", path, &[], "").expect("an answer")
}

fn get_me(server: &AuthServer, access_token: &str) -> Option<Answer> {
    let bearer = format!("Bearer {access_token}");
    send(
        &addr(server),
        "GET",
        "/api/me",
        &[("Authorization", &bearer)],
        "",
    )
}

fn refresh_grant(server: &AuthServer, refresh_token: &str) -> Option<Answer> {
    let body =
        format!("grant_type=refresh_token&refresh_token={refresh_token}&client_id=demo-client");
    send(
        &addr(server),
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    )
}

fn browser_server() -> AuthServer {
    AuthServer::start_with(ServerOptions {
        cors: true,
        control: true,
        ..ServerOptions::default()
    })
    .expect("server")
}

fn control_ok(server: &AuthServer, path: &str) {
    let a = post(server, path);
    assert_eq!(a.status, 200, "{path}: {a:?}");
    assert_eq!(a.json(), serde_json::json!({ "ok": true }), "{path}");
    a.assert_cors();
}

#[test]
fn a_preflight_is_answered_204_and_counted_nowhere() {
    let server = browser_server();
    let tokens = server.login();
    server.set_token_fault(TokenFault::Status(503, None), 1);
    server.set_resource_fault(ResourceFault::Unavailable(1), 1);
    let before = server.counters();
    let preflight = |path: &str, asked: Option<&str>| {
        let mut headers = vec![("Access-Control-Request-Method", "POST")];
        headers.extend(asked.map(|h| ("Access-Control-Request-Headers", h)));
        send(&addr(&server), "OPTIONS", path, &headers, "").expect("an answer")
    };

    let a = preflight("/token", Some("authorization, content-type"));
    assert_eq!(a.status, 204, "{a:?}");
    a.assert_cors();
    assert_eq!(
        a.header("access-control-allow-methods"),
        Some("GET, POST, PUT, PATCH, DELETE, OPTIONS")
    );
    assert_eq!(
        a.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(a.header("access-control-max-age"), Some("600"));
    assert_eq!(a.body, "");
    for path in [
        "/api/me",
        "/api/orders",
        "/control/reset",
        "/counters",
        "/nowhere",
    ] {
        let a = preflight(path, None);
        assert_eq!(a.status, 204, "{path}: {a:?}");
        a.assert_cors();
        assert_eq!(
            a.header("access-control-allow-headers"),
            Some("authorization, content-type, x-request-id"),
            "{path}"
        );
        assert_eq!(a.header("access-control-max-age"), Some("600"), "{path}");
    }

    // No counter moved, no fault was consumed, nothing was reset.
    assert_eq!(server.counters(), before);
    let a = refresh_grant(&server, &tokens.refresh_token).expect("an answer");
    assert_eq!(a.status, 503, "the token fault is still there: {a:?}");
    let a = get_me(&server, &tokens.access_token).expect("an answer");
    assert_eq!(a.status, 503, "the resource fault is still there: {a:?}");
    assert_eq!(server.counters().logins, 1);
}

#[test]
fn every_answer_carries_the_cors_headers() {
    let server = AuthServer::start_with(ServerOptions {
        cors: true,
        ..ServerOptions::default()
    })
    .expect("server");
    let tokens = server.login();

    // 401s, their challenge readable by the page.
    let a = send(&addr(&server), "GET", "/api/me", &[], "").expect("an answer");
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.header("www-authenticate"), Some(r#"Bearer realm="api""#));
    a.assert_cors();
    let a = get_me(&server, "at-unknown").expect("an answer");
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(
        a.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    a.assert_cors();

    // Token endpoint answers, good and bad.
    let a = refresh_grant(&server, &tokens.refresh_token).expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    a.assert_cors();
    let fresh = a.json();
    let a = refresh_grant(&server, "rt-unknown").expect("an answer");
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.json()["error"], "invalid_grant");
    a.assert_cors();

    // 503 with Retry-After, 200, 403, 404, /counters.
    server.set_resource_fault(ResourceFault::Unavailable(3), 1);
    let access = fresh["access_token"].as_str().expect("an access token");
    let a = get_me(&server, access).expect("an answer");
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.header("retry-after"), Some("3"));
    a.assert_cors();
    let a = get_me(&server, access).expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    a.assert_cors();
    let bearer = format!("Bearer {access}");
    let a = send(
        &addr(&server),
        "GET",
        "/api/admin",
        &[("Authorization", &bearer)],
        "",
    )
    .expect("an answer");
    assert_eq!(a.status, 403, "{a:?}");
    a.assert_cors();
    for path in ["/nowhere", "/control/login"] {
        // Without `control`, /control/ is an unknown path, counted as before.
        let a = post(&server, path);
        assert_eq!(a.status, 404, "{path}: {a:?}");
        a.assert_cors();
    }
    let a = send(&addr(&server), "GET", "/counters", &[], "").expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    a.assert_cors();
    assert_eq!(a.json()["requests"], 10);
    assert_eq!(a.json()["logins"], 1, "no login through /control/login");
}

#[test]
fn without_cors_and_control_nothing_changes() {
    let server = AuthServer::start().expect("server");
    // OPTIONS is routed as any other method: a resource request without a token.
    let a = send(&addr(&server), "OPTIONS", "/api/me", &[], "").expect("an answer");
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), None);
    assert_eq!(a.header("access-control-expose-headers"), None);
    let a = post(&server, "/control/login");
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), None);
    let a = post(&server, "/control/reset");
    assert_eq!(a.status, 404, "{a:?}");
    let c = server.counters();
    assert_eq!((c.requests, c.unauthorized, c.logins), (3, 1, 0), "{c:?}");
}

#[test]
fn control_login_issues_a_pair_that_works() {
    let server = browser_server();
    let a = post(&server, "/control/login");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/json"));
    a.assert_cors();
    let login = a.json();
    assert_eq!(login["token_type"], "Bearer");
    assert_eq!(login["expires_in"], 60);
    assert_eq!(login["expires_in_ms"], 60_000);
    let access = login["access_token"].as_str().expect("an access token");
    let refresh = login["refresh_token"].as_str().expect("a refresh token");

    let a = get_me(&server, access).expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    let a = refresh_grant(&server, refresh).expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    let c = server.counters();
    // A login counted as `AuthServer::login` counts it; the control request is not.
    assert_eq!(
        (
            c.logins,
            c.requests,
            c.ok,
            c.refresh_ok,
            c.with_authorization
        ),
        (1, 2, 1, 1, 1),
        "{c:?}"
    );

    // The lifetime as the token endpoint writes it (rounded up) and exact.
    let short = AuthServer::start_with(ServerOptions {
        access_ttl: Duration::from_millis(1500),
        control: true,
        ..ServerOptions::default()
    })
    .expect("server");
    let login = post(&short, "/control/login").json();
    assert_eq!(login["expires_in"], 2);
    assert_eq!(login["expires_in_ms"], 1500);
}

#[test]
fn control_token_fault_status_fails_the_next_refresh_grants() {
    let server = browser_server();
    let tokens = server.login();
    control_ok(
        &server,
        "/control/token-fault?kind=status&status=503&retry_after=1&times=1",
    );
    let a = refresh_grant(&server, &tokens.refresh_token).expect("an answer");
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.header("retry-after"), Some("1"));
    a.assert_cors();
    let a = refresh_grant(&server, &tokens.refresh_token).expect("an answer");
    assert_eq!(a.status, 200, "once only: {a:?}");

    // `times` counts; `retry_after` is optional.
    let tokens = server.login();
    control_ok(
        &server,
        "/control/token-fault?kind=status&status=500&times=2",
    );
    for _ in 0..2 {
        let a = refresh_grant(&server, &tokens.refresh_token).expect("an answer");
        assert_eq!(a.status, 500, "{a:?}");
        assert_eq!(a.header("retry-after"), None);
    }
    let a = refresh_grant(&server, &tokens.refresh_token).expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    let c = server.counters();
    assert_eq!(
        (c.token_faults, c.refresh_calls, c.refresh_ok),
        (3, 5, 2),
        "{c:?}"
    );
}

#[test]
fn control_token_fault_kinds_do_what_the_rust_faults_do() {
    let server = browser_server();
    let refresh = |tokens: &IssuedTokens| refresh_grant(&server, &tokens.refresh_token);

    // Faults that leave the grant unprocessed: the same token works after.
    let tokens = server.login();
    control_ok(&server, "/control/token-fault?kind=close");
    assert!(refresh(&tokens).is_none(), "closed without an answer");
    control_ok(&server, "/control/token-fault?kind=malformed");
    let a = refresh(&tokens).expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    assert!(serde_json::from_str::<serde_json::Value>(&a.body).is_err());
    control_ok(&server, "/control/token-fault?kind=hang&ms=20");
    assert_eq!(refresh(&tokens).expect("an answer").status, 504);
    control_ok(
        &server,
        "/control/token-fault?kind=huge&status=503&bytes=1000",
    );
    let a = refresh(&tokens).expect("an answer");
    assert_eq!((a.status, a.body.len()), (503, 1000));
    control_ok(&server, "/control/token-fault?kind=redirect&port=9");
    let a = refresh(&tokens).expect("an answer");
    assert_eq!(a.status, 307, "{a:?}");
    assert_eq!(a.header("location"), Some("http://127.0.0.1:9/token"));
    a.assert_cors();
    assert_eq!(server.counters().refresh_ok, 0);
    assert_eq!(refresh(&tokens).expect("an answer").status, 200);

    // Faults that process the grant: answered late, or never.
    let tokens = server.login();
    control_ok(&server, "/control/token-fault?kind=late&ms=20");
    assert_eq!(refresh(&tokens).expect("an answer").status, 200);
    let tokens = server.login();
    control_ok(&server, "/control/token-fault?kind=unanswered&ms=20");
    assert!(refresh(&tokens).is_none(), "closed without an answer");
    let c = server.counters();
    assert_eq!((c.token_faults, c.refresh_ok), (7, 3), "{c:?}");
    // The unanswered grant rotated the token: presenting it again is a reuse.
    assert_eq!(refresh(&tokens).expect("an answer").status, 400);
    assert_eq!(server.counters().reuse_detections, 1);
}

#[test]
fn control_resource_faults_do_what_the_rust_faults_do() {
    let server = browser_server();
    let tokens = server.login();
    control_ok(
        &server,
        "/control/resource-fault?kind=unavailable&retry_after=2&times=2",
    );
    for _ in 0..2 {
        let a = get_me(&server, &tokens.access_token).expect("an answer");
        assert_eq!(a.status, 503, "{a:?}");
        assert_eq!(a.header("retry-after"), Some("2"));
        a.assert_cors();
    }
    assert_eq!(
        get_me(&server, &tokens.access_token)
            .expect("an answer")
            .status,
        200
    );

    control_ok(&server, "/control/resource-fault?kind=unavailable");
    let a = get_me(&server, &tokens.access_token).expect("an answer");
    assert_eq!((a.status, a.header("retry-after")), (503, Some("1")));

    control_ok(
        &server,
        "/control/resource-fault?kind=always-unauthorized&times=1",
    );
    let a = get_me(&server, &tokens.access_token).expect("an answer");
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(
        a.header("www-authenticate"),
        Some(r#"Bearer realm="api", error="invalid_token""#)
    );
    a.assert_cors();

    control_ok(
        &server,
        "/control/resource-fault?kind=close-after-processing",
    );
    let bearer = format!("Bearer {}", tokens.access_token);
    let order = send(
        &addr(&server),
        "POST",
        "/api/orders",
        &[("Authorization", &bearer)],
        "{}",
    );
    assert!(order.is_none(), "closed without an answer: {order:?}");
    let c = server.counters();
    assert_eq!((c.resource_faults, c.orders, c.ok), (5, 1, 1), "{c:?}");
}

#[test]
fn control_clears_faults_and_revokes() {
    let server = browser_server();
    let tokens = server.login();
    control_ok(
        &server,
        "/control/token-fault?kind=status&status=503&times=5",
    );
    control_ok(&server, "/control/resource-fault?kind=unavailable&times=5");
    control_ok(&server, "/control/clear-faults");
    assert_eq!(
        get_me(&server, &tokens.access_token)
            .expect("an answer")
            .status,
        200
    );
    let a = refresh_grant(&server, &tokens.refresh_token).expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    let rotated = a.json();
    let (access, refresh) = (
        rotated["access_token"].as_str().expect("an access token"),
        rotated["refresh_token"].as_str().expect("a refresh token"),
    );

    // Access tokens revoked, the session kept: a refresh mends it.
    control_ok(&server, "/control/revoke-access-tokens");
    assert_eq!(get_me(&server, access).expect("an answer").status, 401);
    let a = refresh_grant(&server, refresh).expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    let rotated = a.json();
    let access = rotated["access_token"].as_str().expect("an access token");
    let refresh = rotated["refresh_token"].as_str().expect("a refresh token");
    assert_eq!(get_me(&server, access).expect("an answer").status, 200);

    // Sessions revoked: the refresh token is refused.
    control_ok(&server, "/control/revoke-sessions");
    let a = refresh_grant(&server, refresh).expect("an answer");
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.json()["error"], "invalid_grant");
    let c = server.counters();
    assert_eq!(
        (c.token_faults, c.resource_faults, c.reuse_detections),
        (0, 0, 0),
        "{c:?}"
    );
}

#[test]
fn control_reset_is_a_fresh_start() {
    let server = browser_server();
    let old = server.login();
    let bearer = format!("Bearer {}", old.access_token);
    let order = |bearer: &str| {
        send(
            &addr(&server),
            "POST",
            "/api/orders",
            &[("Authorization", bearer), ("Idempotency-Key", "k1")],
            "{}",
        )
        .expect("an answer")
    };
    assert_eq!(order(&bearer).status, 201);
    assert_eq!(
        get_me(&server, "at-unknown").expect("an answer").status,
        401
    );
    control_ok(
        &server,
        "/control/token-fault?kind=status&status=503&times=9",
    );
    control_ok(
        &server,
        "/control/resource-fault?kind=always-unauthorized&times=9",
    );
    assert_ne!(server.counters(), Counters::default());

    control_ok(&server, "/control/reset");
    assert_eq!(server.counters(), Counters::default());

    // Everything issued before is revoked.
    assert_eq!(
        get_me(&server, &old.access_token)
            .expect("an answer")
            .status,
        401
    );
    let a = refresh_grant(&server, &old.refresh_token).expect("an answer");
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.json()["error"], "invalid_grant");
    // No fault left; tokens issued now work; the idempotency key is forgotten.
    let new = server.login();
    assert_eq!(
        get_me(&server, &new.access_token)
            .expect("an answer")
            .status,
        200
    );
    assert_eq!(
        refresh_grant(&server, &new.refresh_token)
            .expect("an answer")
            .status,
        200
    );
    let a = order(&format!("Bearer {}", new.access_token));
    assert_eq!(a.status, 201, "{a:?}");
    let c = server.counters();
    assert_eq!(
        (
            c.token_faults,
            c.resource_faults,
            c.duplicate_orders,
            c.orders,
            c.logins
        ),
        (0, 0, 0, 1, 1),
        "{c:?}"
    );
}

#[test]
fn bad_control_requests_are_refused_and_change_nothing() {
    let server = browser_server();
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "POST",
            "/control/token-fault?kind=nope",
            400,
            "unknown token fault kind",
        ),
        ("POST", "/control/token-fault", 400, "\"kind\" missing"),
        (
            "POST",
            "/control/token-fault?kind=status",
            400,
            "\"status\" missing",
        ),
        (
            "POST",
            "/control/token-fault?kind=status&status=abc",
            400,
            "not a number",
        ),
        (
            "POST",
            "/control/token-fault?kind=status&status=99",
            400,
            "200 to 599",
        ),
        (
            "POST",
            "/control/token-fault?kind=status&status=600",
            400,
            "200 to 599",
        ),
        (
            "POST",
            "/control/token-fault?kind=status&status=70000",
            400,
            "not a number",
        ),
        (
            "POST",
            "/control/token-fault?kind=status&status=503&retry_after=-1",
            400,
            "not a number",
        ),
        (
            "POST",
            "/control/token-fault?kind=status&status=503&times=0",
            400,
            "at least 1",
        ),
        (
            "POST",
            "/control/token-fault?kind=status&status=503&times=-1",
            400,
            "not a number",
        ),
        (
            "POST",
            "/control/token-fault?kind=status&status=503&times=99999999999",
            400,
            "not a number",
        ),
        (
            "POST",
            "/control/token-fault?kind=hang",
            400,
            "\"ms\" missing",
        ),
        (
            "POST",
            "/control/token-fault?kind=late&ms=99999999999",
            400,
            "at most",
        ),
        (
            "POST",
            "/control/token-fault?kind=huge&status=503&bytes=99999999999",
            400,
            "at most",
        ),
        (
            "POST",
            "/control/token-fault?kind=redirect&port=0",
            400,
            "port",
        ),
        (
            "POST",
            "/control/token-fault?kind=close&status=503",
            400,
            "unexpected parameter",
        ),
        (
            "POST",
            "/control/token-fault?kind=status&status=503&retry-after=1",
            400,
            "unexpected parameter",
        ),
        (
            "POST",
            "/control/token-fault?kind=close&kind=malformed",
            400,
            "given twice",
        ),
        (
            "POST",
            "/control/resource-fault?kind=nope",
            400,
            "unknown resource fault kind",
        ),
        (
            "POST",
            "/control/resource-fault?kind=unavailable&retry_after=soon",
            400,
            "not a number",
        ),
        (
            "POST",
            "/control/resource-fault?kind=always-unauthorized&times=0",
            400,
            "at least 1",
        ),
        (
            "POST",
            "/control/login?user=bob",
            400,
            "unexpected parameter",
        ),
        ("POST", "/control/reset?now=1", 400, "unexpected parameter"),
        ("POST", "/control/nope", 404, "unknown control route"),
        ("GET", "/control/login", 405, "POST"),
        ("GET", "/control/reset", 405, "POST"),
    ];
    for &(method, path, status, reason) in cases {
        let a = send(&addr(&server), method, path, &[], "").expect("an answer");
        assert_eq!(a.status, status, "{method} {path}: {a:?}");
        assert!(a.body.contains(reason), "{method} {path}: {a:?}");
        assert_eq!(
            a.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{path}"
        );
        a.assert_cors();
    }
    // Nothing counted, nothing issued, no fault set, nothing reset.
    assert_eq!(server.counters(), Counters::default());
    let tokens = server.login();
    assert_eq!(
        get_me(&server, &tokens.access_token)
            .expect("an answer")
            .status,
        200
    );
    assert_eq!(
        refresh_grant(&server, &tokens.refresh_token)
            .expect("an answer")
            .status,
        200
    );
}

/// A `serve` process, killed by its PID unless it was seen to exit.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    reaped: bool,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_serve"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serve {
            child,
            lines,
            reaped: false,
        }
    }

    /// Close its stdin and wait (bounded) for it to exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.reaped = true;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit at EOF on stdin"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn the_serve_binary_prints_its_origin_and_stops_at_eof_on_stdin() {
    let mut serve = Serve::start(&["--access-ttl-ms", "1500"]);
    let line = serve.lines.recv_timeout(TIMEOUT).expect("the origin line");
    let origin = line.strip_prefix("origin=http://").expect(&line);
    let (host, port) = origin.split_once(':').expect(&line);
    assert_eq!(host, "127.0.0.1");
    assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{line}");

    // CORS and control are on; the TTL is the one asked for.
    let a = send(origin, "OPTIONS", "/api/me", &[], "").expect("an answer");
    assert_eq!(a.status, 204, "{a:?}");
    let login = send(origin, "POST", "/control/login", &[], "").expect("an answer");
    assert_eq!(login.status, 200, "{login:?}");
    login.assert_cors();
    let login = login.json();
    assert_eq!(login["expires_in_ms"], 1500);
    let bearer = format!(
        "Bearer {}",
        login["access_token"].as_str().expect("a token")
    );
    let a = send(origin, "GET", "/api/me", &[("Authorization", &bearer)], "").expect("an answer");
    assert_eq!(a.status, 200, "{a:?}");
    a.assert_cors();

    let status = serve.stop();
    assert!(status.success(), "{status:?}");
    // Nothing else on stdout (its end reached once the process is gone).
    assert_eq!(serve.lines.recv_timeout(TIMEOUT).ok(), None);
}

#[test]
fn the_serve_binary_refuses_bad_arguments() {
    for args in [
        &["--bogus"][..],
        &["--access-ttl-ms"],
        &["--access-ttl-ms", "0"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_serve"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run serve");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
