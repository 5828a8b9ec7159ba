//! [`InterfaceConfig`] on Linux through rtnetlink (netlink-packet-route over a
//! netlink-sys socket): RTM_NEWLINK for link state and MTU, RTM_NEWADDR / RTM_DELADDR /
//! RTM_GETADDR for IPv6 addresses, RTM_NEWROUTE / RTM_DELROUTE for IPv6 routes in the main
//! table. This replaces both libtun6's ioctls and the `ip` commands of Miredo's Linux
//! client hook (miredo-facts §1.9, §8).
//!
//! Every request asks for an acknowledgement and waits for it: a request is only done when
//! the kernel said so, and a refusal comes back as [`ConfigError::Kernel`] with the errno
//! and a description of the request. Answers are read into one fixed 64 KiB buffer and at
//! most [`MAX_REPLY_MESSAGES`] messages are looked at per request, so a confused kernel
//! cannot make us loop or allocate without bound.

use std::io;
use std::net::{IpAddr, Ipv6Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::ifconfig::{ConfigError, InterfaceConfig, Ipv6Prefix, Route};

/// The most reply messages examined for one request (a dump of addresses included).
pub const MAX_REPLY_MESSAGES: usize = 16384;
/// The most addresses [`InterfaceConfig::addresses`] returns.
const MAX_ADDRESSES: usize = 1024;

/// A netlink route socket.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("seq", &self.seq).finish_non_exhaustive()
    }
}

impl Netlink {
    /// Opens and binds a NETLINK_ROUTE socket. Opening needs no privilege; the requests
    /// need CAP_NET_ADMIN, held both by the process that opened the socket and by the one
    /// sending on it.
    pub fn open() -> Result<Self, ConfigError> {
        let op = "open netlink route socket";
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| ConfigError::kernel(op, e))?;
        socket.bind_auto().map_err(|e| ConfigError::kernel(op, e))?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(|e| ConfigError::kernel(op, e))?;
        Ok(Self { socket, seq: 1, buf: vec![0; 65536] })
    }

    /// Sends `message` and collects the answer: for a plain request, the ACK (or the
    /// kernel's error); for a dump, every inner message until NLMSG_DONE.
    fn exchange(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, ConfigError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let len = packet.buffer_len();
        if len > self.buf.len() {
            return Err(ConfigError::Protocol { op: op.into(), detail: format!("request of {len} bytes") });
        }
        packet.serialize(&mut self.buf[..len]);
        self.socket.send(&self.buf[..len], 0).map_err(|e| ConfigError::kernel(op, e))?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let mut seen = 0;
        loop {
            let n = self.recv(op)?;
            let mut off = 0;
            while off < n {
                seen += 1;
                if seen > MAX_REPLY_MESSAGES {
                    return Err(ConfigError::Protocol { op: op.into(), detail: "too many messages".into() });
                }
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| ConfigError::Protocol { op: op.into(), detail: e.to_string() })?;
                let mlen = msg.header.length as usize;
                if mlen < 16 {
                    return Err(ConfigError::Protocol {
                        op: op.into(),
                        detail: format!("message length {mlen}"),
                    });
                }
                off += (mlen + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue; // a late answer to an earlier request
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => {
                                Err(ConfigError::kernel(op, io::Error::from_raw_os_error(-code.get())))
                            }
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(inner) if dump => out.push(inner),
                    NetlinkPayload::Overrun(_) => {
                        return Err(ConfigError::Protocol { op: op.into(), detail: "overrun".into() });
                    }
                    _ => {}
                }
            }
        }
    }

    fn recv(&mut self, op: &str) -> Result<usize, ConfigError> {
        loop {
            let mut slice = &mut self.buf[..];
            match self.socket.recv(&mut slice, 0) {
                Ok(0) => return Err(ConfigError::Protocol { op: op.into(), detail: "socket closed".into() }),
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConfigError::kernel(op, e)),
            }
        }
    }

    /// Dumps what `message` asks for (RTM_GET* with NLM_F_DUMP): every answer, at most
    /// [`MAX_REPLY_MESSAGES`]. Reading needs no privilege.
    pub(crate) fn dump(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, ConfigError> {
        self.exchange(op, message, NLM_F_DUMP)
    }

    fn ack(&mut self, op: &str, message: RouteNetlinkMessage, flags: u16) -> Result<(), ConfigError> {
        self.exchange(op, message, NLM_F_ACK | flags).map(|_| ())
    }

    fn address_message(ifindex: u32, address: Ipv6Prefix) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.prefix_len = address.prefix_len();
        m.header.index = ifindex;
        m.attributes.push(AddressAttribute::Address(IpAddr::V6(address.address())));
        m
    }

    fn route_message(route: &Route) -> RouteMessage {
        let net = route.destination.network();
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.destination_prefix_length = net.prefix_len();
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        if net.prefix_len() > 0 {
            m.attributes.push(RouteAttribute::Destination(RouteAddress::Inet6(net.address())));
        }
        m.attributes.push(RouteAttribute::Oif(route.ifindex));
        m.attributes.push(RouteAttribute::Priority(route.metric));
        m
    }
}

impl InterfaceConfig for Netlink {
    fn set_link(&mut self, ifindex: u32, up: bool) -> Result<(), ConfigError> {
        let mut m = LinkMessage::default();
        m.header.index = ifindex;
        m.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
        m.header.change_mask = LinkFlags::Up;
        let op = format!("set interface #{ifindex} {}", if up { "up" } else { "down" });
        self.ack(&op, RouteNetlinkMessage::SetLink(m), 0)
    }

    fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> Result<(), ConfigError> {
        let mut m = LinkMessage::default();
        m.header.index = ifindex;
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.ack(&format!("set MTU {mtu} on interface #{ifindex}"), RouteNetlinkMessage::SetLink(m), 0)
    }

    fn add_address(&mut self, ifindex: u32, address: Ipv6Prefix) -> Result<(), ConfigError> {
        let mut m = Self::address_message(ifindex, address);
        // No duplicate address detection: the TUN is point-to-point and NOARP, and the
        // address must be usable at once.
        m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        let op = format!("add address {address} on interface #{ifindex}");
        self.ack(&op, RouteNetlinkMessage::NewAddress(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    fn remove_address(&mut self, ifindex: u32, address: Ipv6Prefix) -> Result<(), ConfigError> {
        let m = Self::address_message(ifindex, address);
        let op = format!("remove address {address} from interface #{ifindex}");
        self.ack(&op, RouteNetlinkMessage::DelAddress(m), 0)
    }

    fn addresses(&mut self, ifindex: u32) -> Result<Vec<Ipv6Prefix>, ConfigError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        let op = format!("list IPv6 addresses of interface #{ifindex}");
        let all = self.exchange(&op, RouteNetlinkMessage::GetAddress(m), NLM_F_DUMP)?;
        let mut out = Vec::new();
        for msg in all {
            let RouteNetlinkMessage::NewAddress(a) = msg else { continue };
            if a.header.index != ifindex || a.header.family != AddressFamily::Inet6 {
                continue;
            }
            let addr = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(IpAddr::V6(x)) => Some(*x),
                _ => None,
            });
            if let Some(p) = addr.and_then(|x: Ipv6Addr| Ipv6Prefix::new(x, a.header.prefix_len)) {
                out.push(p);
                if out.len() == MAX_ADDRESSES {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn add_route(&mut self, route: &Route) -> Result<(), ConfigError> {
        let m = Self::route_message(route);
        self.ack(&format!("add {route}"), RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    fn remove_route(&mut self, route: &Route) -> Result<(), ConfigError> {
        let m = Self::route_message(route);
        self.ack(&format!("remove {route}"), RouteNetlinkMessage::DelRoute(m), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_message_clears_host_bits_and_omits_default_destination() {
        let a: Ipv6Addr = "2001:0:c000:201::1".parse().unwrap();
        let r = Route { destination: Ipv6Prefix::new(a, 32).unwrap(), ifindex: 7, metric: 1024 };
        let m = Netlink::route_message(&r);
        assert_eq!(m.header.destination_prefix_length, 32);
        assert!(
            m.attributes
                .contains(&RouteAttribute::Destination(RouteAddress::Inet6("2001::".parse().unwrap())))
        );
        assert!(m.attributes.contains(&RouteAttribute::Priority(1024)));
        let d = Netlink::route_message(&Route { destination: Ipv6Prefix::DEFAULT, ifindex: 7, metric: 1029 });
        assert!(!d.attributes.iter().any(|a| matches!(a, RouteAttribute::Destination(_))));
    }

    #[test]
    fn requests_on_a_missing_interface_are_refused_with_context() {
        // Reading needs no privilege; a change on a missing interface is refused either for
        // lack of it or because the index does not exist. Either way the error says what.
        let Ok(mut nl) = Netlink::open() else { return };
        let e = nl.set_mtu(0x7fff_fff0, 1400).unwrap_err();
        assert!(e.to_string().starts_with("set MTU 1400 on interface #2147483632: "), "{e}");
        assert!(e.errno().is_some());
        let lo = crate::tun::index_of("lo").unwrap();
        // Listing works unprivileged.
        assert!(nl.addresses(lo).is_ok());
    }
}
