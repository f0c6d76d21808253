//! Part 4: Footprint: state sizes on this host, and the thumbv7em firmware images.

use std::path::Path;
use std::process::Command;

use refresh_machine::RefreshMachine;
use refresh_machine_bench::Table;

/// `size_of` of the machine at a few capacities and of the std session.
pub(crate) fn host_sizes() -> Table {
    let mut t = Table::new(&["type (this host, 64-bit)", ">bytes"]);
    let mut row = |name: &str, size: usize| t.row(vec![format!("`{name}`"), size.to_string()]);
    row(
        "RefreshMachine<1, 1024>",
        size_of::<RefreshMachine<1, 1024>>(),
    );
    row(
        "RefreshMachine<8, 1024>",
        size_of::<RefreshMachine<8, 1024>>(),
    );
    row(
        "RefreshMachine<16, 2048>",
        size_of::<RefreshMachine<16, 2048>>(),
    );
    row(
        "RefreshMachine<256, 4096> (in each std Session)",
        size_of::<RefreshMachine<256, 4096>>(),
    );
    row(
        "refresh_machine_driver::Session",
        size_of::<refresh_machine_driver::Session>(),
    );
    let per_slot =
        (size_of::<RefreshMachine<16, 1024>>() - size_of::<RefreshMachine<8, 1024>>()) / 8;
    row("per request slot", per_slot);
    let per_token_byte =
        (size_of::<RefreshMachine<1, 2048>>() - size_of::<RefreshMachine<1, 1024>>()) / 1024;
    row("per byte of TOKEN_CAP", per_token_byte);
    t
}

/// The firmware size report (builds the thumbv7em images); its Markdown
/// output, or why it could not run.
pub(crate) fn firmware(root: &Path) -> Result<String, String> {
    let script = root.join("adapters/reqwless/examples/firmware/size-report");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("could not run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "size-report failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
