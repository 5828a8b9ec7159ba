//! The sans-IO core that a tunnel worker ([`super::tunnel_worker`]) drives: a client's
//! [`ClientEndpoint`] or one relay worker's [`Tunnel`], behind the handful of calls the
//! worker makes, dispatched inline with no indirection on the packet path.

use std::net::SocketAddrV4;

use teredo_proto::endpoint::ClientEndpoint;
use teredo_proto::time::Instant;
use teredo_proto::tunnel::{Transmit, TunVerdict, Tunnel, UdpVerdict};

/// The sans-IO core of the worker: the role carries its own state. One per worker, held
/// inline (no indirection on the packet path), so the size of the variants does not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Core {
    /// A client: qualification and data path.
    Client(ClientEndpoint),
    /// One relay worker's share of the peers.
    Relay(Tunnel),
}

impl Core {
    #[inline]
    pub(super) fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, data: &[u8]) -> UdpVerdict {
        match self {
            Self::Client(c) => c.handle_datagram(now, from, data),
            Self::Relay(t) => t.handle_datagram(now, from, data),
        }
    }

    #[inline]
    pub(super) fn handle_tun_packet(&mut self, now: Instant, packet: &[u8]) -> TunVerdict {
        match self {
            Self::Client(c) => c.handle_tun_packet(now, packet),
            Self::Relay(t) => t.handle_tun_packet(now, packet),
        }
    }

    #[inline]
    pub(super) fn handle_tun_headers(&mut self, now: Instant, headers: &[u8]) -> Option<TunVerdict> {
        match self {
            Self::Client(c) => c.handle_tun_headers(now, headers),
            Self::Relay(t) => t.handle_tun_headers(now, headers),
        }
    }

    pub(super) fn has_output(&self) -> bool {
        match self {
            Self::Client(c) => c.has_output(),
            Self::Relay(t) => t.has_output(),
        }
    }

    pub(super) fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        match self {
            Self::Client(c) => c.poll_transmit(now, buf),
            Self::Relay(t) => t.poll_transmit(now, buf),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Self::Client(c) => c.handle_timeout(now),
            Self::Relay(t) => t.handle_timeout(now),
        }
    }

    pub(super) fn poll_timeout(&self) -> Instant {
        match self {
            Self::Client(c) => c.poll_timeout(),
            Self::Relay(t) => t.poll_timeout(),
        }
    }
}
