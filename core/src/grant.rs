//! The RFC 6749 refresh-token grant, without allocation: request bodies and
//! client authentication written into caller buffers, token responses parsed
//! in place, and the token endpoint's answer classified for the machine.
//!
//! Shared by every adapter, from the blocking one to firmware.

use core::fmt;
use core::time::Duration;

use crate::event::RefreshOutcome;
use crate::token::{AccessToken, RefreshToken, TokenSet};

/// What went wrong building a grant request or reading the token endpoint's answer.
/// Never contains token bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The caller's buffer is too small for the request body or header.
    #[error("buffer too small")]
    BufferTooSmall,
    /// The body is not the JSON object RFC 6749 §5.1 describes (byte offset).
    #[error("malformed token response JSON at byte {0}")]
    Json(usize),
    /// Valid JSON without a string `access_token`.
    #[error("token response has no access_token")]
    MissingAccessToken,
    /// A token type this client cannot send as `Bearer` (e.g. DPoP).
    #[error("token type is not Bearer")]
    UnsupportedTokenType,
    /// The server answered with an OAuth error (RFC 6749 §5.2).
    #[error("token endpoint error: {0}")]
    OAuth(OAuthError),
    /// An HTTP status the grant does not expect.
    #[error("token endpoint answered HTTP {0}")]
    Status(u16),
}

/// RFC 6749 §5.2 error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthError {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_client`.
    InvalidClient,
    /// `invalid_grant`: expired, revoked or reused refresh token.
    InvalidGrant,
    /// `unauthorized_client`.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// `temporarily_unavailable` (borrowed from §4.1.2.1; some servers send it here).
    TemporarilyUnavailable,
    /// `server_error` (borrowed from §4.1.2.1; some servers send it here).
    ServerError,
    /// Anything else.
    Other,
}

impl OAuthError {
    fn from_code(code: &str) -> Self {
        match code {
            "invalid_request" => OAuthError::InvalidRequest,
            "invalid_client" => OAuthError::InvalidClient,
            "invalid_grant" => OAuthError::InvalidGrant,
            "unauthorized_client" => OAuthError::UnauthorizedClient,
            "unsupported_grant_type" => OAuthError::UnsupportedGrantType,
            "invalid_scope" => OAuthError::InvalidScope,
            "temporarily_unavailable" => OAuthError::TemporarilyUnavailable,
            "server_error" => OAuthError::ServerError,
            _ => OAuthError::Other,
        }
    }

    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            OAuthError::InvalidRequest => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
            OAuthError::Other => "other",
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3).
#[derive(Clone, Copy)]
pub enum ClientAuth<'a> {
    /// No client identification.
    None,
    /// A public client: `client_id` in the body.
    Public {
        /// The client id.
        client_id: &'a str,
    },
    /// A confidential client: HTTP Basic with the form-encoded id and secret (§2.3.1).
    Basic {
        /// The client id.
        client_id: &'a str,
        /// The client secret.
        client_secret: &'a str,
    },
}

impl fmt::Debug for ClientAuth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::None => f.write_str("None"),
            ClientAuth::Public { client_id } => f
                .debug_struct("Public")
                .field("client_id", client_id)
                .finish(),
            ClientAuth::Basic { client_id, .. } => f
                .debug_struct("Basic")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
        }
    }
}

impl ClientAuth<'_> {
    /// The `Authorization` header value for this client, written into `buf`, if it uses one.
    pub fn authorization<'b>(&self, buf: &'b mut [u8]) -> Result<Option<&'b str>, GrantError> {
        let ClientAuth::Basic {
            client_id,
            client_secret,
        } = *self
        else {
            return Ok(None);
        };
        // Form-encode id and secret into the tail of the buffer, then base64
        // them into the head, in place: no fixed-size copy, so any secret that
        // fits the caller's buffer works.
        let plain_len = form_len(client_id) + 1 + form_len(client_secret);
        let prefix = b"Basic ";
        let needed = prefix.len() + plain_len.div_ceil(3) * 4;
        if buf.len() < needed {
            return Err(GrantError::BufferTooSmall);
        }
        let start = buf.len() - plain_len;
        let mut w = FormWriter::new(&mut buf[start..]);
        w.raw(client_id)?;
        w.push(b":")?;
        w.raw(client_secret)?;
        // Chunk k reads buf[start + 3k..][..3] before writing
        // buf[6 + 4k..][..4]: with start >= 6 + ceil(len / 3) (true because
        // buf.len() >= needed) no write reaches input not yet read.
        buf[..prefix.len()].copy_from_slice(prefix);
        for k in 0..plain_len.div_ceil(3) {
            let from = start + 3 * k;
            let n = (plain_len - 3 * k).min(3);
            let mut chunk = [0u8; 3];
            chunk[..n].copy_from_slice(&buf[from..from + n]);
            let at = prefix.len() + 4 * k;
            base64_encode(&chunk[..n], &mut buf[at..at + 4]);
        }
        // The encoded credentials are the header; nothing of the plain copy stays behind.
        buf[needed..].fill(0);
        let out = &buf[..needed];
        Ok(Some(
            core::str::from_utf8(out).map_err(|_| GrantError::BufferTooSmall)?,
        ))
    }

    fn body_params(&self, w: &mut FormWriter<'_>) -> Result<(), GrantError> {
        if let ClientAuth::Public { client_id } = *self {
            w.pair("client_id", client_id)?;
        }
        Ok(())
    }
}

/// Content type of every grant body.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Body of a refresh-token grant (RFC 6749 §6), written into `buf`.
pub fn refresh_grant_body<'b>(
    buf: &'b mut [u8],
    refresh_token: RefreshToken<'_>,
    client: &ClientAuth<'_>,
    scope: Option<&str>,
) -> Result<&'b str, GrantError> {
    let token = refresh_token.expose_secret();
    grant_body(
        buf,
        "refresh_token",
        &[("refresh_token", token)],
        client,
        scope,
    )
}

/// Body of a resource-owner password grant (RFC 6749 §4.3), for first logins in tests and demos.
pub fn password_grant_body<'b>(
    buf: &'b mut [u8],
    username: &str,
    password: &str,
    client: &ClientAuth<'_>,
    scope: Option<&str>,
) -> Result<&'b str, GrantError> {
    let params = [("username", username), ("password", password)];
    grant_body(buf, "password", &params, client, scope)
}

/// Body of a client-credentials grant (RFC 6749 §4.4): machine-to-machine,
/// no user and no refresh token; a new token is this grant again.
pub fn client_credentials_grant_body<'b>(
    buf: &'b mut [u8],
    client: &ClientAuth<'_>,
    scope: Option<&str>,
) -> Result<&'b str, GrantError> {
    grant_body(buf, "client_credentials", &[], client, scope)
}

/// `grant_type`, the grant's own parameters, the scope and a public
/// client's id, form-encoded into `buf`.
fn grant_body<'b>(
    buf: &'b mut [u8],
    grant_type: &str,
    params: &[(&str, &str)],
    client: &ClientAuth<'_>,
    scope: Option<&str>,
) -> Result<&'b str, GrantError> {
    let mut w = FormWriter::new(buf);
    w.pair("grant_type", grant_type)?;
    for (name, value) in params {
        w.pair(name, value)?;
    }
    if let Some(scope) = scope {
        w.pair("scope", scope)?;
    }
    client.body_params(&mut w)?;
    w.finish()
}

/// Body of a token revocation request (RFC 7009 §2.1): the token, a hint of
/// its type (`refresh_token` or `access_token`) and a public client's id.
pub fn revocation_body<'b>(
    buf: &'b mut [u8],
    token: &str,
    token_type_hint: &str,
    client: &ClientAuth<'_>,
) -> Result<&'b str, GrantError> {
    let mut w = FormWriter::new(buf);
    w.pair("token", token)?;
    w.pair("token_type_hint", token_type_hint)?;
    client.body_params(&mut w)?;
    w.finish()
}

/// Writes `application/x-www-form-urlencoded` pairs into a fixed buffer.
pub struct FormWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

/// The body may hold secrets: only its length is shown.
impl core::fmt::Debug for FormWriter<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FormWriter")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<'b> FormWriter<'b> {
    /// An empty body over `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        FormWriter { buf, len: 0 }
    }

    /// Append `name=value`, encoding both.
    pub fn pair(&mut self, name: &str, value: &str) -> Result<(), GrantError> {
        if self.len > 0 {
            self.push(b"&")?;
        }
        self.raw(name)?;
        self.push(b"=")?;
        self.raw(value)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), GrantError> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(GrantError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn raw(&mut self, s: &str) -> Result<(), GrantError> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &b in s.as_bytes() {
            match b {
                b' ' => self.push(b"+")?,
                _ if kept_as_is(b) => self.push(&[b])?,
                _ => self.push(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])?,
            }
        }
        Ok(())
    }

    /// The body written so far.
    pub fn finish(self) -> Result<&'b str, GrantError> {
        core::str::from_utf8(&self.buf[..self.len]).map_err(|_| GrantError::BufferTooSmall)
    }
}

/// Bytes `application/x-www-form-urlencoded` keeps as they are.
fn kept_as_is(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_')
}

/// Length of `s` once form-encoded by [`FormWriter`] (a space becomes `+`).
fn form_len(s: &str) -> usize {
    s.bytes()
        .map(|b| if b == b' ' || kept_as_is(b) { 1 } else { 3 })
        .sum()
}

fn base64_encode(input: &[u8], out: &mut [u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (chunk, o) in input.chunks(3).zip(out.chunks_mut(4)) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, slot) in o.iter_mut().enumerate() {
            *slot = if k <= chunk.len() {
                ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]
            } else {
                b'='
            };
        }
    }
}

/// A successful token response (RFC 6749 §5.1), borrowing from the body.
#[derive(Clone, Copy)]
pub struct TokenResponse<'a> {
    /// `access_token`.
    pub access_token: AccessToken<'a>,
    /// `refresh_token`, when issued or rotated.
    pub refresh_token: Option<RefreshToken<'a>>,
    /// `expires_in`, in seconds (exponent forms read; saturating).
    pub expires_in: Option<u64>,
    /// `refresh_expires_in`, in seconds (Keycloak and others).
    pub refresh_expires_in: Option<u64>,
    /// `scope`, when the server narrowed or stated it.
    pub scope: Option<&'a str>,
}

impl<'a> TokenResponse<'a> {
    /// As the machine's input.
    pub fn token_set(&self) -> TokenSet<'a> {
        TokenSet {
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            expires_in: self.expires_in.map(Duration::from_secs),
            refresh_expires_in: self.refresh_expires_in.map(Duration::from_secs),
        }
    }
}

impl fmt::Debug for TokenResponse<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Fields of the token endpoint's JSON, as spans into the (unescaped) body.
#[derive(Default)]
struct Fields {
    access_token: Option<(usize, usize)>,
    refresh_token: Option<(usize, usize)>,
    token_type: Option<(usize, usize)>,
    scope: Option<(usize, usize)>,
    error: Option<(usize, usize)>,
    expires_in: Option<u64>,
    refresh_expires_in: Option<u64>,
}

impl Fields {
    /// The response these fields describe, from the body they index.
    fn response<'a>(&self, body: &'a [u8]) -> Result<TokenResponse<'a>, GrantError> {
        let text = |span| text(body, span);
        if let Some(code) = text(self.error)? {
            return Err(GrantError::OAuth(OAuthError::from_code(code)));
        }
        let access = text(self.access_token)?.ok_or(GrantError::MissingAccessToken)?;
        if let Some(tt) = text(self.token_type)? {
            if !tt.eq_ignore_ascii_case("bearer") {
                return Err(GrantError::UnsupportedTokenType);
            }
        }
        Ok(TokenResponse {
            access_token: AccessToken::new(access),
            refresh_token: text(self.refresh_token)?.map(RefreshToken::new),
            expires_in: self.expires_in,
            refresh_expires_in: self.refresh_expires_in,
            scope: text(self.scope)?,
        })
    }
}

fn text(body: &[u8], span: Option<(usize, usize)>) -> Result<Option<&str>, GrantError> {
    span.map(|(s, n)| core::str::from_utf8(&body[s..s + n]).map_err(|_| GrantError::Json(s)))
        .transpose()
}

/// Parse a token response body in place (JSON escapes are decoded inside
/// `body`; a leading UTF-8 byte order mark is skipped).
pub fn parse_token_response(body: &mut [u8]) -> Result<TokenResponse<'_>, GrantError> {
    parse_token_response_as(body, &TokenFormat::OAUTH2)
}

/// [`parse_token_response`] for a token answer in another `format` (an app
/// backend's camelCase JSON, say).
pub fn parse_token_response_as<'b>(
    body: &'b mut [u8],
    format: &TokenFormat<'_>,
) -> Result<TokenResponse<'b>, GrantError> {
    let f = scan_object(body, format)?;
    f.response(body)
}

/// How a token endpoint writes its answer: the names of its fields, and how
/// it says that a refresh token is refused.
///
/// RFC 6749 servers use [`TokenFormat::OAUTH2`]. The JWT backends of web
/// tutorials and app frameworks (Express, NestJS, Spring) answer
/// `{"accessToken": .., "refreshToken": ..}` and refuse with a bare 401 or
/// 403: [`TokenFormat::CAMEL_CASE`], or any names of your own. The
/// `token_type`, `scope` and `error` fields keep their RFC 6749 names in
/// every format (a backend that sends none is fine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenFormat<'n> {
    /// The access token's field.
    pub access_token: &'n str,
    /// The refresh token's field.
    pub refresh_token: &'n str,
    /// The access token's lifetime in seconds.
    pub expires_in: &'n str,
    /// The refresh token's lifetime in seconds.
    pub refresh_expires_in: &'n str,
    /// How a refused refresh token is told from an outage.
    pub refusals: Refusals,
}

impl TokenFormat<'static> {
    /// RFC 6749 §5.1: `access_token`, `refresh_token`, `expires_in`,
    /// `refresh_expires_in`; refusals by §5.2 error code.
    pub const OAUTH2: TokenFormat<'static> = TokenFormat {
        access_token: "access_token",
        refresh_token: "refresh_token",
        expires_in: "expires_in",
        refresh_expires_in: "refresh_expires_in",
        refusals: Refusals::OAuthCodes,
    };

    /// An app backend's camelCase JSON: `accessToken`, `refreshToken`,
    /// `expiresIn`, `refreshExpiresIn`; refusals by status ([`Refusals::Statuses`]).
    pub const CAMEL_CASE: TokenFormat<'static> = TokenFormat {
        access_token: "accessToken",
        refresh_token: "refreshToken",
        expires_in: "expiresIn",
        refresh_expires_in: "refreshExpiresIn",
        refusals: Refusals::Statuses,
    };
}

/// How a token endpoint refuses a refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusals {
    /// By RFC 6749 §5.2 error code: only `invalid_grant` ends the session; a
    /// 400 or 401 without a known code is transient.
    OAuthCodes,
    /// By status, as app backends do: 401 and 403 end the session, 400 is a
    /// request the client got wrong (misconfigured: tokens kept, nobody
    /// logged out). An RFC 6749 error code in the body still wins.
    Statuses,
}

/// The JSON body `{"<field>":"<refresh token>"}` that app backends take at
/// their refresh route, written into `buf` (the field name and the token
/// escaped as JSON strings).
pub fn json_refresh_body<'b>(
    buf: &'b mut [u8],
    field: &str,
    refresh_token: RefreshToken<'_>,
) -> Result<&'b str, GrantError> {
    let mut w = Writer { buf, len: 0 };
    w.push(b"{")?;
    w.json_string(field)?;
    w.push(b":")?;
    w.json_string(refresh_token.expose_secret())?;
    w.push(b"}")?;
    w.finish()
}

/// The most bytes [`json_refresh_body`] writes for this field and token.
pub const fn json_refresh_body_len(field_len: usize, token_len: usize) -> usize {
    // `\u00XX` is the longest escape: six bytes for one.
    6 * (field_len + token_len) + 8
}

/// A fixed buffer written front to back.
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    fn finish(self) -> Result<&'b str, GrantError> {
        core::str::from_utf8(&self.buf[..self.len]).map_err(|_| GrantError::BufferTooSmall)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), GrantError> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(GrantError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// `s` as a JSON string (RFC 8259 §7): quote, backslash and control
    /// characters escaped.
    fn json_string(&mut self, s: &str) -> Result<(), GrantError> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.push(b"\"")?;
        for &b in s.as_bytes() {
            match b {
                b'"' => self.push(b"\\\"")?,
                b'\\' => self.push(b"\\\\")?,
                b'\n' => self.push(b"\\n")?,
                b'\r' => self.push(b"\\r")?,
                b'\t' => self.push(b"\\t")?,
                0..=0x1f => self.push(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ])?,
                _ => self.push(&[b])?,
            }
        }
        self.push(b"\"")
    }
}

/// The token endpoint's answer, classified for [`crate::RefreshMachine::handle_refresh_outcome`].
#[derive(Clone, Copy, Debug)]
pub struct Classified<'a> {
    /// What to feed the machine.
    pub outcome: RefreshOutcome<'a>,
    /// What was wrong, for logs (never contains a token).
    pub problem: Option<GrantError>,
}

/// Classify a token endpoint response.
///
/// - 200: the refresh token presented may be spent. Bearer tokens are
///   success; anything else is [`RefreshOutcome::Unusable`], with any new
///   refresh token the body carries (never "try the old one again").
/// - 400/401 with `invalid_grant`: rejection (the session is lost).
/// - 400/401 with `invalid_client`, `unauthorized_client`,
///   `unsupported_grant_type`, `invalid_scope` or `invalid_request`: the
///   client is misconfigured (tokens kept, no login-required signal).
/// - Anything else (`server_error`, `temporarily_unavailable`, unknown codes,
///   5xx, 429, a proxy's HTML, a broken body): transient, so an outage never
///   logs the user out.
pub fn classify_token_response(
    status: u16,
    body: &mut [u8],
    retry_after: Option<Duration>,
) -> Classified<'_> {
    classify_token_response_as(status, body, retry_after, &TokenFormat::OAUTH2)
}

/// [`classify_token_response`] for an answer in another `format`. With
/// [`Refusals::Statuses`], a 401 or 403 without an RFC 6749 code is a
/// rejection and a 400 without one a misconfiguration.
pub fn classify_token_response_as<'b>(
    status: u16,
    body: &'b mut [u8],
    retry_after: Option<Duration>,
    format: &TokenFormat<'_>,
) -> Classified<'b> {
    let transient = |problem| Classified {
        outcome: RefreshOutcome::Transient { retry_after },
        problem: Some(problem),
    };
    let fields = scan_object(body, format);
    let body: &[u8] = body;
    match status {
        200 => {
            let (refresh_token, problem) = match &fields {
                Ok(f) => match f.response(body) {
                    Ok(t) => {
                        return Classified {
                            outcome: RefreshOutcome::Success(t.token_set()),
                            problem: None,
                        }
                    }
                    Err(e) => (text(body, f.refresh_token).ok().flatten(), e),
                },
                Err(e) => (None, *e),
            };
            Classified {
                outcome: RefreshOutcome::Unusable {
                    refresh_token: refresh_token.map(RefreshToken::new),
                },
                problem: Some(problem),
            }
        }
        400 | 401 | 403 if status != 403 || format.refusals == Refusals::Statuses => match fields
            .and_then(|f| f.response(body))
        {
            Err(GrantError::OAuth(OAuthError::InvalidGrant)) => Classified {
                outcome: RefreshOutcome::Rejected,
                problem: Some(GrantError::OAuth(OAuthError::InvalidGrant)),
            },
            Err(GrantError::OAuth(
                code @ (OAuthError::InvalidClient
                | OAuthError::UnauthorizedClient
                | OAuthError::UnsupportedGrantType
                | OAuthError::InvalidScope
                | OAuthError::InvalidRequest),
            )) => Classified {
                outcome: RefreshOutcome::Misconfigured(Some(code)),
                problem: Some(GrantError::OAuth(code)),
            },
            Err(GrantError::OAuth(
                code @ (OAuthError::TemporarilyUnavailable | OAuthError::ServerError),
            )) => transient(GrantError::OAuth(code)),
            Err(GrantError::OAuth(code)) if format.refusals == Refusals::OAuthCodes => {
                transient(GrantError::OAuth(code))
            }
            _ if format.refusals == Refusals::OAuthCodes => transient(GrantError::Status(status)),
            _ if status == 400 => Classified {
                outcome: RefreshOutcome::Misconfigured(None),
                problem: Some(GrantError::Status(status)),
            },
            _ => Classified {
                outcome: RefreshOutcome::Rejected,
                problem: Some(GrantError::Status(status)),
            },
        },
        _ => transient(GrantError::Status(status)),
    }
}

// ----- a small JSON object scanner (RFC 8259), enough for §5.1/§5.2 bodies ----

const MAX_DEPTH: u32 = 16;

/// A UTF-8 byte order mark, which RFC 8259 lets a parser ignore.
const BOM: &[u8] = b"\xEF\xBB\xBF";

fn scan_object(b: &mut [u8], names: &TokenFormat<'_>) -> Result<Fields, GrantError> {
    let mut f = Fields::default();
    scan_members(b, |key, value| {
        let slot = if key == names.access_token.as_bytes() {
            Some(&mut f.access_token)
        } else if key == names.refresh_token.as_bytes() {
            Some(&mut f.refresh_token)
        } else {
            match key {
                b"token_type" => Some(&mut f.token_type),
                b"scope" => Some(&mut f.scope),
                b"error" => Some(&mut f.error),
                _ => None,
            }
        };
        let seconds = if key == names.expires_in.as_bytes() {
            Some(&mut f.expires_in)
        } else if key == names.refresh_expires_in.as_bytes() {
            Some(&mut f.refresh_expires_in)
        } else {
            None
        };
        match value {
            Member::Text { span, text } => {
                if let Some(slot) = slot {
                    *slot = Some(span);
                } else if let Some(seconds) = seconds {
                    // Some servers send `"expires_in": "3600"`.
                    *seconds = seconds_in_text(text);
                }
            }
            Member::Number(n) => {
                if let Some(seconds) = seconds {
                    *seconds = whole_seconds(n);
                }
            }
            Member::Other => {}
        }
    })?;
    Ok(f)
}

/// A member's value as [`scan_members`] shows it.
pub(crate) enum Member<'v> {
    /// A string, unescaped in place: its span in the body and its bytes.
    Text {
        span: (usize, usize),
        text: &'v [u8],
    },
    /// A number, as written.
    Number(&'v [u8]),
    /// Anything else (checked, skipped).
    Other,
}

/// Walk the members of the JSON object that is the whole of `b` (a UTF-8
/// byte order mark skipped), calling `member(key, value)` for each.
pub(crate) fn scan_members(
    b: &mut [u8],
    mut member: impl FnMut(&[u8], Member<'_>),
) -> Result<(), GrantError> {
    let start = if b.starts_with(BOM) { BOM.len() } else { 0 };
    let mut i = skip_ws(b, start);
    if b.get(i) != Some(&b'{') {
        return Err(GrantError::Json(i));
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return end(b, i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(GrantError::Json(i));
        }
        let (ks, kn, next) = string(b, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return Err(GrantError::Json(i));
        }
        i = skip_ws(b, i + 1);
        match b.get(i) {
            Some(b'"') => {
                let (s, n, next) = string(b, i)?;
                let text = Member::Text {
                    span: (s, n),
                    text: &b[s..s + n],
                };
                member(&b[ks..ks + kn], text);
                i = next;
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = i;
                i = number(b, i)?;
                member(&b[ks..ks + kn], Member::Number(&b[start..i]));
            }
            _ => {
                i = skip_value(b, i, 0)?;
                member(&b[ks..ks + kn], Member::Other);
            }
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return end(b, i + 1),
            _ => return Err(GrantError::Json(i)),
        }
    }
}

fn end(b: &[u8], i: usize) -> Result<(), GrantError> {
    let j = skip_ws(b, i);
    if j == b.len() {
        Ok(())
    } else {
        Err(GrantError::Json(j))
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Whole seconds in a string that is a JSON number, optionally followed by
/// `s` (`"3600"`, `"60s"`); `None` for any other text, so that a lifetime in
/// other units (`"15m"`, `"7d"`) is no lifetime rather than that many seconds.
fn seconds_in_text(text: &[u8]) -> Option<u64> {
    let n = text.strip_suffix(b"s").unwrap_or(text);
    if number(n, 0).ok()? != n.len() {
        return None;
    }
    whole_seconds(n)
}

/// Whole seconds in a non-negative JSON number (`3600`, `3600.5`, `3.6e3`,
/// `1E30` saturating), read up to the first byte that cannot continue it;
/// `None` when negative or without digits.
pub(crate) fn whole_seconds(s: &[u8]) -> Option<u64> {
    let digits = |b: &[u8]| b.iter().take_while(|c| c.is_ascii_digit()).count();
    let int_len = digits(s);
    if int_len == 0 {
        return None;
    }
    let frac = match s.get(int_len) {
        Some(b'.') => &s[int_len + 1..],
        _ => &s[int_len..int_len],
    };
    let frac_len = digits(frac);
    let mut exponent: i32 = 0;
    let rest = if frac.is_empty() {
        &s[int_len..]
    } else {
        &frac[frac_len..]
    };
    if let Some((b'e' | b'E', tail)) = rest.split_first() {
        let (negative, tail) = match tail.split_first() {
            Some((b'-', t)) => (true, t),
            Some((b'+', t)) => (false, t),
            _ => (false, tail),
        };
        for &d in &tail[..digits(tail)] {
            exponent = (exponent * 10 + i32::from(d - b'0')).min(100);
        }
        if negative {
            exponent = -exponent;
        }
    }
    // The digits before the decimal point, once the exponent has moved it.
    let point = (int_len.min(100) as i32 + exponent).clamp(0, 100) as usize;
    let mut value: u64 = 0;
    let all = s[..int_len].iter().chain(&frac[..frac_len]);
    let mut taken = 0;
    for &d in all.take(point) {
        value = value.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        taken += 1;
    }
    for _ in taken..point {
        value = value.saturating_mul(10);
    }
    Some(value)
}

fn number(b: &[u8], mut i: usize) -> Result<usize, GrantError> {
    let start = i;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == int_start || (b[int_start] == b'0' && i - int_start > 1) {
        return Err(GrantError::Json(start));
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let f = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == f {
            return Err(GrantError::Json(i));
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let e = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == e {
            return Err(GrantError::Json(i));
        }
    }
    Ok(i)
}

fn skip_value(b: &mut [u8], i: usize, depth: u32) -> Result<usize, GrantError> {
    if depth > MAX_DEPTH {
        return Err(GrantError::Json(i));
    }
    match b.get(i) {
        Some(b'"') => string(b, i).map(|(_, _, next)| next),
        Some(b'-' | b'0'..=b'9') => number(b, i),
        Some(b't') => literal(b, i, b"true"),
        Some(b'f') => literal(b, i, b"false"),
        Some(b'n') => literal(b, i, b"null"),
        Some(&open @ (b'{' | b'[')) => {
            let close = if open == b'{' { b'}' } else { b']' };
            let mut j = skip_ws(b, i + 1);
            if b.get(j) == Some(&close) {
                return Ok(j + 1);
            }
            loop {
                if open == b'{' {
                    if b.get(j) != Some(&b'"') {
                        return Err(GrantError::Json(j));
                    }
                    let after = string(b, j)?.2;
                    j = skip_ws(b, after);
                    if b.get(j) != Some(&b':') {
                        return Err(GrantError::Json(j));
                    }
                    j = skip_ws(b, j + 1);
                }
                let after = skip_value(b, j, depth + 1)?;
                j = skip_ws(b, after);
                match b.get(j) {
                    Some(b',') => j = skip_ws(b, j + 1),
                    Some(&c) if c == close => return Ok(j + 1),
                    _ => return Err(GrantError::Json(j)),
                }
            }
        }
        _ => Err(GrantError::Json(i)),
    }
}

fn literal(b: &[u8], i: usize, lit: &[u8]) -> Result<usize, GrantError> {
    if b.get(i..i + lit.len()) == Some(lit) {
        Ok(i + lit.len())
    } else {
        Err(GrantError::Json(i))
    }
}

fn hex4(b: &[u8], i: usize) -> Result<u32, GrantError> {
    let digits = b.get(i..i + 4).ok_or(GrantError::Json(i))?;
    digits.iter().try_fold(0u32, |acc, &c| {
        let v = (c as char).to_digit(16).ok_or(GrantError::Json(i))?;
        Ok(acc * 16 + v)
    })
}

/// Decode the string starting at `b[i] == '"'` in place.
/// Returns (start, decoded length, index after the closing quote).
fn string(b: &mut [u8], i: usize) -> Result<(usize, usize, usize), GrantError> {
    let start = i + 1;
    let (mut r, mut w) = (start, start);
    loop {
        let c = *b.get(r).ok_or(GrantError::Json(r))?;
        match c {
            b'"' => return Ok((start, w - start, r + 1)),
            b'\\' => {
                let e = *b.get(r + 1).ok_or(GrantError::Json(r))?;
                let simple = match e {
                    b'"' => Some(b'"'),
                    b'\\' => Some(b'\\'),
                    b'/' => Some(b'/'),
                    b'b' => Some(8),
                    b'f' => Some(12),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'u' => None,
                    _ => return Err(GrantError::Json(r)),
                };
                if let Some(byte) = simple {
                    b[w] = byte;
                    w += 1;
                    r += 2;
                    continue;
                }
                let mut cp = hex4(b, r + 2)?;
                r += 6;
                if (0xD800..0xDC00).contains(&cp) {
                    if b.get(r..r + 2) != Some(b"\\u") {
                        return Err(GrantError::Json(r));
                    }
                    let lo = hex4(b, r + 2)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(GrantError::Json(r));
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    r += 6;
                }
                let ch = char::from_u32(cp).ok_or(GrantError::Json(r))?;
                let mut tmp = [0u8; 4];
                let enc = ch.encode_utf8(&mut tmp).as_bytes();
                // The escape is always at least as long as its UTF-8: w + len <= r.
                b[w..w + enc.len()].copy_from_slice(enc);
                w += enc.len();
            }
            0..=0x1f => return Err(GrantError::Json(r)),
            _ => {
                b[w] = c;
                w += 1;
                r += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, vec::Vec};

    #[test]
    fn refresh_body_is_form_encoded() {
        let mut buf = [0u8; 256];
        let body = refresh_grant_body(
            &mut buf,
            RefreshToken::new("r/1+2=3"),
            &ClientAuth::Public {
                client_id: "app one",
            },
            Some("read write"),
        )
        .unwrap();
        assert_eq!(
            body,
            "grant_type=refresh_token&refresh_token=r%2F1%2B2%3D3&scope=read+write&client_id=app+one"
        );
        let mut small = [0u8; 10];
        assert_eq!(
            refresh_grant_body(&mut small, RefreshToken::new("x"), &ClientAuth::None, None),
            Err(GrantError::BufferTooSmall)
        );
    }

    #[test]
    fn basic_auth_encodes_then_base64s() {
        let mut buf = [0u8; 128];
        let auth = ClientAuth::Basic {
            client_id: "s6BhdRkqt3",
            client_secret: "gX1fBat3bV",
        };
        // RFC 6749 §2.3.1 example credentials.
        assert_eq!(
            auth.authorization(&mut buf).unwrap(),
            Some("Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW")
        );
        let mut buf = [0u8; 128];
        let auth = ClientAuth::Basic {
            client_id: "a b",
            client_secret: "c:d",
        };
        // "a+b:c%3Ad" in base64
        assert_eq!(
            auth.authorization(&mut buf).unwrap(),
            Some("Basic YStiOmMlM0Fk")
        );
        assert!(!format!("{auth:?}").contains("c:d"));
    }

    /// Issue 14, rule 4: credentials longer than a fixed 512-byte copy
    /// failed locally (and the session was lost). Any length that fits the
    /// caller's buffer works, for every length modulo 3, and nothing of the
    /// plain credentials is left behind in the buffer.
    #[test]
    fn basic_auth_takes_secrets_of_any_length() {
        for len in [0usize, 1, 2, 3, 520, 521, 522, 2_000] {
            let secret: std::string::String = "s/".repeat(len).chars().take(len).collect();
            let auth = ClientAuth::Basic {
                client_id: "id",
                client_secret: &secret,
            };
            let plain = format!("id:{}", secret.replace('/', "%2F"));
            let mut expected = std::vec![0u8; plain.len().div_ceil(3) * 4];
            base64_encode(plain.as_bytes(), &mut expected);
            let needed = 6 + expected.len();
            let mut buf = std::vec![0xAAu8; needed + 7];
            let got = auth.authorization(&mut buf).unwrap().unwrap();
            assert_eq!(got.as_bytes()[6..], expected[..], "length {len}");
            assert!(buf[needed..].iter().all(|&b| b == 0), "length {len}");
            let mut exact = std::vec![0u8; needed];
            assert!(auth.authorization(&mut exact).is_ok(), "length {len}");
            let mut short = std::vec![0u8; needed - 1];
            assert_eq!(
                auth.authorization(&mut short),
                Err(GrantError::BufferTooSmall)
            );
        }
    }

    #[test]
    fn parses_rfc6749_example() {
        let mut body = br#"{
          "access_token":"2YotnFZFEjr1zCsicMWpAA",
          "token_type":"Bearer",
          "expires_in":3600,
          "refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA",
          "example_parameter":{"nested":[1,2.5e3,true,null,"x"]}
        }"#
        .to_vec();
        let t = parse_token_response(&mut body).unwrap();
        assert_eq!(t.access_token.expose_secret(), "2YotnFZFEjr1zCsicMWpAA");
        assert_eq!(
            t.refresh_token.unwrap().expose_secret(),
            "tGzv3JOkF0XG5Qx2TlKWIA"
        );
        assert_eq!(t.expires_in, Some(3600));
        assert!(!format!("{t:?}").contains("2Yotn"));
    }

    /// Issue 14, rule 6: `1E3` read as 1 s.
    #[test]
    fn seconds_are_read_in_every_json_number_form() {
        for (text, want) in [
            ("3600", Some(3600)),
            ("0", Some(0)),
            ("0.5", Some(0)),
            ("3600.9", Some(3600)),
            ("1E3", Some(1000)),
            ("1e+3", Some(1000)),
            ("3.6e3", Some(3600)),
            ("1.5e1", Some(15)),
            ("15e-1", Some(1)),
            ("36e-1", Some(3)),
            ("1e-5", Some(0)),
            ("123456e-3", Some(123)),
            ("1e19", Some(10_000_000_000_000_000_000)),
            ("1e20", Some(u64::MAX)),
            ("1e30", Some(u64::MAX)),
            ("99999999999999999999999", Some(u64::MAX)),
            ("1e99999999999", Some(u64::MAX)),
            ("60s", Some(60)),
            ("1e", Some(1)),
            ("-5", None),
            ("", None),
            ("abc", None),
            (".5", None),
        ] {
            assert_eq!(whole_seconds(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn escapes_are_decoded_in_place() {
        let mut body =
            br#"{"access_token":"a\/b\u0041\ud83d\ude00","token_type":"bearer","expires_in":"60"}"#
                .to_vec();
        let t = parse_token_response(&mut body).unwrap();
        assert_eq!(t.access_token.expose_secret(), "a/bA\u{1F600}");
        assert_eq!(t.expires_in, Some(60));
        assert_eq!(t.refresh_token, None);
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        for bad in [
            &br#""#[..],
            br#"{"#,
            br#"{"access_token":}"#,
            br#"{"access_token":"x""#,
            br#"{"access_token":"x",}"#,
            br#"{"access_token":"x"} trailing"#,
            br#"{"access_token":"\ud800"}"#,
            br#"{"access_token":"\q"}"#,
            br#"{"a":01}"#,
            br#"[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]"#,
            b"{\"access_token\":\"a\x01\"}",
        ] {
            let mut v = bad.to_vec();
            assert!(
                matches!(parse_token_response(&mut v), Err(GrantError::Json(_))),
                "{bad:?}"
            );
        }
        let mut v = br#"{"token_type":"Bearer"}"#.to_vec();
        assert_eq!(
            parse_token_response(&mut v).unwrap_err(),
            GrantError::MissingAccessToken
        );
        let mut v = br#"{"access_token":"x","token_type":"DPoP"}"#.to_vec();
        assert_eq!(
            parse_token_response(&mut v).unwrap_err(),
            GrantError::UnsupportedTokenType
        );
    }

    #[test]
    fn classification() {
        let mut ok = br#"{"access_token":"a","token_type":"Bearer"}"#.to_vec();
        assert!(matches!(
            classify_token_response(200, &mut ok, None).outcome,
            RefreshOutcome::Success(_)
        ));
        let mut grant = br#"{"error":"invalid_grant","error_description":"reused"}"#.to_vec();
        let c = classify_token_response(400, &mut grant, None);
        assert!(matches!(c.outcome, RefreshOutcome::Rejected));
        assert_eq!(c.problem, Some(GrantError::OAuth(OAuthError::InvalidGrant)));
        let mut html = b"<html>bad gateway</html>".to_vec();
        assert!(matches!(
            classify_token_response(400, &mut html, None).outcome,
            RefreshOutcome::Transient { .. }
        ));
        let mut empty = Vec::new();
        let c = classify_token_response(503, &mut empty, Some(Duration::from_secs(2)));
        assert!(matches!(
            c.outcome,
            RefreshOutcome::Transient { retry_after: Some(d) } if d == Duration::from_secs(2)
        ));
        // A 200 may have spent the refresh token: never "transient, try it again".
        let mut broken = br#"{"access_token":"#.to_vec();
        assert!(matches!(
            classify_token_response(200, &mut broken, None).outcome,
            RefreshOutcome::Unusable {
                refresh_token: None
            }
        ));
        let mut busy = br#"{"error":"temporarily_unavailable"}"#.to_vec();
        assert!(matches!(
            classify_token_response(400, &mut busy, None).outcome,
            RefreshOutcome::Transient { .. }
        ));
    }

    /// The client codes are a misconfiguration, the other codes transient
    /// with the code as the problem (mutants deleting either arm survived).
    #[test]
    fn classification_keeps_the_oauth_code() {
        for (code, want) in [
            ("invalid_client", OAuthError::InvalidClient),
            ("unauthorized_client", OAuthError::UnauthorizedClient),
            ("unsupported_grant_type", OAuthError::UnsupportedGrantType),
            ("invalid_scope", OAuthError::InvalidScope),
            ("invalid_request", OAuthError::InvalidRequest),
        ] {
            let mut body = format!(r#"{{"error":"{code}"}}"#).into_bytes();
            let c = classify_token_response(401, &mut body, None);
            assert!(
                matches!(c.outcome, RefreshOutcome::Misconfigured(Some(got)) if got == want),
                "{code}: {:?}",
                c.outcome
            );
            assert_eq!(c.problem, Some(GrantError::OAuth(want)), "{code}");
        }
        for (code, want) in [
            ("server_error", OAuthError::ServerError),
            (
                "temporarily_unavailable",
                OAuthError::TemporarilyUnavailable,
            ),
            ("made_up", OAuthError::Other),
        ] {
            let mut body = format!(r#"{{"error":"{code}"}}"#).into_bytes();
            let c = classify_token_response(400, &mut body, Some(Duration::from_secs(4)));
            assert!(
                matches!(
                    c.outcome,
                    RefreshOutcome::Transient { retry_after: Some(d) } if d == Duration::from_secs(4)
                ),
                "{code}"
            );
            assert_eq!(c.problem, Some(GrantError::OAuth(want)), "{code}");
        }
        let mut html = b"<html>".to_vec();
        let c = classify_token_response(401, &mut html, None);
        assert_eq!(c.problem, Some(GrantError::Status(401)));
    }

    /// Every field of a token response is read, `{}` is an object, and the
    /// `Debug` output names the fields without the tokens.
    #[test]
    fn every_field_is_read_and_debug_shows_no_token() {
        let mut body = br#"{"access_token":"at-1","refresh_token":"rt-1","token_type":"Bearer","expires_in":60,"refresh_expires_in":"1800","scope":"read write"}"#.to_vec();
        let t = parse_token_response(&mut body).unwrap();
        assert_eq!(t.access_token.expose_secret(), "at-1");
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "rt-1");
        assert_eq!(t.expires_in, Some(60));
        assert_eq!(t.refresh_expires_in, Some(1800));
        assert_eq!(t.scope, Some("read write"));
        let text = format!("{t:?}");
        for part in [
            "TokenResponse",
            "expires_in: Some(60)",
            "1800",
            "read write",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert!(!text.contains("at-1") && !text.contains("rt-1"), "{text}");
        let set = t.token_set();
        assert_eq!(set.expires_in, Some(Duration::from_secs(60)));
        assert_eq!(set.refresh_expires_in, Some(Duration::from_secs(1800)));

        for empty in [&b"{}"[..], b"{ }", b" {}\n", b"\xEF\xBB\xBF{}"] {
            let mut v = empty.to_vec();
            assert_eq!(
                parse_token_response(&mut v).unwrap_err(),
                GrantError::MissingAccessToken,
                "{empty:?}"
            );
        }
        let mut v = b"{} x".to_vec();
        assert_eq!(
            parse_token_response(&mut v).unwrap_err(),
            GrantError::Json(3)
        );
    }

    #[test]
    fn form_writer_debug_shows_only_the_length() {
        let mut buf = [0u8; 64];
        let mut w = FormWriter::new(&mut buf);
        w.pair("password", "hunter2").unwrap();
        let text = format!("{w:?}");
        assert!(
            text.contains("FormWriter") && text.contains("len: 16"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    /// Every JSON number form is a value (signs, a lone zero, fractions,
    /// exponents with and without a sign), and the forms JSON forbids are errors.
    #[test]
    fn json_numbers_in_bodies() {
        let mut body = br#"{"access_token":"a","n":-5,"z":0,"f":-0.5,"e":1e+3,"g":-2.5E-2,"h":7e3,"expires_in":0,"l":[0,-1,20e+1,-0]}"#.to_vec();
        let t = parse_token_response(&mut body).unwrap();
        assert_eq!(t.expires_in, Some(0));
        let mut body = br#"{"access_token":"a","expires_in":-60}"#.to_vec();
        assert_eq!(parse_token_response(&mut body).unwrap().expires_in, None);
        for (bad, at) in [
            (&br#"{"a":-}"#[..], 5),
            (br#"{"a":-x}"#, 5),
            (br#"{"a":00}"#, 5),
            (br#"{"a":-01}"#, 5),
            (br#"{"a":1.}"#, 7),
            (br#"{"a":1.e3}"#, 7),
            (br#"{"a":1e}"#, 7),
            (br#"{"a":1e+}"#, 8),
            (br#"{"a":[1E-]}"#, 9),
        ] {
            let mut v = bad.to_vec();
            assert_eq!(
                parse_token_response(&mut v).unwrap_err(),
                GrantError::Json(at),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    /// Nested values are skipped to a depth of 16 below the field, no deeper;
    /// empty containers, `false`, and a container closed by the wrong
    /// bracket is an error.
    #[test]
    fn nested_values_are_skipped_to_a_bounded_depth() {
        let nested = |levels: usize| {
            let mut v = br#"{"access_token":"a","x":"#.to_vec();
            v.extend(core::iter::repeat(b'[').take(levels));
            v.extend(core::iter::repeat(b']').take(levels));
            v.push(b'}');
            v
        };
        // 17 arrays: the innermost is at depth 16, the deepest allowed.
        assert!(parse_token_response(&mut nested(17)).is_ok());
        // 18: the innermost, at byte 24 + 17, is one too deep.
        assert_eq!(
            parse_token_response(&mut nested(18)).unwrap_err(),
            GrantError::Json(24 + 17)
        );
        let mut body =
            br#"{"access_token":"a","e":[],"o":{},"s":[ ],"t":{ },"f":false,"k":{"x":{"y":[false,{}]}},"n":null,"u":true}"#
                .to_vec();
        assert!(parse_token_response(&mut body).is_ok());
        for (bad, at) in [
            (&br#"{"a":[1}}"#[..], 7),
            (br#"{"a":{"b":1]}"#, 11),
            (br#"{"a":[}"#, 6),
            (br#"{"a":fals}"#, 5),
            (br#"{"a":{"b" 1}}"#, 10),
            (br#"{"a":{1:1}}"#, 6),
        ] {
            let mut v = bad.to_vec();
            assert_eq!(
                parse_token_response(&mut v).unwrap_err(),
                GrantError::Json(at),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    /// Every JSON escape is decoded (RFC 8259 section 7).
    #[test]
    fn every_escape_is_decoded() {
        let mut body =
            br#"{"access_token":"x","scope":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00!"}"#.to_vec();
        let t = parse_token_response(&mut body).unwrap();
        assert_eq!(t.scope, Some("\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600}!"));
    }

    /// `"expiresIn": "15m"` (the `expiresIn` option of jsonwebtoken,
    /// echoed by app backends) is not 15 seconds, nor `"7d"` seven: a
    /// lifetime in a string is read only when the string is a number
    /// (seconds, `"60s"` included); anything else is no lifetime.
    #[test]
    fn lifetimes_in_strings_with_other_units_are_not_seconds() {
        let mut body = br#"{"accessToken":"a","expiresIn":"15m","refreshExpiresIn":"7d"}"#.to_vec();
        let t = parse_token_response_as(&mut body, &TokenFormat::CAMEL_CASE).unwrap();
        assert_eq!((t.expires_in, t.refresh_expires_in), (None, None));
        for (text, want) in [
            ("3600", Some(3600)),
            ("60s", Some(60)),
            ("1h", None),
            ("2 days", None),
            ("900 ", None),
            ("3600x", None),
        ] {
            let json = std::format!(r#"{{"access_token":"a","expires_in":"{text}"}}"#);
            let mut body = json.into_bytes();
            assert_eq!(
                parse_token_response(&mut body).unwrap().expires_in,
                want,
                "{text}"
            );
        }
    }

    #[test]
    fn camel_case_answers_are_read_by_their_names() {
        let mut body =
            br#"{"accessToken":"a.b.c","refreshToken":"r1","expiresIn":"900","user":{"id":7}}"#
                .to_vec();
        let t = parse_token_response_as(&mut body, &TokenFormat::CAMEL_CASE).unwrap();
        assert_eq!(t.access_token.expose_secret(), "a.b.c");
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "r1");
        assert_eq!(t.expires_in, Some(900));
        // The RFC 6749 names mean nothing in this format, and the reverse.
        let mut body = br#"{"access_token":"a"}"#.to_vec();
        assert_eq!(
            parse_token_response_as(&mut body, &TokenFormat::CAMEL_CASE).unwrap_err(),
            GrantError::MissingAccessToken
        );
        let mut body = br#"{"accessToken":"a"}"#.to_vec();
        assert_eq!(
            parse_token_response(&mut body).unwrap_err(),
            GrantError::MissingAccessToken
        );
        let own = TokenFormat {
            access_token: "jwt",
            refresh_token: "refresh",
            ..TokenFormat::CAMEL_CASE
        };
        let mut body = br#"{"jwt":"j","refresh":"r"}"#.to_vec();
        let t = parse_token_response_as(&mut body, &own).unwrap();
        assert_eq!(t.access_token.expose_secret(), "j");
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "r");
    }

    #[test]
    fn refusals_by_status_for_app_backends() {
        let class = |status, body: &[u8], format: &TokenFormat<'_>| {
            let mut body = body.to_vec();
            match classify_token_response_as(status, &mut body, None, format).outcome {
                RefreshOutcome::Rejected => "rejected",
                RefreshOutcome::Misconfigured(_) => "misconfigured",
                RefreshOutcome::Transient { .. } => "transient",
                RefreshOutcome::Success(_) => "success",
                RefreshOutcome::Unusable { .. } => "unusable",
            }
        };
        let (oauth, app) = (&TokenFormat::OAUTH2, &TokenFormat::CAMEL_CASE);
        let message = br#"{"message":"Refresh token was expired"}"#;
        // An Express backend's refusal: the session is over.
        assert_eq!(class(403, message, app), "rejected");
        assert_eq!(class(401, message, app), "rejected");
        assert_eq!(class(401, b"Unauthorized", app), "rejected");
        assert_eq!(class(400, message, app), "misconfigured");
        // The same answers from an RFC 6749 server say nothing about the grant.
        assert_eq!(class(403, message, oauth), "transient");
        assert_eq!(class(401, message, oauth), "transient");
        assert_eq!(class(400, message, oauth), "transient");
        // An RFC 6749 code wins in both, and an outage is an outage.
        let busy = br#"{"error":"temporarily_unavailable"}"#;
        assert_eq!(class(401, busy, app), "transient");
        assert_eq!(class(403, busy, app), "transient");
        assert_eq!(class(400, br#"{"error":"invalid_grant"}"#, app), "rejected");
        assert_eq!(
            class(400, br#"{"error":"invalid_client"}"#, app),
            "misconfigured"
        );
        for status in [429, 500, 502, 503, 504] {
            assert_eq!(class(status, message, app), "transient");
        }
        assert_eq!(class(200, br#"{"accessToken":"a"}"#, app), "success");
        assert_eq!(class(200, br#"{"access_token":"a"}"#, app), "unusable");
    }

    #[test]
    fn json_refresh_bodies_escape_what_json_must() {
        let mut buf = [0u8; 128];
        let body = json_refresh_body(&mut buf, "refreshToken", RefreshToken::new("r.t-1")).unwrap();
        assert_eq!(body, r#"{"refreshToken":"r.t-1"}"#);
        let nasty = "q\"b\\s\n\u{1}é";
        let field = "re\"fresh";
        let mut buf = [0u8; json_refresh_body_len(9, 13)];
        let body = json_refresh_body(&mut buf, field, RefreshToken::new(nasty)).unwrap();
        assert_eq!(body, r#"{"re\"fresh":"q\"b\\s\n\u0001é"}"#);
        // It parses back to the same token.
        let mut back = body.as_bytes().to_vec();
        let format = TokenFormat {
            access_token: field,
            ..TokenFormat::CAMEL_CASE
        };
        let t = parse_token_response_as(&mut back, &format).unwrap();
        assert_eq!(t.access_token.expose_secret(), nasty);
        // Worst case: every byte escaped six-fold.
        let controls = "\u{1}".repeat(10);
        let mut exact = [0u8; json_refresh_body_len(1, 10)];
        assert!(json_refresh_body(&mut exact, "\u{2}", RefreshToken::new(&controls)).is_ok());
        let mut short = [0u8; 20];
        assert_eq!(
            json_refresh_body(&mut short, "refreshToken", RefreshToken::new(&controls)),
            Err(GrantError::BufferTooSmall)
        );
    }

    #[test]
    fn client_credentials_body() {
        let mut buf = [0u8; 128];
        let body = client_credentials_grant_body(
            &mut buf,
            &ClientAuth::Public { client_id: "svc 1" },
            Some("read write"),
        )
        .unwrap();
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=read+write&client_id=svc+1"
        );
        let basic = ClientAuth::Basic {
            client_id: "svc",
            client_secret: "s",
        };
        let body = client_credentials_grant_body(&mut buf, &basic, None).unwrap();
        assert_eq!(body, "grant_type=client_credentials");
    }

    #[test]
    fn revocation_body_names_the_token_and_its_type() {
        let mut buf = [0u8; 128];
        let public = ClientAuth::Public { client_id: "app" };
        let body = revocation_body(&mut buf, "r/1+", "refresh_token", &public).unwrap();
        assert_eq!(
            body,
            "token=r%2F1%2B&token_type_hint=refresh_token&client_id=app"
        );
        let mut short = [0u8; 8];
        assert_eq!(
            revocation_body(&mut short, "r", "refresh_token", &public),
            Err(GrantError::BufferTooSmall)
        );
    }
}
