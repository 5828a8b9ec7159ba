//! The table's storage: one array of [`Peer`] slots with open addressing and Robin Hood
//! displacement (each entry's `probe` is its distance from its home slot plus one), and
//! its sizes as it grows and, after expiry, shrinks.

use std::time::Duration;

use zerocopy::FromZeros;

use super::hash::reduce;
use super::{AllocationFailed, INITIAL_SLOTS, MAX_PROBE, Peer, PeerTable, SWEEP_BATCH};
use crate::time::Instant;

/// The number of slots for `max_peers` entries: a load of at most 7/8.
pub fn slots_for(max_peers: usize) -> usize {
    max_peers + max_peers.div_ceil(7) + 1
}

pub(super) fn allocate(slots: usize) -> Result<Box<[Peer]>, AllocationFailed> {
    <[Peer]>::new_box_zeroed_with_elems(slots).map_err(|_| AllocationFailed { slots })
}

/// The size of a new table growing to `max` slots: [`INITIAL_SLOTS`], or `max` when
/// that is at most one growth more.
pub(super) fn initial_slots(max: usize) -> usize {
    if max <= INITIAL_SLOTS + INITIAL_SLOTS * 3 / 8 { max } else { INITIAL_SLOTS }
}

/// The size after a growth from `n` slots (less than `max`): the smallest of `max`,
/// `max × 8/11`, `max × (8/11)²`... above `n`, so that the last growth (the longest) is a
/// whole step of 11/8 rather than a sliver.
pub(super) fn grown_size(n: usize, max: usize) -> usize {
    let mut size = max;
    loop {
        let smaller = (size * 8).div_ceil(11);
        if smaller <= n || smaller >= size {
            return size;
        }
        size = smaller;
    }
}

/// The time between two sweep steps for a table of `n` slots, so that the sweep visits
/// every slot at least once per `idle`: one step more than the batches of the table, a
/// margin for the slots a resize makes the sweep visit again (see the module comment).
pub(super) fn sweep_interval(idle: Duration, n: usize) -> Duration {
    let steps = u32::try_from(n.div_ceil(SWEEP_BATCH) + 1).unwrap_or(u32::MAX);
    idle / steps
}

/// Robin Hood insertion into `slots` of an entry known to be absent, whose home slot is
/// `home`; returns its slot, or `None` when some entry would end up more than
/// `MAX_PROBE - 1` slots from its home (then nothing is changed). `slots` must have an
/// empty slot.
pub(super) fn insert_at_home(slots: &mut [Peer], home: usize, mut entry: Peer) -> Option<usize> {
    let n = slots.len();
    // Dry run: check every displaced entry fits before moving any. There is always an
    // empty slot, so both loops end within n steps.
    let mut i = home;
    let mut p = 1u8;
    loop {
        let s = slots.get(i)?.probe;
        if s == 0 {
            break;
        }
        let carried = p.min(s);
        if carried >= MAX_PROBE {
            return None;
        }
        p = carried + 1;
        i = if i + 1 == n { 0 } else { i + 1 };
    }
    entry.probe = 1;
    let mut i = home;
    let mut at = None;
    loop {
        let s = slots.get_mut(i)?;
        if s.probe == 0 {
            *s = entry;
            return Some(at.unwrap_or(i));
        }
        if s.probe < entry.probe {
            core::mem::swap(s, &mut entry);
            at.get_or_insert(i);
        }
        entry.probe += 1;
        i = if i + 1 == n { 0 } else { i + 1 };
    }
}

/// Robin Hood insertion into a table being filled by a resize, in one pass: returns false
/// when an entry would end up more than `MAX_PROBE - 1` slots from its home, leaving
/// `slots` inconsistent (the resize then drops it). `slots` must have an empty slot.
pub(super) fn rehash_at_home(slots: &mut [Peer], home: usize, mut entry: Peer) -> bool {
    let n = slots.len();
    entry.probe = 1;
    let mut i = home;
    loop {
        let Some(s) = slots.get_mut(i) else { return false };
        if s.probe == 0 {
            *s = entry;
            return true;
        }
        if s.probe < entry.probe {
            core::mem::swap(s, &mut entry);
        }
        if entry.probe >= MAX_PROBE {
            return false;
        }
        entry.probe += 1;
        i = if i + 1 == n { 0 } else { i + 1 };
    }
}

impl PeerTable {
    /// Grows the table by 11/8, up to [`PeerTable::max_slot_count`] slots; returns whether
    /// it grew.
    pub(super) fn grow(&mut self, now: Instant) -> bool {
        let n = self.slots.len();
        if n >= self.max_slots {
            return false;
        }
        let grew = self.resize(grown_size(n, self.max_slots), now);
        self.stats.grown += u64::from(grew);
        grew
    }

    /// Moves every entry into a new table of `size` slots (more than the entries); returns
    /// false, changing nothing, when it cannot be allocated or (with a negligible
    /// probability) an entry does not fit. The sweep's position is mapped onto the new
    /// table (see the module comment).
    pub(super) fn resize(&mut self, size: usize, now: Instant) -> bool {
        let Ok(mut fresh) = allocate(size) else { return false };
        // Entries in slot order: their homes in the new table come nearly in order too, so
        // it is written nearly sequentially.
        for &entry in self.slots.iter().filter(|p| p.probe != 0) {
            let home = reduce(self.hasher.hash_octets(&entry.address), size);
            if !rehash_at_home(&mut fresh, home, entry) {
                return false;
            }
        }
        let old = self.slots.len();
        self.slots = fresh;
        // An entry at slot i of the old table has its home within MAX_PROBE slots before
        // i, and lands in the new table at or after that home's image: start the rest of
        // this round from the image of (cursor - MAX_PROBE).
        let back = self.sweep.cursor.saturating_sub(usize::from(MAX_PROBE));
        let mapped = (back as u128 * size as u128 / old.max(1) as u128) as usize;
        self.sweep.cursor = mapped.min(size - 1);
        self.sweep.interval = sweep_interval(self.limits.idle_timeout, size);
        self.sweep.next = self.sweep.next.min(now + self.sweep.interval);
        true
    }

    /// At the end of a round of the sweep: when the table is less than 1/8 full, moves the
    /// entries into one sized as after a growth (a load of 7/11), at least the initial
    /// size.
    pub(super) fn shrink_if_sparse(&mut self, now: Instant) {
        let n = self.slots.len();
        let initial = initial_slots(self.max_slots);
        if n <= initial || self.len >= n / 8 {
            return;
        }
        let size = (self.len * 11).div_ceil(7).max(self.len + 1).max(initial);
        if size < n && self.resize(size, now) {
            self.sweep.cursor = 0;
            self.stats.shrunk += 1;
        }
    }
}
