//! The helper where it is not written yet (the BSDs, macOS): the same interface, and
//! [`spawn`] fails, so that a client says so at start-up. A relay and a server need none.

use std::convert::Infallible;
use std::net::Ipv6Addr;

use super::{HelperOptions, Reply, Request};
use crate::tun::Tun;

/// Why the helper could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// Not written for this platform yet.
    #[error("privileged helper: not available on this platform yet (a Teredo client runs on Linux)")]
    Unsupported,
}

/// A running helper: none can exist here.
#[derive(Debug)]
pub struct Helper(Infallible);

/// Always [`HelperError::Unsupported`].
///
/// # Safety
///
/// None here; `unsafe` for the same signature as on Linux, whose contract callers
/// keep (a single thread).
pub unsafe fn spawn(_tun: &Tun, _options: &HelperOptions) -> Result<Helper, HelperError> {
    Err(HelperError::Unsupported)
}

impl Helper {
    /// Unreachable: no value exists.
    pub fn pid(&self) -> libc::pid_t {
        match self.0 {}
    }
    /// Unreachable: no value exists.
    pub fn request(&mut self, _request: Request) -> Result<Reply, HelperError> {
        match self.0 {}
    }
    /// Unreachable: no value exists.
    pub fn up(&mut self, _address: Ipv6Addr, _mtu: u16) -> Result<Reply, HelperError> {
        match self.0 {}
    }
    /// Unreachable: no value exists.
    pub fn down(&mut self) -> Result<Reply, HelperError> {
        match self.0 {}
    }
    /// Unreachable: no value exists.
    pub fn announce(&mut self) -> Result<Reply, HelperError> {
        match self.0 {}
    }
    /// Unreachable: no value exists.
    pub fn withdraw(&mut self) -> Result<Reply, HelperError> {
        match self.0 {}
    }
    /// Unreachable: no value exists.
    pub fn finish(self) -> Result<i32, HelperError> {
        match self.0 {}
    }
}
