//! The lab's NAT behaviours: every NAT kind of RFC 6081 Figure 1, each built inside a NAT
//! namespace with nftables where nftables can express it, with a small userland NAT
//! ([`userland`]) where it cannot, and with Debian's `miniupnpd` as the UPnP IGD of the
//! two UPnP kinds; and how a test reads a NAT's mappings.
//!
//! The kinds, in Figure 1's order ([`NatKind::FIGURE_1`]), with RFC 4787's terms:
//!
//! | Figure 1 | [`NatKind`] ([`name`](NatKind::name)) | mapping | filtering | public port | how |
//! |---|---|---|---|---|---|
//! | Cone | [`FullCone`](NatKind::FullCone) (`cone`) | endpoint-independent | endpoint-independent | the local port when free | masquerade + a dynamic nft map *public port → LAN address.port*, filled by outbound UDP, used to DNAT inbound UDP |
//! | Address restricted | [`AddressRestricted`](NatKind::AddressRestricted) (`address-restricted`) | endpoint-independent | address-dependent | the local port when free | the same, plus a dynamic set *public port . remote IPv4* filled by outbound UDP; new inbound UDP whose pair is absent is dropped before DNAT |
//! | Port restricted | [`PortRestricted`](NatKind::PortRestricted) (`port-restricted`) | endpoint-independent | address- and port-dependent | the local port when free | plain masquerade: only conntrack replies come in |
//! | UPnP Port-restricted | [`UpnpPortRestricted`](NatKind::UpnpPortRestricted) (`upnp-port-restricted`) | as port-restricted | as port-restricted, plus UPnP mappings open to anyone | the local port when free | masquerade + `miniupnpd`, whose DNAT and forward rules the kernel applies |
//! | UPnP Port symmetric | [`UpnpPortSymmetric`](NatKind::UpnpPortSymmetric) (`upnp-port-symmetric`) | address- and port-dependent | address- and port-dependent, plus UPnP mappings open to anyone | random; a local endpoint with a UPnP mapping gets the mapping's external port for a binding while no other binding uses it | userland NAT + `miniupnpd` (its rules are bookkeeping only: the userland NAT applies the mappings of its lease file) |
//! | Port-preserving Port-symmetric | [`PortPreservingSymmetric`](NatKind::PortPreservingSymmetric) (`port-preserving-port-symmetric`) | address- and port-dependent | address- and port-dependent | the local port when no binding of the NAT uses it, else random | userland NAT |
//! | Sequential Port-symmetric | [`SequentialSymmetric`](NatKind::SequentialSymmetric) (`sequential-port-symmetric`) | address- and port-dependent | address- and port-dependent | the previous binding's port + [`SEQUENTIAL_STEP`] (NAT-wide, skipping ports in use), from a random start | userland NAT |
//! | Port-symmetric | [`Symmetric`](NatKind::Symmetric) (`port-symmetric`) | address- and port-dependent | address- and port-dependent | random | masquerade `fully-random` |
//! | Address-symmetric | [`AddressSymmetric`](NatKind::AddressSymmetric) (`address-symmetric`) | address-dependent: each remote address sees one of [`ADDRESS_SYMMETRIC_PUBLICS`] public addresses, the next in turn for each new remote address | address- and port-dependent | random | userland NAT |
//!
//! "Mapping" is what decides whether two flows from one local address/port share a public
//! address/port; "filtering" which unsolicited senders get through a mapping. Figure 1's
//! cells (which pairs of kinds connect, with which extensions) are in [`figure1`].
//!
//! Every kind drops unsolicited inbound packets in INPUT and FORWARD *before* conntrack
//! confirms them. That drop matters: if an early inbound bubble were confirmed, a later
//! outbound packet of the same flow would clash with it and leave with another public port.
//! The userland kinds keep UDP out of conntrack altogether (see [`userland`]).
//!
//! UPnP: the two UPnP kinds run `miniupnpd` (IGDv1, WANIPConnection:1) inside the NAT
//! namespace, listening on the LAN bridge only (SSDP on 239.255.255.250:1900 and HTTP on
//! [`igd::HTTP_PORT`]); see [`igd`] for why it is told its public address through a STUN
//! responder on the NAT's loopback. A UPnP port mapping forwards anything sent to the
//! mapped public port to the mapped local address/port, whatever the source; it does not
//! change the public port of the local endpoint's own outbound flows (except as said in the
//! table). [`upnpc`] drives Debian's `upnpc` from a client.
//!
//! Limits:
//! - only UDP gets the behaviours above; TCP and ICMP behave as port-restricted in every
//!   kind (masquerade), and ICMP errors about UDP flows of the userland kinds are not
//!   translated;
//! - nftables cone mappings are keyed by public port: they live 300 s after the last
//!   outbound packet, and a mapping is endpoint-independent only while masquerade can
//!   keep the client's port (two LAN clients using the same source port get distinct public
//!   ports from masquerade, and each keeps its own, so this works for a few clients too);
//! - Linux masquerade (cone, restricted and UPnP port-restricted kinds) lets two local
//!   endpoints share a public port toward different remotes, as conntrack allows;
//! - no hairpinning in any kind: a LAN client cannot reach another through a public
//!   address (two clients behind one NAT talk over the LAN: [`crate::Lab::client_beside`]);
//! - conntrack's own UDP timeouts apply to the kernel kinds (30 s unreplied, 120 s once
//!   replied); the userland NAT forgets a binding [`userland::IDLE_TIMEOUT`] after its last
//!   packet and holds at most [`userland::MAX_BINDINGS`];
//! - IPv4 fragments of UDP are reassembled by the kernel before the userland NAT sees them.

pub mod conntrack;
pub mod figure1;
pub mod igd;
pub mod ruleset;
pub(crate) mod stun;
pub mod upnpc;
pub mod userland;

use std::fmt;
use std::str::FromStr;

pub use conntrack::{ConntrackUdp, parse_conntrack_udp};

/// How many public IPv4 addresses an [`NatKind::AddressSymmetric`] NAT has.
pub const ADDRESS_SYMMETRIC_PUBLICS: u8 = 4;

/// The distance between consecutive public ports of a [`NatKind::SequentialSymmetric`] NAT.
pub const SEQUENTIAL_STEP: u16 = 1;

/// A NAT behaviour: the kinds of RFC 6081 Figure 1. See the module documentation for how
/// each is made and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Figure 1's "Cone": endpoint-independent mapping and filtering ("full cone").
    FullCone,
    /// Figure 1's "Address restricted": endpoint-independent mapping, filtering by remote
    /// address ("restricted cone").
    AddressRestricted,
    /// Figure 1's "Port restricted": endpoint-independent mapping, filtering by remote
    /// address and port (Linux MASQUERADE, "port-restricted cone").
    PortRestricted,
    /// Figure 1's "UPnP Port-restricted": [`NatKind::PortRestricted`] with a UPnP IGD.
    UpnpPortRestricted,
    /// Figure 1's "UPnP Port symmetric": [`NatKind::Symmetric`]'s behaviour (userland) with
    /// a UPnP IGD.
    UpnpPortSymmetric,
    /// Figure 1's "Port-preserving Port-symmetric": a binding per remote endpoint whose
    /// public port is the local port when no other binding uses it (RFC 6081 §3.3).
    PortPreservingSymmetric,
    /// Figure 1's "Sequential Port-symmetric": a binding per remote endpoint, public ports
    /// handed out in sequence (RFC 6081 §3.4).
    SequentialSymmetric,
    /// Figure 1's "Port-symmetric": a new random public port for every remote endpoint,
    /// one public address (MASQUERADE `--random-fully`).
    Symmetric,
    /// Figure 1's "Address-symmetric": a new public address and port for every remote IPv4
    /// address.
    AddressSymmetric,
}

/// RFC 4787 mapping behaviour: what makes two flows from one local address/port get
/// different public addresses/ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mapping {
    /// One public address/port whatever the remote.
    EndpointIndependent,
    /// A new one per remote IPv4 address.
    AddressDependent,
    /// A new one per remote address and port.
    AddressAndPortDependent,
}

/// RFC 4787 filtering behaviour: which unsolicited senders a mapping lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filtering {
    /// Anyone.
    EndpointIndependent,
    /// Any port of an address the local endpoint has sent to.
    AddressDependent,
    /// Only address/port pairs the local endpoint has sent to.
    AddressAndPortDependent,
}

/// What builds a kind in the NAT namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// nftables and conntrack alone.
    Nftables,
    /// A userland NAT ([`userland`]) for UDP; nftables for the rest.
    Userland,
}

impl NatKind {
    /// Every kind, in RFC 6081 Figure 1's order (rows and columns).
    pub const ALL: [Self; 9] = [
        Self::FullCone,
        Self::AddressRestricted,
        Self::PortRestricted,
        Self::UpnpPortRestricted,
        Self::UpnpPortSymmetric,
        Self::PortPreservingSymmetric,
        Self::SequentialSymmetric,
        Self::Symmetric,
        Self::AddressSymmetric,
    ];

    /// RFC 6081 Figure 1's kinds in its order: the same list as [`NatKind::ALL`].
    pub const FIGURE_1: [Self; 9] = Self::ALL;

    /// A short name (Figure 1's, in lower case with dashes), e.g. `cone`,
    /// `port-symmetric`; [`FromStr`] parses it back.
    pub fn name(self) -> &'static str {
        match self {
            Self::FullCone => "cone",
            Self::AddressRestricted => "address-restricted",
            Self::PortRestricted => "port-restricted",
            Self::UpnpPortRestricted => "upnp-port-restricted",
            Self::UpnpPortSymmetric => "upnp-port-symmetric",
            Self::PortPreservingSymmetric => "port-preserving-port-symmetric",
            Self::SequentialSymmetric => "sequential-port-symmetric",
            Self::Symmetric => "port-symmetric",
            Self::AddressSymmetric => "address-symmetric",
        }
    }

    /// The kind's label in Figure 1, e.g. `UPnP Port-restricted`.
    pub fn figure_label(self) -> &'static str {
        match self {
            Self::FullCone => "Cone",
            Self::AddressRestricted => "Address restricted",
            Self::PortRestricted => "Port restricted",
            Self::UpnpPortRestricted => "UPnP Port-restricted",
            Self::UpnpPortSymmetric => "UPnP Port symmetric",
            Self::PortPreservingSymmetric => "Port-preserving Port-symmetric",
            Self::SequentialSymmetric => "Sequential Port-symmetric",
            Self::Symmetric => "Port-symmetric",
            Self::AddressSymmetric => "Address-symmetric",
        }
    }

    /// Its mapping behaviour.
    pub fn mapping(self) -> Mapping {
        match self {
            Self::FullCone | Self::AddressRestricted | Self::PortRestricted | Self::UpnpPortRestricted => {
                Mapping::EndpointIndependent
            }
            Self::AddressSymmetric => Mapping::AddressDependent,
            Self::UpnpPortSymmetric
            | Self::PortPreservingSymmetric
            | Self::SequentialSymmetric
            | Self::Symmetric => Mapping::AddressAndPortDependent,
        }
    }

    /// Its filtering behaviour (for a UPnP kind, outside its UPnP port mappings).
    pub fn filtering(self) -> Filtering {
        match self {
            Self::FullCone => Filtering::EndpointIndependent,
            Self::AddressRestricted => Filtering::AddressDependent,
            _ => Filtering::AddressAndPortDependent,
        }
    }

    /// Whether the public mapping is the same whatever the remote endpoint (a cone or
    /// restricted NAT; false for every symmetric kind).
    pub fn endpoint_independent_mapping(self) -> bool {
        self.mapping() == Mapping::EndpointIndependent
    }

    /// Whether the mapping depends on the remote (RFC 6081's "symmetric NAT").
    pub fn symmetric(self) -> bool {
        !self.endpoint_independent_mapping()
    }

    /// Whether the NAT has a UPnP IGD (`miniupnpd`) on its LAN.
    pub fn upnp(self) -> bool {
        matches!(self, Self::UpnpPortRestricted | Self::UpnpPortSymmetric)
    }

    /// Whether the first binding of a local port gets that port as its public port when no
    /// other binding uses it (RFC 6081 §2 "port-preserving"): the kinds built on Linux
    /// masquerade without `fully-random`, and [`NatKind::PortPreservingSymmetric`].
    pub fn port_preserving(self) -> bool {
        matches!(
            self,
            Self::FullCone
                | Self::AddressRestricted
                | Self::PortRestricted
                | Self::UpnpPortRestricted
                | Self::PortPreservingSymmetric
        )
    }

    /// For a sequential NAT, the distance between consecutive public ports.
    pub fn sequential_step(self) -> Option<u16> {
        (self == Self::SequentialSymmetric).then_some(SEQUENTIAL_STEP)
    }

    /// How many public IPv4 addresses the NAT has on `wan`.
    pub fn public_addresses(self) -> u8 {
        if self == Self::AddressSymmetric { ADDRESS_SYMMETRIC_PUBLICS } else { 1 }
    }

    /// What builds it.
    pub fn engine(self) -> Engine {
        match self {
            Self::UpnpPortSymmetric
            | Self::PortPreservingSymmetric
            | Self::SequentialSymmetric
            | Self::AddressSymmetric => Engine::Userland,
            _ => Engine::Nftables,
        }
    }

    /// The programs a NAT of this kind needs beyond the lab's own (for
    /// [`crate::run`]'s `needs`): `miniupnpd` for the UPnP kinds.
    pub fn programs(self) -> &'static [&'static str] {
        if self.upnp() { &[igd::MINIUPNPD] } else { &[] }
    }

    /// The nftables ruleset (for `nft -f -`) that makes a NAT of this kind, with public
    /// interface `wan` (see [`ruleset`]).
    pub fn ruleset(self, wan: &str) -> String {
        ruleset::ruleset(self, wan, userland::TUN)
    }
}

impl fmt::Display for NatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NatKind {
    type Err = String;

    /// Parses a [`NatKind::name`]; `full-cone` and `symmetric` (the names of old) too.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full-cone" => return Ok(Self::FullCone),
            "symmetric" => return Ok(Self::Symmetric),
            _ => {}
        }
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            format!("unknown NAT kind {s:?} (one of {})", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for k in NatKind::ALL {
            assert_eq!(k.name().parse::<NatKind>(), Ok(k));
        }
        let mut names: Vec<&str> = NatKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), NatKind::ALL.len());
        assert_eq!("symmetric".parse::<NatKind>(), Ok(NatKind::Symmetric));
        assert!("nope".parse::<NatKind>().is_err());
    }

    #[test]
    fn flags_follow_figure_1() {
        use NatKind::*;
        let symmetric: Vec<NatKind> = NatKind::FIGURE_1.into_iter().filter(|k| k.symmetric()).collect();
        assert_eq!(
            symmetric,
            [UpnpPortSymmetric, PortPreservingSymmetric, SequentialSymmetric, Symmetric, AddressSymmetric]
        );
        assert_eq!(NatKind::FIGURE_1.iter().filter(|k| k.upnp()).count(), 2);
        assert_eq!(AddressSymmetric.public_addresses(), ADDRESS_SYMMETRIC_PUBLICS);
        assert_eq!(SequentialSymmetric.sequential_step(), Some(SEQUENTIAL_STEP));
        assert!(PortPreservingSymmetric.port_preserving() && !Symmetric.port_preserving());
        assert_eq!(UpnpPortRestricted.programs(), ["miniupnpd"]);
        assert_eq!(FullCone.filtering(), Filtering::EndpointIndependent);
        assert_eq!(AddressRestricted.filtering(), Filtering::AddressDependent);
    }
}
