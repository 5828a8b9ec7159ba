//! The TUN coalescer under fuzzing: a sequence of packets (TCP segments of a few flows,
//! mostly in order and with valid checksums, UDP datagrams, anything) and calls (flush,
//! UDP joining on and off, stopping for good), on a coalescer of 0 to 4 flows. Every
//! frame written is segmented back ([`Segments`]) as the kernel would: what comes out must
//! be exactly what went in, byte for byte, with the packets of each flow in their order.

use std::net::Ipv6Addr;

use zerocopy::IntoBytes;

use super::ops::Ops;
use crate::checksum::Checksum;
use crate::offload::{Coalescer, NEXT_HEADER_TCP, NEXT_HEADER_UDP, Segments, VNET_HDR_LEN, VnetHeader};
use crate::wire::ipv6::Ipv6Header;

/// The most operations one input runs.
const MAX_STEPS: usize = 256;
/// The largest frame the coalescer may write.
const MAX_FRAME: usize = 65_535;

/// A flow of the world: addresses, ports, and the next sequence number.
struct Flow {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    seq: u32,
}

fn flows() -> Vec<Flow> {
    let a: Ipv6Addr = "2001:0:c000:201:0:63bf:3fff:fdd2".parse().expect("an address");
    let b: Ipv6Addr = "2001:db8::1".parse().expect("an address");
    vec![
        Flow { src: b, dst: a, sport: 443, dport: 50_000, seq: 1000 },
        Flow { src: b, dst: a, sport: 443, dport: 50_001, seq: u32::MAX - 3000 },
        Flow { src: a, dst: b, sport: 50_002, dport: 80, seq: 7 },
    ]
}

/// The coalescer on a sequence of packets and calls.
pub fn coalescer(data: &[u8]) {
    let mut ops = Ops::new(data);
    let mut c = Coalescer::new(usize::from(ops.u8() % 5));
    let mut flows = flows();
    let mut given: Vec<Vec<u8>> = Vec::new();
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut write = |h: &[u8; VNET_HDR_LEN], f: &[u8]| segment_back(h, f, &mut written);
    for _ in 0..MAX_STEPS {
        if ops.is_empty() {
            break;
        }
        let op = ops.u8();
        let p = match op % 10 {
            0..=4 => tcp(&mut ops, &mut flows),
            5 | 6 => udp(&mut ops, &flows),
            7 => ops.chunk().to_vec(),
            8 => {
                c.flush(&mut write);
                continue;
            }
            _ => {
                match ops.u8() % 8 {
                    0 => c.stop_joining(&mut write),
                    n => c.set_join_udp(n % 2 == 0, &mut write),
                }
                continue;
            }
        };
        c.push(&p, &mut write);
        given.push(p);
    }
    c.flush(&mut write);
    let s = c.stats();
    assert_eq!(s.packets_in, given.len() as u64);
    assert!(s.packets_coalesced <= s.packets_in && s.super_packets <= s.frames_out);
    // Each flow's packets in their order (a flow: IPv6, TCP or UDP right after the fixed
    // header, the same addresses and ports), then all of them, byte for byte.
    let key = |p: &Vec<u8>| {
        (p.len() >= 44 && p[0] >> 4 == 6 && (p[6] == NEXT_HEADER_TCP || p[6] == NEXT_HEADER_UDP))
            .then(|| p[6..44].to_vec())
    };
    let mut keys: Vec<Vec<u8>> = given.iter().filter_map(key).collect();
    keys.sort();
    keys.dedup();
    for k in &keys {
        let a = given.iter().filter(|p| key(p).as_ref() == Some(k));
        let b = written.iter().filter(|p| key(p).as_ref() == Some(k));
        assert!(a.eq(b), "the packets of a flow came out changed or out of order");
    }
    given.sort();
    written.sort();
    assert!(given == written, "the packets written are not the packets given");
}

/// The packets of one frame the coalescer wrote, as the kernel cuts it.
fn segment_back(h: &[u8; VNET_HDR_LEN], frame: &[u8], out: &mut Vec<Vec<u8>>) {
    assert!(frame.len() <= MAX_FRAME, "a frame beyond 64 KiB");
    let hdr = VnetHeader::parse(h).expect("a whole header");
    if hdr.gso_type == VnetHeader::GSO_NONE && !hdr.needs_csum() {
        out.push(frame.to_vec());
        return;
    }
    assert!(hdr.gso_type == VnetHeader::GSO_TCPV6 || hdr.gso_type == VnetHeader::GSO_UDP_L4);
    let mut s = Segments::new(&hdr, frame).expect("a super-packet segments");
    assert!(s.count() >= 2, "a super-packet of one segment");
    let mut buf = vec![0u8; s.max_len()];
    while let Some(n) = s.next_into(&mut buf) {
        out.push(buf[..n].to_vec());
    }
}

/// A TCP segment of one of the flows: mostly the next in sequence, flags ACK, payload of
/// the flow's usual size, a valid checksum; the fuzzer may change any of these.
fn tcp(ops: &mut Ops<'_>, flows: &mut [Flow]) -> Vec<u8> {
    let f = &mut flows[usize::from(ops.u8()) % 3];
    let how = ops.u8();
    let len = match how % 8 {
        0..=3 => 1000,
        4 => 400,
        5 => 0,
        6 => 1,
        _ => usize::from(ops.u16()) % 9000,
    };
    let seq = if how & 0x08 == 0 { f.seq } else { ops.u32() };
    if how & 0x08 == 0 {
        f.seq = f.seq.wrapping_add(len as u32);
    }
    let flags = match (how >> 4) % 8 {
        0..=3 => 0x10,
        4 => 0x18,
        5 => 0x11,
        6 => 0x90,
        _ => ops.u8(),
    };
    let options: &[u8] = if how & 0x80 != 0 { &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2] } else { &[] };
    let mut t = Vec::with_capacity(20 + options.len() + len);
    t.extend_from_slice(&f.sport.to_be_bytes());
    t.extend_from_slice(&f.dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    t.push((((20 + options.len()) / 4) << 4) as u8);
    t.push(flags);
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(options);
    t.resize(t.len() + len, how);
    finish(ops, f.src, f.dst, NEXT_HEADER_TCP, 16, t)
}

/// A UDP datagram of one of two flows.
fn udp(ops: &mut Ops<'_>, flows: &[Flow]) -> Vec<u8> {
    let f = &flows[usize::from(ops.u8()) % 2];
    let len = match ops.u8() % 4 {
        0 | 1 => 1200,
        2 => 100,
        _ => usize::from(ops.u16()) % 2000,
    };
    let mut u = Vec::with_capacity(8 + len);
    u.extend_from_slice(&f.dport.to_be_bytes());
    u.extend_from_slice(&4500u16.to_be_bytes());
    u.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.resize(8 + len, ops.u8());
    finish(ops, f.src, f.dst, NEXT_HEADER_UDP, 6, u)
}

/// The IPv6 packet around the transport bytes `l4`, its checksum (at `csum_at`) computed,
/// then perhaps corrupted.
fn finish(
    ops: &mut Ops<'_>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
    csum_at: usize,
    mut l4: Vec<u8>,
) -> Vec<u8> {
    let mut c = Checksum::new();
    c.add_pseudo_header(&src, &dst, l4.len() as u32, proto).add(&l4);
    let mut sum = c.finish();
    if proto == NEXT_HEADER_UDP && sum == 0 {
        sum = 0xffff;
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut p = Ipv6Header::new(src, dst, proto, 64, l4.len() as u16).as_bytes().to_vec();
    p.extend_from_slice(&l4);
    match ops.u8() % 16 {
        0 => {
            let at = usize::from(ops.u16()) % p.len();
            p[at] ^= ops.u8() | 1;
        }
        1 => p[1] ^= 0x10, // another traffic class
        2 => p[7] = 63,    // another hop limit
        3 => p.truncate(usize::from(ops.u16()) % p.len()),
        _ => {}
    }
    p
}
