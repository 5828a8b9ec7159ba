//! Why the server drops a datagram ([`DropReason`]) and what it counts ([`ServerStats`]):
//! the counters `teredo status` and the metrics show for a server.

use super::Action;
use crate::wire::Malformed;

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a well-formed Teredo packet (RFC 4380 §5.3.1 rule 1).
    Malformed(Malformed),
    /// Neither a bubble nor ICMPv6 (rule 2).
    NotBubbleOrIcmpv6,
    /// The IPv4 source is not global unicast (rule 3), or its UDP port is 0.
    SourceNotGlobal,
    /// Fails the source checks of rules 4 to 7.
    SourceCheck,
    /// The datagram comes from one of the server's own addresses (loop guard).
    FromSelf,
    /// A message to the server that is not an RS, or an RS with a bad checksum, code or
    /// hop limit.
    NotRouterSolicitation,
    /// The destination is not a global unicast IPv6 address.
    DestinationNotGlobal,
    /// The destination's embedded IPv4 is not global unicast, or is the server itself.
    DestinationNotGlobalIpv4,
    /// A non-bubble above [`MAX_RELAYED_PAYLOAD`](super::MAX_RELAYED_PAYLOAD), or an ICMPv6 type the server does not
    /// relay.
    NotRelayable,
    /// An ICMPv6 message with a bad checksum.
    BadChecksum,
    /// The output buffer was too small (a caller bug; never on a 1500-byte buffer).
    BufferTooSmall,
    /// Larger than the I/O layer's receive buffer (cut by the kernel): never looked at.
    Oversized,
    /// Secure qualification: an RS from an unknown client, or whose authentication value
    /// does not verify, or without one when the server requires it (RFC 4380 §5.2.2).
    AuthenticationFailed,
}

impl DropReason {
    /// How many kinds of reason there are (the inner kind of malformation is not told
    /// apart).
    pub const COUNT: usize = 13;

    /// The reason's index in [`ServerStats::drops`].
    pub fn index(self) -> usize {
        match self {
            Self::Malformed(_) => 0,
            Self::NotBubbleOrIcmpv6 => 1,
            Self::SourceNotGlobal => 2,
            Self::SourceCheck => 3,
            Self::FromSelf => 4,
            Self::NotRouterSolicitation => 5,
            Self::DestinationNotGlobal => 6,
            Self::DestinationNotGlobalIpv4 => 7,
            Self::NotRelayable => 8,
            Self::BadChecksum => 9,
            Self::BufferTooSmall => 10,
            Self::Oversized => 11,
            Self::AuthenticationFailed => 12,
        }
    }
}

/// The counter name of each [`DropReason`], by [`DropReason::index`].
const DROP_NAMES: [&str; DropReason::COUNT] = [
    "dropped_malformed",
    "dropped_not_bubble_or_icmpv6",
    "dropped_source_not_global",
    "dropped_source_check",
    "dropped_from_self",
    "dropped_not_router_solicitation",
    "dropped_destination_not_global",
    "dropped_destination_not_global_ipv4",
    "dropped_not_relayable",
    "dropped_bad_checksum",
    "dropped_buffer_too_small",
    "dropped_oversized",
    "dropped_authentication_failed",
];

/// Counts of what the server did, indexed like [`Action`] and [`DropReason`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams handled.
    pub received: u64,
    /// Router advertisements sent.
    pub advertisements: u64,
    /// Packets relayed to Teredo clients over UDP.
    pub relayed_udp: u64,
    /// Packets sent to the native IPv6 network.
    pub relayed_ipv6: u64,
    /// Drops by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
}

impl ServerStats {
    /// Counts one action.
    pub fn count(&mut self, action: &Action) {
        self.received += 1;
        match action {
            Action::SendUdp { advertisement: true, .. } => self.advertisements += 1,
            Action::SendUdp { advertisement: false, .. } => self.relayed_udp += 1,
            Action::SendIpv6 { .. } => self.relayed_ipv6 += 1,
            Action::Drop(r) => self.drops[r.index()] += 1,
        }
    }

    /// Datagrams that could not be read: malformed, or larger than the receive buffer.
    pub fn malformed(&self) -> u64 {
        self.drops[DropReason::Malformed(Malformed::TooShort).index()]
            + self.drops[DropReason::Oversized.index()]
    }

    /// The other drops (source checks, loop guard, not relayable...).
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum::<u64>() - self.malformed()
    }

    /// Adds another worker's counts.
    pub fn add(&mut self, o: &Self) {
        self.received += o.received;
        self.advertisements += o.advertisements;
        self.relayed_udp += o.relayed_udp;
        self.relayed_ipv6 += o.relayed_ipv6;
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
    }

    /// The counters by name (see [`crate::status`]).
    pub fn counters(&self) -> crate::status::Counters {
        let mut c = vec![
            ("received", self.received),
            ("advertisements", self.advertisements),
            ("relayed_udp", self.relayed_udp),
            ("relayed_ipv6", self.relayed_ipv6),
            ("malformed", self.malformed()),
            ("dropped", self.dropped()),
        ];
        c.extend(DROP_NAMES.iter().zip(self.drops).map(|(n, v)| (*n, v)));
        c
    }
}
