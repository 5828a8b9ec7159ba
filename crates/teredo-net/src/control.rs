//! The control socket of a running daemon, behind `teredo status`: a Unix stream socket
//! that only root and the daemon's own user may use.
//!
//! On Linux it is an abstract socket named `teredo-control/<pid>`. Abstract names belong
//! to a network namespace, so `teredo status` run inside a namespace finds exactly the
//! daemons of that namespace (listed in its `/proc/net/unix`), with no path to agree on
//! and no file left behind by a crash; daemons in different namespaces never mix. On the
//! BSDs and macOS (no network namespaces) it is `/var/run/teredo/control.<pid>`.
//!
//! Who may talk is decided by the peer's credentials (SO_PEERCRED, getpeereid), checked by
//! the daemon on every connection.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};

/// The prefix of every control socket's name.
pub const NAME_PREFIX: &str = "teredo-control/";

/// A daemon's listening control socket (non-blocking).
#[derive(Debug)]
pub struct ControlListener {
    listener: UnixListener,
    #[cfg(not(target_os = "linux"))]
    path: std::path::PathBuf,
}

impl ControlListener {
    /// Binds this process's control socket (as root, before the privilege drop, on the
    /// BSDs; anywhere on Linux).
    pub fn bind() -> io::Result<Self> {
        let listener = bind_own()?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            #[cfg(not(target_os = "linux"))]
            path: bsd::path(std::process::id()),
        })
    }

    /// The next waiting connection with its peer's user id, or `None`.
    pub fn accept(&self) -> io::Result<Option<(UnixStream, u32)>> {
        match self.listener.accept() {
            Ok((s, _)) => {
                let uid = peer_uid(&s)?;
                Ok(Some((s, uid)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl std::os::fd::AsFd for ControlListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

#[cfg(not(target_os = "linux"))]
impl Drop for ControlListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The process ids of the daemons whose control sockets this network namespace holds.
pub fn discover() -> io::Result<Vec<u32>> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/net/unix")?;
        Ok(parse_proc_net_unix(&text))
    }
    #[cfg(not(target_os = "linux"))]
    {
        bsd::discover()
    }
}

/// Connects to the control socket of the daemon `pid`.
pub fn connect(pid: u32) -> io::Result<UnixStream> {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(format!("{NAME_PREFIX}{pid}"))?;
        UnixStream::connect_addr(&addr)
    }
    #[cfg(not(target_os = "linux"))]
    {
        UnixStream::connect(bsd::path(pid))
    }
}

#[cfg(target_os = "linux")]
fn bind_own() -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(format!("{NAME_PREFIX}{}", std::process::id()))?;
    UnixListener::bind_addr(&addr)
}

#[cfg(not(target_os = "linux"))]
fn bind_own() -> io::Result<UnixListener> {
    bsd::bind(std::process::id())
}

/// The pids named by `@teredo-control/<pid>` entries of a `/proc/net/unix` text, each once.
pub fn parse_proc_net_unix(text: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|p| p.strip_prefix('@')?.strip_prefix(NAME_PREFIX)?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The user id of the process at the other end of `s`.
#[cfg(target_os = "linux")]
pub fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writing and sized for SO_PEERCRED.
    let r = unsafe {
        libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len)
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// The user id of the process at the other end of `s`.
#[cfg(not(target_os = "linux"))]
pub fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: both outputs are valid for writing.
    if unsafe { libc::getpeereid(s.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(uid)
}

/// The BSD and macOS control sockets: files in one directory.
#[cfg(not(target_os = "linux"))]
mod bsd {
    use std::io;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    const DIR: &str = "/var/run/teredo";

    pub(super) fn path(pid: u32) -> PathBuf {
        PathBuf::from(format!("{DIR}/control.{pid}"))
    }

    pub(super) fn bind(pid: u32) -> io::Result<UnixListener> {
        std::fs::create_dir_all(DIR)?;
        let p = path(pid);
        let _ = std::fs::remove_file(&p);
        let l = UnixListener::bind(&p)?;
        // The peer's credentials decide; the mode only keeps others from connecting.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))?;
        Ok(l)
    }

    pub(super) fn discover() -> io::Result<Vec<u32>> {
        let mut pids = Vec::new();
        for e in std::fs::read_dir(DIR)? {
            let name = e?.file_name();
            if let Some(pid) =
                name.to_str().and_then(|n| n.strip_prefix("control.")).and_then(|p| p.parse().ok())
            {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn proc_net_unix_names() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 31337 @teredo-control/4242\n\
                    0000000000000000: 00000003 00000000 00000000 0001 03 31338 @teredo-control/4242\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 31339 /run/systemd/notify\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 31340 @teredo-control/x\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 31341 @teredo-control/17\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 31342\n";
        assert_eq!(parse_proc_net_unix(text), [17, 4242]);
    }

    #[test]
    fn own_socket_is_found_and_reports_the_peer() {
        let l = ControlListener::bind().unwrap();
        assert!(discover().unwrap().contains(&std::process::id()));
        let mut c = connect(std::process::id()).unwrap();
        let (mut s, uid) = loop {
            if let Some(x) = l.accept().unwrap() {
                break x;
            }
        };
        // SAFETY: no precondition.
        assert_eq!(uid, unsafe { libc::geteuid() });
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
    }
}
