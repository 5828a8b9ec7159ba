//! IPv4/UDP packets as the userland NAT sees them on its TUN device: checked without
//! trusting any field, and rewritten in place (addresses, ports and both checksums).

use std::net::{Ipv4Addr, SocketAddrV4};

/// Why a packet is not translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reject {
    /// Too short, not IPv4, or inconsistent lengths.
    Malformed,
    /// Not UDP.
    NotUdp,
    /// A fragment (the kernel reassembles before the TUN, so this is unexpected).
    Fragment,
}

/// A checked IPv4/UDP packet: its endpoints and where its UDP header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Udp4 {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// The IPv4 header's length in bytes.
    header_len: usize,
    /// The IPv4 total length (bytes after it are ignored).
    total_len: usize,
    /// The UDP length field.
    udp_len: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

impl Udp4 {
    /// Checks `pkt` (any bytes at all) and returns what the NAT needs of it.
    pub(crate) fn parse(pkt: &[u8]) -> Result<Self, Reject> {
        if pkt.len() < 20 || pkt[0] >> 4 != 4 {
            return Err(Reject::Malformed);
        }
        let header_len = usize::from(pkt[0] & 0x0f) * 4;
        let total_len = usize::from(be16(pkt, 2));
        if header_len < 20 || total_len < header_len || total_len > pkt.len() {
            return Err(Reject::Malformed);
        }
        if pkt[9] != 17 {
            return Err(Reject::NotUdp);
        }
        if be16(pkt, 6) & 0x3fff != 0 {
            return Err(Reject::Fragment);
        }
        if total_len < header_len + 8 {
            return Err(Reject::Malformed);
        }
        let udp_len = usize::from(be16(pkt, header_len + 4));
        if udp_len < 8 || udp_len > total_len - header_len {
            return Err(Reject::Malformed);
        }
        let src = SocketAddrV4::new(ip_at(pkt, 12), be16(pkt, header_len));
        let dst = SocketAddrV4::new(ip_at(pkt, 16), be16(pkt, header_len + 2));
        Ok(Self { src, dst, header_len, total_len, udp_len })
    }

    /// The packet's bytes (without anything after the IPv4 total length).
    pub(crate) fn bytes<'a>(&self, pkt: &'a [u8]) -> &'a [u8] {
        &pkt[..self.total_len]
    }

    /// Rewrites `pkt` (the buffer this was parsed from) to go from `src` to `dst`, with
    /// fresh IPv4 and UDP checksums (a UDP checksum of zero, "none", stays zero).
    pub(crate) fn rewrite(&mut self, pkt: &mut [u8], src: SocketAddrV4, dst: SocketAddrV4) {
        let h = self.header_len;
        pkt[12..16].copy_from_slice(&src.ip().octets());
        pkt[16..20].copy_from_slice(&dst.ip().octets());
        pkt[h..h + 2].copy_from_slice(&src.port().to_be_bytes());
        pkt[h + 2..h + 4].copy_from_slice(&dst.port().to_be_bytes());
        pkt[10..12].copy_from_slice(&[0, 0]);
        let ip_sum = checksum(&[&pkt[..h]]);
        pkt[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        if be16(pkt, h + 6) != 0 {
            pkt[h + 6..h + 8].copy_from_slice(&[0, 0]);
            let udp = &pkt[h..h + self.udp_len];
            let len = u16::try_from(self.udp_len).unwrap_or(u16::MAX).to_be_bytes();
            let pseudo = [&pkt[12..20], &[0, 17], &len[..]].concat();
            let mut sum = checksum(&[&pseudo, udp]);
            if sum == 0 {
                sum = 0xffff;
            }
            pkt[h + 6..h + 8].copy_from_slice(&sum.to_be_bytes());
        }
        self.src = src;
        self.dst = dst;
    }
}

/// The Internet checksum (RFC 1071) of the concatenation of `parts` (each but the last of
/// even length).
pub(crate) fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An IPv4/UDP packet from `src` to `dst` carrying `payload`, with valid checksums.
    pub(crate) fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
        p[2..4].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
        p.extend_from_slice(&src.ip().octets());
        p.extend_from_slice(&dst.ip().octets());
        p.extend_from_slice(&src.port().to_be_bytes());
        p.extend_from_slice(&dst.port().to_be_bytes());
        p.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
        p.extend_from_slice(&[0, 1]); // non-zero: rewrite computes it
        p.extend_from_slice(payload);
        let mut u = Udp4::parse(&p).unwrap();
        u.rewrite(&mut p, src, dst);
        p
    }

    fn valid_sums(p: &[u8]) -> bool {
        let h = usize::from(p[0] & 15) * 4;
        let ulen = usize::from(be16(p, h + 4));
        let len = u16::try_from(ulen).unwrap().to_be_bytes();
        let pseudo = [&p[12..20], &[0, 17], &len[..]].concat();
        checksum(&[&p[..h]]) == 0 && checksum(&[&pseudo, &p[h..h + ulen]]) == 0
    }

    #[test]
    fn rewrites_with_valid_checksums() {
        let a: SocketAddrV4 = "10.0.1.2:40000".parse().unwrap();
        let b: SocketAddrV4 = "192.0.2.1:3544".parse().unwrap();
        let c: SocketAddrV4 = "198.51.100.1:41234".parse().unwrap();
        let mut p = udp_packet(a, b, b"hello");
        assert!(valid_sums(&p));
        let mut u = Udp4::parse(&p).unwrap();
        assert_eq!((u.src, u.dst), (a, b));
        u.rewrite(&mut p, c, b);
        assert!(valid_sums(&p));
        assert_eq!(Udp4::parse(&p).unwrap().src, c);
        assert_eq!(&p[28..], b"hello");
    }

    #[test]
    fn a_zero_udp_checksum_stays_zero() {
        let a: SocketAddrV4 = "10.0.1.2:1".parse().unwrap();
        let mut p = udp_packet(a, a, b"x");
        p[26..28].copy_from_slice(&[0, 0]);
        let mut u = Udp4::parse(&p).unwrap();
        u.rewrite(&mut p, "198.51.100.1:2".parse().unwrap(), a);
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(checksum(&[&p[..20]]), 0);
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        let a: SocketAddrV4 = "10.0.1.2:1".parse().unwrap();
        let good = udp_packet(a, a, b"payload");
        assert_eq!(Udp4::parse(&[]), Err(Reject::Malformed));
        assert_eq!(Udp4::parse(&[0x60; 40]), Err(Reject::Malformed));
        for cut in 0..good.len() {
            assert!(Udp4::parse(&good[..cut]).is_err(), "truncated to {cut}");
        }
        let mut tcp = good.clone();
        tcp[9] = 6;
        assert_eq!(Udp4::parse(&tcp), Err(Reject::NotUdp));
        let mut frag = good.clone();
        frag[6] = 0x20; // more fragments
        assert_eq!(Udp4::parse(&frag), Err(Reject::Fragment));
        let mut bad_udp_len = good.clone();
        bad_udp_len[24..26].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(Udp4::parse(&bad_udp_len), Err(Reject::Malformed));
        let mut bad_ihl = good.clone();
        bad_ihl[0] = 0x4f;
        assert_eq!(Udp4::parse(&bad_ihl), Err(Reject::Malformed));
        // Pseudo-random bytes: never a panic.
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            let mut p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if len > 0 {
                p[0] = 0x45;
            }
            if let Ok(mut u) = Udp4::parse(&p) {
                u.rewrite(&mut p, a, a);
            }
        }
    }
}
