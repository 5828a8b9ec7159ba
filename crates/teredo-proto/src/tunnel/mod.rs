//! The data path of a Teredo client and of a Teredo relay, sans-IO: what to do with each
//! IPv6 packet read from the TUN (RFC 4380 §5.2.4 for a client, §5.4.1 for a relay) and
//! with each datagram received on the Teredo socket (§5.2.3, §5.4.2), with the bubbles of
//! §5.2.6, the direct IPv6 connectivity test of §5.2.9, and RFC 5991 §3.2 (the peers'
//! cone bit is ignored: every Teredo peer gets bubbles).
//!
//! - [`Tunnel::handle_tun_packet`] answers [`TunVerdict::Send`] (send the same bytes as
//!   the UDP payload: no copy), [`TunVerdict::Queued`] or [`TunVerdict::Drop`];
//! - [`Tunnel::handle_datagram`] answers [`UdpVerdict::Deliver`] (the byte range of the
//!   inner IPv6 packet to write to the TUN: no copy), [`UdpVerdict::Consumed`] (a bubble,
//!   a verified echo reply), [`UdpVerdict::Queued`] or [`UdpVerdict::Drop`];
//! - [`Tunnel::poll_transmit`] writes what the rules produced besides: bubbles, echo
//!   tests, reply bubbles, released queued packets in arrival order, and rate-limited
//!   ICMPv6 destination unreachables for the TUN. Drain it after every `handle_*` call;
//! - [`Tunnel::poll_timeout`] and [`Tunnel::handle_timeout`] drive the expiry of peers and
//!   the repetition of bubbles and echo tests for peers with queued packets.
//!
//! One `Tunnel` is one shard: the I/O layer may run several, each with its own list of
//! peers, and send each packet to the shard of its peer (see [`crate::peers`]).
//!
//! The trusted fast path (a trusted, valid peer whose mapping matches) parses the headers,
//! looks the peer up and answers, with no copy and no allocation. Every drop is counted in
//! [`Stats`] by its [`DropReason`].
//!
//! # Client (RFC 4380 §5.2.3, §5.2.4)
//!
//! From the TUN: multicast is dropped; before qualification the answer is an unreachable
//! (code 3). A destination outside the own prefix gets the direct IPv6 connectivity test
//! (§5.2.9): an echo request whose data is a keyed token ([`TokenKey::echo_token`]) sent
//! through the client's own server, at most 4 of them 2 s apart, after which the peer is
//! unreachable (code 3) for 300 s; a source outside the own prefix gets code 1 (Miredo).
//! A Teredo destination whose embedded server or mapped IPv4 is not global unicast is
//! dropped; otherwise the packet is queued and a direct bubble (to the embedded mapping)
//! and an indirect one (through the destination's server, UDP 3544) go out, at most one
//! pair per 2 s and 4 pairs per 300 s without an answer, then unreachable (Miredo §4.7).
//! The client's bubbles come from its Teredo address.
//!
//! From UDP: a bubble from the own server (its IPv4 address and port 3544) is answered
//! with a direct bubble to its origin indication (hole punching) and not delivered. Then:
//! a trusted peer whose mapping is the outer source is accepted (case 1); a verified echo
//! reply, or a destination unreachable that carries our echo request, makes its native
//! source trusted with the relay's mapping (case 2); a Teredo source whose embedded
//! mapping is the outer source is trusted (case 3); a native source from an unverified
//! relay is queued and tested through the server (case 6). A packet for another
//! destination than the own address (link-local allowed for bubbles) is dropped.
//!
//! # Relay (RFC 4380 §5.4.1, §5.4.2)
//!
//! From the TUN: only destinations under the relay's prefix (others: unreachable code 3,
//! rate-limited); then as a client's Teredo destinations, except that a cone relay sends
//! only the indirect bubble. The relay's bubbles come from `fe80::<token>` where the
//! interface identifier is [`TokenKey::bubble_interface_id`] of the peer's mapping, as
//! Miredo's. From UDP: the source must be under the prefix and **already in the list of
//! peers** (created by outbound traffic: inbound traffic never creates an entry, so it
//! cannot fill the table), and its mapping must check (trusted and equal, or embedded and
//! equal); it is then trusted and its queue released.
//!
//! # Where this differs from RFC 4380 and Miredo
//!
//! - Packets sent with a source the client does not own are not checked except for
//!   non-Teredo destinations (Miredo's code 1 rule).
//! - Link-local sources (Miredo drops them all, the RFC does not mention them): a
//!   link-local bubble from the own server is answered (Miredo's bubbles use such a
//!   source), a direct link-local bubble is consumed with no effect (it only opened the
//!   sender's NAT), anything else with a link-local source is dropped.
//! - Bubbles and echo tests for a peer with queued packets are repeated by a timer every
//!   2 s until the peer answers or the budget of 4 is spent; then its queued packets are
//!   dropped, each answered by an unreachable (rate-limited). Miredo repeats only when a
//!   new packet comes and drops queues silently.
//! - When the budget is spent, the packet is not queued (Miredo queues it anyway).
//! - Queues flush in arrival order (Miredo: newest first), bounded per peer and in total.
//! - A new native source from an unverified relay (client case 6) starts an echo test only
//!   within a global budget per second ([`Limits::tests_per_second`]), so that spoofed
//!   packets cannot make the client send unbounded echo tests; beyond it they are dropped.
//! - The echo test's retry budget reuses the bubble rule (4 in 300 s; Miredo keeps the
//!   peer unreachable until its entry expires).
//! - Miredo's `CheckBubble` (trusting a peer behind a symmetric NAT by a token in the
//!   destination of its reply bubble) is not implemented: our bubbles carry our Teredo
//!   address, and RFC 6081 §2 is the way to support symmetric NATs.
//! - Reply bubbles are only sent to global unicast origins, to the own address only.
//! - A relay does not check the destination of what it receives (RFC 4380 §5.4.2 says it
//!   SHOULD be in the range the relay serves); like Miredo, it leaves egress filtering to
//!   the IPv6 firewall.
//! - A relay keeps an entry whose bubbles went unanswered (§5.4.1 says it is removed): the
//!   entry is what keeps the 300 s budget, and it expires when idle.
//! - ICMPv6 errors go to the TUN with a source of our choosing (the kernel picks it in
//!   Miredo): a client's Teredo address (`fe80::ffff:ffff:ffff` before qualification), and
//!   for a relay the configured [`RelayConfig::unreachable_source`] or else the
//!   unreachable destination itself (a link-local source could not be forwarded to a
//!   native host). At most [`Limits::unreachables_per_second`] (10, Miredo's rate).

mod limits;
mod output;
mod receive;
mod stats;
#[cfg(test)]
mod tests;
mod transmit;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::ops::Range;
use std::time::Duration;

use crate::address::{TEREDO_PORT, TEREDO_PREFIX};
use crate::nonce::TokenKey;
use crate::peers::{AllocationFailed, PeerTable};
use crate::time::Instant;

pub use limits::Limits;
use limits::RateLimit;
use output::Pending;
pub use stats::{DropCounts, DropReason, Stats};

/// Hop limit of the bubbles we send (RFC 4380 §2.8 does not set one; forwarded by
/// servers, never routed).
pub const BUBBLE_HOP_LIMIT: u8 = 255;
/// Hop limit of echo tests (Miredo's).
pub const ECHO_HOP_LIMIT: u8 = 128;
/// Hop limit of the ICMPv6 errors written to the TUN.
pub const UNREACHABLE_HOP_LIMIT: u8 = 64;
/// The delay between two tries of the bubbles or echo test of a peer with queued packets
/// (RFC 4380 §5.2.4: "a 2-second time-out").
pub const RETRY_DELAY: Duration = Duration::from_secs(2);
/// What a relay is (Miredo's `RelayType`, `Prefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    /// The 32-bit Teredo prefix served (2001::/32 by default).
    pub prefix: u32,
    /// A cone relay (`RelayType cone`) sends only indirect bubbles; a restricted one
    /// (`RelayType restricted`) also direct ones, to open its own NAT (RFC 4380 §5.4.1).
    pub cone: bool,
    /// The source of the ICMPv6 errors the relay writes to the TUN; `None` for the
    /// unreachable destination.
    pub unreachable_source: Option<Ipv6Addr>,
}

impl Default for RelayConfig {
    /// 2001::/32, restricted (both bubbles), errors from the unreachable destination.
    fn default() -> Self {
        Self { prefix: TEREDO_PREFIX, cone: false, unreachable_source: None }
    }
}

/// Which data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A client: inert until [`Tunnel::set_qualified`].
    Client,
    /// A relay, usable at once.
    Relay(RelayConfig),
}

/// What to do with a packet read from the TUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunVerdict {
    /// Send the packet's bytes unchanged as the payload of a UDP datagram to `dst`.
    Send {
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

/// The role with its own state: a client's link exists only for a client, so that a
/// relay with a server link cannot be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A client, with its link once qualified.
    Client(Option<Link>),
    /// A relay.
    Relay(RelayConfig),
}

/// A client's address once qualified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    address: Ipv6Addr,
    prefix: [u8; 4],
    server: SocketAddrV4,
}

/// The data path of a client or a relay (see the module comment).
#[derive(Debug)]
pub struct Tunnel {
    mode: Mode,
    key: TokenKey,
    echo_id: u16,
    limits: Limits,
    peers: PeerTable,
    pending: VecDeque<Pending>,
    /// Peers to probe again, in deadline order (every deadline is "now + 2 s").
    retries: VecDeque<(Instant, Ipv6Addr)>,
    unreachables: RateLimit,
    tests: RateLimit,
    stats: Stats,
}

impl Tunnel {
    /// A data path with this role. `key` makes the echo-test tokens, the relay's bubble
    /// sources and the peer table's hash key.
    pub fn new(role: Role, key: TokenKey, limits: Limits, now: Instant) -> Result<Self, AllocationFailed> {
        let peers = PeerTable::new(limits.peers, key.hash_key("teredo peer table"), now)?;
        let id = key.hash_key("teredo echo identifier");
        let mode = match role {
            Role::Client => Mode::Client(None),
            Role::Relay(c) => Mode::Relay(c),
        };
        Ok(Self {
            mode,
            echo_id: u16::from_be_bytes([id[0], id[1]]),
            key,
            limits,
            peers,
            pending: VecDeque::new(),
            retries: VecDeque::new(),
            unreachables: RateLimit::new(limits.unreachables_per_second),
            tests: RateLimit::new(limits.tests_per_second),
            stats: Stats::default(),
        })
    }

    /// A client is qualified with `address` through `server` (RFC 4380 §5.2.1). A new
    /// address empties the list of peers, whose entries were made for the old one (RFC
    /// 4380 §5.2.5, as Miredo does). Ignored for a relay.
    pub fn set_qualified(&mut self, now: Instant, address: Ipv6Addr, server: Ipv4Addr) {
        let Mode::Client(current) = self.mode else { return };
        let o = address.octets();
        let link = Link {
            address,
            prefix: [o[0], o[1], o[2], o[3]],
            server: SocketAddrV4::new(server, TEREDO_PORT),
        };
        if current != Some(link) {
            self.clear(now);
            self.mode = Mode::Client(Some(link));
        }
    }

    /// A client lost its qualification: forget the address and every peer.
    pub fn reset(&mut self, now: Instant) {
        self.clear(now);
        if let Mode::Client(link) = &mut self.mode {
            *link = None;
        }
    }

    fn clear(&mut self, now: Instant) {
        self.peers.reset(now);
        self.pending.clear();
        self.retries.clear();
    }

    /// The client's Teredo address while qualified.
    pub fn address(&self) -> Option<Ipv6Addr> {
        self.link().map(|l| l.address)
    }

    /// A client's link while qualified; always `None` for a relay.
    fn link(&self) -> Option<Link> {
        match self.mode {
            Mode::Client(l) => l,
            Mode::Relay(_) => None,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        match self.mode {
            Mode::Client(_) => Role::Client,
            Mode::Relay(c) => Role::Relay(c),
        }
    }

    /// The list of peers.
    pub fn peers(&self) -> &PeerTable {
        &self.peers
    }

    /// Changes the most peers within the table's allocation ([`PeerTable::set_max_peers`]).
    pub fn set_max_peers(&mut self, max_peers: usize) -> bool {
        let ok = self.peers.set_max_peers(max_peers);
        if ok {
            self.limits.peers.max_peers = max_peers;
        }
        ok
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The data path's snapshot at `now` as a relay's (a client's is the endpoint's), with
    /// up to [`crate::status::MAX_PEER_LIST`] peers listed when `peers`.
    pub fn relay_status(&self, now: Instant, peers: bool) -> crate::status::RelayStatus {
        let max = if peers { crate::status::MAX_PEER_LIST } else { 0 };
        crate::status::RelayStatus {
            prefix: self.teredo_prefix().map_or(0, u32::from_be_bytes),
            peers: self.peers.len(),
            peer_list: crate::status::list_peers(&self.peers, now, max),
            counters: self.stats.counters(),
        }
    }

    /// The next instant at which [`Tunnel::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Instant {
        let sweep = self.peers.poll_timeout();
        match self.retries.front() {
            Some(&(at, _)) => at.min(sweep),
            None => sweep,
        }
    }

    /// Runs what is due at `now`: a step of the peers' expiry sweep, and the repetition of
    /// bubbles and echo tests for peers whose packets still wait (their outputs are then
    /// written by [`Tunnel::poll_transmit`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.peers.handle_timeout(now);
        // Bounded by the length of the list, itself bounded by MAX_RETRIES.
        let mut budget = self.retries.len();
        while budget > 0
            && let Some(&(at, peer)) = self.retries.front()
            && at <= now
        {
            budget -= 1;
            self.retries.pop_front();
            self.retry(now, &peer);
        }
    }

    /// Whether [`Tunnel::poll_transmit`] has something to give: the caller should take it
    /// before it goes on with packets received after, so that packets released to the TUN
    /// keep their place before the later ones of the same peer.
    pub fn has_output(&self) -> bool {
        !self.pending.is_empty() || self.peers.has_released()
    }

    fn count(&mut self, r: DropReason) {
        *self.stats.drops.slot(r) += 1;
    }

    /// The prefix whose addresses are Teredo peers: the own prefix of a client, the
    /// relay's prefix.
    fn teredo_prefix(&self) -> Option<[u8; 4]> {
        match self.mode {
            Mode::Relay(c) => Some(c.prefix.to_be_bytes()),
            Mode::Client(l) => l.map(|l| l.prefix),
        }
    }
}
