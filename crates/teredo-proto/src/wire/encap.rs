//! The Teredo encapsulation of RFC 4380 §5.1.1: what a UDP datagram on a Teredo port
//! carries.
//!
//! ```text
//! +----------------+--------+-------------+-------------------+
//! | Authentication | Origin | IPv6 packet | Trailers (6081 §4)|
//! +----------------+--------+-------------+-------------------+
//!   optional         optional               optional
//! ```
//!
//! The authentication encapsulation starts with 0x00 0x01, the origin indication with
//! 0x00 0x00, the IPv6 packet with a version nibble of 6; when both headers are present
//! the authentication comes first (RFC 4380 §5.1.1). Since RFC 6081 §4 the IPv6 packet
//! may be shorter than the rest of the datagram; the bytes after it are trailers.

use std::net::Ipv4Addr;

use super::icmpv6;
use super::ipv6::{self, Ipv6Packet};
use super::trailer::Trailers;
use super::{BufferTooSmall, Malformed, take};

/// The authentication encapsulation (RFC 4380 §5.1.1, §5.2.2): client identifier,
/// authentication value, nonce and confirmation byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authentication<'a> {
    /// The client identifier (ID-len bytes; empty without secure qualification).
    pub client_id: &'a [u8],
    /// The authentication value (AU-len bytes; empty without secure qualification).
    pub auth_value: &'a [u8],
    /// The 8-byte nonce a client puts in its RS and the server echoes in its RA.
    pub nonce: [u8; 8],
    /// The confirmation byte: 0 when the server accepts the client's credentials.
    pub confirmation: u8,
}

impl<'a> Authentication<'a> {
    /// An authentication header with no client identifier or value (the only kind in use:
    /// servers do not require secure qualification).
    pub fn with_nonce(nonce: [u8; 8]) -> Self {
        Self { client_id: &[], auth_value: &[], nonce, confirmation: 0 }
    }

    /// The encoded length: 4 + ID-len + AU-len + 8 + 1.
    pub fn wire_len(&self) -> usize {
        13 + self.client_id.len() + self.auth_value.len()
    }

    /// Parses an authentication header at the start of `bytes` (which must start with
    /// 0x00 0x01); returns it and its length.
    pub fn parse(bytes: &'a [u8]) -> Result<(Self, usize), Malformed> {
        let [0, 1, id_len, au_len, ..] = *bytes else {
            return Err(Malformed::TruncatedAuthentication);
        };
        let id_end = 4 + usize::from(id_len);
        let au_end = id_end + usize::from(au_len);
        let len = au_end + 9;
        let b = bytes.get(..len).ok_or(Malformed::TruncatedAuthentication)?;
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&b[au_end..au_end + 8]);
        let auth = Self {
            client_id: &b[4..id_end],
            auth_value: &b[id_end..au_end],
            nonce,
            confirmation: b[au_end + 8],
        };
        Ok((auth, len))
    }

    /// Writes the header into `buf`; returns its length. Identifier and value longer than
    /// 255 bytes cannot be encoded and are refused as [`BufferTooSmall`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let id_len = u8::try_from(self.client_id.len()).map_err(|_| BufferTooSmall)?;
        let au_len = u8::try_from(self.auth_value.len()).map_err(|_| BufferTooSmall)?;
        let len = self.wire_len();
        let b = take(buf, len)?;
        b[..4].copy_from_slice(&[0, 1, id_len, au_len]);
        let id_end = 4 + self.client_id.len();
        let au_end = id_end + self.auth_value.len();
        b[4..id_end].copy_from_slice(self.client_id);
        b[id_end..au_end].copy_from_slice(self.auth_value);
        b[au_end..au_end + 8].copy_from_slice(&self.nonce);
        b[au_end + 8] = self.confirmation;
        Ok(len)
    }
}

/// The origin indication (RFC 4380 §5.1.1): the IPv4 address and UDP port a server saw a
/// packet come from. Stored in clear; obfuscated on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OriginIndication {
    /// The origin IPv4 address.
    pub addr: Ipv4Addr,
    /// The origin UDP port.
    pub port: u16,
}

impl OriginIndication {
    /// The encoded length.
    pub const LEN: usize = 8;

    /// Parses an origin indication at the start of `bytes` (which must start with
    /// 0x00 0x00).
    pub fn parse(bytes: &[u8]) -> Result<Self, Malformed> {
        let [0, 0, p0, p1, a0, a1, a2, a3, ..] = *bytes else {
            return Err(Malformed::TruncatedOrigin);
        };
        Ok(Self {
            port: !u16::from_be_bytes([p0, p1]),
            addr: Ipv4Addr::from(!u32::from_be_bytes([a0, a1, a2, a3])),
        })
    }

    /// Writes the 8 bytes into `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let b = take(buf, Self::LEN)?;
        b[..2].copy_from_slice(&[0, 0]);
        b[2..4].copy_from_slice(&(!self.port).to_be_bytes());
        b[4..8].copy_from_slice(&(!u32::from(self.addr)).to_be_bytes());
        Ok(Self::LEN)
    }
}

/// What a Teredo packet is, as the roles need to tell (RFC 4380 §5.2.3, §5.3.1, §5.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// A bubble: no payload, next header 59.
    Bubble,
    /// An ICMPv6 router solicitation.
    RouterSolicitation,
    /// An ICMPv6 router advertisement.
    RouterAdvertisement,
    /// An ICMPv6 echo request (a direct IPv6 connectivity test, RFC 4380 §5.2.9).
    EchoRequest,
    /// An ICMPv6 echo reply.
    EchoReply,
    /// Any other ICMPv6 message.
    OtherIcmpv6,
    /// Anything else: data.
    Data,
}

/// A parsed Teredo datagram. Borrowed from the receive buffer; building it copies nothing.
#[derive(Debug, Clone, Copy)]
pub struct TeredoPacket<'a> {
    /// The authentication encapsulation, if present.
    pub auth: Option<Authentication<'a>>,
    /// The origin indication, if present.
    pub origin: Option<OriginIndication>,
    /// The IPv6 packet.
    pub ipv6: Ipv6Packet<'a>,
    /// The RFC 6081 trailers after the IPv6 packet (possibly none).
    pub trailers: Trailers<'a>,
}

impl<'a> TeredoPacket<'a> {
    /// Parses a UDP payload received on a Teredo socket.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, Malformed> {
        let mut rest = datagram;
        let mut auth = None;
        let mut origin = None;
        loop {
            match *rest {
                [0, 1, ..] => {
                    if auth.is_some() || origin.is_some() {
                        return Err(Malformed::MisplacedHeader);
                    }
                    let (a, len) = Authentication::parse(rest)?;
                    auth = Some(a);
                    rest = &rest[len..];
                }
                [0, 0, ..] => {
                    if origin.is_some() {
                        return Err(Malformed::MisplacedHeader);
                    }
                    origin = Some(OriginIndication::parse(rest)?);
                    rest = &rest[OriginIndication::LEN..];
                }
                [] | [_] => return Err(Malformed::TooShort),
                _ => break,
            }
        }
        let (ipv6, trailers) = Ipv6Packet::parse(rest)?;
        Ok(Self { auth, origin, ipv6, trailers: Trailers::new(trailers) })
    }

    /// Classifies the packet by its IPv6 and ICMPv6 headers, without checking the ICMPv6
    /// body or checksum.
    pub fn kind(&self) -> PacketKind {
        let h = self.ipv6.header();
        if self.ipv6.is_bubble() {
            return PacketKind::Bubble;
        }
        if h.next_header != ipv6::NEXT_HEADER_ICMPV6 {
            return PacketKind::Data;
        }
        match self.ipv6.payload().first() {
            Some(&icmpv6::ROUTER_SOLICITATION) => PacketKind::RouterSolicitation,
            Some(&icmpv6::ROUTER_ADVERTISEMENT) => PacketKind::RouterAdvertisement,
            Some(&icmpv6::ECHO_REQUEST) => PacketKind::EchoRequest,
            Some(&icmpv6::ECHO_REPLY) => PacketKind::EchoReply,
            _ => PacketKind::OtherIcmpv6,
        }
    }
}

/// Writes the optional authentication header and origin indication that precede the IPv6
/// packet; returns the number of bytes written. The caller then writes the IPv6 packet
/// (and any trailers) after them.
pub fn emit_headers(
    buf: &mut [u8],
    auth: Option<&Authentication<'_>>,
    origin: Option<&OriginIndication>,
) -> Result<usize, BufferTooSmall> {
    let mut n = 0;
    if let Some(a) = auth {
        n += a.emit(buf)?;
    }
    if let Some(o) = origin {
        n += o.emit(buf.get_mut(n..).ok_or(BufferTooSmall)?)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rfc_example() {
        // RFC 4380 §5.1.1: port 337 and 1.2.3.4 give 0000FEAEFEFDFCFB.
        let o = OriginIndication { addr: Ipv4Addr::new(1, 2, 3, 4), port: 337 };
        let mut b = [0u8; 8];
        o.emit(&mut b).unwrap();
        assert_eq!(b, [0x00, 0x00, 0xfe, 0xae, 0xfe, 0xfd, 0xfc, 0xfb]);
        assert_eq!(OriginIndication::parse(&b), Ok(o));
    }

    #[test]
    fn header_order() {
        let mut b = [0u8; 100];
        let o = OriginIndication { addr: Ipv4Addr::new(1, 2, 3, 4), port: 337 };
        let a = Authentication::with_nonce([1; 8]);
        // origin then auth is refused
        let n = o.emit(&mut b).unwrap();
        let m = a.emit(&mut b[n..]).unwrap();
        ipv6::emit_bubble(&mut b[n + m..], "::1".parse().unwrap(), "::2".parse().unwrap(), 0).unwrap();
        assert_eq!(TeredoPacket::parse(&b[..n + m + 40]).unwrap_err(), Malformed::MisplacedHeader);
        // auth then origin is right
        let n = emit_headers(&mut b, Some(&a), Some(&o)).unwrap();
        assert_eq!(n, 21);
        ipv6::emit_bubble(&mut b[n..], "::1".parse().unwrap(), "::2".parse().unwrap(), 0).unwrap();
        let p = TeredoPacket::parse(&b[..n + 40]).unwrap();
        assert_eq!(p.auth, Some(a));
        assert_eq!(p.origin, Some(o));
        assert_eq!(p.kind(), PacketKind::Bubble);
    }

    #[test]
    fn truncations() {
        assert_eq!(TeredoPacket::parse(&[]).unwrap_err(), Malformed::TooShort);
        assert_eq!(TeredoPacket::parse(&[0]).unwrap_err(), Malformed::TooShort);
        assert_eq!(TeredoPacket::parse(&[0, 1, 5, 5, 0]).unwrap_err(), Malformed::TruncatedAuthentication);
        assert_eq!(TeredoPacket::parse(&[0, 0, 1]).unwrap_err(), Malformed::TruncatedOrigin);
        assert_eq!(TeredoPacket::parse(&[0, 2, 0, 0]).unwrap_err(), Malformed::NotIpv6);
    }
}
