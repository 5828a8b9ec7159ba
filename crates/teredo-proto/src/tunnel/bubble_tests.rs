//! Tests of the bubble budget (module `bubbles`): what a flood of packets to new
//! destinations, or of spoofed bubbles, makes a relay or client send, counted on its
//! output as the wire would see it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use super::tests::{
    A_MAP, SERVER, client, data, datagram, drain, key, ms, relay, secs, small_limits, teredo,
};
use super::*;
use crate::wire::{TeredoPacket, Trailer};

/// The `i`th unanswering Teredo destination: a mapping in 203.0.113.0/24 behind SERVER.
fn dest(i: u32) -> Ipv6Addr {
    let ip = Ipv4Addr::new(203, 0, 113, (i % 250) as u8 + 1);
    teredo(SocketAddrV4::new(ip, 10_000 + i as u16), 0)
}

fn native() -> Ipv6Addr {
    "2001:db8::1".parse().unwrap()
}

/// A bubble that left: when, to which IPv4 address and port, for which IPv6 destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    at: Instant,
    to: SocketAddrV4,
    dst: Ipv6Addr,
}

/// Runs `t` from `start` for `len`, in steps of 100 ms: the packets of `tun` from the TUN
/// at their instants, the timers when due, and every output drained; returns the bubbles
/// that left (UDP datagrams whose IPv6 packet is a bubble, from any socket).
fn run(t: &mut Tunnel, start: Instant, len: Duration, tun: &[(Instant, Vec<u8>)]) -> Vec<Sent> {
    let mut sent = vec![];
    let mut next = 0;
    let mut now = start;
    while now <= start + len {
        while let Some((at, p)) = tun.get(next)
            && *at <= now
        {
            t.handle_tun_packet(*at, p);
            next += 1;
        }
        if t.poll_timeout() <= now {
            t.handle_timeout(now);
        }
        for (d, b) in drain(t, now) {
            let to = match d {
                Destination::Udp(to) | Destination::UdpFrom { to, .. } => to,
                Destination::Tun => continue,
            };
            if let Ok(p) = TeredoPacket::parse(&b)
                && p.ipv6.is_bubble()
            {
                sent.push(Sent { at: now, to, dst: p.ipv6.dst() });
            }
        }
        now = now + Duration::from_millis(100);
    }
    sent
}

/// `n` packets from `src`, to `dst(i)`, 5 ms apart from `start`.
fn packets(src: Ipv6Addr, start: Instant, n: u32, dst: impl Fn(u32) -> Ipv6Addr) -> Vec<(Instant, Vec<u8>)> {
    (0..n)
        .map(|i| (start + Duration::from_millis(5 * u64::from(i)), data(src, dst(i), 20, i as u8)))
        .collect()
}

fn per_destination(sent: &[Sent]) -> HashMap<Ipv6Addr, usize> {
    let mut m = HashMap::new();
    for s in sent {
        *m.entry(s.dst).or_default() += 1;
    }
    m
}

#[test]
fn a_relay_sends_one_bubble_per_packet_to_new_destinations() {
    // A cone relay: the indirect bubble only, through each destination's server; nothing
    // repeats it from a timer, however long the peers stay silent.
    let mut r = relay(true);
    let sent = run(&mut r, secs(10), Duration::from_secs(30), &packets(native(), secs(10), 200, dest));
    println!("cone relay, 200 packets to 200 new destinations: {} bubbles", sent.len());
    assert_eq!(sent.len(), 200);
    assert!(sent.iter().all(|s| s.to == SocketAddrV4::new(SERVER, 3544)));
    assert!(per_destination(&sent).values().all(|&n| n == 1));
    assert_eq!(r.stats().bubbles_sent, 200);
    // A restricted relay: the pair of RFC 4380 §5.4.1, a direct bubble to open its own NAT
    // and the indirect one; still one probe per packet.
    let mut r = relay(false);
    let sent = run(&mut r, secs(10), Duration::from_secs(30), &packets(native(), secs(10), 200, dest));
    println!("restricted relay, 200 packets to 200 new destinations: {} bubbles", sent.len());
    assert_eq!(sent.len(), 400);
    assert!(per_destination(&sent).values().all(|&n| n == 2));
}

#[test]
fn ten_packets_to_one_destination_get_at_most_five_bubbles() {
    let one = |_| dest(7);
    for (name, mut t, expected) in [
        ("cone relay", relay(true), 1),
        ("restricted relay", relay(false), 2),
        ("client", client(teredo(A_MAP, 0), 1), 3),
    ] {
        let src = t.address().unwrap_or_else(native);
        // 10 packets within 50 ms, then 20 s of timers.
        let sent = run(&mut t, secs(10), Duration::from_secs(20), &packets(src, secs(10), 10, one));
        println!("{name}, 10 packets to one destination: {} bubbles", sent.len());
        assert_eq!(sent.len(), expected, "{name}: {sent:?}");
        assert!(sent.len() <= 5);
        assert_eq!(t.stats().bubbles_suppressed, 9, "{name}");
    }
}

#[test]
fn at_most_four_probes_per_destination_in_300_s() {
    for (mut t, per_probe) in [(relay(true), 1), (relay(false), 2)] {
        // A packet every 500 ms for 900 s to one silent destination.
        let tun: Vec<_> =
            (0..1800u64).map(|i| (ms(10_000 + 500 * i), data(native(), dest(3), 20, 0))).collect();
        let sent = run(&mut t, secs(10), Duration::from_secs(900), &tun);
        // Every window of 300 s from any bubble holds at most 4 probes.
        for s in &sent {
            let window =
                sent.iter().filter(|x| x.at >= s.at && x.at < s.at + Duration::from_secs(300)).count();
            assert!(window <= 4 * per_probe, "{window} bubbles in 300 s from {:?}", s.at);
        }
        // And they are at least 2 s apart.
        for w in sent.windows(per_probe + 1) {
            assert!(w[per_probe].at.saturating_since(w[0].at) >= Duration::from_secs(2));
        }
        // 4 at the start, 4 again 300 s after the 4th, and so on: 12 probes in 900 s.
        assert_eq!(sent.len(), 12 * per_probe);
        assert_eq!(t.stats().bubbles_suppressed, 1800 - 12);
    }
}

#[test]
fn the_global_rate_bounds_bubbles_per_second() {
    let limits = Limits { bubbles_per_second: 50, ..small_limits() };
    let c = RelayConfig { cone: true, ..RelayConfig::default() };
    let mut r = Tunnel::new(Role::Relay(c), key(9), limits, Instant::ZERO).unwrap();
    // 200 packets to 200 destinations within one second: 50 bubbles.
    let tun: Vec<_> =
        (0..200u32).map(|i| (ms(10_000 + u64::from(i)), data(native(), dest(i), 20, 0))).collect();
    let sent = run(&mut r, secs(10), Duration::from_secs(1), &tun);
    assert_eq!(sent.len(), 50);
    assert_eq!(r.stats().bubbles_sent, 50);
    assert_eq!(r.stats().bubbles_rate_limited, 150);
    // The next second has its own 50, for packets of new destinations.
    let tun: Vec<_> =
        (200..300u32).map(|i| (ms(11_000 + u64::from(i)), data(native(), dest(i), 20, 0))).collect();
    assert_eq!(run(&mut r, secs(11), Duration::from_millis(900), &tun).len(), 50);
    // Workers share the rate.
    assert_eq!(Limits { bubbles_per_second: 1000, ..Limits::default() }.shared_by(4).bubbles_per_second, 250);
    assert_eq!(limits.shared_by(3).bubbles_per_second, 17);
}

/// An indirect bubble relayed by the client's server (RFC 4380 §5.2.3), from the Teredo
/// source `src`, with the origin `origin`, and our nonce trailer when `nonce`.
fn relayed_bubble(src: Ipv6Addr, dst: Ipv6Addr, origin: SocketAddrV4, nonce: Option<[u8; 4]>) -> Vec<u8> {
    let mut d = datagram(src, dst, 0, Some(origin), &[]);
    if let Some(n) = nonce {
        let mut t = [0u8; 8];
        let len = Trailer::Nonce(n).emit(&mut t).unwrap();
        d.extend_from_slice(&t[..len]);
    }
    d
}

#[test]
fn a_flood_of_spoofed_bubbles_gets_a_bounded_number_of_replies() {
    let own = teredo(A_MAP, 0);
    let from_server = SocketAddrV4::new(SERVER, 3544);
    let victim = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 66), 4444);
    // 1000 bubbles within a second, each from another invented Teredo source, all with
    // the victim as their origin: at most REPLIES_PER_TARGET replies reach it.
    let mut c = client(own, 1);
    let mut to_victim = 0;
    for i in 0..1000u32 {
        let now = ms(10_000 + u64::from(i));
        let d = relayed_bubble(dest(i), own, victim, None);
        assert_eq!(c.handle_datagram(now, from_server, &d), UdpVerdict::Consumed);
        to_victim += drain(&mut c, now).iter().filter(|(d, _)| *d == Destination::Udp(victim)).count();
    }
    println!("1000 spoofed bubbles with one origin: {to_victim} replies to it");
    assert_eq!(to_victim, usize::from(REPLIES_PER_TARGET));
    assert_eq!(c.stats().reply_bubbles_sent, u64::from(REPLIES_PER_TARGET));
    assert_eq!(c.stats().reply_bubbles_suppressed, 1000 - u64::from(REPLIES_PER_TARGET));
    // The next window has its own budget.
    let now = secs(20);
    c.handle_datagram(now, from_server, &relayed_bubble(dest(5000), own, victim, None));
    assert_eq!(drain(&mut c, now).len(), 1);

    // 5000 bubbles within a second, each with another origin and a nonce (so that the
    // client also answers with indirect bubbles of its own, RFC 6081 §6.1): everything
    // sent stays within the global rate.
    let mut c = client(own, 2);
    let mut sent = 0;
    for i in 0..5000u32 {
        let now = Instant::from_micros(30_000_000 + u64::from(i) * 190);
        let origin = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, (i % 200) as u8 + 1), 1000 + i as u16);
        let d = relayed_bubble(dest(i), own, origin, Some([1, 2, 3, 4]));
        c.handle_datagram(now, from_server, &d);
        sent += drain(&mut c, now).len();
    }
    let s = c.stats();
    println!(
        "5000 spoofed bubbles with distinct origins: {sent} datagrams, {} replies, {} bubbles, {} suppressed",
        s.reply_bubbles_sent,
        s.bubbles_sent,
        s.reply_bubbles_suppressed + s.bubbles_rate_limited
    );
    assert!(sent <= DEFAULT_BUBBLE_RATE as usize, "{sent} datagrams in a second");
    assert_eq!(s.reply_bubbles_sent + s.bubbles_sent, sent as u64);
    assert!(s.reply_bubbles_suppressed + s.bubbles_rate_limited > 0);
}

#[test]
fn a_client_sends_one_probe_per_packet_to_new_peers() {
    let own = teredo(A_MAP, 0);
    let mut c = client(own, 1);
    let sent = run(&mut c, secs(10), Duration::from_secs(30), &packets(own, secs(10), 200, dest));
    println!("client, 200 packets to 200 new Teredo peers: {} bubbles", sent.len());
    // A direct bubble from its Teredo address, and two indirect ones (from the keyed
    // source for Miredo peers, from its Teredo address for RFC 6081 peers).
    assert_eq!(sent.len(), 600);
    assert!(per_destination(&sent).values().all(|&n| n == 3));
    // Echo tests: one per packet too, repeated by the timer at most 3 times 2 s apart.
    let mut c = client(own, 1);
    let natives = |i: u32| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i as u16 + 1);
    run(&mut c, secs(10), Duration::from_secs(30), &packets(own, secs(10), 200, natives));
    assert_eq!(c.stats().echo_tests_sent, 800);
}

/// The direct IPv6 connectivity test of a native peer (RFC 4380 §5.2.9) keeps the §5.2.6
/// rule (4 unanswered, 2 s apart) but holds off for `ECHO_TEST_HOLD`, not 300 s, so that
/// a destination whose four tests were lost (a lossy NAT) is tried again within a minute.
#[test]
fn echo_tests_to_a_silent_native_peer_start_over_after_the_hold_off() {
    use crate::peers::ECHO_TEST_HOLD;
    let own = teredo(A_MAP, 0);
    let mut c = client(own, 1);
    let silent = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 1);
    // A packet every 500 ms for 120 s to a native destination that never answers.
    let start = secs(10);
    let mut at = vec![];
    let mut now = start;
    let mut next = start;
    while now <= start + Duration::from_secs(120) {
        if next <= now {
            c.handle_tun_packet(now, &data(own, silent, 20, 0));
            next = next + Duration::from_millis(500);
        }
        if c.poll_timeout() <= now {
            c.handle_timeout(now);
        }
        drain(&mut c, now);
        now = now + Duration::from_millis(100);
        at.resize(c.stats().echo_tests_sent as usize, now);
    }
    println!(
        "echo tests at {:?}",
        at.iter().map(|t| t.saturating_since(start).as_secs_f32()).collect::<Vec<_>>()
    );
    // Never more than 4 in a hold-off, at least 2 s apart.
    for (i, t) in at.iter().enumerate() {
        let within = at[i..].iter().filter(|x| x.saturating_since(*t) < ECHO_TEST_HOLD).count();
        assert!(within <= 4, "{within} echo tests within {ECHO_TEST_HOLD:?} from {t:?}");
    }
    for w in at.windows(2) {
        assert!(w[1].saturating_since(w[0]) >= Duration::from_secs(2), "{at:?}");
    }
    // 4 at the start, then 4 again each hold-off (+ 6 s of tests): 3 rounds or more in
    // 120 s, where a 300 s hold-off would allow one.
    assert!(at.len() >= 12, "{} echo tests in 120 s: {at:?}", at.len());
}
