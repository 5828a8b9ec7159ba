//! Status snapshots: what a running client, relay or server is, in the protocol's words,
//! for `teredo status` and the metrics. RFC 4380 §5.2 lists what a client keeps ("Teredo
//! connectivity status", the mapped address, the server, the date of the last interaction
//! with it) and §5.2, §5.4 what an entry of the list of peers holds; a snapshot is those,
//! plus the named counters of each role.
//!
//! A snapshot is taken on request, off the packet path's hot loop: it allocates (the
//! counter list, the bounded listing of peers) and is never built per packet.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use crate::client::{NatFindings, NatKind, State};
use crate::peers::PeerTable;
use crate::time::Instant;

/// The most peers one listing holds (`teredo status --peers`): a table may hold a million.
pub const MAX_PEER_LIST: usize = 1000;

/// Named counters, in a fixed order: `(name, value)`. The names are stable (they become
/// metric names and JSON keys): lower case, words joined by `_`.
pub type Counters = Vec<(&'static str, u64)>;

/// The counter `name` of `counters`, if it has one.
pub fn counter(counters: &[(&'static str, u64)], name: &str) -> Option<u64> {
    counters.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Adds `more` into `into`, counter by counter, by name (the workers of one daemon).
pub fn add_counters(into: &mut Counters, more: &[(&'static str, u64)]) {
    for &(name, v) in more {
        match into.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += v,
            None => into.push((name, v)),
        }
    }
}

/// One entry of the list of peers (RFC 4380 §5.2: address, mapping, status, dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's IPv6 address.
    pub address: Ipv6Addr,
    /// Its mapped IPv4 address and port, once known.
    pub mapping: Option<SocketAddrV4>,
    /// Trusted (RFC 4380 §5.2.3).
    pub trusted: bool,
    /// Time since the last reception from the peer; `None` if nothing was ever received.
    pub last_seen: Option<Duration>,
    /// Bytes waiting in its queue.
    pub queued_bytes: usize,
}

/// Up to `max` entries of `peers`, as they stand at `now`.
pub fn list_peers(peers: &PeerTable, now: Instant, max: usize) -> Vec<PeerInfo> {
    peers
        .iter()
        .take(max)
        .map(|p| {
            let address = p.address();
            let since = p.since_reception(now);
            PeerInfo {
                address,
                mapping: p.mapping(),
                trusted: p.is_trusted(),
                // A new entry's last reception is dated 30 s before its creation (RFC 4380
                // §5.2.3): an untrusted peer has not been heard from.
                last_seen: p.is_trusted().then_some(since),
                queued_bytes: peers.queue_len(&address).1,
            }
        })
        .collect()
}

/// A client's snapshot (RFC 4380 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStatus {
    /// The connectivity status.
    pub state: State,
    /// The Teredo address while qualified.
    pub address: Option<Ipv6Addr>,
    /// The server's primary and secondary addresses, once known.
    pub server: Option<(Ipv4Addr, Ipv4Addr)>,
    /// The mapping the server saw (the one embedded in the address).
    pub mapped: Option<SocketAddrV4>,
    /// What the secondary-address probe found about the NAT.
    pub nat: Option<NatKind>,
    /// What the RFC 6081 extensions take the NAT for (port-preserving, UPnP...).
    pub findings: NatFindings,
    /// The random sockets open (RFC 6081 §5.4, §5.5).
    pub random_ports: usize,
    /// The MTU while qualified.
    pub mtu: Option<u16>,
    /// Time since the last valid RA.
    pub last_interaction: Option<Duration>,
    /// How many peers the list holds.
    pub peers: usize,
    /// Up to [`MAX_PEER_LIST`] of them, when asked for.
    pub peer_list: Vec<PeerInfo>,
    /// The qualification's and the data path's counters.
    pub counters: Counters,
}

/// A relay's snapshot (one worker's share, or the sum of all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    /// The 32-bit prefix served.
    pub prefix: u32,
    /// How many peers the list holds.
    pub peers: usize,
    /// Up to [`MAX_PEER_LIST`] of them, when asked for.
    pub peer_list: Vec<PeerInfo>,
    /// The data path's counters.
    pub counters: Counters,
}

/// A server's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// Its primary and secondary addresses.
    pub addresses: (Ipv4Addr, Ipv4Addr),
    /// What it did.
    pub counters: Counters,
}

impl NatKind {
    /// One word for status output: `cone` (one mapping for both server addresses; RFC
    /// 5991 §3.2: cone or restricted, the client cannot tell), `symmetric`, `unknown`.
    pub fn word(self) -> &'static str {
        match self {
            Self::SameMapping => "cone",
            Self::Symmetric => "symmetric",
            Self::Unknown => "unknown",
        }
    }
}

impl State {
    /// One word for status output: `qualifying` (resolving the server's name, or
    /// soliciting it), `qualified`, `offline`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Resolving | Self::Qualifying => "qualifying",
            Self::Qualified => "qualified",
            Self::Offline => "offline",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_by_name() {
        let mut a: Counters = vec![("sent", 1), ("dropped", 2)];
        add_counters(&mut a, &[("dropped", 3), ("sent", 4), ("new", 5)]);
        assert_eq!(a, vec![("sent", 5), ("dropped", 5), ("new", 5)]);
        assert_eq!(counter(&a, "new"), Some(5));
        assert_eq!(counter(&a, "old"), None);
    }

    #[test]
    fn words() {
        assert_eq!(State::Resolving.word(), "qualifying");
        assert_eq!(State::Offline.word(), "offline");
        assert_eq!(NatKind::SameMapping.word(), "cone");
    }
}
