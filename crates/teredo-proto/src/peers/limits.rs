//! The bounds and timers of a peer table: its defaults (Miredo's where it has one), the
//! RFC 4380 §5.2.4 and §5.2.6 timers of mappings and probes, the eviction's scan, the
//! [`PeerLimits`] a table is made with, and the errors of making and filling one.

use std::time::Duration;

/// The default number of peers: 2^20, Miredo's `MAX_PEERS` with libJudy.
pub const DEFAULT_MAX_PEERS: usize = 1 << 20;
/// The default per-peer queue budget in bytes of packet data (Miredo's 1280).
pub const DEFAULT_QUEUE_BYTES_PER_PEER: usize = 1280;
/// The default global queue budget in bytes (packet data plus
/// [`PACKET_OVERHEAD`](super::PACKET_OVERHEAD) per packet, which bounds the queues' real
/// memory): 4 MiB.
pub const DEFAULT_QUEUE_BYTES_TOTAL: usize = 4 << 20;
/// How long a peer's mapping stays valid after its last reception (RFC 4380 §5.2.4).
pub const VALIDITY: Duration = Duration::from_secs(30);
/// The default idle timeout: an entry unused for this long is removed by the next visit of
/// the sweep (Miredo's `expiration`, 30 s).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The least spacing of bubbles (or echo tests) to one peer (RFC 4380 §5.2.6).
pub const PROBE_SPACING: Duration = Duration::from_secs(2);
/// How many bubbles (or echo tests) may go unanswered (RFC 4380 §5.2.6: 4 in 300 s;
/// §5.2.4 case 2: the test "repeated up to 3 times").
pub const MAX_PROBES: u8 = 4;
/// The window of [`MAX_PROBES`] (RFC 4380 §5.2.6).
pub const PROBE_WINDOW: Duration = Duration::from_secs(300);
/// How long a native peer stays unreachable after [`MAX_PROBES`] unanswered direct IPv6
/// connectivity tests (RFC 4380 §5.2.9, which sets no budget): one mapping validity,
/// as with Miredo, whose peer entry expires 30 s after its last use and then starts a new
/// count. 300 s, as for bubbles, is too long for a test whose path crosses the client's
/// NAT four times (to the server, the relay's bubble and its answer, the reply): under
/// 20% loss each way the four tries all fail about one time in ten, and the destination
/// would be unreachable for five minutes. The shorter hold-off opens no amplifier: the
/// test goes only to the client's own server, for a packet of its own host (or one
/// admitted by the test rate), at most 4 per 32 s per destination and within the global
/// `BubbleRate`.
pub const ECHO_TEST_HOLD: Duration = Duration::from_secs(30);

/// The slots of a new table (or fewer, `max_peers × 8/7` when that is smaller): 40 KiB.
pub const INITIAL_SLOTS: usize = 1024;

/// Slots looked at, at most, to choose an entry to evict (see the module comment).
pub const EVICT_SCAN: usize = 256;
/// Candidates compared, at most, to choose the longest idle one to evict.
pub const EVICT_SAMPLE: usize = 8;

/// The limits of a table (Miredo's `MaxPeers` and queue size, and our global budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Most entries held; at least 1.
    pub max_peers: usize,
    /// Most bytes of packets queued for one peer.
    pub queue_bytes_per_peer: usize,
    /// Most bytes queued for all peers together, [`PACKET_OVERHEAD`](super::PACKET_OVERHEAD)
    /// per packet included: a bound on the memory the queues hold.
    pub queue_bytes_total: usize,
    /// How long an unused entry is kept, at least (it goes within twice this).
    pub idle_timeout: Duration,
    /// Most strangers held (see the module comment); 0 for 1/8 of `max_peers`.
    pub max_strangers: usize,
}

impl PeerLimits {
    /// The budget of strangers: `max_strangers`, or 1/8 of `max_peers` when it is 0; at
    /// least 1 and at most `max_peers`.
    pub fn stranger_budget(&self) -> usize {
        let b = if self.max_strangers == 0 { self.max_peers / 8 } else { self.max_strangers };
        b.clamp(1, self.max_peers.max(1))
    }
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            max_peers: DEFAULT_MAX_PEERS,
            queue_bytes_per_peer: DEFAULT_QUEUE_BYTES_PER_PEER,
            queue_bytes_total: DEFAULT_QUEUE_BYTES_TOTAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_strangers: 0,
        }
    }
}

/// The table could not be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot allocate a peer table of {slots} slots")]
pub struct AllocationFailed {
    /// The number of slots asked for.
    pub slots: usize,
}

/// A new peer was refused: the table holds `max_peers` entries (or, with a negligible
/// probability under a keyed hash, the new entry's probe run would be too long).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the peer table is full")]
pub struct TableFull;
