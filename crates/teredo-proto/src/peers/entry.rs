//! One entry of the list of recent peers (RFC 4380 §5.2): the peer's address, mapping,
//! trust, dates of last reception and transmission, and the bubble and echo-test budget of
//! §5.2.6 ([`Peer::check_probe`]), in 40 bytes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use zerocopy::{FromZeros, KnownLayout};

use super::{ECHO_TEST_HOLD, MAX_PROBES, PROBE_SPACING, PROBE_WINDOW, VALIDITY};
use crate::time::Instant;

/// What the bubble and echo-test rules of RFC 4380 §5.2.6 allow now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeCheck {
    /// Send one now (then call [`Peer::record_probe`]).
    Send,
    /// The last one went less than [`PROBE_SPACING`] ago and may still be answered: send
    /// nothing before this instant.
    Wait(Instant),
    /// [`MAX_PROBES`] went unanswered (the last one more than [`PROBE_SPACING`] ago) in
    /// the last [`PROBE_WINDOW`]: the peer is unreachable for now.
    Exhausted,
}

/// One entry of the list of recent peers (RFC 4380 §5.2), 40 bytes.
///
/// Dates are kept as 32-bit milliseconds of [`Instant`] (wrapping, see the module
/// comment); every method takes the present instant.
#[derive(Clone, Copy, FromZeros, KnownLayout)]
#[repr(C)]
pub struct Peer {
    pub(super) address: [u8; 16],
    pub(super) mapped_addr: [u8; 4],
    /// "The date and time of the last reception from the peer."
    pub(super) last_rx: u32,
    /// The last use of the entry in either direction, for expiry.
    pub(super) last_used: u32,
    /// "The date and time of the last transmission to the peer", as RFC 4380 §5.2.6 uses
    /// it: the last bubble or echo test sent.
    pub(super) last_probe: u32,
    /// Bits 0 to 30: the queue handle, 0 for none. Bit 31 ([`STRANGER`]): the entry was
    /// made by traffic the host did not ask for and that nothing verified, and counts
    /// against the table's budget of strangers (see the module comment of
    /// [`super`]). The state byte has no bit left; a handle never reaches 2^31 (the
    /// queues hold at most one per queued packet, see `queue::MAX_HANDLE`).
    pub(super) queue: u32,
    pub(super) mapped_port: u16,
    /// Bit 0: trusted. Bits 1 to 3: bubbles or echo tests sent without an answer. Bit 4:
    /// the peer speaks RFC 6081 (its bubbles carried a Nonce trailer). Bit 5: a local peer
    /// (RFC 4380 §5.2.8), whose untrusted mapping is its local address. Bit 6: RFC 6081
    /// §5.3.1's Symmetric Peer flag, kept only where it matters (we are behind a single
    /// UPnP symmetric NAT): packets go to the embedded mapping. Bit 7: the peer has an
    /// entry in the data path's table of random ports (RFC 6081 §5.4.1, §5.5.1).
    pub(super) state: u8,
    /// Displacement from the home slot plus one; 0 for an empty slot.
    pub(super) probe: u8,
}

pub(super) const TRUSTED: u8 = 1;
pub(super) const PROBES_SHIFT: u8 = 1;
pub(super) const PROBES_MASK: u8 = 0b1110;
pub(super) const EXTENSIONS: u8 = 0b1_0000;
pub(super) const LOCAL: u8 = 0b10_0000;
pub(super) const SYMMETRIC_PEER: u8 = 0b100_0000;
pub(super) const RANDOM_PORT: u8 = 0b1000_0000;
/// The stranger bit, in [`Peer::queue`].
pub(super) const STRANGER: u32 = 1 << 31;
/// The bits a new trust keeps: what the peer is, not what was sent to it.
const KEPT_BY_TRUST: u8 = EXTENSIONS | SYMMETRIC_PEER | RANDOM_PORT;

#[inline(always)]
pub(super) fn stamp(now: Instant) -> u32 {
    (now.as_micros() / 1000) as u32
}

#[inline(always)]
pub(super) fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl core::fmt::Debug for Peer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Peer")
            .field("address", &self.address())
            .field("mapping", &self.stored_mapping())
            .field("trusted", &self.is_trusted())
            .field("probes", &self.probes())
            .field("stranger", &self.is_stranger())
            .field("queue", &self.queue_handle())
            .finish()
    }
}

impl Peer {
    pub(super) const EMPTY: Self = Self {
        address: [0; 16],
        mapped_addr: [0; 4],
        last_rx: 0,
        last_used: 0,
        last_probe: 0,
        queue: 0,
        mapped_port: 0,
        state: 0,
        probe: 0,
    };

    /// A new entry as RFC 4380 §5.2.3 and §5.2.6 create them: not trusted, no mapping, last
    /// reception and last transmission 30 s before `now`, no bubble sent.
    pub(super) fn new(address: [u8; 16], now: Instant) -> Self {
        let t = stamp(now);
        let before = t.wrapping_sub(ms(VALIDITY));
        Self { address, last_rx: before, last_used: t, last_probe: before, ..Self::EMPTY }
    }

    /// The peer's IPv6 address.
    pub fn address(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.address)
    }

    /// Whether the mapping is trusted (RFC 4380 §5.2 "the status of the mapped address").
    pub fn is_trusted(&self) -> bool {
        self.state & TRUSTED != 0
    }

    /// The trusted mapping: the peer's IPv4 address and UDP port, `None` while untrusted.
    pub fn mapping(&self) -> Option<SocketAddrV4> {
        self.is_trusted().then(|| self.stored_mapping())
    }

    pub(super) fn stored_mapping(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.mapped_addr), self.mapped_port)
    }

    /// Whether the last reception is less than [`VALIDITY`] old (RFC 4380 §5.2.4).
    #[inline]
    pub fn is_valid(&self, now: Instant) -> bool {
        stamp(now).wrapping_sub(self.last_rx) < ms(VALIDITY)
    }

    /// The mapping to send to when the entry is trusted and valid (RFC 4380 §5.2.4 case 1,
    /// §5.4.1 case 1): the fast path.
    #[inline]
    pub fn trusted_mapping(&self, now: Instant) -> Option<SocketAddrV4> {
        (self.is_trusted() && self.is_valid(now)).then(|| self.stored_mapping())
    }

    /// Whether a trusted mapping equals `from`.
    #[inline]
    pub fn is_trusted_from(&self, from: SocketAddrV4) -> bool {
        self.is_trusted() && self.mapped_addr == from.ip().octets() && self.mapped_port == from.port()
    }

    /// Marks the mapping `mapping` trusted after a verified reception at `now` (RFC 4380
    /// §5.2.3 cases 1 to 3, §5.4.2): last reception now, bubble count zero.
    pub fn trust(&mut self, now: Instant, mapping: SocketAddrV4) {
        self.mapped_addr = mapping.ip().octets();
        self.mapped_port = mapping.port();
        self.state = TRUSTED | (self.state & KEPT_BY_TRUST);
        self.received(now);
    }

    /// Records a verified reception at `now`: the entry is used, its last reception is now
    /// and the bubbles sent so far are answered.
    #[inline]
    pub fn received(&mut self, now: Instant) {
        let t = stamp(now);
        self.last_rx = t;
        self.last_used = t;
        self.state &= !PROBES_MASK;
    }

    /// Records a use of the entry at `now` (keeps it from expiring).
    #[inline]
    pub fn used(&mut self, now: Instant) {
        self.last_used = stamp(now);
    }

    /// How long ago the last reception was.
    pub fn since_reception(&self, now: Instant) -> Duration {
        Duration::from_millis(u64::from(stamp(now).wrapping_sub(self.last_rx)))
    }

    /// Whether the peer showed that it speaks RFC 6081 (a bubble of its carried a Nonce
    /// trailer), so that it answers the solicitations of Server Load Reduction (§5.7).
    pub fn speaks_rfc6081(&self) -> bool {
        self.state & EXTENSIONS != 0
    }

    /// The local address of a peer found by local discovery (RFC 4380 §5.2.8) and not yet
    /// trusted: where its direct bubbles go, and where packets from it are accepted
    /// (§5.2.3 case 5).
    pub fn local_address(&self) -> Option<SocketAddrV4> {
        (self.state & (LOCAL | TRUSTED) == LOCAL).then(|| self.stored_mapping())
    }

    /// Records `local` as the local address of an untrusted peer (a local discovery
    /// bubble came from there, RFC 4380 §5.2.8); a trusted peer keeps its mapping.
    pub fn set_local(&mut self, now: Instant, local: SocketAddrV4) {
        if self.is_trusted() {
            return;
        }
        self.mapped_addr = local.ip().octets();
        self.mapped_port = local.port();
        self.state |= LOCAL;
        self.used(now);
    }

    /// The mapping embedded in the peer's Teredo address (RFC 4380 §4; meaningless for a
    /// native peer).
    pub fn embedded_mapping(&self) -> SocketAddrV4 {
        let a = self.address;
        let ip = [a[12] ^ 0xff, a[13] ^ 0xff, a[14] ^ 0xff, a[15] ^ 0xff];
        SocketAddrV4::new(Ipv4Addr::from(ip), u16::from_be_bytes([a[10], a[11]]) ^ 0xffff)
    }

    /// Whether the slow part of the fast path applies: a Symmetric Peer flag or a random
    /// port (bits 6 and 7), one test for both.
    #[inline(always)]
    pub fn is_extended(&self) -> bool {
        self.state & (SYMMETRIC_PEER | RANDOM_PORT) != 0
    }

    /// RFC 6081 §5.3.1's Symmetric Peer flag, set only behind a single UPnP symmetric NAT:
    /// data and direct bubbles go to [`Peer::embedded_mapping`] (§5.3.4.2, §5.3.4.3).
    pub fn sends_to_embedded(&self) -> bool {
        self.state & SYMMETRIC_PEER != 0
    }

    /// Sets the Symmetric Peer flag ([`Peer::sends_to_embedded`]).
    pub fn set_symmetric_peer(&mut self) {
        self.state |= SYMMETRIC_PEER;
    }

    /// Whether the peer has an entry in the table of random ports.
    pub fn has_random_port(&self) -> bool {
        self.state & RANDOM_PORT != 0
    }

    /// Records whether the peer has an entry in the table of random ports.
    pub fn set_random_port(&mut self, on: bool) {
        if on {
            self.state |= RANDOM_PORT;
        } else {
            self.state &= !RANDOM_PORT;
        }
    }

    /// The mapping to send to (RFC 4380 §5.2.4 case 1), once trusted: the trusted one, or
    /// the embedded one for a flagged symmetric peer (RFC 6081 §5.3.4.3).
    pub fn send_mapping(&self) -> Option<SocketAddrV4> {
        self.mapping().map(|m| if self.sends_to_embedded() { self.embedded_mapping() } else { m })
    }

    /// Records that the peer speaks RFC 6081 ([`Peer::speaks_rfc6081`]).
    pub fn set_speaks_rfc6081(&mut self) {
        self.state |= EXTENSIONS;
    }

    /// Bubbles or echo tests sent without an answer.
    pub fn probes(&self) -> u8 {
        (self.state & PROBES_MASK) >> PROBES_SHIFT
    }

    /// Whether packets are queued for the peer.
    #[inline]
    pub fn has_queue(&self) -> bool {
        self.queue & !STRANGER != 0
    }

    /// The handle of the peer's queue, 0 for none.
    #[inline]
    pub(super) fn queue_handle(&self) -> u32 {
        self.queue & !STRANGER
    }

    /// Stores the handle of the peer's queue (0 for none), keeping the stranger bit.
    #[inline]
    pub(super) fn set_queue_handle(&mut self, handle: u32) {
        self.queue = (self.queue & STRANGER) | (handle & !STRANGER);
    }

    /// Takes the handle of the peer's queue, leaving 0.
    #[inline]
    pub(super) fn take_queue_handle(&mut self) -> u32 {
        let h = self.queue_handle();
        self.queue &= STRANGER;
        h
    }

    /// Whether the entry is a stranger: made by traffic the host did not ask for (a
    /// packet accepted from an unverified peer, RFC 4380 §5.2.3 case 3; an incoming
    /// bubble; a packet queued for the echo test of case 6) and not verified since. Only
    /// [`super::PeerTable::insert_stranger`] makes one, and only
    /// [`super::PeerTable::promote`] (or the entry's removal) ends it.
    #[inline]
    pub fn is_stranger(&self) -> bool {
        self.queue & STRANGER != 0
    }

    #[inline]
    pub(super) fn set_stranger(&mut self, on: bool) {
        if on {
            self.queue |= STRANGER;
        } else {
            self.queue &= !STRANGER;
        }
    }

    /// How long ago the entry was last used, in milliseconds (0 for a date after `now`).
    #[inline]
    pub(super) fn idle_ms(&self, now: Instant) -> u32 {
        let age = stamp(now).wrapping_sub(self.last_used);
        if age >= 1 << 31 { 0 } else { age }
    }

    /// What RFC 4380 §5.2.6 allows: no bubble less than 2 s after the previous one, and
    /// none after 4 without an answer in the last 300 s (Miredo: counted from the last
    /// one, after which the count starts over). The peer counts as unreachable only once
    /// the 2 s after the fourth have passed without an answer.
    pub fn check_probe(&self, now: Instant) -> ProbeCheck {
        self.check_probe_within(now, PROBE_WINDOW)
    }

    /// The same rule for the direct IPv6 connectivity test of a native peer (RFC 4380
    /// §5.2.9, which sets no budget of its own), with the hold-off after 4 unanswered
    /// tests of [`ECHO_TEST_HOLD`] instead of 300 s (see there).
    pub fn check_echo_test(&self, now: Instant) -> ProbeCheck {
        self.check_probe_within(now, ECHO_TEST_HOLD)
    }

    fn check_probe_within(&self, now: Instant, window: Duration) -> ProbeCheck {
        let probes = self.probes();
        if probes == 0 {
            return ProbeCheck::Send;
        }
        let since = stamp(now).wrapping_sub(self.last_probe);
        if since < ms(PROBE_SPACING) {
            let wait = u64::from(ms(PROBE_SPACING) - since);
            return ProbeCheck::Wait(now + Duration::from_millis(wait));
        }
        if probes >= MAX_PROBES && since < ms(window) {
            return ProbeCheck::Exhausted;
        }
        ProbeCheck::Send
    }

    /// Records an echo test repeated at `now` for a trusted peer gone silent (RFC 4380
    /// §5.2.9 repeated, see `tunnel::RETEST_AFTER`): its date is the last transmission, and
    /// the count of unanswered probes is left alone, so that the budget of §5.2.6 is whole
    /// when the peer's mapping lapses.
    pub fn record_retest(&mut self, now: Instant) {
        let t = stamp(now);
        self.last_probe = t;
        self.last_used = t;
    }

    /// How long ago the last bubble or echo test went.
    pub fn since_probe(&self, now: Instant) -> Duration {
        Duration::from_millis(u64::from(stamp(now).wrapping_sub(self.last_probe)))
    }

    /// Records a bubble or echo test sent at `now` ("the client MUST update the last
    /// transmission date ... and increment the number of transmitted bubbles").
    pub fn record_probe(&mut self, now: Instant) {
        let probes = match self.probes() {
            p if p >= MAX_PROBES => 1,
            p => p + 1,
        };
        self.state = (self.state & !PROBES_MASK) | (probes << PROBES_SHIFT);
        let t = stamp(now);
        self.last_probe = t;
        self.last_used = t;
    }
}
