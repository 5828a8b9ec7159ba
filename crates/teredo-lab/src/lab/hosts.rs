//! The nodes of a lab (see the table in [`super`]): their fixed addresses, and the Teredo
//! server, relay, native IPv6 host, NATs and clients a [`Lab`](super::Lab) hands out, each
//! a [`Node`] with what a test checks on it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Deref;

use crate::error::Result;
use crate::nat::userland::{self, Binding, UpnpMapping};
use crate::nat::{ConntrackUdp, Engine, igd, parse_conntrack_udp};
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
    /// The (first) public IPv4 address on `wan`.
    pub public: Ipv4Addr,
    /// All its public IPv4 addresses on `wan`, [`Nat::public`] first (several for an
    /// address-symmetric NAT).
    pub publics: Vec<Ipv4Addr>,
    /// The LAN address on `lan` (the clients' gateway), in a /24.
    pub lan: Ipv4Addr,
    /// The userland NAT's state, for the kinds that have one.
    pub(crate) userland: Option<userland::Handle>,
    /// `miniupnpd`'s lease file, for a UPnP kind.
    pub(crate) upnp_leases: Option<std::path::PathBuf>,
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
    /// The public IPv4 address its traffic leaves with (the NAT's, or its own; for an
    /// address-symmetric NAT its first, which the first remote address sees).
    pub fn public_ipv4(&self) -> Ipv4Addr {
        self.nat.as_ref().map_or(self.ipv4, |n| n.public)
    }

    /// Waits for a Teredo address on `iface` and checks what a user would: it is under
    /// 2001::/32, names the server `primary`, and embeds this client's real public mapping
    /// — the address and port its NAT shows for the flow to `primary`:3544 (from the NAT's
    /// connection tracking, or its userland NAT's bindings), or the client's own address
    /// and any port without a NAT.
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
        let Some(nat) = &self.nat else {
            if t.mapped_addr != self.ipv4 {
                return wrong(format!(
                    "mapped address {} instead of the public {}",
                    t.mapped_addr, self.ipv4
                ));
            }
            return Ok((addr, t));
        };
        let to = std::net::SocketAddrV4::new(primary, teredo_proto::address::TEREDO_PORT);
        let seen = nat.mapping(self.ipv4, to)?;
        if seen.map(|m| *m.ip()) != Some(t.mapped_addr) {
            let want = seen.map_or_else(|| format!("one of {:?}", nat.publics), |m| m.ip().to_string());
            return wrong(format!("mapped address {} instead of the public {want}", t.mapped_addr));
        }
        if seen.map(|m| m.port()) != Some(t.mapped_port) {
            return wrong(format!(
                "mapped port {} but the {} NAT maps the flow to the server to {:?}",
                t.mapped_port,
                nat.kind,
                seen.map(|m| m.port())
            ));
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
    /// Empties the NAT's conntrack table (`conntrack -F`) and its userland NAT's bindings:
    /// existing mappings are forgotten, as when a home router reboots. The cone mappings of
    /// nftables and UPnP port mappings stay.
    pub fn conntrack_flush(&self) -> Result<()> {
        if let Some(u) = &self.userland {
            u.clear();
        }
        self.exec("conntrack", &["-F"]).map(drop)
    }

    /// The NAT's UDP conntrack entries (`conntrack -L -p udp`). A userland kind has none
    /// for UDP: see [`Nat::mapping`] and [`Nat::bindings`].
    pub fn conntrack_udp(&self) -> Result<Vec<ConntrackUdp>> {
        let out = self.exec("conntrack", &["-L", "-p", "udp"])?;
        parse_conntrack_udp(&out)
    }

    /// The public address and port the NAT shows `remote` for the UDP flow from `client`
    /// (any port) to it, if there is one: from conntrack, or from the userland NAT.
    pub fn mapping(
        &self,
        client: Ipv4Addr,
        remote: std::net::SocketAddrV4,
    ) -> Result<Option<std::net::SocketAddrV4>> {
        if let Some(u) = &self.userland {
            return Ok(userland::find_binding(&u.bindings(), self.kind, client, remote));
        }
        Ok(self
            .conntrack_udp()?
            .into_iter()
            .find(|e| *e.orig_src.ip() == client && e.orig_dst == remote)
            .map(|e| e.reply_dst))
    }

    /// The public port of the flow from `client` (any port) to `remote`, if any (see
    /// [`Nat::mapping`]).
    pub fn mapped_port(&self, client: Ipv4Addr, remote: std::net::SocketAddrV4) -> Result<Option<u16>> {
        Ok(self.mapping(client, remote)?.map(|m| m.port()))
    }

    /// The userland NAT's bindings (empty for a kind built with nftables alone).
    pub fn bindings(&self) -> Vec<Binding> {
        self.userland.as_ref().map(userland::Handle::bindings).unwrap_or_default()
    }

    /// Whether a userland NAT translates this NAT's UDP.
    pub fn is_userland(&self) -> bool {
        self.kind.engine() == Engine::Userland
    }

    /// Whether its userland NAT's thread runs (false for a kind without one, and after the
    /// lab is dropped).
    pub fn userland_running(&self) -> bool {
        self.userland.as_ref().is_some_and(userland::Handle::is_running)
    }

    /// The description URL of the NAT's UPnP IGD, for a UPnP kind.
    pub fn igd_url(&self) -> Option<String> {
        self.kind.upnp().then(|| igd::description_url(self.lan))
    }

    /// The UPnP port mappings in force (what the NAT applies: the userland NAT's view of
    /// `miniupnpd`'s leases, or the leases themselves when the kernel applies
    /// `miniupnpd`'s rules); empty for a kind without UPnP.
    pub fn upnp_mappings(&self) -> Vec<UpnpMapping> {
        match (&self.userland, &self.upnp_leases) {
            (Some(u), Some(_)) => u.upnp_mappings(),
            (None, Some(path)) => userland::read_leases(path),
            _ => Vec::new(),
        }
    }
}
