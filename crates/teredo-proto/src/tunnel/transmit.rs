//! Packets read from the TUN: a client's packet transmission (RFC 4380 §5.2.4, with the
//! direct IPv6 connectivity test of §5.2.9 and the bubbles of §5.2.6) and a relay's
//! transmission to Teredo clients (§5.4.1), the peers' cone bit ignored (RFC 5991 §3.2).

use std::net::Ipv6Addr;

use zerocopy::FromBytes;

use super::{DropReason, Mode, TunVerdict, Tunnel};

/// How long a client's native peer may stay silent, while packets go to it, before the
/// direct IPv6 connectivity test is repeated ([`Tunnel::handle_tun_packet`]). Miredo keeps
/// sending to the relay until the peer's entry expires, 30 s after the last reception;
/// this moves a flow off a dead relay within a few seconds. A flow that only sends (no
/// answer at all) costs one echo test per few seconds.
pub const RETEST_AFTER: std::time::Duration = std::time::Duration::from_secs(3);
use crate::address::{TeredoAddress, is_global_unicast};
use crate::peers::{ProbeCheck, QueueError, Queued};
use crate::time::Instant;
use crate::wire::icmpv6::{UNREACH_ADDRESS, UNREACH_ADMIN_PROHIBITED};
use crate::wire::ipv6::Ipv6Header;

impl Tunnel {
    /// Decides what to do with an IPv6 packet read from the TUN (see the module comment):
    /// send it unchanged to a trusted peer's mapping, queue it, or drop it. Bubbles, echo
    /// tests and errors it causes come out of [`Tunnel::poll_transmit`].
    pub fn handle_tun_packet(&mut self, now: Instant, packet: &[u8]) -> TunVerdict {
        let Ok((h, _)) = Ipv6Header::ref_from_prefix(packet) else {
            return self.drop_tun(DropReason::Malformed);
        };
        if h.version() != 6 {
            return self.drop_tun(DropReason::Malformed);
        }
        let dst = h.dst();
        if dst.is_multicast() {
            return self.drop_tun(DropReason::Multicast);
        }
        if self.mode == Mode::Client(None) {
            self.unreachable(now, UNREACH_ADDRESS, packet);
            return self.drop_tun(DropReason::NotQualified);
        }
        if let Some(v) = self.send_to_trusted(now, dst) {
            return v;
        }
        self.transmit_slow(now, h, packet)
    }

    /// [`Tunnel::handle_tun_packet`] for a packet of which only the headers are at hand,
    /// its payload to follow them unchanged from elsewhere (a segment cut from a TUN
    /// super-packet, sent without a copy): decides only where the IPv6 header suffices,
    /// a trusted peer with a valid mapping (case 1 of RFC 4380 §5.2.4 and §5.4.1), with the
    /// same effects as for the whole packet. `None`, with no effect at all, when the whole
    /// packet is needed: pass it to [`Tunnel::handle_tun_packet`] then.
    pub fn handle_tun_headers(&mut self, now: Instant, headers: &[u8]) -> Option<TunVerdict> {
        let (h, _) = Ipv6Header::ref_from_prefix(headers).ok()?;
        let dst = h.dst();
        if h.version() != 6 || dst.is_multicast() || self.mode == Mode::Client(None) {
            return None;
        }
        self.send_to_trusted(now, dst)
    }

    /// Case 1 (RFC 4380 §5.2.4, §5.4.1): a trusted peer of `dst` with a valid mapping gets
    /// the packet unchanged; `None`, with no effect, when there is no such peer.
    #[inline]
    fn send_to_trusted(&mut self, now: Instant, dst: Ipv6Addr) -> Option<TunVerdict> {
        let p = self.peers.get_mut(&dst)?;
        let mapping = p.trusted_mapping(now)?;
        p.used(now);
        self.stats.sent += 1;
        let extended = p.is_extended();
        let stale = p.since_reception(now) >= RETEST_AFTER && p.since_probe(now) >= RETEST_AFTER;
        if extended {
            // RFC 6081 §5.3.4.3, §5.4.4.1: the embedded mapping, or a random socket.
            return Some(self.send_extended(now, &dst, mapping));
        }
        if stale {
            self.retest(now, dst);
        }
        Some(TunVerdict::Send { dst: mapping })
    }

    /// A client's native peer has sent nothing through its relay for [`RETEST_AFTER`]
    /// while we keep sending to it: the relay may be dead, or the IPv6 route to us may
    /// have moved to another relay (anycast). The direct IPv6 connectivity test (RFC 4380
    /// §5.2.9) is repeated, at most once per [`RETEST_AFTER`], while packets still go to
    /// the current relay; the relay whose answer arrives (through the server, then from
    /// the relay that now carries the peer's traffic to us) becomes the peer's mapping.
    /// These repetitions last only while the mapping is valid (30 s after the last
    /// reception: at most 10) and do not count in the budget of §5.2.6, which is whole
    /// for the tests of the slow path once the mapping lapses. Teredo peers are left
    /// alone: their mapping is their own.
    fn retest(&mut self, now: Instant, dst: Ipv6Addr) {
        let Mode::Client(Some(link)) = self.mode else { return };
        if dst.octets()[..4] == link.prefix {
            return;
        }
        let Some(p) = self.peers.get_mut(&dst) else { return };
        p.record_retest(now);
        self.stats.echo_retests += 1;
        self.send_probe(now, dst, 0);
    }

    fn drop_tun(&mut self, r: DropReason) -> TunVerdict {
        self.count(r);
        TunVerdict::Drop(r)
    }

    fn transmit_slow(&mut self, now: Instant, h: &Ipv6Header, packet: &[u8]) -> TunVerdict {
        let dst = h.dst();
        let o = dst.octets();
        let prefix = self.teredo_prefix().unwrap_or_default();
        if o[..4] != prefix {
            match self.mode {
                Mode::Relay(_) => {
                    self.unreachable(now, UNREACH_ADDRESS, packet);
                    return self.drop_tun(DropReason::NotTeredoDestination);
                }
                Mode::Client(_) => {
                    if h.src_octets()[..4] != prefix {
                        self.unreachable(now, UNREACH_ADMIN_PROHIBITED, packet);
                        return self.drop_tun(DropReason::SourceNotTeredo);
                    }
                    // Case 2: the direct IPv6 connectivity test (§5.2.9).
                    return self.queue_and_probe(now, dst, packet);
                }
            }
        }
        // Cases 4 and 5 (client), 2 and 3 (relay): the cone bit is ignored (RFC 5991
        // §3.2), so always case 5 / case 3.
        let t = TeredoAddress::from_octets(&o);
        // Port 0 is no mapping a NAT gives: a direct bubble or packet would go nowhere.
        if !is_global_unicast(t.server) || !is_global_unicast(t.mapped_addr) || t.mapped_port == 0 {
            return self.drop_tun(DropReason::DestinationNotGlobal);
        }
        self.adopt_stranger(&dst);
        self.queue_and_probe(now, dst, packet)
    }

    /// Counts a probe for `dst` that the per-destination budget (RFC 4380 §5.2.6) held
    /// back: a bubble for a Teredo peer, an echo test for a native one.
    fn count_suppressed_probe(&mut self, dst: &Ipv6Addr) {
        if self.teredo_prefix().is_some_and(|p| dst.octets()[..4] == p) {
            self.stats.bubbles_suppressed += 1;
        } else {
            self.stats.echo_tests_suppressed += 1;
        }
    }

    /// Queues `packet` for `dst` and sends bubbles or an echo test when RFC 4380 §5.2.6
    /// allows; when the peer is unreachable, answers with an error instead.
    fn queue_and_probe(&mut self, now: Instant, dst: Ipv6Addr, packet: &[u8]) -> TunVerdict {
        let prefix = self.teredo_prefix();
        let p = match self.peers.get_or_insert(&dst, now) {
            Ok((p, _)) => p,
            Err(_) => return self.drop_tun(DropReason::TableFull),
        };
        p.used(now);
        // A bubble's budget for a Teredo peer, the echo test's for a native one.
        let teredo = prefix.is_some_and(|x| dst.octets()[..4] == x);
        let check = if teredo { p.check_probe(now) } else { p.check_echo_test(now) };
        match check {
            ProbeCheck::Exhausted => {
                self.count_suppressed_probe(&dst);
                // No timer gives up on a Teredo peer: the first packet refused does.
                self.give_up(now, &dst);
                self.unreachable(now, UNREACH_ADDRESS, packet);
                return self.drop_tun(DropReason::PeerUnreachable);
            }
            ProbeCheck::Wait(_) => self.count_suppressed_probe(&dst),
            ProbeCheck::Send => {
                p.record_probe(now);
                let seq = p.probes();
                self.send_probe(now, dst, seq);
            }
        }
        match self.peers.enqueue(&dst, Queued::Outbound, packet) {
            Ok(()) => {
                self.stats.queued_out += 1;
                TunVerdict::Queued
            }
            Err(QueueError::BudgetFull) => self.drop_tun(DropReason::QueueBudget),
            Err(QueueError::PeerFull) => self.drop_tun(DropReason::QueueFull),
            Err(QueueError::NoPeer) => self.drop_tun(DropReason::TableFull),
        }
    }
}
