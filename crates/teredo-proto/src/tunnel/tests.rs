//! Tests of the data path with virtual time: two clients and a relay around the real
//! stateless server on an in-memory network without NATs, the rate limits, the echo
//! test, spoofing, the relay's refusal of unknown peers, queues and expiry, and a
//! property test over arbitrary inputs.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use proptest::prelude::*;
use zerocopy::IntoBytes;

use super::*;
use crate::address::LINK_LOCAL_RESTRICTED;
use crate::address::{Flags, TEREDO_PREFIX, TeredoAddress};
use crate::peers::PeerLimits;
use crate::server::{Action, Local, Server, ServerConfig};
use crate::wire::icmpv6::{self, Message};
use crate::wire::icmpv6::{DestinationUnreachable, Echo, Icmpv6Repr};
use crate::wire::ipv6;
use crate::wire::ipv6::{Ipv6Header, Ipv6Packet};
use crate::wire::{OriginIndication, TeredoPacket, encap};

#[path = "relearn_tests.rs"]
mod relearn;

pub(super) const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVER2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub(super) const A_MAP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 40000);
pub(super) const B_MAP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 20), 50000);
const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 200), 3545);
pub(super) const NATIVE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

pub(super) fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

pub(super) fn ms(m: u64) -> Instant {
    Instant::from_millis(m)
}

pub(super) fn teredo(map: SocketAddrV4, flags: u16) -> Ipv6Addr {
    TeredoAddress {
        prefix: TEREDO_PREFIX,
        server: SERVER,
        flags: Flags(flags),
        mapped_port: map.port(),
        mapped_addr: *map.ip(),
    }
    .to_ipv6()
}

pub(super) fn a_addr() -> Ipv6Addr {
    teredo(A_MAP, 0x1234 & Flags::RANDOM_MASK)
}

pub(super) fn b_addr() -> Ipv6Addr {
    teredo(B_MAP, 0x0567 & Flags::RANDOM_MASK)
}

pub(super) fn key(b: u8) -> TokenKey {
    TokenKey::new([b; 32])
}

pub(super) fn small_limits() -> Limits {
    Limits { peers: PeerLimits { max_peers: 1000, ..PeerLimits::default() }, ..Limits::default() }
}

pub(super) fn client(addr: Ipv6Addr, k: u8) -> Tunnel {
    let mut t = Tunnel::new(Role::Client, key(k), small_limits(), Instant::ZERO).unwrap();
    t.set_qualified(Instant::ZERO, addr, SERVER);
    t
}

pub(super) fn relay(cone: bool) -> Tunnel {
    let c = RelayConfig { cone, ..RelayConfig::default() };
    Tunnel::new(Role::Relay(c), key(9), small_limits(), Instant::ZERO).unwrap()
}

/// A UDP-in-IPv6 data packet with `marker` repeated in its `len`-byte payload.
pub(super) fn data(src: Ipv6Addr, dst: Ipv6Addr, len: u16, marker: u8) -> Vec<u8> {
    let mut p = Ipv6Header::new(src, dst, 17, 64, len).as_bytes().to_vec();
    p.resize(40 + usize::from(len), marker);
    p
}

/// Every output of `t`.
pub(super) fn drain(t: &mut Tunnel, now: Instant) -> Vec<(Destination, Vec<u8>)> {
    let mut buf = [0u8; 1500];
    let mut out = vec![];
    while let Some(tx) = t.poll_transmit(now, &mut buf) {
        out.push((tx.dest, buf[..tx.len].to_vec()));
    }
    out
}

fn parse(b: &[u8]) -> TeredoPacket<'_> {
    TeredoPacket::parse(b).unwrap()
}

/// The in-memory Internet: tunnels at their mappings, the real server at 192.0.2.1,
/// a native host at 2001:db8::1 that answers echo requests and routes 2001::/32 to the
/// relay (when there is one).
struct Net {
    nodes: HashMap<SocketAddrV4, Tunnel>,
    server: Server,
    relay: Option<SocketAddrV4>,
    in_flight: VecDeque<(SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    /// What each node wrote to its TUN.
    tun: HashMap<SocketAddrV4, Vec<Vec<u8>>>,
    /// What the native host received.
    native_rx: Vec<Vec<u8>>,
    /// Every datagram sent: (from, to, bytes).
    log: Vec<(SocketAddrV4, SocketAddrV4, Vec<u8>)>,
    /// Mappings that drop everything they are sent (a host that is gone).
    black_holes: Vec<SocketAddrV4>,
}

impl Net {
    fn new() -> Self {
        let server = Server::new(ServerConfig {
            primary: SERVER,
            secondary: SERVER2,
            prefix: TEREDO_PREFIX,
            mtu: 1280,
        });
        Self {
            nodes: HashMap::new(),
            server,
            relay: None,
            in_flight: VecDeque::new(),
            tun: HashMap::new(),
            native_rx: vec![],
            log: vec![],
            black_holes: vec![],
        }
    }

    fn node(&mut self, at: SocketAddrV4) -> &mut Tunnel {
        self.nodes.get_mut(&at).unwrap()
    }

    /// Collects a node's outputs.
    fn collect(&mut self, at: SocketAddrV4, now: Instant) {
        let out = drain(self.node(at), now);
        for (dest, bytes) in out {
            match dest {
                Destination::Udp(to) => {
                    self.log.push((at, to, bytes.clone()));
                    self.in_flight.push_back((at, to, bytes));
                }
                Destination::Tun => self.tun_write(at, now, bytes),
                Destination::UdpFrom { .. } => panic!("no random port in these tests"),
            }
        }
    }

    /// A node wrote `bytes` to its TUN: kept, except that what a relay writes for the
    /// native host reaches it.
    fn tun_write(&mut self, at: SocketAddrV4, now: Instant, bytes: Vec<u8>) {
        let to_native = Ipv6Packet::parse(&bytes).is_ok_and(|(p, _)| p.dst() == NATIVE);
        if Some(at) == self.relay && to_native {
            self.native(now, bytes);
        } else {
            self.tun.entry(at).or_default().push(bytes);
        }
    }

    /// The native host: answers echo requests, through the relay.
    fn native(&mut self, now: Instant, bytes: Vec<u8>) {
        let (p, _) = Ipv6Packet::parse(&bytes).unwrap();
        if let Ok(Message::EchoRequest(e)) = Message::parse(&p) {
            let mut buf = [0u8; 1500];
            let n = Icmpv6Repr::EchoReply(e).emit_packet(&mut buf, NATIVE, p.src(), 64).unwrap();
            self.tun_read(self.relay.unwrap(), now, buf[..n].to_vec());
        }
        self.native_rx.push(bytes);
    }

    /// A packet read from `at`'s TUN.
    fn tun_read(&mut self, at: SocketAddrV4, now: Instant, packet: Vec<u8>) -> TunVerdict {
        let v = self.node(at).handle_tun_packet(now, &packet);
        if let TunVerdict::Send { dst } = v {
            self.log.push((at, dst, packet.clone()));
            self.in_flight.push_back((at, dst, packet));
        }
        self.collect(at, now);
        v
    }

    /// Runs the network until nothing is in flight.
    fn run(&mut self, now: Instant) {
        let mut guard = 0;
        while let Some((from, to, bytes)) = self.in_flight.pop_front() {
            guard += 1;
            assert!(guard < 10_000, "the network does not settle");
            if self.black_holes.contains(&to) {
                continue;
            }
            if to == SocketAddrV4::new(SERVER, 3544) {
                let mut out = [0u8; 1500];
                match self.server.handle_datagram(Local::Primary, from, &bytes, &mut out) {
                    Action::SendUdp { to: dst, len, .. } => {
                        let sent = out[..len].to_vec();
                        self.log.push((to, dst, sent.clone()));
                        self.in_flight.push_back((to, dst, sent));
                    }
                    Action::SendIpv6 { start, len, .. } => {
                        self.native(now, bytes[start..start + len].to_vec())
                    }
                    Action::Drop(_) => {}
                }
                continue;
            }
            if !self.nodes.contains_key(&to) {
                continue;
            }
            let v = self.node(to).handle_datagram(now, from, &bytes);
            if let UdpVerdict::Deliver { range } = v {
                self.tun_write(to, now, bytes[range].to_vec());
            }
            self.collect(to, now);
        }
    }

    /// Runs every node's timers up to `now`.
    fn tick(&mut self, now: Instant) {
        let nodes: Vec<_> = self.nodes.keys().copied().collect();
        for at in nodes {
            while self.node(at).poll_timeout() <= now {
                self.node(at).handle_timeout(now);
            }
            self.collect(at, now);
        }
        self.run(now);
    }
}

fn two_clients() -> Net {
    let mut net = Net::new();
    net.nodes.insert(A_MAP, client(a_addr(), 1));
    net.nodes.insert(B_MAP, client(b_addr(), 2));
    net
}

#[test]
fn client_to_client_bubbles_then_trusted_then_data() {
    let mut net = two_clients();
    let p1 = data(a_addr(), b_addr(), 100, 0xa1);
    assert_eq!(net.node(A_MAP).handle_tun_packet(secs(1), &p1), TunVerdict::Queued);
    // Exactly a direct bubble to B's mapping and an indirect one through B's server.
    // The direct one comes from A's Teredo address, the indirect ones from A's keyed
    // link-local source for B (Miredo's scheme) and from A's address (RFC 6081).
    let out = drain(net.node(A_MAP), secs(1));
    assert_eq!(out.len(), 3);
    let mut expected = [0u8; 40];
    ipv6::emit_bubble(&mut expected, a_addr(), b_addr(), BUBBLE_HOP_LIMIT).unwrap();
    assert_eq!(out[0], (Destination::Udp(B_MAP), expected.to_vec()));
    // The indirect one carries A's nonce for B (RFC 6081 §4.2).
    let token = key(1).bubble_source(*B_MAP.ip(), B_MAP.port());
    ipv6::emit_bubble(&mut expected, token, b_addr(), BUBBLE_HOP_LIMIT).unwrap();
    let nonce = key(1).bubble_nonce(&b_addr());
    let mut with_nonce = expected.to_vec();
    with_nonce.extend_from_slice(&[0x01, 0x04]);
    with_nonce.extend_from_slice(&nonce);
    assert_eq!(out[1], (Destination::Udp(SocketAddrV4::new(SERVER, 3544)), with_nonce));
    ipv6::emit_bubble(&mut expected, a_addr(), b_addr(), BUBBLE_HOP_LIMIT).unwrap();
    let mut with_nonce = expected.to_vec();
    with_nonce.extend_from_slice(&[0x01, 0x04]);
    with_nonce.extend_from_slice(&nonce);
    assert_eq!(out[2], (Destination::Udp(SocketAddrV4::new(SERVER, 3544)), with_nonce));
    for (d, b) in out {
        let Destination::Udp(to) = d else { panic!() };
        net.in_flight.push_back((A_MAP, to, b));
    }
    net.run(secs(1));
    // B trusted A from the direct bubble, A trusted B from B's reply bubble, and A's
    // queued packet reached B's TUN unchanged.
    assert_eq!(net.tun.get(&B_MAP).unwrap(), &vec![p1.clone()]);
    assert_eq!(net.node(A_MAP).peers().get(&b_addr()).unwrap().mapping(), Some(B_MAP));
    assert_eq!(net.node(B_MAP).peers().get(&a_addr()).unwrap().mapping(), Some(A_MAP));
    // The server relayed the indirect bubble to B with A's mapping as origin, and B
    // answered A directly with a bubble from B to A's token.
    let relayed = net.log.iter().find(|(f, t, _)| f.ip() == &SERVER && *t == B_MAP).unwrap();
    assert_eq!(parse(&relayed.2).origin, Some(OriginIndication { addr: *A_MAP.ip(), port: A_MAP.port() }));
    let mut reply = [0u8; 40];
    ipv6::emit_bubble(&mut reply, b_addr(), token, BUBBLE_HOP_LIMIT).unwrap();
    let mut reply = reply.to_vec();
    reply.extend_from_slice(&[0x01, 0x04]);
    reply.extend_from_slice(&nonce);
    assert!(net.log.iter().any(|(f, t, b)| *f == B_MAP && *t == A_MAP && b[..] == reply[..]));
    // Now the fast path in both directions.
    let p2 = data(a_addr(), b_addr(), 500, 0xa2);
    assert_eq!(net.tun_read(A_MAP, secs(2), p2.clone()), TunVerdict::Send { dst: B_MAP });
    let p3 = data(b_addr(), a_addr(), 60, 0xb3);
    assert_eq!(net.tun_read(B_MAP, secs(2), p3.clone()), TunVerdict::Send { dst: A_MAP });
    net.run(secs(2));
    assert_eq!(net.tun.get(&B_MAP).unwrap(), &vec![p1, p2]);
    assert_eq!(net.tun.get(&A_MAP).unwrap(), &vec![p3]);
    let s = net.node(A_MAP).stats();
    assert_eq!((s.sent, s.queued_out, s.released_out, s.bubbles_sent), (1, 1, 1, 3));
    assert_eq!(s.drops.total(), 0);
}

#[test]
fn headers_alone_decide_only_for_a_trusted_peer() {
    let mut net = two_clients();
    let p1 = data(a_addr(), b_addr(), 100, 0xa1);
    // No peer yet: the whole packet is needed, and asking changes nothing.
    assert_eq!(net.node(A_MAP).handle_tun_headers(secs(1), &p1[..40]), None);
    assert!(net.node(A_MAP).peers().get(&b_addr()).is_none());
    assert_eq!(net.node(A_MAP).stats().sent, 0);
    assert!(drain(net.node(A_MAP), secs(1)).is_empty(), "no bubble for headers alone");
    assert_eq!(net.tun_read(A_MAP, secs(1), p1), TunVerdict::Queued);
    net.run(secs(1));
    // B is trusted now: its headers are enough, and count as a packet sent.
    let p2 = data(a_addr(), b_addr(), 500, 0xa2);
    assert_eq!(net.node(A_MAP).handle_tun_headers(secs(2), &p2[..60]), Some(TunVerdict::Send { dst: B_MAP }));
    assert_eq!(net.node(A_MAP).stats().sent, 1);
    // Too short for an IPv6 header, another version, or multicast: the whole packet decides.
    assert_eq!(net.node(A_MAP).handle_tun_headers(secs(2), &p2[..39]), None);
    let mut v4 = p2.clone();
    v4[0] = 0x45;
    assert_eq!(net.node(A_MAP).handle_tun_headers(secs(2), &v4), None);
    let mut multicast = p2.clone();
    multicast[24] = 0xff;
    assert_eq!(net.node(A_MAP).handle_tun_headers(secs(2), &multicast), None);
    assert_eq!(net.node(A_MAP).stats().sent, 1);
    assert_eq!(net.node(A_MAP).stats().drops.total(), 0);
}

#[test]
fn delivered_range_is_trimmed_and_borrowed() {
    let mut a = client(a_addr(), 1);
    let mut dgram = vec![];
    let o = OriginIndication { addr: *B_MAP.ip(), port: B_MAP.port() };
    let mut hdr = [0u8; 8];
    encap::emit_headers(&mut hdr, None, Some(&o)).unwrap();
    dgram.extend_from_slice(&hdr);
    let p = data(b_addr(), a_addr(), 20, 7);
    dgram.extend_from_slice(&p);
    // RFC 6081 trailers after the packet are not delivered.
    dgram.extend_from_slice(&[0x01, 0x01, 0, 0, 0, 0, 0, 0]);
    let v = a.handle_datagram(secs(1), B_MAP, &dgram);
    let UdpVerdict::Deliver { range } = v else { panic!("{v:?}") };
    assert_eq!(range, 8..8 + 60);
    assert_eq!(&dgram[range], &p[..]);
}

#[test]
fn bubbles_are_rate_limited_then_unreachable() {
    let mut net = two_clients();
    net.black_holes.push(B_MAP); // B is gone
    net.black_holes.push(SocketAddrV4::new(SERVER, 3544));
    let mut bubble_times = vec![];
    let mut unreachables = vec![];
    for t in (0..=20_000u64).step_by(500) {
        let now = ms(10_000 + t);
        let before = net.log.len();
        net.tick(now);
        if t % 1000 == 0 {
            let v = net.tun_read(A_MAP, now, data(a_addr(), b_addr(), 40, t as u8));
            if v == TunVerdict::Drop(DropReason::PeerUnreachable) {
                unreachables.push(t);
            }
        }
        net.tick(now);
        for (f, _, b) in &net.log[before..] {
            if *f == A_MAP && TeredoPacket::parse(b).is_ok_and(|d| d.ipv6.is_bubble()) {
                bubble_times.push(t);
            }
        }
    }
    // Four sets of bubbles (direct, indirect from the token, indirect from the address),
    // 2 s apart, then nothing.
    assert_eq!(bubble_times, [0, 0, 0, 2000, 2000, 2000, 4000, 4000, 4000, 6000, 6000, 6000]);
    // 2 s after the 4th pair the queue is dropped with unreachables; later packets are
    // refused with one.
    assert_eq!(unreachables.first(), Some(&8000));
    let tun = net.tun.get(&A_MAP).unwrap().clone();
    assert!(!tun.is_empty());
    for e in &tun {
        let (p, _) = Ipv6Packet::parse(e).unwrap();
        assert_eq!((p.src(), p.dst()), (a_addr(), a_addr()));
        match Message::parse(&p).unwrap() {
            Message::DestinationUnreachable(d) => assert_eq!(d.code, icmpv6::UNREACH_ADDRESS),
            m => panic!("{m:?}"),
        }
    }
    let s = net.node(A_MAP).stats();
    assert_eq!(s.bubbles_sent, 12);
    // 8 packets queued (one per second until the 4th set + 2 s), every later one refused.
    assert_eq!(s.queued_out, 8);
    assert_eq!(s.unreachables_sent as usize, tun.len());
    assert_eq!(s.drops.get(DropReason::PeerUnreachable), 8 + 13);
}

#[test]
fn unreachables_are_limited_to_10_per_second() {
    let mut r = relay(false);
    for i in 0..50u8 {
        let p = data(NATIVE, "2001:db8::2".parse().unwrap(), 10, i);
        assert_eq!(
            r.handle_tun_packet(ms(5000 + u64::from(i)), &p),
            TunVerdict::Drop(DropReason::NotTeredoDestination)
        );
    }
    let out = drain(&mut r, secs(5));
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|(d, _)| *d == Destination::Tun));
    assert_eq!(r.stats().unreachables_rate_limited, 40);
    // The next second refills.
    let p = data(NATIVE, "2001:db8::2".parse().unwrap(), 10, 0);
    r.handle_tun_packet(secs(6), &p);
    assert_eq!(drain(&mut r, secs(6)).len(), 1);
    // No error for an error, nor for a multicast source.
    let mut e = Ipv6Header::new(NATIVE, "2001:db8::2".parse().unwrap(), 58, 64, 8).as_bytes().to_vec();
    e.extend_from_slice(&[1, 3, 0, 0, 0, 0, 0, 0]);
    r.handle_tun_packet(secs(7), &e);
    let m = data("ff02::1".parse().unwrap(), "2001:db8::2".parse().unwrap(), 10, 0);
    r.handle_tun_packet(secs(7), &m);
    assert!(drain(&mut r, secs(7)).is_empty());
}

#[test]
fn client_rules_from_the_tun() {
    let mut c = Tunnel::new(Role::Client, key(1), small_limits(), Instant::ZERO).unwrap();
    let p = data(a_addr(), b_addr(), 10, 0);
    // Not qualified: unreachable code 3.
    assert_eq!(c.handle_tun_packet(secs(1), &p), TunVerdict::Drop(DropReason::NotQualified));
    let out = drain(&mut c, secs(1));
    let (pk, _) = Ipv6Packet::parse(&out[0].1).unwrap();
    assert_eq!(pk.src(), LINK_LOCAL_RESTRICTED);
    c.set_qualified(secs(1), a_addr(), SERVER);
    assert_eq!(c.address(), Some(a_addr()));
    // Multicast, garbage.
    assert_eq!(
        c.handle_tun_packet(secs(1), &data(a_addr(), "ff02::1".parse().unwrap(), 0, 0)),
        TunVerdict::Drop(DropReason::Multicast)
    );
    assert_eq!(c.handle_tun_packet(secs(1), &[0x60; 39]), TunVerdict::Drop(DropReason::Malformed));
    assert_eq!(c.handle_tun_packet(secs(1), &[0x40; 60]), TunVerdict::Drop(DropReason::Malformed));
    // A native destination from a non-Teredo source: code 1.
    let v = c.handle_tun_packet(secs(1), &data("2001:db8::9".parse().unwrap(), NATIVE, 10, 0));
    assert_eq!(v, TunVerdict::Drop(DropReason::SourceNotTeredo));
    let out = drain(&mut c, secs(1));
    let (pk, _) = Ipv6Packet::parse(&out[0].1).unwrap();
    assert!(matches!(Message::parse(&pk), Ok(Message::DestinationUnreachable(d)) if d.code == 1));
    // A Teredo destination with a private mapping or server: dropped silently.
    let private = teredo(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1), 0);
    assert_eq!(
        c.handle_tun_packet(secs(1), &data(a_addr(), private, 10, 0)),
        TunVerdict::Drop(DropReason::DestinationNotGlobal)
    );
    let mut bad_server = b_addr().octets();
    bad_server[4..8].copy_from_slice(&[127, 0, 0, 1]);
    let v = c.handle_tun_packet(secs(1), &data(a_addr(), Ipv6Addr::from(bad_server), 10, 0));
    assert_eq!(v, TunVerdict::Drop(DropReason::DestinationNotGlobal));
    // Mapped port 0 (found by the tunnel_client fuzz target: a direct bubble went there).
    let port0 = teredo(SocketAddrV4::new(*B_MAP.ip(), 0), 0);
    let v = c.handle_tun_packet(secs(1), &data(a_addr(), port0, 10, 0));
    assert_eq!(v, TunVerdict::Drop(DropReason::DestinationNotGlobal));
    assert!(drain(&mut c, secs(1)).is_empty());
    // The peer's cone bit is ignored: a cone peer still gets bubbles and a queue.
    let cone = teredo(B_MAP, Flags::CONE);
    assert_eq!(c.handle_tun_packet(secs(1), &data(a_addr(), cone, 10, 0)), TunVerdict::Queued);
    assert_eq!(drain(&mut c, secs(1)).len(), 3);
    // A new address empties the list of peers.
    assert_eq!(c.peers().len(), 1);
    c.set_qualified(secs(2), b_addr(), SERVER);
    assert!(c.peers().is_empty());
    c.reset(secs(3));
    assert_eq!(c.address(), None);
}

#[test]
fn echo_test_to_a_native_host_through_a_relay() {
    let mut net = two_clients();
    net.nodes.insert(RELAY, relay(false));
    net.relay = Some(RELAY);
    let p = data(a_addr(), NATIVE, 30, 0x5e);
    assert_eq!(net.tun_read(A_MAP, secs(1), p.clone()), TunVerdict::Queued);
    // The echo test goes to our own server, with a token as data.
    let (_, to, echo) = net.log.last().unwrap().clone();
    assert_eq!(to, SocketAddrV4::new(SERVER, 3544));
    let pk = parse(&echo);
    assert_eq!((pk.ipv6.src(), pk.ipv6.dst()), (a_addr(), NATIVE));
    let Ok(Message::EchoRequest(e)) = Message::parse(&pk.ipv6) else { panic!() };
    assert_eq!(e.data.len(), crate::nonce::ECHO_TOKEN_LEN);
    net.run(secs(1));
    // The host answered through the relay, which bubbled A, got A's reply bubble, sent
    // the echo reply; A verified it, trusted the native host at the relay's mapping and
    // sent the queued packet there; the relay delivered it to the host.
    assert_eq!(net.node(A_MAP).peers().get(&NATIVE).unwrap().mapping(), Some(RELAY));
    assert_eq!(net.node(RELAY).peers().get(&a_addr()).unwrap().mapping(), Some(A_MAP));
    assert_eq!(net.native_rx.last().unwrap(), &p);
    assert_eq!(net.node(A_MAP).stats().echo_verified, 1);
    assert!(!net.tun.contains_key(&A_MAP), "the echo reply is not delivered");
    // Then the fast path both ways.
    assert_eq!(net.tun_read(A_MAP, secs(2), data(a_addr(), NATIVE, 30, 1)), TunVerdict::Send { dst: RELAY });
    let back = data(NATIVE, a_addr(), 30, 2);
    assert_eq!(net.tun_read(RELAY, secs(2), back.clone()), TunVerdict::Send { dst: A_MAP });
    net.run(secs(2));
    assert_eq!(net.tun.get(&A_MAP).unwrap(), &vec![back]);
}

/// RFC 4380 §5.2.9 repeated ([`super::RETEST_AFTER`]): the native host's
/// route to 2001::/32 moves to another relay (anycast) and the first one goes silent; the
/// client, still sending, tests the host again and moves to the relay that answers.
#[test]
fn a_silent_native_peer_is_tested_again_and_moves_to_the_live_relay() {
    let relay2 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 201), 3545);
    let mut net = two_clients();
    net.nodes.insert(RELAY, relay(true));
    net.nodes.insert(relay2, relay(true));
    net.relay = Some(RELAY);
    assert_eq!(net.tun_read(A_MAP, secs(1), data(a_addr(), NATIVE, 30, 1)), TunVerdict::Queued);
    net.run(secs(1));
    assert_eq!(net.node(A_MAP).peers().get(&NATIVE).unwrap().mapping(), Some(RELAY));
    // The first relay dies; the host's route now leads to the second.
    net.black_holes.push(RELAY);
    net.relay = Some(relay2);
    let tests = net.node(A_MAP).stats().echo_tests_sent;
    // Within RETEST_AFTER of the last reception, packets simply go to the relay.
    assert_eq!(net.tun_read(A_MAP, secs(3), data(a_addr(), NATIVE, 30, 2)), TunVerdict::Send { dst: RELAY });
    net.run(secs(3));
    assert_eq!(net.node(A_MAP).stats().echo_tests_sent, tests);
    // Past it, the packet still goes to the old relay, and the echo test goes again.
    assert_eq!(net.tun_read(A_MAP, secs(4), data(a_addr(), NATIVE, 30, 3)), TunVerdict::Send { dst: RELAY });
    assert_eq!(net.node(A_MAP).stats().echo_retests, 1);
    assert_eq!(net.node(A_MAP).peers().get(&NATIVE).unwrap().probes(), 0, "outside the §5.2.6 budget");
    net.tun_read(A_MAP, secs(4), data(a_addr(), NATIVE, 30, 9));
    assert_eq!(net.node(A_MAP).stats().echo_retests, 1, "at most one per RETEST_AFTER");
    net.run(secs(4));
    assert_eq!(net.node(A_MAP).peers().get(&NATIVE).unwrap().mapping(), Some(relay2));
    let p = data(a_addr(), NATIVE, 30, 4);
    assert_eq!(net.tun_read(A_MAP, secs(4), p.clone()), TunVerdict::Send { dst: relay2 });
    net.run(secs(4));
    assert_eq!(net.native_rx.last().unwrap(), &p);
    // A live peer is not tested again: its answers keep the mapping fresh.
    let back = data(NATIVE, a_addr(), 30, 5);
    assert_eq!(net.tun_read(relay2, secs(6), back), TunVerdict::Send { dst: A_MAP });
    net.run(secs(6));
    net.tun_read(A_MAP, secs(8), data(a_addr(), NATIVE, 30, 6));
    assert_eq!(net.node(A_MAP).stats().echo_retests, 1);
}

#[test]
fn inbound_from_an_unverified_relay_waits_for_the_echo_test() {
    let mut a = client(a_addr(), 1);
    // A packet from the native host through a relay A never verified: queued, and an echo
    // test goes through A's server.
    let p = data(NATIVE, a_addr(), 20, 3);
    assert_eq!(a.handle_datagram(secs(1), RELAY, &p), UdpVerdict::Queued);
    let out = drain(&mut a, secs(1));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, Destination::Udp(SocketAddrV4::new(SERVER, 3544)));
    let echo = out[0].1.clone();
    let (req, _) = Ipv6Packet::parse(&echo).unwrap();
    let Ok(Message::EchoRequest(e)) = Message::parse(&req) else { panic!() };
    // A forged reply (wrong data) does nothing; the real one through another relay
    // trusts that relay and drops the queued packet, which came through the first.
    let mut buf = [0u8; 200];
    let forged = Echo { data: &[0; 16], ..e };
    let n = Icmpv6Repr::EchoReply(forged).emit_packet(&mut buf, NATIVE, a_addr(), 64).unwrap();
    assert_eq!(a.handle_datagram(secs(1), RELAY, &buf[..n]), UdpVerdict::Queued);
    assert!(!a.peers().get(&NATIVE).unwrap().is_trusted());
    // Nobody asked for it, nothing verified it: a stranger (see `crate::peers`).
    assert!(a.peers().get(&NATIVE).unwrap().is_stranger());
    let n = Icmpv6Repr::EchoReply(e).emit_packet(&mut buf, NATIVE, a_addr(), 64).unwrap();
    let other = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 77), 3544);
    assert_eq!(a.handle_datagram(secs(2), other, &buf[..n]), UdpVerdict::Consumed);
    assert_eq!(a.peers().get(&NATIVE).unwrap().mapping(), Some(other));
    // The answered echo test verified it: no longer a stranger.
    assert!(!a.peers().get(&NATIVE).unwrap().is_stranger());
    assert_eq!((a.peers().strangers(), a.peers().stats().strangers_promoted), (0, 1));
    assert!(drain(&mut a, secs(2)).is_empty());
    assert_eq!(a.stats().drops.get(DropReason::RelayNotVerified), 2);
    // From the verified relay, delivered.
    assert!(matches!(a.handle_datagram(secs(3), other, &p), UdpVerdict::Deliver { .. }));
    // A destination unreachable from the host carrying our echo request also verifies.
    let mut b = client(a_addr(), 1);
    assert_eq!(b.handle_datagram(secs(1), RELAY, &p), UdpVerdict::Queued);
    let echo = drain(&mut b, secs(1)).remove(0).1;
    let err = Icmpv6Repr::DestinationUnreachable(DestinationUnreachable { code: 4, invoking: &echo });
    let n = err.emit_packet(&mut buf, NATIVE, a_addr(), 64).unwrap();
    assert_eq!(b.handle_datagram(secs(1), RELAY, &buf[..n]), UdpVerdict::Consumed);
    assert!(b.has_output(), "the released packet waits for poll_transmit");
    let out = drain(&mut b, secs(1));
    assert_eq!(out, vec![(Destination::Tun, p.clone())]);
    assert!(!b.has_output());
}

#[test]
fn spoofed_mapping_is_rejected() {
    let mut a = client(a_addr(), 1);
    let spoofer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 99), 1234);
    let p = data(b_addr(), a_addr(), 10, 0);
    assert_eq!(a.handle_datagram(secs(1), spoofer, &p), UdpVerdict::Drop(DropReason::MappingMismatch));
    let mut bubble = [0u8; 40];
    ipv6::emit_bubble(&mut bubble, b_addr(), a_addr(), 0).unwrap();
    assert_eq!(a.handle_datagram(secs(1), spoofer, &bubble), UdpVerdict::Drop(DropReason::MappingMismatch));
    assert!(a.peers().get(&b_addr()).is_none());
    // The unproven bubble only makes A solicit B through B's server (RFC 6081 §6.1): no
    // entry, nothing to the spoofer.
    let out = drain(&mut a, secs(1));
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(d, _)| *d == Destination::Udp(SocketAddrV4::new(SERVER, 3544))));
    // Once B is trusted at its mapping, a packet claiming B from elsewhere is refused and
    // does not move the mapping.
    assert!(matches!(a.handle_datagram(secs(1), B_MAP, &p), UdpVerdict::Deliver { .. }));
    assert_eq!(a.handle_datagram(secs(2), spoofer, &p), UdpVerdict::Drop(DropReason::MappingMismatch));
    assert_eq!(a.peers().get(&b_addr()).unwrap().mapping(), Some(B_MAP));
    // Other destinations, link-local sources.
    let p = data(b_addr(), "2001:0:c000:201::1".parse().unwrap(), 10, 0);
    assert_eq!(a.handle_datagram(secs(2), B_MAP, &p), UdpVerdict::Drop(DropReason::WrongDestination));
    let p = data("fe80::1".parse().unwrap(), a_addr(), 10, 0);
    assert_eq!(a.handle_datagram(secs(2), B_MAP, &p), UdpVerdict::Drop(DropReason::LinkLocalSource));
    ipv6::emit_bubble(&mut bubble, "fe80::1".parse().unwrap(), a_addr(), 0).unwrap();
    assert_eq!(a.handle_datagram(secs(2), B_MAP, &bubble), UdpVerdict::Consumed);
    // An indirect bubble from the server with a link-local source (Miredo's) is answered
    // at its origin; one with a private origin is not.
    let mut dg = vec![0u8; 8];
    let origin = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 50), 6000);
    OriginIndication { addr: *origin.ip(), port: origin.port() }.emit(&mut dg).unwrap();
    dg.extend_from_slice(&bubble);
    assert_eq!(a.handle_datagram(secs(2), SocketAddrV4::new(SERVER, 3544), &dg), UdpVerdict::Consumed);
    let out = drain(&mut a, secs(2));
    let mut reply = [0u8; 40];
    ipv6::emit_bubble(&mut reply, a_addr(), "fe80::1".parse().unwrap(), BUBBLE_HOP_LIMIT).unwrap();
    assert_eq!(out, vec![(Destination::Udp(origin), reply.to_vec())]);
    OriginIndication { addr: Ipv4Addr::new(192, 168, 1, 1), port: 1 }.emit(&mut dg).unwrap();
    assert_eq!(a.handle_datagram(secs(2), SocketAddrV4::new(SERVER, 3544), &dg), UdpVerdict::Consumed);
    assert!(drain(&mut a, secs(2)).is_empty());
}

#[test]
fn relay_trusts_no_unknown_peer_and_its_entries_come_from_outbound_traffic() {
    let mut r = relay(false);
    // A valid packet from a Teredo client the relay never sent to: held, untrusted (a
    // stranger, module `relearn`), never delivered as it is.
    let p = data(b_addr(), NATIVE, 10, 0);
    assert_eq!(r.handle_datagram(secs(1), B_MAP, &p), UdpVerdict::Queued);
    assert!(r.peers().get(&b_addr()).is_some_and(|p| !p.is_trusted()));
    r.handle_timeout(secs(1) + STRANGER_LIFETIME);
    assert!(r.peers().is_empty());
    let mut bubble = [0u8; 40];
    ipv6::emit_bubble(&mut bubble, b_addr(), NATIVE, 0).unwrap();
    assert_eq!(r.handle_datagram(secs(1), B_MAP, &bubble), UdpVerdict::Drop(DropReason::UnknownPeer));
    assert!(r.peers().is_empty());
    // A native source.
    assert_eq!(
        r.handle_datagram(secs(1), B_MAP, &data(NATIVE, b_addr(), 10, 0)),
        UdpVerdict::Drop(DropReason::NotTeredoSource)
    );
    // Many distinct sources: a bounded number of untrusted entries.
    for port in 1..500u16 {
        let m = SocketAddrV4::new(*B_MAP.ip(), port);
        r.handle_datagram(secs(1), m, &data(teredo(m, 0), NATIVE, 10, 0));
    }
    assert!(r.peers().len() <= small_limits().peers.stranger_budget());
    assert!(r.peers().iter().all(|p| !p.is_trusted()));
    r.handle_timeout(secs(20));
    drain(&mut r, secs(20));
    assert!(r.peers().is_empty());
    // Outbound traffic creates the entry; then the client's answer is accepted.
    assert_eq!(r.handle_tun_packet(secs(22), &data(NATIVE, b_addr(), 10, 1)), TunVerdict::Queued);
    let out = drain(&mut r, secs(22));
    // A restricted relay: direct and indirect bubbles from fe80::<token>.
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].0, Destination::Udp(B_MAP));
    assert_eq!(out[1].0, Destination::Udp(SocketAddrV4::new(SERVER, 3544)));
    let src = Ipv6Packet::parse(&out[0].1).unwrap().0.src();
    assert_eq!(src.segments()[0], 0xfe80);
    // A spoofed answer is refused, the right one trusts and flushes.
    let spoofer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 99), 1234);
    assert_eq!(r.handle_datagram(secs(22), spoofer, &bubble), UdpVerdict::Drop(DropReason::MappingMismatch));
    assert_eq!(r.handle_datagram(secs(22), B_MAP, &bubble), UdpVerdict::Consumed);
    assert_eq!(drain(&mut r, secs(22)), vec![(Destination::Udp(B_MAP), data(NATIVE, b_addr(), 10, 1))]);
    assert!(matches!(r.handle_datagram(secs(23), B_MAP, &p), UdpVerdict::Deliver { .. }));
    assert_eq!(
        r.handle_tun_packet(secs(23), &data(NATIVE, b_addr(), 10, 1)),
        TunVerdict::Send { dst: B_MAP }
    );
    // Outside the prefix: unreachable.
    assert_eq!(
        r.handle_tun_packet(secs(23), &data(b_addr(), NATIVE, 10, 1)),
        TunVerdict::Drop(DropReason::NotTeredoDestination)
    );
    // A cone relay sends only the indirect bubble.
    let mut c = relay(true);
    c.handle_tun_packet(secs(1), &data(NATIVE, b_addr(), 10, 1));
    let out = drain(&mut c, secs(1));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, Destination::Udp(SocketAddrV4::new(SERVER, 3544)));
}

/// A peer behind a symmetric NAT answers a relay's keyed bubble from a mapping other than
/// the one its address embeds (Miredo's `CheckBubble`): the relay trusts it there, and a
/// bubble to the wrong token, or a datagram that is not a bubble, from that mapping is
/// refused.
#[test]
fn relay_trusts_reply_bubble_to_its_token_from_another_mapping() {
    for cone in [false, true] {
        let mut r = relay(cone);
        let held = data(NATIVE, b_addr(), 10, 1);
        assert_eq!(r.handle_tun_packet(secs(1), &held), TunVerdict::Queued);
        let out = drain(&mut r, secs(1));
        let (indirect, _) = Ipv6Packet::parse(&out.last().unwrap().1).unwrap();
        let token = indirect.src();
        assert_eq!(token, key(9).bubble_source(*B_MAP.ip(), B_MAP.port()));
        let symmetric = SocketAddrV4::new(*B_MAP.ip(), 61000);
        let mut bubble = [0u8; 40];
        ipv6::emit_bubble(&mut bubble, b_addr(), "fe80::1".parse().unwrap(), 255).unwrap();
        assert_eq!(
            r.handle_datagram(secs(1), symmetric, &bubble),
            UdpVerdict::Drop(DropReason::MappingMismatch)
        );
        let p = data(b_addr(), token, 10, 0);
        assert_eq!(r.handle_datagram(secs(1), symmetric, &p), UdpVerdict::Drop(DropReason::MappingMismatch));
        // Another peer's token does not do either.
        let other = key(9).bubble_source(*B_MAP.ip(), B_MAP.port() + 1);
        ipv6::emit_bubble(&mut bubble, b_addr(), other, 255).unwrap();
        assert_eq!(
            r.handle_datagram(secs(1), symmetric, &bubble),
            UdpVerdict::Drop(DropReason::MappingMismatch)
        );
        ipv6::emit_bubble(&mut bubble, b_addr(), token, 255).unwrap();
        assert_eq!(r.handle_datagram(secs(1), symmetric, &bubble), UdpVerdict::Consumed);
        assert_eq!(r.peers().get(&b_addr()).unwrap().mapping(), Some(symmetric));
        assert_eq!(drain(&mut r, secs(1)), vec![(Destination::Udp(symmetric), held)]);
        assert_eq!(r.stats().bubbles_verified, 1);
        assert_eq!(
            r.handle_tun_packet(secs(2), &data(NATIVE, b_addr(), 10, 2)),
            TunVerdict::Send { dst: symmetric }
        );
    }
}

/// The same for a client: B, behind a symmetric NAT, answers A's indirect bubble from a
/// new mapping; A trusts B there and releases what it queued.
#[test]
fn client_trusts_reply_bubble_to_its_token_from_another_mapping() {
    let mut a = client(a_addr(), 1);
    let held = data(a_addr(), b_addr(), 10, 3);
    assert_eq!(a.handle_tun_packet(secs(1), &held), TunVerdict::Queued);
    let out = drain(&mut a, secs(1));
    assert_eq!(out.len(), 3);
    let (indirect, _) = Ipv6Packet::parse(&out[1].1).unwrap();
    let token = indirect.src();
    let symmetric = SocketAddrV4::new(*B_MAP.ip(), 61000);
    let mut bubble = [0u8; 40];
    ipv6::emit_bubble(&mut bubble, b_addr(), a_addr(), 255).unwrap();
    assert_eq!(a.handle_datagram(secs(1), symmetric, &bubble), UdpVerdict::Drop(DropReason::MappingMismatch));
    ipv6::emit_bubble(&mut bubble, b_addr(), token, 255).unwrap();
    assert_eq!(a.handle_datagram(secs(1), symmetric, &bubble), UdpVerdict::Consumed);
    assert_eq!(a.peers().get(&b_addr()).unwrap().mapping(), Some(symmetric));
    // A direct bubble to the mapping learnt tells B that A trusts it, then the packet.
    let mut ack = [0u8; 40];
    ipv6::emit_bubble(&mut ack, a_addr(), b_addr(), BUBBLE_HOP_LIMIT).unwrap();
    assert_eq!(
        drain(&mut a, secs(1)),
        vec![(Destination::Udp(symmetric), ack.to_vec()), (Destination::Udp(symmetric), held)]
    );
    assert_eq!(a.stats().bubbles_verified, 1);
}

#[test]
fn queue_is_bounded_and_flushed_in_arrival_order() {
    let mut a = client(a_addr(), 1);
    let mut verdicts = vec![];
    for i in 0..8u8 {
        verdicts.push(a.handle_tun_packet(ms(1000 + u64::from(i)), &data(a_addr(), b_addr(), 160, i)));
    }
    // 200-byte packets in a 1280-byte queue: 6 fit.
    assert_eq!(&verdicts[..6], &[TunVerdict::Queued; 6]);
    assert_eq!(&verdicts[6..], &[TunVerdict::Drop(DropReason::QueueFull); 2]);
    drain(&mut a, secs(1));
    let mut bubble = [0u8; 40];
    ipv6::emit_bubble(&mut bubble, b_addr(), a_addr(), 0).unwrap();
    assert_eq!(a.handle_datagram(secs(1), B_MAP, &bubble), UdpVerdict::Consumed);
    let out = drain(&mut a, secs(1));
    let markers: Vec<u8> = out
        .iter()
        .map(|(d, b)| {
            assert_eq!(*d, Destination::Udp(B_MAP));
            b[40]
        })
        .collect();
    assert_eq!(markers, [0, 1, 2, 3, 4, 5]);
    // The global budget: many destinations, each with a packet, share it (a new one takes
    // the room of another's packet, see `crate::peers`): it is never exceeded.
    let limits = Limits {
        peers: PeerLimits {
            max_peers: 1000,
            queue_bytes_total: 50 * (200 + crate::peers::PACKET_OVERHEAD),
            ..PeerLimits::default()
        },
        ..Limits::default()
    };
    let mut c = Tunnel::new(Role::Client, key(1), limits, Instant::ZERO).unwrap();
    c.set_qualified(Instant::ZERO, a_addr(), SERVER);
    let mut queued = 0;
    for port in 1..200u16 {
        let d = teredo(SocketAddrV4::new(*B_MAP.ip(), port), 0);
        if c.handle_tun_packet(secs(1), &data(a_addr(), d, 160, 0)) == TunVerdict::Queued {
            queued += 1;
        }
        drain(&mut c, secs(1));
    }
    assert_eq!(queued, 199);
    assert_eq!(c.stats().drops.get(DropReason::QueueBudget), 0);
    assert_eq!(c.peers().stats().queue_evicted, 149);
    let holding = (1..200u16)
        .filter(|&port| c.peers().queue_len(&teredo(SocketAddrV4::new(*B_MAP.ip(), port), 0)).0 == 1)
        .count();
    assert_eq!(holding, 50);
    assert!(c.peers().queued_bytes() <= limits.peers.queue_bytes_total);
}

#[test]
fn peers_expire_and_trust_lapses() {
    let mut net = two_clients();
    net.tun_read(A_MAP, secs(1), data(a_addr(), b_addr(), 10, 0));
    net.run(secs(1));
    assert!(net.node(A_MAP).peers().get(&b_addr()).unwrap().is_trusted());
    // 30 s without reception: no longer valid, so the next packet bubbles again.
    assert_eq!(
        net.tun_read(A_MAP, secs(20), data(a_addr(), b_addr(), 10, 0)),
        TunVerdict::Send { dst: B_MAP }
    );
    net.run(secs(20));
    assert_eq!(net.tun_read(A_MAP, secs(31), data(a_addr(), b_addr(), 10, 0)), TunVerdict::Queued);
    net.run(secs(31));
    assert_eq!(
        net.tun_read(A_MAP, secs(32), data(a_addr(), b_addr(), 10, 0)),
        TunVerdict::Send { dst: B_MAP }
    );
    // Idle: gone within 60 s.
    net.tick(secs(62));
    net.tick(secs(93));
    assert!(net.node(A_MAP).peers().is_empty());
    assert!(net.node(B_MAP).peers().is_empty());
}

// ---- property test ----

#[derive(Debug, Clone)]
enum Input {
    Datagram { from: usize, src: usize, dst: usize, kind: u8, origin: bool, junk: Vec<u8> },
    Raw { from: usize, bytes: Vec<u8> },
    Tun { src: usize, dst: usize, len: u16 },
    Advance(u32),
}

fn endpoints() -> Vec<SocketAddrV4> {
    vec![
        SocketAddrV4::new(SERVER, 3544),
        B_MAP,
        RELAY,
        SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 99), 1234),
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 3544),
    ]
}

fn addresses() -> Vec<Ipv6Addr> {
    vec![
        a_addr(),
        b_addr(),
        teredo(RELAY, 0),
        teredo(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 99), 1234), 0),
        NATIVE,
        "fe80::1".parse().unwrap(),
        "ff02::1".parse().unwrap(),
        "2001:db8::77".parse().unwrap(),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (0..5usize, 0..8usize, 0..8usize, 0..4u8, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(from, src, dst, kind, origin, junk)| Input::Datagram { from, src, dst, kind, origin, junk }),
        1 => (0..5usize, proptest::collection::vec(any::<u8>(), 0..120)).prop_map(|(from, bytes)| Input::Raw { from, bytes }),
        3 => (0..8usize, 0..8usize, 0..300u16).prop_map(|(src, dst, len)| Input::Tun { src, dst, len }),
        1 => (0..40_000u32).prop_map(Input::Advance),
    ]
}

/// A datagram of the given kind: 0 bubble, 1 data, 2 echo reply with junk data, 3 an
/// unreachable carrying junk.
pub(super) fn datagram(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    kind: u8,
    origin: Option<SocketAddrV4>,
    junk: &[u8],
) -> Vec<u8> {
    let mut out = vec![];
    if let Some(o) = origin {
        let mut b = [0u8; 8];
        OriginIndication { addr: *o.ip(), port: o.port() }.emit(&mut b).unwrap();
        out.extend_from_slice(&b);
    }
    let mut buf = [0u8; 1500];
    let n = match kind {
        0 => ipv6::emit_bubble(&mut buf, src, dst, 0).unwrap(),
        1 => {
            let d = data(src, dst, junk.len() as u16, 0);
            buf[..d.len()].copy_from_slice(&d);
            d.len()
        }
        2 => Icmpv6Repr::EchoReply(Echo { identifier: 0, sequence: 1, data: junk })
            .emit_packet(&mut buf, src, dst, 64)
            .unwrap(),
        _ => Icmpv6Repr::DestinationUnreachable(DestinationUnreachable { code: 3, invoking: junk })
            .emit_packet(&mut buf, src, dst, 64)
            .unwrap(),
    };
    out.extend_from_slice(&buf[..n]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Arbitrary inputs at arbitrary times never panic, and never make a peer trusted
    /// unless the mapping is the one embedded in its Teredo address (no echo token can be
    /// forged, so no native peer is ever trusted here), and never let a relay trust a peer
    /// that inbound traffic made.
    #[test]
    fn arbitrary_inputs_never_panic_nor_trust_wrongly(inputs in proptest::collection::vec(input(), 1..60)) {
        let eps = endpoints();
        let addrs = addresses();
        let mut a = client(a_addr(), 1);
        let mut r = relay(false);
        let mut now = Instant::from_secs(1);
        let mut buf = [0u8; 1500];
        let mut relay_sent_to = std::collections::HashSet::new();
        for i in inputs {
            match i {
                Input::Datagram { from, src, dst, kind, origin, junk } => {
                    let d = datagram(addrs[src], addrs[dst], kind, origin.then_some(eps[(from + 1) % eps.len()]), &junk);
                    let _ = a.handle_datagram(now, eps[from], &d);
                    let _ = r.handle_datagram(now, eps[from], &d);
                }
                Input::Raw { from, bytes } => {
                    let _ = a.handle_datagram(now, eps[from], &bytes);
                    let _ = r.handle_datagram(now, eps[from], &bytes);
                    let _ = a.handle_tun_packet(now, &bytes);
                    let _ = r.handle_tun_packet(now, &bytes);
                }
                Input::Tun { src, dst, len } => {
                    let p = data(addrs[src], addrs[dst], len, 0);
                    let _ = a.handle_tun_packet(now, &p);
                    if r.handle_tun_packet(now, &p) != TunVerdict::Drop(DropReason::NotTeredoDestination) {
                        relay_sent_to.insert(addrs[dst]);
                    }
                }
                Input::Advance(ms) => {
                    now = now + Duration::from_millis(ms.into());
                    while a.poll_timeout() <= now { a.handle_timeout(now); }
                    while r.poll_timeout() <= now { r.handle_timeout(now); }
                }
            }
            while a.poll_transmit(now, &mut buf).is_some() {}
            while r.poll_transmit(now, &mut buf).is_some() {}
            for t in [&a, &r] {
                for p in t.peers().iter() {
                    if let Some(m) = p.mapping() {
                        let e = TeredoAddress::from_ipv6(&p.address());
                        prop_assert!(e.is_some(), "native peer {} trusted", p.address());
                        let e = e.unwrap();
                        prop_assert_eq!(SocketAddrV4::new(e.mapped_addr, e.mapped_port), m);
                    }
                }
            }
            // Inbound traffic makes only strangers (untrusted here: no proof can be
            // forged), a bounded number of them.
            prop_assert!(r.relearning() <= small_limits().peers.stranger_budget());
            for p in r.peers().iter() {
                let inbound = !relay_sent_to.contains(&p.address());
                prop_assert!(!inbound || r.is_relearning(&p.address()) && !p.is_trusted(), "relay trusted {} on inbound", p.address());
            }
        }
    }
}

#[test]
fn limits_shared_by_workers_add_up_to_the_whole() {
    let whole = Limits::default();
    for n in [1usize, 2, 3, 8] {
        let part = whole.shared_by(n);
        // Together, the n parts hold at most the whole, give or take the rounding up.
        assert!(part.peers.max_peers * n < whole.peers.max_peers + n, "{n}: peers");
        assert!(part.peers.queue_bytes_total * n < whole.peers.queue_bytes_total + n, "{n}: queues");
        assert!(part.max_pending * n < whole.max_pending + n, "{n}: pending");
        assert!(part.max_retries * n < whole.max_retries + n, "{n}: retries");
        assert!(part.unreachables_per_second as usize * n < whole.unreachables_per_second as usize + n);
        // Per-peer limits are the peer's own, whatever the number of workers.
        assert_eq!(part.peers.queue_bytes_per_peer, whole.peers.queue_bytes_per_peer);
        assert_eq!(part.peers.idle_timeout, whole.peers.idle_timeout);
    }
    assert_eq!(whole.shared_by(1), whole);
    // Never zero.
    let tiny = Limits { max_pending: 1, unreachables_per_second: 1, ..whole }.shared_by(8);
    assert_eq!((tiny.max_pending, tiny.unreachables_per_second), (1, 1));
}

#[test]
fn drop_reasons_index_their_counters() {
    for (i, r) in DropReason::ALL.into_iter().enumerate() {
        assert_eq!(r as usize, i, "{r:?} out of order in DropReason::ALL");
        assert!(r.counter_name().starts_with("dropped_"));
    }
    let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.counter_name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), DropReason::ALL.len());
}

/// A datagram from UDP port 0 (or an unspecified, multicast or broadcast IPv4 source) is
/// dropped before anything else, even when its source embeds that very mapping: nothing
/// is trusted at, or answered to, such a source.
#[test]
fn sources_that_no_peer_has_are_dropped() {
    for from in [
        SocketAddrV4::new(*B_MAP.ip(), 0),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 4000),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 4000),
        SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 4000),
    ] {
        let mut a = client(a_addr(), 1);
        let src = teredo(from, 0);
        let mut bubble = [0u8; 40];
        ipv6::emit_bubble(&mut bubble, src, a_addr(), 255).unwrap();
        assert_eq!(
            a.handle_datagram(secs(1), from, &bubble),
            UdpVerdict::Drop(DropReason::BadSource),
            "{from}"
        );
        assert!(a.peers().is_empty());
        assert!(drain(&mut a, secs(1)).is_empty());
        let mut r = relay(false);
        assert_eq!(r.handle_datagram(secs(1), from, &bubble), UdpVerdict::Drop(DropReason::BadSource));
    }
}

/// An indirect bubble from a Teredo client whose address embeds a server that is not
/// global unicast (127.0.0.1, 0.0.0.0) gets a direct answer to its origin, but no indirect
/// bubbles to that server (found by the tunnel_client fuzz target: they went to
/// 0.0.0.0:3544).
#[test]
fn no_indirect_bubble_to_a_server_that_is_not_global() {
    for server in [Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED] {
        let mut a = client(a_addr(), 1);
        let peer = TeredoAddress {
            prefix: TEREDO_PREFIX,
            server,
            flags: Flags(0),
            mapped_port: B_MAP.port(),
            mapped_addr: *B_MAP.ip(),
        }
        .to_ipv6();
        let o = OriginIndication { addr: *B_MAP.ip(), port: B_MAP.port() };
        let mut d = vec![0u8; 8];
        encap::emit_headers(&mut d, None, Some(&o)).unwrap();
        let mut b = [0u8; 40];
        ipv6::emit_bubble(&mut b, peer, a_addr(), BUBBLE_HOP_LIMIT).unwrap();
        d.extend_from_slice(&b);
        d.extend_from_slice(&[0x01, 0x04, 1, 2, 3, 4]);
        let v = a.handle_datagram(secs(1), SocketAddrV4::new(SERVER, 3544), &d);
        assert_eq!(v, UdpVerdict::Consumed);
        let out = drain(&mut a, secs(1));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0, Destination::Udp(B_MAP));
    }
}

/// An indirect bubble relayed by our server with an origin indication of port 0 gets no
/// reply bubble there (found by the tunnel_client fuzz target).
#[test]
fn no_reply_bubble_to_an_origin_of_port_0() {
    let mut a = client(a_addr(), 1);
    let o = OriginIndication { addr: *B_MAP.ip(), port: 0 };
    let mut d = vec![0u8; 8];
    encap::emit_headers(&mut d, None, Some(&o)).unwrap();
    let mut b = [0u8; 40];
    ipv6::emit_bubble(&mut b, b_addr(), a_addr(), BUBBLE_HOP_LIMIT).unwrap();
    d.extend_from_slice(&b);
    let v = a.handle_datagram(secs(1), SocketAddrV4::new(SERVER, 3544), &d);
    assert_eq!(v, UdpVerdict::Consumed);
    assert!(drain(&mut a, secs(1)).iter().all(|(d, _)| !matches!(d, Destination::Udp(to) if to.port() == 0)));
}
