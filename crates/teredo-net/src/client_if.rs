//! The Teredo client's interface, configured the way Miredo's Linux client hook does it
//! (miredo-facts §1.9) on each change of qualification state, without running `ip`:
//!
//! - **up(address, mtu)**: MTU, link up, the link-local address (`fe80::ffff:ffff:ffff/64`,
//!   or `fe80::8000:5445:5245:444f/64` when the Teredo address has the cone bit, as
//!   Miredo chooses it), the Teredo address as **ADDRESS/32**, and a default route `::/0`
//!   through the interface with metric **1029** (so a native default route, metric 1024,
//!   wins).
//! - **down()**: remove the default route, flush every IPv6 address of the interface,
//!   link down.
//!
//! Why /32 (RFC 4380 §5.2: a client sends directly to other Teredo clients, whose mapped
//! address and port are inside their address): with the address added as a /32 the kernel
//! installs the on-link route `2001::/32 dev IFACE`, so every Teredo peer is reached
//! through the tunnel even when the host also has a native default route, which would
//! otherwise win over our metric-1029 default. Miredo's BSD hook adds a /128 instead and
//! loses that; we follow the Linux hook on every platform.
//!
//! Unlike Miredo's BSD hook (miredo-facts §9), a changed address never stays behind: the
//! previous Teredo address is removed before the new one is added. Every step is
//! idempotent (an existing address or route counts as added, a missing one as removed),
//! so `up` and `down` can be repeated, and the first `up` flushes whatever IPv6 addresses
//! the interface had (the kernel's own link-local, leftovers of an earlier run).

use std::net::Ipv6Addr;

use teredo_proto::address::{LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED};

use crate::ifconfig::{ConfigError, InterfaceConfig, Ipv6Prefix, Route};

/// Prefix length of the Teredo address on the interface (see the module comment).
pub const ADDRESS_PREFIX_LEN: u8 = 32;
/// Metric of the client's default route (Miredo's client hook).
pub const CLIENT_ROUTE_METRIC: u32 = 1029;
/// Metric of the relay's route to the Teredo prefix (libtun6: 1024 + 0).
pub const RELAY_ROUTE_METRIC: u32 = 1024;

/// The link-local address Miredo pairs with a Teredo address: the cone one when the
/// address's flags (RFC 4380 §4, bits 64–79) have the cone bit 0x8000.
pub fn link_local_for(address: Ipv6Addr) -> Ipv6Addr {
    if address.segments()[4] & 0x8000 != 0 { LINK_LOCAL_CONE } else { LINK_LOCAL_RESTRICTED }
}

/// What the interface currently carries, as far as we configured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpState {
    /// The Teredo address.
    pub address: Ipv6Addr,
    /// The MTU.
    pub mtu: u16,
}

/// The client's TUN interface and what was last applied to it.
#[derive(Debug)]
pub struct ClientInterface<C> {
    config: C,
    ifindex: u32,
    current: Option<UpState>,
    /// Whether we have flushed the interface once (we own it from then on).
    owned: bool,
}

fn added(r: Result<(), ConfigError>) -> Result<(), ConfigError> {
    match r {
        Err(e) if e.is_exists() => Ok(()),
        r => r,
    }
}

fn removed(r: Result<(), ConfigError>) -> Result<(), ConfigError> {
    match r {
        Err(e) if e.is_absent() => Ok(()),
        r => r,
    }
}

impl<C: InterfaceConfig> ClientInterface<C> {
    /// The interface `ifindex`, configured through `config`. Nothing is changed yet.
    pub fn new(config: C, ifindex: u32) -> Self {
        Self { config, ifindex, current: None, owned: false }
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// What was last brought up, if the interface is up.
    pub fn current(&self) -> Option<UpState> {
        self.current
    }

    /// The default route this interface gets.
    pub fn default_route(&self) -> Route {
        Route { destination: Ipv6Prefix::DEFAULT, ifindex: self.ifindex, metric: CLIENT_ROUTE_METRIC }
    }

    /// Brings the interface up with `address` and `mtu` (see the module comment). The
    /// caller validates them (the privileged helper accepts only 2001::/32 and MTU ≥ 1280).
    /// On error the interface may be half-configured; `current()` then is `None`, and the
    /// next `up` starts over from a flush.
    pub fn up(&mut self, address: Ipv6Addr, mtu: u16) -> Result<(), ConfigError> {
        let previous = self.current.take();
        let i = self.ifindex;
        self.config.set_mtu(i, u32::from(mtu))?;
        self.config.set_link(i, true)?;
        if !self.owned || previous.is_none() {
            // Also drops an old Teredo address left by an earlier failed call.
            self.config.flush_addresses(i)?;
            self.owned = true;
        } else if let Some(old) = previous.filter(|p| p.address != address) {
            removed(self.config.remove_address(i, teredo_prefix(old.address)))?;
            if link_local_for(old.address) != link_local_for(address) {
                removed(self.config.remove_address(i, link_local_prefix(old.address)))?;
            }
        }
        added(self.config.add_address(i, link_local_prefix(address)))?;
        added(self.config.add_address(i, teredo_prefix(address)))?;
        let route = self.default_route();
        added(self.config.add_route(&route))?;
        self.current = Some(UpState { address, mtu });
        Ok(())
    }

    /// Takes the interface down: default route removed, every IPv6 address flushed, link
    /// down. Doing it twice is harmless.
    pub fn down(&mut self) -> Result<(), ConfigError> {
        self.current = None;
        let route = self.default_route();
        removed(self.config.remove_route(&route))?;
        self.config.flush_addresses(self.ifindex)?;
        self.owned = true;
        self.config.set_link(self.ifindex, false)
    }

    /// The configuration back end.
    pub fn config_mut(&mut self) -> &mut C {
        &mut self.config
    }
}

fn teredo_prefix(address: Ipv6Addr) -> Ipv6Prefix {
    Ipv6Prefix::new(address, ADDRESS_PREFIX_LEN).unwrap_or(Ipv6Prefix::DEFAULT)
}

fn link_local_prefix(address: Ipv6Addr) -> Ipv6Prefix {
    Ipv6Prefix::new(link_local_for(address), 64).unwrap_or(Ipv6Prefix::DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// An in-memory interface that behaves like the kernel for these operations.
    #[derive(Default)]
    struct Fake {
        up: bool,
        mtu: u32,
        addrs: Vec<Ipv6Prefix>,
        routes: Vec<Route>,
        log: Vec<String>,
    }

    fn err(code: i32) -> ConfigError {
        ConfigError::kernel("fake", io::Error::from_raw_os_error(code))
    }

    impl InterfaceConfig for Fake {
        fn set_link(&mut self, _: u32, up: bool) -> Result<(), ConfigError> {
            self.up = up;
            if !up {
                // As Linux: link down drops the routes through the interface.
                self.routes.clear();
            }
            Ok(())
        }
        fn set_mtu(&mut self, _: u32, mtu: u32) -> Result<(), ConfigError> {
            self.mtu = mtu;
            Ok(())
        }
        fn add_address(&mut self, _: u32, a: Ipv6Prefix) -> Result<(), ConfigError> {
            self.log.push(format!("add {a}"));
            if self.addrs.iter().any(|x| x.address() == a.address()) {
                return Err(err(libc::EEXIST));
            }
            self.addrs.push(a);
            Ok(())
        }
        fn remove_address(&mut self, _: u32, a: Ipv6Prefix) -> Result<(), ConfigError> {
            self.log.push(format!("del {a}"));
            let n = self.addrs.len();
            self.addrs.retain(|x| x.address() != a.address());
            if n == self.addrs.len() { Err(err(libc::EADDRNOTAVAIL)) } else { Ok(()) }
        }
        fn addresses(&mut self, _: u32) -> Result<Vec<Ipv6Prefix>, ConfigError> {
            Ok(self.addrs.clone())
        }
        fn add_route(&mut self, r: &Route) -> Result<(), ConfigError> {
            if self.routes.contains(r) {
                return Err(err(libc::EEXIST));
            }
            self.routes.push(*r);
            Ok(())
        }
        fn remove_route(&mut self, r: &Route) -> Result<(), ConfigError> {
            let n = self.routes.len();
            self.routes.retain(|x| x != r);
            if n == self.routes.len() { Err(err(libc::ESRCH)) } else { Ok(()) }
        }
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn up_change_down() {
        let mut c = ClientInterface::new(Fake::default(), 5);
        c.config_mut().addrs.push(Ipv6Prefix::new(a("fe80::1234"), 64).unwrap());
        c.up(a("2001:0:c000:201:1234:63bf:3fff:fdd2"), 1400).unwrap();
        let f = &c.config;
        assert!(f.up);
        assert_eq!(f.mtu, 1400);
        let shown: Vec<String> = f.addrs.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["fe80::ffff:ffff:ffff/64", "2001:0:c000:201:1234:63bf:3fff:fdd2/32"]);
        assert_eq!(f.routes, [Route { destination: Ipv6Prefix::DEFAULT, ifindex: 5, metric: 1029 }]);

        // Same again: nothing changes, no error.
        c.up(a("2001:0:c000:201:1234:63bf:3fff:fdd2"), 1400).unwrap();
        assert_eq!(c.config.addrs.len(), 2);

        // New address: the old one goes.
        c.up(a("2001:0:c000:201:0:63bf:3fff:fdd3"), 1280).unwrap();
        let shown: Vec<String> = c.config.addrs.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["fe80::ffff:ffff:ffff/64", "2001:0:c000:201:0:63bf:3fff:fdd3/32"]);
        assert_eq!(c.config.mtu, 1280);
        assert_eq!(c.current(), Some(UpState { address: a("2001:0:c000:201:0:63bf:3fff:fdd3"), mtu: 1280 }));

        c.down().unwrap();
        assert!(!c.config.up && c.config.addrs.is_empty() && c.config.routes.is_empty());
        c.down().unwrap();
        assert_eq!(c.current(), None);
    }

    #[test]
    fn cone_link_local() {
        assert_eq!(link_local_for(a("2001:0:c000:201:8000:63bf:3fff:fdd2")), LINK_LOCAL_CONE);
        assert_eq!(link_local_for(a("2001:0:c000:201:4000:63bf:3fff:fdd2")), LINK_LOCAL_RESTRICTED);
        assert_eq!(LINK_LOCAL_CONE.to_string(), "fe80::8000:5445:5245:444f");
        assert_eq!(LINK_LOCAL_RESTRICTED.to_string(), "fe80::ffff:ffff:ffff");
        // Switching between cone and non-cone addresses replaces the link-local too.
        let mut c = ClientInterface::new(Fake::default(), 1);
        c.up(a("2001:0:c000:201:8000:63bf:3fff:fdd2"), 1280).unwrap();
        c.up(a("2001:0:c000:201:0:63bf:3fff:fdd2"), 1280).unwrap();
        let shown: Vec<String> = c.config.addrs.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["fe80::ffff:ffff:ffff/64", "2001:0:c000:201:0:63bf:3fff:fdd2/32"]);
    }
}
