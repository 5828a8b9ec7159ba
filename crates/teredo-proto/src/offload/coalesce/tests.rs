//! Tests of the coalescer: the frames it writes, their order, and the round trip through
//! [`Segments`](crate::offload::Segments).

use std::cell::RefCell;

use proptest::prelude::*;

use super::*;
use crate::offload::testutil::*;

type Frame = (VnetHeader, Vec<u8>);

/// A writer that records frames in `frames`, which stays readable between pushes.
fn sink(frames: &RefCell<Vec<Frame>>) -> impl FnMut(&[u8; VNET_HDR_LEN], &[u8]) + '_ {
    move |h, p| frames.borrow_mut().push((VnetHeader::parse(h).unwrap(), p.to_vec()))
}

/// Pushes `pkts` then flushes, returning the frames; checks that frames are written only
/// by `push` and `flush`, and the counters.
fn run(c: &mut Coalescer, pkts: &[Vec<u8>]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut w = |h: &[u8; VNET_HDR_LEN], p: &[u8]| frames.push((VnetHeader::parse(h).unwrap(), p.to_vec()));
    for p in pkts {
        c.push(p, &mut w);
    }
    c.flush(&mut w);
    frames
}

/// Segments of one flow from `sport`, starting at `seq`, with these payload sizes; the
/// last one with PSH if `psh`.
fn flow(sport: u16, seq: u32, sizes: &[usize], opts: &[u8], psh: bool) -> Vec<Vec<u8>> {
    let mut seq = seq;
    let mut v = Vec::new();
    for (k, &n) in sizes.iter().enumerate() {
        let f = if psh && k + 1 == sizes.len() { ACK | PSH } else { ACK };
        v.push(tcp(sport, seq, f, opts, &payload(n, k as u8)));
        seq = seq.wrapping_add(n as u32);
    }
    v
}

/// The ordinary packets of a frame.
fn expand(f: &Frame) -> Vec<Vec<u8>> {
    segment_all(&f.0, &f.1).expect("every frame segments")
}

/// Checks the header of a super-packet of `segs` segments of TCP header length `thl`.
fn check_super(f: &Frame, thl: usize, gso: usize) {
    let h = f.0;
    assert_eq!(h.flags, VnetHeader::F_NEEDS_CSUM);
    assert_eq!(h.gso_type, VnetHeader::GSO_TCPV6);
    assert_eq!(usize::from(h.hdr_len), 40 + thl);
    assert_eq!(usize::from(h.gso_size), gso);
    assert_eq!((h.csum_start, h.csum_offset), (40, 16));
    assert_eq!(usize::from(be16(&f.1, 4)), f.1.len() - 40);
    // The checksum field is the partial pseudo-header sum.
    let mut p = f.1.clone();
    make_partial(&mut p, 40, 16, 6);
    assert_eq!(p, f.1);
}

#[test]
fn one_flow_in_order_makes_one_super_packet() {
    let sizes = [1208, 1208, 1208, 1208, 1208, 500];
    let pkts = flow(1000, 0xffff_f000, &sizes, &TS_OPTION, true);
    let mut c = Coalescer::new(4);
    let frames = run(&mut c, &pkts);
    assert_eq!(frames.len(), 1);
    check_super(&frames[0], 32, 1208);
    assert_eq!(frames[0].1[53], ACK | PSH);
    let payload: Vec<u8> = pkts.iter().flat_map(|p| p[72..].to_vec()).collect();
    assert_eq!(frames[0].1[72..], payload[..]);
    assert_eq!(frames[0].1[..4], pkts[0][..4]);
    assert_eq!(frames[0].1[6..44], pkts[0][6..44]);
    assert_eq!(expand(&frames[0]), pkts);
    let s = c.stats();
    assert_eq!(
        s,
        CoalesceStats {
            packets_in: 6,
            frames_out: 1,
            super_packets: 1,
            packets_coalesced: 6,
            bad_checksums: 0,
            evictions: 0
        }
    );
}

#[test]
fn single_segment_is_written_unchanged_with_a_zero_header() {
    let pkts = flow(1000, 1, &[700], &[], false);
    let frames = run(&mut Coalescer::new(1), &pkts);
    assert_eq!(frames, vec![(VnetHeader::default(), pkts[0].clone())]);
}

#[test]
fn corrupt_segment_is_written_alone_and_unchanged() {
    let mut pkts = flow(1000, 1, &[1000; 10], &[], false);
    pkts[4][500] ^= 0x40;
    let mut c = Coalescer::new(2);
    let frames = run(&mut c, &pkts);
    assert_eq!(frames.len(), 3);
    assert_eq!(expand(&frames[0]), pkts[..4]);
    assert_eq!(frames[1], (VnetHeader::default(), pkts[4].clone()));
    assert_eq!(expand(&frames[2]), pkts[5..]);
    assert_eq!(c.stats().bad_checksums, 1);
    // A corrupt first segment does not open a super-packet either.
    let mut pkts = flow(1000, 1, &[1000; 3], &[], false);
    pkts[0][100] ^= 1;
    let frames = run(&mut Coalescer::new(2), &pkts);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].1, pkts[0]);
    assert_eq!(expand(&frames[1]), pkts[1..]);
}

#[test]
fn non_canonical_checksum_is_not_coalesced() {
    // Find a segment whose checksum computes to 0 and store 0xffff instead: valid, but
    // segmentation would not give back the same bytes.
    let mut pkts = flow(1000, 1, &[1000; 2], &[], false);
    let p = &mut pkts[1];
    for salt in 0..=u16::MAX {
        p[60..62].copy_from_slice(&salt.to_be_bytes());
        p[56..58].fill(0);
        let (want, _) = checksums(p);
        if want == 0 {
            break;
        }
    }
    assert_eq!(checksums(p).0, 0);
    p[56..58].copy_from_slice(&[0xff, 0xff]);
    let frames = run(&mut Coalescer::new(2), &pkts);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].1, pkts[1]);
}

#[test]
fn out_of_order_segments_are_not_joined() {
    let pkts = flow(1000, 1, &[1000; 3], &[], false);
    let shuffled = vec![pkts[0].clone(), pkts[2].clone(), pkts[1].clone()];
    let frames = run(&mut Coalescer::new(2), &shuffled);
    assert_eq!(frames.iter().map(|f| f.1.clone()).collect::<Vec<_>>(), shuffled);
    assert!(frames.iter().all(|f| f.0 == VnetHeader::default()));
    // A retransmission of the last segment is not joined either.
    let again = vec![pkts[0].clone(), pkts[1].clone(), pkts[1].clone(), pkts[2].clone()];
    let frames = run(&mut Coalescer::new(2), &again);
    assert_eq!(frames.len(), 2);
    assert_eq!(expand(&frames[0]), pkts[..2]);
    assert_eq!(expand(&frames[1]), pkts[1..]);
}

#[test]
fn interleaved_flows_make_two_super_packets() {
    let a = flow(1000, 1, &[1000, 1000, 1000, 10], &[], true);
    let b = flow(2000, 9, &[500, 500, 500], &TS_OPTION, false);
    let mixed = vec![
        a[0].clone(),
        b[0].clone(),
        a[1].clone(),
        b[1].clone(),
        a[2].clone(),
        b[2].clone(),
        a[3].clone(),
    ];
    let frames = run(&mut Coalescer::new(4), &mixed);
    assert_eq!(frames.len(), 2);
    // a closes on its PSH, b on the flush.
    check_super(&frames[0], 20, 1000);
    check_super(&frames[1], 32, 500);
    assert_eq!(expand(&frames[0]), a);
    assert_eq!(expand(&frames[1]), b);
}

#[test]
fn non_tcp_packets_pass_through_at_once() {
    let a = flow(1000, 1, &[1000, 1000], &[], false);
    // A UDP datagram that cannot be joined (its checksum is wrong) passes at once too.
    let mut u = udp(b"hello");
    u[46] ^= 0x5a;
    let bubble = {
        let mut v = a[0][..40].to_vec();
        v[4..6].fill(0);
        v[6] = 59;
        v
    };
    let mut c = Coalescer::new(2);
    let mut frames = Vec::new();
    let mut w = |h: &[u8; VNET_HDR_LEN], p: &[u8]| frames.push((VnetHeader::parse(h).unwrap(), p.to_vec()));
    c.push(&a[0], &mut w);
    c.push(&u, &mut w);
    c.push(&bubble, &mut w);
    c.push(&[0x45, 0, 0], &mut w);
    c.push(&[], &mut w);
    c.push(&a[1], &mut w);
    c.flush(&mut w);
    assert_eq!(frames.len(), 5);
    assert_eq!(frames[0], (VnetHeader::default(), u));
    assert_eq!(frames[1], (VnetHeader::default(), bubble));
    assert_eq!(frames[2].1, [0x45, 0, 0]);
    assert_eq!(frames[3].1, b"");
    assert_eq!(expand(&frames[4]), a);
}

#[test]
fn extension_headers_flush_flows_between_the_same_addresses() {
    let a = flow(1000, 1, &[1000, 1000], &[], false);
    let mut hbh = a[1][..40].to_vec();
    hbh[6] = 0;
    hbh.extend_from_slice(&[59, 0, 1, 4, 0, 0, 0, 0]);
    hbh[4..6].copy_from_slice(&8u16.to_be_bytes());
    let frames = run(&mut Coalescer::new(2), &[a[0].clone(), hbh.clone(), a[1].clone()]);
    assert_eq!(frames.iter().map(|f| f.1.clone()).collect::<Vec<_>>(), vec![a[0].clone(), hbh, a[1].clone()]);
}

#[test]
fn ack_only_and_control_segments_pass_through_in_order() {
    let a = flow(1000, 1, &[1000, 1000, 1000], &[], false);
    let pure_ack = tcp(1000, 3001, ACK, &[], &[]);
    let fin = tcp(1000, 3001, ACK | FIN, &[], b"x");
    let syn = tcp(3000, 7, SYN, &[], &[]);
    let rst = tcp(1000, 3001, ACK | RST, &[], &[]);
    let pkts = vec![
        a[0].clone(),
        a[1].clone(),
        pure_ack.clone(),
        a[2].clone(),
        syn.clone(),
        fin.clone(),
        rst.clone(),
    ];
    let mut c = Coalescer::new(2);
    let frames = run(&mut c, &pkts);
    assert_eq!(frames.len(), 6);
    assert_eq!(expand(&frames[0]), a[..2]);
    assert_eq!(frames[1].1, pure_ack);
    // a[2] opened a new super-packet, written before the FIN of its flow but after the SYN
    // of another flow.
    assert_eq!(frames[2].1, syn);
    assert_eq!(frames[3].1, a[2]);
    assert_eq!(frames[4].1, fin);
    assert_eq!(frames[5].1, rst);
    assert_eq!(c.stats().bad_checksums, 0);
}

#[test]
fn segments_that_differ_do_not_join() {
    let base = flow(1000, 1, &[1000, 1000], &[], false);
    let mut variants: Vec<Vec<u8>> = Vec::new();
    // Window, ack number, options, hop limit, flow label, bigger payload.
    let mut h = etherparse::TcpHeader::new(1000, 443, 1001, WINDOW + 1);
    h.ack = true;
    h.acknowledgment_number = ACK_NO;
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv6(SRC, DST, 64).tcp_header(h).write(&mut v, &payload(1000, 1)).unwrap();
    variants.push(v);
    let mut h = etherparse::TcpHeader::new(1000, 443, 1001, WINDOW);
    h.ack = true;
    h.acknowledgment_number = ACK_NO + 1;
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv6(SRC, DST, 64).tcp_header(h).write(&mut v, &payload(1000, 1)).unwrap();
    variants.push(v);
    variants.push(tcp(1000, 1001, ACK, &[1, 1, 1, 1], &payload(1000, 1)));
    let mut v = Vec::new();
    let mut h = etherparse::TcpHeader::new(1000, 443, 1001, WINDOW);
    h.ack = true;
    h.acknowledgment_number = ACK_NO;
    etherparse::PacketBuilder::ipv6(SRC, DST, 63).tcp_header(h).write(&mut v, &payload(1000, 1)).unwrap();
    variants.push(v);
    let mut v = base[1].clone();
    v[3] = 7; // flow label: not covered by the checksum
    variants.push(v);
    variants.push(tcp(1000, 1001, ACK, &[], &payload(1001, 1)));
    for (k, v) in variants.iter().enumerate() {
        assert!(checksum_ok(v));
        let frames = run(&mut Coalescer::new(2), &[base[0].clone(), v.clone()]);
        assert_eq!(frames.len(), 2, "variant {k}");
        assert_eq!(frames[0].1, base[0]);
        assert_eq!(frames[1].1, *v);
    }
}

#[test]
fn a_shorter_segment_closes_the_super_packet() {
    let pkts = flow(1000, 1, &[1000, 1000, 600, 1000, 1000], &[], false);
    let mut c = Coalescer::new(2);
    let frames = RefCell::new(Vec::new());
    let mut w = sink(&frames);
    for p in &pkts[..3] {
        c.push(p, &mut w);
    }
    // Written as soon as it closed.
    assert_eq!(frames.borrow().len(), 1);
    for p in &pkts[3..] {
        c.push(p, &mut w);
    }
    c.flush(&mut w);
    let frames = frames.take();
    assert_eq!(frames.len(), 2);
    assert_eq!(expand(&frames[0]), pkts[..3]);
    assert_eq!(expand(&frames[1]), pkts[3..]);
}

#[test]
fn super_packets_stay_within_64k() {
    let pkts = flow(1000, 1, &[1208; 120], &TS_OPTION, false);
    let frames = run(&mut Coalescer::new(1), &pkts);
    assert!(frames.iter().all(|f| f.1.len() <= 65_535));
    assert_eq!(frames.len(), 3);
    let back: Vec<Vec<u8>> = frames.iter().flat_map(expand).collect();
    assert_eq!(back, pkts);
    assert_eq!(expand(&frames[0]).len(), (65_535 - 72) / 1208);
}

#[test]
fn the_flows_limit_holds() {
    let a = flow(1000, 1, &[1000; 3], &[], false);
    let b = flow(2000, 1, &[1000; 3], &[], false);
    let d = flow(3000, 1, &[1000; 3], &[], false);
    let mut c = Coalescer::new(2);
    let frames = RefCell::new(Vec::new());
    let mut w = sink(&frames);
    c.push(&a[0], &mut w);
    c.push(&b[0], &mut w);
    c.push(&a[1], &mut w);
    assert!(frames.borrow().is_empty());
    // A third flow: the oldest super-packet (a) is written.
    c.push(&d[0], &mut w);
    assert_eq!(frames.borrow().len(), 1);
    assert_eq!(expand(&frames.borrow()[0]), a[..2]);
    c.push(&a[2], &mut w); // evicts b
    assert_eq!(frames.borrow().len(), 2);
    assert_eq!(frames.borrow()[1].1, b[0]);
    c.flush(&mut w);
    assert_eq!(frames.borrow().len(), 4);
    assert_eq!(c.stats().evictions, 2);
    // No slots at all: everything passes.
    let frames = run(&mut Coalescer::new(0), &a);
    assert_eq!(frames.iter().map(|f| f.1.clone()).collect::<Vec<_>>(), a);
}

/// The grouping key under which the coalescer must keep the order of packets.
fn order_key(p: &[u8]) -> Vec<u8> {
    if p.len() >= 44 && p[0] >> 4 == 6 {
        let mut k = vec![p[6]];
        k.extend_from_slice(&p[8..44]);
        k
    } else {
        vec![]
    }
}

/// Checks that `frames` are `pkts`, per-flow order kept, each either unchanged with a zero
/// header or a valid super-packet.
fn check_frames(pkts: &[Vec<u8>], frames: &[Frame]) -> Result<(), TestCaseError> {
    let mut out = Vec::new();
    for f in frames {
        if f.0 == VnetHeader::default() {
            out.push(f.1.clone());
        } else {
            let segs = segment_all(&f.0, &f.1).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert!(segs.len() >= 2);
            prop_assert!(f.1.len() <= 65_535);
            if f.0.gso_type == VnetHeader::GSO_UDP_L4 {
                check_super_udp(f, segs[0].len() - 48);
            } else {
                let thl = usize::from(f.1[52] >> 4) * 4;
                check_super(f, thl, segs[0].len() - 40 - thl);
            }
            out.extend(segs);
        }
    }
    let (mut a, mut b) = (pkts.to_vec(), out.clone());
    a.sort();
    b.sort();
    prop_assert_eq!(a, b, "the same packets");
    let mut keys: Vec<Vec<u8>> = pkts.iter().map(|p| order_key(p)).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let i: Vec<&Vec<u8>> = pkts.iter().filter(|p| order_key(p) == k).collect();
        let o: Vec<&Vec<u8>> = out.iter().filter(|p| order_key(p) == k).collect();
        prop_assert_eq!(i, o, "order within a flow");
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Duplicate,
    Swap,
    Junk(Vec<u8>),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        Just(Mutation::Duplicate),
        Just(Mutation::Swap),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(Mutation::Junk),
    ]
}

proptest! {
    #[test]
    fn round_trip_through_segments(
        gso in 1usize..1500,
        count in 1usize..70,
        last in 1usize..1500,
        opts in 0usize..=10,
        seq in any::<u32>(),
        psh in any::<bool>(),
    ) {
        let last = last.min(gso);
        let mut sizes = vec![gso; count - 1];
        sizes.push(last);
        let pkts = flow(1000, seq, &sizes, &vec![1u8; opts * 4], psh);
        let mut c = Coalescer::new(3);
        let frames = run(&mut c, &pkts);
        check_frames(&pkts, &frames)?;
        let back: Vec<Vec<u8>> = frames.iter().flat_map(expand).collect();
        prop_assert_eq!(&back, &pkts);
        if 40 + 20 + opts * 4 + sizes.iter().sum::<usize>() <= 65_535 {
            prop_assert_eq!(frames.len(), 1);
        }
        let s = c.stats();
        prop_assert_eq!(s.packets_in, count as u64);
        prop_assert_eq!(s.frames_out, frames.len() as u64);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
        flows in 0usize..4,
    ) {
        let frames = run(&mut Coalescer::new(flows), &pkts);
        check_frames(&pkts, &frames)?;
    }

    #[test]
    fn mutated_bursts_keep_packets_and_order(
        sizes in proptest::collection::vec((0usize..3, 1usize..600), 1..40),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), arb_mutation()), 0..6),
        flows in 0usize..4,
    ) {
        let mut seqs = [1u32, 100, 7];
        let mut pkts = Vec::new();
        for (k, &(f, n)) in sizes.iter().enumerate() {
            let opts: &[u8] = if f == 1 { &TS_OPTION } else { &[] };
            pkts.push(tcp(1000 + f as u16, seqs[f], ACK, opts, &payload(n, k as u8)));
            seqs[f] = seqs[f].wrapping_add(n as u32);
        }
        for (at, m) in mutations {
            let i = at.index(pkts.len());
            match m {
                Mutation::Flip(j, b) if !pkts[i].is_empty() => {
                    let j = j.index(pkts[i].len());
                    pkts[i][j] = b;
                }
                Mutation::Truncate(j) if !pkts[i].is_empty() => {
                    let j = j.index(pkts[i].len());
                    pkts[i].truncate(j);
                }
                Mutation::Flip(..) | Mutation::Truncate(_) => {}
                Mutation::Duplicate => {
                    let p = pkts[i].clone();
                    pkts.insert(i, p);
                }
                Mutation::Swap => {
                    let j = (i + 1) % pkts.len();
                    pkts.swap(i, j);
                }
                Mutation::Junk(v) => pkts.insert(i, v),
            }
        }
        let frames = run(&mut Coalescer::new(flows), &pkts);
        check_frames(&pkts, &frames)?;
    }
}

#[test]
fn stop_joining_writes_what_is_open_then_passes_packets_through() {
    let pkts = flow(1000, 1, &[500, 500, 500, 500], &[], false);
    let mut c = Coalescer::new(2);
    let frames = RefCell::new(Vec::new());
    c.push(&pkts[0], &mut sink(&frames));
    c.push(&pkts[1], &mut sink(&frames));
    assert!(frames.borrow().is_empty(), "two segments stay open");
    c.stop_joining(&mut sink(&frames));
    assert_eq!(c.flows(), 0);
    assert_eq!(frames.borrow().len(), 1, "the open super-packet is written");
    check_super(&frames.borrow()[0], 20, 500);
    c.push(&pkts[2], &mut sink(&frames));
    c.push(&pkts[3], &mut sink(&frames));
    let f = frames.borrow();
    assert_eq!(f.len(), 3, "then each packet at once");
    assert_eq!((f[1].0, &f[1].1), (VnetHeader::default(), &pkts[2]));
    assert_eq!((f[2].0, &f[2].1), (VnetHeader::default(), &pkts[3]));
    assert_eq!(c.stats().packets_in, 4, "the counters are kept");
}

/// Checks the header of a UDP super-packet whose datagrams carry `gso` bytes each.
fn check_super_udp(f: &Frame, gso: usize) {
    let h = f.0;
    assert_eq!(h.flags, VnetHeader::F_NEEDS_CSUM);
    assert_eq!(h.gso_type, VnetHeader::GSO_UDP_L4);
    assert_eq!((usize::from(h.hdr_len), usize::from(h.gso_size)), (48, gso));
    assert_eq!((h.csum_start, h.csum_offset), (40, 6));
    assert_eq!(usize::from(be16(&f.1, 4)), f.1.len() - 40);
    assert_eq!(usize::from(be16(&f.1, 44)), f.1.len() - 40, "UDP length of the whole");
    let mut p = f.1.clone();
    make_partial(&mut p, 40, 6, 17);
    assert_eq!(p, f.1, "the checksum field is the partial pseudo-header sum");
}

/// UDP datagrams from port `sport` with these payload sizes.
fn datagrams(sport: u16, sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let mut v = Vec::new();
            etherparse::PacketBuilder::ipv6(SRC, DST, 64)
                .udp(sport, 53)
                .write(&mut v, &payload(n, k as u8))
                .unwrap();
            v
        })
        .collect()
}

#[test]
fn udp_datagrams_of_one_flow_make_one_super_packet() {
    let pkts = datagrams(5000, &[1200, 1200, 1200, 1200, 700]);
    let mut c = Coalescer::new(2);
    let frames = run(&mut c, &pkts);
    assert_eq!(frames.len(), 1);
    check_super_udp(&frames[0], 1200);
    assert_eq!(expand(&frames[0]), pkts, "the kernel's cut gives back the very datagrams");
    assert_eq!((c.stats().super_packets, c.stats().packets_coalesced), (1, 5));
}

#[test]
fn udp_super_packets_close_on_a_shorter_datagram_and_at_64() {
    // A shorter datagram closes the super-packet; the next one opens another.
    let pkts = datagrams(5000, &[1000, 1000, 600, 1000, 1000]);
    let frames = run(&mut Coalescer::new(2), &pkts);
    assert_eq!(frames.len(), 2);
    assert_eq!(expand(&frames[0]), pkts[..3]);
    assert_eq!(expand(&frames[1]), pkts[3..]);
    // A longer one cannot join.
    let pkts = datagrams(5000, &[600, 1000]);
    let frames = run(&mut Coalescer::new(2), &pkts);
    assert_eq!(frames.iter().map(|f| f.1.clone()).collect::<Vec<_>>(), pkts);
    // At most 64 datagrams each (the kernel's limit).
    let pkts = datagrams(5000, &[64; 130]);
    let frames = run(&mut Coalescer::new(2), &pkts);
    let counts: Vec<usize> = frames.iter().map(|f| expand(f).len()).collect();
    assert_eq!(counts, vec![64, 64, 2]);
    assert_eq!(frames.iter().flat_map(expand).collect::<Vec<_>>(), pkts);
}

#[test]
fn udp_and_tcp_flows_on_the_same_ports_do_not_mix() {
    let u = datagrams(1000, &[500, 500]);
    let t = flow(1000, 1, &[500, 500], &[], false);
    let frames = run(&mut Coalescer::new(4), &[u[0].clone(), t[0].clone(), u[1].clone(), t[1].clone()]);
    assert_eq!(frames.len(), 2);
    let all: Vec<Vec<Vec<u8>>> = frames.iter().map(expand).collect();
    assert!(all.contains(&u) && all.contains(&t), "{} frames", frames.len());
}

#[test]
fn corrupt_or_odd_udp_datagrams_pass_alone() {
    let mut pkts = datagrams(5000, &[800, 800, 800, 800]);
    pkts[1][60] ^= 1; // payload corrupted: the checksum no longer verifies
    pkts[2][44..46].copy_from_slice(&700u16.to_be_bytes()); // a UDP length that lies
    let mut c = Coalescer::new(2);
    let frames = run(&mut c, &pkts);
    let plain: Vec<Vec<u8>> = frames.iter().map(|f| f.1.clone()).collect();
    assert_eq!(plain, pkts, "each written alone, unchanged, in order");
    assert!(frames.iter().all(|f| f.0 == VnetHeader::default()));
    assert_eq!(c.stats().super_packets, 0);
}

proptest! {
    #[test]
    fn udp_round_trip_through_segments(
        sizes in proptest::collection::vec((0u16..2, 1usize..1400), 1..100),
        flows in 0usize..3,
    ) {
        // Two interleaved flows of datagrams of any sizes: whatever is joined, the frames
        // give back exactly the datagrams, in order within each flow.
        let pkts: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &(f, n))| {
                let mut v = Vec::new();
                etherparse::PacketBuilder::ipv6(SRC, DST, 64)
                    .udp(5000 + f, 53)
                    .write(&mut v, &payload(n, k as u8))
                    .unwrap();
                v
            })
            .collect();
        let frames = run(&mut Coalescer::new(flows), &pkts);
        check_frames(&pkts, &frames)?;
    }
}

#[test]
fn udp_joining_can_be_turned_off() {
    let u = datagrams(5000, &[800, 800, 800]);
    let t = flow(1000, 1, &[500, 500], &[], false);
    let mut c = Coalescer::new(4);
    let frames = RefCell::new(Vec::new());
    c.push(&u[0], &mut sink(&frames));
    c.push(&u[1], &mut sink(&frames));
    c.push(&t[0], &mut sink(&frames));
    assert!(frames.borrow().is_empty());
    // Off: the open UDP super-packet is written, the TCP one stays open.
    c.set_join_udp(false, &mut sink(&frames));
    assert!(!c.joins_udp());
    assert_eq!(frames.borrow().len(), 1);
    assert_eq!(expand(&frames.borrow()[0]), u[..2]);
    // Later datagrams pass at once, unchanged; TCP is still joined.
    c.push(&u[2], &mut sink(&frames));
    assert_eq!(frames.borrow()[1], (VnetHeader::default(), u[2].clone()));
    c.push(&t[1], &mut sink(&frames));
    c.flush(&mut sink(&frames));
    let f = frames.borrow();
    assert_eq!(f.len(), 3);
    assert_eq!(expand(&f[2]), t);
}
