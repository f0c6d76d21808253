//! The empty image: runtime, vector table and panic handler only. The other
//! images are measured against it.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use panic_halt as _;

#[cortex_m_rt::entry]
fn main() -> ! {
    loop {
        core::hint::black_box(0u32);
    }
}
