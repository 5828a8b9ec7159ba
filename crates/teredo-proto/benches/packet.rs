//! Benchmarks of the per-packet work of the protocol core: parsing and classifying one
//! encapsulated data packet (as a relay or client does for every datagram it receives),
//! and decoding a Teredo address (as it does for every destination).
//!
//! Run with `cargo bench -p teredo-proto --bench packet`.

use std::hint::black_box;
use std::net::Ipv6Addr;

use teredo_proto::address::TeredoAddress;
use teredo_proto::wire::ipv6::Ipv6Header;
use teredo_proto::wire::{OriginIndication, PacketKind, TeredoPacket, encap};
use zerocopy::IntoBytes;

fn main() {
    divan::main();
}

/// A 1280-byte UDP-in-IPv6 data packet from a native host to a Teredo client, with an
/// origin indication in front when `origin` is set.
fn data_packet(origin: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 1400];
    let o = OriginIndication { addr: [198, 51, 100, 7].into(), port: 40000 };
    let n = encap::emit_headers(&mut buf, None, origin.then_some(&o)).unwrap();
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "2001:0:c000:201:3cff:63bf:3fff:fdd2".parse().unwrap();
    let h = Ipv6Header::new(src, dst, 17, 64, 1240);
    buf[n..n + 40].copy_from_slice(h.as_bytes());
    buf.truncate(n + 1280);
    buf
}

#[divan::bench(args = [false, true])]
fn parse_and_classify_data_packet(bencher: divan::Bencher<'_, '_>, origin: bool) {
    let pkt = data_packet(origin);
    bencher.counter(divan::counter::ItemsCount::new(1usize)).bench(|| {
        let p = TeredoPacket::parse(black_box(&pkt)).unwrap();
        let kind = p.kind();
        let dst = TeredoAddress::from_ipv6(&p.ipv6.dst());
        assert_eq!(kind, PacketKind::Data);
        black_box((kind, dst, p.origin, p.trailers.is_empty()))
    });
}

#[divan::bench]
fn decode_address(bencher: divan::Bencher<'_, '_>) {
    let a: Ipv6Addr = "2001:0:4136:e378:8000:63bf:3fff:fdd2".parse().unwrap();
    bencher
        .counter(divan::counter::ItemsCount::new(1usize))
        .bench(|| TeredoAddress::from_ipv6(black_box(&a)));
}
