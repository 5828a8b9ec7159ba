//! Tests of checksum completion and segmentation, against etherparse.

use proptest::prelude::*;

use super::*;
use crate::offload::testutil::*;

fn tso_header(gso_size: u16, l4: usize) -> VnetHeader {
    VnetHeader {
        flags: VnetHeader::F_NEEDS_CSUM,
        gso_type: VnetHeader::GSO_TCPV6,
        hdr_len: 0,
        gso_size,
        csum_start: l4 as u16,
        csum_offset: 16,
    }
}

#[test]
fn complete_checksum_tcp_matches_etherparse() {
    for n in [0, 1, 2, 99, 1208] {
        let good = tcp(1000, 7, ACK | PSH, &TS_OPTION, &payload(n, 3));
        let mut p = good.clone();
        make_partial(&mut p, 40, 16, 6);
        assert_ne!(p, good);
        let hdr = VnetHeader {
            flags: VnetHeader::F_NEEDS_CSUM,
            csum_start: 40,
            csum_offset: 16,
            ..Default::default()
        };
        complete_checksum(&hdr, &mut p).unwrap();
        assert_eq!(p, good, "payload {n}");
    }
}

#[test]
fn complete_checksum_udp_matches_etherparse() {
    for n in [0, 1, 17, 1200] {
        let good = udp(&payload(n, 9));
        let mut p = good.clone();
        make_partial(&mut p, 40, 6, 17);
        let hdr = VnetHeader {
            flags: VnetHeader::F_NEEDS_CSUM,
            csum_start: 40,
            csum_offset: 6,
            ..Default::default()
        };
        complete_checksum(&hdr, &mut p).unwrap();
        assert_eq!(p, good, "payload {n}");
        assert!(checksum_ok(&p));
    }
}

#[test]
fn complete_checksum_without_flag_is_a_no_op() {
    let mut p = tcp(1000, 7, ACK, &[], b"abc");
    make_partial(&mut p, 40, 16, 6);
    let before = p.clone();
    complete_checksum(&VnetHeader::default(), &mut p).unwrap();
    assert_eq!(p, before);
}

#[test]
fn complete_checksum_rejects_offsets_outside_the_packet() {
    let mut p = tcp(1000, 7, ACK, &[], b"abc");
    let before = p.clone();
    for (start, off) in
        [(p.len() as u16, 0), (40, p.len() as u16), (p.len() as u16 - 1, 0), (u16::MAX, u16::MAX)]
    {
        let hdr = VnetHeader { flags: 1, csum_start: start, csum_offset: off, ..Default::default() };
        assert_eq!(complete_checksum(&hdr, &mut p), Err(OffloadError::BadOffsets));
        assert_eq!(Segments::new(&hdr, &p).err(), Some(OffloadError::BadOffsets));
    }
    assert_eq!(p, before);
}

#[test]
fn gso_none_yields_the_packet_with_its_checksum_completed() {
    let good = tcp(1000, 7, ACK, &[], &payload(500, 1));
    let mut p = good.clone();
    make_partial(&mut p, 40, 16, 6);
    let hdr = VnetHeader { flags: 1, csum_start: 40, csum_offset: 16, ..Default::default() };
    assert_eq!(segment_all(&hdr, &p).unwrap(), vec![good.clone()]);
    // Without NEEDS_CSUM, anything passes unchanged.
    let junk = [0xffu8; 7];
    assert_eq!(segment_all(&VnetHeader::default(), &junk).unwrap(), vec![junk.to_vec()]);
}

/// Checks the segments of a TCP super-packet whose original (complete, before being made
/// partial) is `orig`, with transport header at `l4`.
fn check_tcp_segments(orig: &[u8], l4: usize, gso: usize, segs: &[Vec<u8>]) {
    let thl = usize::from(orig[l4 + 12] >> 4) * 4;
    let data = &orig[l4 + thl..];
    assert_eq!(segs.len(), data.len().div_ceil(gso).max(1));
    let seq0 = be32(orig, l4 + 4);
    let flags = orig[l4 + 13];
    let mut joined = Vec::new();
    for (k, s) in segs.iter().enumerate() {
        let last = k + 1 == segs.len();
        assert!(s.len() <= l4 + thl + gso);
        assert_eq!(usize::from(be16(s, 4)), s.len() - 40, "payload length of {k}");
        // Headers other than length, seq, flags and checksum are copied.
        assert_eq!(s[..4], orig[..4]);
        assert_eq!(s[6..l4 + 4], orig[6..l4 + 4]);
        assert_eq!(s[l4 + 8..l4 + 13], orig[l4 + 8..l4 + 13]);
        assert_eq!(s[l4 + 14..l4 + 16], orig[l4 + 14..l4 + 16]);
        assert_eq!(s[l4 + 18..l4 + thl], orig[l4 + 18..l4 + thl]);
        assert_eq!(be32(s, l4 + 4), seq0.wrapping_add((k * gso) as u32), "seq of {k}");
        let f = s[l4 + 13];
        let mut want = flags;
        if !last {
            want &= !(FIN | PSH);
        }
        if k > 0 {
            want &= !CWR;
        }
        assert_eq!(f, want, "flags of {k}");
        assert!(checksum_ok(s), "checksum of {k}");
        if !last {
            assert_eq!(s.len() - l4 - thl, gso);
        }
        joined.extend_from_slice(&s[l4 + thl..]);
    }
    assert_eq!(joined, data);
}

#[test]
fn tso_64000_bytes() {
    let orig = tcp(1000, 0xffff_0000, ACK | PSH | FIN | CWR, &TS_OPTION, &payload(64_000, 5));
    let mut p = orig.clone();
    make_partial(&mut p, 40, 16, 6);
    let mut hdr = tso_header(1208, 40);
    hdr.gso_type |= VnetHeader::GSO_ECN;
    let s = Segments::new(&hdr, &p).unwrap();
    assert_eq!(s.count(), 53);
    assert_eq!(s.max_len(), 40 + 32 + 1208);
    let segs = segment_all(&hdr, &p).unwrap();
    check_tcp_segments(&orig, 40, 1208, &segs);
    assert_eq!(segs[0][53], ACK | CWR);
    assert_eq!(segs[1][53], ACK);
    assert_eq!(segs[52][53], ACK | PSH | FIN);
    assert_eq!(segs[52].len(), 72 + 64_000 - 52 * 1208);

    // Without NEEDS_CSUM the checksum comes from the addresses: same segments.
    let plain = VnetHeader { flags: 0, csum_start: 0, csum_offset: 0, ..hdr };
    assert_eq!(segment_all(&plain, &orig).unwrap(), segs);
}

#[test]
fn tso_small_packet_yields_one_completed_packet() {
    for n in [0, 1, 1208] {
        let orig = tcp(1000, 9, ACK | PSH | FIN, &[], &payload(n, 5));
        let mut p = orig.clone();
        make_partial(&mut p, 40, 16, 6);
        assert_eq!(segment_all(&tso_header(1208, 40), &p).unwrap(), vec![orig], "payload {n}");
    }
}

/// `pkt` with an 8-byte hop-by-hop options header (one PadN option) after the fixed header.
fn with_hop_by_hop(pkt: &[u8]) -> Vec<u8> {
    let mut v = pkt[..40].to_vec();
    v[6] = 0;
    v.extend_from_slice(&[pkt[6], 0, 1, 4, 0, 0, 0, 0]);
    v.extend_from_slice(&pkt[40..]);
    let pl = (v.len() - 40) as u16;
    v[4..6].copy_from_slice(&pl.to_be_bytes());
    v
}

#[test]
fn tso_after_an_extension_header() {
    let orig = with_hop_by_hop(&tcp(1000, 1, ACK | PSH, &TS_OPTION, &payload(5000, 2)));
    assert!(checksum_ok(&orig));
    let mut p = orig.clone();
    make_partial(&mut p, 48, 16, 6);
    let segs = segment_all(&tso_header(1000, 48), &p).unwrap();
    assert_eq!(segs.len(), 5);
    check_tcp_segments(&orig, 48, 1000, &segs);
    for s in &segs {
        assert_eq!(s[40..48], orig[40..48]);
    }
    // csum_start at 40 does not match the chain (the hop-by-hop header is there).
    assert_eq!(Segments::new(&tso_header(1000, 40), &p).err(), Some(OffloadError::NotTcp));
    assert_eq!(Segments::new(&tso_header(1000, 56), &p).err(), Some(OffloadError::BadOffsets));
    // Without NEEDS_CSUM the TCP header must follow the fixed header.
    let plain = VnetHeader { flags: 0, ..tso_header(1000, 48) };
    assert_eq!(Segments::new(&plain, &orig).err(), Some(OffloadError::NotTcp));
}

#[test]
fn uso_segments() {
    let data = payload(3000, 4);
    let orig = udp(&data);
    let mut p = orig.clone();
    make_partial(&mut p, 40, 6, 17);
    let hdr = VnetHeader {
        flags: VnetHeader::F_NEEDS_CSUM,
        gso_type: VnetHeader::GSO_UDP_L4,
        hdr_len: 48,
        gso_size: 1200,
        csum_start: 40,
        csum_offset: 6,
    };
    let segs = segment_all(&hdr, &p).unwrap();
    assert_eq!(segs.len(), 3);
    let mut joined = Vec::new();
    for (k, s) in segs.iter().enumerate() {
        assert_eq!(s.len(), 48 + if k < 2 { 1200 } else { 600 });
        assert_eq!(usize::from(be16(s, 4)), s.len() - 40);
        assert_eq!(usize::from(be16(s, 44)), s.len() - 40, "UDP length");
        assert_eq!(s[40..44], orig[40..44], "ports");
        assert!(checksum_ok(s), "checksum of {k}");
        joined.extend_from_slice(&s[48..]);
        // The same as a UDP packet built from scratch.
        assert_eq!(*s, udp(&s[48..]));
    }
    assert_eq!(joined, data);
    let wrong = VnetHeader { csum_offset: 16, ..hdr };
    assert_eq!(Segments::new(&wrong, &p).err(), Some(OffloadError::BadOffsets));
}

#[test]
fn errors_not_panics() {
    let orig = tcp(1000, 1, ACK, &TS_OPTION, &payload(3000, 2));
    let mut p = orig.clone();
    make_partial(&mut p, 40, 16, 6);
    let hdr = tso_header(1208, 40);
    let err = |h: &VnetHeader, pkt: &[u8]| Segments::new(h, pkt).err();

    assert_eq!(err(&tso_header(1208, p.len()), &p), Some(OffloadError::BadOffsets));
    assert_eq!(err(&tso_header(0, 40), &p), Some(OffloadError::BadGsoSize));
    assert_eq!(err(&tso_header(65_535, 40), &p), Some(OffloadError::BadGsoSize));
    let mut v4 = p.clone();
    v4[0] = 0x45;
    assert_eq!(err(&hdr, &v4), Some(OffloadError::NotIpv6));
    assert_eq!(err(&hdr, &p[..p.len() - 1]), Some(OffloadError::BadLength));
    assert_eq!(err(&hdr, &p[..30]), Some(OffloadError::TooShort));
    let mut short = p[..50].to_vec();
    short[4..6].copy_from_slice(&10u16.to_be_bytes());
    let plain = VnetHeader { flags: 0, ..hdr };
    assert_eq!(err(&plain, &short), Some(OffloadError::TooShort));
    let mut doff = p.clone();
    doff[52] = 0x40;
    assert_eq!(err(&hdr, &doff), Some(OffloadError::BadTcpHeader));
    doff[52] = 0xf0;
    let mut tiny = doff[..70].to_vec();
    tiny[4..6].copy_from_slice(&30u16.to_be_bytes());
    assert_eq!(err(&hdr, &tiny), Some(OffloadError::BadTcpHeader));
    let mut nt = p.clone();
    nt[6] = 17;
    assert_eq!(err(&hdr, &nt), Some(OffloadError::NotTcp));
    for t in [VnetHeader::GSO_TCPV4, VnetHeader::GSO_UDP, 2, 6, 0x7f, 0x81, 0x85] {
        assert_eq!(err(&VnetHeader { gso_type: t, ..hdr }, &p), Some(OffloadError::UnsupportedGso), "{t}");
    }
    let uso = VnetHeader { gso_type: VnetHeader::GSO_UDP_L4, csum_offset: 6, ..hdr };
    assert_eq!(err(&uso, &p), Some(OffloadError::NotUdp));
    // All have a reason.
    assert_eq!(OffloadError::BadGsoSize.reason(), "bad_gso_size");
}

#[test]
fn short_output_buffer_gives_none_and_consumes_nothing() {
    let mut p = tcp(1000, 1, ACK, &[], &payload(3000, 2));
    make_partial(&mut p, 40, 16, 6);
    let mut s = Segments::new(&tso_header(1000, 40), &p).unwrap();
    let mut small = vec![0u8; s.max_len() - 1];
    assert_eq!(s.next_into(&mut small), None);
    let mut big = vec![0u8; s.max_len()];
    assert_eq!(s.next_into(&mut big), Some(1060));
    assert_eq!(s.next_into(&mut big), Some(1060));
    assert_eq!(s.next_into(&mut big), Some(1060));
    assert_eq!(s.next_into(&mut big), None);
}

fn arb_header() -> impl Strategy<Value = VnetHeader> {
    (any::<u8>(), prop_oneof![Just(0u8), Just(4), Just(0x84), Just(5), any::<u8>()], any::<u16>(), 0u16..2000)
        .prop_flat_map(|(flags, gso_type, hdr_len, gso_size)| {
            (prop_oneof![Just(40u16), 0u16..200], prop_oneof![Just(16u16), Just(6), any::<u16>()]).prop_map(
                move |(csum_start, csum_offset)| VnetHeader {
                    flags,
                    gso_type,
                    hdr_len,
                    gso_size,
                    csum_start,
                    csum_offset,
                },
            )
        })
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(hdr in arb_header(), bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        if let Ok(segs) = segment_all(&hdr, &bytes) {
            prop_assert!(!segs.is_empty());
        }
        let mut b = bytes.clone();
        let _ = complete_checksum(&hdr, &mut b);
        let mut framed = hdr.to_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        crate::fuzz::offload(&framed);
    }

    #[test]
    fn mutated_tcp_super_packets_never_panic(
        hdr in arb_header(),
        n in 0usize..5000,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut p = tcp(1000, 1, ACK, &TS_OPTION, &payload(n, 1));
        make_partial(&mut p, 40, 16, 6);
        let i = at.index(p.len());
        p[i] = byte;
        let c = cut.index(p.len() + 1);
        let _ = segment_all(&hdr, &p[..c]);
        let mut framed = hdr.to_bytes().to_vec();
        framed.extend_from_slice(&p[..c]);
        crate::fuzz::offload(&framed);
    }

    #[test]
    fn tso_segments_are_valid(
        n in 0usize..9000,
        gso in 1u16..1500,
        opts in 0usize..10,
        seq in any::<u32>(),
        flags in prop_oneof![Just(ACK), Just(ACK | PSH), Just(ACK | PSH | FIN | CWR), Just(ACK | FIN)],
        partial in any::<bool>(),
    ) {
        let orig = tcp(1000, seq, flags, &vec![1u8; opts * 4], &payload(n, 7));
        let mut p = orig.clone();
        let mut hdr = tso_header(gso, 40);
        if partial {
            make_partial(&mut p, 40, 16, 6);
        } else {
            hdr.flags = 0;
        }
        let segs = segment_all(&hdr, &p).unwrap();
        check_tcp_segments(&orig, 40, usize::from(gso), &segs);
    }
}

/// Every packet of `p` as [`SegmentPlan::next_headers_into`] gives it: its headers, then
/// its payload taken from `p` where the range says.
fn gathered_all(hdr: &VnetHeader, p: &[u8]) -> Vec<Vec<u8>> {
    let mut plan = Segments::new(hdr, p).unwrap().into_plan();
    let mut out = vec![0u8; 65_536];
    let mut v = Vec::new();
    while let Some((n, payload)) = plan.next_headers_into(p, &mut out) {
        let mut s = out[..n].to_vec();
        s.extend_from_slice(&p[payload]);
        v.push(s);
    }
    v
}

#[test]
fn plan_needs_its_own_packet_and_gathers_only_segments() {
    let orig = tcp(1000, 1, ACK, &TS_OPTION, &payload(3000, 2));
    let hdr = VnetHeader { flags: 0, ..tso_header(1000, 40) };
    let mut plan = Segments::new(&hdr, &orig).unwrap().into_plan();
    let mut out = vec![0u8; 4000];
    assert_eq!(plan.next_headers_into(&orig[..orig.len() - 1], &mut out), None, "another length");
    assert_eq!(plan.next_into(&orig[..orig.len() - 1], &mut out), None, "another length");
    assert_eq!(plan.next_headers_into(&orig, &mut out[..71]), None, "no room for the headers");
    assert_eq!(plan.next_headers_into(&orig, &mut out), Some((72, 72..1072)), "nothing consumed before");
    // An ordinary packet is not gathered: it leaves whole.
    let none = VnetHeader::default();
    let mut whole = Segments::new(&none, &orig).unwrap().into_plan();
    assert_eq!(whole.next_headers_into(&orig, &mut out), None);
    assert_eq!(whole.next_into(&orig, &mut out[..orig.len()]), Some(orig.len()));
}

proptest! {
    #[test]
    fn gathered_segments_are_the_copied_ones(
        n in 0usize..9000,
        gso in 1u16..1500,
        udp_packet in any::<bool>(),
        partial in any::<bool>(),
        seq in any::<u32>(),
    ) {
        let (mut p, hdr) = if udp_packet {
            let hdr = VnetHeader {
                flags: VnetHeader::F_NEEDS_CSUM,
                gso_type: VnetHeader::GSO_UDP_L4,
                hdr_len: 48,
                gso_size: gso,
                csum_start: 40,
                csum_offset: 6,
            };
            (udp(&payload(n, 3)), hdr)
        } else {
            (tcp(1000, seq, ACK | PSH | FIN, &TS_OPTION, &payload(n, 7)), tso_header(gso, 40))
        };
        let hdr = if partial {
            let (off, proto) = if udp_packet { (6, 17) } else { (16, 6) };
            make_partial(&mut p, 40, off, proto);
            hdr
        } else {
            VnetHeader { flags: 0, csum_start: 0, csum_offset: 0, ..hdr }
        };
        prop_assert_eq!(gathered_all(&hdr, &p), segment_all(&hdr, &p).unwrap());
    }
}
