//! What the data path answers the I/O layer: a [`TunVerdict`] for each packet read from
//! the TUN, a [`UdpVerdict`] for each datagram received, and a [`Transmit`] (with its
//! [`Destination`]) for each output drained with `Tunnel::poll_transmit`.

use std::net::SocketAddrV4;
use std::ops::Range;

use super::DropReason;

/// What to do with a packet read from the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunVerdict {
    /// Send the packet's bytes unchanged as the payload of a UDP datagram to `dst`.
    Send {
        /// The peer's mapping.
        dst: SocketAddrV4,
    },
    /// The same from the client's random socket of local port `port` (RFC 6081 §5.4: a
    /// peer reached through a random port; see [`Tunnel::random_ports`](super::Tunnel::random_ports)).
    SendFrom {
        /// The random socket's local port.
        port: u16,
        /// The peer's mapping.
        dst: SocketAddrV4,
    },
    /// The packet was queued until the peer's mapping is known.
    Queued,
    /// The packet was dropped.
    Drop(DropReason),
}

/// What to do with a datagram received on the Teredo socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpVerdict {
    /// Write `datagram[range]`, the inner IPv6 packet (40 bytes plus its payload length),
    /// to the TUN.
    Deliver {
        /// The packet's bytes in the datagram.
        range: Range<usize>,
    },
    /// A bubble or a verified echo reply: nothing to deliver.
    Consumed,
    /// Queued until its relay is verified (RFC 4380 §5.2.3 case 6).
    Queued,
    /// Dropped.
    Drop(DropReason),
}

/// Where a [`Transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A UDP datagram from the Teredo service port to this address.
    Udp(SocketAddrV4),
    /// A UDP datagram from the client's random socket of local port `port` (RFC 6081
    /// §5.4, §5.5) to `to`.
    UdpFrom {
        /// The random socket's local port.
        port: u16,
        /// The destination.
        to: SocketAddrV4,
    },
    /// An IPv6 packet to write to the TUN.
    Tun,
}

/// An output written at the start of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub dest: Destination,
    /// Its length.
    pub len: usize,
}
