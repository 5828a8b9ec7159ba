//! The Teredo server under fuzzing: a sequence of datagrams (raw, router solicitations
//! plain or signed for secure qualification, or built like the data path's) received on
//! either address from fuzzer-chosen sources, with output buffers of any size. Each
//! action is checked against RFC 4380 §5.3.1 and §5.3.2 ([`check_action`]), and the
//! counters must add up.

use std::net::{Ipv6Addr, SocketAddrV4};
use std::sync::Arc;

use super::ops::Ops;
use super::world::{self, SERVER, SERVER2, World};
use crate::address::{TEREDO_PREFIX, TeredoAddress, is_global_unicast};
use crate::secure::{AUTH_VALUE_LEN, Credentials};
use crate::server::{
    Action, ClientKeys, DropReason, Local, MAX_RELAYED_PAYLOAD, Server, ServerConfig, ServerStats,
};
use crate::wire::icmpv6::{Icmpv6, Icmpv6Repr, Message};
use crate::wire::ipv6::{ALL_ROUTERS, NEXT_HEADER_ICMPV6};
use crate::wire::{Authentication, Ipv6Packet, OriginIndication, PacketKind, TeredoPacket, encap};

/// The most datagrams one input runs.
const MAX_STEPS: usize = 256;
/// The secure-qualification client the server knows.
const CLIENT_ID: &[u8] = b"client-1";
const CLIENT_SECRET: &[u8] = b"a shared secret";

/// The server on a sequence of datagrams.
pub fn server(data: &[u8]) {
    let mut ops = Ops::new(data);
    let cfg = ops.u8();
    let config = ServerConfig { primary: SERVER, secondary: SERVER2, prefix: TEREDO_PREFIX, mtu: 1280 };
    let mut s = Server::new(config);
    let credentials = Credentials::new(CLIENT_ID, CLIENT_SECRET).expect("valid credentials");
    if cfg & 1 != 0 {
        let mut keys = ClientKeys::new(cfg & 2 != 0);
        keys.insert(credentials.clone());
        s.set_client_keys(Some(Arc::new(keys)));
    }
    let mut w = World::new(None, world::limits());
    let mut stats = ServerStats::default();
    let mut out = vec![0u8; 1500];
    for _ in 0..MAX_STEPS {
        if ops.is_empty() {
            break;
        }
        let local = if ops.bool() { Local::Primary } else { Local::Secondary };
        let (from, d) = match ops.u8() % 4 {
            0 => (w.addr4(&mut ops), ops.chunk().to_vec()),
            1 => (w.addr4(&mut ops), solicitation(&mut w, &mut ops, &credentials)),
            _ => w.datagram(&mut ops),
        };
        let len = match ops.u8() % 8 {
            0 => usize::from(ops.u8()),
            1 => usize::from(ops.u16()) % 1500,
            _ => 1500,
        };
        let a = s.handle_datagram(local, from, &d, &mut out[..len]);
        check_action(&s, local, from, &d, &out[..len], &a);
        if cfg & 3 == 3 && matches!(a, Action::SendUdp { advertisement: true, .. }) {
            // RequireAuthentication: only the known client, signed.
            let p = TeredoPacket::parse(&d).expect("an RS parses");
            let auth = p.auth.expect("an RA to an RS without authentication");
            assert!(credentials.verify(&auth, p.origin.as_ref(), p.ipv6.bytes()), "an RA to an unsigned RS");
        }
        stats.count(&a);
        let drops: u64 = stats.drops.iter().sum();
        assert_eq!(stats.received, stats.advertisements + stats.relayed_udp + stats.relayed_ipv6 + drops);
        assert_eq!(stats.malformed() + stats.dropped(), drops);
    }
}

/// A router solicitation as a client sends it: from a link-local source (cone or not),
/// with or without a nonce, signed with the known client's secret, another's, or not.
fn solicitation(w: &mut World, ops: &mut Ops<'_>, known: &Credentials) -> Vec<u8> {
    let flags = ops.u8();
    let src = match flags % 4 {
        0 => Ipv6Addr::new(0xfe80, 0, 0, 0, 0x8000, 0xffff, 0xffff, 0xfffe),
        1 => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xffff, 0xffff, 0xfffe),
        _ => w.addr6(ops),
    };
    let dst = if flags & 4 != 0 { w.addr6(ops) } else { ALL_ROUTERS };
    let lla = ops.chunk();
    let repr = Icmpv6Repr::RouterSolicitation { source_link_layer: (flags & 8 != 0).then_some(lla) };
    let mut ip = vec![0u8; 40 + repr.len()];
    let hop = if flags & 0x10 != 0 { ops.u8() } else { 255 };
    let n = repr.emit_packet(&mut ip, src, dst, hop).expect("the buffer has the repr's length");
    ip.truncate(n);
    let nonce = ops.array::<8>();
    let other = Credentials::new(b"client-2", b"another secret").expect("valid credentials");
    let signer = match (flags >> 5) % 4 {
        0 => None,
        1 => Some(known),
        2 => Some(&other),
        _ => {
            let mut d = vec![0u8; 24];
            let a = Authentication::with_nonce(nonce);
            let k = encap::emit_headers(&mut d, Some(&a), None).expect("fits");
            d.truncate(k);
            d.extend_from_slice(&ip);
            return d;
        }
    };
    let mut d = vec![0u8; 64];
    let k = match signer {
        None => encap::emit_headers(&mut d, None, None),
        Some(c) => {
            let placeholder = [0u8; AUTH_VALUE_LEN];
            let a = Authentication { client_id: c.id(), auth_value: &placeholder, nonce, confirmation: 0 };
            let value = c.auth_value(&a, None, &ip);
            let a = Authentication { auth_value: &value, ..a };
            encap::emit_headers(&mut d, Some(&a), None)
        }
    }
    .expect("fits");
    d.truncate(k);
    d.extend_from_slice(&ip);
    d
}

/// What a server may do with `datagram` from `from` (RFC 4380 §5.3.1, §5.3.2, RFC 5991
/// §3.2): never answer a source that is not global unicast, or port 0, or one of its own
/// addresses; an RA only to an RS, to its source, from the right address, fitting `out`;
/// a relayed packet only a bubble or an ICMPv6 message (not neighbour discovery, at most
/// [`MAX_RELAYED_PAYLOAD`] bytes of payload), unchanged, to the mapping its destination
/// embeds, with an origin indication equal to the source for the server's own clients;
/// to the IPv6 network only an echo test of one of its clients to a native destination.
pub fn check_action(
    s: &Server,
    local: Local,
    from: SocketAddrV4,
    datagram: &[u8],
    out: &[u8],
    action: &Action,
) {
    let c = s.config();
    let sends = !matches!(action, Action::Drop(_));
    if !sends {
        if let Action::Drop(DropReason::BufferTooSmall) = action {
            assert!(out.len() < 1500, "a 1500-byte buffer is always enough");
        }
        return;
    }
    assert!(is_global_unicast(*from.ip()) && from.port() != 0, "answered {from}");
    assert!(*from.ip() != c.primary && *from.ip() != c.secondary, "answered itself");
    let p = TeredoPacket::parse(datagram).expect("what is answered parses");
    assert!(p.trailers.check().is_ok(), "what is answered has valid trailers");
    let kind = p.kind();
    let inner_len = p.ipv6.bytes().len() + p.trailers.as_bytes().len();
    let inner = &datagram[datagram.len() - inner_len..];
    match *action {
        Action::SendUdp { from: out_from, to, len, advertisement: true } => {
            assert!(len <= out.len(), "an RA beyond the buffer");
            assert_eq!(kind, PacketKind::RouterSolicitation, "an RA to something else than an RS");
            assert!(Icmpv6::checksum_ok(&p.ipv6), "an RA to an RS with a bad checksum");
            assert_eq!(to, from, "an RA to someone else");
            let cone = crate::address::is_cone_link_local(&p.ipv6.src());
            assert_eq!(out_from, if cone { local.other() } else { local }, "the RA from the wrong address");
            let ra = TeredoPacket::parse(&out[..len]).expect("the RA parses");
            let o = ra.origin.expect("an RA carries an origin indication");
            assert_eq!((o.addr, o.port), (*from.ip(), from.port()), "the RA's origin is the source");
            assert!(Icmpv6::checksum_ok(&ra.ipv6), "the RA's checksum");
            assert_eq!(ra.ipv6.src(), s.link_local());
            assert_eq!(ra.ipv6.dst(), p.ipv6.src(), "the RA goes to the RS's source");
            let Ok(Message::RouterAdvertisement(m)) = Message::parse(&ra.ipv6) else {
                panic!("an RA that does not parse")
            };
            let (prefix, server) = m.prefix_information().expect("a prefix").teredo_prefix();
            assert_eq!((prefix, server), (c.prefix, c.primary), "the RA's prefix");
            assert_eq!(ra.auth.map(|a| a.nonce), p.auth.map(|a| a.nonce), "the nonce is echoed");
        }
        Action::SendUdp { from: out_from, to, len, advertisement: false } => {
            assert_eq!(out_from, Local::Primary, "relayed from the secondary address");
            assert!(len <= out.len(), "a relayed packet beyond the buffer");
            assert!(
                kind == PacketKind::Bubble || p.ipv6.header().next_header == NEXT_HEADER_ICMPV6,
                "relayed a {kind:?}"
            );
            assert!(!matches!(kind, PacketKind::RouterSolicitation | PacketKind::RouterAdvertisement));
            if kind != PacketKind::Bubble {
                assert!(p.ipv6.header().payload_len() <= MAX_RELAYED_PAYLOAD, "relayed a large packet");
                assert!(Icmpv6::checksum_ok(&p.ipv6), "relayed a bad checksum");
                let t = p.ipv6.payload().first().copied();
                assert!(!t.is_some_and(|t| (133..=137).contains(&t)), "relayed neighbour discovery");
            }
            let dst =
                TeredoAddress::from_ipv6_with_prefix(&p.ipv6.dst(), c.prefix).expect("to a Teredo client");
            assert_eq!(
                to,
                SocketAddrV4::new(dst.mapped_addr, dst.mapped_port),
                "not to the embedded mapping"
            );
            assert!(is_global_unicast(*to.ip()), "relayed to {to}");
            assert!(*to.ip() != c.primary && *to.ip() != c.secondary, "relayed to itself");
            let r = TeredoPacket::parse(&out[..len]).expect("what is relayed parses");
            assert_eq!(r.auth, None);
            let own_client = dst.server == c.primary;
            let origin = OriginIndication { addr: *from.ip(), port: from.port() };
            assert_eq!(r.origin, own_client.then_some(origin), "the origin indication");
            let at = len - inner.len();
            assert_eq!(&out[at..len], inner, "relayed changed");
        }
        Action::SendIpv6 { start, len, dst } => {
            assert!(
                matches!(kind, PacketKind::EchoRequest | PacketKind::EchoReply),
                "sent a {kind:?} natively"
            );
            let ip = datagram.get(start..start + len).expect("within the datagram");
            let (ip, rest) = Ipv6Packet::parse(ip).expect("what is sent natively parses");
            assert!(rest.is_empty());
            assert_eq!(ip.dst(), dst);
            assert!(Icmpv6::checksum_ok(&ip), "sent a bad checksum");
            assert!(TeredoAddress::from_ipv6_with_prefix(&dst, c.prefix).is_none(), "a Teredo destination");
            let src =
                TeredoAddress::from_ipv6_with_prefix(&ip.src(), c.prefix).expect("from a Teredo client");
            assert_eq!(SocketAddrV4::new(src.mapped_addr, src.mapped_port), from, "from a spoofed client");
        }
        Action::Drop(_) => unreachable!(),
    }
}
