//! Test kit for refresh-machine: a strict loopback OAuth2 server and the
//! end-to-end scenario table every adapter runs.
//!
//! The server issues rotating refresh tokens and revokes the whole token family
//! when a spent one is presented again, as production servers with rotation do,
//! so a client that refreshes twice for one expiry loses its session here too.

pub mod endless;
pub mod redis_server;
pub mod server;
pub mod worker;

pub use endless::EndlessTokenEndpoint;
pub use server::{
    redirect_to, AuthServer, Backend, Counters, IssuedTokens, ResourceFault, ServerOptions,
    TokenFault,
};
pub mod scenarios;

pub use redis_server::RedisServer;
pub use scenarios::{together, AppBackend, Harness, Outcome, TestClient};
pub use worker::WorkerProcess;
