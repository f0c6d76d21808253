//! Which responses mean "this access token was refused": 401 by default;
//! the statuses and a predicate of your own for backends that say it
//! otherwise (403, Laravel's 419, a JSON error code). And [`WithoutToken`],
//! for requests that must not carry the token at all.

use http::{HeaderMap, StatusCode};

/// Put in a request's extensions to send it without the token and outside
/// the session (public routes, the login call itself): no `Authorization`
/// header is added, a 401 is delivered as it is, and it goes out even while
/// logged out. With reqwest-middleware:
/// `client.get(url).with_extension(WithoutToken)`; with the ureq client:
/// `request.extensions_mut().insert(WithoutToken)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WithoutToken;

type Predicate = dyn Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync;

/// The most of a response's body a [`refresh_when`](crate::Builder::refresh_when) predicate is shown. A longer
/// body is not a refusal (the response is delivered whole).
pub const REFUSAL_BODY_LIMIT: usize = 64 * 1024;

/// How a response is judged: refused token or not.
pub(crate) struct Refusals {
    /// Statuses that may mean a refused token (401 by default).
    statuses: Vec<u16>,
    /// Asked for those statuses, with the body; `None`: every one is a refusal.
    predicate: Option<Box<Predicate>>,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals")
            .field("statuses", &self.statuses)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            statuses: vec![401],
            predicate: None,
        }
    }
}

/// What the session is told of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judged {
    /// As it is (a 401 among the statuses, or any status outside them
    /// but 401).
    AsItIs,
    /// A refused token: reported as a 401.
    Refused,
    /// A 401 the rules say is not about the token: delivered as it is
    /// (reported as from a hop that did not carry the token).
    NotAboutTheToken,
}

impl Refusals {
    pub(crate) fn set_statuses(&mut self, statuses: &[u16]) {
        self.statuses = statuses.to_vec();
    }

    pub(crate) fn set_predicate(
        &mut self,
        f: impl Fn(StatusCode, &HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) {
        self.predicate = Some(Box::new(f));
    }

    /// Whether the body must be read to judge a response with `status`.
    pub(crate) fn needs_body(&self, status: StatusCode) -> bool {
        self.predicate.is_some() && self.statuses.contains(&status.as_u16())
    }

    /// Judge a response; `body` is its first [`REFUSAL_BODY_LIMIT`] bytes
    /// when [`needs_body`](Self::needs_body) said so (`None`: longer).
    pub(crate) fn judge(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Judged {
        let listed = self.statuses.contains(&status.as_u16());
        let refused = listed
            && match &self.predicate {
                None => true,
                Some(f) => body.is_some_and(|b| f(status, headers, b)),
            };
        match (refused, status == StatusCode::UNAUTHORIZED) {
            (true, true) => Judged::AsItIs,
            (true, false) => Judged::Refused,
            (false, true) => Judged::NotAboutTheToken,
            (false, false) => Judged::AsItIs,
        }
    }

    /// The rules are the default: 401 and nothing else, no predicate.
    pub(crate) fn is_default(&self) -> bool {
        self.predicate.is_none() && self.statuses == [401]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(r: &Refusals, status: u16, body: Option<&[u8]>) -> Judged {
        r.judge(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body,
        )
    }

    #[test]
    fn statuses_and_predicate_decide_what_a_refusal_is() {
        let default = Refusals::default();
        assert_eq!(judge(&default, 401, None), Judged::AsItIs);
        assert_eq!(judge(&default, 403, None), Judged::AsItIs);
        assert!(default.is_default() && !default.needs_body(StatusCode::UNAUTHORIZED));

        let mut laravel = Refusals::default();
        laravel.set_statuses(&[401, 419]);
        assert_eq!(judge(&laravel, 419, None), Judged::Refused);
        assert_eq!(judge(&laravel, 401, None), Judged::AsItIs);
        assert_eq!(judge(&laravel, 403, None), Judged::AsItIs);

        let mut only_403 = Refusals::default();
        only_403.set_statuses(&[403]);
        assert_eq!(judge(&only_403, 403, None), Judged::Refused);
        assert_eq!(judge(&only_403, 401, None), Judged::NotAboutTheToken);

        let mut coded = Refusals::default();
        coded.set_statuses(&[401, 403]);
        coded.set_predicate(|_, _, body| body.windows(11).any(|w| w == b"jwt expired"));
        assert!(coded.needs_body(StatusCode::FORBIDDEN));
        assert!(!coded.needs_body(StatusCode::NOT_FOUND));
        let expired: &[u8] = br#"{"message":"jwt expired"}"#;
        let denied: &[u8] = br#"{"message":"admins only"}"#;
        assert_eq!(judge(&coded, 403, Some(expired)), Judged::Refused);
        assert_eq!(judge(&coded, 403, Some(denied)), Judged::AsItIs);
        assert_eq!(judge(&coded, 401, Some(expired)), Judged::AsItIs);
        assert_eq!(judge(&coded, 401, Some(denied)), Judged::NotAboutTheToken);
        // A body too long to show is not a refusal.
        assert_eq!(judge(&coded, 403, None), Judged::AsItIs);
    }
}
