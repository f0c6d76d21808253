//! A check of `TabsCoordinator` itself, for `page/lease.html`, which
//! `browser/run` opens in two tabs: each takes the lease, reads the pair and
//! publishes the next generation, `rounds` times, as fast as it can. Every
//! publish must succeed (what is read under the lease is the latest) and the
//! last generation must be the sum: no write lost, none on a stale read.

use std::time::Duration;

use refresh_machine_driver::refresh_machine::coordination::Lease;
use refresh_machine_driver::Coordinator;
use refresh_machine_reqwest::{BrowserTimer, Timer, TokenPair};
use refresh_machine_tabs::TabsCoordinator;
use wasm_bindgen::prelude::*;

/// Longest wait for the lease in one round (another tab holds it).
const LEASE_WAIT: Duration = Duration::from_secs(10);

async fn take(store: &TabsCoordinator, owner: u64) -> Result<(), JsError> {
    let started = web_time::Instant::now();
    loop {
        match store.take_lease(owner, LEASE_WAIT).await {
            Ok(Lease::Taken) => return Ok(()),
            Ok(_) if started.elapsed() < LEASE_WAIT => BrowserTimer.sleep(Duration::ZERO).await,
            Ok(_) => return Err(JsError::new("the lease was held for 10 s")),
            Err(_) => return Err(JsError::new("the store is unavailable")),
        }
    }
}

/// `rounds` rounds of lease, read, publish, release as `owner`: how many
/// publishes succeeded.
#[wasm_bindgen(js_name = leaseRounds)]
pub async fn lease_rounds(name: String, rounds: u32, owner: u32) -> Result<u32, JsError> {
    let store = TabsCoordinator::new(&name)?;
    let owner = u64::from(owner);
    let pair = TokenPair::new("access").with_refresh_token("refresh");
    let mut published = 0;
    for _ in 0..rounds {
        take(&store, owner).await?;
        let read = store.read().await;
        let written = match read {
            Ok(stored) => store.publish(owner, stored.generation, &pair).await,
            Err(e) => Err(e),
        };
        store.release(owner).await;
        if written.map_err(|_| JsError::new("the store is unavailable"))? {
            published += 1;
        }
    }
    Ok(published)
}

/// The generation read under the lease, once it is at least `at_least`
/// (the other tab may still be publishing), or after 20 s.
#[wasm_bindgen(js_name = leaseGeneration)]
pub async fn lease_generation(name: String, owner: u32, at_least: u32) -> Result<u32, JsError> {
    let store = TabsCoordinator::new(&name)?;
    let owner = u64::from(owner);
    let started = web_time::Instant::now();
    loop {
        take(&store, owner).await?;
        let read = store.read().await;
        store.release(owner).await;
        let generation = read
            .map_err(|_| JsError::new("the store is unavailable"))?
            .generation;
        if generation >= u64::from(at_least) || started.elapsed() > Duration::from_secs(20) {
            return u32::try_from(generation).map_err(|_| JsError::new("generation too large"));
        }
        BrowserTimer.sleep(Duration::from_millis(50)).await;
    }
}
