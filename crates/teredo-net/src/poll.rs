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
