//! Building Ethernet/IPv4/UDP frames around a payload that is already in place.
//!
//! The headers are what the kernel's UDP path would have written for a socket with
//! IP_PMTUDISC_DONT, as Teredo wants (RFC 4380 §5.1.2: no DF bit, so that a path with a
//! smaller MTU fragments instead of dropping): IPv4 without options, TTL 64, DF clear, an
//! identification taken from one of many counters chosen by a keyed hash of the addresses
//! (Linux's `ip_idents`), the header checksum, and the UDP checksum over the
//! pseudo-header (RFC 768), never sent as zero.

use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Ethernet header: destination MAC, source MAC, EtherType.
pub(crate) const ETHERNET_LEN: usize = 14;
/// IPv4 header without options.
pub(crate) const IPV4_LEN: usize = 20;
/// UDP header.
pub(crate) const UDP_LEN: usize = 8;
/// Where the UDP payload starts in a frame.
pub(crate) const PAYLOAD_OFFSET: usize = ETHERNET_LEN + IPV4_LEN + UDP_LEN;
/// The time to live the kernel uses by default (`net.ipv4.ip_default_ttl`).
pub(crate) const TTL: u8 = 64;

const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTOCOL_UDP: u8 = 17;

/// The addresses of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Addressing {
    /// Next hop's MAC.
    pub(crate) dst_mac: [u8; 6],
    /// The sending interface's MAC.
    pub(crate) src_mac: [u8; 6],
    /// Source address and port.
    pub(crate) src: SocketAddrV4,
    /// Destination address and port.
    pub(crate) dst: SocketAddrV4,
}

/// Adds `bytes` as big-endian 16-bit words to a one's complement sum (not yet folded).
fn sum_words(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = rest.remainder() {
        sum += u64::from(*b) << 8;
    }
    sum
}

/// Folds a sum to 16 bits and complements it (RFC 1071).
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes the Ethernet, IPv4 and UDP headers in front of the `payload_len` bytes already
/// at [`PAYLOAD_OFFSET`] of `frame`; returns the frame's length. `frame` must hold
/// `PAYLOAD_OFFSET + payload_len` bytes and the payload must fit an IPv4 datagram.
pub(crate) fn write_headers(frame: &mut [u8], a: &Addressing, id: u16, payload_len: usize) -> usize {
    let total = PAYLOAD_OFFSET + payload_len;
    let ip_len = (IPV4_LEN + UDP_LEN + payload_len) as u16;
    let udp_len = (UDP_LEN + payload_len) as u16;
    let (src, dst) = (a.src.ip().octets(), a.dst.ip().octets());

    let eth = &mut frame[..ETHERNET_LEN];
    eth[0..6].copy_from_slice(&a.dst_mac);
    eth[6..12].copy_from_slice(&a.src_mac);
    eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

    let ip = &mut frame[ETHERNET_LEN..ETHERNET_LEN + IPV4_LEN];
    ip[0] = 0x45; // version 4, 5 words
    ip[1] = 0; // DSCP/ECN as an unmarked socket
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6..8].copy_from_slice(&[0, 0]); // flags: DF clear (IP_PMTUDISC_DONT); offset 0
    ip[8] = TTL;
    ip[9] = PROTOCOL_UDP;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = fold(sum_words(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());

    let udp = &mut frame[ETHERNET_LEN + IPV4_LEN..PAYLOAD_OFFSET];
    udp[0..2].copy_from_slice(&a.src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&a.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    // Pseudo-header: source, destination, zero, protocol, UDP length.
    let mut sum = sum_words(0, &src);
    sum = sum_words(sum, &dst);
    sum += u64::from(PROTOCOL_UDP) + u64::from(udp_len);
    sum = sum_words(sum, &frame[ETHERNET_LEN + IPV4_LEN..total]);
    let c = match fold(sum) {
        0 => 0xffff, // zero means "no checksum" (RFC 768)
        c => c,
    };
    frame[ETHERNET_LEN + IPV4_LEN + 6..ETHERNET_LEN + IPV4_LEN + 8].copy_from_slice(&c.to_be_bytes());
    total
}

/// Counters for the IPv4 identification field. As Linux does for datagrams without DF,
/// each (source, destination) pair draws from one of [`IpIds::COUNTERS`] counters chosen
/// by a keyed hash, starting at random values: the IDs of one destination increase, and an
/// observer cannot count the server's traffic to others from them.
pub(crate) struct IpIds {
    key: RandomState,
    counters: Box<[u16]>,
}

impl IpIds {
    /// Number of counters (a power of two).
    pub(crate) const COUNTERS: usize = 2048;

    pub(crate) fn new() -> Self {
        let key = RandomState::new();
        let seed = RandomState::new();
        let counters = (0..Self::COUNTERS).map(|i| seed.hash_one(i) as u16).collect();
        Self { key, counters }
    }

    /// The next identification for a datagram from `src` to `dst`.
    pub(crate) fn next(&mut self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let i = (self.key.hash_one((u32::from(src), u32::from(dst))) as usize) & (Self::COUNTERS - 1);
        let id = self.counters[i];
        self.counters[i] = id.wrapping_add(1);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn addressing(src_port: u16, dst_port: u16) -> Addressing {
        Addressing {
            dst_mac: [2, 0, 0, 0, 0, 0xfe],
            src_mac: [2, 0, 0, 0, 0, 1],
            src: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), src_port),
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), dst_port),
        }
    }

    fn build(a: &Addressing, id: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xaa; PAYLOAD_OFFSET + payload.len() + 10];
        frame[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload.len()].copy_from_slice(payload);
        let n = write_headers(&mut frame, a, id, payload.len());
        frame.truncate(n);
        frame
    }

    #[test]
    fn headers_parse_and_checksums_verify() {
        for len in [0usize, 1, 2, 3, 61, 120, 1472] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let a = addressing(3544, 40000 + len as u16);
            let frame = build(&a, 0x1234, &payload);
            let p = SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else { panic!("no Ethernet") };
            assert_eq!(eth.destination(), a.dst_mac);
            assert_eq!(eth.source(), a.src_mac);
            let Some(NetSlice::Ipv4(ip)) = p.net else { panic!("no IPv4") };
            let h = ip.header();
            assert_eq!(h.source_addr(), *a.src.ip());
            assert_eq!(h.destination_addr(), *a.dst.ip());
            assert_eq!(h.ttl(), TTL);
            assert!(!h.dont_fragment() && !h.more_fragments());
            assert_eq!(h.identification(), 0x1234);
            assert_eq!(usize::from(h.total_len()), IPV4_LEN + UDP_LEN + len);
            let owned = h.to_header();
            assert_eq!(owned.header_checksum, owned.calc_header_checksum(), "IPv4 checksum, len {len}");
            let Some(TransportSlice::Udp(udp)) = p.transport else { panic!("no UDP") };
            assert_eq!(udp.source_port(), 3544);
            assert_eq!(udp.destination_port(), a.dst.port());
            assert_eq!(udp.payload(), &payload[..]);
            let uh = udp.to_header();
            let want = uh.calc_checksum_ipv4_raw(a.src.ip().octets(), a.dst.ip().octets(), &payload).unwrap();
            assert_eq!(uh.checksum, want, "UDP checksum, len {len}");
            assert_ne!(uh.checksum, 0);
        }
    }

    #[test]
    fn a_zero_udp_checksum_is_sent_as_all_ones() {
        // With a zero payload word the checksum is c = !S (S: the sum of everything else);
        // the payload word c makes the sum 0xffff, whose complement is zero.
        let a = addressing(3544, 5000);
        let base = build(&a, 1, &[0, 0]);
        let word = [base[40], base[41]];
        let f = build(&a, 1, &word);
        assert_eq!([f[40], f[41]], [0xff, 0xff]);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(TransportSlice::Udp(udp)) = p.transport else { panic!("no UDP") };
        let want =
            udp.to_header().calc_checksum_ipv4_raw(a.src.ip().octets(), a.dst.ip().octets(), &word).unwrap();
        assert_eq!(want, 0xffff);
    }

    #[test]
    fn ids_increase_per_destination() {
        let mut ids = IpIds::new();
        let (s, d) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 9));
        let first = ids.next(s, d);
        for k in 1..100u16 {
            assert_eq!(ids.next(s, d), first.wrapping_add(k));
        }
    }
}
