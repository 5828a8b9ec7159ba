//! Waking a thread that sleeps in poll(2): a socket pair whose read end is one of the
//! descriptors it polls. The packet threads are woken this way for commands from the
//! control thread, and the control thread for events from them.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

/// Both ends of a wake-up channel.
#[derive(Debug)]
pub struct Waker {
    rx: UnixStream,
    tx: UnixStream,
}

impl Waker {
    /// A new channel, both ends non-blocking.
    pub fn new() -> io::Result<Self> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Self { rx, tx })
    }

    /// Wakes the poller. Never blocks: when the channel is full a wake-up is pending anyway.
    pub fn wake(&self) {
        let _ = (&self.tx).write(&[1]);
    }

    /// Takes the pending wake-ups (call when the descriptor is readable).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl AsFd for Waker {
    /// The end to poll for reading.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn wakes_and_drains() {
        let w = Waker::new().unwrap();
        assert!(!crate::poll::readable(&[w.as_fd()], Duration::ZERO).unwrap()[0]);
        for _ in 0..100_000 {
            w.wake(); // never blocks, even when the buffer is full
        }
        assert!(crate::poll::readable(&[w.as_fd()], Duration::ZERO).unwrap()[0]);
        w.drain();
        assert!(!crate::poll::readable(&[w.as_fd()], Duration::ZERO).unwrap()[0]);
    }
}
