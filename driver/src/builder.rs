//! One builder for every std client: token endpoint or custom refresher,
//! allowed origins, limits, hooks. A client crate provides the transport.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use refresh_machine::Config;

use crate::capacity::TokenCapacity;
use crate::coordinator::Coordinator;
use crate::driver::{Driver, SharedSession};
use crate::error::ConfigError;
use crate::exchange::InFlight;
use crate::grant::TokenEndpoint;
use crate::json_endpoint::JsonEndpoint;
use crate::refusal::Refusals;
use crate::session::{Hooks, RefreshReply, Session};
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
use crate::token_file::TokenFile;
use crate::transport::Transport;
use crate::{MaybeSend, Origins, Secret};
use std::sync::atomic::AtomicU64;

pub use crate::platform::BoxFuture;

type CustomRefresh = dyn Fn(Secret) -> BoxFuture<'static, RefreshReply> + Send + Sync;

/// How the session gets new tokens.
pub(crate) enum Refresher {
    /// The RFC 6749 refresh-token grant at a token endpoint.
    Endpoint(TokenEndpoint),
    /// An app backend's JSON refresh route.
    Json(JsonEndpoint),
    /// The client-credentials grant, repeated (machine to machine).
    ClientCredentials(TokenEndpoint),
    /// The application's own function.
    Custom(Box<CustomRefresh>),
    /// None configured: a refresh is a rejection (the user logs in again).
    None,
}

/// Options shared by every client, read by [`Transport::configure`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Timeout for each attempt of a request (the client's default when `None`).
    pub timeout: Option<Duration>,
    /// The most of a token-endpoint answer to read, in bytes (from the
    /// session's [`TokenCapacity`]); a longer one is judged by its status.
    pub token_response_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: None,
            token_response_limit: crate::grant::MAX_TOKEN_RESPONSE,
        }
    }
}

/// Builds a client around a [`Transport`].
pub struct Builder<T> {
    config: Config,
    origins: Origins,
    refresher: Refresher,
    hooks: Hooks,
    seed: Option<u64>,
    options: Options,
    token_capacity: TokenCapacity,
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    token_file: Option<(TokenFile, Option<crate::TokenPair>)>,
    refusals: Refusals,
    shared: Option<Arc<SharedSession>>,
    coordinator: Option<Arc<dyn Coordinator>>,
    transport: T,
}

impl<T> std::fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("origins", &self.origins)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Builder<T> {
    /// A builder for clients on `transport`.
    pub fn new(transport: T) -> Self {
        Builder {
            config: Config::DEFAULT,
            origins: Origins::new(),
            refresher: Refresher::None,
            hooks: Hooks::default(),
            seed: None,
            options: Options::default(),
            token_capacity: TokenCapacity::Standard,
            #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
            token_file: None,
            refusals: Refusals::default(),
            shared: None,
            coordinator: None,
            transport,
        }
    }

    /// Refresh with the RFC 6749 refresh-token grant at `url` as a public client.
    /// The token endpoint's origin does not receive the access token unless allowed.
    pub fn token_endpoint(mut self, url: &str, client_id: &str) -> Result<Self, ConfigError> {
        let endpoint =
            TokenEndpoint::new(url, client_id).map_err(|_| ConfigError::InvalidTokenEndpoint)?;
        self.refresher = Refresher::Endpoint(endpoint);
        Ok(self)
    }

    /// Refresh at an app backend's JSON route (`POST url` with
    /// `{"refreshToken": ..}`, answered `{"accessToken": .., "refreshToken": ..}`):
    /// the Express, NestJS and Spring JWT backends of web tutorials. Other
    /// names, or the token in a header: [`json_endpoint_with`](Self::json_endpoint_with).
    /// The route's origin does not receive the access token unless allowed.
    ///
    /// A 401 or 403 from the refresh route ends the session (that is how
    /// such backends refuse a refresh token); so would a firewall's or a
    /// CDN's 403 page in front of it. 5xx and 429 are outages.
    pub fn json_endpoint(self, url: &str) -> Result<Self, ConfigError> {
        let endpoint = JsonEndpoint::new(url).map_err(|_| ConfigError::InvalidTokenEndpoint)?;
        Ok(self.json_endpoint_with(endpoint))
    }

    /// Refresh at an app backend's JSON route described in full.
    pub fn json_endpoint_with(mut self, endpoint: JsonEndpoint) -> Self {
        self.refresher = Refresher::Json(endpoint);
        self
    }

    /// A confidential client: the secret is sent as HTTP Basic (RFC 6749 §2.3.1).
    /// Call after [`token_endpoint`](Self::token_endpoint).
    pub fn client_secret(mut self, secret: &str) -> Self {
        if let Refresher::Endpoint(e) = self.refresher {
            self.refresher = Refresher::Endpoint(e.with_client_secret(secret));
        }
        self
    }

    /// Machine to machine: tokens from the client-credentials grant
    /// (RFC 6749 §4.4) at `url`, the client authenticated with HTTP Basic.
    /// There is no user, no login and no refresh token: the session starts
    /// with no token, the first request gets one (a burst of first requests
    /// waits for one grant), and an expired or refused token is replaced by
    /// repeating the grant, with the rules of a refresh (one at a time,
    /// backoff, stale 401s, an outage that fails requests
    /// `RefreshUnavailable` and keeps trying). A rejected client
    /// (`invalid_client`) fails requests `RefreshMisconfigured`. After an
    /// explicit `logout()` the client stays logged out (requests fail
    /// `LoggedOut`): build a new one to start again.
    pub fn client_credentials(
        mut self,
        url: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Self, ConfigError> {
        let endpoint =
            TokenEndpoint::new(url, client_id).map_err(|_| ConfigError::InvalidTokenEndpoint)?;
        self.refresher = Refresher::ClientCredentials(endpoint.with_client_secret(client_secret));
        Ok(self)
    }

    /// Revoke the tokens at the server when the app logs out
    /// ([`Driver::logout_and_revoke`](crate::Driver::logout_and_revoke)): at an RFC 7009 revocation endpoint
    /// with the token endpoint's client authentication (after
    /// [`token_endpoint`](Self::token_endpoint) or
    /// [`client_credentials`](Self::client_credentials)), or at an app
    /// backend's logout route with the refresh token as its refresh route
    /// takes it (after [`json_endpoint`](Self::json_endpoint)). Without a
    /// token endpoint or JSON route to go with it, `NoTokenEndpoint`.
    pub fn revocation_endpoint(mut self, url: &str) -> Result<Self, ConfigError> {
        let invalid = |_| ConfigError::InvalidTokenEndpoint;
        self.refresher = match self.refresher {
            Refresher::Endpoint(e) => Refresher::Endpoint(e.with_revocation(url).map_err(invalid)?),
            Refresher::ClientCredentials(e) => {
                Refresher::ClientCredentials(e.with_revocation(url).map_err(invalid)?)
            }
            Refresher::Json(e) => Refresher::Json(e.with_logout_route(url).map_err(invalid)?),
            Refresher::Custom(_) | Refresher::None => return Err(ConfigError::NoTokenEndpoint),
        };
        Ok(self)
    }

    /// Ask the token endpoint for this scope (the refresh-token and the
    /// client-credentials grants).
    pub fn scope(mut self, scope: &str) -> Self {
        self.refresher = match self.refresher {
            Refresher::Endpoint(e) => Refresher::Endpoint(e.with_scope(scope)),
            Refresher::ClientCredentials(e) => Refresher::ClientCredentials(e.with_scope(scope)),
            other => other,
        };
        self
    }

    /// Refresh with your own blocking function instead; it is given the
    /// refresh token (for a blocking client such as ureq's).
    pub fn refresh_with(
        mut self,
        f: impl Fn(&Secret) -> RefreshReply + Send + Sync + 'static,
    ) -> Self {
        self.refresher = Refresher::Custom(Box::new(move |token: Secret| {
            let reply = f(&token);
            Box::pin(std::future::ready(reply))
        }));
        self
    }

    /// Refresh with your own async function instead; it is given the refresh
    /// token (for an async client such as the reqwest middleware).
    pub fn refresh_with_async<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Secret) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = RefreshReply> + MaybeSend + 'static,
    {
        self.refresher = Refresher::Custom(Box::new(move |token: Secret| Box::pin(f(token))));
        self
    }

    /// Attach the token to requests for this origin (scheme, host and port of `url`).
    pub fn allow_origin(mut self, url: &str) -> Result<Self, ConfigError> {
        self.origins.allow(url)?;
        Ok(self)
    }

    /// Retry, backoff and refresh limits.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The longest token the session holds: [`TokenCapacity::Standard`]
    /// (16 KiB, the default) or [`TokenCapacity::Large`] (64 KiB).
    pub fn token_capacity(mut self, capacity: TokenCapacity) -> Self {
        self.token_capacity = capacity;
        self
    }

    /// Timeout for each attempt of a request (default: the client's own).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Called when the tokens change (store them) and when login is required.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// The statuses that mean "the access token was refused" (default
    /// `[401]`): for example `&[401, 419]` for Laravel, `&[403]` for a
    /// backend that answers an expired token with 403. A 401 left out is
    /// delivered as it is, without a refresh.
    pub fn refresh_on_statuses(mut self, statuses: &[u16]) -> Self {
        self.refusals.set_statuses(statuses);
        self
    }

    /// Ask `f` whether a response with one of the
    /// [`refresh_on_statuses`](Self::refresh_on_statuses) is a refused token,
    /// given its status, headers and body (for a JSON error code, such as
    /// `{"code": "TOKEN_EXPIRED"}`); `false` delivers it as it is. Only those
    /// responses are read ahead, up to [`REFUSAL_BODY_LIMIT`](crate::REFUSAL_BODY_LIMIT)
    /// bytes (a longer body is not a refusal); the response is delivered
    /// with its body whole either way.
    pub fn refresh_when(
        mut self,
        f: impl Fn(http::StatusCode, &http::HeaderMap, &[u8]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.refusals.set_predicate(f);
        self
    }

    /// Keep the tokens in the file at `path` across restarts: the pair in
    /// it (if any) starts the session, every change is written to it
    /// (atomically: a temporary file flushed and renamed over it; readable
    /// by its owner only on Unix), logout and a lost session remove it.
    /// Also calls your [`Hooks::persist`], if any. For one process per file.
    ///
    /// A file that exists but cannot be read, or is not such a pair, is
    /// [`ConfigError::TokenFile`]; a failed write later is kept for
    /// [`TokenFile::last_error`] and the session goes on.
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    pub fn token_file(mut self, path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let file = TokenFile::new(path.as_ref());
        let tokens = file.load().map_err(|e| ConfigError::TokenFile(e.kind()))?;
        self.token_file = Some((file, tokens));
        Ok(self)
    }

    /// Share the session of `other`, a client of any kind (a ureq client
    /// and a reqwest middleware in one process, say): one machine, one
    /// refresh at a time for both, a refresh started by either driven and
    /// picked up by both, one login and one logout. The session's
    /// configuration, hooks, token capacity and token file are `other`'s:
    /// those set on this builder are not used. Each client keeps its own
    /// allowed origins, refusal rules and refresher; give both the same
    /// refresher (whichever client meets the expiry first performs it).
    pub fn share_session<U>(mut self, other: &Driver<U>) -> Self {
        self.shared = Some(Arc::clone(other.shared_session()));
        self
    }

    /// Share the credential with other processes through `store` (a
    /// [`FileCoordinator`](crate::FileCoordinator) for the processes of one
    /// machine): one refresh per expiry across all of them. The session
    /// starts from the store's pair; a login or logout here is published to
    /// the store; a refresh first adopts a newer pair another process
    /// published, else refreshes under the store's lease and publishes its
    /// own (the core's [`coordination`](refresh_machine::coordination)
    /// protocol). A request with a valid token never touches the store. Use
    /// it instead of [`token_file`](Self::token_file), not with it.
    pub fn coordinated_by(mut self, store: impl Coordinator) -> Self {
        self.coordinator = Some(Arc::new(store));
        self
    }

    /// Fix the jitter seed (tests). By default it comes from the OS's hasher keys.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// A session of its own, from this builder's configuration, hooks and
    /// token file.
    fn new_session(&mut self) -> Arc<SharedSession> {
        let seed = self.seed.unwrap_or_else(crate::random_seed);
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        let (token_file, stored) = match self.token_file.take() {
            Some((file, stored)) => (Some(Arc::new(file)), stored),
            None => (None, None),
        };
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        if let Some(file) = &token_file {
            let (file, yours) = (Arc::clone(file), self.hooks.persist.take());
            self.hooks.persist = Some(Box::new(move |tokens| {
                file.store(tokens);
                if let Some(yours) = &yours {
                    yours(tokens);
                }
            }));
        }
        let mut session = Session::with_token_capacity(
            self.config,
            seed,
            std::mem::take(&mut self.hooks),
            self.token_capacity,
        );
        if matches!(self.refresher, Refresher::ClientCredentials(_)) {
            session = session.renewed_by_grant();
        }
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        if let (Some(stored), Some(file)) = (stored, &token_file) {
            if session.login(&stored).is_err() {
                file.set_error(std::io::ErrorKind::InvalidData);
            }
        }
        let shared = Arc::new(SharedSession {
            session,
            exchange: InFlight::default(),
            #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
            token_file,
            coordinator: self.coordinator.take(),
            generation: Arc::new(AtomicU64::new(0)),
        });
        if let Some(store) = &shared.coordinator {
            // The store's pair starts the session (a store that cannot be
            // read: logged out until a login or the next refresh's read).
            if let Some(Ok(stored)) = crate::driver::store_now(store.read()) {
                shared.adopt(&stored);
            }
        }
        shared
    }

    /// The client.
    pub fn build(mut self) -> T::Client {
        if let Some(shared) = &self.shared {
            // Token answers are read up to the shared session's capacity.
            self.token_capacity = shared.session.token_capacity();
        }
        self.options.token_response_limit = self.token_capacity.token_response_limit();
        self.transport.configure(&self.options);
        let shared = match self.shared.take() {
            Some(shared) => shared,
            None => self.new_session(),
        };
        T::Client::from(Arc::new(Driver {
            shared,
            refusals: self.refusals,
            origins: self.origins,
            refresher: Arc::new(self.refresher),
            transport: Arc::new(self.transport),
        }))
    }
}
