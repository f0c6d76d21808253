//! The example page's app (`index.html`): an API client that survives
//! access-token expiry in a browser. Build it with `bash browser/run`, or by
//! hand: `cargo build -p refresh-machine-browser --target wasm32-unknown-unknown --release`
//! then `wasm-bindgen --target web --out-dir browser/pkg` on the `.wasm`.
//!
//! One `RefreshMiddleware` for the whole page: every request through
//! `Api` carries the access token; when the token expires, the requests
//! that meet it wait for one refresh and are sent again; a lost session
//! shows the login form once. A session of this tab keeps its tokens in
//! `sessionStorage` (gone when the tab closes); one shared by every tab of
//! the app keeps them in IndexedDB, where a Web Lock lets one tab refresh
//! for all (`TabsCoordinator`). Either way any script of the origin can
//! read them.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

pub mod lease_check;

use refresh_machine_driver::refresh_machine::SessionState;
use refresh_machine_reqwest::{BrowserTimer, Hooks, RefreshMiddleware, TokenPair};
use refresh_machine_tabs::TabsCoordinator;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use wasm_bindgen::prelude::*;

/// Whose session a page's [`Api`] is.
#[wasm_bindgen]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// This tab's alone (tokens in `sessionStorage`).
    ThisTab,
    /// One session for every tab of the app: one refresh per expiry for
    /// all of them.
    AllTabs,
    /// For comparison only, the tutorials' shape: the pair in
    /// `localStorage`, but every tab refreshes on its own. With rotation,
    /// two tabs meeting an expiry together log the user out of both.
    EachTabAlone,
}

/// The page's API client. Cheap to clone: clones share one session.
#[wasm_bindgen]
#[derive(Clone, Debug)]
pub struct Api {
    auth: RefreshMiddleware,
    client: ClientWithMiddleware,
    base: String,
}

#[wasm_bindgen]
impl Api {
    /// A client for the API at `base` (an origin such as
    /// `https://api.example.com`), whose token endpoint is `base/token`.
    /// Starts from the tokens saved before, if any.
    #[wasm_bindgen(constructor)]
    pub fn new(base: &str, sharing: Sharing) -> Result<Api, JsError> {
        let builder = RefreshMiddleware::builder(BrowserTimer)
            .token_endpoint(&format!("{base}/token"), "demo-client")?
            .allow_origin(base)?;
        let lost = || log("session lost: please log in again");
        let auth = match sharing {
            // The store holds the pair: a new tab starts from it.
            Sharing::AllTabs => builder
                .coordinated_by(TabsCoordinator::new("example")?)
                .hooks(Hooks {
                    login_required: Some(Box::new(lost)),
                    ..Hooks::default()
                })
                .build(),
            Sharing::ThisTab | Sharing::EachTabAlone => {
                let storage = move || match sharing {
                    Sharing::ThisTab => session_storage(),
                    _ => local_storage(),
                };
                let auth = builder
                    .hooks(Hooks {
                        persist: Some(Box::new(move |tokens| save(storage(), tokens))),
                        login_required: Some(Box::new(lost)),
                    })
                    .build();
                if let Some(tokens) = load(storage()) {
                    auth.set_tokens(&tokens)?;
                }
                auth
            }
        };
        let client = ClientBuilder::new(reqwest::Client::new())
            .with(auth.clone())
            .build();
        Ok(Api {
            auth,
            client,
            base: base.to_owned(),
        })
    }

    /// Log in with a password (the demo server's user is `alice`/`wonderland`).
    pub async fn login(&self, user: String, password: String) -> Result<(), JsError> {
        Ok(self.auth.login_with_password(&user, &password).await?)
    }

    /// `GET base + path`: the response's status. A failure the page should
    /// act on (`LoginRequired`: show the login form; `RefreshUnavailable`:
    /// the token server is down, try later) is thrown as an `Error`.
    pub async fn get(&self, path: String) -> Result<u16, JsError> {
        let url = format!("{}{}", self.base, path);
        let response = self.client.get(&url).send().await?;
        Ok(response.status().as_u16())
    }

    /// Whether the page holds a session (a login, not yet lost).
    #[wasm_bindgen(js_name = loggedIn)]
    pub fn logged_in(&self) -> bool {
        self.auth.session().state() == SessionState::Active
    }
}

const KEY: &str = "refresh-machine-example-tokens";

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The persist hook: the tokens as they change (`None`: delete them).
fn save(storage: Option<web_sys::Storage>, tokens: Option<&TokenPair>) {
    let Some(storage) = storage else { return };
    let _ = match tokens.and_then(|t| serde_json::to_string(t).ok()) {
        Some(json) => storage.set_item(KEY, &json),
        None => storage.remove_item(KEY),
    };
}

fn load(storage: Option<web_sys::Storage>) -> Option<TokenPair> {
    let json = storage?.get_item(KEY).ok()??;
    serde_json::from_str(&json).ok()
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console)]
    fn log(message: &str);
}
