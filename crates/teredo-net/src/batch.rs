//! Batched UDP I/O over IPv4: many datagrams per system call with recvmmsg(2) and
//! sendmmsg(2), into and out of buffers allocated once. The header arrays point into the
//! batch's own buffers; they are rebuilt right before each call, so the structure can
//! move freely between calls and nothing is allocated per packet.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, BorrowedFd};

fn sockaddr_to_v4(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)), u16::from_be(sa.sin_port))
}

fn v4_to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = a.port().to_be();
    sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    sa
}

/// A batch of receive buffers.
pub struct RecvBatch {
    size: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    received: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` only ever point into the batch's own
// vectors and are rebuilt before each use.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `count` buffers of `size` bytes each.
    pub fn new(count: usize, size: usize) -> Self {
        // SAFETY: plain old data; zero is valid.
        let zero_sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Self {
            size,
            bufs: vec![0; count * size],
            addrs: vec![zero_sa; count],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; count],
            hdrs: vec![zero_hdr; count],
            received: 0,
        }
    }

    /// Receives up to the batch size without blocking; returns how many datagrams came
    /// (0 when none was waiting).
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let count = self.hdrs.len();
        for i in 0..count {
            self.iovs[i] =
                libc::iovec { iov_base: self.bufs[i * self.size..].as_mut_ptr().cast(), iov_len: self.size };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&raw mut self.addrs[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &raw mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points to live buffers of the stated sizes owned by self.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
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

    /// Datagram `i` of the last call: its source, its bytes, and whether it was cut
    /// because it was larger than a buffer (such a datagram must be dropped).
    pub fn get(&self, i: usize) -> (SocketAddrV4, &[u8], bool) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.size);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (sockaddr_to_v4(&self.addrs[i]), &self.bufs[i * self.size..i * self.size + len], truncated)
    }
}

/// A batch of datagrams to send, each to its own destination.
pub struct SendBatch {
    size: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    queued: usize,
}

// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Room for `count` datagrams of up to `size` bytes.
    pub fn new(count: usize, size: usize) -> Self {
        // SAFETY: plain old data; zero is valid.
        let zero_sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Self {
            size,
            bufs: vec![0; count * size],
            lens: vec![0; count],
            addrs: vec![zero_sa; count],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; count],
            hdrs: vec![zero_hdr; count],
            queued: 0,
        }
    }

    /// True when no more datagram fits: flush first.
    pub fn is_full(&self) -> bool {
        self.queued == self.hdrs.len()
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
        (i < self.hdrs.len()).then(|| &mut self.bufs[i * self.size..(i + 1) * self.size])
    }

    /// Queues the datagram just written into [`SendBatch::next_buf`]: `len` bytes to `to`.
    pub fn commit(&mut self, len: usize, to: SocketAddrV4) {
        let i = self.queued;
        if i < self.hdrs.len() {
            self.lens[i] = len.min(self.size);
            self.addrs[i] = v4_to_sockaddr(to);
            self.queued += 1;
        }
    }

    /// Sends everything queued. Returns how many datagrams the kernel took; the rest
    /// (on an error such as a full socket buffer) is dropped, as UDP would.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let mut sent = 0;
        let total = self.queued;
        for i in 0..total {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * self.size..].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&raw mut self.addrs[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &raw mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut result = Ok(());
        while sent < total {
            // SAFETY: headers sent..total point to live buffers owned by self.
            let n = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
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
                // A datagram the network refuses (e.g. EPERM from a firewall, or an ICMP
                // error reported on this socket) must not block the rest: skip it.
                sent += 1;
                if result.is_ok() {
                    result = Err(e);
                }
                continue;
            }
            sent += n as usize;
        }
        let ok = total;
        self.queued = 0;
        result.map(|()| ok)
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
