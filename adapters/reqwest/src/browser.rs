//! In a browser (wasm32-unknown-unknown): a timer on `setTimeout`, and the
//! token-endpoint call made with `fetch` itself, which refuses redirects.
//!
//! reqwest's browser client leaves redirects to `fetch`, which follows a 307
//! from the token endpoint with the same form body, refresh token included,
//! to wherever it points. The token call here asks `fetch` for
//! `redirect: "error"` instead, reads at most the answer limit, and aborts
//! the fetch when the call is dropped (its deadline passed).

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use js_sys::{Reflect, Uint8Array};
use refresh_machine_driver::{BoxFuture, TokenAnswer};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use zeroize::Zeroize;

/// [`Timer`](crate::Timer) on the browser's clock (`setTimeout`, through
/// gloo-timers), in a page or a worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct BrowserTimer;

impl crate::Timer for BrowserTimer {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Whole milliseconds, rounded up: waking before a deadline only
            // means waiting again. `setTimeout` takes at most 2^31 - 1 ms.
            let mut left = duration.as_nanos().div_ceil(1_000_000);
            loop {
                let step = left.min(i32::MAX as u128);
                gloo_timers::future::TimeoutFuture::new(step as u32).await;
                left -= step;
                if left == 0 {
                    break;
                }
            }
        })
    }
}

/// The token endpoint could not be fetched: a network failure, a CORS
/// refusal, a redirect (refused: it would carry the refresh token
/// elsewhere), or an answer whose body could not be read. The browser tells
/// no more than that. A transient failure: the session is kept.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the token endpoint could not be fetched")]
#[non_exhaustive]
pub struct TokenFetchFailed;

/// Whatever the browser threw (a `TypeError` or an `AbortError`, which say
/// nothing more): [`TokenFetchFailed`].
fn failed<E>(_: E) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(TokenFetchFailed)
}

/// Aborts its fetch when dropped unfinished (the call's deadline passed).
struct AbortOnDrop(web_sys::AbortController);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One call to the token endpoint with `fetch`, redirects refused, at most
/// `limit` bytes of the answer read.
pub(crate) async fn token_fetch(
    request: http::Request<Vec<u8>>,
    limit: usize,
) -> Result<TokenAnswer, reqwest_middleware::Error> {
    let (parts, mut body) = request.into_parts();
    let init = web_sys::RequestInit::new();
    init.set_method(parts.method.as_str());
    init.set_redirect(web_sys::RequestRedirect::Error);
    init.set_cache(web_sys::RequestCache::NoStore);
    let headers = web_sys::Headers::new().map_err(failed)?;
    for (name, value) in &parts.headers {
        let value = value
            .to_str()
            .map_err(|_| reqwest_middleware::Error::middleware(TokenFetchFailed))?;
        headers.append(name.as_str(), value).map_err(failed)?;
    }
    init.set_headers(&headers);
    // The form holds the refresh token: its copy in JS memory is wiped once
    // the request has taken its own (a request copies a buffer body when
    // it is made), and this one at once.
    let form = (!body.is_empty()).then(|| Uint8Array::from(body.as_slice()));
    body.zeroize();
    if let Some(form) = &form {
        init.set_body(form);
    }
    let abort = AbortOnDrop(web_sys::AbortController::new().map_err(failed)?);
    init.set_signal(Some(&abort.0.signal()));
    let request = web_sys::Request::new_with_str_and_init(&parts.uri.to_string(), &init);
    if let Some(form) = &form {
        form.fill(0, 0, form.length());
    }
    let request = request.map_err(failed)?;
    let response: web_sys::Response = JsFuture::from(fetch(&request)?)
        .await
        .map_err(failed)?
        .dyn_into()
        .map_err(failed)?;
    let status = response.status();
    let headers = header_map(&response.headers())?;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = Vec::new();
    let body_too_large = match declared {
        Some(n) if n > limit as u64 => true,
        _ => match read_capped(&response, limit, &mut body).await {
            Ok(too_large) => too_large,
            Err(e) => {
                // Part of an answer that holds tokens.
                body.zeroize();
                return Err(e);
            }
        },
    };
    drop(abort);
    Ok(TokenAnswer {
        status,
        headers,
        body,
        body_too_large,
    })
}

/// `fetch` of the page or the worker this runs in.
fn fetch(request: &web_sys::Request) -> Result<js_sys::Promise, reqwest_middleware::Error> {
    let global = js_sys::global();
    if let Some(window) = global.dyn_ref::<web_sys::Window>() {
        return Ok(window.fetch_with_request(request));
    }
    if let Some(worker) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        return Ok(worker.fetch_with_request(request));
    }
    Err(reqwest_middleware::Error::middleware(TokenFetchFailed))
}

/// The headers `fetch` exposes (CORS: the safelisted ones and those the
/// server names in `Access-Control-Expose-Headers`).
fn header_map(headers: &web_sys::Headers) -> Result<HeaderMap, reqwest_middleware::Error> {
    let mut map = HeaderMap::new();
    let entries = js_sys::try_iter(headers)
        .map_err(failed)?
        .ok_or(reqwest_middleware::Error::middleware(TokenFetchFailed))?;
    for entry in entries {
        let entry: js_sys::Array = entry.map_err(failed)?.dyn_into().map_err(failed)?;
        let (Some(name), Some(value)) = (entry.get(0).as_string(), entry.get(1).as_string()) else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            map.append(name, value);
        }
    }
    Ok(map)
}

/// Read the body into `body`, chunk by chunk; `true` (and `body` wiped and
/// empty) when it is longer than `limit`, when the rest is not read.
async fn read_capped(
    response: &web_sys::Response,
    limit: usize,
    body: &mut Vec<u8>,
) -> Result<bool, reqwest_middleware::Error> {
    let Some(stream) = response.body() else {
        return Ok(false);
    };
    let reader: web_sys::ReadableStreamDefaultReader =
        stream.get_reader().dyn_into().map_err(failed)?;
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(failed)?;
        let done = Reflect::get(&chunk, &JsValue::from_str("done")).map_err(failed)?;
        if done.as_bool().unwrap_or(true) {
            return Ok(false);
        }
        let value: Uint8Array = Reflect::get(&chunk, &JsValue::from_str("value"))
            .map_err(failed)?
            .dyn_into()
            .map_err(failed)?;
        let len = value.length() as usize;
        if body.len() + len > limit {
            body.zeroize();
            body.clear();
            let _ = reader.cancel();
            return Ok(true);
        }
        let start = body.len();
        body.resize(start + len, 0);
        value.copy_to(&mut body[start..]);
    }
}
