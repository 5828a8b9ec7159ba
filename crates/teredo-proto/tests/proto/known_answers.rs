//! Known-answer tests: the bytes of real Teredo exchanges (Windows clients, Microsoft and
//! other servers, a Miredo relay) from `tests/pcaps/`, parsed field by field and, where we
//! build the same message, rebuilt byte for byte.

use std::net::{Ipv4Addr, Ipv6Addr};

use teredo_proto::address::{self, TeredoAddress};
use teredo_proto::wire::icmpv6::{Icmpv6, Icmpv6Repr, Message, PrefixInformation};
use teredo_proto::wire::{Authentication, OriginIndication, PacketKind, TeredoPacket, encap, ipv6};

use crate::pcap::udp_payload;

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// zeek-Teredo.pcap frame 6: a Windows Vista RS with an authentication header, a
/// cone-bit link-local source and a source link-layer address option.
#[test]
fn zeek_frame6_router_solicitation() {
    let d = udp_payload("zeek-Teredo.pcap", 6);
    let p = TeredoPacket::parse(&d).unwrap();
    let auth = p.auth.unwrap();
    assert_eq!(auth.nonce, [0xcd, 0x56, 0x69, 0x40, 0x0b, 0x22, 0xdf, 0x88]);
    assert_eq!((auth.client_id, auth.auth_value, auth.confirmation), (&[][..], &[][..], 0));
    assert_eq!(p.origin, None);
    assert_eq!(p.kind(), PacketKind::RouterSolicitation);
    assert_eq!(p.ipv6.src(), ip6("fe80::8000:ffff:ffff:fffd"));
    assert!(address::is_cone_link_local(&p.ipv6.src()));
    assert_eq!(p.ipv6.dst(), ip6("ff02::2"));
    assert_eq!(p.ipv6.header().hop_limit, 255);
    assert!(Icmpv6::checksum_ok(&p.ipv6));
    assert!(p.trailers.is_empty());
    let Message::RouterSolicitation(rs) = Message::parse(&p.ipv6).unwrap() else { panic!("not an RS") };
    let ll = rs.source_link_layer().unwrap();
    assert_eq!(ll, &[0, 0, 0, 0, 0, 0, 0x80, 0x00, 0xf1, 0x2a, 0xb9, 0xc8, 0x28, 0x15]);

    // Rebuilt byte for byte.
    let mut buf = [0u8; 200];
    let n = encap::emit_headers(&mut buf, Some(&auth), None).unwrap();
    let m = Icmpv6Repr::RouterSolicitation { source_link_layer: Some(ll) }
        .emit_packet(&mut buf[n..], p.ipv6.src(), p.ipv6.dst(), 255)
        .unwrap();
    assert_eq!(&buf[..n + m], &d[..]);
}

/// zeek-Teredo.pcap frame 7: the RA of teredo.ipv6.microsoft.com, sent from its secondary
/// address because the RS had the cone bit.
#[test]
fn zeek_frame7_router_advertisement() {
    let d = udp_payload("zeek-Teredo.pcap", 7);
    let p = TeredoPacket::parse(&d).unwrap();
    assert_eq!(p.auth.unwrap().nonce, [0xcd, 0x56, 0x69, 0x40, 0x0b, 0x22, 0xdf, 0x88]);
    let o = p.origin.unwrap();
    assert_eq!((o.addr, o.port), (Ipv4Addr::new(70, 55, 215, 234), 3797));
    assert_eq!(p.kind(), PacketKind::RouterAdvertisement);
    assert_eq!(p.ipv6.src(), address::server_link_local(Ipv4Addr::new(65, 55, 158, 80)));
    assert_eq!(p.ipv6.dst(), ip6("fe80::8000:ffff:ffff:fffd"));
    assert!(Icmpv6::checksum_ok(&p.ipv6));
    let Message::RouterAdvertisement(ra) = Message::parse(&p.ipv6).unwrap() else { panic!("not an RA") };
    assert_eq!((ra.cur_hop_limit, ra.flags, ra.router_lifetime), (0, 0, 0));
    assert_eq!((ra.reachable_time, ra.retrans_timer), (0, 2000));
    assert_eq!(ra.prefix_count(), 1);
    assert_eq!(ra.mtu(), None);
    let pio = ra.prefix_information().unwrap();
    assert_eq!(pio.prefix_len, 64);
    assert_eq!(pio.flags, PrefixInformation::FLAG_AUTONOMOUS);
    assert_eq!((pio.valid_lifetime, pio.preferred_lifetime), (u32::MAX, u32::MAX));
    assert_eq!(pio.teredo_prefix(), (address::TEREDO_PREFIX, Ipv4Addr::new(65, 55, 158, 80)));

    // Rebuilt byte for byte, as our server builds an RA.
    let mut buf = [0u8; 200];
    let n = encap::emit_headers(&mut buf, p.auth.as_ref(), Some(&o)).unwrap();
    let repr = Icmpv6Repr::RouterAdvertisement {
        cur_hop_limit: 0,
        flags: 0,
        router_lifetime: 0,
        reachable_time: 0,
        retrans_timer: 2000,
        prefix: Some(pio),
        mtu: None,
    };
    let m = repr.emit_packet(&mut buf[n..], p.ipv6.src(), p.ipv6.dst(), 255).unwrap();
    assert_eq!(&buf[..n + m], &d[..]);
}

/// zeek-Teredo.pcap frame 31: the server relays a Miredo relay's indirect bubble with an
/// origin indication (the relay at 83.170.1.38:32900).
#[test]
fn zeek_frame31_origin_indicated_bubble() {
    let d = udp_payload("zeek-Teredo.pcap", 31);
    assert_eq!(&d[..16], &[0, 0, 0x7f, 0x7b, 0xac, 0x55, 0xfe, 0xd9, 0x60, 0, 0, 0, 0, 0, 0x3b, 0]);
    let p = TeredoPacket::parse(&d).unwrap();
    assert!(p.auth.is_none());
    assert_eq!(p.origin, Some(OriginIndication { addr: Ipv4Addr::new(83, 170, 1, 38), port: 32900 }));
    assert_eq!(p.kind(), PacketKind::Bubble);
    assert_eq!(p.ipv6.header().hop_limit, 0);
    assert_eq!(p.ipv6.src(), ip6("fe80::708d:fe83:4114:a512"));
    let dst = TeredoAddress::from_ipv6(&p.ipv6.dst()).unwrap();
    assert_eq!(dst.server, Ipv4Addr::new(65, 55, 158, 80));
    assert_eq!((dst.mapped_addr, dst.mapped_port), (Ipv4Addr::new(70, 55, 215, 234), 3797));
    assert!(dst.flags.cone());

    let mut buf = [0u8; 64];
    let n = encap::emit_headers(&mut buf, None, p.origin.as_ref()).unwrap();
    let m = ipv6::emit_bubble(&mut buf[n..], p.ipv6.src(), p.ipv6.dst(), 0).unwrap();
    assert_eq!(&buf[..n + m], &d[..]);
}

/// zeek-Teredo.pcap frames 29, 30 and 33: a direct bubble to the relay, the direct IPv6
/// connectivity test sent through the server, and the relay's echo reply.
#[test]
fn zeek_echo_test_and_bubble() {
    let bubble = udp_payload("zeek-Teredo.pcap", 29);
    let p = TeredoPacket::parse(&bubble).unwrap();
    assert_eq!((p.kind(), p.ipv6.header().hop_limit), (PacketKind::Bubble, 21));

    let req = udp_payload("zeek-Teredo.pcap", 30);
    let p = TeredoPacket::parse(&req).unwrap();
    assert_eq!(p.kind(), PacketKind::EchoRequest);
    assert!(Icmpv6::checksum_ok(&p.ipv6));
    let Message::EchoRequest(e) = Message::parse(&p.ipv6).unwrap() else { panic!() };
    assert_eq!((e.identifier, e.sequence, e.data), (0xd373, 46747, &[0x53, 0xaa, 0x01, 0x26][..]));

    let rep = udp_payload("zeek-Teredo.pcap", 33);
    let q = TeredoPacket::parse(&rep).unwrap();
    assert_eq!(q.kind(), PacketKind::EchoReply);
    assert!(Icmpv6::checksum_ok(&q.ipv6));
    let Message::EchoReply(r) = Message::parse(&q.ipv6).unwrap() else { panic!() };
    assert_eq!((r.identifier, r.sequence, r.data), (e.identifier, e.sequence, e.data));
    assert_eq!((q.ipv6.src(), q.ipv6.dst()), (p.ipv6.dst(), p.ipv6.src()));
}

/// ndpi-teredo.pcap frame 2: an RA whose prefix option has junk beyond /64
/// (2001:0:c288:1c4c:ff00:0:20:100), with a reachable time of 15000 ms.
#[test]
fn ndpi_ra_with_junk_beyond_64() {
    let d = udp_payload("ndpi-teredo.pcap", 2);
    let p = TeredoPacket::parse(&d).unwrap();
    let o = p.origin.unwrap();
    assert_eq!((o.addr, o.port), (Ipv4Addr::new(185, 6, 192, 185), 52513));
    assert!(Icmpv6::checksum_ok(&p.ipv6));
    let Message::RouterAdvertisement(ra) = Message::parse(&p.ipv6).unwrap() else { panic!() };
    assert_eq!(ra.reachable_time, 15000);
    let pio = ra.prefix_information().unwrap();
    assert_eq!(pio.prefix, ip6("2001:0:c288:1c4c:ff00:0:20:100"));
    assert_eq!(pio.teredo_prefix(), (address::TEREDO_PREFIX, Ipv4Addr::new(194, 136, 28, 76)));
}

/// ndpi-teredo.pcap frame 1: an RFC 5991 client's RS (no cone bit, no options).
#[test]
fn ndpi_rs_rfc5991_client() {
    let d = udp_payload("ndpi-teredo.pcap", 1);
    let p = TeredoPacket::parse(&d).unwrap();
    assert_eq!(p.ipv6.src(), ip6("fe80::ffff:ffff:fffe"));
    assert!(!address::is_cone_link_local(&p.ipv6.src()));
    let Message::RouterSolicitation(rs) = Message::parse(&p.ipv6).unwrap() else { panic!() };
    assert_eq!(rs.source_link_layer(), None);
    assert!(Icmpv6::checksum_ok(&p.ipv6));
}

/// ndpi-teredo.pcap frame 15: an indirect bubble whose origin indication is the server
/// itself (194.136.28.76:3544), which also ran a relay.
#[test]
fn ndpi_bubble_from_server_relay() {
    let d = udp_payload("ndpi-teredo.pcap", 15);
    let p = TeredoPacket::parse(&d).unwrap();
    assert_eq!(p.origin, Some(OriginIndication { addr: Ipv4Addr::new(194, 136, 28, 76), port: 3544 }));
    assert_eq!(p.kind(), PacketKind::Bubble);
    let dst = TeredoAddress::from_ipv6(&p.ipv6.dst()).unwrap();
    assert_eq!(dst.flags.0, 0x20f3);
    assert_eq!((dst.mapped_addr, dst.mapped_port), (Ipv4Addr::new(185, 6, 192, 185), 51812));
}

/// zeek-teredo_bubble_with_payload.pcap appends "1234" to bubbles: the packet stays a valid
/// bubble (RFC 6081 §4: the IPv6 packet may be shorter than the datagram) and the bytes
/// after it are read as a malformed trailer that stops processing without a discard.
#[test]
fn bubble_with_payload_is_bubble_with_trailer() {
    let found: Vec<_> = (1..=29)
        .filter_map(|n| {
            let d =
                std::panic::catch_unwind(|| udp_payload("zeek-teredo_bubble_with_payload.pcap", n)).ok()?;
            let p = TeredoPacket::parse(&d).ok()?;
            (p.kind() == PacketKind::Bubble && !p.trailers.is_empty()).then(|| p.trailers.as_bytes().to_vec())
        })
        .collect();
    assert!(!found.is_empty(), "the capture has over-long bubbles");
    for t in found {
        assert_eq!(t, b"1234");
        assert_eq!(teredo_proto::wire::Trailers::new(&t).check(), Ok(()));
    }
}

/// The one-packet fuzzer reproducer from Zeek's suite parses without a panic.
#[test]
fn zeek_udp_in_udp_reproducer() {
    let d = udp_payload("zeek-teredo-udp-in-udp.pcap", 1);
    let _ = TeredoPacket::parse(&d).map(|p| (p.kind(), Message::parse(&p.ipv6)));
    teredo_proto::fuzz::encap(&d);
}

/// RFC 4380 §5.1.1's origin-indication example and the §4 address example.
#[test]
fn rfc_examples() {
    let mut b = [0u8; 8];
    OriginIndication { addr: Ipv4Addr::new(1, 2, 3, 4), port: 337 }.emit(&mut b).unwrap();
    assert_eq!(b, [0x00, 0x00, 0xfe, 0xae, 0xfe, 0xfd, 0xfc, 0xfb]);
    let a = TeredoAddress::from_ipv6(&ip6("2001:0:4136:e378:8000:63bf:3fff:fdd2")).unwrap();
    assert_eq!(
        (a.server, a.mapped_port, a.mapped_addr),
        (Ipv4Addr::new(65, 54, 227, 120), 40000, Ipv4Addr::new(192, 0, 2, 45))
    );
    let auth = Authentication::with_nonce([9; 8]);
    assert_eq!(auth.wire_len(), 13);
}
