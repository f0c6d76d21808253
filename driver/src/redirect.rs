//! Redirect policy for clients that follow redirects themselves (ureq's
//! client does, so the token can be checked per hop): where the next hop
//! goes, with which method, and whether it may carry the token.

use http::header::LOCATION;
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

/// The hop a response asks for, if it is a redirect with a usable `Location`
/// (absolute, or an absolute path on the current origin). `Location` is only
/// read when the status says to follow it (3xx other than 304).
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

/// Resolve a `Location` against the current URL (absolute, or absolute-path).
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if let Ok(u) = location.parse::<Uri>() {
        if u.scheme().is_some() {
            return Some(u);
        }
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let scheme = base.scheme_str()?;
        let authority = base.authority()?;
        return format!("{scheme}://{authority}{location}").parse().ok();
    }
    None
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
            hop(Method::GET, 302, "//evil.example/x"),
            None,
            "scheme-relative: not followed"
        );
        assert_eq!(hop(Method::GET, 302, "relative"), None);
        assert_eq!(
            next_hop(&here, &Method::GET, StatusCode::FOUND, &HeaderMap::new()),
            None,
            "no Location"
        );
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
