//! How a received packet proves that it comes from the peer it claims, and what
//! trusting a peer does: a bubble that carries our nonce (RFC 6081 §5.2.4.4) or answers our
//! keyed link-local source (Miredo's `CheckBubble`), an echo reply that carries our token
//! (RFC 4380 §5.2.3 case 2, §5.2.9), and the RFC 6081 extensions of an accepted bubble.

use std::net::{Ipv6Addr, SocketAddrV4};

use super::bubbles::Bubble;
use super::output::BubbleTrailers;
use super::{Link, Pending, Tunnel};
use crate::address::TeredoAddress;
use crate::nonce::{TokenKey, constant_time_eq};
use crate::time::Instant;
use crate::wire::icmpv6::{Icmpv6, Message};
use crate::wire::ipv6::NEXT_HEADER_ICMPV6;
use crate::wire::trailer::{DISCOVERY_ADVERTISEMENT, DISCOVERY_SOLICITATION};
use crate::wire::{Ipv6Packet, TeredoPacket, Trailer};

/// How a bubble from a mapping other than its source's was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verified {
    /// It carries our nonce for its source (RFC 6081 §5.2.4.4).
    Nonce,
    /// It is addressed to our keyed link-local source (Miredo's `CheckBubble`).
    Token,
    /// It comes from the local address of a peer found by local discovery (RFC 4380
    /// §5.2.3 case 5).
    Local,
}

/// Whether `ip` is a bubble that answers one of ours: its destination is the keyed
/// link-local source ([`TokenKey::bubble_source`]) of the bubbles we send to the mapping
/// embedded in its source (Miredo's `CheckBubble`). It may come from any IPv4 mapping: the
/// peer is trusted at the one it comes from.
pub(super) fn is_reply_bubble(key: &TokenKey, ip: &Ipv6Packet<'_>) -> bool {
    if !ip.is_bubble() {
        return false;
    }
    let h = ip.header();
    let t = TeredoAddress::from_octets(h.src_octets());
    key.is_bubble_token(h.dst_octets(), t.mapped_addr, t.mapped_port)
}

impl Tunnel {
    /// How a direct bubble from another mapping than its source's proves that it answers
    /// ours, if it does.
    pub(super) fn verify_bubble(&self, packet: &TeredoPacket<'_>, src: &Ipv6Addr) -> Option<Verified> {
        if !packet.ipv6.is_bubble() {
            return None;
        }
        if packet.trailers.nonce().is_some_and(|n| constant_time_eq(&n, &self.key.bubble_nonce(src))) {
            Some(Verified::Nonce)
        } else if is_reply_bubble(&self.key, &packet.ipv6) {
            Some(Verified::Token)
        } else {
            None
        }
    }

    /// RFC 6081 for an accepted direct bubble from `peer` at `from`: a peer whose bubbles
    /// carry nonces speaks RFC 6081 (and gets Server Load Reduction's solicitations); a
    /// solicitation is answered with an advertisement (§5.7.4.2).
    pub(super) fn bubble_extensions(
        &mut self,
        now: Instant,
        packet: &TeredoPacket<'_>,
        peer: &Ipv6Addr,
        from: SocketAddrV4,
    ) {
        let Some(link) = self.link() else { return };
        let mut solicited = false;
        let mut extensions = false;
        for t in packet.trailers.iter().flatten() {
            match t {
                Trailer::Nonce(_) => extensions = true,
                Trailer::NeighborDiscovery { discovery_type } => {
                    extensions = true;
                    solicited |= discovery_type == DISCOVERY_SOLICITATION;
                }
                _ => {}
            }
        }
        if extensions && let Some(p) = self.peers.get_mut(peer) {
            p.set_speaks_rfc6081();
        }
        if solicited && self.reply_allowed(now, from) {
            let trailers =
                BubbleTrailers { discovery: Some(DISCOVERY_ADVERTISEMENT), ..BubbleTrailers::default() };
            let b = Bubble { src: link.address, dst: *peer, to: from, trailers, from: None };
            self.push(Pending::Bubble(b));
            self.stats.advertisements_sent += 1;
        }
    }

    /// Trusts `peer` at `from` and releases its queue; a full table only means the peer
    /// is not remembered. A `verified` peer (it answered our bubble or echo test) gets an
    /// entry of the host's own, or leaves the budget of strangers; any other (RFC 4380
    /// §5.2.3 case 3 by its embedded mapping, which anybody can spoof) is a stranger
    /// unless the host made its entry (see [`crate::peers`]).
    pub(super) fn trust(&mut self, now: Instant, peer: Ipv6Addr, from: SocketAddrV4, verified: bool) {
        if verified {
            self.peers.promote(&peer);
        }
        let entry = if verified {
            self.peers.get_or_insert(&peer, now)
        } else {
            self.peers.insert_stranger(&peer, now)
        };
        match entry {
            Ok((p, _)) => {
                if !p.is_trusted_from(from) {
                    self.stats.peers_trusted += 1;
                }
                p.trust(now, from);
            }
            Err(_) => {
                self.stats.accepted_unrecorded += 1;
                return;
            }
        }
        if self.link().is_some_and(|l| peer.octets()[..4] == l.prefix) {
            self.note_symmetric_peer(&peer, from);
        }
        if let Some(p) = self.peers.get_mut(&peer)
            && p.has_queue()
        {
            let to = p.send_mapping().unwrap_or(from);
            self.peers.release_queue(&peer, to);
        }
    }

    /// Whether `ip` answers one of our echo tests (RFC 4380 §5.2.3 case 2, §5.2.9): an
    /// echo reply whose data is our token, or a destination unreachable from the tested
    /// address that carries our echo request (Miredo).
    pub(super) fn verify_echo(&self, now: Instant, ip: &Ipv6Packet<'_>, link: &Link) -> bool {
        if ip.header().next_header != NEXT_HEADER_ICMPV6 || !Icmpv6::checksum_ok(ip) {
            return false;
        }
        let Ok(msg) = Message::parse(ip) else { return false };
        let own = link.address;
        let secs = now.as_secs();
        match msg {
            Message::EchoReply(e) => {
                e.identifier == self.echo_id
                    && self.key.verify_echo_token(&own, &ip.src(), e.identifier, e.sequence, e.data, secs)
            }
            Message::DestinationUnreachable(d) => {
                let Ok((inner, _)) = Ipv6Packet::parse(d.invoking) else { return false };
                if inner.src() != own || inner.dst() != ip.src() {
                    return false;
                }
                match Message::parse(&inner) {
                    Ok(Message::EchoRequest(e)) => {
                        e.identifier == self.echo_id
                            && self.key.verify_echo_token(
                                &own,
                                &inner.dst(),
                                e.identifier,
                                e.sequence,
                                e.data,
                                secs,
                            )
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }
}
