//! A client worker's random sockets (RFC 6081 §5.4.4.2, §5.5.4.1: "select a random port
//! number ... and begin listening on that port"): one UDP socket per port the data path
//! lists ([`ClientEndpoint::random_ports`], at most [`MAX_RANDOM_PEERS`]), bound on the
//! Teredo socket's address, opened and closed as the list changes. What they receive goes
//! back to the data path with the port it came on; what the data path sends from a port
//! leaves from its socket. They carry little (bubbles, echo tests, and the packets of the
//! few peers reached through them), so they are read and written one datagram at a time.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd};

use socket2::Socket;
use teredo_net::udp::bind_udp;
use teredo_proto::endpoint::ClientEndpoint;
use teredo_proto::tunnel::MAX_RANDOM_PEERS;
use tracing::debug;

/// The random sockets (see the module comment).
pub(super) struct RandomSockets {
    bind: Ipv4Addr,
    sockets: Vec<(u16, Socket)>,
    /// The data path's generation the set was last brought in line with.
    generation: u64,
    /// Ports that could not be bound.
    pub(super) unavailable: u64,
    /// Datagrams that could not be sent (an error, or no socket for the port).
    pub(super) send_errors: u64,
}

impl RandomSockets {
    /// No sockets yet; they will be bound on `bind` (the Teredo socket's address).
    pub(super) fn new(bind: Ipv4Addr) -> Self {
        Self { bind, sockets: Vec::new(), generation: 0, unavailable: 0, send_errors: 0 }
    }

    /// Opens the sockets `endpoint` lists and lacks, closes the others; a port that cannot
    /// be bound is given back ([`ClientEndpoint::random_port_unavailable`]).
    pub(super) fn reconcile(&mut self, endpoint: &mut ClientEndpoint) {
        if endpoint.random_ports_generation() == self.generation {
            return;
        }
        let mut wanted = [0u16; MAX_RANDOM_PEERS];
        let mut n = 0;
        for (slot, p) in wanted.iter_mut().zip(endpoint.random_ports()) {
            *slot = p;
            n += 1;
        }
        let wanted = &wanted[..n];
        self.sockets.retain(|(p, _)| wanted.contains(p));
        for &port in wanted {
            if self.sockets.iter().any(|(p, _)| *p == port) {
                continue;
            }
            let bound = bind_udp(SocketAddrV4::new(self.bind, port), false).and_then(|s| {
                s.set_nonblocking(true)?;
                Ok(s)
            });
            match bound {
                Ok(s) => self.sockets.push((port, s)),
                Err(e) => {
                    debug!("random port {port}: {e}");
                    self.unavailable += 1;
                    endpoint.random_port_unavailable(port);
                }
            }
        }
        self.generation = endpoint.random_ports_generation();
    }

    /// The sockets' descriptors, in the order of [`RandomSockets::get`].
    pub(super) fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.sockets.iter().map(|(_, s)| s.as_fd())
    }

    /// How many are open.
    pub(super) fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Socket `i` and its port.
    pub(super) fn get(&self, i: usize) -> Option<(u16, &Socket)> {
        self.sockets.get(i).map(|(p, s)| (*p, s))
    }

    /// Sends `bytes` to `to` from the socket of `port`.
    pub(super) fn send(&mut self, port: u16, bytes: &[u8], to: SocketAddrV4) {
        let sent = self.sockets.iter().find(|(p, _)| *p == port).map(|(_, s)| s.send_to(bytes, &to.into()));
        if !matches!(sent, Some(Ok(_))) {
            self.send_errors += 1;
        }
    }
}
