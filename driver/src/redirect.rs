//! Redirect policy for clients that follow redirects themselves (ureq's
//! client does, so the token can be checked per hop): where the next hop
//! goes, with which method, and whether it may carry the token.

use http::header::{
    HeaderName, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, LOCATION,
    PROXY_AUTHORIZATION, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::Origins;

/// Redirect hops followed per attempt.
pub const MAX_REDIRECTS: usize = 10;

/// The next hop of a redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Where it goes.
    pub uri: Uri,
    /// With which method: 303 (and 301/302 after a POST, as browsers do) become GET.
    pub method: Method,
    /// Whether the body goes along (not when the method became GET).
    pub keep_body: bool,
}

/// Headers that carry the first origin's credentials: never sent to another
/// origin (as browsers and ureq do).
pub const CREDENTIAL_HEADERS: [HeaderName; 3] = [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION];

/// Headers that describe a body: dropped with it when a redirect turns the
/// method into GET.
const BODY_HEADERS: [HeaderName; 4] = [
    CONTENT_TYPE,
    CONTENT_LENGTH,
    CONTENT_ENCODING,
    TRANSFER_ENCODING,
];

/// The caller's headers for a hop to `uri` of a request first sent to
/// `first`: credential headers only on the first origin, body headers only
/// while the body goes along. The token, when the hop may carry it, is added
/// by the caller (see [`token_allowed`]).
pub fn hop_headers(headers: &HeaderMap, first: &Uri, uri: &Uri, body_dropped: bool) -> HeaderMap {
    let mut h = headers.clone();
    if !Origins::same_origin(first, uri) {
        for name in &CREDENTIAL_HEADERS {
            h.remove(name);
        }
    }
    if body_dropped {
        for name in &BODY_HEADERS {
            h.remove(name);
        }
    }
    h
}

/// The hop a response asks for, if it is a redirect with a usable `Location`
/// (absolute, scheme-relative, or a reference relative to the current URL,
/// resolved as RFC 3986 section 5.2 says; a fragment is dropped). `Location`
/// is only read when the status says to follow it (3xx other than 304).
pub fn next_hop(
    current: &Uri,
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<NextHop> {
    if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
        return None;
    }
    let location = headers.get(LOCATION)?.to_str().ok()?;
    let uri = resolve(current, location)?;
    let to_get = status == StatusCode::SEE_OTHER
        || (matches!(status.as_u16(), 301 | 302) && method == Method::POST);
    Some(NextHop {
        uri,
        method: if to_get { Method::GET } else { method.clone() },
        keep_body: !to_get,
    })
}

/// Whether hop number `hop` (0: the request itself, whose origin the caller
/// checked before passing a token) to `uri` may carry the token of a request
/// first sent to `first`: only on that same, allowed origin.
pub fn token_allowed(origins: &Origins, first: &Uri, hop: usize, uri: &Uri) -> bool {
    hop == 0 || (Origins::same_origin(first, uri) && origins.contains(uri))
}

/// Resolve a `Location` against the current URL (RFC 3986 section 5.2).
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    // A fragment never goes on the wire.
    let location = location.split('#').next().unwrap_or("");
    let scheme = base.scheme_str()?;
    let authority = base.authority()?;
    if let Ok(u) = location.parse::<Uri>() {
        if u.scheme().is_some() {
            return Some(u);
        }
    }
    if let Some(rest) = location.strip_prefix("//") {
        // Scheme-relative: another authority, this scheme.
        return format!("{scheme}://{rest}").parse().ok();
    }
    let (path, query) = match location.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (location, None),
    };
    let (path, query) = if path.starts_with('/') {
        (remove_dot_segments(path), query)
    } else if path.is_empty() {
        // Only a query (or nothing): the same path, the new query (or the old one).
        (base.path().to_owned(), query.or(base.query()))
    } else {
        // A relative path: merged with the base path's directory (which,
        // like every `http::Uri` path, starts with `/`).
        let dir = &base.path()[..base.path().rfind('/').map_or(0, |i| i + 1)];
        (remove_dot_segments(&format!("{dir}{path}")), query)
    };
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    format!("{scheme}://{authority}{target}").parse().ok()
}

/// RFC 3986 section 5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    // The leading "" (before the first `/`) is never popped: the result
    // starts with `/` as the path did.
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(location: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(LOCATION, location.parse().unwrap());
        h
    }

    #[test]
    fn next_hop_follows_the_status_and_the_method_rules() {
        let here: Uri = "https://api.example/a".parse().unwrap();
        let hop = |m: Method, s: u16, l: &str| {
            next_hop(&here, &m, StatusCode::from_u16(s).unwrap(), &located(l))
        };
        let to = |uri: &str, method: Method, keep_body| {
            Some(NextHop {
                uri: uri.parse().unwrap(),
                method,
                keep_body,
            })
        };
        assert_eq!(
            hop(Method::POST, 307, "/b"),
            to("https://api.example/b", Method::POST, true)
        );
        assert_eq!(
            hop(Method::POST, 308, "https://x.example/c"),
            to("https://x.example/c", Method::POST, true)
        );
        assert_eq!(
            hop(Method::POST, 303, "/b"),
            to("https://api.example/b", Method::GET, false)
        );
        assert_eq!(
            hop(Method::POST, 302, "/b"),
            to("https://api.example/b", Method::GET, false)
        );
        assert_eq!(
            hop(Method::PUT, 302, "/b"),
            to("https://api.example/b", Method::PUT, true)
        );
        assert_eq!(hop(Method::GET, 304, "/b"), None, "304 is not a redirect");
        assert_eq!(hop(Method::GET, 200, "/b"), None, "Location without a 3xx");
        assert_eq!(
            hop(Method::GET, 302, "//other.example/x"),
            to("https://other.example/x", Method::GET, true),
            "scheme-relative: this scheme, that authority"
        );
        assert_eq!(
            hop(Method::GET, 302, "relative"),
            to("https://api.example/relative", Method::GET, true)
        );
        assert_eq!(
            next_hop(&here, &Method::GET, StatusCode::FOUND, &HeaderMap::new()),
            None,
            "no Location"
        );
    }

    /// Issue 15: only absolute and absolute-path `Location`s were resolved.
    #[test]
    fn relative_locations_resolve_as_rfc_3986_says() {
        let base: Uri = "https://api.example/a/b/c?q=1".parse().unwrap();
        for (location, want) in [
            ("d", "https://api.example/a/b/d"),
            ("./d", "https://api.example/a/b/d"),
            ("../d", "https://api.example/a/d"),
            ("../../d", "https://api.example/d"),
            ("../../../d", "https://api.example/d"),
            ("d/./e/../f?x=2", "https://api.example/a/b/d/f?x=2"),
            ("?y=3", "https://api.example/a/b/c?y=3"),
            ("", "https://api.example/a/b/c?q=1"),
            ("d#frag", "https://api.example/a/b/d"),
            ("/x/../y", "https://api.example/y"),
            ("//cdn.example/z", "https://cdn.example/z"),
            ("http://plain.example/", "http://plain.example/"),
        ] {
            assert_eq!(
                resolve(&base, location).map(|u| u.to_string()),
                Some(want.to_owned()),
                "{location}"
            );
        }
    }

    /// Issue 15: ureq's redirect follower forwarded `Cookie` and
    /// `Proxy-Authorization` to other origins.
    #[test]
    fn credentials_stay_on_the_first_origin_and_body_headers_go_with_the_body() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer caller".parse().unwrap());
        h.insert(COOKIE, "session=1".parse().unwrap());
        h.insert(PROXY_AUTHORIZATION, "Basic cHJveHk=".parse().unwrap());
        h.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        h.insert("x-trace", "7".parse().unwrap());
        let first: Uri = "https://api.example/a".parse().unwrap();
        let same: Uri = "https://api.example/b".parse().unwrap();
        let other: Uri = "https://other.example/b".parse().unwrap();
        let kept = hop_headers(&h, &first, &same, false);
        assert_eq!(kept, h, "same origin, body kept: unchanged");
        let moved = hop_headers(&h, &first, &other, false);
        for name in &CREDENTIAL_HEADERS {
            assert!(!moved.contains_key(name), "{name} crossed origins");
        }
        assert!(moved.contains_key(CONTENT_TYPE) && moved.contains_key("x-trace"));
        let to_get = hop_headers(&h, &first, &same, true);
        assert!(!to_get.contains_key(CONTENT_TYPE));
        assert!(to_get.contains_key(COOKIE) && to_get.contains_key("x-trace"));
    }

    #[test]
    fn only_the_first_hop_or_a_same_allowed_origin_carries_the_token() {
        let mut origins = Origins::new();
        origins.allow("https://api.example").unwrap();
        origins.allow("https://other.example").unwrap();
        let first: Uri = "https://api.example/a".parse().unwrap();
        let u = |s: &str| s.parse::<Uri>().unwrap();
        assert!(token_allowed(&origins, &first, 0, &first));
        assert!(token_allowed(
            &origins,
            &first,
            3,
            &u("https://api.example/b")
        ));
        assert!(
            !token_allowed(&origins, &first, 1, &u("https://other.example/b")),
            "another allowed origin"
        );
        assert!(
            !token_allowed(&origins, &first, 1, &u("http://api.example/b")),
            "another scheme"
        );
    }
}

/// More redirects than [`MAX_REDIRECTS`] in one attempt (the error of a
/// client that follows them hop by hop).
#[derive(Debug, thiserror::Error)]
#[error("too many redirects")]
pub struct TooManyRedirects;
