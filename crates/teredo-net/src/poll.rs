//! Waiting until one of several sockets is readable, with a timeout (poll(2)), so that a
//! worker serving two sockets sleeps in one place and still notices a shutdown request.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Waits until `fd` has room to write, or `timeout` passes (or poll fails: the caller
/// then simply tries again).
pub fn writable(fd: BorrowedFd<'_>, timeout: Duration) {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// Waits until at least one of `fds` is readable or `timeout` passes. Returns one flag
/// per descriptor, in order (at most 8 descriptors).
pub fn readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<[bool; 8]> {
    let mut p = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 8];
    let n = fds.len().min(8);
    for (slot, fd) in p.iter_mut().zip(fds) {
        *slot = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    }
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: p holds n initialised pollfd entries.
    let r = unsafe { libc::poll(p.as_mut_ptr(), n as libc::nfds_t, ms) };
    let mut out = [false; 8];
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(out) } else { Err(e) };
    }
    for i in 0..n {
        out[i] = p[i].revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    }
    Ok(out)
}

/// The most descriptors [`readable_many`] waits on; more are ignored.
pub const MAX_FDS: usize = 128;

/// Waits until at least one of `fds` (at most [`MAX_FDS`], the rest ignored) is readable
/// or `timeout` passes; sets `ready[i]` for each readable descriptor `i` and returns how
/// many descriptors were waited on. Allocates nothing.
pub fn readable_many<'a>(
    fds: impl IntoIterator<Item = BorrowedFd<'a>>,
    timeout: Duration,
    ready: &mut [bool; MAX_FDS],
) -> io::Result<usize> {
    let mut p = [libc::pollfd { fd: -1, events: 0, revents: 0 }; MAX_FDS];
    let mut n = 0;
    for (slot, fd) in p.iter_mut().zip(fds) {
        *slot = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        n += 1;
    }
    ready.fill(false);
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: p holds n initialised pollfd entries.
    let r = unsafe { libc::poll(p.as_mut_ptr(), n as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(n) } else { Err(e) };
    }
    for (r, q) in ready.iter_mut().zip(&p[..n]) {
        *r = q.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn many_descriptors() {
        let socks: Vec<std::net::UdpSocket> =
            (0..10).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        let mut ready = [false; MAX_FDS];
        let n = readable_many(socks.iter().map(|s| s.as_fd()), Duration::ZERO, &mut ready).unwrap();
        assert_eq!(n, 10);
        assert!(!ready.iter().any(|r| *r));
        let to = socks[7].local_addr().unwrap();
        socks[0].send_to(b"x", to).unwrap();
        let n = readable_many(socks.iter().map(|s| s.as_fd()), Duration::from_secs(5), &mut ready).unwrap();
        assert_eq!(n, 10);
        assert_eq!(ready.iter().position(|r| *r), Some(7));
    }
}
