//! The IPv6 fixed header (RFC 8200 §3) as a zero-copy view, and the IPv6 packet inside a
//! Teredo datagram with the RFC 6081 §4 length rule: the packet (40 bytes plus the payload
//! length) must fit in the UDP payload, and what follows it is trailers.
//!
//! Bubbles (RFC 4380 §2.8) are IPv6 packets with payload length 0 and next header 59.

use std::net::Ipv6Addr;

use zerocopy::byteorder::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{BufferTooSmall, Malformed, take};

/// Next header value of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// Next header value "no next header", which bubbles carry.
pub const NO_NEXT_HEADER: u8 = 59;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 40;

/// The all-routers link-local multicast address, destination of a router solicitation
/// (RFC 4861 §4.1, RFC 4380 §5.2.1).
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// IPv6's minimum link MTU (RFC 8200 §5): the smallest MTU an advertisement may announce,
/// the MTU without an MTU option (RFC 4380 §5.2.1), the smallest `InterfaceMTU`.
pub const MIN_MTU: u16 = 1280;

/// The 40-byte IPv6 fixed header, in wire layout.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Ipv6Header {
    version_class_flow: [u8; 4],
    payload_len: U16,
    /// The next header (protocol) number.
    pub next_header: u8,
    /// The hop limit.
    pub hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

impl Ipv6Header {
    /// A header with version 6, traffic class and flow label zero.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, hop_limit: u8, payload_len: u16) -> Self {
        Self {
            version_class_flow: [0x60, 0, 0, 0],
            payload_len: U16::new(payload_len),
            next_header,
            hop_limit,
            src: src.octets(),
            dst: dst.octets(),
        }
    }
    /// The version field (6 for IPv6).
    pub fn version(&self) -> u8 {
        self.version_class_flow[0] >> 4
    }
    /// The payload length field.
    pub fn payload_len(&self) -> u16 {
        self.payload_len.get()
    }
    /// The source address.
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src)
    }
    /// The destination address.
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst)
    }
    /// The source address bytes.
    pub fn src_octets(&self) -> &[u8; 16] {
        &self.src
    }
    /// The destination address bytes.
    pub fn dst_octets(&self) -> &[u8; 16] {
        &self.dst
    }
}

/// An IPv6 packet: a header and exactly `payload_len` bytes of payload.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<'a> {
    header: &'a Ipv6Header,
    bytes: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    /// Parses the IPv6 packet at the start of `bytes`; returns it and the bytes after it
    /// (the RFC 6081 trailers, when it came from a Teredo datagram).
    pub fn parse(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), Malformed> {
        let Ok((header, _)) = Ipv6Header::ref_from_prefix(bytes) else {
            return Err(if bytes.first().is_some_and(|b| b >> 4 != 6) {
                Malformed::NotIpv6
            } else {
                Malformed::TruncatedIpv6
            });
        };
        if header.version() != 6 {
            return Err(Malformed::NotIpv6);
        }
        let len = HEADER_LEN + usize::from(header.payload_len());
        if bytes.len() < len {
            return Err(Malformed::BadPayloadLength);
        }
        let (packet, rest) = bytes.split_at(len);
        Ok((Self { header, bytes: packet }, rest))
    }

    /// The fixed header.
    pub fn header(&self) -> &'a Ipv6Header {
        self.header
    }
    /// The payload (after the fixed header).
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }
    /// The whole packet, header and payload.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The source address.
    pub fn src(&self) -> Ipv6Addr {
        self.header.src()
    }
    /// The destination address.
    pub fn dst(&self) -> Ipv6Addr {
        self.header.dst()
    }
    /// True for a Teredo bubble: payload length 0 and next header 59 (RFC 4380 §2.8).
    pub fn is_bubble(&self) -> bool {
        self.header.payload_len() == 0 && self.header.next_header == NO_NEXT_HEADER
    }
}

/// Writes a bubble (RFC 4380 §2.8) from `src` to `dst` into `buf`; returns 40.
pub fn emit_bubble(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
) -> Result<usize, BufferTooSmall> {
    let h = Ipv6Header::new(src, dst, NO_NEXT_HEADER, hop_limit, 0);
    take(buf, HEADER_LEN)?.copy_from_slice(h.as_bytes());
    Ok(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bubble_round_trip() {
        let mut buf = [0u8; 64];
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:0:4136:e378:8000:63bf:3fff:fdd2".parse().unwrap();
        assert_eq!(emit_bubble(&mut buf, src, dst, 0), Ok(40));
        let (p, rest) = Ipv6Packet::parse(&buf[..44]).unwrap();
        assert!(p.is_bubble());
        assert_eq!((p.src(), p.dst(), rest.len()), (src, dst, 4));
        assert_eq!(emit_bubble(&mut buf[..39], src, dst, 0), Err(BufferTooSmall));
    }

    #[test]
    fn rejects() {
        assert_eq!(Ipv6Packet::parse(&[]).unwrap_err(), Malformed::TruncatedIpv6);
        assert_eq!(Ipv6Packet::parse(&[0x45; 60]).unwrap_err(), Malformed::NotIpv6);
        let mut b = [0u8; 40];
        b[0] = 0x60;
        b[5] = 1; // payload length 1, nothing there
        assert_eq!(Ipv6Packet::parse(&b).unwrap_err(), Malformed::BadPayloadLength);
    }
}
