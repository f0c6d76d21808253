//! Not an application: statics whose *symbol sizes* are the sizes of the
//! state a firmware keeps, as laid out for this target (32-bit). The size
//! script reads them with `llvm-nm --print-size`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::mem::size_of;

use panic_halt as _;
use refresh_machine::RefreshMachine;
use refresh_machine_firmware_example::{Link, Ticks};
use refresh_machine_reqwless::Client;

/// `RefreshMachine<1, 1024>`: one request at a time, 1 KiB tokens.
#[used]
static SIZE_OF_MACHINE_1_1024: [u8; size_of::<RefreshMachine<1, 1024>>()] =
    [0; size_of::<RefreshMachine<1, 1024>>()];
/// `RefreshMachine<8, 1024>`: eight concurrent requests.
#[used]
static SIZE_OF_MACHINE_8_1024: [u8; size_of::<RefreshMachine<8, 1024>>()] =
    [0; size_of::<RefreshMachine<8, 1024>>()];
/// The machine minus its two token buffers, per extra request slot.
#[used]
static SIZE_OF_SLOT: [u8; size_of::<RefreshMachine<2, 0>>() - size_of::<RefreshMachine<1, 0>>()] =
    [0; size_of::<RefreshMachine<2, 0>>() - size_of::<RefreshMachine<1, 0>>()];
/// The whole reqwless client with a 1 KiB token capacity (buffers excluded).
#[used]
static SIZE_OF_CLIENT_1024: [u8; size_of::<Client<'static, Link, Link, &'static Ticks, 1024>>()] =
    [0; size_of::<Client<'static, Link, Link, &'static Ticks, 1024>>()];

#[cortex_m_rt::entry]
fn main() -> ! {
    loop {
        core::hint::black_box(0u32);
    }
}
