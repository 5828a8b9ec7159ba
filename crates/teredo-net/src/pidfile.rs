//! The PID file, as Miredo keeps it (miredo-facts §1.3): opened without following a
//! symbolic link, locked so that a second instance fails clearly, truncated, and holding
//! the decimal PID. The lock lasts as long as the process.
//!
//! The descriptor kept for the lock is read-only: the file belongs to root (it is made
//! before the privilege drop) and the unprivileged daemon must hold no root-owned file
//! open for writing. flock(2) locks a read-only descriptor as well; the one used for
//! writing is closed once the PID is written.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// An open, locked PID file. Dropping it removes nothing: the file may outlive a crash,
/// and the lock (not the file) tells whether an instance runs.
#[derive(Debug)]
pub struct PidFile {
    _file: File,
}

/// Creates, locks and fills the PID file.
pub fn create(path: &Path) -> io::Result<PidFile> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let kept = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)?;
    let (a, b) = (f.metadata()?, kept.metadata()?);
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "replaced while being opened"));
    }
    // SAFETY: a valid descriptor.
    if unsafe { libc::flock(kept.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{e} (is another instance running?)")));
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    f.sync_data()?;
    Ok(PidFile { _file: kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_once() {
        let dir = std::env::temp_dir().join(format!("teredo-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.pid");
        let a = create(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().trim(), std::process::id().to_string());
        assert!(create(&p).unwrap_err().to_string().contains("another instance"));
        // The descriptor kept is read-only.
        // SAFETY: F_GETFL on a descriptor of ours.
        let flags = unsafe { libc::fcntl(a._file.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDONLY, "flags {flags:o}");
        drop(a);
        // Another test of this process may fork at any moment (the helper's and the
        // privilege tests do): its child holds a copy of the descriptor, and so the
        // lock, until it execs or exits. Such a copy goes away within moments.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let again = loop {
            match create(&p) {
                Ok(f) => break Ok(f),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => break Err(e),
            }
        };
        assert!(again.is_ok(), "{again:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
