//! Test helpers for the offload modules: TCP and UDP packets built and checked with
//! etherparse, so that our checksums are compared with an independent implementation,
//! and the partial checksums Linux would hand us.

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpHeader, TransportSlice};

use super::{addresses, folded};
use crate::checksum::Checksum;

pub(crate) const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub(crate) const DST: [u8; 16] =
    [0x20, 0x01, 0, 0, 0xc0, 0, 0x02, 0x01, 0x3c, 0xff, 0x63, 0xbf, 0x3f, 0xff, 0xfd, 0xd2];
pub(crate) const ACK_NO: u32 = 0x1234_5678;
pub(crate) const WINDOW: u16 = 501;

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;
pub(crate) const CWR: u8 = 0x80;

/// A 12-byte timestamp option block (NOP, NOP, TS).
pub(crate) const TS_OPTION: [u8; 12] = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];

/// A TCP/IPv6 packet from `SRC` port `sport` to `DST` port 443 with a valid checksum.
pub(crate) fn tcp(sport: u16, seq: u32, flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut h = TcpHeader::new(sport, 443, seq, WINDOW);
    h.fin = flags & FIN != 0;
    h.syn = flags & SYN != 0;
    h.rst = flags & RST != 0;
    h.psh = flags & PSH != 0;
    h.ack = flags & ACK != 0;
    h.urg = flags & 0x20 != 0;
    h.ece = flags & 0x40 != 0;
    h.cwr = flags & CWR != 0;
    h.acknowledgment_number = if h.ack { ACK_NO } else { 0 };
    h.set_options_raw(opts).unwrap();
    let mut v = Vec::new();
    PacketBuilder::ipv6(SRC, DST, 64).tcp_header(h).write(&mut v, payload).unwrap();
    v
}

/// A UDP/IPv6 packet from `SRC` port 5000 to `DST` port 53 with a valid checksum.
pub(crate) fn udp(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(SRC, DST, 64).udp(5000, 53).write(&mut v, payload).unwrap();
    v
}

/// Payload bytes that differ from one offset to the next.
pub(crate) fn payload(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt).wrapping_add((i >> 8) as u8)).collect()
}

/// Replaces the checksum at `l4 + csum_offset` by the folded pseudo-header sum, as Linux
/// leaves it for `CHECKSUM_PARTIAL` (the addresses are those of the fixed header).
pub(crate) fn make_partial(pkt: &mut [u8], l4: usize, csum_offset: usize, proto: u8) {
    let (src, dst) = addresses(pkt);
    let mut c = Checksum::new();
    c.add_pseudo_header(&src, &dst, (pkt.len() - l4) as u32, proto);
    pkt[l4 + csum_offset..l4 + csum_offset + 2].copy_from_slice(&folded(&c).to_be_bytes());
}

/// The transport checksum etherparse computes for `pkt`, and the one stored in it.
pub(crate) fn checksums(pkt: &[u8]) -> (u16, u16) {
    let s = SlicedPacket::from_ip(pkt).expect("etherparse parses the packet");
    let Some(NetSlice::Ipv6(ip)) = &s.net else { panic!("not IPv6") };
    let (src, dst) = (ip.header().source(), ip.header().destination());
    match s.transport.expect("a transport header") {
        TransportSlice::Tcp(t) => (t.calc_checksum_ipv6(src, dst).unwrap(), t.checksum()),
        TransportSlice::Udp(u) => {
            (u.to_header().calc_checksum_ipv6_raw(src, dst, u.payload()).unwrap(), u.checksum())
        }
        _ => panic!("neither TCP nor UDP"),
    }
}

/// Whether etherparse finds the transport checksum of `pkt` right.
pub(crate) fn checksum_ok(pkt: &[u8]) -> bool {
    let (want, have) = checksums(pkt);
    want == have
}

/// Every packet [`super::Segments`] produces for `pkt`, checking `count` and `max_len`.
pub(crate) fn segment_all(hdr: &super::VnetHeader, pkt: &[u8]) -> Result<Vec<Vec<u8>>, super::OffloadError> {
    let mut s = super::Segments::new(hdr, pkt)?;
    let (count, max_len) = (s.count(), s.max_len());
    let mut buf = vec![0u8; max_len];
    let mut out = Vec::new();
    while let Some(n) = s.next_into(&mut buf) {
        assert!(n <= max_len);
        out.push(buf[..n].to_vec());
    }
    assert_eq!(out.len(), count);
    Ok(out)
}
