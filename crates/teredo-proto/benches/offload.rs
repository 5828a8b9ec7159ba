//! Benchmarks of TUN offload: segmenting one 64,000-byte TCP super-packet read from the
//! TUN at gso_size 1208 (53 segments, each to become one Teredo datagram), and coalescing
//! those 53 segments back into one super-packet to write, checksum verification included.
//! `segment_64k` copies each segment whole; `segment_headers_64k` is the worker's way
//! (headers into the send slot, the payload gathered from where it is); `checksum` times
//! the Internet checksum alone. The counter is bytes of payload, so divan prints the
//! throughput of each.
//!
//! Run with `cargo bench -p teredo-proto --bench offload`.

use std::hint::black_box;

use etherparse::{PacketBuilder, TcpHeader};
use teredo_proto::checksum::Checksum;
use teredo_proto::offload::{Coalescer, Segments, VNET_HDR_LEN, VnetHeader};

const PAYLOAD: usize = 64_000;
const GSO_SIZE: u16 = 1208;

fn main() {
    divan::main();
}

/// A TCP/IPv6 super-packet with a timestamp option and `PAYLOAD` bytes, its checksum field
/// holding the partial pseudo-header sum as Linux leaves it, with its virtio header.
fn super_packet() -> (VnetHeader, Vec<u8>) {
    let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst = [0x20, 0x01, 0, 0, 0xc0, 0, 0x02, 0x01, 0x3c, 0xff, 0x63, 0xbf, 0x3f, 0xff, 0xfd, 0xd2];
    let mut h = TcpHeader::new(40000, 443, 1, 501);
    h.ack = true;
    h.acknowledgment_number = 99;
    h.set_options_raw(&[1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78]).unwrap();
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| (i * 7) as u8).collect();
    let mut p = Vec::new();
    PacketBuilder::ipv6(src, dst, 64).tcp_header(h).write(&mut p, &payload).unwrap();
    let mut c = Checksum::new();
    c.add_pseudo_header(&src.into(), &dst.into(), (p.len() - 40) as u32, 6);
    p[56..58].copy_from_slice(&(!c.finish()).to_be_bytes());
    let hdr = VnetHeader {
        flags: VnetHeader::F_NEEDS_CSUM,
        gso_type: VnetHeader::GSO_TCPV6,
        hdr_len: 72,
        gso_size: GSO_SIZE,
        csum_start: 40,
        csum_offset: 16,
    };
    (hdr, p)
}

#[divan::bench]
fn segment_64k(bencher: divan::Bencher<'_, '_>) {
    let (hdr, p) = super_packet();
    let mut out = vec![0u8; 1500];
    bencher.counter(divan::counter::BytesCount::new(PAYLOAD)).bench_local(|| {
        let mut s = Segments::new(black_box(&hdr), black_box(&p)).unwrap();
        let mut total = 0;
        while let Some(n) = s.next_into(&mut out) {
            total += black_box(&out[..n]).len();
        }
        total
    });
}

/// Segmenting as the worker does it: each segment's headers (checksum included) into the
/// slot, the payload left in place for the send to gather (`SegmentPlan::next_headers_into`).
#[divan::bench]
fn segment_headers_64k(bencher: divan::Bencher<'_, '_>) {
    let (hdr, p) = super_packet();
    let mut out = vec![0u8; 1500];
    bencher.counter(divan::counter::BytesCount::new(PAYLOAD)).bench_local(|| {
        let mut plan = Segments::new(black_box(&hdr), black_box(&p)).unwrap().into_plan();
        let mut total = 0;
        while let Some((h, payload)) = plan.next_headers_into(&p, &mut out) {
            total += black_box(&out[..h]).len() + payload.len();
        }
        total
    });
}

#[divan::bench]
fn coalesce_64k(bencher: divan::Bencher<'_, '_>) {
    let (hdr, p) = super_packet();
    let mut s = Segments::new(&hdr, &p).unwrap();
    let mut segs = Vec::new();
    let mut out = vec![0u8; 1500];
    while let Some(n) = s.next_into(&mut out) {
        segs.push(out[..n].to_vec());
    }
    assert_eq!(segs.len(), 53);
    let mut c = Coalescer::new(8);
    bencher.counter(divan::counter::BytesCount::new(PAYLOAD)).bench_local(|| {
        let mut frames = 0;
        let mut w = |h: &[u8; VNET_HDR_LEN], p: &[u8]| {
            black_box((h, p));
            frames += 1;
        };
        for s in &segs {
            c.push(black_box(s), &mut w);
        }
        c.flush(&mut w);
        assert_eq!(frames, 1);
    });
}

/// The Internet checksum alone, over one segment's worth and over a whole super-packet:
/// the part of segmenting and of coalescing that reads every byte.
#[divan::bench(args = [1208, 64_000])]
fn checksum(bencher: divan::Bencher<'_, '_>, len: usize) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    bencher.counter(divan::counter::BytesCount::new(len)).bench_local(|| {
        let mut c = Checksum::new();
        c.add(black_box(&data));
        c.finish()
    });
}
