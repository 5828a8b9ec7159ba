//! The PID file, as Miredo keeps it (miredo-facts §1.3): opened without following a
//! symbolic link, locked so that a second instance fails clearly, truncated, and holding
//! the decimal PID. The lock lasts as long as the process.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
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
    // SAFETY: a valid descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{e} (is another instance running?)")));
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    f.sync_data()?;
    Ok(PidFile { _file: f })
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
        drop(a);
        assert!(create(&p).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
