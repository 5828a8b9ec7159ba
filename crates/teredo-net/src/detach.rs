//! Detaching from the terminal as Miredo does (miredo-facts §1.3): fork; the parent waits
//! for one status byte from the child and exits with it, so the shell (or an init system)
//! sees start-up errors; the child starts a new session and points its standard streams at
//! /dev/null once it reports success. Must be called before any thread is started.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The child's end: report how start-up went.
#[derive(Debug)]
pub struct Detached {
    pipe: Option<File>,
}

impl Detached {
    /// Reports successful start-up: the parent exits 0, and this process's standard
    /// streams go to /dev/null.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[0]);
            let _ = null_stdio();
        }
    }

    /// Reports a failure with this exit status (the parent exits with it).
    pub fn failed(&mut self, status: u8) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[status.max(1)]);
        }
    }
}

/// Points this process's standard streams at /dev/null, so that it holds no terminal or
/// pipe of its caller any more. A detached daemon does it when it is ready, and before it
/// forks a process that outlives start-up (the client's helper): a child would otherwise
/// keep the caller's stdout and stderr open, and a caller that reads them to the end
/// (`ssh host teredo run`, `$(...)`) would wait forever.
pub fn null_stdio() -> io::Result<()> {
    point_at_null(0..3)
}

/// Points each descriptor of `fds` at /dev/null (dup2).
fn point_at_null(fds: impl IntoIterator<Item = i32>) -> io::Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    for fd in fds {
        // SAFETY: duplicating a valid descriptor over another descriptor number.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Forks. Returns in the child only; the parent exits with the child's status byte (1 if
/// the child died before sending one).
///
/// # Safety
///
/// The process must have a single thread: the child of a fork has only the calling
/// thread, and goes on to run any Rust code, so a lock (the allocator's, stdout's) held by
/// another thread at the fork would never be released in it.
pub unsafe fn detach() -> io::Result<Detached> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the caller guarantees a single thread (this function's contract).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(r);
            // SAFETY: plain system call.
            unsafe { libc::setsid() };
            Ok(Detached { pipe: Some(File::from(w)) })
        }
        _ => {
            drop(w);
            let mut status = [1u8];
            let mut f = File::from(r);
            let code = match f.read(&mut status) {
                Ok(1) => i32::from(status[0]),
                _ => 1,
            };
            std::process::exit(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointing_at_null_releases_a_pipe() {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both were just created and are owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        point_at_null([w.as_raw_fd()]).unwrap();
        let target = std::fs::read_link(format!("/proc/self/fd/{}", w.as_raw_fd())).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"));
        // The only write end is gone: the reader sees end of file at once.
        let mut buf = [0u8; 1];
        assert_eq!(File::from(r).read(&mut buf).unwrap(), 0);
        drop(w);
    }
}
