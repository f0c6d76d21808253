//! How long a token the session holds, chosen when the client is built.
//!
//! The core holds tokens in fixed buffers (a const parameter, no heap). The
//! std session picks one of two machines at run time, so that neither the
//! session nor any type built on it carries the choice in its type.

use refresh_machine::{
    Action, Config, Error, Instant, RefreshId, RefreshMachine, RefreshOutcome, RequestId,
    RequestSpec, Response, SendErrorKind, SessionState, Snapshot, StoredTokens, TokenSet,
};

use crate::session::CAPACITY;

/// Largest token the session holds, in bytes, by default: large JWTs (many
/// group claims) run past 4 KiB, and 16 KiB is what common servers accept
/// in a header (nginx and Apache allow 8 KiB per header line, Node.js and
/// IIS 16 KiB for all headers). Two such buffers cost 32 KiB per session.
pub const TOKEN_CAP: usize = 16 * 1024;

/// Largest token with [`TokenCapacity::Large`], in bytes (two buffers: 128 KiB
/// per session), for servers configured to accept such headers.
pub const LARGE_TOKEN_CAP: usize = 64 * 1024;

/// How long a token the session can hold. A longer one from a login is
/// `TokenError::TooLarge`; from a refresh, the session cannot keep it (the
/// request fails with that error; a rotated refresh token that does not fit
/// ends the session, since the old one is spent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenCapacity {
    /// [`TOKEN_CAP`] bytes (16 KiB).
    #[default]
    Standard,
    /// [`LARGE_TOKEN_CAP`] bytes (64 KiB).
    Large,
}

impl TokenCapacity {
    /// The capacity in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            TokenCapacity::Standard => TOKEN_CAP,
            TokenCapacity::Large => LARGE_TOKEN_CAP,
        }
    }

    /// The most of a token-endpoint answer the client reads with this
    /// capacity: four tokens' worth (an access, a refresh and an ID token of
    /// full size, and the JSON around them). 64 KiB for the standard
    /// capacity ([`MAX_TOKEN_RESPONSE`](crate::grant::MAX_TOKEN_RESPONSE)),
    /// 256 KiB for the large one.
    pub const fn token_response_limit(self) -> usize {
        4 * self.bytes()
    }
}

/// The session's machine, in the chosen capacity (boxed: its buffers are
/// large, and the session lives behind an `Arc` anyway).
#[derive(Debug)]
pub(crate) enum Machine {
    Standard(Box<RefreshMachine<CAPACITY, TOKEN_CAP>>),
    Large(Box<RefreshMachine<CAPACITY, LARGE_TOKEN_CAP>>),
}

/// Methods of the machine the session uses, forwarded to whichever it is.
macro_rules! forward {
    () => {};
    (fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; $($rest:tt)*) => {
        impl Machine {
            pub(crate) fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    Machine::Standard(m) => m.$name($($arg),*),
                    Machine::Large(m) => m.$name($($arg),*),
                }
            }
        }
        forward!($($rest)*);
    };
    (fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty; $($rest:tt)*) => {
        impl Machine {
            pub(crate) fn $name(&mut self $(, $arg: $ty)*) -> $ret {
                match self {
                    Machine::Standard(m) => m.$name($($arg),*),
                    Machine::Large(m) => m.$name($($arg),*),
                }
            }
        }
        forward!($($rest)*);
    };
}

forward! {
    fn login(&mut self, now: Instant, tokens: TokenSet<'_>) -> Result<(), Error>;
    fn logout(&mut self, now: Instant) -> ();
    fn tokens(&self) -> Option<StoredTokens<'_>>;
    fn config(&self) -> &Config;
    fn session(&self) -> SessionState;
    fn snapshot(&self) -> Snapshot;
    fn start_request(&mut self, now: Instant, spec: RequestSpec) -> Result<RequestId, Error>;
    fn cancel(&mut self, id: RequestId) -> Result<(), Error>;
    fn handle_timeout(&mut self, now: Instant) -> ();
    fn handle_response(&mut self, now: Instant, id: RequestId, response: Response) -> Result<(), Error>;
    fn handle_send_error(&mut self, now: Instant, id: RequestId, kind: SendErrorKind) -> Result<(), Error>;
    fn handle_refresh_outcome(&mut self, now: Instant, id: RefreshId, outcome: RefreshOutcome<'_>) -> Result<(), Error>;
    fn poll_notice(&mut self) -> Option<Action<'_>>;
    fn poll_refresh(&mut self) -> Option<Action<'_>>;
    fn poll_request(&mut self, id: RequestId) -> Result<Option<Action<'_>>, Error>;
    fn poll_timeout(&self) -> Option<Instant>;
}

impl Machine {
    /// The capacity it was made with.
    pub(crate) fn capacity(&self) -> TokenCapacity {
        match self {
            Machine::Standard(_) => TokenCapacity::Standard,
            Machine::Large(_) => TokenCapacity::Large,
        }
    }

    pub(crate) fn new(capacity: TokenCapacity, config: Config, seed: u64) -> Machine {
        match capacity {
            TokenCapacity::Standard => {
                Machine::Standard(Box::new(RefreshMachine::new(config, seed)))
            }
            TokenCapacity::Large => Machine::Large(Box::new(RefreshMachine::new(config, seed))),
        }
    }
}
