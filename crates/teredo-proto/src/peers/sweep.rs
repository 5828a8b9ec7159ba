//! The expiry of the list of peers (entries unused for the idle timeout go): a sweep that
//! visits a bounded batch of slots per step, paced so that the whole table is visited
//! once per idle timeout (O(1) per peer), and that pulls old 32-bit dates forward so that
//! they never wrap.

use std::time::Duration;

use super::entry::{ms, stamp};
use super::{CLOCK_JUMP, LONG_AGO_MS, PeerTable, SWEEP_BATCH};
use crate::time::Instant;

/// The expiry sweep's position and schedule.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sweep {
    pub(super) cursor: usize,
    pub(super) next: Instant,
    pub(super) interval: Duration,
    pub(super) last_call: Instant,
}

impl PeerTable {
    /// When [`PeerTable::handle_timeout`] has work: the next step of the sweep.
    pub fn poll_timeout(&self) -> Instant {
        self.sweep.next
    }

    /// Runs the sweep step due at `now`, if any: visits a bounded batch of slots, removes
    /// the entries unused for the idle timeout and pulls old dates forward.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now.saturating_since(self.sweep.last_call) > CLOCK_JUMP {
            self.reset(now);
            return;
        }
        self.sweep.last_call = now;
        if now < self.sweep.next {
            return;
        }
        self.sweep_step(now);
        // One step per call: a late caller is called back at once and catches up in
        // bounded steps.
        self.sweep.next = self.sweep.next + self.sweep.interval;
    }

    /// Visits the next [`SWEEP_BATCH`] slots (and removes at most twice as many expired
    /// entries, which a removal can shift into a visited slot).
    fn sweep_step(&mut self, now: Instant) {
        let t = stamp(now);
        let idle = ms(self.limits.idle_timeout);
        let n = self.slots.len();
        let mut visits = 0;
        let mut removals = 0;
        let mut round_end = false;
        while visits < SWEEP_BATCH.min(n) && removals < 2 * SWEEP_BATCH {
            let i = self.sweep.cursor.min(n - 1);
            let Some(s) = self.slots.get_mut(i) else { break };
            if s.probe != 0 {
                // A use dated after `now` (a caller passing instants out of order) is
                // recent, not 49 days old.
                let age = t.wrapping_sub(s.last_used);
                if age >= idle && age < 1 << 31 {
                    self.remove_at(i);
                    self.stats.expired += 1;
                    removals += 1;
                    continue; // an entry may have moved into slot i
                }
                if t.wrapping_sub(s.last_rx) > LONG_AGO_MS {
                    s.last_rx = t.wrapping_sub(LONG_AGO_MS);
                }
                if t.wrapping_sub(s.last_probe) > LONG_AGO_MS {
                    s.last_probe = t.wrapping_sub(LONG_AGO_MS);
                }
            }
            visits += 1;
            round_end |= i + 1 == n;
            self.sweep.cursor = if i + 1 == n { 0 } else { i + 1 };
        }
        if round_end {
            self.shrink_if_sparse(now);
        }
    }
}
