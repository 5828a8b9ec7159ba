//! Configuring a network interface without external programs: link up or down, MTU, IPv6
//! addresses and IPv6 routes. The operations are those of Miredo's libtun6 and client hook
//! (miredo-facts §1.9, §8), behind one platform-neutral trait, [`InterfaceConfig`]:
//!
//! - Linux: rtnetlink, in [`crate::netlink::Netlink`] (tested here);
//! - FreeBSD, OpenBSD, NetBSD, macOS: `bsd::BsdConfig`, the tun-rs ioctls for flags, MTU
//!   and addresses plus routing-socket routes via `route_manager` (written but
//!   **untested**; those targets cannot be built on this machine).
//!
//! Every operation reports what it was doing and the kernel's error. They are not
//! idempotent by themselves: adding what exists or removing what is absent is an error
//! that [`ConfigError::is_exists`] and [`ConfigError::is_absent`] recognise, so callers
//! such as [`crate::client_if::ClientInterface`] decide what "already done" means.

#[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "netbsd", target_os = "macos"))]
pub mod bsd;

use std::fmt;
use std::io;
use std::net::Ipv6Addr;

/// An IPv6 prefix: an address and a prefix length (0 to 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Prefix {
    address: Ipv6Addr,
    len: u8,
}

impl Ipv6Prefix {
    /// `::/0`, the default route.
    pub const DEFAULT: Self = Self { address: Ipv6Addr::UNSPECIFIED, len: 0 };

    /// `address/len`; `None` when `len` > 128. The address is kept as given (an interface
    /// address keeps its host bits); [`Self::network`] clears them.
    pub const fn new(address: Ipv6Addr, len: u8) -> Option<Self> {
        if len > 128 { None } else { Some(Self { address, len }) }
    }

    /// The address.
    pub const fn address(&self) -> Ipv6Addr {
        self.address
    }

    /// The prefix length.
    pub const fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The same prefix with the host bits cleared (what a route destination must be).
    pub fn network(&self) -> Self {
        let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - u32::from(self.len)) };
        Self { address: Ipv6Addr::from(u128::from(self.address) & mask), len: self.len }
    }

    /// Whether `addr` lies inside this prefix.
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        let net = self.network();
        Self { address: addr, len: self.len }.network() == net
    }
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

/// An IPv6 route through an interface (no gateway: the TUN is point-to-point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix (host bits are cleared when the route is installed).
    pub destination: Ipv6Prefix,
    /// The outgoing interface.
    pub ifindex: u32,
    /// The metric: lower wins. Miredo's client hook uses 1029 for `::/0`, so that a native
    /// default route (1024) is preferred; the relay's `2001::/32` route uses 1024.
    pub metric: u32,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route {} dev #{} metric {}", self.destination.network(), self.ifindex, self.metric)
    }
}

/// Why a configuration operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The kernel refused or failed the operation.
    #[error("{op}: {source}")]
    Kernel {
        /// What was being done, e.g. "add address 2001:0:c000:201::1/32 on interface #5".
        op: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// The kernel's answer could not be understood.
    #[error("{op}: unexpected answer from the kernel: {detail}")]
    Protocol {
        /// What was being done.
        op: String,
        /// What was wrong.
        detail: String,
    },
    /// The operation is not available on this platform.
    #[error("{0}: not supported on this platform")]
    Unsupported(&'static str),
}

impl ConfigError {
    /// The kernel's errno, if the kernel answered with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether the error says "this already exists" (adding twice).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// Whether the error says "no such address or route" (removing twice).
    pub fn is_absent(&self) -> bool {
        matches!(self.errno(), Some(libc::ESRCH | libc::EADDRNOTAVAIL | libc::ENOENT))
    }

    pub(crate) fn kernel(op: impl Into<String>, source: io::Error) -> Self {
        Self::Kernel { op: op.into(), source }
    }
}

/// The interface operations the client and relay need. `ifindex` names the interface.
pub trait InterfaceConfig {
    /// Sets the link administratively up or down.
    fn set_link(&mut self, ifindex: u32, up: bool) -> Result<(), ConfigError>;
    /// Sets the MTU.
    fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> Result<(), ConfigError>;
    /// Adds an IPv6 address with its prefix length. The kernel then routes the prefix
    /// on-link through the interface (except for /128).
    fn add_address(&mut self, ifindex: u32, address: Ipv6Prefix) -> Result<(), ConfigError>;
    /// Removes an IPv6 address.
    fn remove_address(&mut self, ifindex: u32, address: Ipv6Prefix) -> Result<(), ConfigError>;
    /// The interface's IPv6 addresses (bounded: at most 1024 are returned).
    fn addresses(&mut self, ifindex: u32) -> Result<Vec<Ipv6Prefix>, ConfigError>;
    /// Adds an IPv6 route.
    fn add_route(&mut self, route: &Route) -> Result<(), ConfigError>;
    /// Removes an IPv6 route.
    fn remove_route(&mut self, route: &Route) -> Result<(), ConfigError>;

    /// Removes every IPv6 address of the interface (Miredo's hook: `ip -6 address flush`).
    /// An address that vanished meanwhile is not an error.
    fn flush_addresses(&mut self, ifindex: u32) -> Result<(), ConfigError> {
        for a in self.addresses(ifindex)? {
            match self.remove_address(ifindex, a) {
                Err(e) if !e.is_absent() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The platform's implementation.
#[cfg(target_os = "linux")]
pub type PlatformConfig = crate::netlink::Netlink;
/// The platform's implementation.
#[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "netbsd", target_os = "macos"))]
pub type PlatformConfig = bsd::BsdConfig;

/// Opens the platform's configuration interface for `tun` (Linux: a netlink socket; the
/// BSDs: the device's own control ioctls). Needs CAP_NET_ADMIN (root on the BSDs) at the
/// time of each operation.
pub fn platform_config(tun: &crate::tun::Tun) -> Result<PlatformConfig, ConfigError> {
    #[cfg(target_os = "linux")]
    {
        let _ = tun;
        crate::netlink::Netlink::open()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(bsd::BsdConfig::new(tun))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let a: Ipv6Addr = "2001:0:c000:201:1234:63bf:3fff:fdd2".parse().unwrap();
        let p = Ipv6Prefix::new(a, 32).unwrap();
        assert_eq!(p.network().to_string(), "2001::/32");
        assert_eq!(p.to_string(), "2001:0:c000:201:1234:63bf:3fff:fdd2/32");
        assert!(p.contains("2001::1".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        assert!(Ipv6Prefix::new(a, 129).is_none());
        assert_eq!(Ipv6Prefix::new(a, 128).unwrap().network().address(), a);
        assert_eq!(Ipv6Prefix::DEFAULT.network(), Ipv6Prefix::DEFAULT);
        assert!(Ipv6Prefix::DEFAULT.contains(a));
    }

    #[test]
    fn error_kinds() {
        let e = ConfigError::kernel("add", io::Error::from_raw_os_error(libc::EEXIST));
        assert!(e.is_exists() && !e.is_absent());
        let e = ConfigError::kernel("del", io::Error::from_raw_os_error(libc::EADDRNOTAVAIL));
        assert!(e.is_absent() && !e.is_exists());
        assert_eq!(e.to_string(), format!("del: {}", io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)));
    }
}
