//! The data path under fuzzing, in both roles: arbitrary bytes read as a sequence of
//! operations (datagrams built or raw, answers to what it sent, TUN packets, time passing,
//! timers, outputs taken into small buffers, configuration changes) on a qualified client
//! or a relay that already has peers, with the invariants a user relies on checked after
//! every step.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use super::ops::Ops;
use super::world::{self, LOCAL, SERVER, World, own, peer, peer_map};
use crate::address::{TEREDO_PREFIX, TeredoAddress};
use crate::peers::{MAX_PROBES, PROBE_WINDOW, PeerTable};
use crate::time::Instant;
use crate::tunnel::{RelayConfig, Role, Stats, TunVerdict, Tunnel, UdpVerdict};
use crate::wire::{Ipv6Packet, TeredoPacket};

/// The most operations one input runs.
const MAX_STEPS: usize = 512;
/// The most bubbles one packet from the TUN may cause (module `tunnel::bubbles`): a
/// client's direct bubble, its bubble to a local peer, a random-port bubble and two
/// indirect ones; a restricted relay's pair.
const CLIENT_BUBBLES_PER_PACKET: u64 = 5;
const RELAY_BUBBLES_PER_PACKET: u64 = 2;

/// Everything the budget of module `tunnel::bubbles` counts against the global rate.
fn budgeted(s: &Stats) -> u64 {
    s.bubbles_sent + s.reply_bubbles_sent + s.advertisements_sent + s.echo_tests_sent
}

/// A qualified Teredo client's data path.
pub fn tunnel_client(data: &[u8]) {
    run(data, false);
}

/// A Teredo relay's data path.
pub fn tunnel_relay(data: &[u8]) {
    run(data, true);
}

fn run(data: &[u8], relay: bool) {
    let mut ops = Ops::new(data);
    let cfg = ops.u8();
    let role = if relay {
        Role::Relay(RelayConfig {
            prefix: TEREDO_PREFIX,
            cone: cfg & 1 != 0,
            unreachable_source: (cfg & 2 != 0).then(|| "2001:db8::53".parse().expect("an address")),
        })
    } else {
        Role::Client
    };
    let mut w = World::new((!relay).then(own), world::limits());
    let mut t = Tunnel::new(role, w.key.clone(), w.limits, w.now).expect("a small table");
    if !relay {
        t.set_qualified(w.now, own(), SERVER);
        if cfg & 4 != 0 {
            t.set_local_address(Some(LOCAL));
        }
        t.set_local_discovery(w.now, cfg & 8 != 0);
    }
    setup(&mut w, &mut t);
    let mut h = Harness {
        max_peers: w.limits.peers.max_peers,
        relay,
        second: (w.now.as_secs(), budgeted(t.stats())),
        probes: HashMap::new(),
    };
    for _ in 0..MAX_STEPS {
        if ops.is_empty() {
            break;
        }
        h.step(&mut w, &mut t, &mut ops);
    }
    t.handle_timeout(w.now);
    w.drain(2048, false, |now, b| t.poll_transmit(now, b));
}

/// A start where the fuzzer finds peers in every state: packets queued for peers 0 to 3,
/// then peers 0 and 1 answer with a bubble from their mapping, and are trusted.
fn setup(w: &mut World, t: &mut Tunnel) {
    let src = w.own.unwrap_or_else(|| "2001:db8::1".parse().expect("an address"));
    for i in 0..4 {
        let p = world::packet(src, peer(i), 17, 64, &[i as u8; 100]);
        if t.handle_tun_packet(w.now, &p) == TunVerdict::Queued {
            w.queued_tun(&p);
        }
    }
    w.drain(2048, false, |now, b| t.poll_transmit(now, b));
    for i in 0..2 {
        let dst = match w.own {
            Some(a) => a,
            None => {
                let m = peer_map(i);
                w.key.bubble_source(*m.ip(), m.port())
            }
        };
        let b = world::packet(peer(i), dst, 59, 255, &[]);
        let _ = t.handle_datagram(w.now, peer_map(i), &b);
        w.drain(2048, false, |now, b| t.poll_transmit(now, b));
    }
}

struct Harness {
    /// The bound on entries set last.
    max_peers: usize,
    relay: bool,
    /// The present second, and [`budgeted`] at its start: the global rate.
    second: (u64, u64),
    /// The packets from the TUN that caused bubbles, by destination, since the
    /// destination was last answered (anything accepted from anyone clears them all) or
    /// got a new entry: RFC 4380 §5.2.6's 4 in 300 s.
    probes: HashMap<Ipv6Addr, Vec<Instant>>,
}

impl Harness {
    fn step(&mut self, w: &mut World, t: &mut Tunnel, ops: &mut Ops<'_>) {
        let op = ops.u8();
        let before = t.peers().len();
        let strangers_before = t.peers().strangers();
        match op % 16 {
            0..=3 => {
                let (from, d) = w.datagram(ops);
                self.datagram(w, t, from, &d);
            }
            4 => {
                let from = w.addr4(ops);
                let d = ops.chunk().to_vec();
                self.datagram(w, t, from, &d);
            }
            5 | 6 => {
                if let Some((from, d)) = w.answer(ops) {
                    self.datagram(w, t, from, &d);
                }
            }
            7..=9 => {
                let p = w.tun_packet(ops);
                self.tun(w, t, &p);
            }
            10 => {
                let p = ops.chunk().to_vec();
                self.tun(w, t, &p);
            }
            11 => w.advance(ops),
            12 => {
                if ops.bool() {
                    w.now = w.now.max(t.poll_timeout());
                }
                let bubbles = t.stats().bubbles_sent;
                t.handle_timeout(w.now);
                if self.relay {
                    // No timer repeats a relay's bubbles: only packets ask for them.
                    assert_eq!(t.stats().bubbles_sent, bubbles, "a relay's timer sent bubbles");
                }
            }
            13 => {
                let len = usize::from(ops.u8()) * 8;
                w.drain(len, false, |now, b| t.poll_transmit(now, b));
            }
            14 => {
                let (from, d) = w.datagram(ops);
                let v = t.handle_discovery(w.now, from, &d);
                assert!(!matches!(v, UdpVerdict::Deliver { .. } | UdpVerdict::Queued));
            }
            _ => self.configure(w, t, ops),
        }
        if op & 0x80 == 0 {
            w.drain(2048, false, |now, b| t.poll_transmit(now, b));
        }
        self.check_rate(w, t);
        let l = w.limits.peers;
        let n = t.peers().len();
        assert!(n <= l.max_peers, "{n} peers, more than the table's {}", l.max_peers);
        assert!(n <= before.max(self.max_peers), "a new peer beyond MaxPeers {}", self.max_peers);
        assert!(t.peers().queued_bytes() <= l.queue_bytes_total, "queued bytes beyond the budget");
        check_strangers(t.peers(), strangers_before);
    }

    /// At most `bubbles_per_second` bubbles, reply bubbles and echo tests per second.
    fn check_rate(&mut self, w: &World, t: &Tunnel) {
        let (second, at_start) = self.second;
        let now = budgeted(t.stats());
        if w.now.as_secs() != second {
            self.second = (w.now.as_secs(), now);
            return;
        }
        let rate = u64::from(w.limits.bubbles_per_second);
        assert!(now - at_start <= rate, "{} bubbles in one second, beyond {rate}", now - at_start);
    }

    fn configure(&mut self, w: &mut World, t: &mut Tunnel, ops: &mut Ops<'_>) {
        self.probes.clear();
        match ops.u8() % 6 {
            0 => {
                let n = usize::from(ops.u8() % 12);
                if t.set_max_peers(n) {
                    self.max_peers = n;
                }
            }
            1 if !self.relay => {
                let a = if ops.bool() { Some(LOCAL) } else { Some(w.addr4(ops)) };
                t.set_local_address(a.filter(|_| ops.bool()));
            }
            2 if !self.relay => t.set_local_discovery(w.now, ops.bool()),
            3 if !self.relay => {
                // Requalified, perhaps with another address, or lost.
                if ops.bool() {
                    t.reset(w.now);
                    w.own = None;
                } else {
                    let a = if ops.bool() { own() } else { peer(usize::from(ops.u8())) };
                    t.set_qualified(w.now, a, SERVER);
                    w.own = Some(a);
                }
            }
            _ => {}
        }
    }

    fn datagram(&mut self, w: &mut World, t: &mut Tunnel, from: SocketAddrV4, d: &[u8]) {
        let inserted = t.peers().stats().inserted;
        let len = t.peers().len();
        let v = t.handle_datagram(w.now, from, d);
        if !matches!(v, UdpVerdict::Drop(_)) {
            self.probes.clear();
        }
        if self.relay {
            // Inbound traffic makes at most one entry, a stranger's: untrusted, its packet
            // held until a verified bubble (module `tunnel::relearn`); few of them.
            let made = t.peers().stats().inserted - inserted;
            assert!(made <= 1 && t.peers().len() <= len + 1, "a relay made {made} peers from a datagram");
            let src = TeredoPacket::parse(d).ok().map(|p| p.ipv6.src());
            if made == 1 {
                let src = src.expect("an entry from a datagram that parses");
                if t.peers().contains(&src) {
                    assert!(t.is_relearning(&src), "a relay made a peer that is no stranger");
                    assert!(
                        t.peers().get(&src).is_some_and(|p| !p.is_trusted()),
                        "a relay trusted a stranger at once"
                    );
                } else {
                    // Made and removed at once (its bubble could not go): no entry more.
                    assert!(t.peers().len() <= len, "a relay made a peer for another address");
                }
            }
            if v == UdpVerdict::Queued {
                let src = src.expect("a queued datagram parses");
                assert!(t.is_relearning(&src), "a relay holds only a stranger's packets");
            }
            assert!(t.relearning() <= w.limits.peers.stranger_budget());
        }
        check_udp_verdict(w, t.peers(), self.relay, from, d, v);
    }

    fn tun(&mut self, w: &mut World, t: &mut Tunnel, p: &[u8]) {
        let dst: Option<Ipv6Addr> = p.get(24..40).and_then(|o| <[u8; 16]>::try_from(o).ok()).map(Into::into);
        let known = dst.is_some_and(|d| t.peers().get(&d).is_some());
        let bubbles = t.stats().bubbles_sent;
        let v = t.handle_tun_packet(w.now, p);
        let caused = t.stats().bubbles_sent - bubbles;
        let most = if self.relay { RELAY_BUBBLES_PER_PACKET } else { CLIENT_BUBBLES_PER_PACKET };
        assert!(caused <= most, "{caused} bubbles for one packet");
        if let Some(d) = dst {
            let sent = self.probes.entry(d).or_default();
            if !known {
                sent.clear();
            }
            if caused > 0 {
                let now = w.now;
                sent.retain(|&at| now.saturating_since(at) < PROBE_WINDOW);
                if let Some(&last) = sent.last() {
                    assert!(now.saturating_since(last) >= Duration::from_secs(2), "bubbles 2 s apart");
                }
                sent.push(now);
                assert!(sent.len() <= usize::from(MAX_PROBES), "{} probes to {d} in 300 s", sent.len());
            }
        }
        check_tun_verdict(w, t.peers(), p, v);
    }
}

/// What the data path decided for the datagram `d` from `from`: a delivered packet is
/// whole, from a verified source (a relay's: a peer it knows, trusted at `from`), to the
/// client's own address.
pub(super) fn check_udp_verdict(
    w: &mut World,
    peers: &PeerTable,
    relay: bool,
    from: SocketAddrV4,
    d: &[u8],
    v: UdpVerdict,
) {
    match v {
        UdpVerdict::Deliver { range } => {
            let inner = d.get(range).expect("the range is within the datagram");
            let (ip, rest) = Ipv6Packet::parse(inner).expect("what is delivered parses");
            assert!(rest.is_empty(), "a delivered packet is whole");
            assert!(from.port() != 0, "delivered from port 0");
            let src = ip.src();
            if relay {
                let p = peers.get(&src).expect("a relay delivers only from a known peer");
                assert!(p.is_trusted_from(from), "a relay delivers only from a peer trusted at {from}");
            } else {
                let t_src = TeredoAddress::from_ipv6_with_any_prefix(&src);
                let embedded = SocketAddrV4::new(t_src.mapped_addr, t_src.mapped_port) == from;
                let trusted = peers.get(&src).is_some_and(|p| p.is_trusted_from(from));
                assert!(embedded || trusted, "a client delivered from {src} at {from}, unverified");
                assert_eq!(Some(ip.dst()), w.own, "a client delivers only to its own address");
            }
        }
        UdpVerdict::Queued => w.queued_udp(d),
        UdpVerdict::Consumed => {
            assert!(TeredoPacket::parse(d).is_ok(), "consumed a malformed datagram");
        }
        UdpVerdict::Drop(_) => {}
    }
}

/// What the data path decided for the TUN packet `p`: sent only to the trusted, valid
/// mapping of a known peer.
/// The strangers of `peers` (see [`crate::peers`]) are as many as its entries marked so,
/// and no step makes them more than their budget (`before` of them were there before the
/// step: a reload that lowers MaxPeers lowers the budget and evicts none, as it evicts no
/// other entry).
pub(super) fn check_strangers(peers: &PeerTable, before: usize) {
    let marked = peers.iter().filter(|p| p.is_stranger()).count();
    assert_eq!(marked, peers.strangers(), "the count of strangers");
    let budget = peers.limits().stranger_budget();
    assert!(marked <= budget.max(before), "{marked} strangers, beyond their budget of {budget}");
}

pub(super) fn check_tun_verdict(w: &mut World, peers: &PeerTable, p: &[u8], v: TunVerdict) {
    match v {
        TunVerdict::Send { dst } => {
            let o: [u8; 16] =
                p.get(24..40).and_then(|o| o.try_into().ok()).expect("a packet sent has a header");
            let peer = peers.get(&o.into()).expect("a packet goes to a known peer");
            assert_eq!(peer.trusted_mapping(w.now), Some(dst), "sent to an untrusted mapping");
            assert!(dst.port() != 0);
        }
        TunVerdict::SendFrom { port, dst } => {
            // RFC 6081 §5.4: from a random socket, to a known peer.
            let o: [u8; 16] =
                p.get(24..40).and_then(|o| o.try_into().ok()).expect("a packet sent has a header");
            assert!(peers.get(&o.into()).is_some(), "a packet goes to a known peer");
            assert!(dst.port() != 0 && port != 0);
        }
        TunVerdict::Queued => w.queued_tun(p),
        TunVerdict::Drop(_) => {}
    }
}
