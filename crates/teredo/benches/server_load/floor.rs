//! The socket floor: the least a server on the default socket path can do for each RS. It
//! is the bench executable itself, started again with [`ARG`] in the server namespace (as
//! the servers are, pinned the same way), and it answers every datagram it receives with a
//! datagram of [`ANSWER_LEN`] bytes to its source, from the address it was asked on, with
//! no protocol work at all: recvmmsg(2) and sendmmsg(2) in batches of 64 through the same
//! socket options and batch code as `teredo server` (`teredo_net::udp::bind_udp`,
//! `teredo_net::batch`), blocking sends included. What it answers is not an RA, so the
//! phase has no probe. Unlike the server it runs as root with no sandbox (no seccomp
//! filter on its system calls, which the server pays once per batch).
//!
//! Its rate is the kernel's bound for this path on this machine: the rate a server that
//! does its I/O this way reaches when its own work costs nothing. `teredo server`'s rate
//! against it says how much of that bound the server's protocol work leaves, and its rate
//! against miredo's says how far above miredo such a server could be.

use std::net::SocketAddrV4;
use std::os::fd::AsFd;
use std::time::Duration;

use teredo::daemon::server::{BATCH, RECV_SIZE, SEND_SIZE};
use teredo_net::batch::{RecvBatch, SendBatch};
use teredo_proto::address::TEREDO_PORT;

use crate::generator::SERVERS;

/// The argument that makes the bench executable the floor responder.
pub(crate) const ARG: &str = "--socket-floor-responder";

/// The size of the servers' answer to a flood RS (UDP payload): the authentication header
/// with the nonce and no identity (13 bytes, RFC 4380 §5.1.1), the origin indication (8),
/// the IPv6 header (40), the router advertisement (16) with its prefix (32) and MTU (8)
/// options.
const ANSWER_LEN: usize = 13 + 8 + 40 + 16 + 32 + 8;

/// Answers on both server addresses until killed.
pub(crate) fn serve() -> Result<(), String> {
    let socks = SERVERS
        .iter()
        .map(|&a| {
            let s = teredo_net::udp::bind_udp(SocketAddrV4::new(a, TEREDO_PORT), true)
                .map_err(|e| format!("bind {a}:{TEREDO_PORT}: {e}"))?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut rx = RecvBatch::new(BATCH, RECV_SIZE);
    let mut tx = SendBatch::new(BATCH, SEND_SIZE);
    let fds: Vec<_> = socks.iter().map(|s| s.as_fd()).collect();
    loop {
        let ready = teredo_net::poll::readable(&fds, Duration::from_secs(1)).map_err(|e| e.to_string())?;
        for (fd, _) in fds.iter().zip(ready).filter(|&(_, r)| r) {
            // As the server: a bounded number of batches, then the other socket's turn.
            for _ in 0..16 {
                let n = rx.recv(*fd).unwrap_or(0);
                for i in 0..n {
                    let (from, data, _) = rx.get(i);
                    if let Some(buf) = tx.next_buf().and_then(|b| b.get_mut(..ANSWER_LEN)) {
                        let m = data.len().min(ANSWER_LEN);
                        buf[..m].copy_from_slice(&data[..m]);
                        tx.commit(ANSWER_LEN, from);
                    }
                }
                if !tx.is_empty() {
                    let _ = tx.flush(*fd);
                }
                if n < BATCH {
                    break;
                }
            }
        }
    }
}
