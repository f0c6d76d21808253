//! Owned secrets: redacted in `Debug`, wiped on drop.

use zeroize::Zeroizing;

/// An owned token. `Debug` shows only its length; the bytes are zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The token itself. Named so that every use is visible in review.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `Bearer <token>` as an `Authorization` value, marked sensitive (HTTP/2
    /// never indexes it, `Debug` hides it). Built without `format!` and
    /// without a second copy: it is on every request's path.
    pub fn bearer_header(&self) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
        let mut v = String::with_capacity(7 + self.0.len());
        v.push_str("Bearer ");
        v.push_str(&self.0);
        let mut value = http::HeaderValue::try_from(v)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(Zeroizing::new(s.to_owned()))
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(Zeroizing::new(s))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<redacted, {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_sensitive_and_exact() {
        let v = Secret::from("abc.DEF-123").bearer_header().unwrap();
        assert_eq!(v.to_str().unwrap(), "Bearer abc.DEF-123");
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("abc"));
        assert!(Secret::from("bad\ntoken").bearer_header().is_err());
    }
}
