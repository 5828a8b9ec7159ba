//! Datagrams received on the Teredo socket: a client's packet reception (RFC 4380
//! §5.2.3, with the direct IPv6 connectivity test of §5.2.9 and the reply bubbles that
//! punch holes, §5.2.6) and a relay's reception from Teredo clients (§5.4.2). What proves
//! a packet's source, and trusting it, is in module `verify`; the answers to an indirect
//! bubble in module `indirect`.

use std::net::{Ipv6Addr, SocketAddrV4};
use std::ops::Range;

use super::bubbles::Bubble;
use super::output::BubbleTrailers;
use super::verify::{Verified, is_reply_bubble};
use super::{DropReason, Link, Mode, Tunnel, UdpVerdict, is_alternate};
use crate::address::{ALL_NODES, TeredoAddress};
use crate::peers::{ProbeCheck, QueueError, Queued};
use crate::time::Instant;
use crate::wire::{Ipv6Packet, PacketKind, TeredoPacket};

/// How long a trusted mapping heard from stays, against another verified one (below).
const STICKY: std::time::Duration = super::RETRY_DELAY;

/// Whether `a` may be the source of a datagram: not unspecified, multicast or broadcast
/// (private and loopback sources are real on a LAN and in tests).
pub(super) fn is_unicast_source(a: std::net::Ipv4Addr) -> bool {
    !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast()
}

/// Whether the address embedded in the Teredo address `a` is `from`.
fn embedded_is(a: &[u8; 16], from: SocketAddrV4) -> bool {
    let t = TeredoAddress::from_octets(a);
    t.mapped_addr == *from.ip() && t.mapped_port == from.port()
}

impl Tunnel {
    /// Decides what to do with a datagram received on the Teredo socket from `from` (see
    /// the module comment). Qualification messages (router advertisements) must have been
    /// taken by the client's qualification first.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, datagram: &[u8]) -> UdpVerdict {
        let Ok(packet) = TeredoPacket::parse(datagram) else {
            return self.drop_udp(DropReason::Malformed);
        };
        self.handle_packet(now, from, datagram.len(), &packet)
    }

    /// [`Tunnel::handle_datagram`] for a datagram of `len` bytes that the caller parsed
    /// already (the client endpoint routes on the parse): the verdict's range is within
    /// that datagram.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        len: usize,
        packet: &TeredoPacket<'_>,
    ) -> UdpVerdict {
        self.handle_packet_on(now, None, from, len, packet)
    }

    /// A datagram received from `from` on the client's random socket of local port `port`
    /// ([`Tunnel::random_ports`], RFC 6081 §5.4, §5.5): the answers of an echo test, or a
    /// packet of the peer that port serves (anyone else's is dropped).
    pub fn handle_random_datagram(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddrV4,
        datagram: &[u8],
    ) -> UdpVerdict {
        let Ok(packet) = TeredoPacket::parse(datagram) else {
            return self.drop_udp(DropReason::Malformed);
        };
        self.handle_packet_on(now, Some(port), from, datagram.len(), &packet)
    }

    fn handle_packet_on(
        &mut self,
        now: Instant,
        on: Option<u16>,
        from: SocketAddrV4,
        len: usize,
        packet: &TeredoPacket<'_>,
    ) -> UdpVerdict {
        if from.port() == 0 || !is_unicast_source(*from.ip()) {
            return self.drop_udp(DropReason::BadSource);
        }
        if packet.trailers.check().is_err() {
            return self.drop_udp(DropReason::Malformed);
        }
        let ip = packet.ipv6;
        let start = len.saturating_sub(ip.bytes().len() + packet.trailers.as_bytes().len());
        let range = start..start + ip.bytes().len();
        let h = ip.header();
        if h.dst_octets()[0] == 0xff {
            return self.drop_udp(DropReason::Multicast);
        }
        match self.mode {
            Mode::Relay(c) if on.is_none() => {
                self.relay_receive(now, from, packet, range, c.prefix.to_be_bytes())
            }
            Mode::Relay(_) => self.drop_udp(DropReason::UnknownPort),
            Mode::Client(Some(link)) => self.client_receive(now, on, from, packet, range, link),
            Mode::Client(None) => self.drop_udp(DropReason::NotQualified),
        }
    }

    /// A datagram received on the Teredo IPv4 Discovery Address from `from` (RFC 4380
    /// §5.2.3 case 4, §5.2.8): a local discovery bubble from a client behind our NAT (its
    /// address embeds our public IPv4 address; the group's link scope keeps others out) is
    /// answered with a unicast bubble, and its source is remembered as a local peer whose
    /// packets from that address are accepted. Anything else is counted and dropped. A
    /// client with local discovery off ([`Tunnel::set_local_discovery`]) drops them all.
    pub fn handle_discovery(&mut self, now: Instant, from: SocketAddrV4, datagram: &[u8]) -> UdpVerdict {
        let (Some(link), Some(_)) = (self.link(), self.discovery) else {
            self.stats.discovery_dropped += 1;
            return UdpVerdict::Drop(DropReason::NotQualified);
        };
        let accepted = TeredoPacket::parse(datagram).ok().filter(|p| p.origin.is_none()).and_then(|p| {
            let h = p.ipv6.header();
            let src = *h.src_octets();
            let own = TeredoAddress::from_octets(&link.address.octets());
            let peer = TeredoAddress::from_octets(&src);
            (p.ipv6.is_bubble()
                && h.dst() == ALL_NODES
                && src[..4] == link.prefix
                && h.src() != link.address
                && peer.mapped_addr == own.mapped_addr
                && Some(from) != self.local
                && is_alternate(from))
            .then(|| h.src())
        });
        let Some(peer) = accepted else {
            self.stats.discovery_dropped += 1;
            return UdpVerdict::Drop(DropReason::WrongDestination);
        };
        self.stats.discovery_bubbles_received += 1;
        // Anybody on the link may send these: a stranger until verified.
        if let Ok((p, _)) = self.peers.insert_stranger(&peer, now) {
            p.set_local(now, from);
        }
        if self.tests.take(now) {
            self.send_reply(now, Bubble::new(link.address, peer, from));
        }
        UdpVerdict::Consumed
    }

    /// Counts a datagram whose parse failed (the client endpoint parses before routing).
    pub(crate) fn drop_malformed(&mut self) -> UdpVerdict {
        self.drop_udp(DropReason::Malformed)
    }

    pub(super) fn drop_udp(&mut self, r: DropReason) -> UdpVerdict {
        self.count(r);
        UdpVerdict::Drop(r)
    }

    fn accepted(&mut self, bubble: bool, range: Range<usize>) -> UdpVerdict {
        if bubble {
            self.stats.bubbles_received += 1;
            UdpVerdict::Consumed
        } else {
            self.stats.delivered += 1;
            UdpVerdict::Deliver { range }
        }
    }

    /// RFC 4380 §5.4.2: only from peers the relay sent to, with a mapping that checks, or
    /// from strangers that proved their address (module `relearn`).
    fn relay_receive(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        packet: &TeredoPacket<'_>,
        range: Range<usize>,
        prefix: [u8; 4],
    ) -> UdpVerdict {
        let ip = &packet.ipv6;
        let src = ip.header().src_octets();
        if src[..4] != prefix {
            return self.drop_udp(DropReason::NotTeredoSource);
        }
        let src_addr = Ipv6Addr::from(*src);
        // An unknown sender is re-learnt, never trusted outright (module `relearn`).
        if self.strangers.contains(&src_addr) || !self.peers.contains(&src_addr) {
            return self.relearn_receive(now, from, packet, src_addr);
        }
        let Some(p) = self.peers.get_mut(&src_addr) else {
            return self.drop_udp(DropReason::UnknownPeer);
        };
        if p.is_trusted_from(from) {
            p.received(now);
        } else if embedded_is(src, from) {
            p.trust(now, from);
            self.stats.peers_trusted += 1;
        } else if ip.is_bubble() && packet.trailers.nonce() == Some(self.key.bubble_nonce(&src_addr)) {
            p.trust(now, from);
            self.stats.peers_trusted += 1;
            self.stats.nonces_verified += 1;
        } else if is_reply_bubble(&self.key, ip) {
            p.trust(now, from);
            self.stats.peers_trusted += 1;
            self.stats.bubbles_verified += 1;
        } else {
            return self.drop_udp(DropReason::MappingMismatch);
        }
        if p.has_queue() {
            self.peers.release_queue(&src_addr, from);
        }
        self.accepted(ip.is_bubble(), range)
    }

    /// RFC 4380 §5.2.3, on the Teredo service port (`on` is `None`) or a random port.
    fn client_receive(
        &mut self,
        now: Instant,
        on: Option<u16>,
        from: SocketAddrV4,
        packet: &TeredoPacket<'_>,
        range: Range<usize>,
        link: Link,
    ) -> UdpVerdict {
        let ip = &packet.ipv6;
        let src = *ip.header().src_octets();
        let dst = *ip.header().dst_octets();
        let bubble = ip.is_bubble();
        let to_us = dst == link.address.octets();
        if let Some(port) = on {
            // A random port serves one peer, and its echo test's answers (RFC 6081 §5.5.4.4).
            if packet.auth.is_some() || packet.kind() == PacketKind::RouterAdvertisement {
                return self.echo_answer(now, port, from, packet);
            }
            if self.random.by_port(port).is_none_or(|e| e.peer.octets() != src) {
                return self.drop_udp(DropReason::UnknownPort);
            }
        }
        if from == link.server && bubble && on.is_none() {
            // An indirect bubble relayed by our server: answer its origin directly, which
            // opens our NAT to the peer (hole punching). Some servers omit the origin
            // indication; then the source's embedded mapping stands for it (Miredo).
            let origin = packet.origin.map(|o| SocketAddrV4::new(o.addr, o.port)).or_else(|| {
                (src[..4] == link.prefix).then(|| {
                    let t = TeredoAddress::from_octets(&src);
                    SocketAddrV4::new(t.mapped_addr, t.mapped_port)
                })
            });
            if !to_us {
                return self.drop_udp(DropReason::WrongDestination);
            }
            self.stats.bubbles_received += 1;
            self.answer_indirect(now, packet, Ipv6Addr::from(src), origin, link);
            return UdpVerdict::Consumed;
        }
        // Anything else from the server goes on: the server may be a relay too.
        if Ipv6Addr::from(src).is_unicast_link_local() {
            if bubble {
                self.stats.bubbles_received += 1;
                return UdpVerdict::Consumed;
            }
            return self.drop_udp(DropReason::LinkLocalSource);
        }
        if !(to_us || bubble && Ipv6Addr::from(dst).is_unicast_link_local()) {
            return self.drop_udp(DropReason::WrongDestination);
        }
        let src_addr = Ipv6Addr::from(src);
        // Case 1: a trusted peer, from its mapping.
        if let Some(p) = self.peers.get_mut(&src_addr)
            && p.is_trusted_from(from)
        {
            p.received(now);
            let extended = p.has_random_port();
            if p.has_queue() {
                let to = p.send_mapping().unwrap_or(from);
                self.peers.release_queue(&src_addr, to);
            }
            if extended {
                self.heard(now, &src_addr, on);
            }
            if bubble {
                self.bubble_extensions(now, packet, &src_addr, from);
            }
            return self.accepted(bubble, range);
        }
        if src[..4] == link.prefix {
            // Case 3: a Teredo source whose embedded mapping is the outer source, or a
            // bubble that answers ours from another mapping (a peer behind a symmetric
            // NAT, or behind our own NAT): by our nonce (RFC 6081 §5.2.4.4, §5.6.4.3) or
            // by our keyed destination (Miredo's scheme).
            let mut learnt = false;
            let mut proven = false;
            if !embedded_is(&src, from) {
                let local = self.peers.get(&src_addr).and_then(|p| p.local_address()) == Some(from);
                let verified =
                    if local { Some(Verified::Local) } else { self.verify_bubble(packet, &src_addr) };
                match verified {
                    Some(Verified::Nonce) => self.stats.nonces_verified += 1,
                    Some(Verified::Token) => self.stats.bubbles_verified += 1,
                    Some(Verified::Local) => {}
                    None => {
                        if bubble {
                            self.solicit_indirect(now, src_addr, false);
                        }
                        return self.drop_udp(DropReason::MappingMismatch);
                    }
                }
                learnt = true;
                proven = matches!(verified, Some(Verified::Nonce | Verified::Token));
                if proven {
                    self.peers.promote(&src_addr);
                }
                // A peer heard from at its trusted mapping just now keeps it: a peer with a
                // random port (RFC 6081 §5.4, §5.5) answers from two ports at once, and if
                // each side took the last of two crossing answers, they could end on
                // different ones. The first verified mapping works both ways.
                if bubble
                    && self
                        .peers
                        .get(&src_addr)
                        .is_some_and(|p| p.is_trusted() && p.since_reception(now) < STICKY)
                {
                    self.stats.bubbles_received += 1;
                    return UdpVerdict::Consumed;
                }
            }
            // Case 3 by the embedded mapping alone (or a local peer's address) proves
            // nothing: a stranger's entry; a bubble with our nonce or token is verified.
            self.trust(now, src_addr, from, proven);
            self.heard(now, &src_addr, on);
            if bubble {
                self.bubble_extensions(now, packet, &src_addr, from);
            }
            if learnt {
                // The peer may not know yet that its bubble came through: a direct bubble to
                // the mapping just learnt, which its NAT lets in, makes it trust us too (with
                // its nonce when we keep it, RFC 6081 §5.4: it may be behind a symmetric NAT
                // too).
                let (to, port) = self.send_target(&src_addr).unwrap_or((from, None));
                let nonce = self.random.get(&src_addr).and_then(|e| e.nonce_received);
                let trailers = BubbleTrailers::nonce(nonce);
                self.send_reply(now, Bubble { src: link.address, dst: src_addr, to, trailers, from: port });
            }
            return self.accepted(bubble, range);
        }
        // A native source, through a relay.
        if bubble {
            return self.drop_udp(DropReason::NotTeredoSource);
        }
        // Case 2: the answer to our direct IPv6 connectivity test.
        if self.verify_echo(now, ip, &link) {
            self.stats.echo_verified += 1;
            self.trust(now, src_addr, from, true);
            return UdpVerdict::Consumed;
        }
        // Case 6: queue it and test the source through the server.
        self.queue_inbound(now, src_addr, from, ip)
    }

    /// Case 6: a packet from a native source through an unverified relay waits for the
    /// echo test, which goes through our server.
    fn queue_inbound(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        from: SocketAddrV4,
        ip: &Ipv6Packet<'_>,
    ) -> UdpVerdict {
        if !self.peers.contains(&src) && !self.tests.take(now) {
            return self.drop_udp(DropReason::TestRateLimited);
        }
        // Unsolicited and unverified: a stranger until its echo test is answered.
        let p = match self.peers.insert_stranger(&src, now) {
            Ok((p, _)) => p,
            Err(_) => return self.drop_udp(DropReason::TableFull),
        };
        p.used(now);
        match p.check_echo_test(now) {
            ProbeCheck::Exhausted => {
                self.stats.echo_tests_suppressed += 1;
                return self.drop_udp(DropReason::PeerUnreachable);
            }
            ProbeCheck::Wait(_) => self.stats.echo_tests_suppressed += 1,
            ProbeCheck::Send => {
                p.record_probe(now);
                let seq = p.probes();
                self.send_probe(now, src, seq);
            }
        }
        self.hold_inbound(src, from, ip)
    }

    /// Holds the packet `ip` from `src` at `from` in `src`'s queue until `src` is verified
    /// (an echo test answered, or a re-learning bubble: module `relearn`).
    pub(super) fn hold_inbound(
        &mut self,
        src: Ipv6Addr,
        from: SocketAddrV4,
        ip: &Ipv6Packet<'_>,
    ) -> UdpVerdict {
        match self.peers.enqueue(&src, Queued::Inbound { from }, ip.bytes()) {
            Ok(()) => {
                self.stats.queued_in += 1;
                UdpVerdict::Queued
            }
            Err(QueueError::BudgetFull) => self.drop_udp(DropReason::QueueBudget),
            Err(QueueError::PeerFull) => self.drop_udp(DropReason::QueueFull),
            Err(QueueError::NoPeer) => self.drop_udp(DropReason::TableFull),
        }
    }
}
