//! The origins a session's bearer token may be sent to.

use http::Uri;

/// The configured origins (scheme, host, port). A request to any other origin
/// goes out without the token: a token is never sent where it was not issued for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins(Vec<Origin>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// A URL that does not name an origin (no scheme or host, or an unknown scheme).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an http(s) origin: {0}")]
pub struct InvalidOrigin(String);

fn origin_of(uri: &Uri) -> Option<Origin> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    Some(Origin {
        port: uri.port_u16().unwrap_or(default_port),
        scheme,
        host,
    })
}

impl Origins {
    /// No origin: the token goes nowhere until one is allowed.
    pub fn new() -> Self {
        Origins(Vec::new())
    }

    /// Allow the origin of `url` (its path is ignored).
    pub fn allow(&mut self, url: &str) -> Result<(), InvalidOrigin> {
        let uri: Uri = url.parse().map_err(|_| InvalidOrigin(url.into()))?;
        let origin = origin_of(&uri).ok_or_else(|| InvalidOrigin(url.into()))?;
        if !self.0.contains(&origin) {
            self.0.push(origin);
        }
        Ok(())
    }

    /// Whether `a` and `b` are the same origin (scheme, host, port).
    pub fn same_origin(a: &Uri, b: &Uri) -> bool {
        match (origin_of(a), origin_of(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    /// Whether a request to `uri` may carry the token.
    pub fn contains(&self, uri: &Uri) -> bool {
        origin_of(uri).is_some_and(|o| self.0.contains(&o))
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
        assert!(o.clone().allow("ftp://x").is_err());
        assert!(o.clone().allow("not a url").is_err());
    }
}
