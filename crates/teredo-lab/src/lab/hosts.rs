//! The nodes of a lab (see the table in [`super`]): their fixed addresses, and the Teredo
//! server, relay, native IPv6 host, NATs and clients a [`Lab`](super::Lab) hands out, each
//! a [`Node`] with what a test checks on it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Deref;

use crate::error::Result;
use crate::nat::{ConntrackUdp, parse_conntrack_udp};
use crate::node::Node;
use crate::{LabError, NatKind};

/// The server's primary IPv4 address.
pub const SERVER_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The server's secondary IPv4 address (primary + 1, as Miredo expects).
pub const SERVER_IPV4_2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The server's native IPv6 address.
pub const SERVER_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The relay's public IPv4 address.
pub const RELAY_IPV4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The relay's native IPv6 address.
pub const RELAY_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
/// The native IPv6 host's address.
pub const V6HOST_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 1);
/// How many NATs (and how many public clients) one lab can have.
pub const MAX_NATS: u8 = 15;
/// How many clients one NAT can have.
pub const MAX_CLIENTS_PER_NAT: u8 = 200;

/// The name of every node's single uplink interface (NATs: `wan` and `lan`).
pub const ETH: &str = "eth0";
/// A NAT's public interface.
pub const WAN: &str = "wan";
/// A NAT's LAN bridge.
pub const LAN: &str = "lan";

/// The Teredo server's namespace.
#[derive(Debug, Clone)]
pub struct Server {
    /// The namespace.
    pub node: Node,
    /// The primary IPv4 address ([`SERVER_IPV4`]).
    pub primary: Ipv4Addr,
    /// The secondary IPv4 address ([`SERVER_IPV4_2`]).
    pub secondary: Ipv4Addr,
    /// The native IPv6 address ([`SERVER_IPV6`]).
    pub ipv6: Ipv6Addr,
}

/// The Teredo relay's namespace: public IPv4, native IPv6, and the router sends 2001::/32
/// to it.
#[derive(Debug, Clone)]
pub struct Relay {
    /// The namespace.
    pub node: Node,
    /// The public IPv4 address ([`RELAY_IPV4`]).
    pub ipv4: Ipv4Addr,
    /// The native IPv6 address ([`RELAY_IPV6`]).
    pub ipv6: Ipv6Addr,
}

/// A native IPv6 host (no IPv4) on the lab's IPv6 internet.
#[derive(Debug, Clone)]
pub struct V6Host {
    /// The namespace.
    pub node: Node,
    /// Its address ([`V6HOST_IPV6`]).
    pub ipv6: Ipv6Addr,
}

/// A NAT namespace: public side `wan`, private side the bridge `lan`.
#[derive(Debug, Clone)]
pub struct Nat {
    /// The namespace.
    pub node: Node,
    /// Its behaviour.
    pub kind: NatKind,
    /// Its number in the lab (1-based).
    pub index: u8,
    /// The public IPv4 address on `wan`.
    pub public: Ipv4Addr,
    /// The LAN address on `lan` (the clients' gateway), in a /24.
    pub lan: Ipv4Addr,
}

/// A client namespace, behind a NAT or directly on the internet.
#[derive(Debug, Clone)]
pub struct Client {
    /// The namespace.
    pub node: Node,
    /// Its IPv4 address on `eth0` (private behind a NAT, public otherwise).
    pub ipv4: Ipv4Addr,
    /// The NAT it sits behind, if any.
    pub nat: Option<Nat>,
}

impl Client {
    /// The public IPv4 address its traffic leaves with (the NAT's, or its own).
    pub fn public_ipv4(&self) -> Ipv4Addr {
        self.nat.as_ref().map_or(self.ipv4, |n| n.public)
    }

    /// Waits for a Teredo address on `iface` and checks what a user would: it is under
    /// 2001::/32, names the server `primary`, and embeds this client's real public mapping
    /// — its NAT's public IPv4 and the port the NAT's connection tracking shows for the
    /// flow to `primary`:3544 (or the client's own address and any port without a NAT).
    pub fn wait_qualified(
        &self,
        iface: &str,
        primary: Ipv4Addr,
        timeout: std::time::Duration,
    ) -> Result<(Ipv6Addr, teredo_proto::address::TeredoAddress)> {
        let (addr, t) = self.wait_teredo_address(iface, timeout)?;
        let wrong = |what: String| Err(LabError::Invalid(format!("{addr}: {what}")));
        if t.prefix != teredo_proto::address::TEREDO_PREFIX {
            return wrong("not under 2001::/32".into());
        }
        if t.server != primary {
            return wrong(format!("server {} instead of {primary}", t.server));
        }
        if t.mapped_addr != self.public_ipv4() {
            return wrong(format!(
                "mapped address {} instead of the public {}",
                t.mapped_addr,
                self.public_ipv4()
            ));
        }
        if let Some(nat) = &self.nat {
            let to = std::net::SocketAddrV4::new(primary, teredo_proto::address::TEREDO_PORT);
            let ct = nat.mapped_port(self.ipv4, to)?;
            if ct != Some(t.mapped_port) {
                return wrong(format!(
                    "mapped port {} but the {} NAT maps the flow to the server to {ct:?}",
                    t.mapped_port, nat.kind
                ));
            }
        }
        Ok((addr, t))
    }
}

macro_rules! deref_node {
    ($($t:ty),*) => {$(
        impl Deref for $t {
            type Target = Node;
            fn deref(&self) -> &Node {
                &self.node
            }
        }
    )*};
}
deref_node!(Server, Relay, V6Host, Nat, Client);

impl Nat {
    /// Empties the NAT's conntrack table (`conntrack -F`): existing mappings are forgotten,
    /// as when a home router reboots. The cone mappings of nftables stay.
    pub fn conntrack_flush(&self) -> Result<()> {
        self.exec("conntrack", &["-F"]).map(drop)
    }

    /// The NAT's UDP conntrack entries (`conntrack -L -p udp`).
    pub fn conntrack_udp(&self) -> Result<Vec<ConntrackUdp>> {
        let out = self.exec("conntrack", &["-L", "-p", "udp"])?;
        parse_conntrack_udp(&out)
    }

    /// The public port of the conntrack flow from `client` (any port) to `remote`, if any.
    pub fn mapped_port(&self, client: Ipv4Addr, remote: std::net::SocketAddrV4) -> Result<Option<u16>> {
        Ok(self
            .conntrack_udp()?
            .into_iter()
            .find(|e| *e.orig_src.ip() == client && e.orig_dst == remote)
            .map(|e| e.reply_dst.port()))
    }
}
