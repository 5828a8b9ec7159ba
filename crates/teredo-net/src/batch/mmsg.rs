//! Batched UDP I/O on Linux: many datagrams per system call with recvmmsg(2) and
//! sendmmsg(2), into and out of buffers allocated once. The header arrays point into the
//! batch's own buffers; they are rebuilt right before each call, so the structure can
//! move freely between calls and nothing is allocated per packet.

use std::io;
use std::net::SocketAddrV4;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::gso_refusals::GsoRefusals;
use super::{sockaddr_to_v4, v4_to_sockaddr};

/// A batch of receive buffers.
///
/// On a socket with UDP GRO on ([`crate::udp::enable_gro`]), one buffer may hold several
/// datagrams of one sender coalesced by the kernel; [`RecvBatch::segments`] gives them back
/// one by one.
pub struct RecvBatch {
    /// The buffers and message headers; the control buffers take the UDP_GRO segment size.
    m: Messages,
    /// The segment size of each slot's datagrams when the kernel coalesced them, else 0.
    segment: Vec<usize>,
    received: usize,
}

/// The buffers of a batch and the arrays recvmmsg/sendmmsg read: one slot of `size`
/// bytes, one address, one iovec, one message header and one control-message buffer
/// (aligned as cmsghdr) per datagram. The header arrays point into the batch's own buffers;
/// they are rebuilt right before each call.
struct Messages {
    size: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    ctrl: Vec<[u64; 4]>,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` only ever point into the same struct's
// vectors and are rebuilt before each use.
unsafe impl Send for Messages {}

impl Messages {
    fn new(count: usize, size: usize) -> Self {
        // SAFETY: plain old data; zero is valid.
        let zero_sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Self {
            size,
            bufs: vec![0; count * size],
            addrs: vec![zero_sa; count],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; count],
            hdrs: vec![zero_hdr; count],
            ctrl: vec![[0; 4]; count],
        }
    }
}

impl RecvBatch {
    /// `count` buffers of `size` bytes each.
    pub fn new(count: usize, size: usize) -> Self {
        Self { m: Messages::new(count, size), segment: vec![0; count], received: 0 }
    }

    /// Receives up to the batch size without blocking; returns how many datagrams came
    /// (0 when none was waiting).
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let count = self.m.hdrs.len();
        // Every pointer is taken from its whole array, once, after the writes: a pointer
        // taken through an element (or a sub-slice) would be valid for that element only.
        let bufs = self.m.bufs.as_mut_ptr();
        for i in 0..count {
            self.m.iovs[i] =
                libc::iovec { iov_base: bufs.wrapping_add(i * self.m.size).cast(), iov_len: self.m.size };
        }
        let (iovs, addrs) = (self.m.iovs.as_mut_ptr(), self.m.addrs.as_mut_ptr());
        for i in 0..count {
            let h = &mut self.m.hdrs[i].msg_hdr;
            h.msg_name = addrs.wrapping_add(i).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = iovs.wrapping_add(i);
            h.msg_iovlen = 1;
            h.msg_control = self.m.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; 4]>() as _;
            h.msg_flags = 0;
            self.m.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points to live buffers of the stated sizes owned by self.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.m.hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.received = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.received = n as usize;
        for i in 0..self.received {
            self.segment[i] = 0;
            let h = &self.m.hdrs[i].msg_hdr;
            // SAFETY: the kernel filled msg_control with well-formed control messages,
            // within the msg_controllen it set.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                        let size = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                        self.segment[i] = usize::try_from(size).unwrap_or(0);
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
        }
        Ok(self.received)
    }

    /// How many datagrams the last call received.
    pub fn len(&self) -> usize {
        self.received
    }

    /// True when the last call received nothing.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// The datagrams in buffer `i` of the last call, one by one: several when the kernel
    /// coalesced them (UDP GRO), else the one.
    pub fn segments(&self, i: usize) -> impl Iterator<Item = &[u8]> {
        let (_, data, _) = self.get(i);
        let size = match self.segment[i] {
            0 => data.len().max(1),
            s => s,
        };
        data.chunks(size)
    }

    /// Datagram `i` of the last call: its source, its bytes, and whether it was cut
    /// because it was larger than a buffer (such a datagram must be dropped).
    pub fn get(&self, i: usize) -> (SocketAddrV4, &[u8], bool) {
        let h = &self.m.hdrs[i];
        let len = (h.msg_len as usize).min(self.m.size);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (sockaddr_to_v4(&self.m.addrs[i]), &self.m.bufs[i * self.m.size..i * self.m.size + len], truncated)
    }
}

/// A batch of datagrams to send, each to its own destination.
///
/// With [`SendBatch::set_segmentation`] on, consecutive datagrams to the same destination
/// of the same size (the last may be shorter) leave as one UDP GSO message (`UDP_SEGMENT`,
/// Linux 4.18): the kernel builds one large packet that the network stack forwards as one
/// and cuts into datagrams only where needed, instead of one trip per datagram. The
/// receiver sees ordinary datagrams. Should the kernel refuse such a message, its
/// datagrams go again one by one; a kernel without UDP_SEGMENT (ENOPROTOOPT) turns
/// segmentation off, any other refusal (EIO, EINVAL: a route or a segment size the kernel
/// does not take) turns it off only for that destination and segment size, for a while
/// (see `gso_refusals`).
///
/// A batch made [`SendBatch::with_tail`] also has a tail buffer: a datagram may be its
/// slot's bytes followed by a range of the tail ([`SendBatch::commit_with_tail`]), sent
/// with both in its iovecs, so that a payload read into the tail leaves from there without
/// a copy (a TCP super-packet from the TUN cut into headers and payloads). The tail can be
/// written again only once the datagrams that take bytes from it have been flushed.
pub struct SendBatch {
    /// The buffers and message headers; the control buffers take UDP_SEGMENT. There are
    /// two iovecs per slot: its bytes, and its range of the tail.
    m: Messages,
    /// Each queued datagram's whole length (its slot's bytes and its tail).
    lens: Vec<usize>,
    /// Each queued datagram's range of the tail, as (start, length); length 0 for none.
    tails: Vec<(usize, usize)>,
    /// The tail buffer (empty unless made with `with_tail`).
    tail: Vec<u8>,
    /// Whether a queued datagram takes bytes from the tail.
    tail_busy: bool,
    /// The first iovec of each slot in the messages built, and one past the last.
    iov_at: Vec<usize>,
    /// The first slot of each message built, and how many datagrams it holds.
    firsts: Vec<usize>,
    counts: Vec<usize>,
    queued: usize,
    segmentation: bool,
    /// The (destination, segment size) whose GSO messages the kernel refused.
    refusals: GsoRefusals,
    /// Datagrams the kernel refused, in total.
    dropped: u64,
}

/// Most datagrams in one GSO message (the kernel's UDP_MAX_SEGMENTS).
const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO message (an IPv4 packet's 65,535 less its headers).
const MAX_GSO_BYTES: usize = 65_507;
/// How long [`SendBatch::flush`] waits for room in a full send buffer, at most, before it
/// drops the rest: the worker then reads its input later, so that the pressure goes back
/// to where the packets come from instead of being lost here.
pub const SEND_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

impl SendBatch {
    /// Room for `count` datagrams of up to `size` bytes.
    pub fn new(count: usize, size: usize) -> Self {
        Self::with_tail(count, size, 0)
    }

    /// Room for `count` datagrams of up to `size` bytes, and a tail buffer of `tail` bytes
    /// (see the type's documentation).
    pub fn with_tail(count: usize, size: usize, tail: usize) -> Self {
        let mut m = Messages::new(count, size);
        m.iovs.resize(2 * count, libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 });
        Self {
            m,
            lens: vec![0; count],
            tails: vec![(0, 0); count],
            tail: vec![0; tail],
            tail_busy: false,
            iov_at: vec![0; count + 1],
            firsts: vec![0; count],
            counts: vec![0; count],
            queued: 0,
            segmentation: false,
            refusals: GsoRefusals::default(),
            dropped: 0,
        }
    }

    /// How many datagrams the kernel refused so far (a send buffer still full after
    /// [`SEND_WAIT`], a firewall, an ICMP error reported on the socket): dropped, as UDP
    /// would, but counted.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sends runs of equal datagrams to one destination as UDP GSO messages (see the type's
    /// documentation).
    pub fn set_segmentation(&mut self, on: bool) {
        self.segmentation = on;
    }

    /// Whether segmentation is on (it turns itself off if the kernel has no UDP_SEGMENT).
    pub fn segmentation(&self) -> bool {
        self.segmentation
    }

    /// How many GSO messages the kernel refused (each was sent again one datagram at a
    /// time).
    pub fn segmentation_refusals(&self) -> u64 {
        self.refusals.count()
    }

    /// How many (destination, segment size) go without segmentation now, after a
    /// refusal.
    pub fn segmentation_refused_kinds(&self) -> usize {
        self.refusals.len()
    }

    /// True when no more datagram fits: flush first.
    pub fn is_full(&self) -> bool {
        self.queued == self.m.hdrs.len()
    }

    /// How many datagrams are queued.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// The buffer of the next datagram, to write into; `None` when the batch is full.
    pub fn next_buf(&mut self) -> Option<&mut [u8]> {
        let i = self.queued;
        (i < self.m.hdrs.len()).then(|| &mut self.m.bufs[i * self.m.size..(i + 1) * self.m.size])
    }

    /// Queues the datagram just written into [`SendBatch::next_buf`]: `len` bytes to `to`.
    pub fn commit(&mut self, len: usize, to: SocketAddrV4) {
        let i = self.queued;
        if i < self.m.hdrs.len() {
            self.lens[i] = len.min(self.m.size);
            self.tails[i] = (0, 0);
            self.m.addrs[i] = v4_to_sockaddr(to);
            self.queued += 1;
        }
    }

    /// The tail buffer, to write into; `None` while queued datagrams take bytes from it
    /// (flush first).
    pub fn tail_mut(&mut self) -> Option<&mut [u8]> {
        (!self.tail_busy).then_some(&mut self.tail[..])
    }

    /// Whether queued datagrams take bytes from the tail (it cannot be written then).
    pub fn tail_busy(&self) -> bool {
        self.tail_busy
    }

    /// The buffer of the next datagram and the tail, both to write into; `None` when the
    /// batch is full or the tail busy.
    pub fn next_buf_and_tail_mut(&mut self) -> Option<(&mut [u8], &mut [u8])> {
        let i = self.queued;
        (i < self.m.hdrs.len() && !self.tail_busy)
            .then(|| (&mut self.m.bufs[i * self.m.size..(i + 1) * self.m.size], &mut self.tail[..]))
    }

    /// The buffer of the next datagram, to write into, and the tail, to read from; `None`
    /// when the batch is full.
    pub fn next_buf_and_tail(&mut self) -> Option<(&mut [u8], &[u8])> {
        let i = self.queued;
        (i < self.m.hdrs.len())
            .then(|| (&mut self.m.bufs[i * self.m.size..(i + 1) * self.m.size], &self.tail[..]))
    }

    /// Queues the datagram of the `len` bytes just written into the next buffer followed
    /// by the bytes `tail` of the tail buffer, to `to`. A range outside the tail queues
    /// nothing and counts a dropped datagram.
    pub fn commit_with_tail(&mut self, len: usize, tail: Range<usize>, to: SocketAddrV4) {
        let i = self.queued;
        if tail.start > tail.end || tail.end > self.tail.len() {
            self.dropped += 1;
            return;
        }
        if i < self.m.hdrs.len() {
            let head = len.min(self.m.size);
            self.lens[i] = head + tail.len();
            self.tails[i] = (tail.start, tail.len());
            self.tail_busy |= !tail.is_empty();
            self.m.addrs[i] = v4_to_sockaddr(to);
            self.queued += 1;
        }
    }

    fn same_destination(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.m.addrs[a], &self.m.addrs[b]);
        x.sin_addr.s_addr == y.sin_addr.s_addr && x.sin_port == y.sin_port
    }

    /// The end of the run of slots that can leave in one message from `start`.
    fn run_end(&self, start: usize, total: usize) -> usize {
        if !self.segmentation {
            return start + 1;
        }
        let seg = self.lens[start];
        let to = &self.m.addrs[start];
        if self.refusals.refused(to.sin_addr.s_addr, to.sin_port, seg as u16) {
            return start + 1;
        }
        let (mut end, mut bytes) = (start + 1, seg);
        while end < total
            && end - start < MAX_SEGMENTS
            && self.lens[end - 1] == seg
            && self.lens[end] <= seg
            && self.lens[end] > 0
            && bytes + self.lens[end] <= MAX_GSO_BYTES
            && self.same_destination(start, end)
        {
            bytes += self.lens[end];
            end += 1;
        }
        end
    }

    /// Builds the messages for slots `from..total`; returns how many.
    fn build(&mut self, from: usize, total: usize) -> usize {
        // Pointers from the whole arrays, taken once after the writes (see `recv`): a run of
        // several iovecs must not start from a pointer that is valid for one element.
        let bufs = self.m.bufs.as_mut_ptr();
        // The kernel only reads the tail; the pointer is made mutable for the iovec's sake.
        let tail = self.tail.as_ptr().cast_mut();
        let mut j = 0;
        for i in from..total {
            let (start, n) = self.tails[i];
            self.iov_at[i] = j;
            self.m.iovs[j] = libc::iovec {
                iov_base: bufs.wrapping_add(i * self.m.size).cast(),
                iov_len: self.lens[i] - n,
            };
            j += 1;
            if n > 0 {
                self.m.iovs[j] = libc::iovec { iov_base: tail.wrapping_add(start).cast(), iov_len: n };
                j += 1;
            }
        }
        self.iov_at[total] = j;
        let (iovs, addrs) = (self.m.iovs.as_mut_ptr(), self.m.addrs.as_mut_ptr());
        let (mut m, mut i) = (0, from);
        while i < total {
            let end = self.run_end(i, total);
            self.firsts[m] = i;
            self.counts[m] = end - i;
            let h = &mut self.m.hdrs[m].msg_hdr;
            h.msg_name = addrs.wrapping_add(i).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = iovs.wrapping_add(self.iov_at[i]);
            h.msg_iovlen = self.iov_at[end] - self.iov_at[i];
            h.msg_flags = 0;
            if end - i > 1 {
                let ctrl = &mut self.m.ctrl[m];
                h.msg_control = ctrl.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE of a u16 fits the 32 aligned bytes of `ctrl`.
                h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
                // SAFETY: the header points at `ctrl`, which holds one cmsghdr and a u16.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), self.lens[i] as u16);
                }
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            self.m.hdrs[m].msg_len = 0;
            m += 1;
            i = end;
        }
        m
    }

    /// Sends everything queued. Returns how many datagrams were queued; those the kernel
    /// refused (on an error such as a full socket buffer) are dropped, as UDP would.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let total = self.queued;
        self.refusals.expire();
        let mut result = Ok(());
        let mut from = 0;
        let mut waited = false;
        'build: while from < total {
            let msgs = self.build(from, total);
            let mut sent = 0;
            while sent < msgs {
                // SAFETY: headers sent..msgs point to live buffers owned by self.
                let n = unsafe {
                    libc::sendmmsg(
                        fd.as_raw_fd(),
                        self.m.hdrs[sent..].as_mut_ptr(),
                        (msgs - sent) as libc::c_uint,
                        0,
                    )
                };
                if n >= 0 {
                    sent += n as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() == io::ErrorKind::WouldBlock && !waited {
                    // The send buffer is full: wait once for room (poll errors end the wait).
                    waited = true;
                    crate::poll::writable(fd, SEND_WAIT);
                    continue;
                }
                let is_gso = self.counts[sent] > 1;
                if is_gso && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT)) {
                    // ENOPROTOOPT: no UDP segmentation in this kernel at all. EIO, EINVAL:
                    // not to this destination (a device without checksum offload) or not
                    // of this size: only that goes one by one. This message is sent again
                    // from its first datagram, one by one; the rest keep theirs.
                    let first = self.firsts[sent];
                    if e.raw_os_error() == Some(libc::ENOPROTOOPT) {
                        self.segmentation = false;
                    }
                    let to = self.m.addrs[first];
                    let seg = self.lens[first] as u16;
                    self.refusals.refuse(to.sin_addr.s_addr, to.sin_port, seg, std::time::Instant::now());
                    from = first;
                    continue 'build;
                }
                // A message the network refuses (e.g. EPERM from a firewall, or an ICMP
                // error reported on this socket) must not block the rest: skip it.
                self.dropped += self.counts[sent] as u64;
                sent += 1;
                if result.is_ok() {
                    result = Err(e);
                }
            }
            break;
        }
        self.queued = 0;
        self.tail_busy = false;
        result.map(|()| total)
    }
}

#[cfg(test)]
mod tests;
