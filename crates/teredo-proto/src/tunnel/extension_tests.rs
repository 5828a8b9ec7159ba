//! Unit tests of the RFC 6081 NAT extensions in the data path, one rule each: the UPnP
//! Symmetric Peer flag (§5.3.4), the random port and its trailer (§5.4.4.2–§5.4.4.4), the
//! echo test and its failover (§5.5.4.1, §5.5.2.2), the bound on random ports, and the
//! mapping a peer keeps against crossing answers.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use super::*;
use crate::address::{Flags, TEREDO_PREFIX, TeredoAddress};
use crate::client::{NatFindings, NatKind};
use crate::wire::{OriginIndication, TeredoPacket, Trailer, encap, ipv6};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SECONDARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const A_MAP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 40000);
const B_MAP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 20), 50000);

fn addr(map: SocketAddrV4) -> Ipv6Addr {
    TeredoAddress {
        prefix: TEREDO_PREFIX,
        server: SERVER,
        flags: Flags(0),
        mapped_port: map.port(),
        mapped_addr: *map.ip(),
    }
    .to_ipv6()
}

fn key(b: u8) -> TokenKey {
    TokenKey::new([b; 32])
}

/// A client at `A_MAP` whose NAT qualification found as `nat` says.
fn client(symmetric: bool, port_preserving: bool, upnp: bool) -> Tunnel {
    let mut t = Tunnel::new(Role::Client, key(1), Limits::default(), Instant::ZERO).unwrap();
    t.set_qualified(Instant::ZERO, addr(A_MAP), SERVER);
    let nat = NatFindings {
        kind: Some(if symmetric { NatKind::Symmetric } else { NatKind::SameMapping }),
        mapping: Some(A_MAP),
        port_preserving,
        upnp: upnp.then_some(A_MAP),
    };
    t.set_nat(nat, SECONDARY);
    t
}

fn drain(t: &mut Tunnel, now: Instant) -> Vec<(Destination, Vec<u8>)> {
    let mut buf = [0u8; 1500];
    let mut out = vec![];
    while let Some(tx) = t.poll_transmit(now, &mut buf) {
        out.push((tx.dest, buf[..tx.len].to_vec()));
    }
    out
}

/// A bubble from `src` to `dst` with these trailer bytes, behind `origin` when relayed.
fn bubble(src: Ipv6Addr, dst: Ipv6Addr, origin: Option<SocketAddrV4>, trailers: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 200];
    let o = origin.map(|o| OriginIndication { addr: *o.ip(), port: o.port() });
    let n = encap::emit_headers(&mut b, None, o.as_ref()).unwrap();
    let m = ipv6::emit_bubble(&mut b[n..], src, dst, 255).unwrap();
    b.truncate(n + m);
    b.extend_from_slice(trailers);
    b
}

fn nonce_trailer(n: [u8; 4]) -> Vec<u8> {
    vec![0x01, 4, n[0], n[1], n[2], n[3]]
}

fn random_port(bytes: &[u8]) -> Option<u16> {
    TeredoPacket::parse(bytes).ok()?.trailers.iter().flatten().find_map(|t| match t {
        Trailer::RandomPort { port, .. } => Some(port),
        _ => None,
    })
}

fn data(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut p = zerocopy::IntoBytes::as_bytes(&ipv6::Ipv6Header::new(src, dst, 17, 64, 8)).to_vec();
    p.resize(48, 7);
    p
}

/// §5.3.4.1–§5.3.4.3: behind a single UPnP symmetric NAT, a peer trusted at a mapping
/// other than its embedded one gets its data at the embedded one.
#[test]
fn upnp_symmetric_peers_get_packets_at_their_embedded_mapping() {
    let mut a = client(true, false, true);
    let b = addr(B_MAP);
    let other = SocketAddrV4::new(*B_MAP.ip(), 61000);
    let verified = bubble(b, addr(A_MAP), None, &nonce_trailer(key(1).bubble_nonce(&b)));
    assert_eq!(a.handle_datagram(Instant::from_millis(1), other, &verified), UdpVerdict::Consumed);
    assert_eq!(a.stats().symmetric_peers, 1);
    assert_eq!(a.peers().get(&b).map(|p| p.embedded_mapping()), Some(B_MAP), "RFC 4380 §4 decoding");
    let learnt = drain(&mut a, Instant::from_millis(1));
    assert!(learnt.iter().any(|(d, _)| *d == Destination::Udp(B_MAP)), "{learnt:?}");
    assert_eq!(
        a.handle_tun_packet(Instant::from_millis(2), &data(addr(A_MAP), b)),
        TunVerdict::Send { dst: B_MAP }
    );
    // Packets from the trusted mapping are the peer's.
    assert!(matches!(
        a.handle_datagram(Instant::from_millis(3), other, &data(b, addr(A_MAP))),
        UdpVerdict::Deliver { .. }
    ));
    // Without UPnP, the learnt mapping.
    let mut a = client(true, false, false);
    a.handle_datagram(Instant::from_millis(1), other, &verified);
    assert_eq!(
        a.handle_tun_packet(Instant::from_millis(2), &data(addr(A_MAP), b)),
        TunVerdict::Send { dst: other }
    );
}

/// §5.4.4.2 and §5.4.4.3: a port-preserving symmetric client opens a random port for an
/// untrusted peer and advertises it in its indirect bubbles; its random socket answers
/// the peer's random port. A port it cannot bind goes.
#[test]
fn port_preserving_clients_advertise_a_random_port() {
    let mut a = client(true, true, false);
    let b = addr(B_MAP);
    assert_eq!(a.handle_tun_packet(Instant::ZERO, &data(addr(A_MAP), b)), TunVerdict::Queued);
    let ports: Vec<u16> = a.random_ports().collect();
    assert_eq!(ports.len(), 1);
    let out = drain(&mut a, Instant::ZERO);
    let indirect: Vec<_> =
        out.iter().filter(|(d, _)| *d == Destination::Udp(SocketAddrV4::new(SERVER, 3544))).collect();
    assert_eq!(indirect.len(), 2);
    assert!(
        indirect.iter().all(|(_, b)| random_port(b) == Some(ports[0])),
        "the Random Port is the local port"
    );
    // The peer's indirect bubble with its own random port: a direct bubble from ours to it.
    let theirs = [0x05, 2, 0xea, 0x60]; // 60000
    let mut t = nonce_trailer([9; 4]);
    t.extend_from_slice(&theirs);
    let relayed = bubble(b, addr(A_MAP), Some(B_MAP), &t);
    a.handle_datagram(Instant::from_millis(10), SocketAddrV4::new(SERVER, 3544), &relayed);
    let out = drain(&mut a, Instant::from_millis(10));
    let to_random = SocketAddrV4::new(*B_MAP.ip(), 60000);
    let d = out
        .iter()
        .find(|(d, _)| *d == Destination::UdpFrom { port: ports[0], to: to_random })
        .expect("a direct bubble between the random ports");
    assert_eq!(random_port(&d.1), Some(ports[0]));
    assert!(TeredoPacket::parse(&d.1).unwrap().trailers.nonce() == Some([9; 4]), "with the peer's nonce");
    let g = a.random_ports_generation();
    a.random_port_unavailable(ports[0]);
    assert_eq!(a.random_ports().count(), 0);
    assert_ne!(a.random_ports_generation(), g);
    assert_eq!(a.stats().random_ports_unavailable, 1);
}

/// §5.4.4.3 as this data path extends it: a client with no random port of its own sends
/// its direct bubble to the peer's random port from the Teredo port.
#[test]
fn any_client_answers_a_peers_random_port() {
    let mut a = client(false, false, false);
    let b = addr(B_MAP);
    let mut t = nonce_trailer([9; 4]);
    t.extend_from_slice(&[0x02, 2, 0xea, 0x60]); // the IANA type, 60000
    a.handle_datagram(
        Instant::ZERO,
        SocketAddrV4::new(SERVER, 3544),
        &bubble(b, addr(A_MAP), Some(B_MAP), &t),
    );
    let out = drain(&mut a, Instant::ZERO);
    assert!(
        out.iter().any(|(d, _)| *d == Destination::Udp(SocketAddrV4::new(*B_MAP.ip(), 60000))),
        "{out:?}"
    );
    assert_eq!(a.random_ports().count(), 0);
}

/// §5.5.4.1.1 and §5.5.2.2: behind a sequential NAT the first request for indirect
/// bubbles is an echo test from a random port (RS to the primary, bubble to the peer, RS
/// to the secondary); no answer: another after 1 s, then the indirect bubbles after 2 s.
#[test]
fn echo_tests_then_failover() {
    let mut a = client(true, false, false);
    let b = addr(B_MAP);
    assert_eq!(a.handle_tun_packet(Instant::ZERO, &data(addr(A_MAP), b)), TunVerdict::Queued);
    let port = a.random_ports().next().expect("a random port");
    let out = drain(&mut a, Instant::ZERO);
    let from_random: Vec<_> = out.iter().filter(|(d, _)| matches!(d, Destination::UdpFrom { .. })).collect();
    let dests: Vec<_> = from_random.iter().map(|(d, _)| *d).collect();
    assert_eq!(
        dests,
        [
            Destination::UdpFrom { port, to: SocketAddrV4::new(SERVER, 3544) },
            Destination::UdpFrom { port, to: B_MAP },
            Destination::UdpFrom { port, to: SocketAddrV4::new(SECONDARY, 3544) },
        ]
    );
    assert!(TeredoPacket::parse(&from_random[0].1).unwrap().auth.is_some(), "an RS with a nonce");
    let to_server = |o: &[(Destination, Vec<u8>)]| {
        o.iter().filter(|(d, _)| *d == Destination::Udp(SocketAddrV4::new(SERVER, 3544))).count()
    };
    assert_eq!(to_server(&out), 0, "no indirect bubble before the prediction");
    let t1 = Instant::from_secs(1);
    a.handle_timeout(t1);
    let out = drain(&mut a, t1);
    assert_eq!(
        out.iter().filter(|(d, _)| matches!(d, Destination::UdpFrom { .. })).count(),
        3,
        "a second test"
    );
    let t3 = Instant::from_secs(3);
    a.handle_timeout(t3);
    let out = drain(&mut a, t3);
    assert!(to_server(&out) >= 2, "then the indirect bubbles: {out:?}");
    assert_eq!(a.stats().port_echo_tests, 2);
}

/// The table of random ports holds MAX_RANDOM_PEERS peers; the next is refused, counted,
/// and still gets its bubbles.
#[test]
fn random_ports_are_bounded() {
    let mut a = client(true, true, false);
    for i in 0..=MAX_RANDOM_PEERS as u16 {
        let peer = addr(SocketAddrV4::new(*B_MAP.ip(), 2000 + i));
        a.handle_tun_packet(Instant::ZERO, &data(addr(A_MAP), peer));
        drain(&mut a, Instant::ZERO);
    }
    assert_eq!(a.random_ports().count(), MAX_RANDOM_PEERS);
    assert!(a.stats().random_ports_refused >= 1);
}

/// Two verified answers from two mappings of one peer, crossing: the first stays while
/// it was heard less than 2 s ago; later, a new verified mapping replaces it.
#[test]
fn a_fresh_trusted_mapping_stays() {
    let mut a = client(false, false, false);
    let b = addr(B_MAP);
    let verified = bubble(b, addr(A_MAP), None, &nonce_trailer(key(1).bubble_nonce(&b)));
    let (m1, m2) = (SocketAddrV4::new(*B_MAP.ip(), 1111), SocketAddrV4::new(*B_MAP.ip(), 2222));
    a.handle_datagram(Instant::from_millis(1), m1, &verified);
    a.handle_datagram(Instant::from_millis(2), m2, &verified);
    assert_eq!(a.peers().get(&b).and_then(|p| p.mapping()), Some(m1));
    a.handle_datagram(Instant::from_millis(1) + Duration::from_secs(3), m2, &verified);
    assert_eq!(a.peers().get(&b).and_then(|p| p.mapping()), Some(m2));
}

proptest::proptest! {
    /// Whatever arrives on a random port or the Teredo port of a port-preserving or
    /// sequential client, nothing panics, the random ports stay within their bound, and a
    /// random port takes nothing from a peer other than its own.
    #[test]
    fn arbitrary_datagrams_on_random_ports(
        inputs in proptest::collection::vec((0u8..4, proptest::collection::vec(proptest::num::u8::ANY, 0..120)), 1..40),
        sequential in proptest::bool::ANY,
    ) {
        let mut a = client(true, !sequential, false);
        let b = addr(B_MAP);
        a.handle_tun_packet(Instant::ZERO, &data(addr(A_MAP), b));
        drain(&mut a, Instant::ZERO);
        let port = a.random_ports().next();
        for (i, (kind, junk)) in inputs.iter().enumerate() {
            let now = Instant::from_millis(10 * i as u64);
            let bytes = match kind {
                0 => junk.clone(),
                1 => bubble(b, addr(A_MAP), None, junk),
                2 => bubble(addr(SocketAddrV4::new(*B_MAP.ip(), 1)), addr(A_MAP), None, junk),
                _ => bubble(b, addr(A_MAP), Some(B_MAP), junk),
            };
            let from = if *kind == 3 { SocketAddrV4::new(SERVER, 3544) } else { B_MAP };
            match port {
                Some(p) if i % 2 == 0 => {
                    let v = a.handle_random_datagram(now, p, from, &bytes);
                    if *kind == 2 {
                        proptest::prop_assert!(matches!(v, UdpVerdict::Drop(_)), "another peer on its port: {v:?}");
                    }
                }
                _ => {
                    a.handle_datagram(now, from, &bytes);
                }
            }
            a.handle_timeout(now);
            drain(&mut a, now);
            proptest::prop_assert!(a.random_ports().count() <= MAX_RANDOM_PEERS);
        }
    }
}
