//! The list of recent Teredo peers (RFC 4380 §5.2 "list of recent Teredo peers", §5.2.3,
//! §5.2.4, §5.2.6, §5.4), shared by the client and the relay: for each peer, its IPv6
//! address, its mapped IPv4 address and port, whether that mapping is trusted, the dates
//! of the last reception and of the last bubble or echo test sent, the number of those
//! sent, and a queue of packets waiting for the mapping.
//!
//! # Shape
//!
//! An open-addressing hash table with linear probing, Robin Hood insertion and
//! backward-shift deletion, holding the entries inline: one [`Peer`] of 40 bytes per slot,
//! at a load of at most 7/8. A lookup hashes the address once (SipHash-1-3 under a secret
//! key, see [`PeerHasher`]) and reads one or two adjacent cache lines, so its cost barely
//! grows from a thousand to a million peers. Nothing is allocated on the lookup path.
//!
//! # Memory follows the peers
//!
//! The table starts small ([`INITIAL_SLOTS`], or `max_peers × 8/7` if that is at most
//! 11/8 of it) and grows when an insertion would take the load above 7/8: it allocates a
//! table of about 11/8 as many slots (up to `max_peers × 8/7`, the size for `max_peers`,
//! never more) and moves every entry into it. Right after a growth the load is 7/8 × 8/11 = 7/11, so the
//! slots cost between 45.7 bytes per peer (load 7/8) and 62.9 (load 7/11) once the table
//! holds more than 640 peers: at most 64, whatever the number of peers, and 45.7 at full
//! capacity (Miredo's list costs about 110). A factor of 2 would leave up to 91.4 bytes
//! per peer after a doubling; 11/8 keeps the bound at the price of moving each entry
//! about 8/3 times over the table's growth instead of once (still amortised O(1) per
//! insertion).
//!
//! The sizes are `max_peers × 8/7 × (8/11)^k`, so that the last growth, the longest, is a
//! whole step. A growth is a pause: the insertion that triggers it moves every entry,
//! about 50 ns each (hashing, and the page faults of the fresh table, about half of it),
//! while both tables are allocated (the memory peaks at 19/8 of the old table). The peers
//! bench prints every growth up to 2^20 peers: the last one, from 871,545 slots to
//! 1,198,374 with 762,601 entries, takes about 40 ms; all of them together add about
//! 130 ns to each insertion when a table fills from empty. The I/O layer shards the table
//! (below), which divides the pause by the number of shards.
//!
//! The table also shrinks: when a round of the expiry sweep ends with it less than 1/8
//! full, it moves its entries into a table sized as after a growth (at least
//! [`INITIAL_SLOTS`]), so that the memory of a flood of peers comes back once they expire.
//!
//! Slots are allocated zeroed, so the operating system commits the pages of a large table
//! only as entries are written into them, and [`PeerTable::reset`] gives the old pages
//! back instead of writing them. (Entries land at random, so a table's pages are soon all
//! committed: hence the growth.)
//!
//! The packet queues live beside the slots (see [`Queued`]), bounded per peer and
//! globally in bytes, their bookkeeping included. When the global budget is full, a packet
//! for a queue shorter than others takes the room of the oldest packet of a longer one
//! (sampled, see `queue::Queues::victim`): many unanswered destinations cannot hold the
//! whole budget against a new one.
//!
//! # Strangers and eviction
//!
//! Anybody can make a host accept packets from new peers: a Teredo source whose embedded
//! mapping is the outer source is accepted as it is (RFC 4380 §5.2.3 case 3), and one IPv4
//! mapping embeds in 2^48 Teredo addresses (any server, any flags), so spoofed datagrams
//! could fill the table with entries the host never asked for (RFC 4380 §7.3.3). Such an
//! entry is a *stranger*: made by [`PeerTable::insert_stranger`] for traffic the host did
//! not ask for and that nothing verified (case 3, an incoming bubble, a packet queued for
//! the echo test of case 6). Strangers are marked ([`Peer::is_stranger`]) and held in a
//! budget of their own, [`PeerLimits::stranger_budget`] (1/8 of `max_peers` by default):
//! when it is full, or the table is, a new stranger evicts an old one (never another
//! entry); a stranger leaves the budget when [`PeerTable::promote`] says it was verified
//! (it answered our bubble or echo test). So strangers never hold more than their budget,
//! and the host's own new destinations and verified peers find room.
//!
//! When the table is full, a new entry of the host's own ([`PeerTable::get_or_insert`])
//! evicts a stranger or, failing that, an entry that never answered (not trusted: a
//! relay's destination that sent nothing back) before it is refused; a trusted entry is
//! never evicted, nor one with a random port (RFC 6081 §5.4, whose state lives beside the
//! table). The victim is the longest idle of up to [`EVICT_SAMPLE`] candidates met from a
//! rotating cursor within [`EVICT_SCAN`] slots (sampled LRU, as Redis does): O(1) per
//! insertion, no scan of the table, and under a keyed hash the attacker cannot choose
//! where its entries land. Strangers go before entries that never answered. An evicted
//! entry's queued packets are dropped and counted (`queue_discarded`).
//!
//! # Limits and expiry
//!
//! - The table holds at most `max_peers` entries (Miredo's `MAX_PEERS`, 2^20 by default).
//!   When it is full a new peer evicts a stranger or an entry that never answered (see
//!   "Strangers and eviction" above), or, when there is none, is refused and counted;
//!   existing trusted peers keep working. A growth that cannot be allocated refuses the
//!   new peer the same way.
//! - A peer's mapping is *valid* while its last reception is less than 30 s old (RFC 4380
//!   §5.2.4).
//! - An entry not used in either direction for the idle timeout (30 s) is removed between
//!   30 and 60 s after its last use, as Miredo's two-generation list does. The removal is
//!   an incremental sweep: every slot is visited once per idle timeout, a bounded batch of
//!   slots per [`PeerTable::handle_timeout`], so expiry costs O(1) per peer and never an
//!   O(n) pause. The number of batches per idle timeout follows the table's size (one
//!   batch more than the table has, as a margin); a resize maps the sweep's position
//!   proportionally (a Robin Hood table keeps entries in the order of their hashes, and
//!   so does the resized one), a little before it so that no entry yet to be visited in
//!   this round is skipped, and brings the next step forward when the table grew. (An
//!   entry moved backward past the sweep by a deletion may wait one more round.)
//! - Times are stored as 32-bit milliseconds, which wrap after 49 days; the sweep keeps
//!   every stored date within an hour of the present so that no comparison ever sees a
//!   wrapped value. A call to `handle_timeout` more than an hour after the previous one
//!   (a suspended machine, a clock jump) empties the table, whose entries would all have
//!   expired anyway.
//!
//! # Threads and sharding
//!
//! The table is single-threaded (`&mut self`). The I/O layer runs one table per shard,
//! each inside its own data-path instance behind its own lock (or owned by one worker),
//! and sends each packet to the shard [`PeerHasher::shard`] picks for the peer's address
//! (the inner IPv6 source of a datagram, the inner destination of a TUN packet), with a
//! hasher under a key of its own. Both directions of one peer then meet in one shard and
//! one table, and the limits above apply per shard (divide `max_peers` and the queue
//! budget by the number of shards).

mod entry;
mod eviction;
#[cfg(test)]
mod eviction_tests;
mod hash;
mod limits;
mod queue;
mod queueing;
mod slots;
mod stats;
mod sweep;
#[cfg(test)]
mod tests;

use std::net::Ipv6Addr;
use std::time::Duration;

use crate::time::Instant;

pub use entry::{Peer, ProbeCheck};
pub use hash::PeerHasher;
pub use limits::{
    AllocationFailed, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_PEERS, DEFAULT_QUEUE_BYTES_PER_PEER,
    DEFAULT_QUEUE_BYTES_TOTAL, ECHO_TEST_HOLD, EVICT_SAMPLE, EVICT_SCAN, INITIAL_SLOTS, MAX_PROBES,
    PROBE_SPACING, PROBE_WINDOW, PeerLimits, TableFull, VALIDITY,
};
pub use queue::{PACKET_OVERHEAD, QueueError, Queued, Released};

use hash::reduce;
use queue::Queues;
pub use slots::slots_for;
use slots::{allocate, initial_slots, insert_at_home, sweep_interval};
pub use stats::PeerStats;
use sweep::Sweep;

/// Slots visited by one step of the expiry sweep.
const SWEEP_BATCH: usize = 8192;
/// The largest value of a slot's probe byte (displacement + 1).
const MAX_PROBE: u8 = 254;
/// Dates older than this are pulled forward to it by the sweep (see the module comment).
const LONG_AGO_MS: u32 = 3_600_000;
/// A gap between two calls to `handle_timeout` after which the table is emptied.
const CLOCK_JUMP: Duration = Duration::from_secs(3600);

/// The list of recent peers (see the module comment).
pub struct PeerTable {
    slots: Box<[Peer]>,
    len: usize,
    /// The number of slots for `max_peers`: the most the table grows to.
    max_slots: usize,
    limits: PeerLimits,
    hasher: PeerHasher,
    queues: Queues,
    sweep: Sweep,
    stats: PeerStats,
    /// Entries with the stranger bit.
    strangers: usize,
    /// Where the next choice of an entry to evict starts.
    evict_cursor: usize,
}

impl core::fmt::Debug for PeerTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerTable")
            .field("len", &self.len)
            .field("slots", &self.slots.len())
            .field("max_slots", &self.max_slots)
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

impl PeerTable {
    /// An empty table with these limits, hashing addresses under `hash_key` (16 secret
    /// random bytes; see [`crate::nonce::TokenKey::hash_key`]). `now` starts the sweep.
    pub fn new(limits: PeerLimits, hash_key: [u8; 16], now: Instant) -> Result<Self, AllocationFailed> {
        let limits = PeerLimits {
            max_peers: limits.max_peers.clamp(1, u32::MAX as usize / 2),
            idle_timeout: limits.idle_timeout.max(Duration::from_secs(1)),
            ..limits
        };
        let max_slots = slots_for(limits.max_peers);
        let slots = allocate(initial_slots(max_slots))?;
        let interval = sweep_interval(limits.idle_timeout, slots.len());
        Ok(Self {
            slots,
            len: 0,
            max_slots,
            limits,
            hasher: PeerHasher::new(hash_key),
            queues: Queues::new(limits.queue_bytes_per_peer, limits.queue_bytes_total),
            sweep: Sweep { cursor: 0, next: now + interval, interval, last_call: now },
            stats: PeerStats::default(),
            strangers: 0,
            evict_cursor: 0,
        })
    }

    /// Changes the most entries to `max_peers`, within the allocation the table was made
    /// for (its `max_peers` then); false, and nothing changed, above it. Entries beyond a
    /// lowered bound stay until they expire; no new one is made meanwhile.
    pub fn set_max_peers(&mut self, max_peers: usize) -> bool {
        if max_peers == 0 || slots_for(max_peers) > self.max_slots {
            return false;
        }
        self.limits.max_peers = max_peers;
        true
    }

    /// The limits in use (`max_peers` at least 1, idle timeout at least 1 s).
    pub fn limits(&self) -> &PeerLimits {
        &self.limits
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of slots now (it grows with the entries, see the module comment).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The number of slots the table grows to for `max_peers` entries (`max_peers × 8/7`,
    /// rounded up).
    pub fn max_slot_count(&self) -> usize {
        self.max_slots
    }

    /// The number of entries the table holds before it must grow (`max_peers` once it has
    /// grown to [`PeerTable::max_slot_count`] slots).
    pub fn capacity(&self) -> usize {
        let n = self.slots.len();
        if n >= self.max_slots { self.limits.max_peers } else { (n * 7 / 8).min(self.limits.max_peers) }
    }

    /// The bytes of the slots now: the table's memory, queues aside.
    pub fn slot_bytes(&self) -> usize {
        self.slots.len() * size_of::<Peer>()
    }

    /// The bytes of slots per peer at full capacity (45.7 for any large `max_peers`). The
    /// queues add at most `queue_bytes_total` on top, whatever the number of peers.
    pub fn bytes_per_peer(&self) -> f64 {
        (self.max_slots * size_of::<Peer>()) as f64 / self.limits.max_peers as f64
    }

    /// The bytes of slots per entry now (at most 64 above 640 entries while the table
    /// grows; infinite when it is empty).
    pub fn slot_bytes_per_peer(&self) -> f64 {
        self.slot_bytes() as f64 / self.len as f64
    }

    /// The number of strangers (see the module comment).
    pub fn strangers(&self) -> usize {
        self.strangers
    }

    /// Bytes now charged to the global queue budget.
    pub fn queued_bytes(&self) -> usize {
        self.queues.charged()
    }

    /// The counters.
    pub fn stats(&self) -> PeerStats {
        let q = &self.queues.counts;
        PeerStats {
            queued: q.queued,
            queue_peer_full: q.peer_full,
            queue_budget_full: q.budget_full,
            queue_discarded: q.discarded,
            queue_released: q.released,
            queue_too_big: q.too_big,
            queue_evicted: q.evicted,
            ..self.stats
        }
    }

    #[inline]
    fn find(&self, key: &[u8; 16]) -> Option<usize> {
        let n = self.slots.len();
        let mut i = reduce(self.hasher.hash_octets(key), n);
        let mut p = 1u8;
        loop {
            let s = self.slots.get(i)?;
            if s.probe < p {
                return None;
            }
            if s.probe == p && s.address == *key {
                return Some(i);
            }
            if p == MAX_PROBE {
                return None;
            }
            p += 1;
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// The entry for `addr`.
    #[inline]
    pub fn get(&self, addr: &Ipv6Addr) -> Option<&Peer> {
        let i = self.find(&addr.octets())?;
        self.slots.get(i)
    }

    /// The entry for `addr`, to update.
    #[inline]
    pub fn get_mut(&mut self, addr: &Ipv6Addr) -> Option<&mut Peer> {
        let i = self.find(&addr.octets())?;
        self.slots.get_mut(i)
    }

    /// Whether there is an entry for `addr`.
    pub fn contains(&self, addr: &Ipv6Addr) -> bool {
        self.find(&addr.octets()).is_some()
    }

    /// The entry for `addr`, created (untrusted, see [`Peer`]) if there was none; the flag
    /// says whether it is new. This is for entries of the host's own (a packet from the
    /// TUN) and verified peers: in a full table a new one evicts a stranger or an entry
    /// that never answered (see the module comment), and is refused only when there is
    /// none.
    pub fn get_or_insert(&mut self, addr: &Ipv6Addr, now: Instant) -> Result<(&mut Peer, bool), TableFull> {
        let key = addr.octets();
        if let Some(i) = self.find(&key) {
            return self.slots.get_mut(i).map(|p| (p, false)).ok_or(TableFull);
        }
        if self.len >= self.limits.max_peers && !self.evict(now, true) {
            self.stats.refused_full += 1;
            return Err(TableFull);
        }
        let Some(i) = self.insert_entry(key, now) else {
            self.stats.refused_full += 1;
            return Err(TableFull);
        };
        self.slots.get_mut(i).map(|p| (p, true)).ok_or(TableFull)
    }

    /// The entry for `addr`, created as a stranger if there was none (see the module
    /// comment); the flag says whether it is new. An existing entry is returned as it is
    /// (an entry of the host's own stays one). A new stranger evicts the longest idle of
    /// the strangers sampled when their budget, or the table, is full, and is refused
    /// (and counted) when none is found; it never evicts anything else.
    pub fn insert_stranger(&mut self, addr: &Ipv6Addr, now: Instant) -> Result<(&mut Peer, bool), TableFull> {
        let key = addr.octets();
        if let Some(i) = self.find(&key) {
            return self.slots.get_mut(i).map(|p| (p, false)).ok_or(TableFull);
        }
        let budget = self.limits.stranger_budget();
        let full = |t: &Self| t.strangers >= budget || t.len >= t.limits.max_peers;
        if full(self) && (!self.evict(now, false) || full(self)) {
            self.stats.strangers_refused += 1;
            return Err(TableFull);
        }
        let Some(i) = self.insert_entry(key, now) else {
            self.stats.strangers_refused += 1;
            return Err(TableFull);
        };
        self.strangers += 1;
        self.stats.strangers_admitted += 1;
        let p = self.slots.get_mut(i).ok_or(TableFull)?;
        p.set_stranger(true);
        Ok((p, true))
    }

    /// Ends the stranger status of `addr`'s entry (it answered our bubble or echo test, or
    /// was otherwise verified): it leaves the budget of strangers and is evicted no more
    /// as one. Returns whether it was a stranger.
    pub fn promote(&mut self, addr: &Ipv6Addr) -> bool {
        let Some(p) = self.get_mut(addr) else { return false };
        if !p.is_stranger() {
            return false;
        }
        p.set_stranger(false);
        self.strangers -= 1;
        self.stats.strangers_promoted += 1;
        true
    }

    /// Inserts a new entry for `key` (absent) below `max_peers`, growing the table when
    /// needed; returns its slot, or `None` (nothing counted) when the table is full.
    fn insert_entry(&mut self, key: [u8; 16], now: Instant) -> Option<usize> {
        if self.len >= self.limits.max_peers || (self.len >= self.capacity() && !self.grow(now)) {
            return None;
        }
        let entry = Peer::new(key, now);
        let mut at = self.insert_new(entry);
        if at.is_none() && self.grow(now) {
            // A probe run too long (negligible under a keyed hash): a larger table has
            // shorter ones.
            at = self.insert_new(entry);
        }
        let i = at?;
        self.len += 1;
        self.stats.inserted += 1;
        Some(i)
    }

    /// Robin Hood insertion of an entry known to be absent; returns its slot, or `None`
    /// when some entry would end up more than `MAX_PROBE - 1` slots from its home (then
    /// nothing is changed).
    fn insert_new(&mut self, entry: Peer) -> Option<usize> {
        let home = reduce(self.hasher.hash_octets(&entry.address), self.slots.len());
        insert_at_home(&mut self.slots, home, entry)
    }

    /// Removes the entry for `addr` and drops its queued packets; returns whether there
    /// was one.
    pub fn remove(&mut self, addr: &Ipv6Addr) -> bool {
        match self.find(&addr.octets()) {
            Some(i) => {
                self.remove_at(i);
                self.stats.removed += 1;
                true
            }
            None => false,
        }
    }

    /// Backward-shift deletion of slot `i`.
    fn remove_at(&mut self, mut i: usize) {
        let n = self.slots.len();
        let Some(&victim) = self.slots.get(i) else { return };
        if victim.has_queue() {
            let (_, moved) = self.queues.discard(victim.queue_handle(), |_, _| {});
            self.moved(moved);
        }
        if victim.is_stranger() {
            self.strangers -= 1;
        }
        loop {
            let j = if i + 1 == n { 0 } else { i + 1 };
            let Some(&next) = self.slots.get(j) else { return };
            let Some(slot) = self.slots.get_mut(i) else { return };
            if next.probe <= 1 {
                *slot = Peer::EMPTY;
                break;
            }
            *slot = Peer { probe: next.probe - 1, ..next };
            i = j;
        }
        self.len -= 1;
    }

    /// Empties the table and every queue (a client's new address, RFC 4380 §5.2.5, as
    /// Miredo does). The table goes back to its initial size, allocated again zeroed when
    /// possible, so the pages of the old one are given back instead of written.
    pub fn reset(&mut self, now: Instant) {
        let initial = initial_slots(self.max_slots);
        if self.len != 0 || self.slots.len() != initial {
            match allocate(initial) {
                Ok(fresh) => self.slots = fresh,
                Err(_) => self.slots.fill(Peer::EMPTY),
            }
            self.sweep.interval = sweep_interval(self.limits.idle_timeout, self.slots.len());
        }
        self.len = 0;
        self.strangers = 0;
        self.queues.clear();
        self.stats.resets += 1;
        self.sweep.cursor = 0;
        self.sweep.next = now + self.sweep.interval;
        self.sweep.last_call = now;
    }

    /// Every entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.slots.iter().filter(|p| p.probe != 0)
    }
}
