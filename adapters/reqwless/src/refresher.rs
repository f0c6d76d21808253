//! How the client gets new tokens: the RFC 6749 refresh-token grant at the
//! token endpoint ([`TokenEndpoint`], the default), or the firmware's own
//! exchange for a token service that is not RFC 6749 ([`Refresher`]).

use core::future::Future;

#[cfg(feature = "jwt")]
use core::time::Duration;
use embedded_nal_async::{Dns, TcpConnect};

use refresh_machine::grant::{
    classify_token_response_as, json_refresh_body, refresh_grant_body, ClientAuth, GrantError,
    TokenFormat, FORM_CONTENT_TYPE,
};
use refresh_machine::{RefreshOutcome, Response, TokenSet};
use reqwless::client::HttpClient;

use crate::{token_call, Endpoints, Error, TokenCallError, JSON_CONTENT_TYPE};

/// What a refresh has to work with. The client holds its deadline: the
/// exchange is abandoned (counted as a transient failure) when it passes.
pub struct RefreshCall<'c, 'a, T: TcpConnect, D: Dns> {
    /// The client's HTTP client (no requests of the client are in flight).
    pub http: &'c mut HttpClient<'a, T, D>,
    /// The client's endpoints and credentials.
    pub endpoints: &'c Endpoints<'a>,
    /// The refresh token to present (to the token service, nowhere else).
    pub refresh_token: &'c str,
    /// The client's scratch buffer, free for building the request.
    pub scratch: &'c mut [u8],
    /// Wall-clock Unix seconds, if the device knows them (for `Retry-After` dates).
    pub unix_now: Option<u64>,
}

impl<T: TcpConnect, D: Dns> core::fmt::Debug for RefreshCall<'_, '_, T, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RefreshCall")
            .field("endpoints", self.endpoints)
            .finish_non_exhaustive()
    }
}

/// A refresh's result: the outcome for the machine (tokens borrowed from
/// `rx`), and the error the caller gets if it ends the request (`None`: the
/// machine's own failure is reported).
#[derive(Debug)]
pub struct Refreshed<'rx> {
    /// What the token service said, as the machine takes it.
    pub outcome: RefreshOutcome<'rx>,
    /// A more precise error for the caller, if the request fails because of it.
    pub problem: Option<Error>,
}

impl<'rx> Refreshed<'rx> {
    /// The request did not fit the scratch buffer: never sent, so it says
    /// nothing about the grant.
    fn scratch_too_small() -> Self {
        Refreshed {
            outcome: RefreshOutcome::Misconfigured(None),
            problem: Some(Error::ScratchTooSmall),
        }
    }

    /// `outcome`, with no more precise error.
    pub fn new(outcome: RefreshOutcome<'rx>) -> Self {
        Refreshed {
            outcome,
            problem: None,
        }
    }
}

/// The exchange of a refresh token for new tokens.
///
/// Implement it for a token service that is not an RFC 6749 token endpoint
/// (a JSON API, a device-specific grant): read the answer into `rx` and
/// return the new tokens borrowed from it, `Rejected` only when the refresh
/// token is dead (the session ends), `Misconfigured` when the service
/// refused the client, `Unusable` when it answered success with nothing
/// usable (the refresh token presented may be spent), `Transient` for
/// anything worth trying again.
pub trait Refresher<'a, T: TcpConnect + 'a, D: Dns + 'a> {
    /// Perform one refresh.
    fn refresh<'rx>(
        &mut self,
        call: RefreshCall<'_, 'a, T, D>,
        rx: &'rx mut [u8],
    ) -> impl Future<Output = Refreshed<'rx>>;
}

/// The RFC 6749 refresh-token grant at [`Endpoints::token_url`] (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenEndpoint;

impl<'a, T: TcpConnect + 'a, D: Dns + 'a> Refresher<'a, T, D> for TokenEndpoint {
    async fn refresh<'rx>(
        &mut self,
        call: RefreshCall<'_, 'a, T, D>,
        rx: &'rx mut [u8],
    ) -> Refreshed<'rx> {
        let RefreshCall {
            http,
            endpoints,
            refresh_token,
            scratch,
            unix_now,
        } = call;
        let Ok(len) = refresh_grant_body(
            scratch,
            refresh_machine::RefreshToken::new(refresh_token),
            &endpoints.client,
            endpoints.scope,
        )
        .map(str::len) else {
            // Never sent: it says nothing about the grant.
            return Refreshed::scratch_too_small();
        };
        let answer = token_call(
            http,
            endpoints.token_url,
            &endpoints.client,
            FORM_CONTENT_TYPE,
            scratch,
            len,
            rx,
            unix_now,
        )
        .await;
        judge(answer, &TokenFormat::OAUTH2, scratch, unix_now)
    }
}

/// An app backend's JSON refresh route (the Express, NestJS and Spring JWT
/// backends of web tutorials): `POST url` with `{"<request_field>": ..}`,
/// answered with tokens under `format`'s names; a 401 or 403 ends the
/// session. [`JsonEndpoint::new`] takes the camelCase shape:
/// `{"refreshToken": ..}` in, `{"accessToken": .., "refreshToken": ..}` out.
#[derive(Clone, Copy, Debug)]
pub struct JsonEndpoint<'n> {
    /// The refresh route (absolute URL).
    pub url: &'n str,
    /// The request body's field for the refresh token.
    pub request_field: &'n str,
    /// The answer's field names and refusals.
    pub format: TokenFormat<'n>,
}

impl<'n> JsonEndpoint<'n> {
    /// The route at `url`, camelCase names ([`TokenFormat::CAMEL_CASE`]).
    pub const fn new(url: &'n str) -> Self {
        JsonEndpoint {
            url,
            request_field: TokenFormat::CAMEL_CASE.refresh_token,
            format: TokenFormat::CAMEL_CASE,
        }
    }
}

impl<'a, T: TcpConnect + 'a, D: Dns + 'a> Refresher<'a, T, D> for JsonEndpoint<'_> {
    async fn refresh<'rx>(
        &mut self,
        call: RefreshCall<'_, 'a, T, D>,
        rx: &'rx mut [u8],
    ) -> Refreshed<'rx> {
        let RefreshCall {
            http,
            refresh_token,
            scratch,
            unix_now,
            ..
        } = call;
        let token = refresh_machine::RefreshToken::new(refresh_token);
        let Ok(len) = json_refresh_body(scratch, self.request_field, token).map(str::len) else {
            return Refreshed::scratch_too_small();
        };
        let no_client_auth = ClientAuth::Public { client_id: "" };
        let answer = token_call(
            http,
            self.url,
            &no_client_auth,
            JSON_CONTENT_TYPE,
            scratch,
            len,
            rx,
            unix_now,
        )
        .await;
        judge(answer, &self.format, scratch, unix_now)
    }
}

/// A token call's result as the machine takes it, read in `format`. An
/// answer without a lifetime gets the `exp` claim of a JWT access token
/// (decoded in `scratch`, against `unix_now`) as one.
fn judge<'rx>(
    answer: Result<(Response, &'rx mut [u8]), TokenCallError>,
    format: &TokenFormat<'_>,
    scratch: &mut [u8],
    unix_now: Option<u64>,
) -> Refreshed<'rx> {
    let (answer, body) = match answer {
        Ok(answered) => answered,
        // Judged by status first: a 5xx (or any non-200) that did not fit
        // is an error page, transient like any other.
        Err(TokenCallError::TooLarge(Some(status))) if status != 200 => {
            return Refreshed::new(RefreshOutcome::Transient { retry_after: None })
        }
        // A 200 (or an unknown status) that did not fit: the server may
        // have rotated the refresh token, so presenting the old one again
        // would look like reuse. The session is over; say why.
        Err(TokenCallError::TooLarge(_)) => {
            return Refreshed {
                outcome: RefreshOutcome::Unusable {
                    refresh_token: None,
                },
                problem: Some(Error::TokenResponseTooLarge),
            }
        }
        // The Basic header did not fit: never sent, as above.
        Err(TokenCallError::Scratch) => return Refreshed::scratch_too_small(),
        Err(TokenCallError::Transport) => {
            return Refreshed::new(RefreshOutcome::Transient { retry_after: None })
        }
    };
    let mut classified =
        classify_token_response_as(answer.status, body, answer.retry_after, format);
    if let RefreshOutcome::Success(set) = &mut classified.outcome {
        with_jwt_expiry(set, scratch, unix_now);
    }
    let problem = match (classified.problem, &classified.outcome) {
        (Some(GrantError::OAuth(code)), RefreshOutcome::Rejected) => {
            Some(Error::RefreshRejected(code))
        }
        _ => None,
    };
    Refreshed {
        outcome: classified.outcome,
        problem,
    }
}

/// With the `jwt` feature off: nothing.
#[cfg(not(feature = "jwt"))]
pub(crate) fn with_jwt_expiry(_: &mut TokenSet<'_>, _: &mut [u8], _: Option<u64>) {}

/// Without a lifetime, a JWT access token's own (`exp - iat`, or `exp`
/// against the wall clock: [`refresh_machine::jwt::lifetime`]), as a hint;
/// nothing for an opaque token.
#[cfg(feature = "jwt")]
pub(crate) fn with_jwt_expiry(set: &mut TokenSet<'_>, scratch: &mut [u8], unix_now: Option<u64>) {
    if set.expires_in.is_some() {
        return;
    }
    let token = set.access_token.expose_secret();
    if let Some(lifetime) = refresh_machine::jwt::lifetime(token, scratch, unix_now) {
        set.expires_in = Some(Duration::from_secs(lifetime));
    }
}
