//! Four OS processes (ureq and reqwest clients) sharing one credential at
//! Django OAuth Toolkit through a token file or Redis. Run with
//! `bash interop/run` (installs the server; Redis comes from the system's
//! packages), which runs these with `--ignored`.

use refresh_machine_interop::processes::{self, StoreKind};

/// Not a test: the worker process the tests below start (this binary again).
#[test]
#[ignore = "a worker process, started by the multi-process tests"]
fn worker() {
    processes::worker_main();
}

#[test]
#[ignore = "needs Django OAuth Toolkit: run `bash interop/run`"]
fn processes_sharing_a_token_file_make_one_refresh_per_expiry() {
    let run = processes::processes_make_one_refresh_per_expiry(StoreKind::File);
    println!("file: {run:?}");
}

#[test]
#[ignore = "needs Django OAuth Toolkit and redis-server: run `bash interop/run`"]
fn processes_sharing_redis_make_one_refresh_per_expiry() {
    let run = processes::processes_make_one_refresh_per_expiry(StoreKind::Redis);
    println!("redis: {run:?}");
}

#[test]
#[ignore = "needs Django OAuth Toolkit: run `bash interop/run`"]
fn a_killed_holder_of_the_file_lease_is_taken_over() {
    let took = processes::a_killed_lease_holder_is_taken_over(StoreKind::File);
    println!("file: the others were done {took:?} after the lease was taken");
}

#[test]
#[ignore = "needs Django OAuth Toolkit and redis-server: run `bash interop/run`"]
fn a_killed_holder_of_the_redis_lease_is_taken_over_after_its_ttl() {
    let took = processes::a_killed_lease_holder_is_taken_over(StoreKind::Redis);
    println!("redis: the others were done {took:?} after the lease was taken");
    assert!(
        took >= std::time::Duration::from_secs(11),
        "the lease (12 s) was waited out, not ignored: {took:?}"
    );
}

#[test]
#[ignore = "needs Django OAuth Toolkit and redis-server: run `bash interop/run`"]
fn a_redis_outage_is_transient_across_processes() {
    processes::a_redis_outage_is_transient_across_processes();
}
