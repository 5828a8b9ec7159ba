//! The TUN device a Teredo client or relay exchanges IPv6 packets with the kernel through
//! (miredo-facts §8, libtun6): create it (optionally with Miredo's `InterfaceName`), learn
//! its name and index, and read and write whole IPv6 packets, blocking or not.
//!
//! - Linux: our own few ioctls on `/dev/net/tun` with `IFF_TUN | IFF_NO_PI`, so a read
//!   returns exactly one IP packet with no packet-information header. With
//!   [`TunOptions::multi_queue`] the device is created with `IFF_MULTI_QUEUE` and
//!   [`Tun::clone_queue`] attaches one more queue (one per worker); the kernel spreads
//!   outgoing flows over the queues. Tested here.
//! - FreeBSD, OpenBSD, NetBSD, macOS: `tun-rs` (which strips the 4-byte address-family
//!   header those systems prepend). Written but **untested**: we cannot build for these
//!   targets on this machine.
//!
//! With [`TunOptions::offload`] (Linux) the device is created with `IFF_VNET_HDR` and asked
//! for checksum, TCP/IPv6 and (Linux 6.2) UDP segmentation offload (`TUNSETOFFLOAD` with
//! `TUN_F_CSUM | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6`, or without the last two where the
//! kernel refuses them): every packet then travels behind a 10-byte `struct virtio_net_hdr`,
//! a read may return a TCP or UDP super-packet of up to 64 KiB with a partial checksum, and
//! a write may hand the kernel a TCP one ([`Tun::recv_offload`], [`Tun::send_offload`]). The packet path cuts
//! and joins them with `teredo_proto::offload`.
//!
//! The device's name and index are fixed at creation. Creating a device (and attaching a
//! queue to it) needs CAP_NET_ADMIN; reading and writing the descriptor afterwards does not,
//! so the unprivileged packet path keeps the descriptors it was handed.

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::OwnedFd;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// The longest interface name the kernel accepts (IFNAMSIZ − 1).
pub const MAX_NAME_LEN: usize = 15;

/// How to create the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunOptions {
    /// The interface name (Miredo's `InterfaceName`); `None` lets the kernel choose
    /// (`tun0`, `tun1`, …). On Linux a `%d` in the name is replaced by the kernel.
    pub name: Option<String>,
    /// Create a multi-queue device (Linux), so that [`Tun::clone_queue`] can open more
    /// queues on it.
    pub multi_queue: bool,
    /// Create the device with virtio-net headers and ask for offloads (Linux; see the
    /// module documentation). Whether the kernel granted the offloads is
    /// [`Tun::offloads`].
    pub offload: bool,
}

/// The length of the virtio-net header in front of every packet of a device created with
/// [`TunOptions::offload`].
pub const VNET_HDR_LEN: usize = 10;

/// The header of a plain packet: no segmentation, checksum complete.
const PLAIN_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// Why the device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// The requested name cannot be an interface name.
    #[error("invalid interface name {0:?}: 1 to 15 bytes, no '/', no white space")]
    InvalidName(String),
    /// The TUN driver is missing.
    #[error("cannot open {path}: {source} (is the tun module loaded? try \"modprobe tun\")")]
    NoDriver {
        /// The device node.
        path: &'static str,
        /// The error.
        source: io::Error,
    },
    /// A system call failed.
    #[error("{call}: {source}")]
    Call {
        /// What was being done.
        call: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The operation is not available for this device or platform.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Checks that `name` can be an interface name: 1 to 15 bytes, printable ASCII without
/// white space or '/', and not "." or "..".
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// A TUN device (one queue of it, on Linux). Dropping the last queue removes the
/// interface (it is never made persistent).
#[derive(Debug)]
pub struct Tun {
    #[cfg(target_os = "linux")]
    fd: OwnedFd,
    #[cfg(not(target_os = "linux"))]
    dev: std::sync::Arc<tun_rs::SyncDevice>,
    name: String,
    ifindex: u32,
    multi_queue: bool,
    /// Packets carry a virtio-net header.
    vnet: bool,
    /// The kernel accepted TUNSETOFFLOAD (reads may be super-packets with partial checksums).
    offloads: bool,
    /// The kernel accepted UDP segmentation offload too (Linux 6.2): UDP super-packets may
    /// be read and written.
    uso: bool,
}

impl Tun {
    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether the device was created multi-queue.
    pub fn is_multi_queue(&self) -> bool {
        self.multi_queue
    }

    /// Whether packets carry a virtio-net header ([`TunOptions::offload`]).
    pub fn has_vnet_header(&self) -> bool {
        self.vnet
    }

    /// Whether the kernel accepted the checksum and TCP segmentation offloads: reads may then
    /// return super-packets and partial checksums.
    pub fn offloads(&self) -> bool {
        self.offloads
    }

    /// Whether the kernel accepted UDP segmentation offload too (Linux 6.2): UDP
    /// super-packets (`GSO_UDP_L4`) may then be read, and written.
    pub fn uso(&self) -> bool {
        self.uso
    }
}

#[cfg(target_os = "linux")]
impl Tun {
    /// Creates the device. Needs CAP_NET_ADMIN.
    pub fn create(options: &TunOptions) -> Result<Self, TunError> {
        const PATH: &str = "/dev/net/tun";
        // SAFETY: ifreq is plain old data; all-zero is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        if let Some(name) = &options.name {
            if !valid_name(name) {
                return Err(TunError::InvalidName(name.clone()));
            }
            for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
                *dst = src as libc::c_char;
            }
        }
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if options.multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        if options.offload {
            flags |= libc::IFF_VNET_HDR;
        }
        req.ifr_ifru.ifru_flags = flags as libc::c_short;
        let fd = open_clone_device(PATH)?;
        // SAFETY: a valid descriptor and a valid ifreq the kernel reads and fills.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } != 0 {
            return Err(TunError::Call { call: "ioctl(TUNSETIFF)", source: io::Error::last_os_error() });
        }
        let name = ifreq_name(&req);
        let ifindex = index_of(&name)?;
        let (mut offloads, mut uso) = (false, false);
        if options.offload {
            // UDP segmentation (Linux 6.2) too where the kernel has it, else TCP only.
            let tcp = libc::TUN_F_CSUM | libc::TUN_F_TSO6;
            let set = |features: libc::c_uint| {
                // SAFETY: TUNSETOFFLOAD takes its argument by value.
                unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, features as libc::c_ulong) == 0 }
            };
            uso = set(tcp | libc::TUN_F_USO4 | libc::TUN_F_USO6);
            offloads = uso || set(tcp);
            if !offloads {
                tracing::info!(
                    "{name}: no TUN offloads ({}); packets cross one by one",
                    io::Error::last_os_error()
                );
            }
        }
        Ok(Self { fd, name, ifindex, multi_queue: options.multi_queue, vnet: options.offload, offloads, uso })
    }

    /// Opens one more queue of a multi-queue device (for one more worker). Needs
    /// CAP_NET_ADMIN, like creation: call it before dropping privileges.
    pub fn clone_queue(&self) -> Result<Self, TunError> {
        if !self.multi_queue {
            return Err(TunError::Unsupported("clone_queue needs a device created with multi_queue"));
        }
        Self::create(&TunOptions { name: Some(self.name.clone()), multi_queue: true, offload: self.vnet })
    }

    /// Reads one packet into `buf`; returns its length. Blocks unless the device is
    /// non-blocking (then `WouldBlock` when nothing is waiting). A packet longer than
    /// `buf` is cut. On a device with virtio-net headers the header is read and dropped:
    /// use [`Tun::recv_offload`] there, as the packet may be a super-packet.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.vnet {
            let mut hdr = [0; VNET_HDR_LEN];
            return self.recv_offload(&mut hdr, buf);
        }
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Reads one packet and its virtio-net header (a device created with
    /// [`TunOptions::offload`]); returns the packet's length, without the header. `buf`
    /// should hold 65,535 bytes: a super-packet longer than `buf` is cut. On a device without
    /// the headers, `hdr` is set to the plain (all-zero) header.
    pub fn recv_offload(&self, hdr: &mut [u8; VNET_HDR_LEN], buf: &mut [u8]) -> io::Result<usize> {
        if !self.vnet {
            *hdr = PLAIN_HDR;
            return self.recv(buf);
        }
        let iov = [
            libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: VNET_HDR_LEN },
            libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() },
        ];
        // SAFETY: both iovecs describe live, writable buffers of their lengths.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize).saturating_sub(VNET_HDR_LEN))
    }

    /// Writes one whole packet to the kernel (behind an empty virtio-net header on a device
    /// that has them).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        if self.vnet {
            return self.send_offload(&PLAIN_HDR, packet);
        }
        // SAFETY: packet is valid for reads of packet.len() bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Writes one packet behind the virtio-net header `hdr` (a device created with
    /// [`TunOptions::offload`]): a super-packet the kernel segments or receives whole.
    /// Returns the packet's length written, without the header. On a device without the
    /// headers only the plain header is accepted (else `InvalidInput`).
    pub fn send_offload(&self, hdr: &[u8; VNET_HDR_LEN], packet: &[u8]) -> io::Result<usize> {
        if !self.vnet {
            if *hdr != PLAIN_HDR {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "no virtio-net headers on this TUN"));
            }
            return self.send(packet);
        }
        let iov = [
            libc::iovec { iov_base: hdr.as_ptr().cast_mut().cast(), iov_len: VNET_HDR_LEN },
            libc::iovec { iov_base: packet.as_ptr().cast_mut().cast(), iov_len: packet.len() },
        ];
        // SAFETY: both iovecs describe live buffers the kernel only reads.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((n as usize).saturating_sub(VNET_HDR_LEN))
    }

    /// Makes reads and writes non-blocking (or blocking again).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: fcntl on a valid descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if nonblocking { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn open_clone_device(path: &'static str) -> Result<OwnedFd, TunError> {
    use std::os::fd::FromRawFd;
    let c = c"/dev/net/tun";
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        let source = io::Error::last_os_error();
        return Err(match source.raw_os_error() {
            Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => TunError::NoDriver { path, source },
            _ => TunError::Call { call: "open(/dev/net/tun)", source },
        });
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(target_os = "linux")]
fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The index of the interface called `name`.
pub fn index_of(name: &str) -> Result<u32, TunError> {
    let c = std::ffi::CString::new(name).map_err(|_| TunError::InvalidName(name.to_owned()))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(TunError::Call { call: "if_nametoindex", source: io::Error::last_os_error() }),
        i => Ok(i),
    }
}

/// The current name of the interface with index `ifindex` (names can change; Miredo looks
/// it up again before every hook run).
pub fn name_of(ifindex: u32) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    Ok(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

// ---- BSD and macOS: tun-rs. Written but untested (no such target can be built here). ----

#[cfg(not(target_os = "linux"))]
impl Tun {
    /// Creates the device through tun-rs (packet-information headers stripped). Needs root.
    pub fn create(options: &TunOptions) -> Result<Self, TunError> {
        let mut builder = tun_rs::DeviceBuilder::new();
        if let Some(name) = &options.name {
            if !valid_name(name) {
                return Err(TunError::InvalidName(name.clone()));
            }
            builder = builder.name(name.clone());
        }
        let dev = builder.build_sync().map_err(|source| TunError::Call { call: "create TUN", source })?;
        let name = dev.name().map_err(|source| TunError::Call { call: "TUN name", source })?;
        let ifindex = index_of(&name)?;
        Ok(Self {
            dev: std::sync::Arc::new(dev),
            name,
            ifindex,
            multi_queue: false,
            vnet: false,
            offloads: false,
            uso: false,
        })
    }

    /// Multi-queue devices exist on Linux only.
    pub fn clone_queue(&self) -> Result<Self, TunError> {
        Err(TunError::Unsupported("multi-queue TUN devices exist on Linux only"))
    }

    /// Reads one packet (see the Linux version).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.dev.recv(buf)
    }

    /// Writes one packet.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.dev.send(packet)
    }

    /// Virtio-net headers exist on Linux only: never called, as
    /// [`Tun::has_vnet_header`] is false.
    pub fn recv_offload(&self, _hdr: &mut [u8; VNET_HDR_LEN], buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }

    /// Virtio-net headers exist on Linux only: the header is ignored.
    pub fn send_offload(&self, _hdr: &[u8; VNET_HDR_LEN], packet: &[u8]) -> io::Result<usize> {
        self.send(packet)
    }

    /// Makes reads and writes non-blocking (or blocking again).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.dev.set_nonblocking(nonblocking)
    }

    /// The tun-rs device, for the BSD interface configuration (crate-internal).
    pub(crate) fn device(&self) -> std::sync::Arc<tun_rs::SyncDevice> {
        self.dev.clone()
    }
}

#[cfg(target_os = "linux")]
impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(not(target_os = "linux"))]
impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor lives as long as self.dev, which outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.dev.as_raw_fd()) }
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("teredo"));
        assert!(valid_name("tun%d"));
        assert!(valid_name("a23456789012345"));
        for bad in ["", ".", "..", "a/b", "a b", "a:b", "a234567890123456", "é"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn invalid_name_is_refused_before_any_system_call() {
        let r = Tun::create(&TunOptions { name: Some("bad/name".into()), ..Default::default() });
        assert!(matches!(r, Err(TunError::InvalidName(_))));
    }

    #[test]
    fn loopback_index_and_name() {
        let i = index_of("lo").unwrap();
        assert_eq!(name_of(i).unwrap(), "lo");
        assert!(index_of("no-such-if-x").is_err());
    }
}
