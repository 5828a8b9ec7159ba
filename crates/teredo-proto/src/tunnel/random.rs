//! The per-peer state of the Port-Preserving and Sequential Port-Symmetric NAT extensions
//! (RFC 6081 §5.4.1, §5.5.1) that a 40-byte peer entry has no room for: the random port we
//! listen on for the peer and the one we predict our NAT shows, the peer's random port,
//! where the peer was last heard, the refresh count, and the echo test. A small table
//! beside the list of peers, bounded by [`MAX_RANDOM_PEERS`] (each entry may hold a UDP
//! socket of the I/O layer), looked up by peer or by local port by a linear search (it is
//! only touched for peers behind the NATs these extensions serve). A peer with an entry
//! has bit 7 of its peer entry set ([`crate::peers::Peer::has_random_port`]), which is all
//! the fast path looks at.

use std::net::Ipv6Addr;

use crate::time::Instant;

/// The most peers with extension state, hence the most random sockets a client opens.
pub const MAX_RANDOM_PEERS: usize = 64;

/// Where the last verified direct packet from the peer arrived (RFC 6081 §5.4.1's Direct
/// Receive on Primary Port and on Random Port, kept as "the last one").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heard {
    /// Nothing yet.
    Nothing,
    /// On the Teredo service port.
    Primary,
    /// On the random port.
    Random,
}

/// An echo test under way or done (RFC 6081 §5.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EchoTest {
    /// EchoTestNonce1 and EchoTestNonce2: the nonces of the RSs to the primary and the
    /// secondary server addresses.
    pub(super) nonces: [[u8; 8]; 2],
    /// EchoTestLowerPort and EchoTestUpperPort: the origin ports of their RAs, 0 until
    /// they come.
    pub(super) ports: [u16; 2],
    /// EchoTestRetryCounter.
    pub(super) retries: u8,
    /// When the Echo Test Failover Timer expires, while it runs.
    pub(super) failover: Option<Instant>,
}

/// One peer's state (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RandomPeer {
    pub(super) peer: Ipv6Addr,
    /// The local port of our random socket for the peer; 0 for none.
    pub(super) local_port: u16,
    /// RFC 6081's Random Port: the external port we predict our NAT gives the random
    /// socket toward the peer (the local port behind a port-preserving NAT, the echo
    /// test's midpoint behind a sequential one); 0 until known.
    pub(super) random_port: u16,
    /// The Peer Random Port, from the peer's Random Port trailers; 0 for none.
    pub(super) peer_random_port: u16,
    /// The peer's indirect bubbles carry a nonce but no Random Port trailer: it speaks RFC
    /// 6081 without a random port, so our random socket's bubbles go to its embedded
    /// mapping.
    pub(super) plain: bool,
    /// The nonce of the peer's last indirect bubble (RFC 6081 §5.2.1's Nonce Received),
    /// for the direct bubbles we send it unasked.
    pub(super) nonce_received: Option<[u8; 4]>,
    pub(super) heard: Heard,
    /// The last verified reception on the random port.
    pub(super) last_random_rx: Option<Instant>,
    /// Connection Refresh Count (§5.4.1).
    pub(super) refreshes: u8,
    /// Last Data Packet Sent Timestamp (§5.4.1).
    pub(super) last_data_sent: Option<Instant>,
    pub(super) echo: Option<EchoTest>,
}

impl RandomPeer {
    fn new(peer: Ipv6Addr) -> Self {
        Self {
            peer,
            local_port: 0,
            random_port: 0,
            peer_random_port: 0,
            plain: false,
            nonce_received: None,
            heard: Heard::Nothing,
            last_random_rx: None,
            refreshes: 0,
            last_data_sent: None,
            echo: None,
        }
    }

    /// The random port to send from to the trusted peer: ours, when the peer was last
    /// heard there.
    pub(super) fn source(&self) -> Option<u16> {
        (self.heard == Heard::Random && self.local_port != 0).then_some(self.local_port)
    }
}

/// The table (see the module comment).
#[derive(Debug, Default)]
pub(super) struct RandomPeers {
    entries: Vec<RandomPeer>,
    /// Changes whenever the set of local ports does, so that the I/O layer reconciles its
    /// sockets only then.
    generation: u64,
}

impl RandomPeers {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn get(&self, peer: &Ipv6Addr) -> Option<&RandomPeer> {
        self.entries.iter().find(|e| e.peer == *peer)
    }

    pub(super) fn get_mut(&mut self, peer: &Ipv6Addr) -> Option<&mut RandomPeer> {
        self.entries.iter_mut().find(|e| e.peer == *peer)
    }

    /// The entry whose random socket is `port`.
    pub(super) fn by_port(&self, port: u16) -> Option<&RandomPeer> {
        self.entries.iter().find(|e| e.local_port == port && port != 0)
    }

    /// The entry of `peer`, made if there is room; `None` when the table is full.
    pub(super) fn insert(&mut self, peer: Ipv6Addr) -> Option<&mut RandomPeer> {
        if let Some(i) = self.entries.iter().position(|e| e.peer == peer) {
            return self.entries.get_mut(i);
        }
        if self.entries.len() >= MAX_RANDOM_PEERS {
            return None;
        }
        self.entries.push(RandomPeer::new(peer));
        self.entries.last_mut()
    }

    /// Gives `port` to `peer`'s entry as its random socket.
    pub(super) fn set_port(&mut self, peer: &Ipv6Addr, port: u16) {
        if let Some(e) = self.get_mut(peer) {
            e.local_port = port;
            self.generation = self.generation.wrapping_add(1);
        }
    }

    /// Forgets `peer`'s random socket ("stop listening on the old random port") and
    /// what depends on it; the rest of the entry stays.
    pub(super) fn close(&mut self, peer: &Ipv6Addr) {
        if let Some(e) = self.get_mut(peer) {
            let had = e.local_port != 0;
            e.local_port = 0;
            e.random_port = 0;
            e.echo = None;
            e.last_random_rx = None;
            if e.heard == Heard::Random {
                e.heard = Heard::Nothing;
            }
            if had {
                self.generation = self.generation.wrapping_add(1);
            }
        }
    }

    /// Removes `peer`'s entry.
    pub(super) fn remove(&mut self, peer: &Ipv6Addr) {
        if let Some(i) = self.entries.iter().position(|e| e.peer == *peer) {
            let e = self.entries.swap_remove(i);
            if e.local_port != 0 {
                self.generation = self.generation.wrapping_add(1);
            }
        }
    }

    /// Keeps the entries for which `keep` holds.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&mut RandomPeer) -> bool) {
        let mut closed = false;
        self.entries.retain_mut(|e| {
            let k = keep(e);
            closed |= !k && e.local_port != 0;
            k
        });
        if closed {
            self.generation = self.generation.wrapping_add(1);
        }
    }

    pub(super) fn clear(&mut self) {
        if self.entries.iter().any(|e| e.local_port != 0) {
            self.generation = self.generation.wrapping_add(1);
        }
        self.entries.clear();
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &RandomPeer> {
        self.entries.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut RandomPeer> {
        self.entries.iter_mut()
    }

    /// The random sockets' local ports.
    pub(super) fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.entries.iter().map(|e| e.local_port).filter(|p| *p != 0)
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u16) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, i)
    }

    #[test]
    fn bounded_and_found_by_port() {
        let mut t = RandomPeers::default();
        for i in 0..MAX_RANDOM_PEERS as u16 {
            assert!(t.insert(peer(i)).is_some());
        }
        assert!(t.insert(peer(999)).is_none(), "full");
        assert!(t.insert(peer(3)).is_some(), "an existing one is found");
        let g = t.generation();
        t.set_port(&peer(3), 40_000);
        assert_ne!(t.generation(), g);
        assert_eq!(t.by_port(40_000).map(|e| e.peer), Some(peer(3)));
        assert!(t.by_port(0).is_none());
        assert_eq!(t.ports().collect::<Vec<_>>(), [40_000]);
        let g = t.generation();
        t.close(&peer(3));
        assert_ne!(t.generation(), g);
        assert!(t.get(&peer(3)).is_some(), "the entry stays");
        assert_eq!(t.ports().count(), 0);
        t.set_port(&peer(4), 40_001);
        let g = t.generation();
        t.retain(|e| e.peer != peer(4));
        assert_ne!(t.generation(), g);
        assert_eq!(t.len(), MAX_RANDOM_PEERS - 1);
        let g = t.generation();
        t.retain(|e| e.peer != peer(5));
        assert_eq!(t.generation(), g, "no socket changed");
        t.remove(&peer(6));
        t.clear();
        assert!(t.is_empty());
    }
}
