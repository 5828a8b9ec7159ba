//! The packets we read from the TUN: completion of partial checksums and segmentation of
//! GSO super-packets into ordinary packets, one per Teredo datagram.
//!
//! A packet read with `VIRTIO_NET_HDR_F_NEEDS_CSUM` (Linux `CHECKSUM_PARTIAL`) carries in its
//! checksum field (at `csum_start + csum_offset`) only the folded sum of the IPv6
//! pseudo-header (RFC 8200 §8.1), not complemented; the sender of the real packet must add
//! the RFC 1071 sum of everything from `csum_start` to the end and store its complement.
//!
//! A `VIRTIO_NET_HDR_GSO_TCPV6` packet is one TCP segment (RFC 9293 §3.1) of up to 64 KiB
//! that must be cut into segments of `gso_size` bytes of payload. [`Segments`] does what
//! Linux's `ipv6_gso_segment` and `tcp_gso_segment` do: every segment gets a copy of the
//! IPv6 header, of the extension headers and of the TCP header with its options; the IPv6
//! payload length is that of the segment; the sequence number advances by `gso_size` per
//! segment; FIN and PSH stay on the last segment only and CWR on the first only; and the
//! checksum is computed in full, from the pseudo-header sum the kernel left (adjusted for
//! the segment's length, as Linux does, so a routing header's final destination is
//! respected) or, without `F_NEEDS_CSUM`, from the addresses. `VIRTIO_NET_HDR_GSO_UDP_L4`
//! (USO) packets are cut the same way, each datagram with its own UDP header, length and
//! checksum (Linux `__udp_gso_segment`).

use super::{
    IPV6_LEN, NEXT_HEADER_TCP, NEXT_HEADER_UDP, OffloadError, TCP_CSUM_OFFSET, TCP_MIN_LEN, UDP_CSUM_OFFSET,
    UDP_LEN, addresses, be16, be32, tcp_flags,
};
use std::ops::Range;

use crate::checksum::Checksum;
use crate::offload::VnetHeader;

/// The largest IPv6 payload length (RFC 8200 §3; jumbograms are not used on a TUN).
const MAX_PAYLOAD: usize = 65_535;

/// Checks that the checksum field `csum_start + csum_offset` lies inside a packet of
/// `len` bytes, and returns `(csum_start, offset of the checksum field)`.
fn csum_range(hdr: &VnetHeader, len: usize) -> Result<(usize, usize), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > len {
        return Err(OffloadError::BadOffsets);
    }
    Ok((start, at))
}

/// Completes a partial checksum in place, as Linux's `skb_checksum_help` does, when `hdr`
/// has [`VnetHeader::F_NEEDS_CSUM`]; does nothing otherwise. For a packet with `gso_type`
/// [`VnetHeader::GSO_NONE`].
///
/// The field at `csum_start + csum_offset` must hold the folded pseudo-header sum (RFC 8200
/// §8.1); the RFC 1071 sum from `csum_start` to the end is added to it and the complement
/// stored, a result of 0 being stored as `0xffff` (as Linux does, which UDP requires).
pub fn complete_checksum(hdr: &VnetHeader, packet: &mut [u8]) -> Result<(), OffloadError> {
    if !hdr.needs_csum() {
        return Ok(());
    }
    let (start, at) = csum_range(hdr, packet.len())?;
    let mut c = Checksum::new();
    c.add(&packet[start..]);
    let sum = match c.finish() {
        0 => 0xffff,
        v => v,
    };
    packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Walks the IPv6 extension headers (RFC 8200 §4) from the fixed header to `l4_off`, which
/// must be where the chain ends, with `proto` as its last next header.
fn walk_to(packet: &[u8], l4_off: usize, proto: u8) -> Result<(), OffloadError> {
    let mut nh = packet[6];
    let mut off = IPV6_LEN;
    while off < l4_off {
        let units = usize::from(*packet.get(off + 1).ok_or(OffloadError::TooShort)?);
        let len = match nh {
            // Hop-by-hop options, routing, destination options: 8-octet units, minus one.
            0 | 43 | 60 => (units + 1) * 8,
            // Authentication header (RFC 4302 §2.2): 4-octet units, minus two.
            51 => (units + 2) * 4,
            _ => return Err(OffloadError::BadOffsets),
        };
        nh = packet[off];
        off += len;
    }
    if off != l4_off {
        return Err(OffloadError::BadOffsets);
    }
    if nh != proto {
        return Err(if proto == NEXT_HEADER_TCP { OffloadError::NotTcp } else { OffloadError::NotUdp });
    }
    Ok(())
}

/// What [`Segments`] does with its packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One packet, copied, its checksum completed if `complete`.
    Whole { complete: bool },
    /// TCP segmentation.
    Tcp,
    /// UDP segmentation.
    Udp,
}

/// The ordinary packets of one packet read from the TUN, produced one by one into the
/// caller's buffer by [`Segments::next_into`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    packet: &'a [u8],
    plan: SegmentPlan,
}

/// A [`Segments`] without its borrow of the packet ([`Segments::into_plan`]): the same
/// packets, each call given the packet again, so that the packet may stay in a buffer that
/// is borrowed mutably between two calls (the tail of a send batch, from which the
/// payloads leave without a copy: [`SegmentPlan::next_headers_into`]). Given a packet of
/// another length it produces nothing; the packet must be the one the plan was made for.
#[derive(Debug, Clone)]
pub struct SegmentPlan {
    hdr: VnetHeader,
    kind: Kind,
    /// The length of the packet.
    len: usize,
    /// Offset of the transport header.
    l4_off: usize,
    /// Length of all the headers (IPv6, extensions, transport) copied into every segment.
    hdrs: usize,
    /// Bytes of transport payload per segment.
    gso_size: usize,
    /// The pseudo-header sum without the upper-layer length.
    base: Checksum,
    count: usize,
    max_len: usize,
    next: usize,
}

impl<'a> Segments<'a> {
    /// Prepares the segmentation of `packet` (without its virtio header) as `hdr` asks.
    ///
    /// [`VnetHeader::GSO_NONE`]: one packet, its checksum completed if
    /// [`VnetHeader::F_NEEDS_CSUM`] is set (the offsets are checked here). GSO_TCPV6 (with
    /// or without the ECN bit): TCP segmentation. GSO_UDP_L4 on IPv6: UDP segmentation.
    /// Anything else: [`OffloadError::UnsupportedGso`].
    ///
    /// For segmentation, the transport header is at `csum_start` when `F_NEEDS_CSUM` is set
    /// (after IPv6 extension headers, whose chain must lead there), else at offset 40 after
    /// a fixed header whose next header is TCP or UDP. The packet must be IPv6, its payload
    /// length must be `packet.len() - 40` (what Linux writes, 64 KiB GSO packets included;
    /// BIG TCP jumbograms never reach a TUN), the TCP data offset must be sane, `gso_size`
    /// must not be 0 and headers plus `gso_size` must fit in an IPv6 packet. The `hdr_len`
    /// field is not used (see [`super::vnet`]). A GSO packet whose payload is at most
    /// `gso_size` yields one packet, with its checksum completed.
    pub fn new(hdr: &VnetHeader, packet: &'a [u8]) -> Result<Self, OffloadError> {
        let mut plan = SegmentPlan {
            hdr: *hdr,
            kind: Kind::Whole { complete: false },
            len: packet.len(),
            l4_off: 0,
            hdrs: 0,
            gso_size: 0,
            base: Checksum::new(),
            count: 1,
            max_len: packet.len(),
            next: 0,
        };
        let gso = hdr.gso_type & !VnetHeader::GSO_ECN;
        match (hdr.gso_type, gso) {
            (VnetHeader::GSO_NONE, _) => {
                if hdr.needs_csum() {
                    csum_range(hdr, packet.len())?;
                }
                plan.kind = Kind::Whole { complete: hdr.needs_csum() };
            }
            (_, VnetHeader::GSO_TCPV6) => plan.prepare(packet, NEXT_HEADER_TCP)?,
            (VnetHeader::GSO_UDP_L4, _) => plan.prepare(packet, NEXT_HEADER_UDP)?,
            _ => return Err(OffloadError::UnsupportedGso),
        }
        Ok(Self { packet, plan })
    }

    /// How many packets [`Segments::next_into`] produces in total.
    pub fn count(&self) -> usize {
        self.plan.count
    }

    /// The length of the longest packet produced: the room `next_into` needs.
    pub fn max_len(&self) -> usize {
        self.plan.max_len
    }

    /// Writes the next packet into the start of `out` and returns its length; `None` when
    /// all were produced, or if `out` is shorter than [`Segments::max_len`] (nothing is
    /// consumed then).
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<usize> {
        self.plan.next_into(self.packet, out)
    }

    /// The rest of the packets, without the borrow of the packet (see [`SegmentPlan`]).
    pub fn into_plan(self) -> SegmentPlan {
        self.plan
    }
}

impl SegmentPlan {
    /// Validates a GSO packet and computes the segmentation parameters.
    fn prepare(&mut self, p: &[u8], proto: u8) -> Result<(), OffloadError> {
        let len = p.len();
        if len < IPV6_LEN {
            return Err(OffloadError::TooShort);
        }
        if p[0] >> 4 != 6 {
            return Err(OffloadError::NotIpv6);
        }
        if usize::from(be16(p, 4)) != len - IPV6_LEN {
            return Err(OffloadError::BadLength);
        }
        let (csum_offset, wrong_proto) = if proto == NEXT_HEADER_TCP {
            (TCP_CSUM_OFFSET, OffloadError::NotTcp)
        } else {
            (UDP_CSUM_OFFSET, OffloadError::NotUdp)
        };
        if self.hdr.needs_csum() {
            let (start, at) = csum_range(&self.hdr, len)?;
            if start < IPV6_LEN || at - start != csum_offset {
                return Err(OffloadError::BadOffsets);
            }
            walk_to(p, start, proto)?;
            // The field holds the pseudo-header sum for the whole transport length (at most
            // 65,535 since the payload length matched); take that length out, as Linux's
            // tcp_gso_segment does, so that each segment adds its own.
            let whole = (len - start) as u16;
            self.base.add(&p[at..at + 2]).add(&(!whole).to_be_bytes());
            self.l4_off = start;
        } else {
            if p[6] != proto {
                return Err(wrong_proto);
            }
            let (src, dst) = addresses(p);
            self.base.add(&src.octets()).add(&dst.octets()).add(&[0, 0, 0, proto]);
            self.l4_off = IPV6_LEN;
        }
        let l4_len = if proto == NEXT_HEADER_TCP {
            if self.l4_off + TCP_MIN_LEN > len {
                return Err(OffloadError::TooShort);
            }
            let thl = usize::from(p[self.l4_off + 12] >> 4) * 4;
            if thl < TCP_MIN_LEN || self.l4_off + thl > len {
                return Err(OffloadError::BadTcpHeader);
            }
            self.kind = Kind::Tcp;
            thl
        } else {
            if self.l4_off + UDP_LEN > len {
                return Err(OffloadError::TooShort);
            }
            self.kind = Kind::Udp;
            UDP_LEN
        };
        self.hdrs = self.l4_off + l4_len;
        self.gso_size = usize::from(self.hdr.gso_size);
        if self.gso_size == 0 || self.hdrs - IPV6_LEN + self.gso_size > MAX_PAYLOAD {
            return Err(OffloadError::BadGsoSize);
        }
        let payload = len - self.hdrs;
        self.count = payload.div_ceil(self.gso_size).max(1);
        self.max_len = self.hdrs + payload.min(self.gso_size);
        Ok(())
    }

    /// How many packets the plan produces in total.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The length of the longest packet produced: the room [`SegmentPlan::next_into`]
    /// needs.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// [`Segments::next_into`], from `packet` (the one the plan was made for).
    pub fn next_into(&mut self, packet: &[u8], out: &mut [u8]) -> Option<usize> {
        if self.next >= self.count || out.len() < self.max_len || packet.len() != self.len {
            return None;
        }
        let n = match self.kind {
            Kind::Whole { complete } => {
                let n = packet.len();
                out[..n].copy_from_slice(packet);
                if complete {
                    complete_checksum(&self.hdr, &mut out[..n]).ok()?;
                }
                n
            }
            Kind::Tcp | Kind::Udp => {
                let (hdrs, payload) = self.cut(self.next);
                let n = payload.len();
                out[hdrs..hdrs + n].copy_from_slice(&packet[payload.clone()]);
                self.headers(packet, self.next, out, &packet[payload]);
                hdrs + n
            }
        };
        self.next += 1;
        Some(n)
    }

    /// Writes only the headers of the next packet into the start of `out`, its checksum
    /// computed over its payload in `packet`, and returns their length and where in
    /// `packet` that payload is: the packet is those headers followed by that payload,
    /// which can then leave from where it was read without a copy (a gathered write).
    /// `None` when all were produced, when `out` is shorter than the headers, or when
    /// the packet is not segmented (an ordinary packet: use [`SegmentPlan::next_into`]).
    pub fn next_headers_into(&mut self, packet: &[u8], out: &mut [u8]) -> Option<(usize, Range<usize>)> {
        if self.next >= self.count || out.len() < self.hdrs || packet.len() != self.len {
            return None;
        }
        if let Kind::Whole { .. } = self.kind {
            return None;
        }
        let (hdrs, payload) = self.cut(self.next);
        self.headers(packet, self.next, out, &packet[payload.clone()]);
        self.next += 1;
        Some((hdrs, payload))
    }

    /// The length of the headers and the range of the payload of segment `k`.
    fn cut(&self, k: usize) -> (usize, Range<usize>) {
        let start = self.hdrs + k * self.gso_size;
        let n = self.gso_size.min(self.len - start);
        (self.hdrs, start..start + n)
    }

    /// Writes the headers of segment `k` into `out`, whose checksum covers `payload`.
    fn headers(&self, p: &[u8], k: usize, out: &mut [u8], payload: &[u8]) {
        let (hdrs, l4) = (self.hdrs, self.l4_off);
        let len = hdrs + payload.len();
        let last = k + 1 == self.count;
        out[..hdrs].copy_from_slice(&p[..hdrs]);
        out[4..6].copy_from_slice(&((len - IPV6_LEN) as u16).to_be_bytes());
        let l4_len = len - l4;
        let t = &mut out[l4..hdrs];
        let csum_at = if self.kind == Kind::Tcp {
            // Sequence numbers wrap (RFC 9293 §3.4): modular arithmetic is intended.
            let seq = be32(p, l4 + 4).wrapping_add((k * self.gso_size) as u32);
            t[4..8].copy_from_slice(&seq.to_be_bytes());
            if !last {
                t[13] &= !(tcp_flags::FIN | tcp_flags::PSH);
            }
            if k > 0 {
                t[13] &= !tcp_flags::CWR;
            }
            TCP_CSUM_OFFSET
        } else {
            t[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            UDP_CSUM_OFFSET
        };
        t[csum_at..csum_at + 2].fill(0);
        let mut c = self.base;
        c.add(&(l4_len as u32).to_be_bytes()).add(t).add(payload);
        let mut sum = c.finish();
        if sum == 0 && self.kind == Kind::Udp {
            // RFC 8200 §8.1: a UDP checksum computing to zero is sent as 0xffff.
            sum = 0xffff;
        }
        t[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;
