//! The UPnP-Enabled Symmetric NAT extension (RFC 6081 §5.3) in a client's data path. The
//! IGD's port mapping lets anyone reach the mapping embedded in our address (qualification
//! made it, [`crate::client::NatFindings`]), but our NAT still gives each destination a new
//! mapping. A peer behind a symmetric NAT of its own answers from such a mapping, which its
//! NAT opens only to the mapping it sent to: so, behind a single UPnP symmetric NAT, a
//! peer trusted at a mapping other than its embedded one gets the Symmetric Peer flag
//! (§5.3.4.1), and its data packets and direct bubbles go to its embedded mapping
//! (§5.3.4.2, §5.3.4.3), which its own IGD may forward (§6.2). The flag is set only for a
//! mapping verified by the usual rules (§5.2.4.4), not for any direct bubble: it redirects
//! our packets.

use std::net::{Ipv6Addr, SocketAddrV4};

use super::Tunnel;

impl Tunnel {
    /// `peer`, a Teredo client, was just trusted at `from`.
    pub(super) fn note_symmetric_peer(&mut self, peer: &Ipv6Addr, from: SocketAddrV4) {
        if !self.nat.upnp_symmetric() {
            return;
        }
        if let Some(p) = self.peers.get_mut(peer)
            && p.embedded_mapping() != from
            && !p.sends_to_embedded()
        {
            p.set_symmetric_peer();
            self.stats.symmetric_peers += 1;
        }
    }
}
