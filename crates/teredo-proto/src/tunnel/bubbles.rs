//! The budget of everything the data path sends unasked to an IPv4 address that a packet
//! chose: bubbles, reply bubbles and echo tests, so that a relay or client cannot be made
//! an amplifier or a reflector (RFC 4380 §7.3, "Denial of Service").
//!
//! Three bounds, each with its counter in [`super::Stats`]:
//! - **per destination** (RFC 4380 §5.2.6): a bubble or echo test goes only for a packet
//!   that asks for one (a packet to an unverified peer, from the TUN or, for the echo
//!   test of §5.2.3 case 6, from a relay), at most one "probe" per packet, none within 2 s
//!   of the previous one and at most 4 unanswered in 300 s. The state is the peer entry's
//!   3-bit count and last-probe date ([`crate::peers::Peer::check_probe`]); nothing repeats
//!   bubbles from a timer (see [`Tunnel::retry`](super::Tunnel) for the echo test). A
//!   probe of a restricted relay is the pair of RFC 4380 §5.4.1 (direct and indirect);
//!   a client's is its direct bubble and its indirect ones (RFC 6081 §5.2.4.1);
//! - **per target** of a reply (answers to a bubble: RFC 4380 §5.2.3's hole punching,
//!   RFC 6081's answers, local discovery's): at most [`REPLIES_PER_TARGET`] per
//!   [`REPLY_WINDOW`] to one IPv4 address and port, counted in a fixed table of
//!   [`REPLY_BUCKETS`] buckets under a keyed hash (a collision only makes two targets share
//!   one budget), so that a flood of bubbles with spoofed sources cannot aim more at one
//!   victim, however many IPv6 sources it invents;
//! - **globally**: at most [`Limits::bubbles_per_second`](super::Limits) bubbles, reply
//!   bubbles and echo tests together per second (the `BubbleRate` directive), divided
//!   among workers like the other rates.
//!
//! Every sender of a bubble goes through [`Tunnel::send_bubble`] (probes) or
//! [`Tunnel::send_reply`] (answers); a caller with its own output asks
//! [`Tunnel::reply_allowed`] or [`Tunnel::echo_allowed`] first.

use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use super::output::{BubbleTrailers, Pending};
use super::{DropReason, Tunnel};
use crate::peers::PeerHasher;
use crate::time::Instant;

/// Most reply bubbles to one target (IPv4 address and port) per [`REPLY_WINDOW`]. A peer
/// bubbles at most once per 2 s per destination (RFC 4380 §5.2.6), and each of its bubbles
/// gets one answer; 8 per 10 s leaves room for a relay that carries several of our peers.
pub const REPLIES_PER_TARGET: u16 = 8;
/// The window of [`REPLIES_PER_TARGET`].
pub const REPLY_WINDOW: Duration = Duration::from_secs(10);
/// Buckets of the per-target table (8 bytes each).
pub const REPLY_BUCKETS: usize = 1024;

/// A bubble to send (RFC 4380 §2.8, with the RFC 6081 §4 trailers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bubble {
    pub(super) src: Ipv6Addr,
    pub(super) dst: Ipv6Addr,
    pub(super) to: SocketAddrV4,
    pub(super) trailers: BubbleTrailers,
    /// The random socket it leaves from (RFC 6081 §5.4.4.3); `None` for the Teredo
    /// service port.
    pub(super) from: Option<u16>,
}

impl Bubble {
    /// A bubble from the Teredo service port with no trailer.
    pub(super) fn new(src: Ipv6Addr, dst: Ipv6Addr, to: SocketAddrV4) -> Self {
        Self { src, dst, to, trailers: BubbleTrailers::default(), from: None }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The window (whole [`REPLY_WINDOW`]s since the origin, wrapping) of `count`.
    window: u32,
    count: u16,
}

/// The per-target reply budget and the global rate (see the module comment).
#[derive(Debug)]
pub(super) struct BubbleBudget {
    hasher: PeerHasher,
    buckets: Box<[Bucket]>,
    rate: super::limits::RateLimit,
}

impl BubbleBudget {
    pub(super) fn new(key: [u8; 16], per_second: u32) -> Self {
        Self {
            hasher: PeerHasher::new(key),
            buckets: vec![Bucket::default(); REPLY_BUCKETS].into_boxed_slice(),
            rate: super::limits::RateLimit::new(per_second),
        }
    }

    /// Takes one from the global rate.
    fn take_global(&mut self, now: Instant) -> bool {
        self.rate.take(now)
    }

    /// Whether a reply to `to` fits its target's budget; counts it when it does (the
    /// global rate is taken after, by the caller).
    fn take_target(&mut self, now: Instant, to: SocketAddrV4) -> bool {
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&to.ip().octets());
        key[4..6].copy_from_slice(&to.port().to_be_bytes());
        let i = (self.hasher.hash_octets(&key) % REPLY_BUCKETS as u64) as usize;
        let window = (now.as_secs() / REPLY_WINDOW.as_secs()) as u32;
        let Some(b) = self.buckets.get_mut(i) else { return false };
        if b.window != window {
            *b = Bucket { window, count: 0 };
        }
        if b.count >= REPLIES_PER_TARGET {
            return false;
        }
        b.count += 1;
        true
    }
}

impl Tunnel {
    /// Queues the bubble `b` of a probe (a packet asked for it, within the peer's budget of
    /// RFC 4380 §5.2.6) if the global rate allows; counts it as sent or rate-limited.
    pub(super) fn send_bubble(&mut self, now: Instant, b: Bubble) -> bool {
        if !self.unicast_target(b.to) {
            return false;
        }
        if !self.budget.take_global(now) {
            self.stats.bubbles_rate_limited += 1;
            return false;
        }
        self.push(Pending::Bubble(b));
        self.stats.bubbles_sent += 1;
        true
    }

    /// Queues the reply bubble `b` if its target's budget and the global rate allow;
    /// counts it as a reply sent or suppressed.
    pub(super) fn send_reply(&mut self, now: Instant, b: Bubble) -> bool {
        if !self.unicast_target(b.to) || !self.reply_allowed(now, b.to) {
            return false;
        }
        self.push(Pending::Bubble(b));
        self.stats.reply_bubbles_sent += 1;
        true
    }

    /// Whether a bubble may go to `to` at all: a unicast address (private ones are real
    /// for hairpinning and local peers) and a port; anything else, which only a forged
    /// address or trailer can name (a mapping of 255.255.255.255, port 0), is counted as
    /// `DestinationNotGlobal` and not sent.
    fn unicast_target(&mut self, to: SocketAddrV4) -> bool {
        if to.port() != 0 && super::receive::is_unicast_source(*to.ip()) {
            return true;
        }
        *self.stats.drops.slot(DropReason::DestinationNotGlobal) += 1;
        false
    }

    /// Whether one more reply bubble (or other answer to a received bubble) may go to
    /// `to` now: its target's budget, then the global rate. A refusal is counted in
    /// `reply_bubbles_suppressed`; a grant is taken from both budgets.
    pub(crate) fn reply_allowed(&mut self, now: Instant, to: SocketAddrV4) -> bool {
        if !self.budget.take_target(now, to) || !self.budget.take_global(now) {
            self.stats.reply_bubbles_suppressed += 1;
            return false;
        }
        true
    }

    /// Whether an echo test (RFC 4380 §5.2.9) may go now by the global rate; a refusal is
    /// counted in `echo_tests_suppressed`.
    pub(super) fn echo_allowed(&mut self, now: Instant) -> bool {
        if !self.budget.take_global(now) {
            self.stats.echo_tests_suppressed += 1;
            return false;
        }
        true
    }
}
