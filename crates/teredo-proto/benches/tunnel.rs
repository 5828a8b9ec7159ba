//! Benchmarks of the trusted fast path of the data path (RFC 4380 §5.4.1 case 1 and
//! §5.4.2): a relay with 1 and with 1,048,576 established peers handles 1280-byte packets
//! for random established peers (65,536 of them in a random order, so that the slots
//! they hit are not all in the cache), from the TUN (`handle_tun_packet` answers "send these
//! bytes to the mapping") and from UDP (`handle_datagram` answers "deliver this range").
//!
//! Run with `cargo bench -p teredo-proto --bench tunnel`.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use teredo_proto::address::{Flags, TEREDO_PREFIX, TeredoAddress};
use teredo_proto::nonce::TokenKey;
use teredo_proto::peers::{DEFAULT_MAX_PEERS, PeerLimits};
use teredo_proto::time::Instant;
use teredo_proto::tunnel::{Limits, RelayConfig, Role, TunVerdict, Tunnel, UdpVerdict};
use teredo_proto::wire::ipv6::{Ipv6Header, emit_bubble};
use zerocopy::IntoBytes;

const SIZES: [usize; 2] = [1, DEFAULT_MAX_PEERS];
/// Packets per timed iteration.
const BATCH: usize = 256;
const NATIVE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

fn main() {
    divan::main();
}

fn mapping(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(0x0100_0000 + i as u32), 40000)
}

fn peer(i: usize) -> Ipv6Addr {
    let m = mapping(i);
    TeredoAddress {
        prefix: TEREDO_PREFIX,
        server: Ipv4Addr::new(192, 0, 2, 1),
        flags: Flags(0),
        mapped_port: m.port(),
        mapped_addr: *m.ip(),
    }
    .to_ipv6()
}

fn packet(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut p = Ipv6Header::new(src, dst, 17, 64, 1240).as_bytes().to_vec();
    p.resize(1280, 0xab);
    p
}

/// A relay with `n` trusted peers, and up to 65,536 of them in a random order.
fn relay(n: usize) -> (Tunnel, Vec<usize>) {
    let limits = Limits { peers: PeerLimits { max_peers: n, ..PeerLimits::default() }, ..Limits::default() };
    let mut t =
        Tunnel::new(Role::Relay(RelayConfig::default()), TokenKey::new([3; 32]), limits, Instant::ZERO)
            .unwrap();
    let now = Instant::from_secs(10);
    let mut buf = vec![0u8; 1500];
    let mut p = Ipv6Header::new(NATIVE, peer(0), 59, 64, 0).as_bytes().to_vec();
    let mut bubble = [0u8; 40];
    for i in 0..n {
        p[24..40].copy_from_slice(&peer(i).octets());
        assert_eq!(t.handle_tun_packet(now, &p), TunVerdict::Queued);
        while t.poll_transmit(now, &mut buf).is_some() {}
        emit_bubble(&mut bubble, peer(i), NATIVE, 0).unwrap();
        assert_eq!(t.handle_datagram(now, mapping(i), &bubble), UdpVerdict::Consumed);
        while t.poll_transmit(now, &mut buf).is_some() {}
    }
    assert_eq!(t.peers().len(), n);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let order = (0..n.min(65_536))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect();
    (t, order)
}

/// TUN → UDP for established peers, a random one each time: ns per packet (the 16-byte
/// destination is written into one 1280-byte packet before each call).
#[divan::bench(args = SIZES)]
fn relay_tun_packet_trusted(bencher: divan::Bencher<'_, '_>, n: usize) {
    let (mut t, order) = relay(n);
    let addrs: Vec<[u8; 16]> = order.iter().map(|&i| peer(i).octets()).collect();
    let mut pkt = packet(NATIVE, peer(0));
    let now = Instant::from_secs(11);
    let mut at = 0;
    bencher.counter(divan::counter::ItemsCount::new(BATCH)).bench_local(|| {
        for _ in 0..BATCH {
            at = if at + 1 >= addrs.len() { 0 } else { at + 1 };
            pkt[24..40].copy_from_slice(&addrs[at]);
            let v = t.handle_tun_packet(now, black_box(&pkt));
            debug_assert!(matches!(v, TunVerdict::Send { .. }));
            black_box(v);
        }
    });
    assert_eq!(t.stats().drops.total(), 0);
}

/// UDP → TUN for established peers, a random one each time: ns per datagram (the
/// 16-byte source is written into one 1280-byte datagram before each call).
#[divan::bench(args = SIZES)]
fn relay_datagram_trusted(bencher: divan::Bencher<'_, '_>, n: usize) {
    let (mut t, order) = relay(n);
    let from: Vec<([u8; 16], SocketAddrV4)> = order.iter().map(|&i| (peer(i).octets(), mapping(i))).collect();
    let mut dgram = packet(peer(0), NATIVE);
    let now = Instant::from_secs(11);
    let mut at = 0;
    bencher.counter(divan::counter::ItemsCount::new(BATCH)).bench_local(|| {
        for _ in 0..BATCH {
            at = if at + 1 >= from.len() { 0 } else { at + 1 };
            let (src, mapping) = from[at];
            dgram[8..24].copy_from_slice(&src);
            let v = t.handle_datagram(now, mapping, black_box(&dgram));
            debug_assert!(matches!(v, UdpVerdict::Deliver { .. }));
            black_box(v);
        }
    });
    assert_eq!(t.stats().drops.total(), 0);
}
