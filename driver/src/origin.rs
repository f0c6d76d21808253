//! The origins a session's bearer token may be sent to.

use http::Uri;

/// The configured origins (scheme, host, port). A request to any other origin
/// goes out without the token: a token is never sent where it was not issued for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins(Vec<Origin>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    https: bool,
    /// Lowercase.
    host: String,
    port: u16,
    /// `host`, or `host:port` when the port is not the scheme's default: what
    /// a request's authority usually is, compared first.
    authority: String,
}

/// A URL that does not name an origin (no scheme or host, or an unknown scheme).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("not an http(s) origin: {0}")]
pub struct InvalidOrigin(String);

/// `Some(true)` for https, `Some(false)` for http (any case), `None` otherwise.
fn is_https(scheme: &str) -> Option<bool> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(true)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(false)
    } else {
        None
    }
}

/// The origin of a URI, borrowed from it: checked on every request and every
/// redirect hop, so it allocates nothing.
#[derive(Clone, Copy, Debug)]
struct OriginRef<'a> {
    https: bool,
    host: &'a str,
    port: u16,
}

impl OriginRef<'_> {
    fn of(uri: &Uri) -> Option<OriginRef<'_>> {
        let https = is_https(uri.scheme_str()?)?;
        Some(OriginRef {
            https,
            host: uri.host()?,
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }

    fn same(&self, other: &OriginRef<'_>) -> bool {
        self.https == other.https
            && self.port == other.port
            && self.host.eq_ignore_ascii_case(other.host)
    }

    fn is(&self, o: &Origin) -> bool {
        self.same(&OriginRef {
            https: o.https,
            host: &o.host,
            port: o.port,
        })
    }
}

/// Proof that a request's origin was checked against a driver's [`Origins`]
/// and may carry the token: [`Driver::drive`](crate::Driver::drive) takes one,
/// so no code path hands the token to a request nobody checked.
#[derive(Clone, Copy, Debug)]
pub struct AllowedOrigin(());

impl Origins {
    /// No origin: the token goes nowhere until one is allowed.
    pub fn new() -> Self {
        Origins(Vec::new())
    }

    /// Allow the origin of `url` (its path is ignored).
    pub fn allow(&mut self, url: &str) -> Result<(), InvalidOrigin> {
        let uri: Uri = url.parse().map_err(|_| InvalidOrigin(url.into()))?;
        let o = OriginRef::of(&uri).ok_or_else(|| InvalidOrigin(url.into()))?;
        if !self.0.iter().any(|known| o.is(known)) {
            let host = o.host.to_ascii_lowercase();
            let default_port = if o.https { 443 } else { 80 };
            let authority = if o.port == default_port {
                host.clone()
            } else {
                format!("{host}:{}", o.port)
            };
            self.0.push(Origin {
                https: o.https,
                host,
                port: o.port,
                authority,
            });
        }
        Ok(())
    }

    /// Whether `a` and `b` are the same origin (scheme, host, port).
    pub fn same_origin(a: &Uri, b: &Uri) -> bool {
        match (OriginRef::of(a), OriginRef::of(b)) {
            (Some(x), Some(y)) => x.same(&y),
            _ => false,
        }
    }

    /// Whether a request to this scheme, host and port (for clients that
    /// hold a parsed `url::Url` rather than an `http::Uri`) may carry the token.
    pub fn contains_parts(&self, scheme: &str, host: &str, port: u16) -> bool {
        let Some(https) = is_https(scheme) else {
            return false;
        };
        let o = OriginRef { https, host, port };
        self.0.iter().any(|known| o.is(known))
    }

    /// [`AllowedOrigin`] if a request to `uri` may carry the token.
    pub fn allows(&self, uri: &Uri) -> Option<AllowedOrigin> {
        self.contains(uri).then_some(AllowedOrigin(()))
    }

    /// [`AllowedOrigin`] if a request to this scheme, host and port may carry the token.
    pub fn allows_parts(&self, scheme: &str, host: &str, port: u16) -> Option<AllowedOrigin> {
        self.contains_parts(scheme, host, port)
            .then_some(AllowedOrigin(()))
    }

    /// Whether a request to `uri` may carry the token.
    pub fn contains(&self, uri: &Uri) -> bool {
        // Fast path (every request): the authority as written equals an allowed
        // one, so host and port are equal and there is no user info.
        if let (Some(https), Some(authority)) =
            (uri.scheme_str().and_then(is_https), uri.authority())
        {
            if self.0.iter().any(|known| {
                known.https == https && authority.as_str().eq_ignore_ascii_case(&known.authority)
            }) {
                return true;
            }
        }
        OriginRef::of(uri).is_some_and(|o| self.0.iter().any(|known| o.is(known)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let mut o = Origins::new();
        o.allow("https://API.example.com/v1").unwrap();
        o.allow("http://127.0.0.1:8080").unwrap();
        let yes = |u: &str| o.contains(&u.parse().unwrap());
        assert!(yes("https://api.example.com/orders?x=1"));
        assert!(yes("https://api.example.com:443/"));
        assert!(yes("http://127.0.0.1:8080/api/me"));
        assert!(!yes("http://api.example.com/"));
        assert!(!yes("https://api.example.com:8443/"));
        assert!(!yes("https://evil.example.com/"));
        assert!(!yes("https://api.example.com.evil.com/"));
        assert!(!yes("http://127.0.0.1:8081/"));
        assert!(!yes("/relative"));
        assert!(yes("HTTPS://Api.Example.COM/"));
        assert!(
            yes("https://user@api.example.com/"),
            "user info is not part of the origin"
        );
        assert!(!yes("https://api.example.com@evil.example/"));
        assert!(!yes("https://127.0.0.1:8080/"), "scheme differs");
        assert!(
            !yes("https://api.example.com./"),
            "a trailing dot is another host name"
        );
        assert!(o.clone().allow("ftp://x").is_err());
        assert!(o.clone().allow("not a url").is_err());
        let same =
            |a: &str, b: &str| Origins::same_origin(&a.parse().unwrap(), &b.parse().unwrap());
        assert!(same("http://a.example/x", "HTTP://A.EXAMPLE:80/y"));
        assert!(!same("http://a.example/", "https://a.example/"));
        assert!(!same("http://a.example/", "http://a.example:8080/"));
        assert!(!same("/relative", "/relative"));
        assert!(o.contains_parts("https", "API.example.com", 443));
        assert!(o.contains_parts("http", "127.0.0.1", 8080));
        assert!(!o.contains_parts("http", "api.example.com", 443));
        assert!(!o.contains_parts("ftp", "127.0.0.1", 8080));
        let mut twice = Origins::new();
        twice.allow("https://A.example").unwrap();
        twice.allow("https://a.example:443/").unwrap();
        assert_eq!(twice.0.len(), 1, "the same origin is stored once");
    }
}
