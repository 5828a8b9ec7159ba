//! Property tests: every builder/parser pair round-trips, and no parser panics on
//! arbitrary bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use teredo_proto::address::{Flags, TeredoAddress};
use teredo_proto::wire::icmpv6::{
    DestinationUnreachable, Echo, Icmpv6, Icmpv6Repr, MAX_ERROR_LEN, Message, PrefixInformation,
};
use teredo_proto::wire::trailer::{AlternateAddresses, Trailer};
use teredo_proto::wire::{Authentication, OriginIndication, TeredoPacket, Trailers, encap, ipv6};

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}
fn ipv6_addr() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn trailer(alt: &'static [u8]) -> BoxedStrategy<Trailer<'static>> {
    let alt_len = [6usize, 12, 18, 24];
    prop_oneof![
        any::<[u8; 4]>().prop_map(Trailer::Nonce),
        any::<u8>().prop_map(|d| Trailer::NeighborDiscovery { discovery_type: d }),
        (prop_oneof![Just(2u8), Just(5u8)], any::<u16>())
            .prop_map(|(t, port)| Trailer::RandomPort { trailer_type: t, port }),
        proptest::sample::select(alt_len.to_vec())
            .prop_map(move |n| Trailer::AlternateAddress(AlternateAddresses::new(&alt[..n]).unwrap())),
        // unknown types that may be skipped: high bits 00, 10 or 11, avoiding known ones
        (prop_oneof![6u8..0x40, 0x80u8..=0xff], 0usize..20)
            .prop_map(move |(t, n)| Trailer::Unknown { trailer_type: t, value: &alt[..n] }),
    ]
    .boxed()
}

fn icmp_repr(data: &'static [u8]) -> BoxedStrategy<Icmpv6Repr<'static>> {
    let prefix =
        (any::<u8>(), any::<u8>(), any::<u32>(), any::<u32>(), ipv6_addr()).prop_map(|(l, f, v, p, a)| {
            PrefixInformation { prefix_len: l, flags: f, valid_lifetime: v, preferred_lifetime: p, prefix: a }
        });
    prop_oneof![
        prop_oneof![Just(None), Just(Some(6usize)), Just(Some(14usize))]
            .prop_map(move |n| Icmpv6Repr::RouterSolicitation { source_link_layer: n.map(|n| &data[..n]) }),
        (any::<(u8, u8, u16, u32, u32)>(), proptest::option::of(prefix), proptest::option::of(any::<u32>()))
            .prop_map(|((h, f, l, r, t), prefix, mtu)| Icmpv6Repr::RouterAdvertisement {
                cur_hop_limit: h,
                flags: f,
                router_lifetime: l,
                reachable_time: r,
                retrans_timer: t,
                prefix,
                mtu,
            }),
        (any::<bool>(), any::<u16>(), any::<u16>(), 0usize..100).prop_map(move |(req, i, s, n)| {
            let e = Echo { identifier: i, sequence: s, data: &data[..n] };
            if req { Icmpv6Repr::EchoRequest(e) } else { Icmpv6Repr::EchoReply(e) }
        }),
        (any::<u8>(), 0usize..=MAX_ERROR_LEN - 8).prop_map(move |(c, n)| Icmpv6Repr::DestinationUnreachable(
            DestinationUnreachable { code: c, invoking: &data[..n] }
        )),
    ]
    .boxed()
}

static DATA: [u8; 2048] = {
    let mut d = [0u8; 2048];
    let mut i = 0;
    while i < d.len() {
        d[i] = (i * 7 + 3) as u8;
        i += 1;
    }
    d
};

proptest! {
    #[test]
    fn address_round_trip(prefix in any::<u32>(), server in ipv4(), flags in any::<u16>(), port in any::<u16>(), mapped in ipv4()) {
        let a = TeredoAddress { prefix, server, flags: Flags(flags), mapped_port: port, mapped_addr: mapped };
        prop_assert_eq!(TeredoAddress::from_ipv6_with_any_prefix(&a.to_ipv6()), a);
        prop_assert_eq!(TeredoAddress::from_octets(&a.octets()), a);
    }

    #[test]
    fn random_flags_are_rfc5991(r in any::<u16>()) {
        let f = Flags::random(r);
        prop_assert!(!f.cone() && !f.z() && !f.u() && !f.g());
        prop_assert_eq!(f.0 & !Flags::RANDOM_MASK, 0);
        prop_assert_eq!(u16::from(f.random1()) << 10 | u16::from(f.random2()), r & Flags::RANDOM_MASK);
    }

    #[test]
    fn icmpv6_round_trip(repr in icmp_repr(&DATA), src in ipv6_addr(), dst in ipv6_addr(), hl in any::<u8>()) {
        let mut buf = [0u8; 1400];
        let n = repr.emit_packet(&mut buf, src, dst, hl).unwrap();
        let (p, rest) = teredo_proto::wire::Ipv6Packet::parse(&buf[..n]).unwrap();
        prop_assert!(rest.is_empty());
        prop_assert!(Icmpv6::checksum_ok(&p));
        prop_assert_eq!((p.src(), p.dst(), p.header().hop_limit), (src, dst, hl));
        let m = Message::parse(&p).unwrap();
        prop_assert_eq!(Icmpv6Repr::from_message(&m), Some(repr));
        // a single flipped bit breaks the checksum
        let i = n - 1;
        buf[i] ^= 0x10;
        let (q, _) = teredo_proto::wire::Ipv6Packet::parse(&buf[..n]).unwrap();
        prop_assert!(!Icmpv6::checksum_ok(&q));
    }

    #[test]
    fn teredo_packet_round_trip(
        nonce in proptest::option::of(any::<[u8; 8]>()),
        id_len in 0usize..20,
        au_len in 0usize..20,
        conf in any::<u8>(),
        origin in proptest::option::of((ipv4(), any::<u16>())),
        repr in proptest::option::of(icmp_repr(&DATA)),
        trailers in proptest::collection::vec(trailer(&DATA), 0..4),
        src in ipv6_addr(),
        dst in ipv6_addr(),
    ) {
        let auth = nonce.map(|n| Authentication { client_id: &DATA[..id_len], auth_value: &DATA[100..100 + au_len], nonce: n, confirmation: conf });
        let origin = origin.map(|(addr, port)| OriginIndication { addr, port });
        let mut buf = [0u8; 1600];
        let mut n = encap::emit_headers(&mut buf, auth.as_ref(), origin.as_ref()).unwrap();
        n += match repr {
            Some(r) => r.emit_packet(&mut buf[n..], src, dst, 64).unwrap(),
            None => ipv6::emit_bubble(&mut buf[n..], src, dst, 0).unwrap(),
        };
        let ipv6_end = n;
        for t in &trailers {
            n += t.emit(&mut buf[n..]).unwrap();
        }
        let p = TeredoPacket::parse(&buf[..n]).unwrap();
        prop_assert_eq!(p.auth, auth);
        prop_assert_eq!(p.origin, origin);
        prop_assert_eq!(p.ipv6.is_bubble(), repr.is_none());
        prop_assert_eq!(p.trailers.as_bytes(), &buf[ipv6_end..n]);
        let parsed: Vec<Trailer<'_>> = p.trailers.iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(parsed, trailers);
    }

    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        teredo_proto::fuzz::encap(&data);
        teredo_proto::fuzz::ipv6(&data);
        teredo_proto::fuzz::trailers(&data);
        teredo_proto::fuzz::address(&data);
    }

    #[test]
    fn parsers_never_panic_on_teredo_like_input(
        head in prop_oneof![Just(vec![0u8, 1]), Just(vec![0u8, 0]), Just(vec![0x60u8])],
        data in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut d = head;
        d.extend_from_slice(&data);
        teredo_proto::fuzz::encap(&d);
        // and a valid IPv6 header with random payload length and next header
        let mut v = vec![0x60, 0, 0, 0, 0, data.len().min(255) as u8, 58, 255];
        v.extend_from_slice(&[0u8; 32]);
        v.extend_from_slice(&data);
        teredo_proto::fuzz::ipv6(&v);
        let _ = Trailers::new(&data).check();
    }
}
