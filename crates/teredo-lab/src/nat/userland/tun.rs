//! The userland NAT's TUN device: opened (and so created) in the NAT namespace, it carries
//! whole IPv4 packets between the kernel's routing and the NAT's table.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

/// The part of `struct ifreq` that TUNSETIFF reads: the name and the flags, padded to the
/// size of the kernel's union.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TUN device (no packet-information header: each read is one IPv4 packet). The
/// interface exists while this is open.
#[derive(Debug)]
pub(crate) struct Tun {
    file: File,
}

impl Tun {
    /// Creates TUN interface `name` in the calling thread's network namespace.
    pub(crate) fn open(name: &str) -> std::io::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad interface name"));
        }
        // SAFETY: a plain open(2) of a constant, NUL-terminated path.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        req.flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads a struct ifreq, which IfReq's layout covers (name, flags,
        // padding to 40 bytes); it lives across the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { file })
    }

    /// Waits at most `timeout` for a packet; `Ok(0)` when none came.
    pub(crate) fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        let mut pfd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        if n == 0 || pfd.revents & libc::POLLIN == 0 {
            return Ok(0);
        }
        self.file.read(buf)
    }

    /// Hands one IPv4 packet back to the kernel, which routes it.
    pub(crate) fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        self.file.write(packet).map(drop)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ifreq_is_as_large_as_the_kernels() {
        assert_eq!(size_of::<super::IfReq>(), 40);
    }
}
