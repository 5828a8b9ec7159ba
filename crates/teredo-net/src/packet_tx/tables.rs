//! The copy of the kernel's IPv4 tables that [`super::next_hop`] keeps (links, policy
//! rules, the local, main and default routing tables, neighbours), built from rtnetlink
//! answers, and the lookup of a destination's next hop in it: longest prefix first, in the
//! kernel's order, with everything the copy does not model exactly as a [`Miss`].

use std::collections::HashMap;
use std::net::Ipv4Addr;

use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};

/// The most neighbour entries kept (the kernel's own table is bounded by gc_thresh3).
const MAX_NEIGHBOURS: usize = 16384;
/// The most routes kept per table (a full Internet table does not fit: its routes then go
/// through the socket).
const MAX_ROUTES: usize = 65536;

const TABLE_DEFAULT: u32 = 253;
const TABLE_MAIN: u32 = 254;
const TABLE_LOCAL: u32 = 255;

/// Why a datagram cannot go out as a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No route, or a route or rule this copy does not model.
    Route,
    /// The next hop has no usable neighbour entry (or must be confirmed by the kernel).
    Neighbour,
    /// Larger than the interface's MTU: the kernel fragments it.
    TooBig,
}

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// The outgoing interface.
    pub ifindex: u32,
    /// Its MAC.
    pub src_mac: [u8; 6],
    /// The next hop's MAC.
    pub dst_mac: [u8; 6],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// Through a gateway on an Ethernet interface.
    Via { ifindex: u32, gateway: u32 },
    /// The destination is on the link.
    OnLink { ifindex: u32 },
    /// Not modelled: the socket.
    Socket,
}

#[derive(Debug, Clone, Copy)]
struct Link {
    mac: [u8; 6],
    mtu: u32,
}

#[derive(Debug, Clone, Copy)]
struct Neighbour {
    mac: [u8; 6],
    /// STALE: the next datagram goes through the socket, so that the kernel confirms.
    confirm: bool,
}

/// A hasher for keys the kernel chose (route prefixes, neighbour addresses): lookups with
/// any key cost the same, and the tables' shape is not the network's to choose.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// The routes of one prefix length: masked prefix to (metric, next hop).
type Prefixes = FastMap<u32, (u32, Hop)>;

/// One routing table: a map per prefix length, longest first.
#[derive(Default, Debug)]
struct Table {
    by_len: Vec<(u8, Prefixes)>,
    routes: usize,
}

fn mask(addr: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { addr & (u32::MAX << (32 - u32::from(len.min(32)))) }
}

impl Table {
    /// Adds a route; of two for the same prefix, the lower metric wins (as in the kernel).
    fn insert(&mut self, prefix: u32, len: u8, metric: u32, hop: Hop) {
        if self.routes >= MAX_ROUTES {
            return;
        }
        let map = match self.by_len.iter().position(|(l, _)| *l == len) {
            Some(i) => &mut self.by_len[i].1,
            None => {
                self.by_len.push((len, FastMap::default()));
                self.by_len.sort_by_key(|(l, _)| std::cmp::Reverse(*l));
                let i = self.by_len.iter().position(|(l, _)| *l == len).unwrap_or(0);
                &mut self.by_len[i].1
            }
        };
        let key = mask(prefix, len);
        match map.get(&key) {
            Some((m, _)) if *m <= metric => {}
            _ => {
                if map.insert(key, (metric, hop)).is_none() {
                    self.routes += 1;
                }
            }
        }
    }

    fn lookup(&self, addr: u32) -> Option<Hop> {
        self.by_len.iter().find_map(|(len, map)| map.get(&mask(addr, *len)).map(|(_, h)| *h))
    }

    fn full(&self) -> bool {
        self.routes >= MAX_ROUTES
    }
}

/// A copy of the tables, and the lookup.
#[derive(Default, Debug)]
pub(crate) struct Snapshot {
    links: FastMap<u32, Link>,
    local: Table,
    main: Table,
    default: Table,
    neighbours: FastMap<(u32, u32), Neighbour>,
    /// Rules other than the default ones: nothing goes by frame.
    policy_routing: bool,
    /// A table was larger than this copy keeps: nothing goes by frame.
    truncated: bool,
}

impl Snapshot {
    /// Builds a copy from the kernel's answers.
    pub(crate) fn build(
        links: &[LinkMessage],
        rules: &[RuleMessage],
        routes: &[RouteMessage],
        neighbours: &[NeighbourMessage],
    ) -> Self {
        let mut s = Self::default();
        for l in links {
            if l.header.link_layer_type != LinkLayerType::Ether
                || !l.header.flags.contains(LinkFlags::Up | LinkFlags::Running)
            {
                continue;
            }
            let mut mac = None;
            let mut mtu = None;
            for a in &l.attributes {
                match a {
                    LinkAttribute::Address(m) if m.len() == 6 => {
                        mac = Some([m[0], m[1], m[2], m[3], m[4], m[5]]);
                    }
                    LinkAttribute::Mtu(m) => mtu = Some(*m),
                    _ => {}
                }
            }
            if let (Some(mac), Some(mtu)) = (mac, mtu) {
                s.links.insert(l.header.index, Link { mac, mtu });
            }
        }
        s.policy_routing = rules.iter().any(|r| !is_default_rule(r));
        for r in routes {
            s.add_route(r);
        }
        s.truncated = s.local.full() || s.main.full() || s.default.full();
        for n in neighbours {
            if s.neighbours.len() >= MAX_NEIGHBOURS {
                break;
            }
            if n.header.family != AddressFamily::Inet || !s.links.contains_key(&n.header.ifindex) {
                continue;
            }
            let confirm = match n.header.state {
                NeighbourState::Reachable
                | NeighbourState::Permanent
                | NeighbourState::Noarp
                | NeighbourState::Delay
                | NeighbourState::Probe => false,
                NeighbourState::Stale => true,
                _ => continue,
            };
            let mut ip = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(x)) => ip = Some(*x),
                    NeighbourAttribute::LinkLayerAddress(m) if m.len() == 6 => {
                        mac = Some([m[0], m[1], m[2], m[3], m[4], m[5]]);
                    }
                    _ => {}
                }
            }
            if let (Some(ip), Some(mac)) = (ip, mac) {
                s.neighbours.insert((n.header.ifindex, u32::from(ip)), Neighbour { mac, confirm });
            }
        }
        s
    }

    fn add_route(&mut self, r: &RouteMessage) {
        if r.header.address_family != AddressFamily::Inet || r.header.tos != 0 {
            // A TOS route never matches our datagrams (TOS 0).
            return;
        }
        let mut table = u32::from(r.header.table);
        let (mut dst, mut gateway, mut oif, mut metric) = (0u32, None, None, 0u32);
        let mut unmodelled = false;
        for a in &r.attributes {
            match a {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = u32::from(*d),
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(u32::from(*g)),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::MultiPath(_)
                | RouteAttribute::Via(_)
                | RouteAttribute::NhId(_)
                | RouteAttribute::Encap(_)
                | RouteAttribute::EncapType(_) => unmodelled = true,
                _ => {}
            }
        }
        let len = r.header.destination_prefix_length.min(32);
        let hop = match (r.header.kind, oif) {
            _ if unmodelled => Hop::Socket,
            (RouteType::Unicast, Some(ifindex)) if self.links.contains_key(&ifindex) => match gateway {
                Some(gateway) => Hop::Via { ifindex, gateway },
                None => Hop::OnLink { ifindex },
            },
            // Local, broadcast, unreachable, blackhole, prohibit, throw, or a unicast route
            // on an interface that is not Ethernet or not up.
            _ => Hop::Socket,
        };
        let t = match table {
            TABLE_LOCAL => &mut self.local,
            TABLE_MAIN => &mut self.main,
            TABLE_DEFAULT => &mut self.default,
            _ => return, // reached only through rules, which then are not the default ones
        };
        t.insert(dst, len, metric, hop);
    }

    /// Where a datagram of `ip_len` bytes (IPv4 header included) to `dst` goes.
    pub(crate) fn resolve(&mut self, dst: Ipv4Addr, ip_len: usize) -> Result<Path, Miss> {
        if self.policy_routing || self.truncated {
            return Err(Miss::Route);
        }
        let d = u32::from(dst);
        if self.local.lookup(d).is_some() {
            return Err(Miss::Route);
        }
        let hop = self.main.lookup(d).or_else(|| self.default.lookup(d)).ok_or(Miss::Route)?;
        let (ifindex, next) = match hop {
            Hop::Via { ifindex, gateway } => (ifindex, gateway),
            Hop::OnLink { ifindex } => (ifindex, d),
            Hop::Socket => return Err(Miss::Route),
        };
        let link = self.links.get(&ifindex).ok_or(Miss::Route)?;
        if ip_len > link.mtu as usize {
            return Err(Miss::TooBig);
        }
        let n = self.neighbours.get_mut(&(ifindex, next)).ok_or(Miss::Neighbour)?;
        if n.confirm {
            n.confirm = false;
            return Err(Miss::Neighbour);
        }
        Ok(Path { ifindex, src_mac: link.mac, dst_mac: n.mac })
    }

    /// Ethernet interfaces that are up.
    pub(crate) fn ethernet_links(&self) -> usize {
        self.links.len()
    }

    /// True when rules other than the default ones exist (nothing goes by frame).
    pub(crate) fn policy_routing(&self) -> bool {
        self.policy_routing
    }
}

/// The three rules every Linux system has: `0: lookup local`, `32766: lookup main`,
/// `32767: lookup default`, without selectors.
fn is_default_rule(r: &RuleMessage) -> bool {
    if r.header.family != AddressFamily::Inet {
        return true;
    }
    if r.header.action != RuleAction::ToTable
        || r.header.src_len != 0
        || r.header.dst_len != 0
        || r.header.tos != 0
    {
        return false;
    }
    let mut table = u32::from(r.header.table);
    let mut priority = 0;
    for a in &r.attributes {
        match a {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::Protocol(_) => {}
            RuleAttribute::SuppressPrefixLen(v) | RuleAttribute::SuppressIfGroup(v) if *v == u32::MAX => {}
            _ => return false,
        }
    }
    matches!((priority, table), (0, TABLE_LOCAL) | (32766, TABLE_MAIN) | (32767, TABLE_DEFAULT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, kind: LinkLayerType, mac: [u8; 6], up: bool) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.header.link_layer_type = kind;
        if up {
            l.header.flags = LinkFlags::Up | LinkFlags::Running;
        }
        l.attributes.push(LinkAttribute::Address(mac.to_vec()));
        l.attributes.push(LinkAttribute::Mtu(1500));
        l
    }

    fn route(
        dst: &str,
        len: u8,
        table: u8,
        kind: RouteType,
        oif: u32,
        gw: Option<&str>,
        metric: u32,
    ) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = len;
        r.header.table = table;
        r.header.kind = kind;
        if len > 0 {
            r.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(dst.parse().unwrap())));
        }
        if let Some(g) = gw {
            r.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(g.parse().unwrap())));
        }
        r.attributes.push(RouteAttribute::Oif(oif));
        r.attributes.push(RouteAttribute::Priority(metric));
        r
    }

    fn neigh(ifindex: u32, ip: &str, mac: [u8; 6], state: NeighbourState) -> NeighbourMessage {
        let mut n = NeighbourMessage::default();
        n.header.family = AddressFamily::Inet;
        n.header.ifindex = ifindex;
        n.header.state = state;
        n.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip.parse().unwrap())));
        n.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        n
    }

    fn rule(priority: u32, table: u8) -> RuleMessage {
        let mut r = RuleMessage::default();
        r.header.family = AddressFamily::Inet;
        r.header.action = RuleAction::ToTable;
        r.header.table = table;
        r.attributes.push(RuleAttribute::Priority(priority));
        r.attributes.push(RuleAttribute::Table(u32::from(table)));
        r
    }

    const ETH: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
    const HOST: [u8; 6] = [2, 0, 0, 0, 0, 0x22];

    fn sample(extra_rules: &[RuleMessage]) -> Snapshot {
        let links = [
            link(1, LinkLayerType::Loopback, [0; 6], true),
            link(2, LinkLayerType::Ether, ETH, true),
            link(3, LinkLayerType::Ether, [2, 0, 0, 0, 0, 3], false),
            link(4, LinkLayerType::None, [0; 6], true),
        ];
        let mut rules = vec![rule(0, 255), rule(32766, 254), rule(32767, 253)];
        rules.extend_from_slice(extra_rules);
        let routes = [
            route("0.0.0.0", 0, 254, RouteType::Unicast, 2, Some("198.51.100.254"), 0),
            route("198.51.100.0", 24, 254, RouteType::Unicast, 2, None, 0),
            route("203.0.113.0", 24, 254, RouteType::Unicast, 3, None, 0),
            route("203.0.113.128", 25, 254, RouteType::Unicast, 4, None, 0),
            route("192.0.2.64", 26, 254, RouteType::Unreachable, 0, None, 0),
            route("192.0.2.1", 32, 255, RouteType::Local, 2, None, 0),
            // A worse duplicate of the default route.
            route("0.0.0.0", 0, 254, RouteType::Unicast, 2, Some("198.51.100.253"), 100),
        ];
        let neighbours = [
            neigh(2, "198.51.100.254", GW, NeighbourState::Reachable),
            neigh(2, "198.51.100.253", [9; 6], NeighbourState::Reachable),
            neigh(2, "198.51.100.22", HOST, NeighbourState::Stale),
            neigh(2, "198.51.100.23", [0; 6], NeighbourState::Incomplete),
        ];
        Snapshot::build(&links, &rules, &routes, &neighbours)
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_and_neighbours() {
        let mut s = sample(&[]);
        assert_eq!(s.ethernet_links(), 1);
        // Default route through the gateway of lower metric.
        assert_eq!(s.resolve(ip("8.8.8.8"), 100), Ok(Path { ifindex: 2, src_mac: ETH, dst_mac: GW }));
        // On the link, neighbour STALE: first through the socket (the kernel confirms),
        // then by frame until the next refresh.
        assert_eq!(s.resolve(ip("198.51.100.22"), 100), Err(Miss::Neighbour));
        assert_eq!(s.resolve(ip("198.51.100.22"), 100), Ok(Path { ifindex: 2, src_mac: ETH, dst_mac: HOST }));
        // On the link, neighbour incomplete or unknown.
        assert_eq!(s.resolve(ip("198.51.100.23"), 100), Err(Miss::Neighbour));
        assert_eq!(s.resolve(ip("198.51.100.99"), 100), Err(Miss::Neighbour));
        // Interface down, interface not Ethernet, unreachable, local.
        assert_eq!(s.resolve(ip("203.0.113.5"), 100), Err(Miss::Route));
        assert_eq!(s.resolve(ip("203.0.113.200"), 100), Err(Miss::Route));
        assert_eq!(s.resolve(ip("192.0.2.65"), 100), Err(Miss::Route));
        assert_eq!(s.resolve(ip("192.0.2.1"), 100), Err(Miss::Route));
        // Larger than the MTU.
        assert_eq!(s.resolve(ip("8.8.8.8"), 1501), Err(Miss::TooBig));
        assert_eq!(s.resolve(ip("8.8.8.8"), 1500).map(|p| p.dst_mac), Ok(GW));
    }

    #[test]
    fn policy_rules_disable_frames() {
        let mut extra = rule(100, 10);
        extra.header.src_len = 24;
        let mut s = sample(&[extra]);
        assert!(s.policy_routing());
        assert_eq!(s.resolve(ip("8.8.8.8"), 100), Err(Miss::Route));
        // IPv6 rules do not matter.
        let mut v6 = rule(100, 10);
        v6.header.family = AddressFamily::Inet6;
        assert!(!sample(&[v6]).policy_routing());
    }

    #[test]
    fn multipath_goes_through_the_socket() {
        let links = [link(2, LinkLayerType::Ether, ETH, true)];
        let mut r = route("0.0.0.0", 0, 254, RouteType::Unicast, 2, None, 0);
        r.attributes.push(RouteAttribute::MultiPath(Vec::new()));
        let mut s = Snapshot::build(&links, &[], &[r], &[neigh(2, "8.8.8.8", GW, NeighbourState::Permanent)]);
        assert_eq!(s.resolve(ip("8.8.8.8"), 100), Err(Miss::Route));
    }

    #[test]
    fn masks() {
        assert_eq!(mask(0xc000_0201, 0), 0);
        assert_eq!(mask(0xc000_0201, 24), 0xc000_0200);
        assert_eq!(mask(0xc000_0201, 32), 0xc000_0201);
    }
}
