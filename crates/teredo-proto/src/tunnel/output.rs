//! What the data path sends besides its verdicts (RFC 4380 §5.2.6, §5.2.9, §5.4.1): the
//! bubbles and echo tests that probe a peer, their repetition every 2 s while packets wait,
//! the rate-limited ICMPv6 destination unreachables for the TUN (RFC 4443 §3.1), and the
//! queued packets released once a peer is verified, all written by
//! [`Tunnel::poll_transmit`].

use std::net::{Ipv6Addr, SocketAddrV4};

use super::{
    BUBBLE_HOP_LIMIT, Destination, DropReason, ECHO_HOP_LIMIT, Mode, RETRY_DELAY, Transmit, Tunnel,
    UNREACHABLE_HOP_LIMIT,
};
use crate::address::{LINK_LOCAL_RESTRICTED, TEREDO_PORT, TeredoAddress};
use crate::peers::Queued;
use crate::time::Instant;
use crate::wire::icmpv6::{DestinationUnreachable, Echo, Icmpv6Repr, MAX_ERROR_LEN};
use crate::wire::ipv6;

/// An output waiting for [`Tunnel::poll_transmit`].
#[derive(Debug)]
pub(super) enum Pending {
    Bubble { src: Ipv6Addr, dst: Ipv6Addr, to: SocketAddrV4 },
    Echo { dst: Ipv6Addr, seq: u16 },
    Unreachable { code: u8, src: Ipv6Addr, dst: Ipv6Addr, invoking: Box<[u8]> },
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
                    return Some(Transmit { dest: Destination::Udp(r.mapping), len: r.len });
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
            Pending::Bubble { src, dst, to } => {
                let len = ipv6::emit_bubble(buf, src, dst, BUBBLE_HOP_LIMIT).ok()?;
                Some(Transmit { dest: Destination::Udp(to), len })
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
    /// entry recorded the probe already, and schedules the next try.
    pub(super) fn send_probe(&mut self, now: Instant, peer: Ipv6Addr, seq: u8) {
        let o = peer.octets();
        let teredo = self.teredo_prefix().is_some_and(|p| o[..4] == p);
        if teredo {
            let t = TeredoAddress::from_octets(&o);
            let direct = SocketAddrV4::new(t.mapped_addr, t.mapped_port);
            let indirect = SocketAddrV4::new(t.server, TEREDO_PORT);
            let (src, send_direct) = match self.mode {
                Mode::Relay(c) => {
                    let iid = self.key.bubble_interface_id(t.mapped_addr, t.mapped_port);
                    let mut a = [0u8; 16];
                    a[0] = 0xfe;
                    a[1] = 0x80;
                    a[8..].copy_from_slice(&iid);
                    (Ipv6Addr::from(a), !c.cone)
                }
                Mode::Client(Some(l)) => (l.address, true),
                Mode::Client(None) => return,
            };
            if send_direct {
                self.push(Pending::Bubble { src, dst: peer, to: direct });
                self.stats.bubbles_sent += 1;
            }
            self.push(Pending::Bubble { src, dst: peer, to: indirect });
            self.stats.bubbles_sent += 1;
        } else {
            self.push(Pending::Echo { dst: peer, seq: u16::from(seq) });
            self.stats.echo_tests_sent += 1;
        }
        if self.retries.len() < self.limits.max_retries {
            self.retries.push_back((now + RETRY_DELAY, peer));
        }
    }

    /// A repetition is due for `peer`.
    pub(super) fn retry(&mut self, now: Instant, peer: &Ipv6Addr) {
        let Some(p) = self.peers.get_mut(peer) else { return };
        if !p.has_queue() || p.trusted_mapping(now).is_some() {
            return;
        }
        match p.check_probe(now) {
            crate::peers::ProbeCheck::Send => {
                p.record_probe(now);
                let seq = p.probes();
                self.send_probe(now, *peer, seq);
            }
            crate::peers::ProbeCheck::Wait(_) => {}
            crate::peers::ProbeCheck::Exhausted => {
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
    }
}
