//! The answers to a bubble that does not prove itself: an indirect bubble relayed by our
//! server gets direct bubbles that punch our NAT open (RFC 4380 §5.2.3) and, for a Teredo
//! peer we do not trust, indirect bubbles of ours (RFC 6081 §6.1 packet 4, §6.5 packet 6);
//! all within the peer's bubble budget (RFC 4380 §5.2.6).

use std::net::{Ipv6Addr, SocketAddrV4};

use super::bubbles::Bubble;
use super::output::BubbleTrailers;
use super::{Link, MAX_ALTERNATES, Tunnel, is_alternate};
use crate::address::is_global_unicast;
use crate::peers::ProbeCheck;
use crate::time::Instant;
use crate::wire::{TeredoPacket, Trailer};

impl Tunnel {
    /// Answers an indirect bubble from `peer` that our server relayed with `origin`:
    /// - a direct bubble, which opens our NAT to the peer (hole punching, RFC 4380
    ///   §5.2.3), to the peer's trusted mapping if we have one (RFC 6081 §6.1 step 10: a
    ///   mapping learnt from a peer behind a symmetric NAT), else to the origin and to
    ///   every alternate address the peer advertised (a peer behind our NAT, §5.6.4.2),
    ///   each with the peer's nonce (§5.2.4.2);
    /// - when the peer is a Teredo client we do not trust, our own indirect bubbles too
    ///   (§6.1 packet 4, §6.5 packet 6), so that a peer behind a symmetric NAT, or behind
    ///   our NAT, answers with a direct bubble we can verify by our nonce. They count in
    ///   the peer's bubble budget (RFC 4380 §5.2.6), which also ends any exchange of
    ///   answers between two peers that both answer this way.
    pub(super) fn answer_indirect(
        &mut self,
        now: Instant,
        packet: &TeredoPacket<'_>,
        peer: Ipv6Addr,
        origin: Option<SocketAddrV4>,
        link: Link,
    ) {
        let trailers = BubbleTrailers::nonce(packet.trailers.nonce());
        let src = link.address;
        let teredo = peer.octets()[..4] == link.prefix;
        if teredo {
            self.note_indirect(now, &peer, packet);
        }
        if let Some((to, port)) = self.send_target(&peer) {
            self.send_reply(now, Bubble { src, dst: peer, to, trailers, from: port });
        } else {
            if let Some(to) = origin
                && is_global_unicast(*to.ip())
                && to.port() != 0
            {
                self.send_reply(now, Bubble { src, dst: peer, to, trailers, from: None });
            }
            if trailers.nonce.is_some() {
                let alternates = packet.trailers.iter().find_map(|t| match t {
                    Ok(Trailer::AlternateAddress(a)) => Some(a),
                    _ => None,
                });
                for (ip, port) in alternates.iter().flat_map(|a| a.iter()).take(MAX_ALTERNATES) {
                    let to = SocketAddrV4::new(ip, port);
                    if is_alternate(to) && Some(to) != origin {
                        self.send_reply(now, Bubble { src, dst: peer, to, trailers, from: None });
                    }
                }
            }
            if teredo {
                self.random_port_bubbles(now, &peer, trailers.nonce, true);
            }
        }
        if trailers.nonce.is_some() && teredo {
            self.solicit_indirect(now, peer, true);
        }
    }

    /// A direct bubble from the Teredo client `peer` came from a mapping other than its
    /// address's, with nothing that proves it (a peer behind a symmetric NAT, or behind our
    /// NAT, that has not seen our bubbles): our indirect bubbles, through its server, make
    /// it answer with our nonce from that mapping (RFC 6081 §6.1 packet 4, §6.5 packet 6).
    /// Within the peer's bubble budget (RFC 4380 §5.2.6).
    ///
    /// A peer we know gets them within its bubble budget (RFC 4380 §5.2.6), which also ends
    /// any exchange between two peers that both answer this way. An unknown one gets an
    /// entry when `create` (an indirect bubble relayed by our server, whose source the
    /// server checked); otherwise (a direct bubble, whose source anybody may spoof) no
    /// entry, within a budget per second shared with the echo tests of strangers
    /// ([`crate::tunnel::Limits::tests_per_second`]).
    pub(super) fn solicit_indirect(&mut self, now: Instant, peer: Ipv6Addr, create: bool) {
        if self.peers.get(&peer).is_some_and(|p| p.trusted_mapping(now).is_some()) {
            return;
        }
        if !create && !self.peers.contains(&peer) {
            if self.tests.take(now) {
                self.indirect_bubbles(now, peer);
            }
            return;
        }
        // An indirect bubble nobody asked for: a stranger until verified.
        let Ok((p, _)) = self.peers.insert_stranger(&peer, now) else { return };
        if p.check_probe(now) == ProbeCheck::Send {
            p.record_probe(now);
            self.request_indirect(now, peer);
        } else {
            self.stats.bubbles_suppressed += 1;
        }
    }
}
