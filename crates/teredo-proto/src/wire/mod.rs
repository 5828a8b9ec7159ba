//! Zero-copy views and builders for every packet Teredo exchanges.
//!
//! Parsing never panics and never allocates, whatever the bytes: a view is built with
//! `parse`, which checks every length it will later rely on, and reports a [`Malformed`]
//! reason that the caller counts. Builders (`emit`) write into a caller's buffer and
//! return the number of bytes written, or [`BufferTooSmall`].
//!
//! - [`ipv6`]: the IPv6 fixed header and packet (RFC 8200), bubbles (RFC 4380 §2.8);
//! - [`encap`]: the Teredo encapsulation of RFC 4380 §5.1.1 (authentication,
//!   origin indication, the IPv6 packet, and the RFC 6081 §4 trailers after it);
//! - [`trailer`]: the RFC 6081 §4 trailers;
//! - [`icmpv6`]: ICMPv6 (RFC 4443) and the neighbour-discovery messages Teredo uses
//!   (router solicitation and advertisement, RFC 4861 §4.1, §4.2, §4.6).

pub mod encap;
pub mod icmpv6;
pub mod ipv6;
pub mod trailer;

pub use encap::{Authentication, OriginIndication, PacketKind, TeredoPacket};
pub use ipv6::{Ipv6Header, Ipv6Packet};
pub use trailer::{Trailer, Trailers};

/// Why a packet was rejected. Cheap to copy; meant to index drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The UDP payload is empty or too short to hold anything.
    #[error("datagram too short")]
    TooShort,
    /// An authentication encapsulation runs past the end of the datagram.
    #[error("truncated authentication header")]
    TruncatedAuthentication,
    /// An origin indication runs past the end of the datagram.
    #[error("truncated origin indication")]
    TruncatedOrigin,
    /// An authentication header after an origin indication, or two of either.
    #[error("misplaced encapsulation header")]
    MisplacedHeader,
    /// The IPv6 version field is not 6.
    #[error("not an IPv6 packet")]
    NotIpv6,
    /// Fewer than 40 bytes of IPv6 header.
    #[error("truncated IPv6 header")]
    TruncatedIpv6,
    /// The IPv6 payload length runs past the end of the datagram (RFC 6081 §4).
    #[error("IPv6 payload length exceeds the datagram")]
    BadPayloadLength,
    /// The packet is not ICMPv6, or its ICMPv6 header is truncated.
    #[error("not a valid ICMPv6 message")]
    NotIcmpv6,
    /// An ICMPv6 message body is shorter than its type requires.
    #[error("truncated ICMPv6 message")]
    TruncatedIcmpv6,
    /// The ICMPv6 checksum does not verify.
    #[error("bad ICMPv6 checksum")]
    BadChecksum,
    /// A neighbour-discovery option has length zero or runs past the message
    /// (RFC 4861 §4.6: such a message is discarded).
    #[error("bad neighbor discovery option")]
    BadOption,
    /// A trailer type whose two high bits are 01 and that we do not know: the packet
    /// must be discarded (RFC 6081 §5.1.2).
    #[error("unknown trailer that requires discarding the packet")]
    DiscardTrailer,
}

/// A builder was given a buffer too small for what it must write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer too small")]
pub struct BufferTooSmall;

/// Returns `buf[..n]` as a mutable slice, or [`BufferTooSmall`].
pub(crate) fn take(buf: &mut [u8], n: usize) -> Result<&mut [u8], BufferTooSmall> {
    buf.get_mut(..n).ok_or(BufferTooSmall)
}
