//! The Port-Preserving Symmetric NAT extension (RFC 6081 §5.4) in a client's data path:
//! a random port per untrusted peer, advertised in Random Port trailers (§5.4.4.2); direct
//! bubbles from it (§5.4.4.3); the peer's random port learnt from its indirect bubbles
//! (§5.4.4.4); where the peer is heard (§5.4.4.5); the Peer Refresh Timer (§5.4.2.1). Also
//! the part every client plays for a peer that uses it (a direct bubble to the peer's
//! random port), and the sending side of the sequential extension, which shares the random
//! port (module `echo_test` predicts its external port).
//!
//! # Where this departs from the letter of §5.4
//!
//! - A client with no random port of its own for a peer that advertised one sends its
//!   direct bubble to the peer's random port from the Teredo service port (§5.4.4.3 says
//!   "from its own random port"): that is what opens a port-restricted NAT to it, the
//!   Figure 1 cell Port restricted / Port-preserving symmetric.
//! - A port-preserving client's random socket also sends to the embedded mapping of a peer
//!   whose indirect bubbles carry a nonce but no Random Port trailer (a peer behind a
//!   port-restricted NAT, §3.3: "when the mapped address/port is embedded in the
//!   destination's Teredo IPv6 address, this is easy"), never before: a bubble from the
//!   random port to another destination would take its preserved port.
//! - Direct Receive on Primary Port and on Random Port are kept as "where the peer was
//!   last heard", and packets go from that port: a peer that hears us on both may trust
//!   either, and answers from the one it trusts. The random socket closes when the peer
//!   was heard on the primary port and not on the random port for 30 s (§5.4.4.5 closes
//!   it at the first primary reception), and with the peer's entry.
//! - The Peer Refresh Timer's bubbles keep NAT mappings, not the peer entry: an entry
//!   unused for the idle timeout goes, and its random socket with it.

use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use super::bubbles::Bubble;
use super::output::BubbleTrailers;
use super::random::{Heard, MAX_RANDOM_PEERS};
use super::{TunVerdict, Tunnel};
use crate::address::TeredoAddress;
use crate::time::Instant;
use crate::wire::{TeredoPacket, Trailer};

/// The Peer Refresh Timer's period (RFC 6081 §5.4.2.1, §5.4.3).
pub const PEER_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The most refresh bubbles since the last data packet (§5.4.2.1).
const MAX_REFRESHES: u8 = 20;
/// "Active data ... in the last 30 seconds" (§5.4.4.4, §5.4.4.5).
const ACTIVE: Duration = Duration::from_secs(30);

impl Tunnel {
    /// The random socket to send from to the trusted `peer`, if it was last heard there.
    #[inline]
    pub(super) fn random_source(&self, peer: &Ipv6Addr) -> Option<u16> {
        if self.random.is_empty() || !self.peers.get(peer).is_some_and(|p| p.has_random_port()) {
            return None;
        }
        self.random.get(peer).and_then(|e| e.source())
    }

    /// Where packets to the trusted `peer` go: its send mapping (RFC 6081 §5.3.4.3) and the
    /// random socket they leave from, if any.
    pub(super) fn send_target(&self, peer: &Ipv6Addr) -> Option<(SocketAddrV4, Option<u16>)> {
        let to = self.peers.get(peer)?.send_mapping()?;
        Some((to, self.random_source(peer)))
    }

    /// The trusted fast path for a peer with bit 6 or 7 set (RFC 6081 §5.3.4.3, §5.4.4.1).
    #[cold]
    pub(super) fn send_extended(
        &mut self,
        now: Instant,
        dst: &Ipv6Addr,
        mapping: SocketAddrV4,
    ) -> TunVerdict {
        let to = self.peers.get(dst).and_then(|p| p.send_mapping()).unwrap_or(mapping);
        if let Some(e) = self.random.get_mut(dst)
            && let Some(port) = e.source()
        {
            e.last_data_sent = Some(now);
            e.refreshes = 0;
            return TunVerdict::SendFrom { port, dst: to };
        }
        TunVerdict::Send { dst: to }
    }

    /// The entry of `peer` (which must have a peer entry) in the table of random ports,
    /// made if there is room (counted when there is not).
    pub(super) fn random_entry(&mut self, peer: &Ipv6Addr) -> bool {
        let Some(p) = self.peers.get_mut(peer) else { return false };
        if !p.has_random_port() {
            // One left by an earlier entry of the same address is stale.
            self.random.remove(peer);
            if self.random.len() >= MAX_RANDOM_PEERS {
                let peers = &self.peers;
                self.random.retain(|e| peers.get(&e.peer).is_some_and(|p| p.has_random_port()));
            }
        }
        let Some(p) = self.peers.get_mut(peer) else { return false };
        if self.random.insert(*peer).is_some() {
            p.set_random_port(true);
            true
        } else {
            self.stats.random_ports_refused += 1;
            false
        }
    }

    /// Our random port for the untrusted `peer`, opened if needed (RFC 6081 §5.4.4.2: a
    /// port-preserving NAT keeps it, so it is also the Random Port; §5.5.4.1: a sequential
    /// one does not, and the echo test predicts it).
    pub(super) fn open_random_port(&mut self, peer: &Ipv6Addr) -> Option<u16> {
        if !self.random_entry(peer) {
            return None;
        }
        let port = self.random.get(peer)?.local_port;
        if port != 0 {
            return Some(port);
        }
        let own = self.local.map(|l| l.port());
        let port = (0..8).find_map(|_| {
            let p = self.key.random_port(self.ports_chosen);
            self.ports_chosen = self.ports_chosen.wrapping_add(1);
            (Some(p) != own && self.random.by_port(p).is_none()).then_some(p)
        })?;
        self.random.set_port(peer, port);
        if self.nat.port_preserving_symmetric()
            && let Some(e) = self.random.get_mut(peer)
        {
            e.random_port = port;
        }
        self.stats.random_ports_opened += 1;
        Some(port)
    }

    /// RFC 6081 §5.4.4.4 for an indirect bubble from the Teredo client `peer`: keeps its
    /// Random Port trailer (a new one only when no data went both ways in the last 30 s;
    /// then our own random port starts over), its nonce, and whether it speaks RFC 6081
    /// without a random port.
    pub(super) fn note_indirect(&mut self, now: Instant, peer: &Ipv6Addr, packet: &TeredoPacket<'_>) {
        let advertised = packet
            .trailers
            .iter()
            .flatten()
            .find_map(|t| match t {
                Trailer::RandomPort { port, .. } => Some(port),
                _ => None,
            })
            .filter(|p| *p != 0);
        let nonce = packet.trailers.nonce();
        let ours = self.nat.port_preserving_symmetric() || self.nat.sequential();
        let known = self.peers.get(peer).is_some_and(|p| p.has_random_port());
        if advertised.is_none() && !(ours && nonce.is_some()) && !known {
            return;
        }
        // An indirect bubble nobody asked for: a stranger unless known.
        let active = match self.peers.insert_stranger(peer, now) {
            Ok((p, _)) => p.is_valid(now),
            Err(_) => return,
        };
        if !self.random_entry(peer) {
            return;
        }
        let pp = self.nat.port_preserving_symmetric();
        let Some(e) = self.random.get_mut(peer) else { return };
        let active = active || e.last_data_sent.is_some_and(|t| now.saturating_since(t) < ACTIVE);
        e.nonce_received = nonce;
        let mut restart = false;
        match advertised {
            Some(port) if e.peer_random_port == 0 => e.peer_random_port = port,
            Some(port) if port == e.peer_random_port || active => {}
            Some(port) => {
                e.peer_random_port = port;
                restart = pp;
            }
            None => e.plain = nonce.is_some(),
        }
        if restart {
            self.random.close(peer);
        }
    }

    /// The direct bubble of §5.4.4.3 for the untrusted `peer`, from our random port (when
    /// we have one) to the peer's random port, or to its embedded mapping when it has none
    /// and speaks RFC 6081 (see the module comment), with our Random Port trailer and the
    /// peer's nonce. Nothing when the peer uses no random port and we have none.
    ///
    /// A `reply` (to a bubble received) is within its target's budget, like every reply
    /// bubble (module `bubbles`).
    pub(super) fn random_port_bubbles(
        &mut self,
        now: Instant,
        peer: &Ipv6Addr,
        nonce: Option<[u8; 4]>,
        reply: bool,
    ) {
        let Some(link) = self.link() else { return };
        if self.peers.get(peer).is_none_or(|p| p.is_trusted()) {
            return;
        }
        let (peer_port, plain) = self.random.get(peer).map_or((0, false), |e| (e.peer_random_port, e.plain));
        let ours = if self.nat.port_preserving_symmetric() && (peer_port != 0 || plain) {
            self.open_random_port(peer)
        } else if self.nat.sequential() {
            // The echo test opens it.
            self.random.get(peer).map(|e| e.local_port).filter(|p| *p != 0)
        } else {
            None
        };
        let t = TeredoAddress::from_octets(&peer.octets());
        let port = match (peer_port, ours) {
            (0, Some(_)) if plain => t.mapped_port,
            (0, _) => return,
            (p, _) => p,
        };
        let e = self.random.get(peer);
        let trailers = BubbleTrailers {
            nonce: nonce.or(e.and_then(|e| e.nonce_received)),
            random_port: ours.and(e.map(|e| e.random_port)).filter(|p| *p != 0),
            ..BubbleTrailers::default()
        };
        let to = SocketAddrV4::new(t.mapped_addr, port);
        let b = Bubble { src: link.address, dst: *peer, to, trailers, from: ours };
        let sent = if reply { self.send_reply(now, b) } else { self.send_bubble(now, b) };
        if sent {
            self.stats.random_port_bubbles_sent += 1;
        }
    }

    /// A verified packet from `peer` arrived on `on` (a random port, or `None` for the
    /// Teredo service port): where it is heard (§5.4.4.5). A direct reception on the
    /// primary port ends a running echo test (§5.5.4.3).
    pub(super) fn heard(&mut self, now: Instant, peer: &Ipv6Addr, on: Option<u16>) {
        let Some(e) = self.random.get_mut(peer) else { return };
        match on {
            Some(port) if port == e.local_port => {
                e.heard = Heard::Random;
                e.last_random_rx = Some(now);
            }
            Some(_) => {}
            None => {
                e.heard = Heard::Primary;
                if e.echo.is_some_and(|x| x.failover.is_some()) {
                    e.echo = None;
                }
            }
        }
    }

    /// The Peer Refresh Timer (§5.4.2.1, §5.5.2.1): a direct bubble from the random port to
    /// each peer reached through it to which no data went for 30 s (at most 20 since the
    /// last data packet); finished echo tests are forgotten; random sockets no longer used
    /// close; entries of peers that went are removed.
    pub(super) fn refresh_random_peers(&mut self, now: Instant) {
        self.peer_refresh = now + PEER_REFRESH_INTERVAL;
        let peers = &self.peers;
        self.random.retain(|e| peers.get(&e.peer).is_some_and(|p| p.has_random_port()));
        let mut refresh = Vec::new();
        let mut close = Vec::new();
        for e in self.random.iter_mut() {
            if e.echo.is_some_and(|x| x.failover.is_none()) {
                e.echo = None;
            }
            let Some(port) = e.source() else {
                let stale = e.last_random_rx.is_none_or(|t| now.saturating_since(t) >= ACTIVE);
                if e.local_port != 0 && e.heard == Heard::Primary && stale {
                    close.push(e.peer);
                }
                continue;
            };
            if e.last_data_sent.is_some_and(|t| now.saturating_since(t) < ACTIVE) {
                e.refreshes = 0;
            } else if e.refreshes < MAX_REFRESHES {
                e.refreshes += 1;
                refresh.push((e.peer, port, e.nonce_received));
            }
        }
        for peer in close {
            self.random.close(&peer);
        }
        let Some(link) = self.link() else { return };
        for (peer, port, nonce) in refresh {
            if let Some(to) = self.peers.get(&peer).and_then(|p| p.send_mapping()) {
                let trailers = BubbleTrailers::nonce(nonce);
                let b = Bubble { src: link.address, dst: peer, to, trailers, from: Some(port) };
                if self.send_bubble(now, b) {
                    self.stats.random_port_bubbles_sent += 1;
                }
            }
        }
    }
}
