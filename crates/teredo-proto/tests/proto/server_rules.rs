//! A property test of the Teredo server: for arbitrary datagrams (router solicitations,
//! bubbles, ICMPv6 messages, data packets, garbage) from arbitrary sources, its action
//! satisfies RFC 4380 §5.3.1 and §5.3.2, and its counters add up.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use proptest::prelude::*;
use teredo_proto::address::{Flags, TEREDO_PREFIX, TeredoAddress, is_global_unicast};
use teredo_proto::checksum;
use teredo_proto::server::{Action, Local, Server, ServerConfig, ServerStats};
use teredo_proto::wire::icmpv6::{Icmpv6, Message};
use teredo_proto::wire::ipv6::{ALL_ROUTERS, NEXT_HEADER_ICMPV6};
use teredo_proto::wire::{OriginIndication, PacketKind, TeredoPacket, encap};

const PRIMARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SECONDARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn server() -> Server {
    Server::new(ServerConfig { primary: PRIMARY, secondary: SECONDARY, prefix: TEREDO_PREFIX, mtu: 1280 })
}

/// IPv4 sources: public ones, special ones, the server's own, anything.
fn ipv4() -> BoxedStrategy<Ipv4Addr> {
    prop_oneof![
        3 => prop_oneof![
            Just(Ipv4Addr::new(198, 51, 100, 7)),
            Just(Ipv4Addr::new(203, 0, 113, 9)),
            Just(Ipv4Addr::new(8, 8, 8, 8)),
        ],
        1 => prop_oneof![
            Just(Ipv4Addr::new(10, 0, 0, 1)),
            Just(Ipv4Addr::new(127, 0, 0, 1)),
            Just(Ipv4Addr::UNSPECIFIED),
            Just(Ipv4Addr::new(224, 0, 0, 1)),
            Just(Ipv4Addr::BROADCAST),
            Just(Ipv4Addr::new(192, 168, 1, 1)),
            Just(PRIMARY),
            Just(SECONDARY),
        ],
        1 => any::<u32>().prop_map(Ipv4Addr::from),
    ]
    .boxed()
}

fn source() -> BoxedStrategy<SocketAddrV4> {
    (ipv4(), prop_oneof![4 => 1u16.., 1 => Just(0u16)]).prop_map(|(a, p)| SocketAddrV4::new(a, p)).boxed()
}

/// IPv6 addresses: Teredo clients of this server or another (mapped anywhere, at the
/// source's mapping), native, link-local (cone or not), all-routers, anything.
fn ipv6(src: SocketAddrV4) -> BoxedStrategy<Ipv6Addr> {
    let teredo =
        (prop_oneof![Just(PRIMARY), Just(Ipv4Addr::new(65, 54, 227, 120)), ipv4()], any::<bool>(), source())
            .prop_map(move |(server, at_source, m)| {
                let m = if at_source { src } else { m };
                TeredoAddress {
                    prefix: TEREDO_PREFIX,
                    server,
                    flags: Flags(0),
                    mapped_port: m.port(),
                    mapped_addr: *m.ip(),
                }
                .to_ipv6()
            });
    prop_oneof![
        4 => teredo,
        1 => Just("2001:db8::1".parse().unwrap()),
        1 => Just("fe80::8000:ffff:ffff:fffe".parse().unwrap()),
        1 => Just("fe80::ffff:ffff:fffe".parse().unwrap()),
        1 => Just(ALL_ROUTERS),
        1 => any::<u128>().prop_map(Ipv6Addr::from),
    ]
    .boxed()
}

/// An IPv6 packet: a bubble, an ICMPv6 message of a chosen type with a correct checksum
/// (or not), or a UDP packet.
fn packet(src: Ipv6Addr, dst: Ipv6Addr) -> BoxedStrategy<Vec<u8>> {
    let icmp_type =
        prop_oneof![Just(133u8), Just(134), Just(128), Just(129), Just(1), Just(135), any::<u8>()];
    prop_oneof![
        Just((59u8, 0u8, 255u8, 0usize, true)),
        (
            Just(NEXT_HEADER_ICMPV6),
            icmp_type,
            prop_oneof![Just(255u8), any::<u8>()],
            4usize..120,
            any::<bool>()
        ),
        (Just(17u8), Just(0u8), Just(64u8), 0usize..100, Just(true)),
    ]
    .prop_map(move |(nh, t, hop, len, good)| {
        let mut payload = vec![0u8; if nh == 59 { 0 } else { len }];
        if nh == NEXT_HEADER_ICMPV6 {
            payload[0] = t;
            let c = checksum::icmpv6(&src, &dst, &payload);
            let c = if good { c } else { c ^ 1 };
            payload[2..4].copy_from_slice(&c.to_be_bytes());
        }
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[nh, hop]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&payload);
        p
    })
    .boxed()
}

/// A datagram from `src`: an optional authentication header and origin indication, then
/// an IPv6 packet; or arbitrary bytes.
fn datagram() -> BoxedStrategy<(SocketAddrV4, Vec<u8>)> {
    source()
        .prop_flat_map(|from| {
            let built = (ipv6(from), ipv6(from))
                .prop_flat_map(|(s, d)| packet(s, d))
                .prop_flat_map(move |p| (Just(p), proptest::option::of(any::<[u8; 8]>()), any::<bool>()))
                .prop_map(move |(p, nonce, origin)| {
                    let auth = nonce.map(teredo_proto::wire::Authentication::with_nonce);
                    let o = OriginIndication { addr: *from.ip(), port: from.port() };
                    let mut d = vec![0u8; 32];
                    let n = encap::emit_headers(&mut d, auth.as_ref(), origin.then_some(&o)).unwrap();
                    d.truncate(n);
                    d.extend_from_slice(&p);
                    d
                });
            let raw = proptest::collection::vec(any::<u8>(), 0..100);
            (Just(from), prop_oneof![6 => built.boxed(), 3 => solicitation().boxed(), 1 => raw.boxed()])
        })
        .boxed()
}

/// A router solicitation as clients send it (RFC 4380 §5.2.1): from a link-local address,
/// cone or not, to all-routers, with a nonce or not, mostly with hop limit 255.
fn solicitation() -> BoxedStrategy<Vec<u8>> {
    let src = prop_oneof![
        Just("fe80::8000:ffff:ffff:fffe".parse::<Ipv6Addr>().unwrap()),
        Just("fe80::ffff:ffff:fffe".parse().unwrap()),
        any::<u64>().prop_map(|iid| Ipv6Addr::from(0xfe80u128 << 112 | u128::from(iid))),
    ];
    (src, proptest::option::of(any::<[u8; 8]>()), prop_oneof![4 => Just(255u8), 1 => any::<u8>()])
        .prop_map(|(src, nonce, hop)| {
            let mut d = vec![0u8; 128];
            let n = teredo_proto::server::emit_router_solicitation(&mut d, src, nonce).unwrap();
            // The hop limit of the IPv6 header (the packet is the last 48 bytes).
            d[n - 48 + 7] = hop;
            d.truncate(n);
            d
        })
        .boxed()
}

fn local() -> impl Strategy<Value = Local> {
    prop_oneof![Just(Local::Primary), Just(Local::Secondary)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn server_actions_follow_rfc4380(cases in proptest::collection::vec((local(), datagram()), 1..16)) {
        let s = server();
        let mut stats = ServerStats::default();
        let mut out = [0u8; 1500];
        for (local, (from, d)) in &cases {
            let a = s.handle_datagram(*local, *from, d, &mut out);
            stats.count(&a);
            let sends = !matches!(a, Action::Drop(_));
            // Rule 3: never an answer to a source that is not global unicast, nor to port 0,
            // nor to the server itself.
            if !is_global_unicast(*from.ip()) || from.port() == 0 || *from.ip() == PRIMARY || *from.ip() == SECONDARY {
                prop_assert!(!sends, "{a:?} for {from}");
            }
            if !sends {
                continue;
            }
            let p = TeredoPacket::parse(d).unwrap();
            let kind = p.kind();
            // Rule 2: only bubbles and ICMPv6.
            prop_assert!(kind == PacketKind::Bubble || p.ipv6.header().next_header == NEXT_HEADER_ICMPV6);
            match a {
                Action::SendUdp { to, len, advertisement: true, .. } => {
                    // An RA only to an RS, to its sender.
                    prop_assert_eq!(kind, PacketKind::RouterSolicitation);
                    prop_assert!(Icmpv6::checksum_ok(&p.ipv6));
                    prop_assert_eq!(to, *from);
                    let ra = TeredoPacket::parse(&out[..len]).unwrap();
                    prop_assert!(matches!(Message::parse(&ra.ipv6), Ok(Message::RouterAdvertisement(_))));
                    let o = ra.origin.unwrap();
                    prop_assert_eq!(SocketAddrV4::new(o.addr, o.port), *from);
                }
                Action::SendUdp { to, len, advertisement: false, from: out_from } => {
                    // A relayed bubble or ICMPv6 message goes to the destination's embedded
                    // mapping, with an origin indication equal to the source for the
                    // server's own clients, the packet unchanged.
                    prop_assert!(kind != PacketKind::RouterSolicitation && kind != PacketKind::RouterAdvertisement);
                    prop_assert_eq!(out_from, Local::Primary);
                    let dst = TeredoAddress::from_ipv6(&p.ipv6.dst()).unwrap();
                    prop_assert_eq!(to, SocketAddrV4::new(dst.mapped_addr, dst.mapped_port));
                    prop_assert!(is_global_unicast(*to.ip()));
                    let r = TeredoPacket::parse(&out[..len]).unwrap();
                    let o = r.origin.map(|o| SocketAddrV4::new(o.addr, o.port));
                    prop_assert_eq!(o, (dst.server == PRIMARY).then_some(*from));
                    prop_assert_eq!(r.ipv6.bytes(), p.ipv6.bytes());
                    if kind != PacketKind::Bubble {
                        prop_assert!(Icmpv6::checksum_ok(&p.ipv6));
                    }
                    // Rules 5 and 6: a Teredo source at its own mapping, or a native one to
                    // a client of this server.
                    match TeredoAddress::from_ipv6(&p.ipv6.src()) {
                        Some(t) => prop_assert_eq!(SocketAddrV4::new(t.mapped_addr, t.mapped_port), *from),
                        None => prop_assert_eq!(dst.server, PRIMARY),
                    }
                }
                Action::SendIpv6 { start, len, dst } => {
                    // Only a client's echo test, to a native destination.
                    prop_assert!(matches!(kind, PacketKind::EchoRequest | PacketKind::EchoReply));
                    prop_assert_eq!(&d[start..start + len], p.ipv6.bytes());
                    prop_assert_eq!(dst, p.ipv6.dst());
                    prop_assert!(TeredoAddress::from_ipv6(&dst).is_none());
                    let t = TeredoAddress::from_ipv6(&p.ipv6.src()).unwrap();
                    prop_assert_eq!(SocketAddrV4::new(t.mapped_addr, t.mapped_port), *from);
                }
                Action::Drop(_) => unreachable!(),
            }
        }
        // The counters add up.
        let drops: u64 = stats.drops.iter().sum();
        prop_assert_eq!(stats.received, cases.len() as u64);
        prop_assert_eq!(stats.received, stats.advertisements + stats.relayed_udp + stats.relayed_ipv6 + drops);
        prop_assert_eq!(stats.malformed() + stats.dropped(), drops);
    }
}

/// The generated datagrams reach every action, so that the property above is not vacuous.
#[test]
fn generated_datagrams_reach_every_action() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let s = server();
    let mut runner = TestRunner::deterministic();
    let mut stats = ServerStats::default();
    let mut out = [0u8; 1500];
    for _ in 0..5000 {
        let (local, (from, d)) = (local(), datagram()).new_tree(&mut runner).unwrap().current();
        stats.count(&s.handle_datagram(local, from, &d, &mut out));
    }
    assert!(stats.advertisements > 0 && stats.relayed_udp > 0 && stats.relayed_ipv6 > 0, "{stats:?}");
    assert!(stats.drops.iter().filter(|&&n| n > 0).count() >= 6, "{stats:?}");
}
