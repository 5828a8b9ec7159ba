//! TUN offload, sans-IO: the `virtio_net_hdr` that a Linux TUN device opened with
//! `IFF_VNET_HDR` puts in front of every packet, the segmentation of the TCP (and UDP) GSO
//! super-packets it hands us on read, and the coalescing of the TCP segments we write into
//! such super-packets.
//!
//! With `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO6)` the kernel may give us, in one read, a
//! TCP/IPv6 packet of up to 64 KiB with a partial checksum; each Teredo datagram can carry
//! only one ordinary packet, so [`Segments`] cuts it up exactly as Linux's
//! `tcp_gso_segment`/`ipv6_gso_segment` would (RFC 9293 §3.1 segments, RFC 8200 §8.1
//! pseudo-header, RFC 1071 checksums). In the other direction, the packets decapsulated in
//! one receive burst are offered to a [`Coalescer`], which joins consecutive segments of a
//! flow into one `VIRTIO_NET_HDR_GSO_TCPV6` packet as Linux's `tcp_gro_receive` (and
//! wireguard-go's `tcpGRO`) would, so that the kernel handles 64 KiB per write.
//!
//! - [`vnet`]: the header itself (Linux `include/uapi/linux/virtio_net.h`);
//! - [`segment`]: checksum completion and segmentation of what we read;
//! - [`coalesce`]: coalescing of what we write.
//!
//! Nothing here allocates per packet, and no input, however malformed, makes it panic.

pub mod coalesce;
pub mod segment;
pub mod vnet;

pub use coalesce::{CoalesceStats, Coalescer};
pub use segment::{SegmentPlan, Segments, complete_checksum};
pub use vnet::{VNET_HDR_LEN, VnetHeader};

use std::net::Ipv6Addr;

use crate::checksum::Checksum;

/// Next header value of TCP (RFC 9293 §3.1).
pub const NEXT_HEADER_TCP: u8 = 6;
/// Next header value of UDP (RFC 768).
pub const NEXT_HEADER_UDP: u8 = 17;

/// Size of the IPv6 fixed header (RFC 8200 §3).
const IPV6_LEN: usize = crate::wire::ipv6::HEADER_LEN;
/// Size of a TCP header without options (RFC 9293 §3.1).
const TCP_MIN_LEN: usize = 20;
/// Size of the UDP header (RFC 768).
const UDP_LEN: usize = 8;
/// Offset of the checksum in the TCP header.
const TCP_CSUM_OFFSET: usize = 16;
/// Offset of the checksum in the UDP header.
const UDP_CSUM_OFFSET: usize = 6;

/// The TCP flag bits we act on, in the 14th byte of the header (RFC 9293 §3.1, RFC 3168
/// §6.1); every other bit (SYN, RST, URG, ECE) keeps a segment out of a super-packet.
mod tcp_flags {
    pub(super) const FIN: u8 = 0x01;
    pub(super) const PSH: u8 = 0x08;
    pub(super) const ACK: u8 = 0x10;
    pub(super) const CWR: u8 = 0x80;
}

/// Why a packet read from the TUN cannot be turned into ordinary packets. A small fixed
/// set, meant to index drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum OffloadError {
    /// The packet is shorter than the headers it announces (IPv6, extension, TCP or UDP).
    #[error("packet shorter than its headers")]
    TooShort,
    /// The IP version is not 6.
    #[error("not an IPv6 packet")]
    NotIpv6,
    /// The IPv6 payload length does not match the packet's length.
    #[error("IPv6 payload length does not match the packet")]
    BadLength,
    /// `csum_start`/`csum_offset` point outside the packet, or not at the checksum of the
    /// transport header that the IPv6 header chain leads to.
    #[error("checksum offsets outside the packet or inconsistent with its headers")]
    BadOffsets,
    /// A TCP GSO packet whose transport protocol is not TCP.
    #[error("TCP segmentation of a packet that is not TCP")]
    NotTcp,
    /// A UDP GSO packet whose transport protocol is not UDP.
    #[error("UDP segmentation of a packet that is not UDP")]
    NotUdp,
    /// The TCP data offset is below 5 words or runs past the packet.
    #[error("bad TCP data offset")]
    BadTcpHeader,
    /// `gso_size` is 0, or one segment would not fit in an IPv6 packet.
    #[error("bad GSO segment size")]
    BadGsoSize,
    /// A GSO type we do not segment (IPv4, UFO, or unknown).
    #[error("unsupported GSO type")]
    UnsupportedGso,
}

impl OffloadError {
    /// A short fixed name, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::NotIpv6 => "not_ipv6",
            Self::BadLength => "bad_length",
            Self::BadOffsets => "bad_offsets",
            Self::NotTcp => "not_tcp",
            Self::NotUdp => "not_udp",
            Self::BadTcpHeader => "bad_tcp_header",
            Self::BadGsoSize => "bad_gso_size",
            Self::UnsupportedGso => "unsupported_gso",
        }
    }
}

/// Reads the big-endian `u16` at `at`; the caller has checked the bounds.
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads the big-endian `u32` at `at`; the caller has checked the bounds.
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The source and destination addresses of an IPv6 header of at least 40 bytes.
fn addresses(ip: &[u8]) -> (Ipv6Addr, Ipv6Addr) {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    (src.into(), dst.into())
}

/// The folded one's-complement sum, not complemented, as a number (store it with
/// `to_be_bytes`): what Linux leaves in the checksum field of a `CHECKSUM_PARTIAL` packet
/// when `c` holds the pseudo-header (RFC 8200 §8.1).
fn folded(c: &Checksum) -> u16 {
    !c.finish()
}

#[cfg(test)]
pub(crate) mod testutil;
