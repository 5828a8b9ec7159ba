//! The TUN offloads at work in a client's or relay's worker (see `teredo_net::tun`):
//! super-packets read from the TUN are cut into ordinary packets (RFC 9293 segmentation,
//! as the kernel's GSO), and the TCP segments, or the UDP datagrams, of one flow that
//! arrive together are joined before they are written ([`Coalescer`]). Should the kernel
//! refuse a joined super-packet, it is cut back and written packet by packet, and joining
//! of that kind stops; nothing is lost.
//!
//! Unlike a UDP socket's GSO refusals (which depend on the route and segment size, and so
//! stop segmentation only for that destination and size, see `teredo_net::batch`), what a
//! TUN accepts is the device's: the kinds of super-packet (TCP, UDP) it takes were set
//! when it was opened (TUNSETOFFLOAD), the same for every flow. A refused kind is refused
//! for every packet, so only that kind stops being joined, the other goes on; and each
//! refused super-packet is cut back itself, so the fallback is per super-packet.

use teredo_net::tun::Tun;
use teredo_proto::offload::{Coalescer, Segments, VNET_HDR_LEN, VnetHeader};
use teredo_proto::status::Counters;

use super::tunnel_worker::SLOT_SIZE;

/// TCP flows whose segments are joined at once on their way to an offloading TUN.
const COALESCE_FLOWS: usize = 8;

/// The TUN offloads at work (see `teredo_net::tun`): super-packets read from the TUN are
/// cut into ordinary packets, and the TCP segments of one flow that arrive together are
/// joined before they are written.
pub(super) struct Offload {
    /// The virtio-net header of the packet just read.
    pub(super) hdr: [u8; VNET_HDR_LEN],
    /// Whether the last packet read was a super-packet: the next read goes straight into
    /// the send batch's tail then (where super-packets are cut), into the next send slot
    /// otherwise.
    pub(super) expect_super: bool,
    pub(super) coalescer: Coalescer,
    /// Super-packets read, and the packets cut from them.
    pub(super) super_packets: u64,
    pub(super) segments: u64,
    /// Packets read that could not be cut (malformed for the offload rules: counted and
    /// dropped).
    pub(super) errors: u64,
    /// Super-packets the kernel refused to take (EINVAL): each was written again cut into
    /// its packets, and joining stopped for good (of UDP only, if it was a UDP one).
    pub(super) refused: Refusals,
    /// Where a refused super-packet is cut back into packets.
    pub(super) cut: Vec<u8>,
}

/// The super-packets the kernel refused to take, and of which kinds.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    pub(super) count: u64,
    pub(super) tcp: bool,
    pub(super) udp: bool,
}

/// Writes one frame of the [`Coalescer`] to the TUN. Should the kernel refuse a
/// super-packet's header (an older kernel's rules), the packets in it are written one by
/// one and the refusal is noted in `refused`, so that nothing is lost; any other failure is
/// counted in `write_errors`.
pub(super) fn write_frame(
    tun: &Tun,
    cut: &mut [u8],
    refused: &mut Refusals,
    write_errors: &mut u64,
    hdr: &[u8; VNET_HDR_LEN],
    packet: &[u8],
) {
    let Err(e) = tun.send_offload(hdr, packet) else { return };
    let header = VnetHeader::parse(hdr).unwrap_or_default();
    if header.gso_type == VnetHeader::GSO_NONE || e.raw_os_error() != Some(libc::EINVAL) {
        *write_errors += 1;
        return;
    }
    refused.count += 1;
    if header.gso_type == VnetHeader::GSO_UDP_L4 {
        refused.udp = true;
    } else {
        refused.tcp = true;
    }
    let Ok(mut segments) = Segments::new(&header, packet) else {
        *write_errors += 1;
        return;
    };
    for _ in 0..segments.count() {
        match segments.next_into(cut) {
            Some(n) if tun.send(&cut[..n]).is_ok() => {}
            _ => *write_errors += 1,
        }
    }
}

impl Offload {
    pub(super) fn new() -> Self {
        Self {
            hdr: [0; VNET_HDR_LEN],
            expect_super: false,
            coalescer: Coalescer::new(COALESCE_FLOWS),
            super_packets: 0,
            segments: 0,
            errors: 0,
            refused: Refusals::default(),
            cut: vec![0; SLOT_SIZE],
        }
    }
}

impl Offload {
    /// The offload counters, by name.
    pub(super) fn counters(&self) -> Counters {
        let c = self.coalescer.stats();
        vec![
            ("offload_super_packets_read", self.super_packets),
            ("offload_packets_cut", self.segments),
            ("offload_super_packets_written", c.super_packets),
            ("offload_packets_joined", c.packets_coalesced),
            ("offload_unusable_reads", self.errors),
            ("offload_refused_by_kernel", self.refused.count),
            ("offload_not_joined_checksum", c.bad_checksums),
        ]
    }
}
