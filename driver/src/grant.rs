//! The RFC 6749 refresh-token grant as `http` types, shared by the std adapters.
//! Body building and response parsing are the core's no_std code
//! ([`refresh_machine::grant`]); this wraps them in owned requests and replies.

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use refresh_machine::grant::{self, ClientAuth, GrantError, TokenFormat};
use refresh_machine::{RefreshOutcome, RefreshToken, Response};

use crate::secret::Secret;
use crate::session::{RefreshReply, TokenPair};

/// A token endpoint and the client's credentials for it.
#[derive(Clone, Debug)]
pub struct TokenEndpoint {
    url: Uri,
    client_id: String,
    client_secret: Option<Secret>,
    scope: Option<String>,
    /// Where tokens are revoked at logout (RFC 7009), if anywhere.
    revocation_url: Option<Uri>,
}

/// Largest token-endpoint body the std drivers read with the standard token
/// capacity, in bytes (see
/// [`TokenCapacity::token_response_limit`](crate::TokenCapacity::token_response_limit)).
/// A token response is small (two 8 KiB JWTs fit twice over); anything
/// longer is not read further and is judged by its status ([`too_large`]).
pub const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Why a grant request could not be built or its answer used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The token endpoint URL does not parse.
    #[error("invalid token endpoint URL")]
    InvalidUrl,
    /// Building or parsing the grant failed (never contains a token).
    #[error("grant: {0}")]
    Grant(#[from] GrantError),
    /// The server answered a login with this status and no usable tokens.
    #[error("token endpoint answered {status}")]
    Status {
        /// HTTP status.
        status: u16,
    },
    /// The answer's body exceeded [`MAX_TOKEN_RESPONSE`].
    #[error("token endpoint answered {status} with a body over the size limit")]
    ResponseTooLarge {
        /// HTTP status.
        status: u16,
    },
}

impl TokenEndpoint {
    /// A public client (`client_id` in the body).
    /// The URL must be absolute, `http` or `https`, with a host.
    pub fn new(url: &str, client_id: &str) -> Result<Self, EndpointError> {
        Ok(TokenEndpoint {
            url: endpoint_url(url)?,
            client_id: client_id.into(),
            client_secret: None,
            scope: None,
            revocation_url: None,
        })
    }

    /// A confidential client: id and secret sent as HTTP Basic (RFC 6749 §2.3.1).
    pub fn with_client_secret(mut self, secret: &str) -> Self {
        self.client_secret = Some(Secret::from(secret));
        self
    }

    /// Ask for this scope on refresh.
    pub fn with_scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    fn auth(&self) -> ClientAuth<'_> {
        match &self.client_secret {
            Some(secret) => ClientAuth::Basic {
                client_id: &self.client_id,
                client_secret: secret.expose(),
            },
            None => ClientAuth::Public {
                client_id: &self.client_id,
            },
        }
    }

    fn post(&self, body: &str) -> Result<Request<Vec<u8>>, EndpointError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, grant::FORM_CONTENT_TYPE)
            .header(http::header::ACCEPT, "application/json")
            .body(body.as_bytes().to_vec())
            .map_err(|_| EndpointError::InvalidUrl)?;
        // `Basic ` and the base64 of the percent-encoded `id:secret` (at
        // most three bytes per byte): sized from the credentials, so a long
        // client secret never fails the request locally.
        let secret_len = self.client_secret.as_ref().map_or(0, |s| s.expose().len());
        let encoded = 3 * (self.client_id.len() + secret_len) + 1;
        let mut buf = vec![0u8; 16 + 4 * encoded.div_ceil(3)];
        if let Some(value) = self.auth().authorization(&mut buf)? {
            let mut value = HeaderValue::from_str(value).map_err(|_| GrantError::BufferTooSmall)?;
            value.set_sensitive(true);
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        Ok(req)
    }

    fn body_buf(&self, secrets_len: usize) -> Vec<u8> {
        // Percent-encoding at most triples a byte.
        vec![
            0u8;
            3 * (secrets_len + self.client_id.len() + self.scope.as_ref().map_or(0, String::len))
                + 256
        ]
    }

    /// `POST grant_type=refresh_token` (RFC 6749 §6).
    pub fn refresh_request(
        &self,
        refresh_token: &Secret,
    ) -> Result<Request<Vec<u8>>, EndpointError> {
        let mut buf = self.body_buf(refresh_token.expose().len());
        let body = grant::refresh_grant_body(
            &mut buf,
            RefreshToken::new(refresh_token.expose()),
            &self.auth(),
            self.scope.as_deref(),
        )?;
        self.post(body)
    }

    /// Revoke tokens at `url` at logout (RFC 7009), with this client's
    /// authentication.
    pub fn with_revocation(mut self, url: &str) -> Result<Self, EndpointError> {
        self.revocation_url = Some(endpoint_url(url)?);
        Ok(self)
    }

    /// The revocation request for `tokens` (the refresh token, or the access
    /// token when there is none), if a revocation endpoint is configured.
    pub fn revocation_request(
        &self,
        tokens: &TokenPair,
    ) -> Result<Option<Request<Vec<u8>>>, EndpointError> {
        let Some(url) = &self.revocation_url else {
            return Ok(None);
        };
        let (token, hint) = match &tokens.refresh_token {
            Some(r) => (r, "refresh_token"),
            None => (&tokens.access_token, "access_token"),
        };
        let mut buf = self.body_buf(token.expose().len());
        let body = grant::revocation_body(&mut buf, token.expose(), hint, &self.auth())?;
        let mut request = self.post(body)?;
        zeroize::Zeroize::zeroize(&mut buf);
        *request.uri_mut() = url.clone();
        Ok(Some(request))
    }

    /// `POST grant_type=client_credentials` (RFC 6749 §4.4).
    pub fn client_credentials_request(&self) -> Result<Request<Vec<u8>>, EndpointError> {
        let mut buf = self.body_buf(0);
        let body =
            grant::client_credentials_grant_body(&mut buf, &self.auth(), self.scope.as_deref())?;
        self.post(body)
    }

    /// `POST grant_type=password` (RFC 6749 §4.3): first login in tests and demos.
    pub fn password_request(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Request<Vec<u8>>, EndpointError> {
        let mut buf = self.body_buf(username.len() + password.len());
        let body = grant::password_grant_body(
            &mut buf,
            username,
            password,
            &self.auth(),
            self.scope.as_deref(),
        )?;
        self.post(body)
    }
}

/// An endpoint's URL: absolute, `http` or `https`, with a host.
pub(crate) fn endpoint_url(url: &str) -> Result<Uri, EndpointError> {
    let url: Uri = url.parse().map_err(|_| EndpointError::InvalidUrl)?;
    let scheme_ok = url
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"));
    if !scheme_ok || url.host().is_none() {
        return Err(EndpointError::InvalidUrl);
    }
    Ok(url)
}

/// Classify a token endpoint answer for the session.
pub fn classify(
    status: u16,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> (RefreshReply, Option<GrantError>) {
    classify_as(status, headers, body, &TokenFormat::OAUTH2)
}

/// [`classify`] an answer in another format.
pub fn classify_as(
    status: u16,
    headers: &HeaderMap,
    mut body: Vec<u8>,
    format: &TokenFormat<'_>,
) -> (RefreshReply, Option<GrantError>) {
    let retry_after = Response::from_http(
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
        headers,
        refresh_machine::StdClock::unix_now(),
    )
    .retry_after;
    let c = grant::classify_token_response_as(status, &mut body, retry_after, format);
    let reply = match c.outcome {
        RefreshOutcome::Success(set) => RefreshReply::Tokens(TokenPair::from_token_set(&set)),
        RefreshOutcome::Unusable { refresh_token } => RefreshReply::Unusable {
            refresh_token: refresh_token.map(|r| Secret::from(r.expose_secret())),
        },
        RefreshOutcome::Misconfigured(code) => RefreshReply::Misconfigured(code),
        RefreshOutcome::Rejected => RefreshReply::Rejected,
        RefreshOutcome::Transient { retry_after } => RefreshReply::Transient { retry_after },
    };
    let problem = c.problem;
    zeroize::Zeroize::zeroize(&mut body);
    (reply, problem)
}

/// A refresh answer whose body exceeded [`MAX_TOKEN_RESPONSE`], judged by
/// its status: a 200 may have spent the refresh token, so it is
/// [`RefreshReply::Unusable`] (never presented again); anything else is transient.
pub fn too_large(status: u16) -> RefreshReply {
    if status == 200 {
        RefreshReply::Unusable {
            refresh_token: None,
        }
    } else {
        transport_failure()
    }
}

/// A transport failure while talking to the token endpoint: always transient.
pub fn transport_failure() -> RefreshReply {
    RefreshReply::Transient { retry_after: None }
}

/// Parse a login (password grant) answer into tokens.
pub fn parse_login(status: u16, body: Vec<u8>) -> Result<TokenPair, EndpointError> {
    parse_login_as(status, body, &TokenFormat::OAUTH2)
}

/// [`parse_login`] for an answer in another format (any 2xx is a success:
/// app backends answer a login with 200 or 201).
pub fn parse_login_as(
    status: u16,
    mut body: Vec<u8>,
    format: &TokenFormat<'_>,
) -> Result<TokenPair, EndpointError> {
    let ok = if format.refusals == refresh_machine::grant::Refusals::OAuthCodes {
        status == 200
    } else {
        (200..300).contains(&status)
    };
    let parsed = if ok {
        TokenPair::from_json(&mut body, format)
    } else {
        match grant::parse_token_response_as(&mut body, format) {
            Err(e @ GrantError::OAuth(_)) => Err(e.into()),
            _ => Err(EndpointError::Status { status }),
        }
    };
    zeroize::Zeroize::zeroize(&mut body);
    parsed
}

/// The token endpoint did not answer before the refresh's deadline (the
/// error of an async client's token call).
#[derive(Debug, thiserror::Error)]
#[error("the token endpoint did not answer in time")]
pub struct TokenCallTimedOut;
