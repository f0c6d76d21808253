//! The two std adapters behind [`InteropClient`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use crate::{Adapter, Config, Deployment, InteropClient, Outcome, CLIENT_ID, PASSWORD, USERNAME};

fn counter() -> (Arc<AtomicU32>, Box<dyn Fn() + Send + Sync>) {
    let n = Arc::new(AtomicU32::new(0));
    let hook = {
        let n = n.clone();
        Box::new(move || {
            n.fetch_add(1, Ordering::SeqCst);
        })
    };
    (n, hook)
}

/// refresh-machine-ureq.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ureq;

/// A logged-in `refresh_machine_ureq::Client`.
#[derive(Clone, Debug)]
pub struct UreqClient {
    client: refresh_machine_ureq::Client,
    login_required: Arc<AtomicU32>,
}

impl InteropClient for UreqClient {
    fn get(&self, url: &str) -> Outcome {
        use refresh_machine_ureq::Error;
        match self.client.get(url) {
            Ok(r) => Outcome::Status(r.status().as_u16()),
            Err(Error::LoginRequired) => Outcome::LoginRequired,
            Err(Error::RefreshUnavailable) => Outcome::RefreshUnavailable,
            Err(Error::Unauthorized(_)) => Outcome::Unauthorized,
            Err(Error::Forbidden(_)) => Outcome::Forbidden,
            Err(Error::Transport(_)) => Outcome::Transport,
            Err(Error::BodyNotReplayable(_)) => Outcome::BodyNotReplayable,
            Err(e) => Outcome::Other(e.to_string()),
        }
    }

    fn session(&self) -> &refresh_machine_ureq::Session {
        self.client.session()
    }

    fn login_required_signals(&self) -> u32 {
        self.login_required.load(Ordering::SeqCst)
    }
}

impl Adapter for Ureq {
    type Client = UreqClient;

    fn client(&self, d: &Deployment, config: Config) -> UreqClient {
        let (login_required, hook) = counter();
        let client = refresh_machine_ureq::Client::builder()
            .token_endpoint(&d.token_url(), CLIENT_ID)
            .and_then(|b| b.allow_origin(&d.api.origin()))
            .expect("valid URLs")
            .config(config)
            .hooks(refresh_machine_ureq::Hooks {
                login_required: Some(hook),
                ..Default::default()
            })
            .build();
        client
            .login_with_password(USERNAME, PASSWORD)
            .expect("password grant at Django OAuth Toolkit");
        UreqClient {
            client,
            login_required,
        }
    }
}

/// refresh-machine-reqwest, on a shared tokio multi-thread runtime; the
/// facade blocks on it so the scenarios can use threads for concurrency.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reqwest;

/// A logged-in reqwest client with the refresh middleware.
#[derive(Clone, Debug)]
pub struct ReqwestClient {
    client: reqwest_middleware::ClientWithMiddleware,
    auth: refresh_machine_reqwest::RefreshMiddleware,
    login_required: Arc<AtomicU32>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

impl InteropClient for ReqwestClient {
    fn get(&self, url: &str) -> Outcome {
        use refresh_machine_reqwest::Error;
        let (client, url) = (self.client.clone(), url.to_owned());
        let result = runtime().block_on(async move {
            let resp = client.get(url).send().await?;
            let status = resp.status().as_u16();
            resp.bytes().await?;
            Ok::<u16, reqwest_middleware::Error>(status)
        });
        match result {
            Ok(status) => Outcome::Status(status),
            Err(e) => match refresh_machine_reqwest::error_of(&e) {
                Some(Error::LoginRequired) => Outcome::LoginRequired,
                Some(Error::RefreshUnavailable) => Outcome::RefreshUnavailable,
                Some(Error::Unauthorized(_)) => Outcome::Unauthorized,
                Some(Error::Forbidden(_)) => Outcome::Forbidden,
                Some(Error::BodyNotReplayable(_)) => Outcome::BodyNotReplayable,
                Some(other) => Outcome::Other(other.to_string()),
                None => Outcome::Transport,
            },
        }
    }

    fn session(&self) -> &refresh_machine_ureq::Session {
        self.auth.session()
    }

    fn login_required_signals(&self) -> u32 {
        self.login_required.load(Ordering::SeqCst)
    }
}

impl Adapter for Reqwest {
    type Client = ReqwestClient;

    fn client(&self, d: &Deployment, config: Config) -> ReqwestClient {
        let (login_required, hook) = counter();
        let auth = refresh_machine_reqwest::RefreshMiddleware::builder(
            refresh_machine_reqwest::TokioTimer,
        )
        .token_endpoint(&d.token_url(), CLIENT_ID)
        .and_then(|b| b.allow_origin(&d.api.origin()))
        .expect("valid URLs")
        .config(config)
        .hooks(refresh_machine_reqwest::Hooks {
            login_required: Some(hook),
            ..Default::default()
        })
        .build();
        runtime()
            .block_on(auth.login_with_password(USERNAME, PASSWORD))
            .expect("password grant at Django OAuth Toolkit");
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(auth.clone())
            .build();
        ReqwestClient {
            client,
            auth,
            login_required,
        }
    }
}
