//! Board stand-ins shared by the firmware images: a clock, a tiny executor and
//! a network link. On a real board these are `embassy_time`, `embassy_executor`
//! and `embassy_net` (or the modem driver); here the link replays canned
//! server bytes hidden behind `black_box`, so the optimiser cannot assume
//! anything about them and every code path of the client stays in the image.
#![no_std]
#![forbid(unsafe_code)]

use core::cell::Cell;
use core::future::Future;
use core::hint::black_box;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::{AddrType, Dns, TcpConnect};
use refresh_machine::Instant;
use refresh_machine_reqwless::Clock;

/// Poll a future to completion on a busy loop (no interrupts in this image).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A millisecond tick counter standing in for SysTick.
#[derive(Default)]
pub struct Ticks {
    ms: Cell<u64>,
}

impl Clock for &Ticks {
    fn now(&self) -> Instant {
        Instant::from_millis(black_box(self.ms.get()))
    }

    async fn sleep_until(&mut self, deadline: Instant) {
        let ms = deadline.since_epoch().as_millis() as u64;
        if ms > self.ms.get() {
            self.ms.set(ms);
        }
    }
}

/// Canned answers: a 401, a token response, then a 200.
static SCRIPT: &[u8] = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer error=\"invalid_token\"\r\nContent-Length: 0\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 88\r\n\r\n{\"access_token\":\"at-2\",\"token_type\":\"Bearer\",\"expires_in\":3600,\"refresh_token\":\"rt-2\"}\
HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The stand-in network link.
#[derive(Default)]
pub struct Link {
    pos: Cell<usize>,
}

/// One connection on the link.
pub struct Conn<'a> {
    link: &'a Link,
}

impl ErrorType for Conn<'_> {
    type Error = ErrorKind;
}

impl Read for Conn<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let script = black_box(SCRIPT);
        let pos = self.link.pos.get() % script.len();
        let n = buf.len().min(script.len() - pos).min(64);
        buf[..n].copy_from_slice(&script[pos..pos + n]);
        self.link.pos.set(pos + n);
        Ok(n)
    }
}

impl Write for Conn<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(black_box(buf).len())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl TcpConnect for Link {
    type Error = ErrorKind;
    type Connection<'a> = Conn<'a>;

    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<Conn<'a>, ErrorKind> {
        black_box(remote);
        Ok(Conn { link: self })
    }
}

impl Dns for Link {
    type Error = ErrorKind;

    async fn get_host_by_name(&self, host: &str, _: AddrType) -> Result<IpAddr, ErrorKind> {
        black_box(host);
        Ok(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)))
    }

    async fn get_host_by_address(&self, _: IpAddr, _: &mut [u8]) -> Result<usize, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
}
