//! ICMPv6 (RFC 4443) and the neighbour-discovery messages Teredo uses (RFC 4861):
//! router solicitations (§4.1) that clients send to their server, router advertisements
//! (§4.2) that servers answer with, their options (§4.6: source link-layer address, prefix
//! information, MTU), echo request and reply (the direct IPv6 connectivity test of RFC
//! 4380 §5.2.9), and destination unreachable (what clients and relays send back when a
//! peer cannot be reached).
//!
//! Two real-world quirks are tolerated: Windows Vista's RS carries a source link-layer
//! address option, and one server put non-zero bits beyond /64 in its prefix option
//! (ndpi-teredo.pcap); [`PrefixInformation::teredo_prefix`] reads only the first 64 bits.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ipv6::{HEADER_LEN, Ipv6Header, Ipv6Packet, NEXT_HEADER_ICMPV6};
use super::{BufferTooSmall, Malformed, take};
use crate::checksum;
use zerocopy::IntoBytes;

/// Destination unreachable (RFC 4443 §3.1).
pub const DESTINATION_UNREACHABLE: u8 = 1;
/// Echo request (RFC 4443 §4.1).
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply (RFC 4443 §4.2).
pub const ECHO_REPLY: u8 = 129;
/// Router solicitation (RFC 4861 §4.1).
pub const ROUTER_SOLICITATION: u8 = 133;
/// Router advertisement (RFC 4861 §4.2).
pub const ROUTER_ADVERTISEMENT: u8 = 134;

/// Destination unreachable code 1: communication administratively prohibited.
pub const UNREACH_ADMIN_PROHIBITED: u8 = 1;
/// Destination unreachable code 3: address unreachable.
pub const UNREACH_ADDRESS: u8 = 3;

/// Source link-layer address option type (RFC 4861 §4.6.1).
pub const OPT_SOURCE_LINK_LAYER: u8 = 1;
/// Prefix information option type (RFC 4861 §4.6.2).
pub const OPT_PREFIX_INFORMATION: u8 = 3;
/// MTU option type (RFC 4861 §4.6.4).
pub const OPT_MTU: u8 = 5;

/// The largest ICMPv6 error message: an error must fit in the minimum MTU of 1280
/// (RFC 4443 §2.4 (c)), so 1280 - 40 bytes of IPv6 header.
pub const MAX_ERROR_LEN: usize = 1280 - HEADER_LEN;

/// An ICMPv6 message: the 4-byte header and the body after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6<'a> {
    /// The type.
    pub msg_type: u8,
    /// The code.
    pub code: u8,
    /// The checksum as received.
    pub checksum: u16,
    /// The body after the 4-byte header.
    pub body: &'a [u8],
}

impl<'a> Icmpv6<'a> {
    /// The ICMPv6 message carried by `packet` (next header 58, at least 4 bytes). Extension
    /// headers are not followed: Teredo's control messages never carry them.
    pub fn parse(packet: &Ipv6Packet<'a>) -> Result<Self, Malformed> {
        if packet.header().next_header != NEXT_HEADER_ICMPV6 {
            return Err(Malformed::NotIcmpv6);
        }
        let [msg_type, code, c0, c1, ref body @ ..] = *packet.payload() else {
            return Err(Malformed::NotIcmpv6);
        };
        Ok(Self { msg_type, code, checksum: u16::from_be_bytes([c0, c1]), body })
    }

    /// True when the checksum verifies over the pseudo-header of `packet`.
    pub fn checksum_ok(packet: &Ipv6Packet<'_>) -> bool {
        checksum::icmpv6(&packet.src(), &packet.dst(), packet.payload()) == 0
    }
}

/// A prefix information option (RFC 4861 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInformation {
    /// Prefix length in bits (64 for Teredo).
    pub prefix_len: u8,
    /// The L (0x80) and A (0x40) flags.
    pub flags: u8,
    /// Valid lifetime in seconds.
    pub valid_lifetime: u32,
    /// Preferred lifetime in seconds.
    pub preferred_lifetime: u32,
    /// The prefix, as sent (bits beyond the prefix length may be junk).
    pub prefix: Ipv6Addr,
}

impl PrefixInformation {
    /// The on-link flag.
    pub const FLAG_ON_LINK: u8 = 0x80;
    /// The autonomous address-configuration flag.
    pub const FLAG_AUTONOMOUS: u8 = 0x40;

    /// The Teredo reading of the prefix (RFC 4380 §5.2.1): the 32-bit service prefix and the
    /// server IPv4 address, from the first 64 bits only.
    pub fn teredo_prefix(&self) -> (u32, Ipv4Addr) {
        let o = self.prefix.octets();
        (u32::from_be_bytes([o[0], o[1], o[2], o[3]]), Ipv4Addr::new(o[4], o[5], o[6], o[7]))
    }

    fn parse(d: &[u8]) -> Self {
        // d is the 30 bytes after type and length (checked by NdOptions::new).
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&d[14..30]);
        Self {
            prefix_len: d[0],
            flags: d[1],
            valid_lifetime: u32::from_be_bytes([d[2], d[3], d[4], d[5]]),
            preferred_lifetime: u32::from_be_bytes([d[6], d[7], d[8], d[9]]),
            prefix: Ipv6Addr::from(prefix),
        }
    }

    fn emit(&self, b: &mut [u8]) {
        b[0] = OPT_PREFIX_INFORMATION;
        b[1] = 4;
        b[2] = self.prefix_len;
        b[3] = self.flags;
        b[4..8].copy_from_slice(&self.valid_lifetime.to_be_bytes());
        b[8..12].copy_from_slice(&self.preferred_lifetime.to_be_bytes());
        b[12..16].fill(0);
        b[16..32].copy_from_slice(&self.prefix.octets());
    }
}

/// One neighbour-discovery option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdOption<'a> {
    /// Source link-layer address (its bytes, padding included).
    SourceLinkLayer(&'a [u8]),
    /// Prefix information.
    PrefixInformation(PrefixInformation),
    /// MTU.
    Mtu(u32),
    /// Any other option.
    Other {
        /// The option type.
        option_type: u8,
        /// The bytes after type and length.
        data: &'a [u8],
    },
}

/// The options of a neighbour-discovery message, checked once so that iterating over
/// them cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOptions<'a>(&'a [u8]);

impl<'a> NdOptions<'a> {
    /// Checks the option area: every option has a non-zero length that fits (RFC 4861
    /// §4.6), and prefix information and MTU options have their fixed lengths.
    pub fn new(bytes: &'a [u8]) -> Result<Self, Malformed> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let [ty, units, ..] = *rest else { return Err(Malformed::BadOption) };
            let len = usize::from(units) * 8;
            let ok = len != 0
                && len <= rest.len()
                && match ty {
                    OPT_PREFIX_INFORMATION => units == 4,
                    OPT_MTU => units == 1,
                    _ => true,
                };
            if !ok {
                return Err(Malformed::BadOption);
            }
            rest = &rest[len..];
        }
        Ok(Self(bytes))
    }

    /// The options in order.
    pub fn iter(&self) -> impl Iterator<Item = NdOption<'a>> + 'a {
        let mut rest = self.0;
        core::iter::from_fn(move || {
            let [ty, units, ..] = *rest else { return None };
            let (opt, tail) = rest.split_at_checked(usize::from(units) * 8)?;
            rest = tail;
            let d = &opt[2..];
            Some(match ty {
                OPT_SOURCE_LINK_LAYER => NdOption::SourceLinkLayer(d),
                OPT_PREFIX_INFORMATION => NdOption::PrefixInformation(PrefixInformation::parse(d)),
                OPT_MTU => NdOption::Mtu(u32::from_be_bytes([d[2], d[3], d[4], d[5]])),
                _ => NdOption::Other { option_type: ty, data: d },
            })
        })
    }
}

/// A router solicitation (RFC 4861 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterSolicitation<'a> {
    /// The options.
    pub options: NdOptions<'a>,
}

impl<'a> RouterSolicitation<'a> {
    /// The source link-layer address option, if any.
    pub fn source_link_layer(&self) -> Option<&'a [u8]> {
        self.options.iter().find_map(|o| match o {
            NdOption::SourceLinkLayer(d) => Some(d),
            _ => None,
        })
    }
}

/// A router advertisement (RFC 4861 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterAdvertisement<'a> {
    /// Current hop limit.
    pub cur_hop_limit: u8,
    /// M and O flags.
    pub flags: u8,
    /// Router lifetime in seconds (0 from Teredo servers).
    pub router_lifetime: u16,
    /// Reachable time in milliseconds.
    pub reachable_time: u32,
    /// Retransmission timer in milliseconds.
    pub retrans_timer: u32,
    /// The options.
    pub options: NdOptions<'a>,
}

impl RouterAdvertisement<'_> {
    /// The first prefix information option.
    pub fn prefix_information(&self) -> Option<PrefixInformation> {
        self.options.iter().find_map(|o| match o {
            NdOption::PrefixInformation(p) => Some(p),
            _ => None,
        })
    }
    /// How many prefix information options there are (a Teredo client accepts one).
    pub fn prefix_count(&self) -> usize {
        self.options.iter().filter(|o| matches!(o, NdOption::PrefixInformation(_))).count()
    }
    /// The first MTU option's value.
    pub fn mtu(&self) -> Option<u32> {
        self.options.iter().find_map(|o| match o {
            NdOption::Mtu(m) => Some(m),
            _ => None,
        })
    }
}

/// An echo request or reply body (RFC 4443 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo<'a> {
    /// Identifier.
    pub identifier: u16,
    /// Sequence number.
    pub sequence: u16,
    /// Data.
    pub data: &'a [u8],
}

/// A destination unreachable message (RFC 4443 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestinationUnreachable<'a> {
    /// The code.
    pub code: u8,
    /// As much of the invoking packet as fitted.
    pub invoking: &'a [u8],
}

/// The ICMPv6 messages Teredo acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Router solicitation.
    RouterSolicitation(RouterSolicitation<'a>),
    /// Router advertisement.
    RouterAdvertisement(RouterAdvertisement<'a>),
    /// Echo request.
    EchoRequest(Echo<'a>),
    /// Echo reply.
    EchoReply(Echo<'a>),
    /// Destination unreachable.
    DestinationUnreachable(DestinationUnreachable<'a>),
    /// Anything else.
    Other(Icmpv6<'a>),
}

impl<'a> Message<'a> {
    /// Parses the ICMPv6 message in `packet`. The checksum is not checked here: see
    /// [`Icmpv6::checksum_ok`].
    pub fn parse(packet: &Ipv6Packet<'a>) -> Result<Self, Malformed> {
        let icmp = Icmpv6::parse(packet)?;
        let b = icmp.body;
        Ok(match icmp.msg_type {
            ROUTER_SOLICITATION => {
                let opts = b.get(4..).ok_or(Malformed::TruncatedIcmpv6)?;
                Self::RouterSolicitation(RouterSolicitation { options: NdOptions::new(opts)? })
            }
            ROUTER_ADVERTISEMENT => {
                let [hl, fl, l0, l1, r0, r1, r2, r3, t0, t1, t2, t3, ref opts @ ..] = *b else {
                    return Err(Malformed::TruncatedIcmpv6);
                };
                Self::RouterAdvertisement(RouterAdvertisement {
                    cur_hop_limit: hl,
                    flags: fl,
                    router_lifetime: u16::from_be_bytes([l0, l1]),
                    reachable_time: u32::from_be_bytes([r0, r1, r2, r3]),
                    retrans_timer: u32::from_be_bytes([t0, t1, t2, t3]),
                    options: NdOptions::new(opts)?,
                })
            }
            ECHO_REQUEST | ECHO_REPLY => {
                let [i0, i1, s0, s1, ref data @ ..] = *b else {
                    return Err(Malformed::TruncatedIcmpv6);
                };
                let e = Echo {
                    identifier: u16::from_be_bytes([i0, i1]),
                    sequence: u16::from_be_bytes([s0, s1]),
                    data,
                };
                if icmp.msg_type == ECHO_REQUEST { Self::EchoRequest(e) } else { Self::EchoReply(e) }
            }
            DESTINATION_UNREACHABLE => {
                let invoking = b.get(4..).ok_or(Malformed::TruncatedIcmpv6)?;
                Self::DestinationUnreachable(DestinationUnreachable { code: icmp.code, invoking })
            }
            _ => Self::Other(icmp),
        })
    }
}

/// An ICMPv6 message to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    /// A router solicitation, optionally with a source link-layer address option whose
    /// data is padded with zeros to a multiple of 8 bytes.
    RouterSolicitation {
        /// The link-layer address bytes.
        source_link_layer: Option<&'a [u8]>,
    },
    /// A router advertisement with at most one prefix information and one MTU option.
    RouterAdvertisement {
        /// Current hop limit.
        cur_hop_limit: u8,
        /// M and O flags.
        flags: u8,
        /// Router lifetime.
        router_lifetime: u16,
        /// Reachable time.
        reachable_time: u32,
        /// Retransmission timer.
        retrans_timer: u32,
        /// Prefix information option.
        prefix: Option<PrefixInformation>,
        /// MTU option.
        mtu: Option<u32>,
    },
    /// An echo request.
    EchoRequest(Echo<'a>),
    /// An echo reply.
    EchoReply(Echo<'a>),
    /// A destination unreachable; the invoking packet is cut so that the whole message
    /// fits in [`MAX_ERROR_LEN`].
    DestinationUnreachable(DestinationUnreachable<'a>),
}

fn lladdr_option_len(data: &[u8]) -> usize {
    (data.len() + 2).div_ceil(8) * 8
}

impl<'a> Icmpv6Repr<'a> {
    /// The ICMPv6 message length, header included.
    pub fn len(&self) -> usize {
        4 + match self {
            Self::RouterSolicitation { source_link_layer } => {
                4 + source_link_layer.map_or(0, lladdr_option_len)
            }
            Self::RouterAdvertisement { prefix, mtu, .. } => {
                12 + if prefix.is_some() { 32 } else { 0 } + if mtu.is_some() { 8 } else { 0 }
            }
            Self::EchoRequest(e) | Self::EchoReply(e) => 4 + e.data.len(),
            Self::DestinationUnreachable(d) => (4 + d.invoking.len()).min(MAX_ERROR_LEN - 4),
        }
    }

    /// Always false: a message has at least its 4-byte header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The representation of a parsed message, when it is one this type can build.
    pub fn from_message(m: &Message<'a>) -> Option<Self> {
        Some(match *m {
            Message::RouterSolicitation(rs) => {
                Self::RouterSolicitation { source_link_layer: rs.source_link_layer() }
            }
            Message::RouterAdvertisement(ra) => Self::RouterAdvertisement {
                cur_hop_limit: ra.cur_hop_limit,
                flags: ra.flags,
                router_lifetime: ra.router_lifetime,
                reachable_time: ra.reachable_time,
                retrans_timer: ra.retrans_timer,
                prefix: ra.prefix_information(),
                mtu: ra.mtu(),
            },
            Message::EchoRequest(e) => Self::EchoRequest(e),
            Message::EchoReply(e) => Self::EchoReply(e),
            Message::DestinationUnreachable(d) => Self::DestinationUnreachable(d),
            Message::Other(_) => return None,
        })
    }

    /// Writes the ICMPv6 message with a zero checksum; returns its length.
    fn emit_message(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.len();
        let b = take(buf, len)?;
        let (ty, code) = match self {
            Self::RouterSolicitation { .. } => (ROUTER_SOLICITATION, 0),
            Self::RouterAdvertisement { .. } => (ROUTER_ADVERTISEMENT, 0),
            Self::EchoRequest(_) => (ECHO_REQUEST, 0),
            Self::EchoReply(_) => (ECHO_REPLY, 0),
            Self::DestinationUnreachable(d) => (DESTINATION_UNREACHABLE, d.code),
        };
        b[..4].copy_from_slice(&[ty, code, 0, 0]);
        let body = &mut b[4..];
        match self {
            Self::RouterSolicitation { source_link_layer } => {
                body.fill(0);
                if let Some(ll) = source_link_layer {
                    body[4] = OPT_SOURCE_LINK_LAYER;
                    body[5] = (lladdr_option_len(ll) / 8) as u8;
                    body[6..6 + ll.len()].copy_from_slice(ll);
                }
            }
            Self::RouterAdvertisement {
                cur_hop_limit,
                flags,
                router_lifetime,
                reachable_time,
                retrans_timer,
                prefix,
                mtu,
            } => {
                body[0] = *cur_hop_limit;
                body[1] = *flags;
                body[2..4].copy_from_slice(&router_lifetime.to_be_bytes());
                body[4..8].copy_from_slice(&reachable_time.to_be_bytes());
                body[8..12].copy_from_slice(&retrans_timer.to_be_bytes());
                let mut at = 12;
                if let Some(p) = prefix {
                    p.emit(&mut body[at..at + 32]);
                    at += 32;
                }
                if let Some(m) = mtu {
                    body[at..at + 4].copy_from_slice(&[OPT_MTU, 1, 0, 0]);
                    body[at + 4..at + 8].copy_from_slice(&m.to_be_bytes());
                }
            }
            Self::EchoRequest(e) | Self::EchoReply(e) => {
                body[..2].copy_from_slice(&e.identifier.to_be_bytes());
                body[2..4].copy_from_slice(&e.sequence.to_be_bytes());
                body[4..].copy_from_slice(e.data);
            }
            Self::DestinationUnreachable(d) => {
                body[..4].fill(0);
                let n = body.len() - 4;
                body[4..].copy_from_slice(&d.invoking[..n]);
            }
        }
        Ok(len)
    }

    /// Writes a whole IPv6 packet carrying this message, checksum computed; returns its
    /// length.
    pub fn emit_packet(
        &self,
        buf: &mut [u8],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
    ) -> Result<usize, BufferTooSmall> {
        let len = self.len();
        let b = take(buf, HEADER_LEN + len)?;
        let (head, msg) = b.split_at_mut(HEADER_LEN);
        self.emit_message(msg)?;
        let c = checksum::icmpv6(&src, &dst, msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        let h = Ipv6Header::new(src, dst, NEXT_HEADER_ICMPV6, hop_limit, len as u16);
        head.copy_from_slice(h.as_bytes());
        Ok(HEADER_LEN + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(repr: Icmpv6Repr<'_>) {
        let mut buf = [0u8; 1500];
        let src: Ipv6Addr = "fe80::8000:f227:bec8:61af".parse().unwrap();
        let dst: Ipv6Addr = "fe80::ffff:ffff:ffff".parse().unwrap();
        let n = repr.emit_packet(&mut buf, src, dst, 255).unwrap();
        let (p, rest) = Ipv6Packet::parse(&buf[..n]).unwrap();
        assert!(rest.is_empty());
        assert!(Icmpv6::checksum_ok(&p));
        let m = Message::parse(&p).unwrap();
        assert_eq!(Icmpv6Repr::from_message(&m), Some(repr));
        // and etherparse agrees on the checksum
        let e = etherparse::Icmpv6Slice::from_slice(p.payload()).unwrap();
        let h = etherparse::Ipv6HeaderSlice::from_slice(p.bytes()).unwrap();
        assert_eq!(
            e.header().icmp_type.calc_checksum(h.source(), h.destination(), e.payload()).unwrap(),
            e.checksum()
        );
    }

    #[test]
    fn round_trips() {
        round_trip(Icmpv6Repr::RouterSolicitation { source_link_layer: None });
        round_trip(Icmpv6Repr::RouterSolicitation { source_link_layer: Some(&[1, 2, 3, 4, 5, 6]) });
        round_trip(Icmpv6Repr::RouterAdvertisement {
            cur_hop_limit: 0,
            flags: 0,
            router_lifetime: 0,
            reachable_time: 0,
            retrans_timer: 2000,
            prefix: Some(PrefixInformation {
                prefix_len: 64,
                flags: PrefixInformation::FLAG_AUTONOMOUS,
                valid_lifetime: u32::MAX,
                preferred_lifetime: u32::MAX,
                prefix: "2001:0:c000:201::".parse().unwrap(),
            }),
            mtu: Some(1280),
        });
        round_trip(Icmpv6Repr::EchoRequest(Echo { identifier: 1, sequence: 2, data: b"abc" }));
        round_trip(Icmpv6Repr::EchoReply(Echo { identifier: 1, sequence: 2, data: b"" }));
        round_trip(Icmpv6Repr::DestinationUnreachable(DestinationUnreachable {
            code: 3,
            invoking: &[6; 100],
        }));
    }

    #[test]
    fn unreachable_is_cut_to_1280() {
        let big = [0x60u8; 2000];
        let r = Icmpv6Repr::DestinationUnreachable(DestinationUnreachable { code: 3, invoking: &big });
        let mut buf = [0u8; 2000];
        let n = r.emit_packet(&mut buf, "::1".parse().unwrap(), "::2".parse().unwrap(), 64).unwrap();
        assert_eq!(n, 1280);
    }

    #[test]
    fn bad_options() {
        assert_eq!(NdOptions::new(&[1, 0, 0, 0, 0, 0, 0, 0]), Err(Malformed::BadOption));
        assert_eq!(NdOptions::new(&[1, 2, 0, 0, 0, 0, 0, 0]), Err(Malformed::BadOption));
        assert_eq!(
            NdOptions::new(&[5, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Malformed::BadOption)
        );
        assert_eq!(NdOptions::new(&[1]), Err(Malformed::BadOption));
        assert!(NdOptions::new(&[]).is_ok());
    }
}
