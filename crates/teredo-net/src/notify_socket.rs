//! The service manager's notification socket (`NOTIFY_SOCKET`, sd_notify(3)): a Unix
//! datagram socket named by a path, or on Linux by an abstract name (`@...`). It is
//! connected once, before the daemon chroots or drops root, so that notifications still
//! reach the service manager afterwards.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// A datagram socket connected to the notification socket `name`.
pub fn connect(name: &OsStr) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(b'@') => connect_abstract(&sock, &bytes[1..])?,
        Some(b'/') => sock.connect(name)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor @name",
            ));
        }
    }
    Ok(sock)
}

#[cfg(target_os = "linux")]
fn connect_abstract(sock: &UnixDatagram, name: &[u8]) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    sock.connect_addr(&std::os::unix::net::SocketAddr::from_abstract_name(name)?)
}

#[cfg(not(target_os = "linux"))]
fn connect_abstract(_: &UnixDatagram, _: &[u8]) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "abstract sockets are Linux-only"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_abstract() {
        let dir = std::env::temp_dir().join(format!("teredo-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        connect(path.as_os_str()).unwrap().send(b"READY=1\n").unwrap();
        let mut buf = [0u8; 16];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("teredo-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        connect(OsStr::new(&format!("@{name}"))).unwrap().send(b"STOPPING=1\n").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
        assert!(connect(OsStr::new("relative")).is_err());
    }
}
