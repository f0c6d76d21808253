//! What a test running in a browser, on another origin, needs: CORS
//! ([`ServerOptions::cors`](super::ServerOptions::cors)) and the control
//! routes ([`ServerOptions::control`](super::ServerOptions::control)),
//! which do what [`AuthServer`](super::AuthServer)'s methods do.

use super::{
    json, BodyExt, Bytes, Full, HeaderValue, Method, Request, ResourceFault, Resp, Response,
    Shared, StatusCode, TokenFault, CONTENT_TYPE,
};
use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ALLOW,
    VARY,
};

/// The methods a preflight allows.
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
/// The request headers a preflight allows when it names none.
const ALLOW_HEADERS: &str = "authorization, content-type, x-request-id";
/// The response headers a script may read.
const EXPOSE_HEADERS: &str = "www-authenticate, retry-after, content-type, location";
/// The longest `hang`, `late` or `unanswered` fault (one hour).
const MAX_MILLIS: u64 = 3_600_000;
/// The largest `huge` fault's body (16 MiB).
const MAX_BYTES: usize = 16 << 20;

/// Add the headers every cross-origin answer carries.
pub(super) fn with_cors(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    r
}

/// The answer to a CORS preflight: 204, any origin, the methods above, the
/// request headers asked for (or the usual ones), cached for 10 minutes.
pub(super) fn preflight(request: &hyper::HeaderMap) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    match request.get(ACCESS_CONTROL_REQUEST_HEADERS) {
        Some(asked) => {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            h.insert(
                VARY,
                HeaderValue::from_static("access-control-request-headers"),
            );
        }
        None => {
            h.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
        }
    }
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    if request.contains_key("access-control-request-private-network") {
        // Chromium's Private Network Access: a page on a public origin may
        // reach this loopback server too.
        h.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    with_cors(r)
}

/// A `/control/...` request: counted nowhere; a JSON answer, or a
/// plain-text 400, 404 or 405.
pub(super) async fn control(shared: &Shared, req: Request<hyper::body::Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    // Read (and ignored), so the connection can carry the next request.
    let _ = body.collect().await;
    if parts.method != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "control routes take POST");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    match act(shared, parts.uri.path(), parts.uri.query().unwrap_or("")) {
        Ok(Some(body)) => json(StatusCode::OK, body.to_string()),
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            "unknown control route: login, token-fault, resource-fault, clear-faults, \
             revoke-access-tokens, revoke-sessions, reset",
        ),
        Err(reason) => text(StatusCode::BAD_REQUEST, &reason),
    }
}

/// Do what `path` asks; `None` for an unknown route, a reason for bad parameters.
fn act(shared: &Shared, path: &str, query: &str) -> Result<Option<serde_json::Value>, String> {
    let mut params = Params::parse(query)?;
    let done = serde_json::json!({ "ok": true });
    let answer = match path {
        "/control/login" => {
            params.finish()?;
            let issued = shared.login();
            let millis = issued.expires_in.as_millis();
            serde_json::json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "refresh_token": issued.refresh_token,
                // As the token endpoint writes it: whole seconds, rounded up, at least 1.
                "expires_in": millis.div_ceil(1000).max(1) as u64,
                "expires_in_ms": millis as u64,
            })
        }
        "/control/token-fault" => {
            let fault = token_fault(&mut params)?;
            let times = params.times()?;
            params.finish()?;
            shared.set_token_fault(fault, times);
            done
        }
        "/control/resource-fault" => {
            let fault = resource_fault(&mut params)?;
            let times = params.times()?;
            params.finish()?;
            shared.set_resource_fault(fault, times);
            done
        }
        "/control/clear-faults" => {
            params.finish()?;
            shared.clear_faults();
            done
        }
        "/control/revoke-access-tokens" => {
            params.finish()?;
            shared.revoke_access_tokens();
            done
        }
        "/control/revoke-sessions" => {
            params.finish()?;
            shared.revoke_sessions();
            done
        }
        "/control/reset" => {
            params.finish()?;
            shared.reset();
            done
        }
        _ => return Ok(None),
    };
    Ok(Some(answer))
}

/// `kind=status&status=S[&retry_after=SECS]`, `kind=hang&ms=MS`, `kind=close`,
/// `kind=malformed`, `kind=redirect&port=PORT`, `kind=huge&status=S&bytes=N`,
/// `kind=late&ms=MS`, `kind=unanswered&ms=MS`.
fn token_fault(params: &mut Params) -> Result<TokenFault, String> {
    let kind = params.required("kind")?;
    Ok(match kind.as_str() {
        "status" => TokenFault::Status(params.status()?, params.number("retry_after")?),
        "hang" => TokenFault::Hang(params.millis()?),
        "close" => TokenFault::Close,
        "malformed" => TokenFault::Malformed,
        "redirect" => {
            let port: u16 = params.required_number("port")?;
            if port == 0 {
                return Err("port must be 1 to 65535".into());
            }
            TokenFault::Redirect(port)
        }
        "huge" => {
            let status = params.status()?;
            let bytes: usize = params.required_number("bytes")?;
            if bytes > MAX_BYTES {
                return Err(format!("bytes must be at most {MAX_BYTES}"));
            }
            TokenFault::Huge(status, bytes)
        }
        "late" => TokenFault::Late(params.millis()?),
        "unanswered" => TokenFault::Unanswered(params.millis()?),
        other => {
            return Err(format!(
                "unknown token fault kind {other:?}: status, hang, close, malformed, \
                 redirect, huge, late, unanswered"
            ))
        }
    })
}

/// `kind=unavailable[&retry_after=SECS]` (1 s by default),
/// `kind=always-unauthorized`, `kind=close-after-processing`.
fn resource_fault(params: &mut Params) -> Result<ResourceFault, String> {
    let kind = params.required("kind")?;
    Ok(match kind.as_str() {
        "unavailable" => ResourceFault::Unavailable(params.number("retry_after")?.unwrap_or(1)),
        "always-unauthorized" => ResourceFault::AlwaysUnauthorized,
        "close-after-processing" => ResourceFault::CloseAfterProcessing,
        other => {
            return Err(format!(
                "unknown resource fault kind {other:?}: unavailable, always-unauthorized, \
                 close-after-processing"
            ))
        }
    })
}

/// A control request's query parameters, each taken at most once; any left
/// untaken is an error (a misspelt name is not silently ignored).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Result<Params, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(format!("parameter {name:?} given twice"));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Params(pairs))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }

    fn required(&mut self, name: &str) -> Result<String, String> {
        self.take(name)
            .ok_or_else(|| format!("parameter {name:?} missing"))
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>, String> {
        self.take(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("parameter {name:?}: {v:?} is not a number in range"))
            })
            .transpose()
    }

    fn required_number<T: std::str::FromStr>(&mut self, name: &str) -> Result<T, String> {
        self.number(name)?
            .ok_or_else(|| format!("parameter {name:?} missing"))
    }

    /// `status`: an HTTP status from 200 to 599.
    fn status(&mut self) -> Result<u16, String> {
        let status: u16 = self.required_number("status")?;
        if !(200..=599).contains(&status) {
            return Err(format!("status must be 200 to 599, not {status}"));
        }
        Ok(status)
    }

    /// `ms`: a duration in milliseconds, at most an hour.
    fn millis(&mut self) -> Result<std::time::Duration, String> {
        let ms: u64 = self.required_number("ms")?;
        if ms > MAX_MILLIS {
            return Err(format!("ms must be at most {MAX_MILLIS}"));
        }
        Ok(std::time::Duration::from_millis(ms))
    }

    /// `times`: how many requests the fault hits, 1 by default, at least 1.
    fn times(&mut self) -> Result<u32, String> {
        let times = self.number("times")?.unwrap_or(1);
        if times == 0 {
            return Err("times must be at least 1".into());
        }
        Ok(times)
    }

    /// Every parameter was used.
    fn finish(self) -> Result<(), String> {
        match self.0.first() {
            None => Ok(()),
            Some((name, _)) => Err(format!("unexpected parameter {name:?}")),
        }
    }
}

/// A plain-text answer (the control routes' errors).
fn text(status: StatusCode, reason: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}
