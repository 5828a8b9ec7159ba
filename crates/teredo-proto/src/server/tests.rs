//! Tests of [`super`]: the Teredo server's answers, relays and drops.

use super::*;
use crate::wire::Malformed;

#[test]
fn stats_derive_malformed_and_dropped_from_the_reasons() {
    let mut st = ServerStats::default();
    st.count(&Action::Drop(DropReason::Malformed(Malformed::TooShort)));
    st.count(&Action::Drop(DropReason::Oversized));
    st.count(&Action::Drop(DropReason::FromSelf));
    assert_eq!((st.received, st.malformed(), st.dropped()), (3, 2, 1));
    let c = st.counters();
    assert_eq!(crate::status::counter(&c, "dropped_oversized"), Some(1));
    assert_eq!(crate::status::counter(&c, "malformed"), Some(2));
}
use crate::wire::icmpv6;
use crate::wire::ipv6::emit_bubble;

const PRIMARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SECONDARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn server() -> Server {
    Server::new(ServerConfig {
        primary: PRIMARY,
        secondary: SECONDARY,
        prefix: address::TEREDO_PREFIX,
        mtu: 1280,
    })
}

fn client_addr(mapped: SocketAddrV4) -> Ipv6Addr {
    TeredoAddress {
        prefix: address::TEREDO_PREFIX,
        server: PRIMARY,
        flags: address::Flags(0x1234 & address::Flags::RANDOM_MASK),
        mapped_port: mapped.port(),
        mapped_addr: *mapped.ip(),
    }
    .to_ipv6()
}

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40000);

fn rs(ll: Ipv6Addr, nonce: Option<[u8; 8]>) -> Vec<u8> {
    let mut b = vec![0u8; 200];
    let n = emit_router_solicitation(&mut b, ll, nonce).unwrap();
    b.truncate(n);
    b
}

#[test]
fn rs_gets_ra_with_nonce_origin_prefix_mtu() {
    let s = server();
    let mut out = [0u8; 1500];
    let a = s.handle_datagram(
        Local::Primary,
        CLIENT,
        &rs(address::LINK_LOCAL_RESTRICTED, Some([7; 8])),
        &mut out,
    );
    let Action::SendUdp { from: Local::Primary, to, len, advertisement: true } = a else { panic!("{a:?}") };
    assert_eq!(to, CLIENT);
    let p = TeredoPacket::parse(&out[..len]).unwrap();
    assert_eq!(p.auth.unwrap().nonce, [7; 8]);
    assert_eq!(p.auth.unwrap().confirmation, 0);
    assert_eq!(p.origin, Some(OriginIndication { addr: *CLIENT.ip(), port: CLIENT.port() }));
    assert_eq!(p.ipv6.src(), s.link_local());
    assert_eq!(p.ipv6.dst(), address::LINK_LOCAL_RESTRICTED);
    assert_eq!(p.ipv6.header().hop_limit, 255);
    assert!(Icmpv6::checksum_ok(&p.ipv6));
    let Message::RouterAdvertisement(ra) = Message::parse(&p.ipv6).unwrap() else { panic!() };
    assert_eq!(ra.prefix_information().unwrap().teredo_prefix(), (address::TEREDO_PREFIX, PRIMARY));
    assert_eq!(ra.prefix_information().unwrap().prefix_len, 64);
    assert_eq!(ra.mtu(), Some(1280));
    assert_eq!((ra.router_lifetime, ra.retrans_timer), (0, 2000));
}

#[test]
fn rs_from_port_zero_is_not_answered() {
    let mut out = [0u8; 1500];
    let from = SocketAddrV4::new(*CLIENT.ip(), 0);
    let a =
        server().handle_datagram(Local::Primary, from, &rs(address::LINK_LOCAL_RESTRICTED, None), &mut out);
    assert_eq!(a, Action::Drop(DropReason::SourceNotGlobal));
}

#[test]
fn rs_without_auth_gets_ra_without_auth() {
    let mut out = [0u8; 1500];
    let a =
        server().handle_datagram(Local::Primary, CLIENT, &rs(address::LINK_LOCAL_RESTRICTED, None), &mut out);
    let Action::SendUdp { len, .. } = a else { panic!("{a:?}") };
    let p = TeredoPacket::parse(&out[..len]).unwrap();
    assert!(p.auth.is_none());
    assert!(p.origin.is_some());
}

#[test]
fn cone_rs_answered_from_other_address() {
    let s = server();
    let mut out = [0u8; 1500];
    let win: Ipv6Addr = "fe80::8000:ffff:ffff:fffd".parse().unwrap();
    for (local, other) in [(Local::Primary, Local::Secondary), (Local::Secondary, Local::Primary)] {
        let a = s.handle_datagram(local, CLIENT, &rs(win, Some([1; 8])), &mut out);
        assert!(matches!(a, Action::SendUdp { from, .. } if from == other), "{a:?}");
        let a = s.handle_datagram(local, CLIENT, &rs(address::LINK_LOCAL_RESTRICTED, Some([1; 8])), &mut out);
        assert!(matches!(a, Action::SendUdp { from, .. } if from == local), "{a:?}");
    }
}

#[test]
fn rs_checks() {
    let s = server();
    let mut out = [0u8; 1500];
    let good = rs(address::LINK_LOCAL_RESTRICTED, Some([1; 8]));
    // private source IPv4
    let a = s.handle_datagram(Local::Primary, "10.0.0.1:4000".parse().unwrap(), &good, &mut out);
    assert_eq!(a, Action::Drop(DropReason::SourceNotGlobal));
    // from ourselves
    let a = s.handle_datagram(Local::Primary, SocketAddrV4::new(SECONDARY, 3544), &good, &mut out);
    assert_eq!(a, Action::Drop(DropReason::FromSelf));
    // bad checksum
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    let a = s.handle_datagram(Local::Primary, CLIENT, &bad, &mut out);
    assert_eq!(a, Action::Drop(DropReason::NotRouterSolicitation));
    // wrong hop limit (byte 7 of the IPv6 header, after 13 bytes of auth)
    let mut bad = good.clone();
    bad[13 + 7] = 64;
    let a = s.handle_datagram(Local::Primary, CLIENT, &bad, &mut out);
    assert_eq!(a, Action::Drop(DropReason::NotRouterSolicitation));
    // truncated
    let a = s.handle_datagram(Local::Primary, CLIENT, &good[..30], &mut out);
    assert!(matches!(a, Action::Drop(DropReason::Malformed(_))));
    // a trailer that demands discarding
    let mut t = good.clone();
    t.extend_from_slice(&[0x41, 0]);
    let a = s.handle_datagram(Local::Primary, CLIENT, &t, &mut out);
    assert_eq!(a, Action::Drop(DropReason::Malformed(Malformed::DiscardTrailer)));
    // an RS with skippable trailers and a source link-layer option is fine
    let mut b = vec![0u8; 200];
    let n = encap::emit_headers(&mut b, Some(&Authentication::with_nonce([2; 8])), None).unwrap();
    let m = Icmpv6Repr::RouterSolicitation {
        source_link_layer: Some(&[0, 0, 0, 0, 0, 0, 0x80, 0, 1, 2, 3, 4, 5, 6]),
    }
    .emit_packet(&mut b[n..], "fe80::8000:ffff:ffff:fffd".parse().unwrap(), ALL_ROUTERS, 255)
    .unwrap();
    b.truncate(n + m);
    b.extend_from_slice(&[0x01, 4, 1, 2, 3, 4]);
    let a = s.handle_datagram(Local::Primary, CLIENT, &b, &mut out);
    assert!(matches!(a, Action::SendUdp { from: Local::Secondary, advertisement: true, .. }), "{a:?}");
}

#[test]
fn bubble_relayed_with_origin_to_own_client() {
    let s = server();
    let peer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 5000);
    let mut d = vec![0u8; 46];
    emit_bubble(&mut d, client_addr(peer), client_addr(CLIENT), 0).unwrap();
    d[40..46].copy_from_slice(&[0x01, 4, 9, 9, 9, 9]); // a nonce trailer travels along
    let mut out = [0u8; 1500];
    let a = s.handle_datagram(Local::Primary, peer, &d, &mut out);
    let Action::SendUdp { from: Local::Primary, to, len, advertisement: false } = a else { panic!("{a:?}") };
    assert_eq!(to, CLIENT);
    let p = TeredoPacket::parse(&out[..len]).unwrap();
    assert_eq!(p.origin, Some(OriginIndication { addr: *peer.ip(), port: peer.port() }));
    assert_eq!(p.ipv6.bytes(), &d[..40]);
    assert_eq!(p.trailers.nonce(), Some([9; 4]));
}

#[test]
fn bubble_with_oversized_trailers_is_not_relayed() {
    let s = server();
    let peer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 5000);
    let mut d = vec![0u8; 40 + 1460];
    emit_bubble(&mut d, client_addr(peer), client_addr(CLIENT), 0).unwrap();
    // 1460 zero bytes: skippable "unknown trailers" of type 0.
    let mut out = [0u8; 1500];
    assert_eq!(s.handle_datagram(Local::Primary, peer, &d, &mut out), Action::Drop(DropReason::NotRelayable));
    // 88 bytes of trailers still go through.
    d.truncate(40 + 88);
    assert!(matches!(s.handle_datagram(Local::Primary, peer, &d, &mut out), Action::SendUdp { .. }));
}

#[test]
fn relay_bubble_with_link_local_source() {
    // zeek frame 31: a relay's bubble, link-local source, to our client.
    let s = server();
    let relay = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 50), 32900);
    let mut d = [0u8; 40];
    emit_bubble(&mut d, "fe80::708d:fe83:4114:a512".parse().unwrap(), client_addr(CLIENT), 0).unwrap();
    let mut out = [0u8; 1500];
    let a = s.handle_datagram(Local::Primary, relay, &d, &mut out);
    assert!(matches!(a, Action::SendUdp { to, .. } if to == CLIENT), "{a:?}");
    // but not to another server's client (rule 6 needs our prefix and address)
    let other = TeredoAddress::from_ipv6(&client_addr(CLIENT)).map(|mut t| {
        t.server = Ipv4Addr::new(192, 0, 2, 77);
        t.to_ipv6()
    });
    emit_bubble(&mut d, "fe80::1".parse().unwrap(), other.unwrap(), 0).unwrap();
    assert_eq!(s.handle_datagram(Local::Primary, relay, &d, &mut out), Action::Drop(DropReason::SourceCheck));
}

#[test]
fn spoofed_teredo_source_is_dropped() {
    let s = server();
    let mut d = [0u8; 40];
    emit_bubble(&mut d, client_addr(CLIENT), client_addr(CLIENT), 0).unwrap();
    let liar = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 66), 40000);
    let mut out = [0u8; 1500];
    assert_eq!(s.handle_datagram(Local::Primary, liar, &d, &mut out), Action::Drop(DropReason::SourceCheck));
}

#[test]
fn echo_test_goes_native() {
    let s = server();
    let native: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut d = [0u8; 200];
    let n = Icmpv6Repr::EchoRequest(icmpv6::Echo { identifier: 1, sequence: 2, data: &[0; 16] })
        .emit_packet(&mut d, client_addr(CLIENT), native, 128)
        .unwrap();
    let mut out = [0u8; 1500];
    let a = s.handle_datagram(Local::Primary, CLIENT, &d[..n], &mut out);
    assert_eq!(a, Action::SendIpv6 { start: 0, len: n, dst: native });
    // data to a native host is not relayed
    let mut e = d;
    e[6] = 17;
    assert_eq!(
        s.handle_datagram(Local::Primary, CLIENT, &e[..n], &mut out),
        Action::Drop(DropReason::NotBubbleOrIcmpv6)
    );
    // nor large ICMPv6
    let n = Icmpv6Repr::EchoRequest(icmpv6::Echo { identifier: 1, sequence: 2, data: &[0; 100] })
        .emit_packet(&mut d, client_addr(CLIENT), native, 128)
        .unwrap();
    assert_eq!(
        s.handle_datagram(Local::Primary, CLIENT, &d[..n], &mut out),
        Action::Drop(DropReason::NotRelayable)
    );
    // nor to a link-local or multicast destination
    let n = Icmpv6Repr::EchoRequest(icmpv6::Echo { identifier: 1, sequence: 2, data: &[] })
        .emit_packet(&mut d, client_addr(CLIENT), "ff02::1".parse().unwrap(), 128)
        .unwrap();
    assert_eq!(
        s.handle_datagram(Local::Primary, CLIENT, &d[..n], &mut out),
        Action::Drop(DropReason::DestinationNotGlobal)
    );
}

#[test]
fn no_relay_to_private_or_self() {
    let s = server();
    let mut d = [0u8; 40];
    for bad in [SocketAddrV4::new(Ipv4Addr::new(10, 1, 1, 1), 1), SocketAddrV4::new(PRIMARY, 3544)] {
        emit_bubble(&mut d, client_addr(CLIENT), client_addr(bad), 0).unwrap();
        let mut out = [0u8; 1500];
        assert_eq!(
            s.handle_datagram(Local::Primary, CLIENT, &d, &mut out),
            Action::Drop(DropReason::DestinationNotGlobalIpv4)
        );
    }
}
