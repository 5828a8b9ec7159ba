//! Tests of a relay's re-learning of unknown senders (module `relearn`), with virtual
//! time: the held packet, the keyed bubble, wrong answers refused, the right one (ours or
//! Miredo's form) delivering, a restarted relay in the in-memory network, and a spoofed
//! flood kept within its bounds.

use super::*;

/// The relay's outputs for a stranger: exactly one indirect bubble to the server in its
/// address, from the keyed link-local source, with our nonce; returns that source.
fn relearn_bubble_of(
    out: &[(Destination, Vec<u8>)],
    k: &TokenKey,
    peer: Ipv6Addr,
    map: SocketAddrV4,
) -> Ipv6Addr {
    assert_eq!(out.len(), 1, "one bubble for the packet that asks: {out:?}");
    assert_eq!(out[0].0, Destination::Udp(SocketAddrV4::new(SERVER, 3544)));
    let b = parse(&out[0].1);
    assert!(b.ipv6.is_bubble());
    assert_eq!(b.ipv6.dst(), peer);
    assert_eq!(b.ipv6.src(), k.bubble_source(*map.ip(), map.port()));
    assert_eq!(b.trailers.nonce(), Some(k.bubble_nonce(&peer)));
    b.ipv6.src()
}

fn bubble(src: Ipv6Addr, dst: Ipv6Addr, nonce: Option<[u8; 4]>) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    let mut n = ipv6::emit_bubble(&mut b, src, dst, 255).unwrap();
    if let Some(nonce) = nonce {
        n += crate::wire::Trailer::Nonce(nonce).emit(&mut b[n..]).unwrap();
    }
    b.truncate(n);
    b
}

#[test]
fn a_stranger_is_held_tested_and_delivered_only_after_its_proof() {
    let mut r = relay(false);
    let p1 = data(b_addr(), NATIVE, 10, 1);
    let p2 = data(b_addr(), NATIVE, 10, 2);
    assert_eq!(r.handle_datagram(secs(1), B_MAP, &p1), UdpVerdict::Queued);
    assert!(r.is_relearning(&b_addr()));
    assert!(!r.peers().get(&b_addr()).unwrap().is_trusted());
    let token = relearn_bubble_of(&drain(&mut r, secs(1)), &key(9), b_addr(), B_MAP);
    // A second packet within 2 s is held too, and asks for no bubble.
    assert_eq!(r.handle_datagram(ms(1500), B_MAP, &p2), UdpVerdict::Queued);
    assert!(drain(&mut r, ms(1500)).is_empty());
    // Wrong answers: a bubble to another destination, with a wrong nonce, to another
    // peer's token, or a data packet to the token; nothing is trusted or delivered.
    let other = key(9).bubble_source(*B_MAP.ip(), B_MAP.port() + 1);
    for wrong in [
        bubble(b_addr(), "fe80::1".parse().unwrap(), None),
        bubble(b_addr(), NATIVE, Some([1, 2, 3, 4])),
        bubble(b_addr(), other, None),
    ] {
        assert_eq!(r.handle_datagram(ms(1600), B_MAP, &wrong), UdpVerdict::Drop(DropReason::MappingMismatch));
    }
    assert_eq!(r.handle_datagram(ms(1600), B_MAP, &data(b_addr(), token, 10, 3)), UdpVerdict::Queued);
    // A key of another relay (the one before the restart) proves nothing either.
    let stale = key(8).bubble_source(*B_MAP.ip(), B_MAP.port());
    assert_eq!(
        r.handle_datagram(ms(1600), B_MAP, &bubble(b_addr(), stale, None)),
        UdpVerdict::Drop(DropReason::MappingMismatch)
    );
    assert!(drain(&mut r, ms(1600)).is_empty(), "nothing delivered before the proof");
    assert!(!r.peers().get(&b_addr()).unwrap().is_trusted());
    // Miredo's answer: the addresses swapped, no nonce. The held packets from that
    // mapping go to the TUN in arrival order.
    assert_eq!(r.handle_datagram(ms(1700), B_MAP, &bubble(b_addr(), token, None)), UdpVerdict::Consumed);
    let out = drain(&mut r, ms(1700));
    let tun: Vec<_> = out.iter().filter(|(d, _)| *d == Destination::Tun).map(|(_, b)| b.clone()).collect();
    assert_eq!(tun, vec![p1, p2, data(b_addr(), token, 10, 3)]);
    assert!(!r.is_relearning(&b_addr()));
    assert_eq!(r.peers().get(&b_addr()).unwrap().mapping(), Some(B_MAP));
    assert_eq!(r.stats().peers_relearned, 1);
    assert_eq!(r.stats().relearn_bubbles_sent, 1);
    // Then the fast path both ways.
    assert!(matches!(
        r.handle_datagram(secs(2), B_MAP, &data(b_addr(), NATIVE, 10, 4)),
        UdpVerdict::Deliver { .. }
    ));
    assert_eq!(r.handle_tun_packet(secs(2), &data(NATIVE, b_addr(), 10, 5)), TunVerdict::Send { dst: B_MAP });
}

/// Our client's answer carries our nonce; it may come from another mapping (a symmetric
/// NAT): the stranger is trusted there, and what it sent from elsewhere is not delivered.
#[test]
fn a_nonce_answer_from_another_mapping_trusts_it_there_only() {
    let mut r = relay(true);
    let spoofed = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 66), 4444);
    assert_eq!(r.handle_datagram(secs(1), spoofed, &data(b_addr(), NATIVE, 10, 1)), UdpVerdict::Queued);
    relearn_bubble_of(&drain(&mut r, secs(1)), &key(9), b_addr(), B_MAP);
    let symmetric = SocketAddrV4::new(*B_MAP.ip(), 61000);
    let answer = bubble(b_addr(), "fe80::2".parse().unwrap(), Some(key(9).bubble_nonce(&b_addr())));
    assert_eq!(r.handle_datagram(secs(1), symmetric, &answer), UdpVerdict::Consumed);
    assert_eq!(r.peers().get(&b_addr()).unwrap().mapping(), Some(symmetric));
    assert!(drain(&mut r, secs(1)).is_empty(), "a packet held from another mapping is not delivered");
    assert_eq!(r.stats().drops.get(DropReason::RelayNotVerified), 1);
    assert_eq!(r.stats().nonces_verified, 1);
}

/// A bubble from an unknown sender makes no entry (it carries nothing to hold), and a
/// stranger never verified expires with its packets.
#[test]
fn bubbles_make_no_stranger_and_strangers_expire() {
    let mut r = relay(false);
    assert_eq!(
        r.handle_datagram(secs(1), B_MAP, &bubble(b_addr(), NATIVE, None)),
        UdpVerdict::Drop(DropReason::UnknownPeer)
    );
    assert!(r.peers().is_empty());
    assert_eq!(r.handle_datagram(secs(1), B_MAP, &data(b_addr(), NATIVE, 10, 1)), UdpVerdict::Queued);
    drain(&mut r, secs(1));
    assert!(r.poll_timeout() <= secs(1) + STRANGER_LIFETIME);
    let end = secs(1) + STRANGER_LIFETIME;
    r.handle_timeout(end);
    assert_eq!(r.relearning(), 0);
    assert!(r.peers().is_empty());
    assert_eq!(r.stats().relearn_expired, 1);
    assert_eq!(r.stats().drops.get(DropReason::RelayNotVerified), 1);
    assert!(drain(&mut r, end).is_empty());
}

/// Spoofed packets from many sources: few strangers, at most the budget of bubbles per
/// second, everything counted, and all of them gone after their lifetime.
#[test]
fn a_spoofed_flood_is_bounded() {
    let mut r = relay(false);
    let limits = small_limits();
    let cap = limits.peers.stranger_budget();
    let mut bubbles = 0;
    for i in 0..20_000u32 {
        let m = SocketAddrV4::new(Ipv4Addr::from(0xcb00_7100 | (i >> 16)), (i & 0xffff) as u16 | 1);
        let now = ms(1000 + u64::from(i) / 10);
        let _ = r.handle_datagram(now, m, &data(teredo(m, 0), NATIVE, 10, 0));
        bubbles += drain(&mut r, now).len();
        assert!(r.relearning() <= cap);
        assert!(r.peers().len() <= cap, "strangers crowd the table: {}", r.peers().len());
        while r.poll_timeout() <= now {
            r.handle_timeout(now);
        }
    }
    let s = r.stats();
    // 2 s of packets: at most the budget of each second.
    assert!(bubbles as u64 <= 3 * u64::from(limits.tests_per_second), "{bubbles} bubbles");
    assert_eq!(s.relearn_bubbles_sent, bubbles as u64);
    assert!(s.relearn_suppressed > 0 && s.relearn_refused > 0, "{s:?}");
    assert_eq!(s.peers_relearned, 0);
    assert!(r.peers().queued_bytes() <= limits.peers.queue_bytes_total);
    let end = ms(3000) + STRANGER_LIFETIME;
    r.handle_timeout(end);
    assert_eq!(r.relearning(), 0);
    assert!(r.peers().is_empty());
}

/// A relay restarted (a new process: an empty table, another key) while a client sends
/// to a native host through it: the client's next packet is held, the relay's bubble
/// goes through the client's server, the client answers, and the packet reaches the host;
/// the host's answer reaches the client. No echo test of the client was needed.
#[test]
fn a_restarted_relay_relearns_its_client() {
    let mut net = two_clients();
    net.nodes.insert(RELAY, relay(false));
    net.relay = Some(RELAY);
    net.tun_read(A_MAP, secs(1), data(a_addr(), NATIVE, 30, 1));
    net.run(secs(1));
    assert_eq!(net.node(A_MAP).peers().get(&NATIVE).unwrap().mapping(), Some(RELAY));
    let c = RelayConfig::default();
    net.nodes.insert(RELAY, Tunnel::new(Role::Relay(c), key(10), small_limits(), secs(2)).unwrap());
    let tests = net.node(A_MAP).stats().echo_tests_sent;
    let p = data(a_addr(), NATIVE, 30, 2);
    assert_eq!(net.tun_read(A_MAP, secs(2), p.clone()), TunVerdict::Send { dst: RELAY });
    net.run(secs(2));
    assert_eq!(net.native_rx.last().unwrap(), &p);
    assert_eq!(net.node(RELAY).stats().peers_relearned, 1);
    assert_eq!(net.node(RELAY).peers().get(&a_addr()).unwrap().mapping(), Some(A_MAP));
    let back = data(NATIVE, a_addr(), 30, 3);
    assert_eq!(net.tun_read(RELAY, secs(2), back.clone()), TunVerdict::Send { dst: A_MAP });
    net.run(secs(2));
    assert_eq!(net.tun.get(&A_MAP).unwrap(), &vec![back]);
    assert_eq!(net.node(A_MAP).stats().echo_tests_sent, tests);
}

/// A stranger the relay then sends to is an ordinary peer (RFC 4380 §5.4.2 checks its
/// mapping), and what it held unverified is dropped, not delivered.
#[test]
fn a_stranger_sent_to_becomes_an_ordinary_peer() {
    let mut r = relay(true);
    assert_eq!(r.handle_datagram(secs(1), B_MAP, &data(b_addr(), NATIVE, 10, 1)), UdpVerdict::Queued);
    drain(&mut r, secs(1));
    assert_eq!(r.handle_tun_packet(secs(1), &data(NATIVE, b_addr(), 10, 2)), TunVerdict::Queued);
    assert!(!r.is_relearning(&b_addr()));
    assert_eq!(r.stats().drops.get(DropReason::RelayNotVerified), 1);
    let p = data(b_addr(), NATIVE, 10, 3);
    assert!(matches!(r.handle_datagram(secs(1), B_MAP, &p), UdpVerdict::Deliver { .. }));
    let out = drain(&mut r, secs(1));
    assert_eq!(out, vec![(Destination::Udp(B_MAP), data(NATIVE, b_addr(), 10, 2))]);
}
