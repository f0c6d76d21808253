//! What differs in a browser (wasm32-unknown-unknown): futures need not be
//! `Send` there (fetch's are not, and there is one thread), and std's clocks
//! trap, so time comes from `web-time` (std's own types everywhere else).

use std::future::Future;
use std::pin::Pin;

pub(crate) use web_time::{Instant, SystemTime, UNIX_EPOCH};

/// A boxed future the driver can hold across awaits: `Send` except in a
/// browser, where fetch's futures are not (and one thread runs them all).
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boxed future the driver can hold across awaits: `Send` except in a
/// browser, where fetch's futures are not (and one thread runs them all).
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// `Send`, except in a browser (wasm32-unknown-unknown), where every type is
/// one: the bound on the futures a [`Transport`](crate::Transport) returns.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub trait MaybeSend: Send {}
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Send`, except in a browser (wasm32-unknown-unknown), where every type is
/// one: the bound on the futures a [`Transport`](crate::Transport) returns.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub trait MaybeSend {}
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
impl<T: ?Sized> MaybeSend for T {}
