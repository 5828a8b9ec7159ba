//! Host names in configuration files (Miredo resolves them with getaddrinfo, AF_INET):
//! resolved once at start-up by the daemons, never by the configuration reader. The
//! result must be a global unicast IPv4 address (RFC 4380 §5.2.4).

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

use teredo_proto::address::is_global_unicast;

use crate::config::Host;

/// The IPv4 address of a Teredo server `host`: a literal as it is, a name through the
/// system resolver; it must be global unicast.
pub fn ipv4(host: &Host) -> Result<Ipv4Addr, String> {
    let a = any_ipv4(host)?;
    if !is_global_unicast(a) {
        return Err(format!("{a} is not a global unicast IPv4 address (RFC 4380 §5.2.4)"));
    }
    Ok(a)
}

/// Every IPv4 address of a Teredo server `host` that is global unicast (a name may have
/// several: each counts as a server of its own); an error when there is none.
pub fn all_ipv4(host: &Host) -> Result<Vec<Ipv4Addr>, String> {
    let all: Vec<Ipv4Addr> = match host {
        Host::Ipv4(a) => vec![*a],
        Host::Name(name) => (name.as_str(), 0)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {name}: {e}"))?
            .filter_map(|s| match s.ip() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect(),
    };
    let global: Vec<Ipv4Addr> = all.iter().copied().filter(|a| is_global_unicast(*a)).collect();
    if global.is_empty() {
        return Err(match all.first() {
            Some(a) => format!("{a} is not a global unicast IPv4 address (RFC 4380 §5.2.4)"),
            None => format!("{host} has no IPv4 address"),
        });
    }
    Ok(global)
}

/// The IPv4 address of a local `host` (Miredo's `BindAddress`): any address, private
/// ones included.
pub fn any_ipv4(host: &Host) -> Result<Ipv4Addr, String> {
    match host {
        Host::Ipv4(a) => Ok(*a),
        Host::Name(name) => (name.as_str(), 0)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {name}: {e}"))?
            .find_map(|s| match s.ip() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .ok_or_else(|| format!("{name} has no IPv4 address")),
    }
}
