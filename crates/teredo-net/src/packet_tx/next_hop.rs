//! Where a frame goes: the next hop's interface and MAC, from a copy of the kernel's IPv4
//! routing and neighbour tables read over rtnetlink (RTM_GETLINK, RTM_GETRULE,
//! RTM_GETROUTE, RTM_GETNEIGH dumps).
//!
//! A Teredo server answers every client once, from a new address and port each time, so a
//! per-destination cache would miss almost always. Instead the routes are looked up here,
//! longest prefix first, in the same tables as the kernel (local, then main, then
//! default), and only the neighbours (a few gateways, normally) are looked up per next
//! hop. Whatever this copy does not model exactly makes the datagram go through the UDP
//! socket instead ([`Miss`]): policy routing rules other than the three default ones,
//! multipath and nexthop-object routes, routes that are not unicast, non-Ethernet or down
//! interfaces, datagrams larger than the link MTU, and next hops without a usable neighbour
//! entry (the kernel then resolves them with ARP, and the next refresh picks the entry up).
//!
//! The copy is refreshed every [`REFRESH`], and sooner (at most every [`MIN_REFRESH`])
//! when the kernel announces a change on the notification socket or a neighbour was
//! missing. A neighbour in the STALE state is used, but the first datagram to it after
//! each refresh goes through the socket, so that the kernel confirms it (STALE, DELAY,
//! PROBE) as it would for its own traffic; otherwise a neighbour that moved would keep
//! receiving frames until the entry expired.

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::ifconfig::ConfigError;
use crate::netlink::Netlink;

use super::tables::Snapshot;
pub use super::tables::{Miss, Path};

/// Full refresh period.
pub const REFRESH: Duration = Duration::from_secs(5);
/// Shortest time between two refreshes, however many changes the kernel announces.
pub const MIN_REFRESH: Duration = Duration::from_millis(200);
/// How often the notification socket is looked at.
const EVENT_CHECK: Duration = Duration::from_millis(50);
/// The kernel's tables, kept fresh.
pub(crate) struct NextHops {
    netlink: Netlink,
    events: Option<netlink_sys::Socket>,
    snapshot: Snapshot,
    last_refresh: Instant,
    next_event_check: Instant,
    /// A refresh is wanted as soon as [`MIN_REFRESH`] allows.
    dirty: bool,
    /// The last refresh failed (logged once per failure streak).
    failing: bool,
}

impl NextHops {
    /// Opens the netlink sockets and reads the tables (no privilege needed).
    pub(crate) fn open() -> Result<Self, ConfigError> {
        let netlink = Netlink::open()?;
        // Change notifications only make refreshes sooner: without them, the periodic
        // refresh still runs.
        let events = open_events().ok();
        let now = Instant::now();
        let mut n = Self {
            netlink,
            events,
            snapshot: Snapshot::default(),
            last_refresh: now,
            next_event_check: now,
            dirty: false,
            failing: false,
        };
        n.snapshot = n.read()?;
        Ok(n)
    }

    fn read(&mut self) -> Result<Snapshot, ConfigError> {
        let nl = &mut self.netlink;
        let links = nl.dump("list interfaces", RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        let mut rule = RuleMessage::default();
        rule.header.family = AddressFamily::Inet;
        let rules = nl.dump("list IPv4 rules", RouteNetlinkMessage::GetRule(rule))?;
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        let routes = nl.dump("list IPv4 routes", RouteNetlinkMessage::GetRoute(route))?;
        let mut neigh = NeighbourMessage::default();
        neigh.header.family = AddressFamily::Inet;
        let neighbours = nl.dump("list IPv4 neighbours", RouteNetlinkMessage::GetNeighbour(neigh))?;
        let links: Vec<_> = links
            .into_iter()
            .filter_map(|m| if let RouteNetlinkMessage::NewLink(l) = m { Some(l) } else { None })
            .collect();
        let rules: Vec<_> = rules
            .into_iter()
            .filter_map(|m| if let RouteNetlinkMessage::NewRule(r) = m { Some(r) } else { None })
            .collect();
        let routes: Vec<_> = routes
            .into_iter()
            .filter_map(|m| if let RouteNetlinkMessage::NewRoute(r) = m { Some(r) } else { None })
            .collect();
        let neighbours: Vec<_> = neighbours
            .into_iter()
            .filter_map(|m| if let RouteNetlinkMessage::NewNeighbour(n) = m { Some(n) } else { None })
            .collect();
        Ok(Snapshot::build(&links, &rules, &routes, &neighbours))
    }

    /// Refreshes the copy when it is due; call it between batches.
    pub(crate) fn maintain(&mut self, now: Instant) {
        if now >= self.next_event_check {
            self.next_event_check = now + EVENT_CHECK;
            if self.drain_events() {
                self.dirty = true;
            }
        }
        let since = now.saturating_duration_since(self.last_refresh);
        if since >= REFRESH || (self.dirty && since >= MIN_REFRESH) {
            self.last_refresh = now;
            self.dirty = false;
            match self.read() {
                Ok(s) => {
                    if self.failing {
                        tracing::info!("packet TX: routing tables readable again");
                    }
                    self.failing = false;
                    self.snapshot = s;
                }
                Err(e) => {
                    if !self.failing {
                        tracing::warn!(
                            "packet TX: cannot read the routing tables ({e}): sending through the sockets"
                        );
                    }
                    self.failing = true;
                    self.snapshot = Snapshot::default();
                }
            }
        }
    }

    /// Reads what the notification socket holds; true when anything changed (or when
    /// notifications were lost).
    fn drain_events(&mut self) -> bool {
        let Some(sock) = &self.events else { return false };
        let mut buf = [0u8; 8192];
        let mut changed = false;
        for _ in 0..64 {
            let mut slice = &mut buf[..];
            match sock.recv(&mut slice, libc::MSG_DONTWAIT) {
                Ok(0) => break,
                Ok(_) => changed = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ENOBUFS: notifications were lost; a refresh covers them.
                Err(_) => {
                    changed = true;
                    break;
                }
            }
        }
        changed
    }

    /// Where a datagram goes; a missing neighbour asks for an early refresh.
    pub(crate) fn resolve(&mut self, dst: Ipv4Addr, ip_len: usize) -> Result<Path, Miss> {
        let r = self.snapshot.resolve(dst, ip_len);
        if r == Err(Miss::Neighbour) {
            self.dirty = true;
        }
        r
    }

    pub(crate) fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

fn open_events() -> io::Result<netlink_sys::Socket> {
    let mut s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
    s.bind_auto()?;
    for group in [libc::RTNLGRP_LINK, libc::RTNLGRP_NEIGH, libc::RTNLGRP_IPV4_ROUTE, libc::RTNLGRP_IPV4_RULE]
    {
        s.add_membership(group)?;
    }
    s.set_non_blocking(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machines_tables() {
        // Reading needs no privilege: opening and reading the kernel's tables must work on
        // any Linux machine, and resolving an address must not fail whatever they hold.
        let mut n = NextHops::open().expect("netlink dumps of links, routes and neighbours");
        n.maintain(Instant::now() + REFRESH);
        let _ = n.resolve(Ipv4Addr::new(192, 0, 2, 1), 100);
    }
}
