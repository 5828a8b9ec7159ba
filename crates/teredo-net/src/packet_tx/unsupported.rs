//! `packet_tx` where there is no AF_PACKET (the BSDs, macOS): the same interface, and
//! [`PacketTx::open`] answers `Unsupported`, so that `teredo server --tx packet` says so
//! at start-up and the sockets carry everything.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddrV4;
use std::time::Instant;

#[path = "types.rs"]
mod types;

pub use types::{PacketTxStats, Queued};

/// A packet socket: none can be opened on this platform.
#[derive(Debug)]
pub struct PacketTx(Infallible);

impl PacketTx {
    /// Always `Unsupported` here.
    pub fn open(_batch: usize) -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "packet sockets are Linux-only"))
    }

    /// Unreachable: no value exists.
    pub fn maintain(&mut self, _now: Instant) {
        match self.0 {}
    }

    /// Unreachable: no value exists.
    pub fn is_full(&self) -> bool {
        match self.0 {}
    }

    /// Unreachable: no value exists.
    pub fn is_empty(&self) -> bool {
        match self.0 {}
    }

    /// Unreachable: no value exists.
    pub fn payload_mut(&mut self) -> Option<&mut [u8]> {
        match self.0 {}
    }

    /// Unreachable: no value exists.
    pub fn commit(&mut self, _src: SocketAddrV4, _dst: SocketAddrV4, _len: usize) -> Queued<'_> {
        match self.0 {}
    }

    /// Unreachable: no value exists.
    pub fn flush(&mut self) -> io::Result<usize> {
        match self.0 {}
    }

    /// Unreachable: no value exists.
    pub fn stats(&self) -> PacketTxStats {
        match self.0 {}
    }

    /// Unreachable: no value exists.
    pub fn ethernet_links(&self) -> usize {
        match self.0 {}
    }

    /// Unreachable: no value exists.
    pub fn policy_routing(&self) -> bool {
        match self.0 {}
    }
}
