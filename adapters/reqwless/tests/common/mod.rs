//! What the reqwless test binaries share: the test clock and the parts a
//! client borrows.
#![allow(dead_code)] // each test binary uses its own part

use std::cell::Cell;
use std::time::Duration;

use refresh_machine::grant::ClientAuth;
use refresh_machine::{Config, Instant};
use refresh_machine_reqwless::reqwless::client::HttpClient;
use refresh_machine_reqwless::{Client, Clock, Endpoints};
use refresh_machine_test_server::AuthServer;
use std_embedded_nal_async::Stack;

/// Token capacity of the test clients.
pub(crate) const CAP: usize = 128;

pub(crate) struct TestClock<'a> {
    pub(crate) epoch: std::time::Instant,
    pub(crate) offset: &'a Cell<Duration>,
    /// Its wall time at `epoch`, in Unix seconds.
    pub(crate) unix_at_epoch: u64,
}

/// The test clock's wall time at its epoch (a device that knows the time).
pub(crate) const UNIX_AT_EPOCH: u64 = 1_800_000_000;

impl Clock for TestClock<'_> {
    fn now(&self) -> Instant {
        Instant::from_duration(self.epoch.elapsed() + self.offset.get())
    }

    fn unix_now(&self) -> Option<u64> {
        Some(self.unix_at_epoch + (self.epoch.elapsed() + self.offset.get()).as_secs())
    }

    async fn sleep_until(&mut self, deadline: Instant) {
        let wait = deadline.saturating_duration_since(self.now());
        if !wait.is_zero() {
            async_io::Timer::after(wait).await;
        }
    }
}

/// What a client borrows, owned by the test.
pub(crate) struct Parts {
    stack: Stack,
    origin: String,
    token_url: String,
    client_id: String,
    scratch: Vec<u8>,
    /// The clock's wall time starts at the real time, not [`UNIX_AT_EPOCH`]
    /// (to read the `exp` of the server's JWTs).
    real_wall_clock: bool,
}

impl Parts {
    pub(crate) fn new(server: &AuthServer, scratch_len: usize) -> Parts {
        Parts {
            stack: Stack::default(),
            origin: server.origin(),
            token_url: server.token_url(),
            client_id: server.options().client_id.clone(),
            scratch: vec![0u8; scratch_len],
            real_wall_clock: false,
        }
    }

    /// The clients' wall clocks start at the real time.
    pub(crate) fn with_real_wall_clock(mut self) -> Parts {
        self.real_wall_clock = true;
        self
    }

    /// A logged-out client whose clock starts now (a fresh boot), `offset` ahead.
    pub(crate) fn client<'p>(
        &'p mut self,
        offset: &'p Cell<Duration>,
        config: Config,
    ) -> Client<'p, Stack, Stack, TestClock<'p>, CAP> {
        let endpoints = Endpoints {
            api_origin: &self.origin,
            token_url: &self.token_url,
            client: ClientAuth::Public {
                client_id: &self.client_id,
            },
            scope: None,
        };
        let unix_at_epoch = if self.real_wall_clock {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("a clock after 1970")
                .as_secs()
        } else {
            UNIX_AT_EPOCH
        };
        let clock = TestClock {
            epoch: std::time::Instant::now(),
            offset,
            unix_at_epoch,
        };
        Client::new(
            HttpClient::new(&self.stack, &self.stack),
            clock,
            endpoints,
            config,
            42,
            &mut self.scratch,
        )
        .with_request_timeout(Duration::from_secs(10))
    }
}
