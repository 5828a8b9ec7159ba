//! What qualification found out about the NAT, as the RFC 6081 extensions use it: the
//! Symmetric NAT flag (the secondary-address probe, §5.3.3), the Port-Preserving NAT flag
//! (§5.4.3), the UPnP-Enabled NAT flag and the UPnP-Mapped Address/Port (§5.3.3), and the
//! assumption of a sequential port-symmetric NAT that follows from them (§3.4).

use std::net::SocketAddrV4;

use super::NatKind;

/// The client's NAT as qualification sees it (RFC 6081 §5.3.1, §5.4.1), for the data path
/// ([`crate::tunnel::Tunnel::set_nat`]) and for status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NatFindings {
    /// What the secondary-address probe found; `None` until it finished.
    pub kind: Option<NatKind>,
    /// The mapping the primary server reported (the one in the Teredo address), while
    /// qualified.
    pub mapping: Option<SocketAddrV4>,
    /// The Port-Preserving NAT flag (§5.4.3): the primary's origin port is the local port.
    /// A port the IGD mapped to the local port (below) proves nothing of the kind, so it
    /// does not count (a departure from the letter of §5.4.3, which would take every
    /// UPnP NAT for a port-preserving one).
    pub port_preserving: bool,
    /// The mapping the IGD gave (AddPortMapping then GetExternalIPAddress, §5.3.3): the
    /// UPnP-Enabled NAT flag is its presence. `None` without UPnP.
    pub upnp: Option<SocketAddrV4>,
}

impl NatFindings {
    /// The Symmetric NAT flag (§5.3.3).
    pub fn symmetric(&self) -> bool {
        self.kind == Some(NatKind::Symmetric)
    }

    /// Whether the UPnP mapping is the qualification's mapping: the client is behind a
    /// single UPnP NAT, and §5.3.3 zeroes the UPnP-Mapped Address/Port (the UPnP-Enabled
    /// NAT flag stays).
    pub fn upnp_single_nat(&self) -> bool {
        self.upnp.is_some() && self.upnp == self.mapping
    }

    /// The UPnP-Mapped Address/Port as §5.3.3 leaves it after qualification: the IGD's
    /// mapping when it is not the qualification's (nested NATs), else `None`.
    pub fn upnp_mapping(&self) -> Option<SocketAddrV4> {
        self.upnp.filter(|_| !self.upnp_single_nat())
    }

    /// §5.3.4.2 and §5.3.4.3 apply: symmetric, UPnP-enabled, UPnP mapping zeroed.
    pub fn upnp_symmetric(&self) -> bool {
        self.symmetric() && self.upnp_single_nat()
    }

    /// The Port-Preserving Symmetric NAT extension applies (§5.4.4: both flags).
    pub fn port_preserving_symmetric(&self) -> bool {
        self.symmetric() && self.port_preserving
    }

    /// The Sequential Port-Symmetric NAT extension applies (§3.4, §5.5.4.1): symmetric and
    /// not port-preserving, so sequential is assumed. Not behind a UPnP NAT, whose own
    /// extension serves the pairs it can (another departure: §5.5 does not say).
    pub fn sequential(&self) -> bool {
        self.symmetric() && !self.port_preserving && self.upnp.is_none()
    }

    /// Which of RFC 6081's NAT extensions the client applies, for status output: `upnp`
    /// (§5.3), `port-preserving` (§5.4), `sequential` (§5.5), or `None`.
    pub fn extension(&self) -> Option<&'static str> {
        if self.upnp_symmetric() {
            Some("upnp")
        } else if self.port_preserving_symmetric() {
            Some("port-preserving")
        } else if self.sequential() {
            Some("sequential")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(198, 51, 100, 1), 40_000);

    #[test]
    fn flags_combine_as_the_rfc_says() {
        let sym = NatFindings { kind: Some(NatKind::Symmetric), mapping: Some(M), ..Default::default() };
        assert!(sym.sequential() && !sym.port_preserving_symmetric() && !sym.upnp_symmetric());
        let pp = NatFindings { port_preserving: true, ..sym };
        assert!(pp.port_preserving_symmetric() && !pp.sequential());
        let upnp = NatFindings { upnp: Some(M), ..sym };
        assert!(upnp.upnp_single_nat() && upnp.upnp_symmetric() && !upnp.sequential());
        assert_eq!(upnp.upnp_mapping(), None, "zeroed behind a single NAT (§5.3.3)");
        let nested = NatFindings { upnp: Some(SocketAddrV4::new(*M.ip(), 1)), ..sym };
        assert!(!nested.upnp_symmetric());
        assert_eq!(nested.upnp_mapping(), Some(SocketAddrV4::new(*M.ip(), 1)));
        let cone = NatFindings { kind: Some(NatKind::SameMapping), port_preserving: true, ..sym };
        assert!(!cone.symmetric() && !cone.port_preserving_symmetric() && !cone.sequential());
        assert_eq!(cone.extension(), None);
        assert_eq!(pp.extension(), Some("port-preserving"));
        assert_eq!(sym.extension(), Some("sequential"));
        assert_eq!(upnp.extension(), Some("upnp"));
    }
}
