//! refresh-machine-ureq and refresh-machine-reqwest against Django OAuth
//! Toolkit. Run with `bash interop/run` (installs the server, then runs these
//! with `--ignored`).

#[test]
#[ignore = "needs Django OAuth Toolkit: run `bash interop/run`"]
fn server_revokes_the_family_on_reuse() {
    refresh_machine_interop::server_revokes_the_family_on_reuse();
}

mod ureq {
    refresh_machine_interop::interop_tests!(refresh_machine_interop::clients::Ureq);
}

mod reqwest {
    refresh_machine_interop::interop_tests!(refresh_machine_interop::clients::Reqwest);
}
