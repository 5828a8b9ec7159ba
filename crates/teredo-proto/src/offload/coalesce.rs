//! The packets we write to the TUN: consecutive TCP segments (RFC 9293 §3.1) of one flow,
//! decapsulated in one receive burst, coalesced into one `VIRTIO_NET_HDR_GSO_TCPV6`
//! super-packet, as Linux's `tcp_gro_receive` and wireguard-go's `tcpGRO`
//! (`tun/offload_linux.go`) do, so that the kernel handles up to 64 KiB per write; and the
//! UDP datagrams of one flow into one `VIRTIO_NET_HDR_GSO_UDP_L4` super-packet (Linux 6.2),
//! as `udp_gro_receive` and wireguard-go's `udpGRO` do, which the kernel cuts back into the
//! very same datagrams.
//!
//! A UDP datagram joins the open super-packet of its flow if it has the same IPv6 header
//! but for the length, exact IPv6 and UDP lengths, a checksum that verifies strictly (as
//! below), no more payload than the first datagram (a shorter one closes it), and the
//! super-packet stays within 64 datagrams and 65,535 bytes.
//!
//! A packet joins the open super-packet S of its flow (same addresses and ports) only if
//! it is IPv6 with TCP right after the fixed header (RFC 8200 §3), its payload length is
//! exact, it has the same traffic class, flow label and hop limit as S, the same TCP header
//! length and byte-identical options, the same acknowledgment number, window and urgent
//! pointer; both have the flags ACK only (PSH is allowed on the joining packet, and closes
//! S); it has payload, follows S's last byte exactly in sequence, carries no more payload
//! than S's first segment (a shorter one closes S), keeps S within 65,535 bytes, and its TCP
//! checksum verifies (RFC 1071, RFC 8200 §8.1). A packet that starts a new S must pass the
//! same per-packet checks and have the flags ACK only. The checksum check is strict: the
//! stored value must be the one computed (a segment with `0xffff` where `0` is computed is
//! valid but passes alone), so that segmenting S gives back the very bytes received; a
//! corrupt segment is never laundered into a super-packet with a fresh partial checksum,
//! but written alone and unchanged for the kernel to drop and count.
//!
//! A packet that cannot join is written at once, after the open S of its flow, so that
//! the packets of a flow never overtake each other. Packets with IPv6 extension headers
//! may be TCP of an open flow that we cannot see: they are written after every open S
//! between the same two addresses. ICMPv6 and anything else is written at once.
//! When a new flow starts while every S is open, the oldest S is written to make room.

use super::{
    IPV6_LEN, NEXT_HEADER_TCP, NEXT_HEADER_UDP, TCP_CSUM_OFFSET, TCP_MIN_LEN, UDP_CSUM_OFFSET, UDP_LEN,
    VNET_HDR_LEN, VnetHeader, addresses, be16, be32, folded, tcp_flags,
};
use crate::checksum::Checksum;
use crate::wire::ipv6::{NEXT_HEADER_ICMPV6, NO_NEXT_HEADER};

/// The largest super-packet, in bytes (IPv6 header included).
const MAX_SUPER: usize = 65_535;
/// The most datagrams in one UDP super-packet (Linux's `UDP_MAX_SEGMENTS`).
const MAX_UDP_SEGMENTS: u64 = 64;
/// Offset of the TCP header in the packets we coalesce.
const TCP: usize = IPV6_LEN;
/// The all-zero virtio header of an ordinary packet with a complete checksum.
const PLAIN: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// Counters of a [`Coalescer`], for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalesceStats {
    /// Packets offered to [`Coalescer::push`].
    pub packets_in: u64,
    /// Frames written (super-packets and single packets).
    pub frames_out: u64,
    /// Frames that were super-packets of two segments or more.
    pub super_packets: u64,
    /// Packets written inside those super-packets.
    pub packets_coalesced: u64,
    /// TCP segments that were candidates but whose checksum did not verify (or was not in
    /// the canonical form), written alone.
    pub bad_checksums: u64,
    /// Open super-packets written early to make room for a new flow.
    pub evictions: u64,
}

/// The checksum the transport header of `p` (right after the fixed header, protocol
/// `proto`, checksum field at `csum_offset`) should carry: computed with the field left
/// out (RFC 1071, RFC 8200 §8.1).
fn transport_checksum(p: &[u8], proto: u8, csum_offset: usize) -> u16 {
    let (src, dst) = addresses(p);
    let l4 = &p[TCP..];
    let mut c = Checksum::new();
    c.add_pseudo_header(&src, &dst, l4.len() as u32, proto)
        .add(&l4[..csum_offset])
        .add(&l4[csum_offset + 2..]);
    c.finish()
}

/// One open super-packet.
#[derive(Debug)]
struct Slot {
    /// The first segment's headers, then the payload of every segment; 65,535 bytes.
    buf: Box<[u8]>,
    /// Bytes used in `buf`; 0 when the slot is free.
    len: usize,
    /// The transport protocol: TCP or UDP.
    proto: u8,
    /// TCP (or UDP) header length.
    thl: usize,
    /// Payload of the first segment: the `gso_size`.
    gso_size: usize,
    /// Segments in `buf`.
    segs: u64,
    /// Sequence number the next segment must have.
    next_seq: u32,
    /// When the super-packet was opened, in `push` calls, for eviction.
    opened: u64,
}

impl Slot {
    fn is_open(&self) -> bool {
        self.len != 0
    }

    /// Whether `p` belongs to this slot's flow: same protocol, addresses and ports.
    fn same_flow(&self, p: &[u8]) -> bool {
        self.is_open() && self.buf[6] == p[6] && self.buf[8..TCP + 4] == p[8..TCP + 4]
    }
}

/// What the per-packet checks learned of a TCP segment that may be coalesced.
#[derive(Debug, Clone, Copy)]
struct Segment {
    thl: usize,
    payload: usize,
    seq: u32,
    psh: bool,
}

/// Coalesces the IPv6 packets about to be written to the TUN, emitting frames as
/// (virtio header, packet) pairs; see the module comment for the rules.
#[derive(Debug)]
pub struct Coalescer {
    slots: Vec<Slot>,
    /// Whether UDP datagrams are joined too (the TUN takes GSO_UDP_L4 only with USO).
    udp: bool,
    stats: CoalesceStats,
}

impl Coalescer {
    /// At most `flows` super-packets open at once, each owning a 65,535-byte buffer
    /// allocated here (zeroed, so that only the pages touched become resident). With
    /// `flows` 0 every packet is written at once, unchanged.
    pub fn new(flows: usize) -> Self {
        let slots = (0..flows)
            .map(|_| Slot {
                buf: vec![0u8; MAX_SUPER].into_boxed_slice(),
                len: 0,
                proto: 0,
                thl: 0,
                gso_size: 0,
                segs: 0,
                next_seq: 0,
                opened: 0,
            })
            .collect();
        Self { slots, udp: true, stats: CoalesceStats::default() }
    }

    /// Joins UDP datagrams too (the default), or not: a TUN takes UDP super-packets only
    /// where the kernel has UDP segmentation offload (Linux 6.2, `TUN_F_USO4/6`). Open UDP
    /// super-packets are written through `write` when joining stops.
    pub fn set_join_udp(&mut self, on: bool, write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8])) {
        if !on {
            for i in 0..self.slots.len() {
                if self.slots[i].is_open() && self.slots[i].proto == NEXT_HEADER_UDP {
                    self.emit_slot(i, write);
                }
            }
        }
        self.udp = on;
    }

    /// Whether UDP datagrams are joined ([`Coalescer::set_join_udp`]).
    pub fn joins_udp(&self) -> bool {
        self.udp
    }

    /// Offers one IPv6 packet, as delivered by the tunnel (untrusted: it came off the
    /// network). It is either appended to the open super-packet of its flow or written at
    /// once through `write`, after that super-packet, if any.
    pub fn push(&mut self, packet: &[u8], write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8])) {
        self.stats.packets_in += 1;
        let p = packet;
        if p.len() < IPV6_LEN || p[0] >> 4 != 6 {
            return self.emit_plain(p, write);
        }
        match p[6] {
            // Ports present: the flow is known, even if the segment is truncated.
            NEXT_HEADER_TCP if p.len() >= TCP + 4 => {}
            NEXT_HEADER_UDP if p.len() >= TCP + 4 && self.udp => return self.push_udp(p, write),
            NEXT_HEADER_TCP | NEXT_HEADER_UDP | NEXT_HEADER_ICMPV6 | NO_NEXT_HEADER => {
                return self.emit_plain(p, write);
            }
            _ => {
                // Extension headers, perhaps with TCP of an open flow behind them.
                for i in 0..self.slots.len() {
                    if self.slots[i].is_open() && self.slots[i].buf[8..TCP] == p[8..TCP] {
                        self.emit_slot(i, write);
                    }
                }
                return self.emit_plain(p, write);
            }
        }
        let seg = self.candidate(p);
        let slot = self.slots.iter().position(|s| s.same_flow(p));
        if let (Some(seg), Some(i)) = (seg, slot)
            && self.can_join(i, p, &seg)
        {
            return self.join(i, p, &seg, write);
        }
        if let Some(i) = slot {
            self.emit_slot(i, write);
        }
        match seg {
            Some(seg) if !seg.psh && !self.slots.is_empty() => self.open(slot, p, &seg, write),
            _ => self.emit_plain(p, write),
        }
    }

    /// [`Coalescer::push`] of a UDP datagram (ports present): joined to the open
    /// super-packet of its flow, or opening one, or written at once after it.
    fn push_udp(&mut self, p: &[u8], write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8])) {
        let payload = self.candidate_udp(p);
        let slot = self.slots.iter().position(|s| s.same_flow(p));
        if let (Some(n), Some(i)) = (payload, slot)
            && self.can_join_udp(i, p, n)
        {
            return self.join_udp(i, p, n, write);
        }
        if let Some(i) = slot {
            self.emit_slot(i, write);
        }
        match payload {
            Some(n) if !self.slots.is_empty() => {
                let seg = Segment { thl: UDP_LEN, payload: n, seq: 0, psh: false };
                self.open(slot, p, &seg, write);
            }
            _ => self.emit_plain(p, write),
        }
    }

    /// The per-packet checks of a UDP datagram (UDP after the fixed header): its UDP
    /// payload length if it may start or join a super-packet. Its lengths must agree and
    /// its checksum verify (RFC 768, RFC 8200 §8.1), strictly: a datagram whose sum is 0
    /// (sent as 0xffff) passes alone.
    fn candidate_udp(&mut self, p: &[u8]) -> Option<usize> {
        let len = p.len();
        if len <= TCP + UDP_LEN || usize::from(be16(p, 4)) != len - IPV6_LEN || len > MAX_SUPER {
            return None;
        }
        let u = &p[TCP..];
        if usize::from(be16(u, 4)) != u.len() {
            return None;
        }
        let sum = transport_checksum(p, NEXT_HEADER_UDP, UDP_CSUM_OFFSET);
        if sum == 0 || sum != be16(u, UDP_CSUM_OFFSET) {
            self.stats.bad_checksums += 1;
            return None;
        }
        Some(u.len() - UDP_LEN)
    }

    /// Whether candidate datagram `p` (of `payload` bytes) may be appended to the open UDP
    /// slot `i` of its flow: as long as the first (the last may be shorter), with the same
    /// IPv6 header but for the length, and within the kernel's 64 segments and 64 KiB.
    fn can_join_udp(&self, i: usize, p: &[u8], payload: usize) -> bool {
        let s = &self.slots[i];
        payload <= s.gso_size
            && s.segs < MAX_UDP_SEGMENTS
            && s.len + payload <= MAX_SUPER
            && s.buf[..4] == p[..4]
            && s.buf[6..8] == p[6..8]
    }

    /// Appends datagram `p` to slot `i`, and writes the slot if it is now closed.
    fn join_udp(
        &mut self,
        i: usize,
        p: &[u8],
        payload: usize,
        write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8]),
    ) {
        let s = &mut self.slots[i];
        s.buf[s.len..s.len + payload].copy_from_slice(&p[TCP + UDP_LEN..]);
        s.len += payload;
        s.segs += 1;
        if payload < s.gso_size || s.segs == MAX_UDP_SEGMENTS {
            self.emit_slot(i, write);
        }
    }

    /// Writes every open super-packet (call at the end of each receive burst), in slot
    /// order.
    pub fn flush(&mut self, write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8])) {
        for i in 0..self.slots.len() {
            if self.slots[i].is_open() {
                self.emit_slot(i, write);
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CoalesceStats {
        self.stats
    }

    /// How many super-packets may be open at once (0 once joining stopped).
    pub fn flows(&self) -> usize {
        self.slots.len()
    }

    /// Stops joining for good (the TUN refuses super-packets): writes what is open through
    /// `write`, frees the buffers, and from now on writes every packet at once, unchanged,
    /// as [`Coalescer::new`] with 0 flows would. The counters are kept.
    pub fn stop_joining(&mut self, write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8])) {
        self.flush(write);
        self.slots = Vec::new();
    }

    /// The per-packet checks of a TCP packet (TCP after the fixed header): `Some` if it
    /// may start or join a super-packet.
    fn candidate(&mut self, p: &[u8]) -> Option<Segment> {
        let len = p.len();
        if len < TCP + TCP_MIN_LEN || usize::from(be16(p, 4)) != len - IPV6_LEN || len > MAX_SUPER {
            return None;
        }
        let t = &p[TCP..];
        let thl = usize::from(t[12] >> 4) * 4;
        if thl < TCP_MIN_LEN || thl >= t.len() {
            return None;
        }
        let flags = t[13];
        if flags & !tcp_flags::PSH != tcp_flags::ACK {
            return None;
        }
        if transport_checksum(p, NEXT_HEADER_TCP, TCP_CSUM_OFFSET) != be16(t, TCP_CSUM_OFFSET) {
            self.stats.bad_checksums += 1;
            return None;
        }
        Some(Segment { thl, payload: t.len() - thl, seq: be32(t, 4), psh: flags & tcp_flags::PSH != 0 })
    }

    /// Whether candidate `p` may be appended to the open slot `i` of its flow.
    fn can_join(&self, i: usize, p: &[u8], seg: &Segment) -> bool {
        let s = &self.slots[i];
        let (b, t, st) = (&s.buf[..], &p[TCP..], &s.buf[TCP..]);
        seg.thl == s.thl
            && seg.seq == s.next_seq
            && seg.payload <= s.gso_size
            && s.len + seg.payload <= MAX_SUPER
            // Version, traffic class, flow label; next header, hop limit (addresses matched).
            && b[..4] == p[..4]
            && b[6..8] == p[6..8]
            // Acknowledgment number, data offset byte, window, urgent pointer, options.
            && st[8..13] == t[8..13]
            && st[14..16] == t[14..16]
            && st[18..s.thl] == t[18..seg.thl]
    }

    /// Appends candidate `p` to slot `i`, and writes the slot if it is now closed.
    fn join(
        &mut self,
        i: usize,
        p: &[u8],
        seg: &Segment,
        write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8]),
    ) {
        let s = &mut self.slots[i];
        s.buf[s.len..s.len + seg.payload].copy_from_slice(&p[TCP + seg.thl..]);
        s.len += seg.payload;
        s.segs += 1;
        s.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        if seg.psh {
            s.buf[TCP + 13] |= tcp_flags::PSH;
        }
        if seg.psh || seg.payload < s.gso_size {
            self.emit_slot(i, write);
        }
    }

    /// Opens a super-packet with candidate `p`, in slot `slot` if given (its flow's,
    /// written already), else in a free slot or in the oldest one after writing it.
    fn open(
        &mut self,
        slot: Option<usize>,
        p: &[u8],
        seg: &Segment,
        write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8]),
    ) {
        let i = match slot.or_else(|| self.slots.iter().position(|s| !s.is_open())) {
            Some(i) => i,
            None => {
                let Some(oldest) = (0..self.slots.len()).min_by_key(|&i| self.slots[i].opened) else {
                    return self.emit_plain(p, write);
                };
                self.stats.evictions += 1;
                self.emit_slot(oldest, write);
                oldest
            }
        };
        let s = &mut self.slots[i];
        s.buf[..p.len()].copy_from_slice(p);
        s.len = p.len();
        s.proto = p[6];
        s.thl = seg.thl;
        s.gso_size = seg.payload;
        s.segs = 1;
        s.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        s.opened = self.stats.packets_in;
    }

    /// Writes a packet alone, unchanged.
    fn emit_plain(&mut self, p: &[u8], write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8])) {
        self.stats.frames_out += 1;
        write(&PLAIN, p);
    }

    /// Writes the super-packet of slot `i` and frees the slot: alone and unchanged if it
    /// holds one segment, else as a GSO_TCPV6 or GSO_UDP_L4 packet with a partial checksum.
    fn emit_slot(&mut self, i: usize, write: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8])) {
        let s = &mut self.slots[i];
        let len = std::mem::take(&mut s.len);
        let b = &mut s.buf[..len];
        self.stats.frames_out += 1;
        if s.segs < 2 {
            return write(&PLAIN, b);
        }
        self.stats.super_packets += 1;
        self.stats.packets_coalesced += s.segs;
        let l4_len = len - IPV6_LEN;
        b[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        let (gso_type, csum_offset) = if s.proto == NEXT_HEADER_UDP {
            // The UDP length of the whole, which the kernel replaces in each datagram.
            b[TCP + 4..TCP + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            (VnetHeader::GSO_UDP_L4, UDP_CSUM_OFFSET)
        } else {
            (VnetHeader::GSO_TCPV6, TCP_CSUM_OFFSET)
        };
        // What Linux expects of CHECKSUM_PARTIAL: the folded pseudo-header sum, not
        // complemented (RFC 8200 §8.1), for the whole transport length.
        let (src, dst) = addresses(b);
        let mut c = Checksum::new();
        c.add_pseudo_header(&src, &dst, l4_len as u32, s.proto);
        let at = TCP + csum_offset;
        b[at..at + 2].copy_from_slice(&folded(&c).to_be_bytes());
        let hdr = VnetHeader {
            flags: VnetHeader::F_NEEDS_CSUM,
            gso_type,
            hdr_len: (TCP + s.thl) as u16,
            gso_size: s.gso_size as u16,
            csum_start: TCP as u16,
            csum_offset: csum_offset as u16,
        };
        write(&hdr.to_bytes(), b);
    }
}

#[cfg(test)]
mod tests;
