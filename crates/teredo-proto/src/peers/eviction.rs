//! Eviction from a full table (see the module comment of [`super`], "Strangers and
//! eviction"): the longest idle of a few candidates met from a rotating cursor, strangers
//! before entries that never answered, never a trusted entry or one with a random port.

use super::{EVICT_SAMPLE, EVICT_SCAN, PeerTable};
use crate::time::Instant;

impl PeerTable {
    /// Evicts one entry to make room (see the module comment): the longest idle of the
    /// first [`EVICT_SAMPLE`] candidates within [`EVICT_SCAN`] slots from the cursor,
    /// strangers first; candidates are strangers, and with `unanswered` also the entries
    /// that are not trusted. Returns whether one went.
    pub(super) fn evict(&mut self, now: Instant, unanswered: bool) -> bool {
        let n = self.slots.len();
        let mut i = self.evict_cursor % n.max(1);
        let mut best: Option<(usize, (bool, u32))> = None;
        let mut found = 0;
        for _ in 0..EVICT_SCAN.min(n) {
            if let Some(s) = self.slots.get(i)
                && s.probe != 0
                && !s.has_random_port()
                && (s.is_stranger() || unanswered && !s.is_trusted())
            {
                let rank = (s.is_stranger(), s.idle_ms(now));
                if best.is_none_or(|(_, b)| rank > b) {
                    best = Some((i, rank));
                }
                found += 1;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
            if found == EVICT_SAMPLE {
                break;
            }
        }
        self.evict_cursor = i;
        let Some((at, (stranger, _))) = best else { return false };
        self.remove_at(at);
        if stranger {
            self.stats.strangers_evicted += 1;
        } else {
            self.stats.evicted_unanswered += 1;
        }
        true
    }
}
