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

mod receive;
#[cfg(test)]
mod tests;
mod transmit;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::ops::Range;
use std::time::Duration;

use crate::address::{LINK_LOCAL_RESTRICTED, TEREDO_PORT, TEREDO_PREFIX, TeredoAddress};
use crate::nonce::TokenKey;
use crate::peers::{AllocationFailed, PeerLimits, PeerTable, Queued};
use crate::time::Instant;
use crate::wire::icmpv6::{DestinationUnreachable, Echo, Icmpv6Repr, MAX_ERROR_LEN};
use crate::wire::ipv6;

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
/// Most pending repetitions by default (each 16 bytes + 8); more are not scheduled, and the
/// peer is then probed again only when new packets come.
const MAX_RETRIES: usize = 1 << 16;

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

/// The limits of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The list of peers and its queues.
    pub peers: PeerLimits,
    /// Most outputs (bubbles, echo tests, errors) waiting for [`Tunnel::poll_transmit`];
    /// more are dropped and counted.
    pub max_pending: usize,
    /// Most ICMPv6 destination unreachables per second (Miredo: 10).
    pub unreachables_per_second: u32,
    /// Most echo tests per second started for new native sources received from unverified
    /// relays (client case 6).
    pub tests_per_second: u32,
    /// Most bubble or echo-test repetitions scheduled at once.
    pub max_retries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            peers: PeerLimits::default(),
            max_pending: 4096,
            unreachables_per_second: 10,
            tests_per_second: 100,
            max_retries: MAX_RETRIES,
        }
    }
}

impl Limits {
    /// The limits of one of `n` tunnels that share the peers (one per worker), so that
    /// together they hold no more than `self`: every count, byte budget and rate divided
    /// by `n`, rounded up (at least 1).
    pub fn shared_by(self, n: usize) -> Self {
        let n = n.max(1);
        let part = |v: usize| v.div_ceil(n).max(1);
        let rate = |v: u32| v.div_ceil(n as u32).max(1);
        Self {
            peers: PeerLimits {
                max_peers: part(self.peers.max_peers),
                queue_bytes_total: part(self.peers.queue_bytes_total),
                ..self.peers
            },
            max_pending: part(self.max_pending),
            unreachables_per_second: rate(self.unreachables_per_second),
            tests_per_second: rate(self.tests_per_second),
            max_retries: part(self.max_retries),
        }
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a valid IPv6 packet, or not a valid Teredo encapsulation (RFC 4380 §5.2.3).
    Malformed,
    /// A multicast destination.
    Multicast,
    /// A client that is not qualified.
    NotQualified,
    /// A client's packet to a non-Teredo destination from a source outside its prefix
    /// (answered with code 1, as Miredo does).
    SourceNotTeredo,
    /// A relay's packet to a destination outside its prefix (code 3, RFC 4380 §5.4.1).
    NotTeredoDestination,
    /// A Teredo destination whose embedded server or mapped IPv4 is not global unicast
    /// (RFC 4380 §5.2.4, §5.4.1).
    DestinationNotGlobal,
    /// The list of peers is full.
    TableFull,
    /// The peer's queue is full.
    QueueFull,
    /// The global queue budget is exhausted.
    QueueBudget,
    /// Bubbles or echo tests to the peer went unanswered (RFC 4380 §5.2.6): unreachable.
    PeerUnreachable,
    /// A non-bubble with a link-local source.
    LinkLocalSource,
    /// A destination other than the own address.
    WrongDestination,
    /// A relay's datagram whose source is not a Teredo address (RFC 4380 §5.4.2), or a
    /// client's bubble from a native source.
    NotTeredoSource,
    /// A relay's datagram from a peer it never sent to (RFC 4380 §5.4.2).
    UnknownPeer,
    /// The outer source matches neither the embedded nor the trusted mapping.
    MappingMismatch,
    /// Too many echo tests for new native sources this second.
    TestRateLimited,
    /// A queued inbound packet whose relay is not the one the echo test verified.
    RelayNotVerified,
}

impl DropReason {
    /// Every reason, in the order of [`DropCounts`].
    pub const ALL: [Self; 17] = [
        Self::Malformed,
        Self::Multicast,
        Self::NotQualified,
        Self::SourceNotTeredo,
        Self::NotTeredoDestination,
        Self::DestinationNotGlobal,
        Self::TableFull,
        Self::QueueFull,
        Self::QueueBudget,
        Self::PeerUnreachable,
        Self::LinkLocalSource,
        Self::WrongDestination,
        Self::NotTeredoSource,
        Self::UnknownPeer,
        Self::MappingMismatch,
        Self::TestRateLimited,
        Self::RelayNotVerified,
    ];

    /// The reason's counter name: `dropped_<reason>`.
    pub fn counter_name(self) -> &'static str {
        DROP_NAMES[self as usize]
    }
}

/// A counter per [`DropReason`], indexed by the reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    fn slot(&mut self, r: DropReason) -> &mut u64 {
        &mut self.0[r as usize]
    }

    /// The count for `r`.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    /// The sum of every count.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.get(r)))
    }
}

/// Plain counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// TUN packets sent directly to a trusted peer.
    pub sent: u64,
    /// TUN packets queued.
    pub queued_out: u64,
    /// Datagrams delivered to the TUN directly.
    pub delivered: u64,
    /// Datagrams queued (client case 6).
    pub queued_in: u64,
    /// Bubbles received and consumed.
    pub bubbles_received: u64,
    /// Echo replies (or unreachables carrying our echo request) verified.
    pub echo_verified: u64,
    /// Bubbles sent (direct and indirect).
    pub bubbles_sent: u64,
    /// Reply bubbles sent to an origin indication.
    pub reply_bubbles_sent: u64,
    /// Echo tests sent.
    pub echo_tests_sent: u64,
    /// Peers that became trusted.
    pub peers_trusted: u64,
    /// Released queued packets sent over UDP.
    pub released_out: u64,
    /// Released queued packets delivered to the TUN.
    pub released_in: u64,
    /// ICMPv6 destination unreachables written.
    pub unreachables_sent: u64,
    /// ICMPv6 destination unreachables not sent because of the rate limit.
    pub unreachables_rate_limited: u64,
    /// Outputs dropped because too many were pending or the buffer was too small.
    pub output_dropped: u64,
    /// Valid Teredo packets accepted without a peer entry because the table was full.
    pub accepted_unrecorded: u64,
    /// Drops, by reason.
    pub drops: DropCounts,
}

impl Stats {
    /// The counters by name, the drops as `dropped_<reason>` (see [`crate::status`]).
    pub fn counters(&self) -> crate::status::Counters {
        let mut c = vec![
            ("sent", self.sent),
            ("queued_out", self.queued_out),
            ("delivered", self.delivered),
            ("queued_in", self.queued_in),
            ("bubbles_received", self.bubbles_received),
            ("echo_verified", self.echo_verified),
            ("bubbles_sent", self.bubbles_sent),
            ("reply_bubbles_sent", self.reply_bubbles_sent),
            ("echo_tests_sent", self.echo_tests_sent),
            ("peers_trusted", self.peers_trusted),
            ("released_out", self.released_out),
            ("released_in", self.released_in),
            ("unreachables_sent", self.unreachables_sent),
            ("unreachables_rate_limited", self.unreachables_rate_limited),
            ("output_dropped", self.output_dropped),
            ("accepted_unrecorded", self.accepted_unrecorded),
            ("dropped", self.drops.total()),
        ];
        c.extend(self.drops.iter().map(|(r, n)| (r.counter_name(), n)));
        c
    }
}

/// `dropped_<reason>` for every [`DropReason`], in its order.
const DROP_NAMES: [&str; DropReason::ALL.len()] = [
    "dropped_malformed",
    "dropped_multicast",
    "dropped_not_qualified",
    "dropped_source_not_teredo",
    "dropped_not_teredo_destination",
    "dropped_destination_not_global",
    "dropped_table_full",
    "dropped_queue_full",
    "dropped_queue_budget",
    "dropped_peer_unreachable",
    "dropped_link_local_source",
    "dropped_wrong_destination",
    "dropped_not_teredo_source",
    "dropped_unknown_peer",
    "dropped_mapping_mismatch",
    "dropped_test_rate_limited",
    "dropped_relay_not_verified",
];

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

/// An output waiting for [`Tunnel::poll_transmit`].
#[derive(Debug)]
enum Pending {
    Bubble { src: Ipv6Addr, dst: Ipv6Addr, to: SocketAddrV4 },
    Echo { dst: Ipv6Addr, seq: u16 },
    Unreachable { code: u8, src: Ipv6Addr, dst: Ipv6Addr, invoking: Box<[u8]> },
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

/// At most `per_second` events per whole second of [`Instant`] (Miredo's ICMPv6 limiter).
#[derive(Debug, Clone, Copy)]
struct RateLimit {
    second: u64,
    left: u32,
    per_second: u32,
}

impl RateLimit {
    fn new(per_second: u32) -> Self {
        Self { second: u64::MAX, left: 0, per_second }
    }

    fn take(&mut self, now: Instant) -> bool {
        let s = now.as_secs();
        if s != self.second {
            self.second = s;
            self.left = self.per_second;
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }
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

    /// Writes the next output into `buf` (1280 bytes suffice for everything but released
    /// packets, which may be as long as the per-peer queue budget; a longer one is dropped
    /// and counted). Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        while let Some(p) = self.pending.pop_front() {
            match self.emit(now, p, buf) {
                Some(t) => return Some(t),
                None => self.stats.output_dropped += 1,
            }
        }
        loop {
            let r = self.peers.pop_released(buf)?;
            match r.queued {
                Queued::Outbound => {
                    self.stats.released_out += 1;
                    return Some(Transmit { dest: Destination::Udp(r.mapping), len: r.len });
                }
                Queued::Inbound { from } if from == r.mapping => {
                    self.stats.released_in += 1;
                    return Some(Transmit { dest: Destination::Tun, len: r.len });
                }
                Queued::Inbound { .. } => self.count(DropReason::RelayNotVerified),
            }
        }
    }

    fn emit(&mut self, now: Instant, p: Pending, buf: &mut [u8]) -> Option<Transmit> {
        match p {
            Pending::Bubble { src, dst, to } => {
                let len = ipv6::emit_bubble(buf, src, dst, BUBBLE_HOP_LIMIT).ok()?;
                Some(Transmit { dest: Destination::Udp(to), len })
            }
            Pending::Echo { dst, seq } => {
                let link = self.link()?;
                let data = self.key.echo_token(&link.address, &dst, self.echo_id, seq, now.as_secs());
                let echo = Echo { identifier: self.echo_id, sequence: seq, data: &data };
                let len =
                    Icmpv6Repr::EchoRequest(echo).emit_packet(buf, link.address, dst, ECHO_HOP_LIMIT).ok()?;
                Some(Transmit { dest: Destination::Udp(link.server), len })
            }
            Pending::Unreachable { code, src, dst, invoking } => {
                let msg =
                    Icmpv6Repr::DestinationUnreachable(DestinationUnreachable { code, invoking: &invoking });
                let len = msg.emit_packet(buf, src, dst, UNREACHABLE_HOP_LIMIT).ok()?;
                self.stats.unreachables_sent += 1;
                Some(Transmit { dest: Destination::Tun, len })
            }
        }
    }

    fn count(&mut self, r: DropReason) {
        *self.stats.drops.slot(r) += 1;
    }

    fn push(&mut self, p: Pending) {
        if self.pending.len() >= self.limits.max_pending {
            self.stats.output_dropped += 1;
        } else {
            self.pending.push_back(p);
        }
    }

    /// Answers `packet`, read from the TUN, with a destination unreachable of `code`
    /// (RFC 4443 §3.1), unless RFC 4443 §2.4 (e) forbids it or the rate limit is reached.
    fn unreachable(&mut self, now: Instant, code: u8, packet: &[u8]) {
        let Some(head) = packet.get(..ipv6::HEADER_LEN) else { return };
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&head[8..24]);
        dst.copy_from_slice(&head[24..40]);
        let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
        let is_error = head[6] == ipv6::NEXT_HEADER_ICMPV6 && packet.get(40).is_some_and(|&t| t < 128);
        if is_error || src.is_multicast() || src.is_unspecified() || dst.is_multicast() {
            return;
        }
        if !self.unreachables.take(now) {
            self.stats.unreachables_rate_limited += 1;
            return;
        }
        let from = match self.mode {
            Mode::Relay(c) => c.unreachable_source.unwrap_or(dst),
            Mode::Client(Some(l)) => l.address,
            Mode::Client(None) => LINK_LOCAL_RESTRICTED,
        };
        let cut = packet.len().min(MAX_ERROR_LEN - 8);
        let invoking = packet.get(..cut).unwrap_or_default().into();
        self.push(Pending::Unreachable { code, src: from, dst: src, invoking });
    }

    /// The prefix whose addresses are Teredo peers: the own prefix of a client, the
    /// relay's prefix.
    fn teredo_prefix(&self) -> Option<[u8; 4]> {
        match self.mode {
            Mode::Relay(c) => Some(c.prefix.to_be_bytes()),
            Mode::Client(l) => l.map(|l| l.prefix),
        }
    }

    /// Sends the bubbles (Teredo peer) or the echo test (native peer) for `peer`, whose
    /// entry recorded the probe already, and schedules the next try.
    fn send_probe(&mut self, now: Instant, peer: Ipv6Addr, seq: u8) {
        let o = peer.octets();
        let teredo = self.teredo_prefix().is_some_and(|p| o[..4] == p);
        if teredo {
            let t = TeredoAddress::from_octets(&o);
            let direct = SocketAddrV4::new(t.mapped_addr, t.mapped_port);
            let indirect = SocketAddrV4::new(t.server, TEREDO_PORT);
            let (src, send_direct) = match self.mode {
                Mode::Relay(c) => {
                    let iid = self.key.bubble_interface_id(t.mapped_addr, t.mapped_port);
                    let mut a = [0u8; 16];
                    a[0] = 0xfe;
                    a[1] = 0x80;
                    a[8..].copy_from_slice(&iid);
                    (Ipv6Addr::from(a), !c.cone)
                }
                Mode::Client(Some(l)) => (l.address, true),
                Mode::Client(None) => return,
            };
            if send_direct {
                self.push(Pending::Bubble { src, dst: peer, to: direct });
                self.stats.bubbles_sent += 1;
            }
            self.push(Pending::Bubble { src, dst: peer, to: indirect });
            self.stats.bubbles_sent += 1;
        } else {
            self.push(Pending::Echo { dst: peer, seq: u16::from(seq) });
            self.stats.echo_tests_sent += 1;
        }
        if self.retries.len() < self.limits.max_retries {
            self.retries.push_back((now + RETRY_DELAY, peer));
        }
    }

    /// A repetition is due for `peer`.
    fn retry(&mut self, now: Instant, peer: &Ipv6Addr) {
        let Some(p) = self.peers.get_mut(peer) else { return };
        if !p.has_queue() || p.trusted_mapping(now).is_some() {
            return;
        }
        match p.check_probe(now) {
            crate::peers::ProbeCheck::Send => {
                p.record_probe(now);
                let seq = p.probes();
                self.send_probe(now, *peer, seq);
            }
            crate::peers::ProbeCheck::Wait(_) => {}
            crate::peers::ProbeCheck::Exhausted => {
                let mut dropped: Vec<Box<[u8]>> = Vec::new();
                let n = self.peers.discard_queue(peer, |packet, queued| {
                    if queued == Queued::Outbound {
                        dropped.push(packet.into());
                    }
                });
                *self.stats.drops.slot(DropReason::PeerUnreachable) += n as u64;
                for packet in dropped {
                    self.unreachable(now, crate::wire::icmpv6::UNREACH_ADDRESS, &packet);
                }
            }
        }
    }
}
