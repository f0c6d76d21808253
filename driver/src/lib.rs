#![doc = include_str!("../README.md")]
mod builder;
mod capacity;
mod coordinator;
mod driver;
mod error;
mod exchange;
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
mod file_coordinator;
pub mod grant;
mod json_endpoint;
mod origin;
mod platform;
mod read_first;
pub mod redirect;
mod refusal;
mod secret;
mod session;
mod thread_mark;
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
mod token_file;
mod transport;

pub use builder::{BoxFuture, Builder, Options};
pub use capacity::{TokenCapacity, LARGE_TOKEN_CAP, TOKEN_CAP};
pub use coordinator::{ready, Coordinator, StoreCounters, Stored};
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use driver::block_on;
pub use driver::{Driver, DriverError};
pub use error::{ConfigError, Error, TokenError};
pub use event_listener;
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use file_coordinator::FileCoordinator;
pub use json_endpoint::JsonEndpoint;
pub use origin::{AllowedOrigin, InvalidOrigin, Origins};
pub use platform::MaybeSend;
pub use read_first::{read_ahead, ReadFirst};
pub use refresh_machine;
pub use refusal::{WithoutToken, REFUSAL_BODY_LIMIT};
pub use secret::Secret;
pub use session::{
    Hooks, RefreshReply, RefreshTicket, RequestHandle, Session, Start, Step, TokenPair, Waiter,
    CAPACITY, SLOT_WAIT,
};
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use token_file::TokenFile;
pub use transport::{Attempt, ReadAhead, Sent, TokenAnswer, Transport};

/// A jitter seed without a dependency: std's per-process random hasher keys
/// mixed with the time. Not for cryptography; only to de-synchronise clients.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(refresh_machine::StdClock::unix_now().unwrap_or(0));
    // In a browser std's hasher keys are constant: tabs opened in the same
    // second would draw the same jitter. The page's own generator there.
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    h.write_u64((js_sys::Math::random() * 9_007_199_254_740_992.0) as u64);
    h.finish()
}

/// Defines a client crate's handle: a cheap-to-clone newtype over
/// `Arc<Driver<T>>` that [`Builder::build`] returns (`From`), that derefs to
/// the [`Driver`] (session, `set_tokens`, `logout`, login) and whose `Debug`
/// shows the driver (never a token).
///
/// ```ignore
/// refresh_machine_driver::client_handle! {
///     /// A cloneable client; all clones share one session.
///     pub struct Client(UreqTransport);
/// }
/// ```
#[macro_export]
macro_rules! client_handle {
    ($(#[$meta:meta])* $vis:vis struct $name:ident($transport:ty);) => {
        $(#[$meta])*
        #[derive(Clone)]
        $vis struct $name {
            driver: ::std::sync::Arc<$crate::Driver<$transport>>,
        }

        impl ::core::convert::From<::std::sync::Arc<$crate::Driver<$transport>>> for $name {
            fn from(driver: ::std::sync::Arc<$crate::Driver<$transport>>) -> Self {
                $name { driver }
            }
        }

        impl ::core::ops::Deref for $name {
            type Target = $crate::Driver<$transport>;

            fn deref(&self) -> &Self::Target {
                &self.driver
            }
        }

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("driver", &self.driver)
                    .finish()
            }
        }
    };
}
