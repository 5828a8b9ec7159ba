//! What the data path sends besides its verdicts (RFC 4380 §5.2.6, §5.2.9, §5.4.1): the
//! bubbles and echo tests that probe a peer (one per packet that asks, within the budget of
//! module `bubbles`), the echo test's repetition every 2 s while packets wait, the
//! rate-limited ICMPv6 destination unreachables for the TUN (RFC 4443 §3.1), and the
//! queued packets released once a peer is verified, all written by
//! [`Tunnel::poll_transmit`].

use std::net::{Ipv6Addr, SocketAddrV4};

use super::bubbles::Bubble;
use super::{
    BUBBLE_HOP_LIMIT, Destination, DropReason, ECHO_HOP_LIMIT, MAX_SOLICITATIONS, Mode, RETRY_DELAY,
    Transmit, Tunnel, UNREACHABLE_HOP_LIMIT,
};
use crate::address::{
    ALL_NODES, DISCOVERY_IPV4, LINK_LOCAL_RESTRICTED, TEREDO_PORT, TeredoAddress, is_global_unicast,
};
use crate::peers::Queued;
use crate::time::Instant;
use crate::wire::icmpv6::{DestinationUnreachable, Echo, Icmpv6Repr, MAX_ERROR_LEN};
use crate::wire::ipv6;
use crate::wire::trailer::{AlternateAddresses, DISCOVERY_SOLICITATION, RANDOM_PORT, Trailer};

/// The RFC 6081 §4 trailers a bubble carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct BubbleTrailers {
    /// A Nonce trailer (§4.2): ours on indirect bubbles, the peer's on the answers.
    pub(super) nonce: Option<[u8; 4]>,
    /// An Alternate Address trailer (§4.3) with our local address and port, on a client's
    /// indirect bubbles (hairpinning, §5.6).
    pub(super) alternate: Option<SocketAddrV4>,
    /// A Neighbor Discovery Option trailer (§4.4) of this discovery type (§5.7).
    pub(super) discovery: Option<u8>,
    /// A Random Port trailer (§4.5, type 0x05) with our predicted port (§5.4, §5.5).
    pub(super) random_port: Option<u16>,
}

impl BubbleTrailers {
    /// Only a nonce.
    pub(super) fn nonce(nonce: Option<[u8; 4]>) -> Self {
        Self { nonce, ..Self::default() }
    }

    /// Writes the trailers into `buf`; returns their length.
    fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let mut n = 0;
        if let Some(nonce) = self.nonce {
            n += Trailer::Nonce(nonce).emit(buf.get_mut(n..)?).ok()?;
        }
        if let Some(a) = self.alternate {
            let mut raw = [0u8; 6];
            raw[..4].copy_from_slice(&a.ip().octets());
            raw[4..].copy_from_slice(&a.port().to_be_bytes());
            let list = AlternateAddresses::new(&raw)?;
            n += Trailer::AlternateAddress(list).emit(buf.get_mut(n..)?).ok()?;
        }
        if let Some(discovery_type) = self.discovery {
            n += Trailer::NeighborDiscovery { discovery_type }.emit(buf.get_mut(n..)?).ok()?;
        }
        if let Some(port) = self.random_port {
            n += Trailer::RandomPort { trailer_type: RANDOM_PORT, port }.emit(buf.get_mut(n..)?).ok()?;
        }
        Some(n)
    }
}

/// An output waiting for [`Tunnel::poll_transmit`].
#[derive(Debug)]
pub(super) enum Pending {
    /// A bubble, queued through the budget of module `bubbles`.
    Bubble(Bubble),
    /// A router solicitation of an echo test (RFC 6081 §5.5.4.1.1), from the random
    /// socket `from` to a server address.
    EchoRs {
        from: u16,
        to: SocketAddrV4,
        nonce: [u8; 8],
    },
    Echo {
        dst: Ipv6Addr,
        seq: u16,
    },
    /// A local discovery bubble (RFC 4380 §5.2.8): to the all-nodes address, hop limit 1.
    Discovery {
        src: Ipv6Addr,
    },
    Unreachable {
        code: u8,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        invoking: Box<[u8]>,
    },
}

impl Tunnel {
    /// Writes the next output into `buf` (1280 bytes suffice for everything but released
    /// packets, which may be as long as the per-peer queue budget; a longer one is dropped
    /// and counted). Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        while let Some(p) = self.pending.pop_front() {
            match self.emit(now, p, buf) {
                Some(t) => return Some(t),
                None => self.stats.output_dropped += 1,
            }
        }
        loop {
            let r = self.peers.pop_released(buf)?;
            match r.queued {
                Queued::Outbound => {
                    self.stats.released_out += 1;
                    let dest = match self.random_source(&r.peer) {
                        Some(port) => Destination::UdpFrom { port, to: r.mapping },
                        None => Destination::Udp(r.mapping),
                    };
                    return Some(Transmit { dest, len: r.len });
                }
                Queued::Inbound { from } if from == r.mapping => {
                    self.stats.released_in += 1;
                    return Some(Transmit { dest: Destination::Tun, len: r.len });
                }
                Queued::Inbound { .. } => self.count(DropReason::RelayNotVerified),
            }
        }
    }

    fn emit(&mut self, now: Instant, p: Pending, buf: &mut [u8]) -> Option<Transmit> {
        match p {
            Pending::Bubble(Bubble { src, dst, to, trailers, from }) => {
                let len = ipv6::emit_bubble(buf, src, dst, BUBBLE_HOP_LIMIT).ok()?;
                let len = len + trailers.emit(buf.get_mut(len..)?)?;
                let dest = match from {
                    Some(port) => Destination::UdpFrom { port, to },
                    None => Destination::Udp(to),
                };
                Some(Transmit { dest, len })
            }
            Pending::EchoRs { from, to, nonce } => {
                let len = crate::client::qualification::emit_rs(buf, nonce, None).ok()?;
                Some(Transmit { dest: Destination::UdpFrom { port: from, to }, len })
            }
            Pending::Discovery { src } => {
                let len = ipv6::emit_bubble(buf, src, ALL_NODES, 1).ok()?;
                Some(Transmit { dest: Destination::Udp(SocketAddrV4::new(DISCOVERY_IPV4, TEREDO_PORT)), len })
            }
            Pending::Echo { dst, seq } => {
                let link = self.link()?;
                let data = self.key.echo_token(&link.address, &dst, self.echo_id, seq, now.as_secs());
                let echo = Echo { identifier: self.echo_id, sequence: seq, data: &data };
                let len =
                    Icmpv6Repr::EchoRequest(echo).emit_packet(buf, link.address, dst, ECHO_HOP_LIMIT).ok()?;
                Some(Transmit { dest: Destination::Udp(link.server), len })
            }
            Pending::Unreachable { code, src, dst, invoking } => {
                let msg =
                    Icmpv6Repr::DestinationUnreachable(DestinationUnreachable { code, invoking: &invoking });
                let len = msg.emit_packet(buf, src, dst, UNREACHABLE_HOP_LIMIT).ok()?;
                self.stats.unreachables_sent += 1;
                Some(Transmit { dest: Destination::Tun, len })
            }
        }
    }

    pub(super) fn push(&mut self, p: Pending) {
        if self.pending.len() >= self.limits.max_pending {
            self.stats.output_dropped += 1;
        } else {
            self.pending.push_back(p);
        }
    }

    /// Answers `packet`, read from the TUN, with a destination unreachable of `code`
    /// (RFC 4443 §3.1), unless RFC 4443 §2.4 (e) forbids it or the rate limit is reached.
    pub(super) fn unreachable(&mut self, now: Instant, code: u8, packet: &[u8]) {
        let Some(head) = packet.get(..ipv6::HEADER_LEN) else { return };
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&head[8..24]);
        dst.copy_from_slice(&head[24..40]);
        let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
        let is_error = head[6] == ipv6::NEXT_HEADER_ICMPV6 && packet.get(40).is_some_and(|&t| t < 128);
        if is_error || src.is_multicast() || src.is_unspecified() || dst.is_multicast() {
            return;
        }
        if !self.unreachables.take(now) {
            self.stats.unreachables_rate_limited += 1;
            return;
        }
        let from = match self.mode {
            Mode::Relay(c) => c.unreachable_source.unwrap_or(dst),
            Mode::Client(Some(l)) => l.address,
            Mode::Client(None) => LINK_LOCAL_RESTRICTED,
        };
        let cut = packet.len().min(MAX_ERROR_LEN - 8);
        let invoking = packet.get(..cut).unwrap_or_default().into();
        self.push(Pending::Unreachable { code, src: from, dst: src, invoking });
    }

    /// Sends the bubbles (Teredo peer) or the echo test (native peer) for `peer`, whose
    /// entry recorded the probe already (`seq` of them so far): one probe for the packet
    /// that asked for it (RFC 4380 §5.2.6, module `bubbles`). Only an echo test is
    /// repeated from a timer ([`Tunnel::retry`]); bubbles go again only when another
    /// packet asks.
    ///
    /// A peer that was trusted and speaks RFC 6081 gets only a direct bubble soliciting an
    /// answer, at its mapping, for the first three tries (Server Load Reduction, §5.7.2,
    /// §5.7.4.1). Otherwise a direct bubble (no nonce, §5.2.4.2) goes to the mapping in the
    /// peer's address (a client's from its Teredo address, RFC 4380 §5.2.6; a cone relay
    /// sends none) and the indirect ones of [`Tunnel::indirect_bubbles`].
    pub(super) fn send_probe(&mut self, now: Instant, peer: Ipv6Addr, seq: u8) {
        let o = peer.octets();
        let teredo = self.teredo_prefix().is_some_and(|p| o[..4] == p);
        if !teredo {
            if self.echo_allowed(now) {
                self.push(Pending::Echo { dst: peer, seq: u16::from(seq) });
                self.stats.echo_tests_sent += 1;
            }
            if self.retries.len() < self.limits.max_retries {
                self.retries.push_back((now + RETRY_DELAY, peer));
            }
            return;
        }
        let t = TeredoAddress::from_octets(&o);
        let direct = SocketAddrV4::new(t.mapped_addr, t.mapped_port);
        let token = self.key.bubble_source(t.mapped_addr, t.mapped_port);
        let (direct_src, own) = match self.mode {
            Mode::Relay(c) => ((!c.cone).then_some(token), token),
            Mode::Client(Some(l)) => (Some(l.address), l.address),
            Mode::Client(None) => return,
        };
        let refresh = self.peers.get(&peer).filter(|p| p.speaks_rfc6081()).and_then(|p| p.send_mapping());
        if let Some(mapping) = refresh
            && seq <= MAX_SOLICITATIONS
        {
            let trailers =
                BubbleTrailers { discovery: Some(DISCOVERY_SOLICITATION), ..BubbleTrailers::default() };
            let from = self.random_source(&peer);
            if self.send_bubble(now, Bubble { src: own, dst: peer, to: mapping, trailers, from }) {
                self.stats.solicitations_sent += 1;
            }
            return;
        }
        if let Some(src) = direct_src {
            self.send_bubble(now, Bubble::new(src, peer, direct));
        }
        // A local peer (RFC 4380 §5.2.4 case 3): a bubble to its local address, and a local
        // discovery bubble.
        if let Some(local) = self.peers.get(&peer).and_then(|p| p.local_address()) {
            self.send_bubble(now, Bubble::new(own, peer, local));
            if self.discovery.is_some() {
                self.push(Pending::Discovery { src: own });
                self.stats.discovery_bubbles_sent += 1;
            }
        }
        if self.link().is_some() {
            // RFC 6081 §5.4.4.3 (a random port), §5.5.4.1 (an echo test first).
            self.random_port_bubbles(now, &peer, None, false);
            self.request_indirect(now, peer);
        } else {
            self.indirect_bubbles(now, peer);
        }
    }

    /// The indirect bubbles for the Teredo `peer`, through its server, each with our nonce
    /// for it (RFC 6081 §5.2.4.1):
    /// - from the keyed link-local source ([`crate::nonce::TokenKey::bubble_source`]), so
    ///   that a Miredo peer's reply verifies from any mapping (Miredo's scheme; a relay
    ///   sends only this one);
    /// - a client's also from its Teredo address, with its local address in an Alternate
    ///   Address trailer when it knows one (hairpinning, §5.6.4.1): a peer that speaks RFC
    ///   6081 needs the address to answer with an indirect bubble of its own (§6.1 packet
    ///   4) and the alternate address to reach us behind a shared NAT.
    ///
    /// None goes to a server that is not global unicast (RFC 4380 §5.2.4): the source of a
    /// bubble we answer may embed any server, such as 127.0.0.1 or 0.0.0.0.
    pub(super) fn indirect_bubbles(&mut self, now: Instant, peer: Ipv6Addr) {
        let t = TeredoAddress::from_octets(&peer.octets());
        if !is_global_unicast(t.server) {
            return;
        }
        let to = SocketAddrV4::new(t.server, TEREDO_PORT);
        let nonce = Some(self.key.bubble_nonce(&peer));
        let token = self.key.bubble_source(t.mapped_addr, t.mapped_port);
        // RFC 6081 §5.4.4.2, §5.5.4.2: our Random Port, once we have one for the peer.
        let random_port = (!self.random.is_empty())
            .then(|| self.random.get(&peer).map(|e| e.random_port))
            .flatten()
            .filter(|p| *p != 0 && self.peers.get(&peer).is_some_and(|p| p.has_random_port()));
        let trailers = BubbleTrailers { nonce, random_port, ..BubbleTrailers::default() };
        self.send_bubble(now, Bubble { src: token, dst: peer, to, trailers, from: None });
        if let Some(l) = self.link() {
            let trailers = BubbleTrailers { nonce, alternate: self.local, discovery: None, random_port };
            self.send_bubble(now, Bubble { src: l.address, dst: peer, to, trailers, from: None });
        }
    }

    /// A repetition of the echo test is due for the native `peer` (RFC 4380 §5.2.9).
    ///
    /// Bubbles are never repeated from a timer (RFC 4380 §5.2.6 ties each to a packet, as
    /// Miredo does): a relay that repeated them would send several for one packet, to an
    /// address the packet chose. The echo test is repeated, 2 s apart and at most 4 times
    /// before a hold-off of [`crate::peers::ECHO_TEST_HOLD`] (the §5.2.6 rule with a
    /// shorter window; §5.2.9 sets no rule of its own), for these reasons: it goes only to
    /// the client's own server (an address of the configuration, never one a packet
    /// chose), which forwards it to a native address at most 4 times per 32 s;
    /// the packet that asked came from the own host (§5.2.4 case 2) or was admitted by
    /// [`super::Limits::tests_per_second`] (§5.2.3 case 6); every repetition also takes
    /// from the global rate; and without it a single lost test would hold a packet that
    /// is not retransmitted soon (a DNS query) until the peer's entry expires.
    pub(super) fn retry(&mut self, now: Instant, peer: &Ipv6Addr) {
        if self.teredo_prefix().is_some_and(|p| peer.octets()[..4] == p) {
            return;
        }
        let Some(p) = self.peers.get_mut(peer) else { return };
        if !p.has_queue() || p.trusted_mapping(now).is_some() {
            return;
        }
        match p.check_echo_test(now) {
            crate::peers::ProbeCheck::Send => {
                p.record_probe(now);
                let seq = p.probes();
                self.send_probe(now, *peer, seq);
            }
            crate::peers::ProbeCheck::Wait(_) => {}
            crate::peers::ProbeCheck::Exhausted => self.give_up(now, peer),
        }
    }

    /// The budget of RFC 4380 §5.2.6 for `peer` is spent without an answer: its queued
    /// packets are dropped, and those from the TUN answered with unreachables (code 3).
    pub(super) fn give_up(&mut self, now: Instant, peer: &Ipv6Addr) {
        let mut dropped: Vec<Box<[u8]>> = Vec::new();
        let n = self.peers.discard_queue(peer, |packet, queued| {
            if queued == Queued::Outbound {
                dropped.push(packet.into());
            }
        });
        *self.stats.drops.slot(DropReason::PeerUnreachable) += n as u64;
        for packet in dropped {
            self.unreachable(now, crate::wire::icmpv6::UNREACH_ADDRESS, &packet);
        }
    }
}
