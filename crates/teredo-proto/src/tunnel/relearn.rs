//! A relay's re-learning of senders it does not know (RFC 4380 §5.4.2 allows a relay to
//! drop them; Miredo does): a relay restarted, or a client whose address changed, would
//! otherwise lose every packet until the client gave up and tested again (Miredo's
//! client: 30 s after its last reception).
//!
//! A packet from an unknown Teredo source is never trusted outright, since its outer
//! source and its address may both be spoofed. It is held in the queue of a new entry,
//! a *stranger* (untrusted, listed here with a deadline), and the relay sends the source
//! the same keyed indirect bubble as its own (RFC 4380 §5.4.1, [`Tunnel::indirect_bubbles`]):
//! through the server its address embeds, from the keyed link-local source
//! ([`crate::nonce::TokenKey::bubble_source`]), with our Nonce trailer (RFC 6081 §5.2.4.1).
//! Only the client that server serves receives it; it answers with a direct bubble to the
//! origin indication (RFC 4380 §5.2.3; Miredo's client swaps the addresses, so its answer
//! goes to our keyed source, miredo-facts §4.6–4.7; ours also carries our nonce). The
//! answer that checks trusts the stranger at the mapping it comes from and releases the
//! held packets that came from that mapping to the TUN; any other is refused, and a
//! stranger not verified within [`STRANGER_LIFETIME`] is removed with its packets.
//!
//! Bounds: strangers are created by one function ([`Tunnel::admit_unknown_sender`]), in the
//! peer table's budget of strangers ([`crate::peers::PeerTable::insert_stranger`], which
//! evicts the longest idle stranger when it is full), and at most
//! [`crate::peers::PeerLimits::stranger_budget`] are held for re-learning at once (more
//! are refused and counted); the re-learning bubbles
//! go out from one function ([`Tunnel::relearn_bubble`]), one for a packet that asks at
//! most, within the peer's bubble budget of RFC 4380 §5.2.6 (one per 2 s, 4 per 300 s)
//! and the tunnel's budget per second for strangers ([`super::Limits::tests_per_second`]);
//! a packet over budget is counted and dropped.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use super::{DropReason, Tunnel, UdpVerdict, verify::is_reply_bubble};
use crate::address::{TeredoAddress, is_global_unicast};
use crate::nonce::constant_time_eq;
use crate::peers::ProbeCheck;
use crate::time::Instant;
use crate::wire::TeredoPacket;

/// How long a stranger may stay unverified: four bubbles 2 s apart (RFC 4380 §5.2.6) and
/// their answers fit.
pub const STRANGER_LIFETIME: Duration = Duration::from_secs(10);

/// The strangers of a relay: each with its deadline, in the order of the deadlines (all
/// are [`STRANGER_LIFETIME`] after their admission).
#[derive(Debug, Default)]
pub(super) struct Strangers {
    deadline: HashMap<Ipv6Addr, Instant>,
    order: VecDeque<(Instant, Ipv6Addr)>,
}

impl Strangers {
    pub(super) fn contains(&self, a: &Ipv6Addr) -> bool {
        self.deadline.contains_key(a)
    }

    pub(super) fn len(&self) -> usize {
        self.deadline.len()
    }

    fn insert(&mut self, a: Ipv6Addr, deadline: Instant) {
        self.deadline.insert(a, deadline);
        self.order.push_back((deadline, a));
    }

    fn remove(&mut self, a: &Ipv6Addr) {
        self.deadline.remove(a);
    }

    /// The next deadline, if any (a removed stranger's may come first: harmless).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|&(at, _)| at)
    }

    /// The next stranger whose deadline is past at `now`, taken out.
    fn pop_expired(&mut self, now: Instant) -> Option<Option<Ipv6Addr>> {
        let &(at, a) = self.order.front()?;
        if at > now {
            return None;
        }
        self.order.pop_front();
        if self.deadline.get(&a) == Some(&at) {
            self.deadline.remove(&a);
            Some(Some(a))
        } else {
            Some(None)
        }
    }

    pub(super) fn clear(&mut self) {
        self.deadline.clear();
        self.order.clear();
    }
}

impl Tunnel {
    /// The number of unknown senders being re-learnt (their entries are strangers of the
    /// peer table, [`crate::peers::Peer::is_stranger`], held unverified with a deadline).
    pub fn relearning(&self) -> usize {
        self.strangers.len()
    }

    /// Whether the unknown sender `peer` is being re-learnt (held, unverified).
    pub fn is_relearning(&self, peer: &Ipv6Addr) -> bool {
        self.strangers.contains(peer)
    }

    /// A relay's datagram from the Teredo source `src` at `from`, which is not in the list
    /// of peers or is a stranger (see the module comment).
    pub(super) fn relearn_receive(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        packet: &TeredoPacket<'_>,
        src: Ipv6Addr,
    ) -> UdpVerdict {
        let ip = &packet.ipv6;
        let known = self.strangers.contains(&src) && self.peers.contains(&src);
        if ip.is_bubble() {
            if !known {
                return self.drop_udp(DropReason::UnknownPeer);
            }
            let nonce =
                packet.trailers.nonce().is_some_and(|n| constant_time_eq(&n, &self.key.bubble_nonce(&src)));
            if nonce {
                self.stats.nonces_verified += 1;
            } else if is_reply_bubble(&self.key, ip) {
                self.stats.bubbles_verified += 1;
            } else {
                return self.drop_udp(DropReason::MappingMismatch);
            }
            self.strangers.remove(&src);
            self.peers.promote(&src);
            let Some(p) = self.peers.get_mut(&src) else { return self.drop_udp(DropReason::UnknownPeer) };
            p.trust(now, from);
            self.stats.peers_trusted += 1;
            self.stats.peers_relearned += 1;
            self.stats.bubbles_received += 1;
            if p.has_queue() {
                self.peers.release_queue(&src, from);
            }
            return UdpVerdict::Consumed;
        }
        let new = !known;
        // A sender whose bubble could not go gets no entry, and evicts no stranger.
        if new && !is_global_unicast(TeredoAddress::from_octets(&src.octets()).server) {
            return self.drop_udp(DropReason::DestinationNotGlobal);
        }
        if new && let Err(r) = self.admit_unknown_sender(now, src) {
            return self.drop_udp(r);
        }
        let Some(p) = self.peers.get_mut(&src) else { return self.drop_udp(DropReason::TableFull) };
        match p.check_probe(now) {
            ProbeCheck::Exhausted => return self.drop_udp(DropReason::PeerUnreachable),
            ProbeCheck::Wait(_) => {}
            ProbeCheck::Send => match self.relearn_bubble(now, src) {
                Ok(()) => {
                    if let Some(p) = self.peers.get_mut(&src) {
                        p.record_probe(now);
                    }
                }
                Err(r) if new => {
                    // Nothing asked it to prove itself: no entry either.
                    self.strangers.remove(&src);
                    self.peers.remove(&src);
                    return self.drop_udp(r);
                }
                Err(_) => {}
            },
        }
        self.hold_inbound(src, from, ip)
    }

    /// Makes the untrusted entry of a stranger for the unknown sender `src` in the peer
    /// table's budget of strangers, unless as many as that budget are held for re-learning
    /// already or no stranger can be evicted. The only place where a relay's inbound
    /// traffic creates an entry.
    pub(super) fn admit_unknown_sender(&mut self, now: Instant, src: Ipv6Addr) -> Result<(), DropReason> {
        let max = self.limits.peers.stranger_budget();
        // The list of deadlines keeps verified strangers until theirs: bounded too.
        if self.strangers.len() >= max || self.strangers.order.len() >= 2 * max {
            self.stats.relearn_refused += 1;
            return Err(DropReason::UnknownPeer);
        }
        match self.peers.insert_stranger(&src, now) {
            Ok((p, _)) => p.used(now),
            Err(_) => {
                self.stats.relearn_refused += 1;
                return Err(DropReason::TableFull);
            }
        }
        self.strangers.insert(src, now + STRANGER_LIFETIME);
        Ok(())
    }

    /// Sends the re-learning bubble to the stranger `peer`, within the tunnel's budget per
    /// second for strangers (else it is counted as suppressed); none goes to a server that
    /// is not global unicast (RFC 4380 §5.2.4).
    pub(super) fn relearn_bubble(&mut self, now: Instant, peer: Ipv6Addr) -> Result<(), DropReason> {
        if !is_global_unicast(TeredoAddress::from_octets(&peer.octets()).server) {
            return Err(DropReason::DestinationNotGlobal);
        }
        if !self.tests.take(now) {
            self.stats.relearn_suppressed += 1;
            return Err(DropReason::TestRateLimited);
        }
        self.indirect_bubbles(now, peer);
        self.stats.relearn_bubbles_sent += 1;
        Ok(())
    }

    /// The relay sends to `peer` (RFC 4380 §5.4.1): if it was a stranger, its entry is now
    /// an ordinary one, whose mapping the rules of §5.4.2 check; the packets it held were
    /// never verified and are dropped.
    pub(super) fn adopt_stranger(&mut self, peer: &Ipv6Addr) {
        if self.strangers.contains(peer) {
            self.strangers.remove(peer);
            // A destination of the relay's own now, as one made by the TUN would be.
            self.peers.promote(peer);
            let n = self.peers.discard_queue(peer, |_, _| {});
            *self.stats.drops.slot(DropReason::RelayNotVerified) += n as u64;
        }
    }

    /// Removes the strangers not verified by `now`, with their held packets.
    pub(super) fn expire_strangers(&mut self, now: Instant) {
        // Bounded by the list, which holds one item per admission still not past.
        while let Some(expired) = self.strangers.pop_expired(now) {
            let Some(a) = expired else { continue };
            if self.peers.get(&a).is_some_and(|p| !p.is_trusted()) {
                let n = self.peers.discard_queue(&a, |_, _| {});
                *self.stats.drops.slot(DropReason::RelayNotVerified) += n as u64;
                self.peers.remove(&a);
            }
            self.stats.relearn_expired += 1;
        }
    }
}
