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
//!   the repetition of echo tests for peers with queued packets (bubbles are never
//!   repeated from a timer).
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
//! A Teredo destination whose embedded server or mapped IPv4 is not global unicast, or
//! whose mapped port is 0, is dropped; otherwise the packet is queued and a direct bubble
//! (to the embedded mapping) and an indirect one (through the destination's server, UDP
//! 3544) go out, one set per packet that asks (never from a timer), at most one set per
//! 2 s and 4 sets per 300 s without an answer, then unreachable (Miredo §4.7); see
//! module `bubbles` for this budget, the per-target budget of reply bubbles and the
//! global [`Limits::bubbles_per_second`].
//! The client's direct bubble comes from its Teredo address; its indirect one, like all of
//! a relay's, from the keyed link-local source [`TokenKey::bubble_source`] (below).
//!
//! From UDP: a bubble from the own server (its IPv4 address and port 3544) is answered
//! with a direct bubble to its origin indication (hole punching) and not delivered. Then:
//! a trusted peer whose mapping is the outer source is accepted (case 1); a verified echo
//! reply, or a destination unreachable that carries our echo request, makes its native
//! source trusted with the relay's mapping (case 2); a Teredo source whose embedded
//! mapping is the outer source, or whose bubble answers our keyed bubble, is trusted
//! (case 3, and Miredo's `CheckBubble` below); a native source from an unverified
//! relay is queued and tested through the server (case 6). A packet for another
//! destination than the own address (link-local allowed for bubbles) is dropped.
//!
//! Entries made by what the client accepts without asking (case 3 by the embedded mapping
//! alone, which anybody can spoof from 2^48 addresses per IPv4 mapping; indirect and local
//! discovery bubbles; the packets of case 6) are *strangers*, held in a small evictable
//! budget of the list of peers ([`crate::peers`]); a bubble with our nonce or keyed
//! destination, or an answered echo test, makes them ordinary entries. The host's own
//! destinations (from the TUN) and verified peers always find room.
//!
//! # Relay (RFC 4380 §5.4.1, §5.4.2)
//!
//! From the TUN: only destinations under the relay's prefix (others: unreachable code 3,
//! rate-limited); then as a client's Teredo destinations, except that a cone relay sends
//! only the indirect bubble. The relay's bubbles come from `fe80::<token>` where the
//! interface identifier is [`TokenKey::bubble_interface_id`] of the peer's mapping, as
//! Miredo's. From UDP: the source must be under the prefix and in the list of peers
//! (created by outbound traffic), and its mapping must check (trusted and equal, embedded
//! and equal, or a reply to our keyed bubble); it is then trusted and its queue released.
//! A packet from an unknown Teredo source (a restarted relay's clients) is held in a new
//! untrusted entry, a *stranger*, while the keyed indirect bubble makes the source prove
//! its address; a stranger is trusted only by a reply that checks, and expires otherwise
//! (module `relearn`: few strangers, one bubble per packet at most, all counted).
//!
//! # Peers behind symmetric NATs (Miredo's `CheckBubble`)
//!
//! A peer behind a symmetric NAT answers from a mapping other than the one its address
//! embeds (the one its server saw), so the RFC 4380 checks refuse it. Our indirect bubbles
//! to a peer come from `fe80::<token>`, where the token is keyed by the peer's embedded
//! mapping; the peer's reply bubble swaps the addresses, so a bubble whose destination is
//! that token proves that its sender received our bubble, and the peer is trusted at the
//! mapping the reply comes from. Miredo's relays and clients do the same, so each side
//! verifies the other's replies (miredo-facts §4.6–4.7).
//!
//! # RFC 6081
//!
//! - Symmetric NAT Support (§5.2): every indirect bubble carries our Nonce trailer for the
//!   peer ([`TokenKey::bubble_nonce`], keyed, so that no per-peer state holds it); the
//!   direct bubbles that answer an indirect one carry the peer's nonce; a direct bubble
//!   from a mapping other than its source's is accepted when it carries our nonce, and the
//!   peer is trusted at that mapping. A client sends its indirect bubbles twice: from the
//!   keyed link-local source (for Miredo peers) and from its Teredo address (a peer needs
//!   it to answer with indirect bubbles of its own, §6.1 packet 4). Such an answer goes
//!   out for an indirect bubble from a Teredo client we do not trust, and for a direct
//!   bubble that nothing proves, within the peer's bubble budget (or, for a stranger's
//!   direct bubble, which makes no entry, within [`Limits::tests_per_second`]). A peer
//!   trusted at a mapping learnt this way gets a direct bubble there at once, and the
//!   answers to its later indirect bubbles go there (§6.1 step 10).
//! - Hairpinning (§5.6): a client that knows its local address
//!   ([`Tunnel::set_local_address`]) advertises it in an Alternate Address trailer of its
//!   indirect bubbles; the answers go to each advertised address too (at most four), so
//!   that two clients behind one NAT that does not hairpin meet on their LAN.
//! - Server Load Reduction (§5.7): a silent trusted peer whose bubbles carried nonces gets
//!   up to [`MAX_SOLICITATIONS`] direct bubbles with a Neighbor Discovery Option trailer
//!   (solicitation) before the indirect bubbles; a solicitation that passes the checks is
//!   answered with an advertisement. A peer that never sent a nonce (Miredo) is not
//!   solicited: it would not answer, and the flow would wait 6 s for nothing.
//! - UPnP-Enabled Symmetric NAT (§5.3, module `upnp`): behind a single UPnP symmetric NAT
//!   ([`Tunnel::set_nat`]), a peer trusted at a mapping other than its embedded one gets
//!   its packets at the embedded one.
//! - Port-Preserving Symmetric NAT (§5.4, module `random_port`) and Sequential
//!   Port-Symmetric NAT (§5.5, module `echo_test`): a random port per untrusted peer, its
//!   external port (the same port, or the echo test's prediction) advertised in Random
//!   Port trailers, direct bubbles between the two sides' random ports; packets go from the
//!   port the peer was last heard on ([`TunVerdict::SendFrom`], [`Destination::UdpFrom`]).
//!   The I/O layer keeps one UDP socket per port of [`Tunnel::random_ports`] (at most
//!   [`MAX_RANDOM_PEERS`]) and hands what they receive to [`Tunnel::handle_random_datagram`].
//!   The per-peer state lives in a small table beside the list of peers (module `random`);
//!   the peer entry's bit 7 says a peer has some, so that the trusted fast path tests one
//!   bit for both extensions.
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
//! - A client's trusted native peer that has sent nothing for [`RETEST_AFTER`] (3 s)
//!   while packets go to it is tested again (§5.2.9), at most once per 3 s while its
//!   mapping is valid and outside the budget of §5.2.6, so that a flow leaves a dead relay
//!   (or follows an anycast route that moved) within seconds; Miredo keeps sending to the
//!   relay until the entry expires, 30 s after the last reception.
//! - When the budget is spent, the packet is not queued (Miredo queues it anyway).
//! - Queues flush in arrival order (Miredo: newest first), bounded per peer and in total.
//! - A new native source from an unverified relay (client case 6) starts an echo test only
//!   within a global budget per second ([`Limits::tests_per_second`]), so that spoofed
//!   packets cannot make the client send unbounded echo tests; beyond it they are dropped.
//! - The echo test's retry budget reuses the bubble rule (4 in 300 s; Miredo keeps the
//!   peer unreachable until its entry expires).
//! - RFC 4380 §5.2.6 gives bubbles the Teredo address as source; our indirect bubbles
//!   carry the keyed link-local source instead (Miredo's relays always did, and clients
//!   of every implementation answer them), so that replies from symmetric NATs verify.
//! - Reply bubbles are only sent to global unicast origins (not port 0), to the own address
//!   only.
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

#[cfg(test)]
mod bubble_tests;
mod bubbles;
mod echo_test;
#[cfg(test)]
mod extension_tests;
#[cfg(test)]
mod flood_tests;
mod indirect;
mod limits;
mod output;
mod random;
mod random_port;
mod receive;
mod relearn;
mod stats;
#[cfg(test)]
mod tests;
mod transmit;
mod upnp;
mod verdict;
mod verify;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use crate::address::{TEREDO_PORT, TEREDO_PREFIX};

/// Whether `a` may be an alternate address (RFC 6081 §4.3): a unicast IPv4 address (not
/// unspecified, loopback, multicast or broadcast) and a port other than 0.
fn is_alternate(a: SocketAddrV4) -> bool {
    let ip = a.ip();
    a.port() != 0 && !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast() && !ip.is_broadcast()
}
use crate::client::NatFindings;
use crate::nonce::TokenKey;
use crate::peers::{AllocationFailed, PeerTable};
use crate::time::Instant;

use bubbles::BubbleBudget;
pub use bubbles::{REPLIES_PER_TARGET, REPLY_BUCKETS, REPLY_WINDOW};
use limits::RateLimit;
pub use limits::{DEFAULT_BUBBLE_RATE, Limits};
use output::Pending;
pub use random::MAX_RANDOM_PEERS;
use random::RandomPeers;
pub use random_port::PEER_REFRESH_INTERVAL;
pub use relearn::STRANGER_LIFETIME;
use relearn::Strangers;
pub use stats::{DropCounts, DropReason, Stats, peer_counters};
pub use transmit::RETEST_AFTER;
pub use verdict::{Destination, Transmit, TunVerdict, UdpVerdict};

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
/// The direct bubbles soliciting an answer (RFC 6081 §5.7.2) sent to a silent peer that
/// speaks RFC 6081 before the bubbles of RFC 4380 §5.2.6 take over.
pub const MAX_SOLICITATIONS: u8 = 3;
/// Alternate addresses (RFC 6081 §4.3) answered per indirect bubble: at most four fit.
const MAX_ALTERNATES: usize = 4;
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
    /// The per-target reply budget and the global bubble rate (module `bubbles`).
    budget: BubbleBudget,
    /// A client's local IPv4 address and port, for the hairpinning extension (RFC 6081
    /// §5.6): sent in its indirect bubbles so that a peer behind the same NAT reaches it.
    local: Option<SocketAddrV4>,
    /// Local client discovery (RFC 4380 §5.2.8), when on: the next discovery bubble and
    /// how many went.
    discovery: Option<(Instant, u32)>,
    /// A client's NAT as qualification found it (RFC 6081 §5.3–§5.5), and its server's
    /// secondary address (for echo tests).
    nat: NatFindings,
    secondary: Option<Ipv4Addr>,
    /// The random ports and the per-peer state of RFC 6081 §5.4 and §5.5.
    random: RandomPeers,
    /// Random ports chosen so far: the input of the next one.
    ports_chosen: u64,
    /// When the Peer Refresh Timer (RFC 6081 §5.4.2) expires next.
    peer_refresh: Instant,
    /// A relay's unknown senders, held unverified (module `relearn`).
    strangers: Strangers,
    stats: Stats,
}

impl Tunnel {
    /// A data path with this role. `key` makes the echo-test tokens, the relay's bubble
    /// sources and the peer table's hash key.
    pub fn new(role: Role, key: TokenKey, limits: Limits, now: Instant) -> Result<Self, AllocationFailed> {
        let peers = PeerTable::new(limits.peers, key.hash_key("teredo peer table"), now)?;
        let id = key.hash_key("teredo echo identifier");
        let budget = BubbleBudget::new(key.hash_key("teredo reply budget"), limits.bubbles_per_second);
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
            budget,
            local: None,
            discovery: None,
            nat: NatFindings::default(),
            secondary: None,
            random: RandomPeers::default(),
            ports_chosen: 0,
            peer_refresh: now + PEER_REFRESH_INTERVAL,
            strangers: Strangers::default(),
            stats: Stats::default(),
        })
    }

    /// Tells a client what qualification found about its NAT (RFC 6081 §5.3.3, §5.4.3,
    /// §5.5): it selects the UPnP, port-preserving and sequential port-symmetric rules
    /// ([`NatFindings`]). `secondary` is the server's secondary address, where echo tests
    /// send their second RS (§5.5.4.1.1). Ignored for a relay.
    pub fn set_nat(&mut self, nat: NatFindings, secondary: Ipv4Addr) {
        if matches!(self.mode, Mode::Client(_)) {
            self.nat = nat;
            self.secondary = Some(secondary);
        }
    }

    /// The local ports of the client's random sockets (RFC 6081 §5.4.4.2, §5.5.4.1: "begin
    /// listening on that port"), at most [`MAX_RANDOM_PEERS`]: the I/O layer binds one UDP
    /// socket for each (on the Teredo socket's address), closes those no longer listed,
    /// hands what they receive to [`Tunnel::handle_random_datagram`] and sends from them
    /// what [`Destination::UdpFrom`] and [`TunVerdict::SendFrom`] say. The set changes only
    /// when [`Tunnel::random_ports_generation`] does.
    pub fn random_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.random.ports()
    }

    /// Changes whenever [`Tunnel::random_ports`] does.
    pub fn random_ports_generation(&self) -> u64 {
        self.random.generation()
    }

    /// The I/O layer could not bind the random port `port` (it is in use): the peer goes on
    /// without it, and a later bubble picks another.
    pub fn random_port_unavailable(&mut self, port: u16) {
        if let Some(peer) = self.random.by_port(port).map(|e| e.peer) {
            self.random.close(&peer);
            self.stats.random_ports_unavailable += 1;
        }
    }

    /// Turns a client's local discovery (RFC 4380 §5.2.8) on or off: when on, a discovery
    /// bubble goes to [`crate::address::DISCOVERY_IPV4`] at once when qualified, then every
    /// 200 to 300 s; the I/O layer hands the datagrams it receives on that group to
    /// [`Tunnel::handle_discovery`].
    pub fn set_local_discovery(&mut self, now: Instant, on: bool) {
        self.discovery = match (on, self.discovery) {
            (false, _) => None,
            (true, Some(d)) => Some(d),
            (true, None) => Some((now, 0)),
        };
    }

    /// Sets a client's local IPv4 address and port (its socket's, as its LAN sees it), or
    /// `None`: advertised in its indirect bubbles (RFC 6081 §5.6.4.1) when it is a unicast
    /// address other than the mapping.
    pub fn set_local_address(&mut self, local: Option<SocketAddrV4>) {
        self.local = local.filter(|a| is_alternate(*a));
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
            if let Some((_, n)) = self.discovery {
                self.discovery = Some((now, n));
            }
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
        self.random.clear();
        self.strangers.clear();
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

    /// Every counter by name: the data path's ([`Stats::counters`]) and its list of
    /// peers' ([`peer_counters`]).
    pub fn counters(&self) -> crate::status::Counters {
        let mut c = self.stats.counters();
        c.extend(peer_counters(&self.peers.stats()));
        c
    }

    /// The data path's snapshot at `now` as a relay's (a client's is the endpoint's), with
    /// up to [`crate::status::MAX_PEER_LIST`] peers listed when `peers`.
    pub fn relay_status(&self, now: Instant, peers: bool) -> crate::status::RelayStatus {
        let max = if peers { crate::status::MAX_PEER_LIST } else { 0 };
        crate::status::RelayStatus {
            prefix: self.teredo_prefix().map_or(0, u32::from_be_bytes),
            peers: self.peers.len(),
            peer_list: crate::status::list_peers(&self.peers, now, max),
            counters: self.counters(),
        }
    }

    /// The next instant at which [`Tunnel::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.peers.poll_timeout();
        if let Some(&(at, _)) = self.retries.front() {
            t = t.min(at);
        }
        if let Some(at) = self.strangers.next_deadline() {
            t = t.min(at);
        }
        if let Some((at, _)) = self.discovery
            && self.link().is_some()
        {
            t = t.min(at);
        }
        if !self.random.is_empty() {
            t = t.min(self.peer_refresh);
            for e in self.random.iter() {
                if let Some(at) = e.echo.and_then(|x| x.failover) {
                    t = t.min(at);
                }
            }
        }
        t
    }

    /// Runs what is due at `now`: a step of the peers' expiry sweep, and the repetition of
    /// echo tests for peers whose packets still wait (their outputs are then
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
        self.expire_strangers(now);
        if let Some((at, n)) = self.discovery
            && at <= now
            && let Some(l) = self.link()
        {
            self.push(Pending::Discovery { src: l.address });
            self.stats.discovery_bubbles_sent += 1;
            self.discovery = Some((now + self.key.discovery_delay(n), n.wrapping_add(1)));
        }
        if !self.random.is_empty() {
            self.echo_failovers(now);
            if self.peer_refresh <= now {
                self.refresh_random_peers(now);
            }
        } else {
            self.peer_refresh = now + PEER_REFRESH_INTERVAL;
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
