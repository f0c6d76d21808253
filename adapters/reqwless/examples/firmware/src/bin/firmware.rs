//! A sensor posting readings to an OAuth2-protected API, surviving token
//! expiry with no heap: the whole client (refresh-machine + reqwless adapter +
//! reqwless) in one image, with every buffer a static-sized array.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::hint::black_box;

use panic_halt as _;
use refresh_machine::grant::ClientAuth;
use refresh_machine::Config;
use refresh_machine_firmware_example::{block_on, Link, Ticks};
use refresh_machine_reqwless::reqwless::client::HttpClient;
use refresh_machine_reqwless::{
    scratch_len, token_response_rx_len, Client, Endpoints, Request, SavedTokens, TokenStore,
};

/// Token capacity: enough for typical opaque tokens and small JWTs.
const TOKEN_CAP: usize = 1024;

/// Where the tokens live across power cycles (a flash page on a real board).
struct Flash;

impl TokenStore for Flash {
    async fn save(&mut self, tokens: Option<SavedTokens<'_>>) {
        // Write the tokens and their Unix-time expiries here; erase on `None`.
        black_box(tokens.map(|t| (t.access_token.len(), t.expires_at)));
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let link = Link::default();
    let ticks = Ticks::default();
    // Sized for two full-size tokens in a token response ("sensor-7": 8 bytes).
    let mut scratch = [0u8; scratch_len(TOKEN_CAP, 8)];
    let mut rx = [0u8; token_response_rx_len(TOKEN_CAP)];
    let endpoints = Endpoints {
        api_origin: "http://10.0.0.2:8080",
        token_url: "http://10.0.0.2:8080/oauth/token",
        client: ClientAuth::Public {
            client_id: "sensor-7",
        },
        scope: None,
    };
    let client: Client<'_, Link, Link, &Ticks, TOKEN_CAP> = Client::new(
        HttpClient::new(&link, &link),
        &ticks,
        endpoints,
        Config::DEFAULT,
        black_box(0x5eed),
        &mut scratch,
    );
    // Every token change is saved before anything else goes out.
    let mut client = client.with_token_store(Flash);
    // Tokens provisioned at the factory (or read back from flash).
    let _ = client.restore_tokens(SavedTokens {
        access_token: black_box("at-1"),
        refresh_token: Some(black_box("rt-1")),
        expires_at: black_box(None),
        refresh_expires_at: None,
    });
    loop {
        let reading = black_box(b"{\"celsius\":21.5}");
        let sent = block_on(client.send(Request::post_json("/api/readings", reading), &mut rx));
        black_box(sent.map(|r| r.status).ok());
    }
}
