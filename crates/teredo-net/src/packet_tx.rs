//! Sending UDP datagrams as whole Ethernet frames on an AF_PACKET socket, past the
//! kernel's UDP and IP output path and its queueing discipline (PACKET_QDISC_BYPASS).
//!
//! A Teredo server spends nearly all its time in the kernel's `udp_sendmsg`: building an
//! skb, looking up the route, charging socket memory, walking the output path. Its answers
//! are small, stateless and go to a new address every time, which is the case where
//! building the frame ourselves and handing batches of them to the driver (sendmmsg on a
//! packet socket) costs much less. The caller writes the UDP payload straight into the
//! frame ([`PacketTx::payload_mut`]); [`PacketTx::commit`] then finds the next hop in a
//! copy of the kernel's tables ([`next_hop`]) and writes the Ethernet, IPv4 and UDP
//! headers in front of it ([`frame`]: no DF, TTL 64, checksums, as a socket with
//! IP_PMTUDISC_DONT sends, RFC 4380 §5.1.2). When the copy has no answer (next hop not
//! resolved yet, a route it does not model, a datagram larger than the MTU) the payload is
//! handed back, to be sent through the ordinary UDP socket, and the kernel does the rest
//! (ARP included).
//!
//! What the frames skip, by design: the host firewall's OUTPUT and POSTROUTING chains,
//! traffic control, and the kernel's own counters of UDP datagrams sent. That suits a
//! dedicated server; it is opt-in.
//!
//! Privileges: opening the packet socket needs CAP_NET_RAW, so it is opened as root before
//! the privilege drop. Sending on it afterwards needs no capability, and reading the
//! routing and neighbour tables over rtnetlink needs none either. The socket is opened
//! with protocol 0: it receives nothing.

pub mod frame;
pub mod next_hop;
pub mod tables;
mod types;

pub use types::{PacketTxStats, Queued};

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use frame::{Addressing, IPV4_LEN, IpIds, PAYLOAD_OFFSET, UDP_LEN};
use next_hop::{Miss, NextHops};

/// Bytes per frame buffer.
const SLOT: usize = 2048;
/// Room for the UDP payload in each frame (at least 1500 bytes).
pub const PAYLOAD_CAPACITY: usize = SLOT - PAYLOAD_OFFSET;
/// Send buffer asked of the kernel.
const SEND_BUFFER: libc::c_int = 4 << 20;
const ETH_P_IP: u16 = 0x0800;

/// A packet socket and a batch of frames to send on it.
pub struct PacketTx {
    fd: OwnedFd,
    hops: NextHops,
    ids: IpIds,
    frames: Vec<u8>,
    lens: Vec<usize>,
    dests: Vec<libc::sockaddr_ll>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    queued: usize,
    stats: PacketTxStats,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` only ever point into the batch's own
// vectors and are rebuilt before each use.
unsafe impl Send for PacketTx {}

impl std::fmt::Debug for PacketTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketTx").field("queued", &self.queued).field("stats", &self.stats).finish()
    }
}

impl PacketTx {
    /// Opens the packet socket (needs CAP_NET_RAW) with room for `batch` frames, and reads
    /// the routing tables.
    pub fn open(batch: usize) -> io::Result<Self> {
        let batch = batch.max(1);
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a socket we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Straight to the driver; a kernel without the option (before 3.14) still sends
        // through the queueing discipline.
        let _ = crate::sockopt::set_int(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1);
        let _ = crate::sockopt::set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SEND_BUFFER);
        let hops = NextHops::open().map_err(|e| io::Error::other(e.to_string()))?;
        // SAFETY: plain old data; all-zero is a valid value.
        let zero_ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Ok(Self {
            fd,
            hops,
            ids: IpIds::new(),
            frames: vec![0; batch * SLOT],
            lens: vec![0; batch],
            dests: vec![zero_ll; batch],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; batch],
            hdrs: vec![zero_hdr; batch],
            queued: 0,
            stats: PacketTxStats::default(),
        })
    }

    /// Keeps the copy of the routing tables fresh; call it between batches.
    pub fn maintain(&mut self, now: Instant) {
        self.hops.maintain(now);
    }

    /// True when no more frame fits: [`PacketTx::flush`] first.
    pub fn is_full(&self) -> bool {
        self.queued == self.hdrs.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Where to write the next datagram's UDP payload ([`PAYLOAD_CAPACITY`] bytes); `None`
    /// when the batch is full.
    pub fn payload_mut(&mut self) -> Option<&mut [u8]> {
        let i = self.queued;
        (i < self.hdrs.len()).then(|| &mut self.frames[i * SLOT + PAYLOAD_OFFSET..(i + 1) * SLOT])
    }

    /// Queues the `len` bytes just written into [`PacketTx::payload_mut`] as a UDP
    /// datagram from `src` to `dst`, or hands them back when no frame can be built now.
    pub fn commit(&mut self, src: SocketAddrV4, dst: SocketAddrV4, len: usize) -> Queued<'_> {
        let i = self.queued;
        let len = len.min(PAYLOAD_CAPACITY);
        if i >= self.hdrs.len() {
            return Queued::Socket(&[]);
        }
        let slot = &mut self.frames[i * SLOT..(i + 1) * SLOT];
        match self.hops.resolve(*dst.ip(), IPV4_LEN + UDP_LEN + len) {
            Ok(path) => {
                let a = Addressing { dst_mac: path.dst_mac, src_mac: path.src_mac, src, dst };
                let id = self.ids.next(*src.ip(), *dst.ip());
                self.lens[i] = frame::write_headers(slot, &a, id, len);
                let d = &mut self.dests[i];
                d.sll_family = libc::AF_PACKET as libc::sa_family_t;
                d.sll_protocol = ETH_P_IP.to_be();
                d.sll_ifindex = path.ifindex as libc::c_int;
                d.sll_halen = 6;
                d.sll_addr[..6].copy_from_slice(&path.dst_mac);
                self.queued += 1;
                Queued::Frame
            }
            Err(Miss::Route | Miss::Neighbour | Miss::TooBig) => {
                self.stats.fallbacks += 1;
                Queued::Socket(&slot[PAYLOAD_OFFSET..PAYLOAD_OFFSET + len])
            }
        }
    }

    /// Sends every queued frame. Returns how many the kernel took; a frame it refuses is
    /// dropped, as a UDP socket would drop it.
    pub fn flush(&mut self) -> io::Result<usize> {
        let total = self.queued;
        // Pointers from the whole arrays, taken once after the writes.
        let frames = self.frames.as_mut_ptr();
        for i in 0..total {
            self.iovs[i] =
                libc::iovec { iov_base: frames.wrapping_add(i * SLOT).cast(), iov_len: self.lens[i] };
        }
        let (iovs, dests) = (self.iovs.as_mut_ptr(), self.dests.as_mut_ptr());
        for i in 0..total {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = dests.wrapping_add(i).cast();
            h.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            h.msg_iov = iovs.wrapping_add(i);
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let (mut sent, mut taken) = (0, 0);
        let mut result = Ok(());
        while sent < total {
            // SAFETY: headers sent..total point to live buffers and addresses owned by self.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    self.hdrs[sent..].as_mut_ptr(),
                    (total - sent) as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The interface went down, or its queue is full: skip this frame.
                sent += 1;
                self.stats.errors += 1;
                if result.is_ok() {
                    result = Err(e);
                }
                continue;
            }
            sent += n as usize;
            taken += n as usize;
        }
        self.stats.frames += taken as u64;
        self.queued = 0;
        result.map(|()| taken)
    }

    /// The counters.
    pub fn stats(&self) -> PacketTxStats {
        self.stats
    }

    /// Ethernet interfaces that are up (with none, everything goes through the sockets).
    pub fn ethernet_links(&self) -> usize {
        self.hops.snapshot().ethernet_links()
    }

    /// True when policy routing rules exist (everything then goes through the sockets).
    pub fn policy_routing(&self) -> bool {
        self.hops.snapshot().policy_routing()
    }
}

#[cfg(test)]
mod tests;
