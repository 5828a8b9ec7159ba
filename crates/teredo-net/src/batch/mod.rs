//! Batched UDP I/O over IPv4: a [`RecvBatch`] of receive buffers and a [`SendBatch`] of
//! datagrams to send, allocated once, with the same interface on every platform:
//!
//! - Linux ([`mmsg`]): many datagrams per system call with recvmmsg(2) and sendmmsg(2),
//!   UDP GRO on receive and UDP GSO on send;
//! - elsewhere (`portable`): the same buffers filled and sent with recvfrom(2) and
//!   sendto(2), one datagram per call (no GRO, no GSO). It is also built and tested on
//!   Linux, so that the fallback is known to work.

#[cfg(target_os = "linux")]
mod gso_refusals;
#[cfg(target_os = "linux")]
pub mod mmsg;
#[cfg(target_os = "linux")]
pub use mmsg::{RecvBatch, SEND_WAIT, SendBatch};

#[cfg(any(test, not(target_os = "linux")))]
#[cfg_attr(target_os = "linux", allow(dead_code, unreachable_pub))]
mod portable;
#[cfg(not(target_os = "linux"))]
pub use portable::{RecvBatch, SEND_WAIT, SendBatch};

use std::net::{Ipv4Addr, SocketAddrV4};

/// A kernel IPv4 socket address as a Rust one.
fn sockaddr_to_v4(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)), u16::from_be(sa.sin_port))
}

/// A Rust IPv4 socket address as the kernel's.
fn v4_to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = a.port().to_be();
    sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    sa
}
