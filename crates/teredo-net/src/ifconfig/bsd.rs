//! [`InterfaceConfig`] for FreeBSD, OpenBSD, NetBSD and macOS: flags, MTU and addresses
//! through the tun-rs device's own ioctls (SIOCSIFFLAGS, SIOCSIFMTU, SIOCAIFADDR_IN6 /
//! SIOCDIFADDR_IN6 with infinite lifetimes, as libtun6 does), the address list through
//! getifaddrs(3), and routes through the routing socket (PF_ROUTE, RTM_ADD/RTM_DELETE) via
//! `route_manager`.
//!
//! **Written but untested**: this machine cannot build for these targets. Known limits:
//! the BSD kernels have no route metric in the Linux sense (`route_manager` passes it
//! where the system has one), and the configuration only works for the TUN device it was
//! made from.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use super::{ConfigError, InterfaceConfig, Ipv6Prefix, Route};
use crate::tun::Tun;

/// Interface configuration for one tun-rs device.
pub struct BsdConfig {
    dev: Arc<tun_rs::SyncDevice>,
    ifindex: u32,
    name: String,
}

impl BsdConfig {
    /// The configuration of `tun`'s interface.
    pub fn new(tun: &Tun) -> Self {
        Self { dev: tun.device(), ifindex: tun.ifindex(), name: tun.name().to_owned() }
    }

    fn check(&self, ifindex: u32) -> Result<(), ConfigError> {
        if ifindex == self.ifindex {
            Ok(())
        } else {
            Err(ConfigError::Unsupported("configuring an interface other than our own TUN"))
        }
    }
}

impl InterfaceConfig for BsdConfig {
    fn set_link(&mut self, ifindex: u32, up: bool) -> Result<(), ConfigError> {
        self.check(ifindex)?;
        self.dev.enabled(up).map_err(|e| ConfigError::kernel(format!("set {} up={up}", self.name), e))
    }

    fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> Result<(), ConfigError> {
        self.check(ifindex)?;
        let op = || format!("set MTU {mtu} on {}", self.name);
        let m =
            u16::try_from(mtu).map_err(|_| ConfigError::kernel(op(), io::ErrorKind::InvalidInput.into()))?;
        self.dev.set_mtu(m).map_err(|e| ConfigError::kernel(op(), e))
    }

    fn add_address(&mut self, ifindex: u32, address: Ipv6Prefix) -> Result<(), ConfigError> {
        self.check(ifindex)?;
        self.dev
            .add_address_v6(address.address(), address.prefix_len())
            .map_err(|e| ConfigError::kernel(format!("add address {address} on {}", self.name), e))
    }

    fn remove_address(&mut self, ifindex: u32, address: Ipv6Prefix) -> Result<(), ConfigError> {
        self.check(ifindex)?;
        self.dev
            .remove_address(IpAddr::V6(address.address()))
            .map_err(|e| ConfigError::kernel(format!("remove address {address} on {}", self.name), e))
    }

    fn addresses(&mut self, ifindex: u32) -> Result<Vec<Ipv6Prefix>, ConfigError> {
        self.check(ifindex)?;
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
        if unsafe { libc::getifaddrs(&mut list) } != 0 {
            return Err(ConfigError::kernel("getifaddrs", io::Error::last_os_error()));
        }
        let mut out = Vec::new();
        let mut p = list;
        while !p.is_null() && out.len() < 1024 {
            // SAFETY: p is a node of the list getifaddrs returned.
            let ifa = unsafe { &*p };
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            // SAFETY: ifa_name is a NUL-terminated string; ifa_addr a valid sockaddr.
            let (name, family) =
                unsafe { (std::ffi::CStr::from_ptr(ifa.ifa_name), i32::from((*ifa.ifa_addr).sa_family)) };
            if family != libc::AF_INET6 || name.to_bytes() != self.name.as_bytes() {
                continue;
            }
            // SAFETY: an AF_INET6 entry's address and netmask are sockaddr_in6.
            let addr = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
            let len = if ifa.ifa_netmask.is_null() {
                128
            } else {
                // SAFETY: as above.
                let m = unsafe { &*ifa.ifa_netmask.cast::<libc::sockaddr_in6>() };
                u128::from_be_bytes(m.sin6_addr.s6_addr).count_ones() as u8
            };
            let mut bytes = addr.sin6_addr.s6_addr;
            // KAME embeds the scope id in bytes 2-3 of link-local addresses.
            if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 {
                bytes[2] = 0;
                bytes[3] = 0;
            }
            if let Some(prefix) = Ipv6Prefix::new(Ipv6Addr::from(bytes), len) {
                out.push(prefix);
            }
        }
        // SAFETY: the list getifaddrs returned, freed once.
        unsafe { libc::freeifaddrs(list) };
        Ok(out)
    }

    fn add_route(&mut self, route: &Route) -> Result<(), ConfigError> {
        let op = || format!("add {route}");
        let mut m = route_manager::RouteManager::new().map_err(|e| ConfigError::kernel(op(), e))?;
        m.add(&to_route(route)).map_err(|e| ConfigError::kernel(op(), e))
    }

    fn remove_route(&mut self, route: &Route) -> Result<(), ConfigError> {
        let op = || format!("remove {route}");
        let mut m = route_manager::RouteManager::new().map_err(|e| ConfigError::kernel(op(), e))?;
        m.delete(&to_route(route)).map_err(|e| ConfigError::kernel(op(), e))
    }
}

fn to_route(route: &Route) -> route_manager::Route {
    let net = route.destination.network();
    route_manager::Route::new(IpAddr::V6(net.address()), net.prefix_len())
        .with_if_index(route.ifindex)
        .with_metric(route.metric)
}
