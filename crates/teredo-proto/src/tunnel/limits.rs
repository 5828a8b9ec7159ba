//! The bounds of a tunnel ([`Limits`]): the list of peers and its queues, pending outputs,
//! repetitions, and the rates of ICMPv6 errors, echo tests and bubbles (RFC 4443 §2.4 (f);
//! RFC 4380 §5.2.9, §7.3, against spoofed sources and amplification), with the division of them among workers.

use crate::peers::PeerLimits;
use crate::time::Instant;

/// Most pending repetitions by default (each 16 bytes + 8); more are not scheduled, and the
/// peer is then probed again only when new packets come.
const MAX_RETRIES: usize = 1 << 16;

/// The default of [`Limits::bubbles_per_second`]: more than a busy host's new destinations
/// ask for (one probe per new peer, at most one per 2 s per peer), far less than a flood.
pub const DEFAULT_BUBBLE_RATE: u32 = 1000;

/// The limits of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The list of peers and its queues.
    pub peers: PeerLimits,
    /// Most outputs (bubbles, echo tests, errors) waiting for [`Tunnel::poll_transmit`](super::Tunnel::poll_transmit);
    /// more are dropped and counted.
    pub max_pending: usize,
    /// Most ICMPv6 destination unreachables per second (Miredo: 10).
    pub unreachables_per_second: u32,
    /// Most echo tests per second started for new native sources received from unverified
    /// relays (client case 6); for a relay, most re-learning bubbles per second sent to
    /// senders it does not know (module `relearn`).
    pub tests_per_second: u32,
    /// Most bubbles, reply bubbles and echo tests sent per second, together (the
    /// `BubbleRate` directive; module `bubbles`): a bound on what a flood of packets to
    /// new destinations, or of spoofed bubbles, makes the tunnel send.
    pub bubbles_per_second: u32,
    /// Most echo-test repetitions scheduled at once.
    pub max_retries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            peers: PeerLimits::default(),
            max_pending: 4096,
            unreachables_per_second: 10,
            tests_per_second: 100,
            bubbles_per_second: DEFAULT_BUBBLE_RATE,
            max_retries: MAX_RETRIES,
        }
    }
}

impl Limits {
    /// The limits of one of `n` tunnels that share the peers (one per worker), so that
    /// together they hold no more than `self`: every count, byte budget and rate divided
    /// by `n`, rounded up (at least 1).
    pub fn shared_by(self, n: usize) -> Self {
        let n = n.max(1);
        let part = |v: usize| v.div_ceil(n).max(1);
        let rate = |v: u32| v.div_ceil(n as u32).max(1);
        Self {
            peers: PeerLimits {
                max_peers: part(self.peers.max_peers),
                queue_bytes_total: part(self.peers.queue_bytes_total),
                // 0 (the default share of max_peers) stays 0.
                max_strangers: if self.peers.max_strangers == 0 { 0 } else { part(self.peers.max_strangers) },
                ..self.peers
            },
            max_pending: part(self.max_pending),
            unreachables_per_second: rate(self.unreachables_per_second),
            tests_per_second: rate(self.tests_per_second),
            bubbles_per_second: rate(self.bubbles_per_second),
            max_retries: part(self.max_retries),
        }
    }
}

/// At most `per_second` events per whole second of [`Instant`] (Miredo's ICMPv6 limiter).
#[derive(Debug, Clone, Copy)]
pub(super) struct RateLimit {
    second: u64,
    left: u32,
    per_second: u32,
}

impl RateLimit {
    pub(super) fn new(per_second: u32) -> Self {
        Self { second: u64::MAX, left: 0, per_second }
    }

    pub(super) fn take(&mut self, now: Instant) -> bool {
        let s = now.as_secs();
        if s != self.second {
            self.second = s;
            self.left = self.per_second;
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }
}
