//! Floods against the data path, with virtual time: spoofed strangers aimed at a client
//! (RFC 4380 §5.2.3 case 3, §7.3.3) and spoofed destinations sent to a relay from the IPv6
//! side (§5.4.1); the table, the strangers and the queues stay within their bounds, and
//! trusted peers and the host's new destinations keep working.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use super::tests::{B_MAP, NATIVE, SERVER, a_addr, b_addr, data, drain, key, secs, teredo};
use super::*;
use crate::address::{Flags, TEREDO_PREFIX, TeredoAddress};
use crate::peers::{Peer, PeerLimits};

/// A spoofed Teredo source number `i`: its own mapping (any address, any port) and its own
/// server, so that no two share an address.
fn spoofed(i: u32) -> (SocketAddrV4, Ipv6Addr) {
    let map = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, (i % 250) as u8 + 1), 1024 + (i / 250) as u16);
    let server = Ipv4Addr::new(198, 51, 100, (i % 7) as u8 + 1);
    let addr = TeredoAddress {
        prefix: TEREDO_PREFIX,
        server,
        flags: Flags(0),
        mapped_port: map.port(),
        mapped_addr: *map.ip(),
    }
    .to_ipv6();
    (map, addr)
}

fn limits(max_peers: usize, queue_bytes_total: usize) -> Limits {
    Limits {
        peers: PeerLimits { max_peers, queue_bytes_total, ..PeerLimits::default() },
        ..Limits::default()
    }
}

/// A client with a trusted peer B (made by the host's own packet, answered from B's
/// mapping): returns it at 1 s.
fn client_with_peer(max_peers: usize) -> Tunnel {
    let mut a = Tunnel::new(Role::Client, key(1), limits(max_peers, 1 << 20), Instant::ZERO).unwrap();
    a.set_qualified(Instant::ZERO, a_addr(), SERVER);
    assert_eq!(a.handle_tun_packet(secs(1), &data(a_addr(), b_addr(), 20, 1)), TunVerdict::Queued);
    let v = a.handle_datagram(secs(1), B_MAP, &data(b_addr(), a_addr(), 20, 2));
    assert!(matches!(v, UdpVerdict::Deliver { .. }), "{v:?}");
    drain(&mut a, secs(1));
    assert_eq!(
        a.handle_tun_packet(secs(1), &data(a_addr(), b_addr(), 20, 3)),
        TunVerdict::Send { dst: B_MAP }
    );
    a
}

#[test]
fn fifty_thousand_strangers_leave_room_for_the_host() {
    let max_peers = 1000;
    let mut a = client_with_peer(max_peers);
    let budget = a.peers().limits().stranger_budget();
    let mut now = secs(1);
    for i in 0..50_000 {
        now = now + Duration::from_micros(200);
        let (from, src) = spoofed(i);
        // Accepted as RFC 4380 §5.2.3 case 3 says, but only as strangers.
        let v = a.handle_datagram(now, from, &data(src, a_addr(), 20, 0));
        assert!(matches!(v, UdpVerdict::Deliver { .. }), "{i}: {v:?}");
        if i % 1000 == 0 {
            // The direct flow to B goes on meanwhile.
            assert_eq!(
                a.handle_tun_packet(now, &data(a_addr(), b_addr(), 20, 4)),
                TunVerdict::Send { dst: B_MAP }
            );
            let v = a.handle_datagram(now, B_MAP, &data(b_addr(), a_addr(), 20, 5));
            assert!(matches!(v, UdpVerdict::Deliver { .. }), "{v:?}");
            drain(&mut a, now);
        }
        assert!(a.peers().strangers() <= budget);
    }
    let p = a.peers();
    println!(
        "client: {} entries ({} strangers of a budget of {budget}), {} slot bytes, stats {:?}",
        p.len(),
        p.strangers(),
        p.slot_bytes(),
        p.stats()
    );
    assert!(p.len() <= max_peers);
    assert_eq!(p.strangers(), budget);
    assert!(p.slot_bytes() <= p.max_slot_count() * size_of::<Peer>());
    let s = p.stats();
    assert_eq!(s.strangers_admitted, 50_000);
    assert_eq!(s.strangers_evicted, 50_000 - budget as u64);
    assert!(!p.get(&b_addr()).unwrap().is_stranger());
    // B still trusted, both ways.
    assert_eq!(a.handle_tun_packet(now, &data(a_addr(), b_addr(), 20, 6)), TunVerdict::Send { dst: B_MAP });
    // New destinations of the host's own find room: a Teredo one and a native one.
    let c_map = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 77), 4444);
    let c = teredo(c_map, 0);
    assert_eq!(a.handle_tun_packet(now, &data(a_addr(), c, 20, 7)), TunVerdict::Queued);
    assert_eq!(a.handle_tun_packet(now, &data(a_addr(), NATIVE, 20, 8)), TunVerdict::Queued);
    assert_eq!(a.stats().drops.get(DropReason::TableFull), 0);
    // And the new Teredo destination's answer makes it a trusted peer.
    let v = a.handle_datagram(now, c_map, &data(c, a_addr(), 20, 9));
    assert!(matches!(v, UdpVerdict::Deliver { .. }), "{v:?}");
    assert!(a.peers().get(&c).is_some_and(|p| p.is_trusted() && !p.is_stranger()));
    // The counters reach `teredo status`.
    let counters = a.counters();
    assert_eq!(crate::status::counter(&counters, "strangers_admitted"), Some(50_000));
    assert_eq!(crate::status::counter(&counters, "strangers_evicted"), Some(s.strangers_evicted));
}

/// A relay of `max_peers` with a trusted peer B, then `n` packets from the IPv6 side to
/// distinct destinations that never answer; B's packets go both ways throughout.
fn relay_flood(n: u32, max_peers: usize) {
    let queue_total = 256 << 10;
    let c = RelayConfig::default();
    let mut r = Tunnel::new(Role::Relay(c), key(9), limits(max_peers, queue_total), Instant::ZERO).unwrap();
    let mut now = secs(1);
    assert_eq!(r.handle_tun_packet(now, &data(NATIVE, b_addr(), 20, 1)), TunVerdict::Queued);
    let v = r.handle_datagram(now, B_MAP, &data(b_addr(), NATIVE, 20, 2));
    assert!(matches!(v, UdpVerdict::Deliver { .. }), "{v:?}");
    drain(&mut r, now);
    let mut buf = [0u8; 1500];
    for i in 0..n {
        now = now + Duration::from_micros(1);
        let dst = teredo(
            SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, (i >> 24) as u8 | 1), (i >> 8) as u16 | 1),
            i as u16,
        );
        let dst = Ipv6Addr::from(u128::from(dst) ^ u128::from(i & 0xff));
        let _ = r.handle_tun_packet(now, &data(NATIVE, dst, 60, 0));
        if i % 4096 == 0 {
            while r.poll_transmit(now, &mut buf).is_some() {}
            let p = r.peers();
            assert!(p.len() <= max_peers, "{} entries", p.len());
            assert!(p.queued_bytes() <= queue_total);
            assert_eq!(
                r.handle_tun_packet(now, &data(NATIVE, b_addr(), 20, 3)),
                TunVerdict::Send { dst: B_MAP }
            );
            let v = r.handle_datagram(now, B_MAP, &data(b_addr(), NATIVE, 20, 4));
            assert!(matches!(v, UdpVerdict::Deliver { .. }), "{v:?}");
            r.handle_timeout(now);
        }
    }
    let p = r.peers();
    let bound = p.max_slot_count() * size_of::<Peer>() + queue_total;
    println!(
        "relay: {n} destinations, {} entries of {max_peers}, {} slot bytes + {} queued bytes (bound {bound}), stats {:?}",
        p.len(),
        p.slot_bytes(),
        p.queued_bytes(),
        p.stats()
    );
    assert!(p.len() <= max_peers);
    assert!(p.slot_bytes() + p.queued_bytes() <= bound);
    let s = p.stats();
    assert!(s.evicted_unanswered >= u64::from(n) - max_peers as u64 - s.refused_full);
    assert!(s.refused_full < u64::from(n) / 100, "{} refused", s.refused_full);
    assert!(p.get(&b_addr()).is_some_and(|b| b.trusted_mapping(now) == Some(B_MAP)));
    // A new destination still gets its packet queued, and its answer makes it trusted.
    let c_map = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 99), 5555);
    let c = teredo(c_map, 0);
    assert_eq!(r.handle_tun_packet(now, &data(NATIVE, c, 20, 5)), TunVerdict::Queued);
    let v = r.handle_datagram(now, c_map, &data(c, NATIVE, 20, 6));
    assert!(matches!(v, UdpVerdict::Deliver { .. }), "{v:?}");
    assert!(r.peers().get(&c).is_some_and(|p| p.trusted_mapping(now) == Some(c_map)));
}

#[test]
fn a_relay_flooded_with_destinations_stays_bounded() {
    relay_flood(200_000, 1000);
}

/// The 10,000,000 destinations of the issue: run with
/// `cargo test -p teredo-proto --release --lib flood_tests -- --ignored --nocapture`.
#[test]
#[ignore = "slow: 10M packets, run in release"]
fn a_relay_flooded_with_ten_million_destinations_stays_bounded() {
    relay_flood(10_000_000, 100_000);
}

#[test]
fn a_stranger_that_answers_with_our_nonce_is_promoted() {
    let mut a = Tunnel::new(Role::Client, key(1), limits(1000, 1 << 20), Instant::ZERO).unwrap();
    a.set_qualified(Instant::ZERO, a_addr(), SERVER);
    let (from, c) = spoofed(7);
    // Accepted by its embedded mapping alone (RFC 4380 §5.2.3 case 3): a stranger.
    assert!(matches!(
        a.handle_datagram(secs(1), from, &data(c, a_addr(), 20, 0)),
        UdpVerdict::Deliver { .. }
    ));
    assert!(a.peers().get(&c).is_some_and(|p| p.is_trusted() && p.is_stranger()));
    // A bubble from another mapping without proof changes nothing; one with our nonce
    // for it (RFC 6081 §5.2.4.4) verifies it.
    let other = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 99), 6000);
    let mut bubble = [0u8; 50];
    crate::wire::ipv6::emit_bubble(&mut bubble, c, a_addr(), 64).unwrap();
    bubble[40..42].copy_from_slice(&[0x01, 0x04]);
    assert!(matches!(a.handle_datagram(secs(2), other, &bubble[..46]), UdpVerdict::Drop(_)));
    assert!(a.peers().get(&c).is_some_and(|p| p.is_stranger()));
    bubble[42..46].copy_from_slice(&key(1).bubble_nonce(&c));
    assert_eq!(a.handle_datagram(secs(5), other, &bubble[..46]), UdpVerdict::Consumed);
    let p = a.peers().get(&c).unwrap();
    assert!(!p.is_stranger() && p.mapping() == Some(other));
    assert_eq!((a.peers().strangers(), a.peers().stats().strangers_promoted), (0, 1));
}
