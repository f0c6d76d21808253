//! The seam between the drive loop and an HTTP client.
//!
//! A client crate implements [`Transport`] once (how to wait, how to call the
//! token endpoint, how to read a response's head) and [`Attempt`] per request
//! (how to send it once with a token). The drive loop is written once, as
//! async code: an async client awaits it; a blocking client's futures never
//! pend, so [`block_on`](crate::block_on) runs it to completion on the
//! calling thread.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use refresh_machine::SendErrorKind;

use crate::builder::Options;
use crate::driver::Driver;
use crate::session::Waiter;
use crate::{BoxFuture, MaybeSend, Secret};

/// An HTTP client as the drive loop needs it.
pub trait Transport: Sized + Send + Sync + 'static {
    /// A response as the client returns it.
    type Response;
    /// The client's transport error.
    type Error;
    /// What a failure keeps of the response that caused it ([`Error`](crate::Error)'s `R`).
    type Detail;
    /// The client type users hold, built around the shared driver.
    type Client: From<Arc<Driver<Self>>>;

    /// Apply the builder's options before the client is built (e.g. timeouts).
    fn configure(&mut self, options: &Options) {
        let _ = options;
    }

    /// Status and headers of a response.
    fn head(response: &Self::Response) -> (StatusCode, &HeaderMap);

    /// What a failure keeps of a response.
    fn detail(response: Self::Response) -> Self::Detail;

    /// How a transport error counts for the retry rules.
    fn error_kind(error: &Self::Error) -> SendErrorKind;

    /// The body of `response`, if it is at most `limit` bytes (`None` when
    /// longer), and the response to deliver, body still whole. Only called
    /// for responses a refusal predicate must see
    /// ([`Builder::refresh_when`](crate::Builder::refresh_when)).
    fn read_body(
        response: Self::Response,
        limit: usize,
    ) -> impl Future<Output = Result<ReadAhead<Self::Response>, Self::Error>>;

    /// Sleep for `duration` (a blocking client blocks the thread): the
    /// bounded re-check of a coordinated refresh waiting for another process.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + MaybeSend;

    /// Park until the session changes or the waiter's deadline passes
    /// (a blocking client blocks the thread here).
    fn wait(&self, waiter: Waiter) -> impl Future<Output = ()> + MaybeSend;

    /// Run `task` (a refresh exchange) in the background, on the runtime
    /// this client's futures need, or hand it back (`Err`) to be run by
    /// the requests that poll it (the default, right for a blocking client,
    /// whose exchange finishes in the request that starts it). Every client
    /// of a shared session ([`Builder::share_session`](crate::Builder::share_session))
    /// polls the exchange; spawned, it never runs on another client's
    /// thread (a blocking client polls outside any runtime, where reqwest's
    /// futures cannot run), and the waiting requests are woken when it
    /// ends, whoever is left to wait for it.
    fn spawn(&self, task: BoxFuture<'static, ()>) -> Result<(), BoxFuture<'static, ()>> {
        Err(task)
    }

    /// One call to the token endpoint: send `request` (a form POST built by
    /// [`TokenEndpoint`](crate::grant::TokenEndpoint)), give up after `timeout`,
    /// and read the whole answer.
    ///
    /// A refresh's call may be left unpolled for a while (every request
    /// waiting for it was dropped) and picked up later: an answer that
    /// arrived meanwhile must win over the timeout that passed meanwhile.
    fn token_call(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<TokenAnswer, Self::Error>> + MaybeSend;
}

/// One request, sent as many times as the session decides.
pub trait Attempt<T: Transport> {
    /// Send the request once with `Authorization: Bearer <token>`, following
    /// redirects as the client does, never carrying the token to another origin.
    fn send(&mut self, token: &Secret)
        -> impl Future<Output = Result<Sent<T::Response>, T::Error>>;
}

/// A response whose body was read ahead ([`Transport::read_body`]).
#[derive(Debug)]
pub struct ReadAhead<R> {
    /// The response, its body still whole.
    pub response: R,
    /// The body, when at most the limit asked for.
    pub body: Option<Vec<u8>>,
}

/// The response to one attempt.
#[derive(Debug)]
pub struct Sent<R> {
    /// The final response (after redirects).
    pub response: R,
    /// Whether the hop that produced it carried the token: a 401 from a hop
    /// without it says nothing about the token.
    pub token_sent: bool,
}

/// A token endpoint's answer, read whole. Its body holds tokens: `Debug`
/// shows only the status and the body's length.
pub struct TokenAnswer {
    /// HTTP status.
    pub status: u16,
    /// Response headers (`Retry-After` is read from them).
    pub headers: HeaderMap,
    /// The body, read up to [`MAX_TOKEN_RESPONSE`](crate::grant::MAX_TOKEN_RESPONSE) bytes.
    pub body: Vec<u8>,
    /// The body was longer than that and was not read further: the answer
    /// is judged by its status alone.
    pub body_too_large: bool,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .field("body_too_large", &self.body_too_large)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::TokenAnswer;

    #[test]
    fn a_token_answer_never_prints_its_body() {
        let answer = TokenAnswer {
            status: 200,
            headers: http::HeaderMap::new(),
            body: br#"{"access_token":"SECRET-A","refresh_token":"SECRET-R"}"#.to_vec(),
            body_too_large: false,
        };
        let shown = format!("{answer:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("200"), "{shown}");
    }
}
