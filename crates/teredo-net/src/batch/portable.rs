//! The portable batches: [`RecvBatch`] and [`SendBatch`] with the interface of the Linux
//! ones (`super::mmsg`), filled by recvfrom(2) and sent by sendto(2), one datagram per
//! system call, on a non-blocking socket. No UDP GRO (each buffer holds one datagram) and
//! no GSO (segmentation is accepted and ignored).

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use super::{sockaddr_to_v4, v4_to_sockaddr};

/// How long [`SendBatch::flush`] waits for room in a full send buffer, at most.
pub const SEND_WAIT: Duration = Duration::from_millis(20);

/// A batch of receive buffers, one datagram each.
pub struct RecvBatch {
    /// `count` buffers of `size + 1` bytes: a datagram that fills the extra byte was cut.
    bufs: Vec<u8>,
    size: usize,
    /// Per buffer: source, length, cut.
    got: Vec<(SocketAddrV4, usize, bool)>,
    count: usize,
}

impl RecvBatch {
    /// `count` buffers of `size` bytes.
    pub fn new(count: usize, size: usize) -> Self {
        Self { bufs: vec![0; count * (size + 1)], size, got: Vec::with_capacity(count), count }
    }

    /// Receives up to `count` datagrams without blocking; returns how many.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.got.clear();
        let slot = self.size + 1;
        while self.got.len() < self.count {
            let i = self.got.len();
            let buf = &mut self.bufs[i * slot..(i + 1) * slot];
            // SAFETY: sockaddr_in is plain old data.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: `buf` and `sa` are valid for writing for the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut sa).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(self.got.len()),
                    _ if !self.got.is_empty() => Ok(self.got.len()),
                    _ => Err(e),
                };
            }
            let n = n as usize;
            self.got.push((sockaddr_to_v4(&sa), n.min(self.size), n > self.size));
        }
        Ok(self.got.len())
    }

    /// How many datagrams the last call received.
    pub fn len(&self) -> usize {
        self.got.len()
    }

    /// True when the last call received nothing.
    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// The datagram in buffer `i`, alone (no GRO here).
    pub fn segments(&self, i: usize) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.get(i).1)
    }

    /// Datagram `i` of the last call: its source, its bytes, and whether it was cut.
    pub fn get(&self, i: usize) -> (SocketAddrV4, &[u8], bool) {
        let (from, len, cut) = self.got[i];
        let start = i * (self.size + 1);
        (from, &self.bufs[start..start + len], cut)
    }
}

/// A batch of datagrams to send, each to its own destination. Its tail buffer (see the
/// Linux `SendBatch`) is copied into the slot at [`SendBatch::commit_with_tail`], so it is
/// never busy.
pub struct SendBatch {
    bufs: Vec<u8>,
    size: usize,
    tail: Vec<u8>,
    queued: Vec<(SocketAddrV4, usize)>,
    count: usize,
    dropped: u64,
}

impl SendBatch {
    /// Room for `count` datagrams of up to `size` bytes.
    pub fn new(count: usize, size: usize) -> Self {
        Self::with_tail(count, size, 0)
    }

    /// Room for `count` datagrams of up to `size` bytes, and a tail buffer of `tail` bytes.
    pub fn with_tail(count: usize, size: usize, tail: usize) -> Self {
        Self {
            bufs: vec![0; count * size],
            size,
            tail: vec![0; tail],
            queued: Vec::with_capacity(count),
            count,
            dropped: 0,
        }
    }

    /// The tail buffer, to write into (never busy here).
    pub fn tail_mut(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.tail[..])
    }

    /// Whether queued datagrams take bytes from the tail: never here.
    pub fn tail_busy(&self) -> bool {
        false
    }

    /// The buffer of the next datagram and the tail, both to write into; `None` when the
    /// batch is full.
    pub fn next_buf_and_tail_mut(&mut self) -> Option<(&mut [u8], &mut [u8])> {
        let i = self.queued.len();
        (i < self.count).then(|| (&mut self.bufs[i * self.size..(i + 1) * self.size], &mut self.tail[..]))
    }

    /// The buffer of the next datagram, to write into, and the tail, to read from; `None`
    /// when the batch is full.
    pub fn next_buf_and_tail(&mut self) -> Option<(&mut [u8], &[u8])> {
        let i = self.queued.len();
        (i < self.count).then(|| (&mut self.bufs[i * self.size..(i + 1) * self.size], &self.tail[..]))
    }

    /// Queues the `len` bytes just written into the next buffer followed by the bytes
    /// `tail` of the tail buffer (copied after them), to `to`. A range outside the tail, or
    /// a datagram larger than a slot, queues nothing and counts a dropped datagram.
    pub fn commit_with_tail(&mut self, len: usize, tail: std::ops::Range<usize>, to: SocketAddrV4) {
        let i = self.queued.len();
        if tail.start > tail.end || tail.end > self.tail.len() || len + tail.len() > self.size {
            self.dropped += 1;
            return;
        }
        if i < self.count {
            let at = i * self.size + len;
            self.bufs[at..at + tail.len()].copy_from_slice(&self.tail[tail.clone()]);
            self.queued.push((to, len + tail.len()));
        }
    }

    /// How many datagrams the kernel refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Accepted for the interface's sake: there is no UDP GSO here.
    pub fn set_segmentation(&mut self, _on: bool) {}

    /// GSO messages the kernel refused: none, there are no GSO messages here.
    pub fn segmentation_refusals(&self) -> u64 {
        0
    }

    /// Always false: no UDP GSO here.
    pub fn segmentation(&self) -> bool {
        false
    }

    /// True when no more datagram fits: flush first.
    pub fn is_full(&self) -> bool {
        self.queued.len() == self.count
    }

    /// How many datagrams are queued.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// The buffer of the next datagram, to write into; `None` when the batch is full.
    pub fn next_buf(&mut self) -> Option<&mut [u8]> {
        let i = self.queued.len();
        (i < self.count).then(|| &mut self.bufs[i * self.size..(i + 1) * self.size])
    }

    /// Queues the datagram just written into [`SendBatch::next_buf`]: `len` bytes to `to`.
    pub fn commit(&mut self, len: usize, to: SocketAddrV4) {
        if self.queued.len() < self.count {
            self.queued.push((to, len.min(self.size)));
        }
    }

    /// Sends everything queued, waiting once up to [`SEND_WAIT`] for room in a full send
    /// buffer; what the kernel refuses is dropped and counted. Returns how many were queued.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let total = self.queued.len();
        let mut waited = false;
        let mut i = 0;
        while i < total {
            let (to, len) = self.queued[i];
            let sa = v4_to_sockaddr(to);
            let buf = &self.bufs[i * self.size..i * self.size + len];
            // SAFETY: `buf` and `sa` are valid for reading for the lengths given.
            let n = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&raw const sa).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                i += 1;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if !waited => {
                    // The send buffer is full: wait once for room.
                    waited = true;
                    crate::poll::writable(fd, SEND_WAIT);
                }
                _ => {
                    self.dropped += 1;
                    i += 1;
                }
            }
        }
        self.queued.clear();
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn loopback_round_trip() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let to = match b.local_addr().unwrap() {
            std::net::SocketAddr::V4(v) => v,
            _ => unreachable!(),
        };
        let mut tx = SendBatch::new(4, 64);
        for (n, len) in [(1u8, 10), (2, 64), (3, 1)] {
            let buf = tx.next_buf().unwrap();
            buf[..len].fill(n);
            tx.commit(len, to);
        }
        assert_eq!(tx.flush(a.as_fd()).unwrap(), 3);
        assert!(tx.is_empty());
        // A datagram larger than a receive buffer is received cut, and flagged.
        a.send_to(&[9; 40], to).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut rx = RecvBatch::new(8, 32);
        assert_eq!(rx.recv(b.as_fd()).unwrap(), 4);
        let got: Vec<(usize, u8, bool)> =
            (0..4).map(|i| rx.get(i)).map(|(_, d, cut)| (d.len(), d[0], cut)).collect();
        assert_eq!(got, [(10, 1, false), (32, 2, true), (1, 3, false), (32, 9, true)]);
        assert_eq!(rx.get(0).0.port(), a.local_addr().unwrap().port());
        assert_eq!(rx.segments(0).count(), 1);
        assert_eq!(rx.recv(b.as_fd()).unwrap(), 0, "nothing more, without blocking");
    }

    #[test]
    fn a_tail_is_sent_after_its_head() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let std::net::SocketAddr::V4(to) = b.local_addr().unwrap() else { unreachable!() };
        let mut tx = SendBatch::with_tail(4, 64, 32);
        tx.tail_mut().unwrap()[..20].fill(7);
        let (buf, _) = tx.next_buf_and_tail().unwrap();
        buf[..4].fill(1);
        tx.commit_with_tail(4, 10..20, to);
        tx.commit_with_tail(4, 30..33, to);
        tx.commit_with_tail(60, 0..5, to);
        assert_eq!((tx.len(), tx.dropped()), (1, 2), "a range outside the tail, a datagram too large");
        assert!(tx.tail_mut().is_some());
        assert_eq!(tx.flush(a.as_fd()).unwrap(), 1);
        std::thread::sleep(Duration::from_millis(50));
        let mut rx = RecvBatch::new(4, 64);
        assert_eq!(rx.recv(b.as_fd()).unwrap(), 1);
        assert_eq!(rx.get(0).1, [1, 1, 1, 1, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]);
    }
}
