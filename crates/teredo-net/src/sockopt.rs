//! Socket options that `socket2` does not cover (UDP GRO and GSO, path-MTU discovery,
//! packet-socket options): one checked `setsockopt(2)` for all of them.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Sets the `c_int` socket option `level`/`name` of `fd` to `value`.
pub fn set_int(fd: impl AsFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    set_bytes(fd, level, name, &value.to_ne_bytes())
}

/// Sets the socket option `level`/`name` of `fd` to the bytes of `value` (an option that is
/// not a `c_int`, such as IP_OPTIONS).
pub fn set_bytes(fd: impl AsFd, level: libc::c_int, name: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: a valid descriptor and an option value of the stated size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
