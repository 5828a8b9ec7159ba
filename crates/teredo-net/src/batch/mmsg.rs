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
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn loopback_round_trip() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr4(a_addr) = SocketAddr4::of(&a);
        let SocketAddr4(b_addr) = SocketAddr4::of(&b);
        let mut tx = SendBatch::new(8, 64);
        for i in 0..5u8 {
            let buf = tx.next_buf().unwrap();
            buf[..3].copy_from_slice(&[i, i, i]);
            tx.commit(3, b_addr);
        }
        assert_eq!(tx.flush(a.as_fd()).unwrap(), 5);
        assert!(tx.is_empty());
        let mut rx = RecvBatch::new(8, 64);
        let mut got = Vec::new();
        for _ in 0..100 {
            rx.recv(b.as_fd()).unwrap();
            for i in 0..rx.len() {
                let (from, data, trunc) = rx.get(i);
                assert_eq!(from, a_addr);
                assert!(!trunc);
                got.push(data.to_vec());
            }
            if got.len() == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, (0..5u8).map(|i| vec![i, i, i]).collect::<Vec<_>>());
        // nothing waiting: no block, zero
        assert_eq!(rx.recv(b.as_fd()).unwrap(), 0);
        // an oversized datagram is flagged
        a.send_to(&[1u8; 100], b_addr).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(rx.recv(b.as_fd()).unwrap(), 1);
        assert!(rx.get(0).2);
    }

    #[test]
    fn segmentation_delivers_ordinary_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr4(b_addr) = SocketAddr4::of(&b);
        let SocketAddr4(c_addr) = SocketAddr4::of(&c);
        let mut tx = SendBatch::new(16, 1400);
        tx.set_segmentation(true);
        // Five equal datagrams and a short one to b (one GSO message), one to c, two more
        // to b of another size.
        let plan: Vec<(SocketAddrV4, usize)> = [1200, 1200, 1200, 1200, 1200, 700]
            .into_iter()
            .map(|n| (b_addr, n))
            .chain([(c_addr, 1200), (b_addr, 900), (b_addr, 900)])
            .collect();
        for (k, (to, n)) in plan.iter().enumerate() {
            let buf = tx.next_buf().unwrap();
            buf[..*n].fill(k as u8);
            tx.commit(*n, *to);
        }
        assert_eq!(tx.flush(a.as_fd()).unwrap(), plan.len());
        assert!(tx.segmentation(), "this kernel took the UDP_SEGMENT messages");
        let mut rx = RecvBatch::new(16, 2048);
        let mut got = Vec::new();
        for _ in 0..100 {
            for s in [&b, &c] {
                rx.recv(s.as_fd()).unwrap();
                for i in 0..rx.len() {
                    let (_, data, trunc) = rx.get(i);
                    assert!(!trunc);
                    got.push((data[0], data.len(), std::ptr::eq(s, &c)));
                }
            }
            if got.len() == plan.len() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        got.sort();
        let want: Vec<(u8, usize, bool)> =
            plan.iter().enumerate().map(|(k, (to, n))| (k as u8, *n, *to == c_addr)).collect();
        // Every datagram arrived whole, with its own contents, at its own destination.
        assert_eq!(got, want);
    }

    #[test]
    fn a_refusal_stops_segmentation_only_for_its_destination_and_size() {
        let b_addr = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 5000);
        let c_addr = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 5001);
        let mut tx = SendBatch::new(16, 1400);
        tx.set_segmentation(true);
        let to = v4_to_sockaddr(b_addr);
        tx.refusals.refuse(to.sin_addr.s_addr, to.sin_port, 1200, std::time::Instant::now());
        for (to, n) in
            [(b_addr, 1200), (b_addr, 1200), (c_addr, 1200), (c_addr, 1200), (b_addr, 900), (b_addr, 900)]
        {
            tx.next_buf().unwrap();
            tx.commit(n, to);
        }
        let msgs = tx.build(0, 6);
        assert_eq!(
            tx.counts[..msgs],
            [1, 1, 2, 2],
            "b's 1200-byte datagrams one by one, the rest in GSO messages"
        );
    }

    /// Sends, from `a` to `b`, datagrams of a head of `head` bytes (`k` repeated) and a
    /// tail range of `tail` bytes (`k + 100` repeated), every other one without a tail;
    /// returns what `b` received.
    fn send_with_tails(
        a: &UdpSocket,
        b: &UdpSocket,
        tx: &mut SendBatch,
        head: usize,
        tail: usize,
    ) -> Vec<Vec<u8>> {
        let SocketAddr4(b_addr) = SocketAddr4::of(b);
        let t = tx.tail_mut().expect("the tail is free");
        for k in 0..4u8 {
            t[usize::from(k) * tail..(usize::from(k) + 1) * tail].fill(k + 100);
        }
        let mut want = Vec::new();
        for k in 0..8u8 {
            let (buf, _) = tx.next_buf_and_tail().unwrap();
            let with_tail = k % 2 == 0;
            let n = if with_tail { head } else { head + tail };
            buf[..n].fill(k);
            let mut w = vec![k; n];
            if with_tail {
                let at = usize::from(k / 2) * tail;
                tx.commit_with_tail(head, at..at + tail, b_addr);
                w.resize(head + tail, k / 2 + 100);
            } else {
                tx.commit(n, b_addr);
            }
            want.push(w);
        }
        assert!(tx.tail_mut().is_none(), "busy until flushed");
        assert_eq!(tx.flush(a.as_fd()).unwrap(), 8);
        assert!(tx.tail_mut().is_some(), "free once flushed");
        let mut rx = RecvBatch::new(16, 4096);
        let mut got = Vec::new();
        for _ in 0..100 {
            rx.recv(b.as_fd()).unwrap();
            got.extend((0..rx.len()).map(|i| rx.get(i).1.to_vec()));
            if got.len() == 8 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, want);
        got
    }

    #[test]
    fn datagrams_with_tails_arrive_whole_with_and_without_segmentation() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for segmentation in [false, true] {
            let mut tx = SendBatch::with_tail(16, 2048, 8192);
            tx.set_segmentation(segmentation);
            send_with_tails(&a, &b, &mut tx, 72, 1000);
            assert_eq!(tx.dropped(), 0);
        }
        // With segmentation the eight equal datagrams went as one GSO message of 12 iovecs.
        let mut tx = SendBatch::with_tail(16, 2048, 8192);
        tx.set_segmentation(true);
        for k in 0..8 {
            tx.next_buf().unwrap();
            if k % 2 == 0 {
                tx.commit_with_tail(72, 0..1000, SocketAddr4::of(&b).0);
            } else {
                tx.commit(1072, SocketAddr4::of(&b).0);
            }
        }
        assert_eq!(tx.build(0, 8), 1);
        assert_eq!((tx.counts[0], tx.m.hdrs[0].msg_hdr.msg_iovlen), (8, 12));
        // A range outside the tail queues nothing and is counted.
        let mut tx = SendBatch::with_tail(4, 2048, 100);
        tx.commit_with_tail(72, 50..101, SocketAddr4::of(&b).0);
        assert!(tx.is_empty());
        assert_eq!(tx.dropped(), 1);
    }

    #[test]
    fn a_refused_gso_message_with_tails_goes_one_by_one() {
        let a = socket2::Socket::from(UdpSocket::bind("127.0.0.1:0").unwrap());
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value.
        let r = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_NO_CHECK");
        let a: UdpSocket = a.into();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut tx = SendBatch::with_tail(16, 2048, 8192);
        tx.set_segmentation(true);
        send_with_tails(&a, &b, &mut tx, 60, 1200);
        assert_eq!(tx.segmentation_refusals(), 1);
        assert_eq!(tx.dropped(), 0);
    }

    #[test]
    fn a_refused_gso_message_goes_one_by_one() {
        // A socket without UDP checksums: the kernel refuses its GSO messages (EINVAL).
        let a = socket2::Socket::from(UdpSocket::bind("127.0.0.1:0").unwrap());
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value.
        let r = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_NO_CHECK");
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr4(b_addr) = SocketAddr4::of(&b);
        let mut tx = SendBatch::new(16, 1400);
        tx.set_segmentation(true);
        for k in 0..4u8 {
            tx.next_buf().unwrap()[..1000].fill(k);
            tx.commit(1000, b_addr);
        }
        assert_eq!(tx.flush(a.as_fd()).unwrap(), 4);
        assert_eq!(tx.segmentation_refusals(), 1);
        assert_eq!(tx.segmentation_refused_kinds(), 1);
        assert!(tx.segmentation(), "still on for everything else");
        let mut rx = RecvBatch::new(16, 2048);
        let mut got = Vec::new();
        for _ in 0..100 {
            rx.recv(b.as_fd()).unwrap();
            got.extend((0..rx.len()).map(|i| (rx.get(i).1[0], rx.get(i).1.len())));
            if got.len() == 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, [(0, 1000), (1, 1000), (2, 1000), (3, 1000)]);
        // The next batch to b goes one by one at once, without another refusal.
        for k in 0..4u8 {
            tx.next_buf().unwrap()[..1000].fill(k);
            tx.commit(1000, b_addr);
        }
        assert_eq!(tx.flush(a.as_fd()).unwrap(), 4);
        assert_eq!(tx.segmentation_refusals(), 1);
    }

    #[test]
    fn gro_bursts_come_back_as_their_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = socket2::Socket::from(UdpSocket::bind("127.0.0.1:0").unwrap());
        assert!(crate::udp::enable_gro(&b), "this kernel has UDP GRO");
        let b_addr = crate::udp::local_v4(&b).unwrap();
        let mut tx = SendBatch::new(16, 1400);
        tx.set_segmentation(true);
        let sizes = [1200, 1200, 1200, 1200, 300];
        for (k, n) in sizes.iter().enumerate() {
            tx.next_buf().unwrap()[..*n].fill(k as u8);
            tx.commit(*n, b_addr);
        }
        tx.flush(a.as_fd()).unwrap();
        let mut rx = RecvBatch::new(4, 65536);
        let mut got = Vec::new();
        for _ in 0..100 {
            rx.recv(b.as_fd()).unwrap();
            for i in 0..rx.len() {
                got.extend(rx.segments(i).map(|d| (d[0], d.len(), d.iter().all(|&x| x == d[0]))));
            }
            if got.len() >= sizes.len() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let want: Vec<_> = sizes.iter().enumerate().map(|(k, n)| (k as u8, *n, true)).collect();
        assert_eq!(got, want);
    }

    struct SocketAddr4(SocketAddrV4);
    impl SocketAddr4 {
        fn of(s: &UdpSocket) -> Self {
            match s.local_addr().unwrap() {
                std::net::SocketAddr::V4(a) => Self(a),
                std::net::SocketAddr::V6(_) => unreachable!(),
            }
        }
    }
}
