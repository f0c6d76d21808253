//! The interceptor nearly everyone writes by hand, as a reqwest middleware:
//! attach the token; on 401, refresh with the refresh token currently held,
//! store the new pair, retry once. No single flight, no knowledge of expiry.
//! It is what the benchmarks compare refresh-machine against.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::Extensions;
use reqwest::header::AUTHORIZATION;
use reqwest::{Request, Response, StatusCode};
use reqwest_middleware::{Middleware, Next};

/// The hand-written "refresh on 401 and retry once" middleware.
#[derive(Clone)]
pub struct NaiveInterceptor {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    /// (access token, refresh token).
    tokens: Mutex<(String, String)>,
    refreshes: AtomicU64,
}

impl std::fmt::Debug for NaiveInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NaiveInterceptor")
            .field("token_url", &self.inner.token_url)
            .field("refreshes", &self.refreshes())
            .finish_non_exhaustive()
    }
}

impl NaiveInterceptor {
    /// Refresh at `token_url` as the public client `client_id`.
    pub fn new(token_url: &str, client_id: &str) -> NaiveInterceptor {
        NaiveInterceptor {
            inner: Arc::new(Inner {
                http: reqwest::Client::new(),
                token_url: token_url.to_owned(),
                client_id: client_id.to_owned(),
                tokens: Mutex::new((String::new(), String::new())),
                refreshes: AtomicU64::new(0),
            }),
        }
    }

    /// Install a token pair.
    pub fn set_tokens(&self, access: &str, refresh: &str) {
        *self.lock() = (access.to_owned(), refresh.to_owned());
    }

    /// Refresh calls this interceptor has made.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (String, String)> {
        self.inner.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// POST the refresh grant; the new access token, or `None` if refused.
    async fn refresh(&self) -> Option<String> {
        let refresh_token = self.lock().1.clone();
        self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .inner
            .http
            .post(&self.inner.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&refresh_token={refresh_token}&client_id={}",
                self.inner.client_id
            ))
            .send()
            .await
            .ok()?;
        if resp.status() != StatusCode::OK {
            return None;
        }
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.ok()?).ok()?;
        let access = body.get("access_token")?.as_str()?.to_owned();
        let mut tokens = self.lock();
        tokens.0.clone_from(&access);
        if let Some(r) = body.get("refresh_token").and_then(|r| r.as_str()) {
            r.clone_into(&mut tokens.1);
        }
        Some(access)
    }
}

fn with_bearer(mut req: Request, token: &str) -> Request {
    if let Ok(v) = format!("Bearer {token}").parse() {
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    req
}

#[async_trait::async_trait]
impl Middleware for NaiveInterceptor {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let retry = req.try_clone();
        let access = self.lock().0.clone();
        let resp = next
            .clone()
            .run(with_bearer(req, &access), extensions)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let (Some(retry), Some(new_access)) = (retry, self.refresh().await) else {
            return Ok(resp);
        };
        next.run(with_bearer(retry, &new_access), extensions).await
    }
}
