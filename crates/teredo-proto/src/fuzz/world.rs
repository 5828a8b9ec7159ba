//! The little world the state-machine fuzz targets run in: fixed addresses (a server, a
//! few Teredo peers, native hosts, a relay), the builders that turn fuzzer bytes into
//! datagrams and TUN packets that mostly pass the parsers (so that the fuzzer reaches the
//! rules behind them), answers to what the machine sent (so that it reaches the states
//! after a probe), and the checks that every output of a data path must pass.

use std::collections::{HashSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use zerocopy::IntoBytes;

use super::ops::Ops;
use crate::address::{ALL_NODES, DISCOVERY_IPV4, Flags, TEREDO_PORT, TEREDO_PREFIX, TeredoAddress};
use crate::checksum;
use crate::nonce::TokenKey;
use crate::peers::{PACKET_OVERHEAD, PeerLimits};
use crate::time::Instant;
use crate::tunnel::{Destination, Limits, Transmit};
use crate::wire::icmpv6::{DestinationUnreachable, Echo, Icmpv6, Icmpv6Repr, MAX_ERROR_LEN, Message};
use crate::wire::ipv6::{self, Ipv6Header, Ipv6Packet, NEXT_HEADER_ICMPV6, NO_NEXT_HEADER};
use crate::wire::trailer::{AlternateAddresses, Trailer};
use crate::wire::{Authentication, OriginIndication, PacketKind, TeredoPacket, encap};

/// The process key of every machine under test.
pub(super) const KEY: [u8; 32] = [7; 32];
/// The Teredo server (primary and secondary).
pub(super) const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(super) const SERVER2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Another server, that some peers use.
const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
/// The client's mapping as its server sees it.
pub(super) const OWN_MAP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 40_000);
/// The client's address on its LAN (hairpinning).
pub(super) const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 5), 40_001);
/// A Teredo relay on the IPv4 Internet, for native peers.
const RELAY_MAP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 200), 3545);
/// How many Teredo peers the world has.
pub(super) const PEERS: usize = 6;
/// Native IPv6 hosts.
const NATIVES: [Ipv6Addr; 2] =
    [Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), Ipv6Addr::new(0x2a00, 0x1450, 0, 0, 0, 0, 0, 0x200e)];
/// The most outputs one drain may give: every pending output, and every queued packet.
const fn max_drain(l: &Limits) -> usize {
    l.max_pending + l.peers.queue_bytes_total / PACKET_OVERHEAD + 1
}

/// Small limits, so that the fuzzer reaches every bound.
pub(super) fn limits() -> Limits {
    Limits {
        peers: PeerLimits {
            max_peers: 8,
            queue_bytes_per_peer: 1280,
            queue_bytes_total: 4096,
            idle_timeout: Duration::from_secs(30),
            max_strangers: 2,
        },
        max_pending: 16,
        unreachables_per_second: 10,
        tests_per_second: 4,
        bubbles_per_second: 8,
        max_retries: 16,
    }
}

/// Peer `i`'s mapping: peer 4 is behind a non-global address, peer 5 uses another server.
pub(super) fn peer_map(i: usize) -> SocketAddrV4 {
    let i = i % PEERS;
    if i == 4 {
        return SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 50_004);
    }
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10 + i as u8), 50_000 + i as u16)
}

/// Peer `i`'s Teredo address (odd peers have the cone bit).
pub(super) fn peer(i: usize) -> Ipv6Addr {
    let i = i % PEERS;
    let m = peer_map(i);
    TeredoAddress {
        prefix: TEREDO_PREFIX,
        server: if i == 5 { OTHER_SERVER } else { SERVER },
        flags: Flags(if i % 2 == 1 { 0x8000 } else { 0x0123 }),
        mapped_port: m.port(),
        mapped_addr: *m.ip(),
    }
    .to_ipv6()
}

/// The client's own Teredo address.
pub(super) fn own() -> Ipv6Addr {
    TeredoAddress {
        prefix: TEREDO_PREFIX,
        server: SERVER,
        flags: Flags(0x0456),
        mapped_port: OWN_MAP.port(),
        mapped_addr: *OWN_MAP.ip(),
    }
    .to_ipv6()
}

/// An IPv6 packet with this header and payload (the payload length is the payload's).
pub(super) fn packet(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Ipv6Header::new(src, dst, next_header, hop_limit, payload.len() as u16).as_bytes().to_vec();
    p.extend_from_slice(payload);
    p
}

/// An ICMPv6 message of any type with a correct checksum.
fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, msg_type: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![msg_type, code, 0, 0];
    m.extend_from_slice(body);
    let c = checksum::icmpv6(&src, &dst, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    packet(src, dst, NEXT_HEADER_ICMPV6, hop_limit, &m)
}

fn repr_packet(repr: Icmpv6Repr<'_>, src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    let mut buf = vec![0u8; ipv6::HEADER_LEN + repr.len()];
    let n = repr.emit_packet(&mut buf, src, dst, hop_limit).expect("the buffer has the repr's length");
    buf.truncate(n);
    buf
}

/// The world around one machine under test: the clock, what it sent lately, and what it
/// queued, for the checks.
#[derive(Debug)]
pub(super) struct World {
    pub(super) key: TokenKey,
    pub(super) now: Instant,
    /// The client's address while it has one; `None` for a relay.
    pub(super) own: Option<Ipv6Addr>,
    pub(super) limits: Limits,
    /// The last datagrams the machine built (not released packets), for answers.
    sent: VecDeque<(SocketAddrV4, Vec<u8>)>,
    /// TUN packets that were queued: a released packet must be one of them.
    tun_queued: HashSet<Vec<u8>>,
    /// Inner packets of datagrams that were queued (client case 6).
    udp_queued: HashSet<Vec<u8>>,
    /// The output buffer, kept from one drain to the next.
    buf: Vec<u8>,
    /// Router solicitations sent and not yet answered.
    solicitations: Vec<(SocketAddrV4, Vec<u8>)>,
}

impl World {
    pub(super) fn new(own: Option<Ipv6Addr>, limits: Limits) -> Self {
        Self {
            key: TokenKey::new(KEY),
            now: Instant::from_secs(1000),
            own,
            limits,
            sent: VecDeque::new(),
            tun_queued: HashSet::new(),
            udp_queued: HashSet::new(),
            buf: Vec::new(),
            solicitations: Vec::new(),
        }
    }

    /// Moves the clock forward by a fuzzer-chosen step: milliseconds, seconds, or (rarely)
    /// hours, which empties a peer table.
    pub(super) fn advance(&mut self, ops: &mut Ops<'_>) {
        let v = u64::from(ops.u16());
        let d = match ops.u8() % 8 {
            0..=2 => Duration::from_millis(v),
            3..=5 => Duration::from_millis(v * 10),
            6 => Duration::from_secs(v % 400),
            _ => Duration::from_secs(v),
        };
        self.now = self.now + d;
    }

    /// An IPv6 address: mostly one the machine knows.
    pub(super) fn addr6(&mut self, ops: &mut Ops<'_>) -> Ipv6Addr {
        match ops.u8() % 16 {
            0..=5 => peer(usize::from(ops.u8())),
            6 => NATIVES[usize::from(ops.u8()) % NATIVES.len()],
            7 | 8 => self.own.unwrap_or_else(|| peer(0)),
            9 => {
                let m = peer_map(usize::from(ops.u8()));
                self.key.bubble_source(*m.ip(), m.port())
            }
            10 => Ipv6Addr::new(0xfe80, 0, 0, 0, 0x8000, 0xffff, 0xffff, 0xfffe),
            11 => ALL_NODES,
            12 => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2),
            13 => {
                // A Teredo address with a mapping of the fuzzer's.
                let a = self.addr4(ops);
                let server = if ops.bool() { SERVER } else { Ipv4Addr::from(ops.u32()) };
                TeredoAddress {
                    prefix: TEREDO_PREFIX,
                    server,
                    flags: Flags(ops.u16()),
                    mapped_port: a.port(),
                    mapped_addr: *a.ip(),
                }
                .to_ipv6()
            }
            14 => Ipv6Addr::UNSPECIFIED,
            _ => Ipv6Addr::from(ops.array::<16>()),
        }
    }

    /// An IPv4 address and port: mostly one of the world's.
    pub(super) fn addr4(&mut self, ops: &mut Ops<'_>) -> SocketAddrV4 {
        match ops.u8() % 16 {
            0..=5 => peer_map(usize::from(ops.u8())),
            6 | 7 => SocketAddrV4::new(SERVER, TEREDO_PORT),
            8 => SocketAddrV4::new(SERVER2, TEREDO_PORT),
            9 => RELAY_MAP,
            10 => OWN_MAP,
            11 => LOCAL,
            12 => SocketAddrV4::new(*peer_map(usize::from(ops.u8())).ip(), 0),
            13 => SocketAddrV4::new(Ipv4Addr::BROADCAST, 3544),
            _ => SocketAddrV4::new(Ipv4Addr::from(ops.u32()), ops.u16()),
        }
    }

    /// An IPv6 packet from `src` to `dst`: a bubble, an echo request or reply, a
    /// destination unreachable (perhaps carrying one of our echo tests), another ICMPv6
    /// message, a UDP packet, or anything, sometimes corrupted afterwards.
    pub(super) fn ipv6(&mut self, ops: &mut Ops<'_>, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let kind = ops.u8();
        let hop = if kind & 0x80 != 0 { ops.u8() } else { 255 };
        let mut p = match kind % 8 {
            0 | 1 => packet(src, dst, NO_NEXT_HEADER, hop, &[]),
            2 | 3 => {
                let (identifier, sequence) = (ops.u16(), ops.u16());
                let data = ops.chunk();
                let e = Echo { identifier, sequence, data };
                let r = if kind % 8 == 2 { Icmpv6Repr::EchoRequest(e) } else { Icmpv6Repr::EchoReply(e) };
                repr_packet(r, src, dst, hop)
            }
            4 => {
                let code = ops.u8() % 8;
                let sent = self.sent_ipv6(ops);
                let invoking = match &sent {
                    Some(s) if ops.bool() => s.as_slice(),
                    _ => ops.chunk(),
                };
                let r = Icmpv6Repr::DestinationUnreachable(DestinationUnreachable { code, invoking });
                repr_packet(r, src, dst, hop)
            }
            5 => {
                let (t, code) = (ops.u8(), ops.u8());
                icmpv6(src, dst, hop, t, code, ops.chunk())
            }
            6 => packet(src, dst, 17, hop, ops.chunk()),
            _ => packet(src, dst, ops.u8(), hop, ops.chunk()),
        };
        // Corruptions: a payload length that lies, a byte flipped.
        match ops.u8() % 16 {
            0 => {
                let l = ops.u16();
                p[4..6].copy_from_slice(&l.to_be_bytes());
            }
            1 => {
                let at = usize::from(ops.u16()) % p.len();
                p[at] ^= ops.u8() | 1;
            }
            2 => p.extend_from_slice(ops.chunk()),
            _ => {}
        }
        p
    }

    /// The inner IPv6 packet of one of the datagrams the machine sent.
    fn sent_ipv6(&mut self, ops: &mut Ops<'_>) -> Option<Vec<u8>> {
        let i = usize::from(ops.u8()) % self.sent.len().max(1);
        let (_, d) = self.sent.get(i)?;
        Some(TeredoPacket::parse(d).ok()?.ipv6.bytes().to_vec())
    }

    /// A datagram: its source, then an optional authentication header and origin
    /// indication, an IPv6 packet, and trailers.
    pub(super) fn datagram(&mut self, ops: &mut Ops<'_>) -> (SocketAddrV4, Vec<u8>) {
        let from = self.addr4(ops);
        let flags = ops.u8();
        let mut d = vec![0u8; 64];
        let nonce = ops.array::<8>();
        let auth = (flags & 1 != 0).then(|| Authentication::with_nonce(nonce));
        let origin = if flags & 2 != 0 {
            let o = self.addr4(ops);
            Some(OriginIndication { addr: *o.ip(), port: o.port() })
        } else {
            None
        };
        let n = encap::emit_headers(&mut d, auth.as_ref(), origin.as_ref()).expect("64 bytes suffice");
        d.truncate(n);
        let (src, dst) = (self.addr6(ops), self.addr6(ops));
        d.extend_from_slice(&self.ipv6(ops, src, dst));
        self.trailers(ops, flags >> 2, &src, &mut d);
        (from, d)
    }

    /// RFC 6081 trailers after a packet from `src`: our nonce for it, another nonce, an
    /// Alternate Address, a Neighbor Discovery Option, or raw bytes.
    fn trailers(&mut self, ops: &mut Ops<'_>, choice: u8, src: &Ipv6Addr, d: &mut Vec<u8>) {
        let mut buf = [0u8; 64];
        let t = match choice % 8 {
            3 => Some(Trailer::Nonce(self.key.bubble_nonce(src))),
            4 => Some(Trailer::Nonce(ops.array())),
            5 => {
                let a = self.addr4(ops);
                let mut raw = [0u8; 6];
                raw[..4].copy_from_slice(&a.ip().octets());
                raw[4..].copy_from_slice(&a.port().to_be_bytes());
                let n = Trailer::AlternateAddress(AlternateAddresses::new(&raw).expect("one entry"))
                    .emit(&mut buf)
                    .expect("fits");
                d.extend_from_slice(&buf[..n]);
                None
            }
            6 => Some(Trailer::NeighborDiscovery { discovery_type: ops.u8() % 3 }),
            7 => {
                d.extend_from_slice(ops.chunk());
                None
            }
            _ => None,
        };
        if let Some(t) = t {
            let n = t.emit(&mut buf).expect("fits");
            d.extend_from_slice(&buf[..n]);
        }
        if choice & 0x20 != 0 {
            // A second one after the first.
            let next = ops.u8() & 0x1f;
            self.trailers(ops, next, src, d);
        }
    }

    /// A TUN packet from the machine's own address (or another) to a peer.
    pub(super) fn tun_packet(&mut self, ops: &mut Ops<'_>) -> Vec<u8> {
        let src = if ops.u8().is_multiple_of(4) { self.addr6(ops) } else { self.own.unwrap_or(NATIVES[0]) };
        let dst = self.addr6(ops);
        let len = usize::from(ops.u16()) % 1400;
        let payload = vec![ops.u8(); len];
        let nh = ops.pick(&[17, 6, NEXT_HEADER_ICMPV6, NO_NEXT_HEADER]);
        if nh == NEXT_HEADER_ICMPV6 {
            icmpv6(src, dst, 64, ops.u8(), 0, &payload)
        } else {
            packet(src, dst, nh, 64, &payload)
        }
    }

    /// An answer to one of the datagrams the machine sent: the bubble sent back with the
    /// addresses swapped (its nonce echoed or not), or the echo reply to an echo test, from
    /// the datagram's destination, the mapping its destination embeds, a relay, or the
    /// server with an origin indication.
    pub(super) fn answer(&mut self, ops: &mut Ops<'_>) -> Option<(SocketAddrV4, Vec<u8>)> {
        let i = usize::from(ops.u8()) % self.sent.len().max(1);
        let (to, d) = self.sent.get(i)?.clone();
        let p = TeredoPacket::parse(&d).ok()?;
        let (src, dst) = (p.ipv6.src(), p.ipv6.dst());
        let embedded = TeredoAddress::from_ipv6_with_any_prefix(&dst);
        let embedded = SocketAddrV4::new(embedded.mapped_addr, embedded.mapped_port);
        let how = ops.u8();
        let (from, origin) = match how % 5 {
            0 => (to, None),
            1 | 2 => (embedded, None),
            3 => (RELAY_MAP, None),
            _ => (SocketAddrV4::new(SERVER, TEREDO_PORT), Some(embedded)),
        };
        let mut out = vec![0u8; 8];
        let origin = origin.map(|o| OriginIndication { addr: *o.ip(), port: o.port() });
        let n = encap::emit_headers(&mut out, None, origin.as_ref()).expect("8 bytes suffice");
        out.truncate(n);
        match p.kind() {
            PacketKind::Bubble => {
                out.extend_from_slice(&packet(dst, src, NO_NEXT_HEADER, 255, &[]));
                if how & 0x10 != 0
                    && let Some(nonce) = p.trailers.nonce()
                {
                    let mut buf = [0u8; 8];
                    let n = Trailer::Nonce(nonce).emit(&mut buf).expect("fits");
                    out.extend_from_slice(&buf[..n]);
                }
                if how & 0x20 != 0 {
                    let mut buf = [0u8; 8];
                    let t = Trailer::NeighborDiscovery { discovery_type: (how >> 6) & 1 };
                    let n = t.emit(&mut buf).expect("fits");
                    out.extend_from_slice(&buf[..n]);
                }
            }
            PacketKind::EchoRequest => {
                let Ok(Message::EchoRequest(e)) = Message::parse(&p.ipv6) else { return None };
                let r = if how & 0x10 != 0 {
                    // An unreachable that carries the echo test, from a router on the way.
                    let invoking = p.ipv6.bytes();
                    Icmpv6Repr::DestinationUnreachable(DestinationUnreachable { code: 0, invoking })
                } else {
                    Icmpv6Repr::EchoReply(e)
                };
                out.extend_from_slice(&repr_packet(r, dst, src, 64));
            }
            _ => return None,
        }
        Some((from, out))
    }

    /// The router solicitations sent since the last call.
    pub(super) fn take_solicitations(&mut self) -> Vec<(SocketAddrV4, Vec<u8>)> {
        std::mem::take(&mut self.solicitations)
    }

    /// Remembers a TUN packet that the machine queued.
    pub(super) fn queued_tun(&mut self, packet: &[u8]) {
        self.tun_queued.insert(packet.to_vec());
    }

    /// Remembers the inner packet of a datagram that the machine queued.
    pub(super) fn queued_udp(&mut self, datagram: &[u8]) {
        let p = TeredoPacket::parse(datagram).expect("a queued datagram parsed");
        self.udp_queued.insert(p.ipv6.bytes().to_vec());
    }

    /// Takes every output of `poll` into a buffer of `len` bytes, checking each (`rs_ok`:
    /// router solicitations are expected, from a client endpoint).
    pub(super) fn drain(
        &mut self,
        len: usize,
        rs_ok: bool,
        mut poll: impl FnMut(Instant, &mut [u8]) -> Option<Transmit>,
    ) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(len.max(buf.len()), 0);
        let mut n = 0;
        while let Some(t) = poll(self.now, &mut buf[..len]) {
            n += 1;
            assert!(n <= max_drain(&self.limits), "more outputs than the limits allow");
            assert!(t.len <= len, "an output longer than the buffer");
            let b = &buf[..t.len];
            match t.dest {
                Destination::Udp(to) => self.check_udp(to, b, rs_ok),
                Destination::UdpFrom { port, to } => {
                    assert!(port != 0, "a random socket of port 0");
                    self.check_udp(to, b, rs_ok)
                }
                Destination::Tun => self.check_tun(b),
            }
        }
        self.buf = buf;
    }

    /// A datagram the machine sends to `to`: a released packet of the TUN, or one it
    /// built, which parses as a Teredo packet and is a bubble or an echo test (or, from a
    /// client's qualification, a router solicitation to its server).
    fn check_udp(&mut self, to: SocketAddrV4, b: &[u8], rs_ok: bool) {
        assert!(to.port() != 0, "a datagram to port 0");
        assert!(!to.ip().is_unspecified() && !to.ip().is_broadcast(), "a datagram to {to}: {b:02x?}");
        if self.tun_queued.contains(b) {
            return;
        }
        assert!(
            !to.ip().is_multicast() || to == SocketAddrV4::new(DISCOVERY_IPV4, TEREDO_PORT),
            "a datagram to the multicast {to}"
        );
        let p = TeredoPacket::parse(b).expect("every datagram the machine builds parses");
        assert!(p.trailers.check().is_ok(), "its trailers parse");
        assert_eq!(p.origin, None, "a client or relay sends no origin indication");
        match p.kind() {
            PacketKind::Bubble => {}
            PacketKind::EchoRequest => assert!(Icmpv6::checksum_ok(&p.ipv6), "an echo test's checksum"),
            PacketKind::RouterSolicitation if rs_ok => {
                assert_eq!(to.port(), TEREDO_PORT, "an RS to a server's port");
                self.solicitations.push((to, b.to_vec()));
                return;
            }
            k => panic!("the machine built a {k:?} datagram"),
        }
        if self.sent.len() >= 8 {
            self.sent.pop_front();
        }
        self.sent.push_back((to, b.to_vec()));
    }

    /// A packet the machine writes to the TUN: a released one, or an ICMPv6 destination
    /// unreachable within the minimum MTU whose checksum verifies and that answers no error
    /// nor multicast (RFC 4443 §2.4).
    fn check_tun(&mut self, b: &[u8]) {
        if self.udp_queued.contains(b) {
            return;
        }
        assert!(b.len() <= ipv6::HEADER_LEN + MAX_ERROR_LEN, "an ICMPv6 error beyond 1280 bytes");
        let (ip, rest) = Ipv6Packet::parse(b).expect("every TUN packet the machine builds parses");
        assert!(rest.is_empty());
        assert!(Icmpv6::checksum_ok(&ip), "an error's checksum");
        let Ok(Message::DestinationUnreachable(d)) = Message::parse(&ip) else {
            panic!("the machine wrote something other than an unreachable to the TUN")
        };
        if let Some(h) = d.invoking.get(..ipv6::HEADER_LEN) {
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&h[8..24]).expect("16 bytes"));
            assert!(!src.is_multicast() && !src.is_unspecified(), "an error to {src}");
            let icmp_error = h[6] == NEXT_HEADER_ICMPV6 && d.invoking.get(40).is_some_and(|&t| t < 128);
            assert!(!icmp_error, "an error about an error");
        }
    }
}
