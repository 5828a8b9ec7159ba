//! Datagrams received on the Teredo socket: a client's packet reception (RFC 4380
//! §5.2.3, with the direct IPv6 connectivity test of §5.2.9 and the reply bubbles that
//! punch holes, §5.2.6) and a relay's reception from Teredo clients (§5.4.2).

use std::net::{Ipv6Addr, SocketAddrV4};
use std::ops::Range;

use super::{DropReason, Link, Mode, Pending, Tunnel, UdpVerdict};
use crate::address::{TeredoAddress, is_global_unicast};
use crate::peers::{ProbeCheck, QueueError, Queued};
use crate::time::Instant;
use crate::wire::icmpv6::{Icmpv6, Message};
use crate::wire::ipv6::NEXT_HEADER_ICMPV6;
use crate::wire::{Ipv6Packet, TeredoPacket};

fn is_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
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
            Mode::Relay(c) => self.relay_receive(now, from, &ip, range, c.prefix.to_be_bytes()),
            Mode::Client(Some(link)) => self.client_receive(now, from, packet, range, link),
            Mode::Client(None) => self.drop_udp(DropReason::NotQualified),
        }
    }

    /// Counts a datagram whose parse failed (the client endpoint parses before routing).
    pub(crate) fn drop_malformed(&mut self) -> UdpVerdict {
        self.drop_udp(DropReason::Malformed)
    }

    fn drop_udp(&mut self, r: DropReason) -> UdpVerdict {
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

    /// RFC 4380 §5.4.2: only from peers the relay sent to, with a mapping that checks.
    fn relay_receive(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        ip: &Ipv6Packet<'_>,
        range: Range<usize>,
        prefix: [u8; 4],
    ) -> UdpVerdict {
        let src = ip.header().src_octets();
        if src[..4] != prefix {
            return self.drop_udp(DropReason::NotTeredoSource);
        }
        let src_addr = Ipv6Addr::from(*src);
        // Never created here: inbound traffic cannot fill the table.
        let Some(p) = self.peers.get_mut(&src_addr) else {
            return self.drop_udp(DropReason::UnknownPeer);
        };
        if p.is_trusted_from(from) {
            p.received(now);
        } else if embedded_is(src, from) {
            p.trust(now, from);
            self.stats.peers_trusted += 1;
        } else {
            return self.drop_udp(DropReason::MappingMismatch);
        }
        if p.has_queue() {
            self.peers.release_queue(&src_addr, from);
        }
        self.accepted(ip.is_bubble(), range)
    }

    /// RFC 4380 §5.2.3.
    fn client_receive(
        &mut self,
        now: Instant,
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
        if from == link.server && bubble {
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
            if let Some(to) = origin
                && is_global_unicast(*to.ip())
            {
                self.push(Pending::Bubble { src: link.address, dst: Ipv6Addr::from(src), to });
                self.stats.reply_bubbles_sent += 1;
            }
            self.stats.bubbles_received += 1;
            return UdpVerdict::Consumed;
        }
        // Anything else from the server goes on: the server may be a relay too.
        if is_link_local(&src) {
            if bubble {
                self.stats.bubbles_received += 1;
                return UdpVerdict::Consumed;
            }
            return self.drop_udp(DropReason::LinkLocalSource);
        }
        if !(to_us || bubble && is_link_local(&dst)) {
            return self.drop_udp(DropReason::WrongDestination);
        }
        let src_addr = Ipv6Addr::from(src);
        // Case 1: a trusted peer, from its mapping.
        if let Some(p) = self.peers.get_mut(&src_addr)
            && p.is_trusted_from(from)
        {
            p.received(now);
            if p.has_queue() {
                self.peers.release_queue(&src_addr, from);
            }
            return self.accepted(bubble, range);
        }
        if src[..4] == link.prefix {
            // Case 3: a Teredo source whose embedded mapping is the outer source.
            if !embedded_is(&src, from) {
                return self.drop_udp(DropReason::MappingMismatch);
            }
            self.trust(now, src_addr, from);
            return self.accepted(bubble, range);
        }
        // A native source, through a relay.
        if bubble {
            return self.drop_udp(DropReason::NotTeredoSource);
        }
        // Case 2: the answer to our direct IPv6 connectivity test.
        if self.verify_echo(now, ip, &link) {
            self.stats.echo_verified += 1;
            self.trust(now, src_addr, from);
            return UdpVerdict::Consumed;
        }
        // Case 6: queue it and test the source through the server.
        self.queue_inbound(now, src_addr, from, ip)
    }

    /// Trusts `peer` at `from` and releases its queue; a full table only means the peer
    /// is not remembered.
    fn trust(&mut self, now: Instant, peer: Ipv6Addr, from: SocketAddrV4) {
        match self.peers.get_or_insert(&peer, now) {
            Ok((p, _)) => {
                if !p.is_trusted_from(from) {
                    self.stats.peers_trusted += 1;
                }
                p.trust(now, from);
                if p.has_queue() {
                    self.peers.release_queue(&peer, from);
                }
            }
            Err(_) => self.stats.accepted_unrecorded += 1,
        }
    }

    /// Whether `ip` answers one of our echo tests (RFC 4380 §5.2.3 case 2, §5.2.9): an
    /// echo reply whose data is our token, or a destination unreachable from the tested
    /// address that carries our echo request (Miredo).
    fn verify_echo(&self, now: Instant, ip: &Ipv6Packet<'_>, link: &Link) -> bool {
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
        let p = match self.peers.get_or_insert(&src, now) {
            Ok((p, _)) => p,
            Err(_) => return self.drop_udp(DropReason::TableFull),
        };
        p.used(now);
        match p.check_probe(now) {
            ProbeCheck::Exhausted => return self.drop_udp(DropReason::PeerUnreachable),
            ProbeCheck::Wait(_) => {}
            ProbeCheck::Send => {
                p.record_probe(now);
                let seq = p.probes();
                self.send_probe(now, src, seq);
            }
        }
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
