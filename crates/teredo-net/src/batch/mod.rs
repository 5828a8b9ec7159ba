//! Batched UDP I/O over IPv4: a [`RecvBatch`] of receive buffers and a [`SendBatch`] of
//! datagrams to send, allocated once, with the same interface on every platform:
//!
//! - Linux ([`mmsg`]): many datagrams per system call with recvmmsg(2) and sendmmsg(2),
//!   UDP GRO on receive and UDP GSO on send;
//! - elsewhere (`portable`): the same buffers filled and sent with recvfrom(2) and
//!   sendto(2), one datagram per call (no GRO, no GSO). It is also built and tested on
//!   Linux, so that the fallback is known to work.

#[cfg(target_os = "linux")]
pub mod mmsg;
#[cfg(target_os = "linux")]
pub use mmsg::{RecvBatch, SEND_WAIT, SendBatch};

#[cfg(any(test, not(target_os = "linux")))]
#[cfg_attr(target_os = "linux", allow(dead_code, unreachable_pub))]
mod portable;
#[cfg(not(target_os = "linux"))]
pub use portable::{RecvBatch, SEND_WAIT, SendBatch};
