//! The counters of a peer table.

/// Counters of a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Entries created.
    pub inserted: u64,
    /// New entries refused because the table was full.
    pub refused_full: u64,
    /// Entries removed by the sweep after the idle timeout.
    pub expired: u64,
    /// Entries removed by [`PeerTable::remove`](super::PeerTable::remove).
    pub removed: u64,
    /// Times the table was emptied ([`PeerTable::reset`](super::PeerTable::reset), a clock jump).
    pub resets: u64,
    /// Packets queued.
    pub queued: u64,
    /// Packets refused by a full per-peer queue.
    pub queue_peer_full: u64,
    /// Packets refused by the exhausted global queue budget.
    pub queue_budget_full: u64,
    /// Queued packets dropped (their peer expired or was removed, its queue discarded, or
    /// the table emptied).
    pub queue_discarded: u64,
    /// Queued packets handed out by [`PeerTable::pop_released`](super::PeerTable::pop_released).
    pub queue_released: u64,
    /// Released packets dropped because the caller's buffer was too small.
    pub queue_too_big: u64,
    /// Times the table grew (moved its entries into a larger table).
    pub grown: u64,
    /// Times the table shrank after expiry.
    pub shrunk: u64,
    /// Strangers made ([`PeerTable::insert_stranger`](super::PeerTable::insert_stranger)).
    pub strangers_admitted: u64,
    /// Strangers evicted to make room (for another stranger, or for an entry of the
    /// host's own in a full table).
    pub strangers_evicted: u64,
    /// New strangers refused: no stranger could be evicted.
    pub strangers_refused: u64,
    /// Strangers verified ([`PeerTable::promote`](super::PeerTable::promote)), which left the budget.
    pub strangers_promoted: u64,
    /// Entries that never answered, evicted by a new entry of the host's own in a full
    /// table.
    pub evicted_unanswered: u64,
    /// Queued packets dropped to give their room in the global budget to a shorter queue.
    pub queue_evicted: u64,
}
