//! Signals for a daemon with worker threads: the termination signals and SIGHUP are
//! blocked before any thread starts (they inherit the mask), and one thread takes them
//! synchronously with sigwait(2) (the daemon's signal thread, which hands them to its
//! control thread).

use std::io;

/// A signal [`wait`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT, SIGQUIT or SIGTERM: stop.
    Terminate(i32),
    /// SIGHUP: reload.
    Hangup,
}

fn set() -> libc::sigset_t {
    // SAFETY: sigset_t is initialised by sigemptyset before use.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

/// Blocks the daemon's signals in this thread and the threads it starts afterwards.
pub fn block() -> io::Result<()> {
    let s = set();
    // SAFETY: a valid signal set.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
    if r == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(r)) }
}

/// Waits for one of the blocked signals.
pub fn wait() -> Signal {
    let s = set();
    loop {
        let mut sig = 0;
        // SAFETY: a valid signal set and output integer.
        if unsafe { libc::sigwait(&s, &mut sig) } == 0 {
            return if sig == libc::SIGHUP { Signal::Hangup } else { Signal::Terminate(sig) };
        }
    }
}
