//! An app backend's refresh route: the refresh token goes out as JSON (or
//! in a header), the tokens come back as JSON under the backend's own field
//! names. The shape of the Express, NestJS and Spring JWT backends that web
//! tutorials build, which are not RFC 6749 token endpoints.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use refresh_machine::grant::{self, GrantError, Refusals, TokenFormat};
use refresh_machine::RefreshToken;

use crate::grant::EndpointError;
use crate::secret::Secret;
use crate::session::RefreshReply;

/// Where the refresh token goes in the refresh request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Carrier {
    /// `{"<field>": "<refresh token>"}`.
    Body(String),
    /// `<name>: <prefix><refresh token>`, with an empty JSON object as the body.
    Header(HeaderName, String),
}

/// An app backend's refresh route and the names its JSON uses.
///
/// [`JsonEndpoint::new`] takes the common camelCase shape: the request is
/// `POST <url>` with `{"refreshToken": ..}`, the answer
/// `{"accessToken": .., "refreshToken": .., "expiresIn": ..}` (each but the
/// access token optional; a refresh token not sent back is kept), a 401 or
/// 403 ends the session, a 400 is a configuration error, anything else
/// (5xx, 429, a proxy's page) is an outage that logs nobody out. Change any
/// of it with the `with_*` methods. When the answer gives no lifetime, the
/// `exp` claim of a JWT access token is used as a hint for refreshing ahead
/// (see [`TokenPair::from_json`](crate::TokenPair::from_json)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonEndpoint {
    url: Uri,
    carrier: Carrier,
    access_token: String,
    refresh_token: String,
    expires_in: String,
    refresh_expires_in: String,
    /// The logout route, told the refresh token at logout.
    logout_url: Option<Uri>,
}

impl JsonEndpoint {
    /// The refresh route at `url` (absolute, `http` or `https`), camelCase names.
    pub fn new(url: &str) -> Result<JsonEndpoint, EndpointError> {
        let url = crate::grant::endpoint_url(url)?;
        let names = TokenFormat::CAMEL_CASE;
        Ok(JsonEndpoint {
            url,
            carrier: Carrier::Body(names.refresh_token.into()),
            access_token: names.access_token.into(),
            refresh_token: names.refresh_token.into(),
            expires_in: names.expires_in.into(),
            refresh_expires_in: names.refresh_expires_in.into(),
            logout_url: None,
        })
    }

    /// Send the refresh token in the request body under this field
    /// (default `refreshToken`).
    pub fn with_request_field(mut self, field: &str) -> JsonEndpoint {
        self.carrier = Carrier::Body(field.into());
        self
    }

    /// Send the refresh token in a header instead, after `prefix` (for
    /// example `("authorization", "Bearer ")` or `("x-refresh-token", "")`),
    /// with `{}` as the body. The header is marked sensitive.
    pub fn with_request_header(
        mut self,
        name: &str,
        prefix: &str,
    ) -> Result<JsonEndpoint, EndpointError> {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| EndpointError::InvalidUrl)?;
        self.carrier = Carrier::Header(name, prefix.into());
        Ok(self)
    }

    /// The answer's field names for the access token and the refresh token
    /// (defaults `accessToken`, `refreshToken`).
    pub fn with_answer_fields(mut self, access_token: &str, refresh_token: &str) -> JsonEndpoint {
        access_token.clone_into(&mut self.access_token);
        refresh_token.clone_into(&mut self.refresh_token);
        self
    }

    /// The answer's field for the access token's lifetime in seconds
    /// (default `expiresIn`).
    pub fn with_lifetime_field(mut self, expires_in: &str) -> JsonEndpoint {
        expires_in.clone_into(&mut self.expires_in);
        self
    }

    /// Tell the backend's logout route at `url` at logout: `POST` with the
    /// refresh token as the refresh route gets it (body field or header),
    /// so the server forgets it.
    pub fn with_logout_route(mut self, url: &str) -> Result<JsonEndpoint, EndpointError> {
        self.logout_url = Some(crate::grant::endpoint_url(url)?);
        Ok(self)
    }

    /// The logout request for `tokens`, if a logout route is configured and
    /// there is a refresh token to forget.
    pub fn logout_request(
        &self,
        tokens: &crate::TokenPair,
    ) -> Result<Option<Request<Vec<u8>>>, EndpointError> {
        let (Some(url), Some(refresh_token)) = (&self.logout_url, &tokens.refresh_token) else {
            return Ok(None);
        };
        let mut request = self.refresh_request(refresh_token)?;
        *request.uri_mut() = url.clone();
        Ok(Some(request))
    }

    /// The route's URL.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// How the answers are read (borrowing the names).
    pub fn format(&self) -> TokenFormat<'_> {
        TokenFormat {
            access_token: &self.access_token,
            refresh_token: &self.refresh_token,
            expires_in: &self.expires_in,
            refresh_expires_in: &self.refresh_expires_in,
            refusals: Refusals::Statuses,
        }
    }

    /// The refresh request: `POST` with the refresh token in the body or the
    /// configured header.
    pub fn refresh_request(
        &self,
        refresh_token: &Secret,
    ) -> Result<Request<Vec<u8>>, EndpointError> {
        let token = refresh_token.expose();
        let (body, header) = match &self.carrier {
            Carrier::Body(field) => {
                let mut buf = vec![0u8; grant::json_refresh_body_len(field.len(), token.len())];
                let body = grant::json_refresh_body(&mut buf, field, RefreshToken::new(token))?;
                let body = body.as_bytes().to_vec();
                zeroize::Zeroize::zeroize(&mut buf);
                (body, None)
            }
            Carrier::Header(name, prefix) => {
                let mut text = format!("{prefix}{token}");
                let value = HeaderValue::from_str(&text);
                zeroize::Zeroize::zeroize(&mut text);
                // Not header-safe: the request cannot be built.
                let mut value = value.map_err(|_| EndpointError::InvalidUrl)?;
                value.set_sensitive(true);
                (b"{}".to_vec(), Some((name.clone(), value)))
            }
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body)
            .map_err(|_| EndpointError::InvalidUrl)?;
        if let Some((name, value)) = header {
            request.headers_mut().insert(name, value);
        }
        Ok(request)
    }

    /// Classify the route's answer for the session.
    pub fn classify(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: Vec<u8>,
    ) -> (RefreshReply, Option<GrantError>) {
        crate::grant::classify_as(status, headers, body, &self.format())
    }
}
