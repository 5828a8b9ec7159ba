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
            if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
                for fd in 0..3 {
                    // SAFETY: duplicating a valid descriptor over a standard stream.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
        }
    }

    /// Reports a failure with this exit status (the parent exits with it).
    pub fn failed(&mut self, status: u8) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(&[status.max(1)]);
        }
    }
}

/// Forks. Returns in the child only; the parent exits with the child's status byte (1 if
/// the child died before sending one).
pub fn detach() -> io::Result<Detached> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (documented precondition).
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
