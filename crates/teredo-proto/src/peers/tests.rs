//! Tests of the peer table: entries, limits, growth and shrinking, expiry with virtual
//! time, queues and their real memory, probing after deletions, and a model check against
//! `HashMap`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

pub(super) const KEY: [u8; 16] = [7; 16];

pub(super) fn addr(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0, 0xc000, 0x0201, 0, (i >> 16) as u16, i as u16, 1)
}

pub(super) fn map(i: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), i)
}

pub(super) fn table(max_peers: usize) -> PeerTable {
    let limits = PeerLimits { max_peers, ..PeerLimits::default() };
    PeerTable::new(limits, KEY, Instant::ZERO).unwrap()
}

pub(super) fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

impl PeerTable {
    /// Checks the Robin Hood invariants: every entry's probe byte is its displacement
    /// plus one, and an entry's predecessor is never more than one slot "poorer".
    pub(super) fn check_invariants(&self) {
        let n = self.slots.len();
        let mut count = 0;
        let mut strangers = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.probe == 0 {
                continue;
            }
            count += 1;
            let home = reduce(self.hasher.hash_octets(&s.address), n);
            let disp = (i + n - home) % n;
            assert_eq!(usize::from(s.probe), disp + 1, "slot {i}");
            let prev = &self.slots[(i + n - 1) % n];
            if s.probe > 1 {
                assert!(prev.probe + 1 >= s.probe, "slot {i} breaks the Robin Hood order");
            }
            assert_eq!(s.queue_handle(), self.queues.handle_of(&s.address), "slot {i}'s queue handle");
            strangers += usize::from(s.is_stranger());
        }
        assert_eq!(count, self.len);
        assert_eq!(strangers, self.strangers, "the count of strangers");
        assert!(self.strangers <= self.limits.stranger_budget(), "strangers over their budget");
        assert!(self.len <= self.capacity());
        assert!(self.slots.len() <= self.max_slots);
        assert!(self.queues.allocated() <= self.queues.charged(), "queues exceed their charge");
    }
}

#[test]
fn insert_lookup_remove() {
    let mut t = table(100);
    let now = secs(10);
    let (p, new) = t.get_or_insert(&addr(1), now).unwrap();
    assert!(new);
    assert!(!p.is_trusted());
    assert_eq!(p.mapping(), None);
    assert!(!p.is_valid(now), "a new entry's last reception is 30 s ago");
    assert_eq!(p.probes(), 0);
    p.trust(now, map(1));
    let (p, new) = t.get_or_insert(&addr(1), now).unwrap();
    assert!(!new);
    assert_eq!(p.trusted_mapping(now), Some(map(1)));
    assert!(p.is_trusted_from(map(1)));
    assert!(!p.is_trusted_from(map(2)));
    assert_eq!(t.len(), 1);
    assert!(t.contains(&addr(1)));
    assert!(!t.contains(&addr(2)));
    assert!(t.get(&addr(2)).is_none());
    assert_eq!(t.get(&addr(1)).unwrap().address(), addr(1));
    assert!(t.remove(&addr(1)));
    assert!(!t.remove(&addr(1)));
    assert!(t.is_empty());
    assert_eq!(t.stats().inserted, 1);
    assert_eq!(t.stats().removed, 1);
    t.check_invariants();
}

#[test]
fn validity_is_30_seconds() {
    let mut t = table(10);
    let (p, _) = t.get_or_insert(&addr(1), secs(100)).unwrap();
    p.trust(secs(100), map(1));
    let p = t.get(&addr(1)).unwrap();
    assert_eq!(p.trusted_mapping(Instant::from_millis(129_999)), Some(map(1)));
    assert_eq!(p.trusted_mapping(secs(130)), None);
    assert_eq!(p.mapping(), Some(map(1)), "still trusted, no longer valid");
    assert_eq!(p.since_reception(secs(130)), Duration::from_secs(30));
}

#[test]
fn full_table_refuses_and_counts() {
    let mut t = table(50);
    for i in 0..50 {
        t.get_or_insert(&addr(i), secs(1)).unwrap().0.trust(secs(1), map(i as u16));
    }
    assert_eq!(t.get_or_insert(&addr(1000), secs(1)).unwrap_err(), TableFull);
    assert_eq!(t.get_or_insert(&addr(1001), secs(1)).unwrap_err(), TableFull);
    assert_eq!(t.stats().refused_full, 2);
    // existing peers keep working
    for i in 0..50 {
        let (p, new) = t.get_or_insert(&addr(i), secs(2)).unwrap();
        assert!(!new);
        assert_eq!(p.trusted_mapping(secs(2)), Some(map(i as u16)));
    }
    // a freed place is usable again
    assert!(t.remove(&addr(3)));
    assert!(t.get_or_insert(&addr(1000), secs(2)).unwrap().1);
    t.check_invariants();
}

#[test]
fn memory_per_peer() {
    assert_eq!(size_of::<Peer>(), 40);
    let t = table(DEFAULT_MAX_PEERS);
    assert_eq!(t.slot_count(), INITIAL_SLOTS);
    assert_eq!(t.capacity(), INITIAL_SLOTS * 7 / 8);
    assert_eq!(t.max_slot_count(), slots_for(DEFAULT_MAX_PEERS));
    let b = t.bytes_per_peer();
    assert!(b < 46.0 && b > 45.0, "{b}");
    // A small table starts at its full size.
    let t = table(100);
    assert_eq!(t.slot_count(), slots_for(100));
    assert_eq!(t.capacity(), 100);
}

#[test]
fn grows_on_demand_within_64_bytes_per_peer() {
    let max = 200_000;
    let mut t = table(max);
    let mut slots = t.slot_count();
    let mut growths = 0;
    for i in 0..max as u32 {
        let (p, new) = t.get_or_insert(&addr(i), secs(1)).unwrap();
        assert!(new);
        p.trust(secs(1), map(i as u16));
        if t.slot_count() != slots {
            growths += 1;
            assert!(t.slot_count() > slots && t.slot_count() <= t.max_slot_count());
            slots = t.slot_count();
        }
        if t.len() >= 640 {
            assert!(
                t.slot_bytes_per_peer() <= 64.0,
                "{} bytes per peer at {}",
                t.slot_bytes_per_peer(),
                t.len()
            );
        }
    }
    assert_eq!(t.stats().grown, growths);
    assert!(growths >= 10, "{growths}");
    assert_eq!(t.slot_count(), t.max_slot_count());
    t.check_invariants();
    for i in 0..max as u32 {
        assert_eq!(t.get(&addr(i)).unwrap().mapping(), Some(map(i as u16)), "{i}");
    }
    // Full at max_peers: refused, and the table does not grow beyond it.
    assert_eq!(t.get_or_insert(&addr(max as u32), secs(1)).unwrap_err(), TableFull);
    assert_eq!(t.stats().refused_full, 1);
    assert_eq!(t.slot_count(), slots_for(max));
}

#[test]
fn full_at_max_peers_after_growth() {
    for max in [1, 7, 896, 897, 5000] {
        let mut t = table(max);
        for i in 0..max as u32 {
            let (p, new) = t.get_or_insert(&addr(i), secs(1)).unwrap();
            assert!(new, "{max}: {i}");
            // Trusted: a full table of them evicts none.
            p.trust(secs(1), map(1));
        }
        assert_eq!(t.get_or_insert(&addr(max as u32), secs(1)).unwrap_err(), TableFull, "{max}");
        let slots = t.slot_count();
        assert!(slots <= slots_for(max), "{max}");
        assert_eq!(t.len(), max);
        t.check_invariants();
        // A freed place is usable again, without growing.
        assert!(t.remove(&addr(0)));
        assert!(t.get_or_insert(&addr(max as u32), secs(1)).unwrap().1);
        assert_eq!(t.slot_count(), slots);
    }
}

#[test]
fn reset_goes_back_to_the_initial_size() {
    let mut t = table(100_000);
    for i in 0..10_000 {
        t.get_or_insert(&addr(i), secs(0)).unwrap();
    }
    assert!(t.slot_count() > INITIAL_SLOTS);
    t.reset(secs(1));
    assert_eq!((t.len(), t.slot_count()), (0, INITIAL_SLOTS));
    for i in 0..2000 {
        t.get_or_insert(&addr(i), secs(1)).unwrap();
    }
    t.check_invariants();
}

/// Runs every sweep step due by `until`, each at its own deadline, then calls
/// `handle_timeout(until)` as a late caller would.
fn run_until(t: &mut PeerTable, until: Instant) {
    while t.poll_timeout() <= until {
        let at = t.poll_timeout();
        t.handle_timeout(at);
    }
    t.handle_timeout(until);
}

#[test]
fn idle_entries_expire_between_30_and_60_seconds() {
    let mut t = table(100);
    t.get_or_insert(&addr(1), secs(0)).unwrap();
    t.get_or_insert(&addr(2), secs(0)).unwrap();
    // addr(2) is used every 10 s, addr(1) never
    for s in (10..=200).step_by(10) {
        run_until(&mut t, secs(s));
        if let Some(p) = t.get_mut(&addr(2)) {
            p.used(secs(s));
        }
        if s < 30 {
            assert!(t.contains(&addr(1)), "removed before 30 s");
        }
        if s >= 60 {
            assert!(!t.contains(&addr(1)), "kept beyond 60 s");
        }
        assert!(t.contains(&addr(2)), "a used entry expired at {s}");
    }
    assert_eq!(t.stats().expired, 1);
    t.check_invariants();
}

#[test]
fn sweep_is_incremental_on_a_large_table() {
    let mut t = table(100_000);
    for i in 0..50_000 {
        t.get_or_insert(&addr(i), secs(0)).unwrap();
    }
    // Several steps per idle timeout, each a bounded batch.
    let n = t.slot_count();
    let steps = n.div_ceil(SWEEP_BATCH);
    assert!(steps > 1);
    assert_eq!(t.sweep.interval, DEFAULT_IDLE_TIMEOUT / (steps as u32 + 1));
    // After one idle timeout, nothing is expired by a single step beyond its batch.
    t.handle_timeout(secs(31));
    assert!(t.stats().expired <= 2 * SWEEP_BATCH as u64);
    run_until(&mut t, secs(61));
    assert_eq!(t.len(), 0);
    assert_eq!(t.stats().expired, 50_000);
    // The empty table shrank back at the end of a round.
    run_until(&mut t, secs(100));
    assert_eq!(t.slot_count(), INITIAL_SLOTS);
}

/// Peers arrive during 40 s, so that the table grows many times while the sweep runs;
/// even-numbered ones are used every second, odd-numbered ones never again. Each unused
/// entry goes between 30 and 60 s after its creation, each used one stays.
#[test]
fn expiry_after_growth_within_30_to_60_seconds() {
    let mut t = table(200_000);
    let mut born = Vec::new();
    for ms in (0..=100_000u64).step_by(100) {
        let now = Instant::from_millis(ms);
        run_until(&mut t, now);
        if ms < 40_000 {
            for _ in 0..300 {
                let i = born.len() as u32;
                t.get_or_insert(&addr(i), now).unwrap();
                born.push(now);
            }
        }
        if ms % 1000 == 0 {
            for (i, _) in born.iter().enumerate().step_by(2) {
                t.get_mut(&addr(i as u32)).unwrap().used(now);
            }
            for (i, &b) in born.iter().enumerate().skip(1).step_by(2) {
                let age = now.saturating_since(b);
                let present = t.contains(&addr(i as u32));
                assert!(present || age >= DEFAULT_IDLE_TIMEOUT, "{i} removed at age {age:?}");
                assert!(!present || age < 2 * DEFAULT_IDLE_TIMEOUT, "{i} kept at age {age:?}");
            }
        }
    }
    assert_eq!(born.len(), 120_000);
    assert!(t.stats().grown >= 10, "{:?}", t.stats());
    assert_eq!(t.len(), 60_000);
    assert_eq!(t.stats().expired, 60_000);
    t.check_invariants();
}

/// After a flood of peers expires, the table shrinks back, and keeps the few peers that
/// stay in use.
#[test]
fn shrinks_after_a_flood() {
    let mut t = table(DEFAULT_MAX_PEERS);
    for i in 0..100_000 {
        t.get_or_insert(&addr(i), secs(0)).unwrap().0.trust(secs(0), map(i as u16));
    }
    let big = t.slot_count();
    assert!(big * size_of::<Peer>() <= 64 * 100_000);
    let mut s = 0;
    while s < 120 {
        s += 1;
        run_until(&mut t, secs(s));
        for i in 0..1000 {
            t.get_mut(&addr(i)).unwrap().used(secs(s));
        }
    }
    assert_eq!(t.len(), 1000);
    assert!(t.stats().shrunk >= 1);
    assert!(t.slot_count() <= 2 * INITIAL_SLOTS, "{}", t.slot_count());
    assert!(t.slot_bytes_per_peer() <= 64.0, "{}", t.slot_bytes_per_peer());
    for i in 0..1000 {
        assert_eq!(t.get(&addr(i)).unwrap().mapping(), Some(map(i as u16)));
    }
    t.check_invariants();
    // It grows again.
    for i in 1000..50_000 {
        t.get_or_insert(&addr(i), secs(s)).unwrap();
    }
    t.check_invariants();
}

#[test]
fn queues_follow_their_peers_through_growth_and_removals() {
    let mut t = table(20_000);
    // Queues for every third peer, created while the table grows.
    for i in 0..10_000u32 {
        t.get_or_insert(&addr(i), secs(0)).unwrap();
        if i % 3 == 0 {
            let n = (i % 4 + 1) as u8;
            for k in 0..n {
                t.enqueue(&addr(i), Queued::Outbound, &[k; 50]).unwrap();
            }
        }
    }
    t.check_invariants();
    // Removals, releases and discards move other queues in the index.
    for i in (0..10_000u32).step_by(9) {
        assert!(t.remove(&addr(i)));
    }
    for i in (3..10_000u32).step_by(18) {
        t.discard_queue(&addr(i), |_, _| {});
    }
    let mut released = vec![];
    for i in (6..10_000u32).step_by(12) {
        if t.contains(&addr(i)) && t.release_queue(&addr(i), map(i as u16)) > 0 {
            released.push(i);
        }
    }
    t.check_invariants();
    // Every remaining queue is still its peer's.
    for i in 0..10_000u32 {
        let Some(p) = t.get(&addr(i)) else { continue };
        let expect = i % 3 == 0 && i % 18 != 3 && !released.contains(&i);
        assert_eq!(p.has_queue(), expect, "{i}");
        if expect {
            assert_eq!(t.queue_len(&addr(i)), ((i % 4 + 1) as usize, 50 * (i % 4 + 1) as usize));
        }
    }
    // Released queues come out whole, in the order of release.
    let mut buf = [0u8; 100];
    let mut got = vec![];
    while let Some(r) = t.pop_released(&mut buf) {
        got.push((r.peer, buf[0]));
    }
    let want: Vec<_> =
        released.iter().flat_map(|&i| (0..(i % 4 + 1) as u8).map(move |k| (addr(i), k))).collect();
    assert_eq!(got, want);
    t.check_invariants();
}

#[test]
fn clock_jump_empties_the_table() {
    let mut t = table(10);
    t.get_or_insert(&addr(1), secs(0)).unwrap();
    t.handle_timeout(secs(5000));
    assert!(t.is_empty());
    assert_eq!(t.stats().resets, 1);
}

#[test]
fn old_dates_are_pulled_forward() {
    let mut t = table(10);
    let (p, _) = t.get_or_insert(&addr(1), secs(0)).unwrap();
    p.trust(secs(0), map(1));
    // Used every 10 s for 60 days but never heard from: the date of its last reception
    // must not wrap around into "valid" again.
    let mut s = 0;
    while s < 60 * 86_400 {
        s += 10;
        t.get_mut(&addr(1)).unwrap().used(secs(s));
        run_until(&mut t, secs(s));
        assert_eq!(t.get(&addr(1)).unwrap().is_valid(secs(s)), s < 30, "at {s}");
    }
}

#[test]
fn probe_rules() {
    let mut t = table(10);
    let (p, _) = t.get_or_insert(&addr(1), secs(10)).unwrap();
    assert_eq!(p.check_probe(secs(10)), ProbeCheck::Send);
    p.record_probe(secs(10));
    assert_eq!(p.check_probe(Instant::from_millis(11_000)), ProbeCheck::Wait(secs(12)));
    assert_eq!(p.check_probe(secs(12)), ProbeCheck::Send);
    p.record_probe(secs(12));
    p.record_probe(secs(14));
    p.record_probe(secs(16));
    assert_eq!(p.probes(), 4);
    assert_eq!(p.check_probe(Instant::from_millis(17_000)), ProbeCheck::Wait(secs(18)));
    assert_eq!(p.check_probe(secs(18)), ProbeCheck::Exhausted);
    assert_eq!(p.check_probe(secs(315)), ProbeCheck::Exhausted);
    assert_eq!(p.check_probe(secs(316)), ProbeCheck::Send);
    p.record_probe(secs(316));
    assert_eq!(p.probes(), 1);
    p.received(secs(317));
    assert_eq!(p.probes(), 0);
    assert_eq!(p.check_probe(secs(317)), ProbeCheck::Send);
}

#[test]
fn probing_stays_correct_after_many_deletions() {
    let mut t = table(2000);
    let mut live = std::collections::HashSet::new();
    let mut rng = 0x1234_5678_u64;
    for round in 0..50_000u32 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let k = (rng % 3000) as u32;
        if rng & (1 << 40) != 0 {
            if t.get_or_insert(&addr(k), secs(1)).is_ok() {
                live.insert(k);
            }
        } else {
            assert_eq!(t.remove(&addr(k)), live.remove(&k));
        }
        if round % 5000 == 0 {
            t.check_invariants();
        }
    }
    t.check_invariants();
    for k in 0..3000 {
        assert_eq!(t.contains(&addr(k)), live.contains(&k), "{k}");
    }
}

#[test]
fn queue_bounds_per_peer() {
    let mut t = table(10);
    t.get_or_insert(&addr(1), secs(0)).unwrap();
    assert_eq!(t.enqueue(&addr(2), Queued::Outbound, &[0; 100]), Err(QueueError::NoPeer));
    assert_eq!(t.enqueue(&addr(1), Queued::Outbound, &[0; 1281]), Err(QueueError::PeerFull));
    t.enqueue(&addr(1), Queued::Outbound, &[0; 1000]).unwrap();
    t.enqueue(&addr(1), Queued::Outbound, &[0; 280]).unwrap();
    assert_eq!(t.enqueue(&addr(1), Queued::Outbound, &[0; 40]), Err(QueueError::PeerFull));
    assert_eq!(t.queue_len(&addr(1)), (2, 1280));
    assert!(t.get(&addr(1)).unwrap().has_queue());
    let s = t.stats();
    assert_eq!((s.queued, s.queue_peer_full), (2, 2));
    assert_eq!(t.queued_bytes(), 1280 + 2 * PACKET_OVERHEAD);
}

#[test]
fn queue_global_budget() {
    let limits = PeerLimits {
        max_peers: 1000,
        queue_bytes_total: 10 * (100 + PACKET_OVERHEAD),
        ..PeerLimits::default()
    };
    let mut t = PeerTable::new(limits, KEY, Instant::ZERO).unwrap();
    for i in 0..10 {
        t.get_or_insert(&addr(i), secs(0)).unwrap();
        t.enqueue(&addr(i), Queued::Outbound, &[i as u8; 100]).unwrap();
    }
    assert_eq!(t.queued_bytes(), 10 * (100 + PACKET_OVERHEAD));
    // The budget is full: a queue as long as every other one takes no room from them.
    assert_eq!(t.enqueue(&addr(9), Queued::Outbound, &[0; 100]), Err(QueueError::BudgetFull));
    assert_eq!(t.stats().queue_budget_full, 1);
    // New destinations, with nothing queued, each take the room of another's packet.
    for i in 10..20 {
        t.get_or_insert(&addr(i), secs(0)).unwrap();
        t.enqueue(&addr(i), Queued::Outbound, &[i as u8; 100]).unwrap();
        assert!(t.queued_bytes() <= limits.queue_bytes_total);
        t.check_invariants();
    }
    let s = t.stats();
    assert_eq!((s.queue_evicted, s.queue_budget_full), (10, 1));
    let holders: Vec<u32> = (0..20).filter(|&i| t.get(&addr(i)).unwrap().has_queue()).collect();
    assert_eq!(holders.len(), 10);
    // Expiring peers gives the budget back.
    t.remove(&addr(holders[0]));
    assert_eq!(t.stats().queue_discarded, 1);
    t.enqueue(&addr(holders[1]), Queued::Outbound, &[0; 100]).unwrap();
    t.reset(secs(1));
    assert_eq!(t.queued_bytes(), 0);
    assert!(t.is_empty());
}

#[test]
fn released_in_arrival_order() {
    let mut t = table(10);
    let relay = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 3545);
    t.get_or_insert(&addr(1), secs(0)).unwrap();
    t.get_or_insert(&addr(2), secs(0)).unwrap();
    for n in 0..5u8 {
        t.enqueue(&addr(1), Queued::Outbound, &[n; 50]).unwrap();
    }
    t.enqueue(&addr(2), Queued::Inbound { from: relay }, &[9; 60]).unwrap();
    t.enqueue(&addr(2), Queued::Inbound { from: relay }, &[10; 60]).unwrap();
    assert_eq!(t.release_queue(&addr(2), relay), 2);
    assert_eq!(t.release_queue(&addr(1), map(1)), 5);
    assert_eq!(t.release_queue(&addr(1), map(1)), 0, "nothing left");
    assert!(!t.get(&addr(1)).unwrap().has_queue());
    let mut buf = [0u8; 100];
    let mut got = vec![];
    while let Some(r) = t.pop_released(&mut buf) {
        got.push((r.peer, r.mapping, r.queued, buf[0], r.len));
    }
    let inbound = Queued::Inbound { from: relay };
    assert_eq!(
        got,
        vec![
            (addr(2), relay, inbound, 9, 60),
            (addr(2), relay, inbound, 10, 60),
            (addr(1), map(1), Queued::Outbound, 0, 50),
            (addr(1), map(1), Queued::Outbound, 1, 50),
            (addr(1), map(1), Queued::Outbound, 2, 50),
            (addr(1), map(1), Queued::Outbound, 3, 50),
            (addr(1), map(1), Queued::Outbound, 4, 50),
        ]
    );
    assert_eq!(t.queued_bytes(), 0);
    assert!(!t.has_released());
    // A packet too long for the buffer is dropped and counted.
    t.enqueue(&addr(1), Queued::Outbound, &[1; 200]).unwrap();
    t.enqueue(&addr(1), Queued::Outbound, &[2; 20]).unwrap();
    t.release_queue(&addr(1), map(1));
    assert_eq!(t.pop_released(&mut buf).map(|r| r.len), Some(20));
    assert_eq!(t.stats().queue_too_big, 1);
}

#[test]
fn discard_gives_packets_oldest_first() {
    let mut t = table(10);
    t.get_or_insert(&addr(1), secs(0)).unwrap();
    for n in 0..3u8 {
        t.enqueue(&addr(1), Queued::Outbound, &[n; 40]).unwrap();
    }
    let mut seen = vec![];
    assert_eq!(t.discard_queue(&addr(1), |p, _| seen.push(p[0])), 3);
    assert_eq!(seen, [0, 1, 2]);
    assert_eq!(t.queued_bytes(), 0);
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16),
    Remove(u16),
    Trust(u16, u16),
    Lookup(u16),
    Enqueue(u16, u16),
    Release(u16),
    Advance(u16),
    /// Inserts `count` keys from `start` (in a space larger than the small keys', so that
    /// the table grows across several sizes).
    Fill(u16, u16),
}

fn op() -> impl Strategy<Value = Op> {
    // Keys from a small space so that operations collide often.
    let k = 0u16..300;
    prop_oneof![
        4 => k.clone().prop_map(Op::Insert),
        2 => k.clone().prop_map(Op::Remove),
        2 => (k.clone(), any::<u16>()).prop_map(|(a, b)| Op::Trust(a, b)),
        3 => k.clone().prop_map(Op::Lookup),
        1 => (k.clone(), 0u16..1500).prop_map(|(a, b)| Op::Enqueue(a, b)),
        1 => k.prop_map(Op::Release),
        1 => (0u16..20_000).prop_map(Op::Advance),
        1 => (0u16..4000, 0u16..1500).prop_map(|(a, b)| Op::Fill(a, b)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Model {
    mapping: Option<SocketAddrV4>,
    used: Instant,
}

/// After an insertion into a full table (`inserted` when it was not refused): exactly
/// one entry of the model went, one that was not trusted, or none when refused.
fn evicted_one(t: &PeerTable, m: &mut HashMap<u16, Model>, inserted: bool) -> Result<(), TestCaseError> {
    let gone: Vec<u16> = m.keys().copied().filter(|k| !t.contains(&addr((*k).into()))).collect();
    prop_assert_eq!(gone.len(), usize::from(inserted));
    for k in gone {
        prop_assert!(m.remove(&k).is_some_and(|e| e.mapping.is_none()), "trusted entry {} evicted", k);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The table behaves as a HashMap of entries, with expiry between the idle timeout
    /// and twice it, and the capacity limit, through growths (from 1024 slots to 3430 in
    /// four steps) and shrinks.
    #[test]
    fn matches_a_hashmap(ops in proptest::collection::vec(op(), 1..400)) {
        let max = 3000;
        let mut t = table(max);
        let mut m: HashMap<u16, Model> = HashMap::new();
        let mut now = Instant::ZERO;
        let idle = DEFAULT_IDLE_TIMEOUT;
        for op in ops {
            match op {
                Op::Fill(start, count) => {
                    for k in start..start.saturating_add(count).min(4000) {
                        let r = t.get_or_insert(&addr(k.into()), now);
                        let full = m.len() >= max;
                        match m.get_mut(&k) {
                            Some(e) => {
                                prop_assert!(matches!(r, Ok((_, false))));
                                r.unwrap().0.used(now);
                                e.used = now;
                            }
                            None if full => {
                            let ok = r.is_ok();
                            evicted_one(&t, &mut m, ok)?;
                            if ok {
                                m.insert(k, Model { mapping: None, used: now });
                            }
                        }
                            None => {
                                prop_assert!(matches!(r, Ok((_, true))));
                                m.insert(k, Model { mapping: None, used: now });
                            }
                        }
                    }
                    t.check_invariants();
                }
                Op::Insert(k) => {
                    let r = t.get_or_insert(&addr(k.into()), now);
                    let full = m.len() >= max;
                    match m.get_mut(&k) {
                        Some(e) => {
                            prop_assert!(matches!(r, Ok((_, false))));
                            let (p, _) = r.unwrap();
                            p.used(now);
                            e.used = now;
                        }
                        None if full => {
                            let ok = r.is_ok();
                            evicted_one(&t, &mut m, ok)?;
                            if ok {
                                m.insert(k, Model { mapping: None, used: now });
                            }
                        }
                        None => {
                            prop_assert!(matches!(r, Ok((_, true))));
                            m.insert(k, Model { mapping: None, used: now });
                        }
                    }
                }
                Op::Remove(k) => prop_assert_eq!(t.remove(&addr(k.into())), m.remove(&k).is_some()),
                Op::Trust(k, port) => {
                    if let Some(p) = t.get_mut(&addr(k.into())) {
                        p.trust(now, map(port));
                        let e = m.get_mut(&k).unwrap();
                        e.mapping = Some(map(port));
                        e.used = now;
                    } else {
                        prop_assert!(!m.contains_key(&k));
                    }
                }
                Op::Lookup(k) => {
                    let p = t.get(&addr(k.into()));
                    prop_assert_eq!(p.map(|p| p.mapping()), m.get(&k).map(|e| e.mapping));
                }
                Op::Enqueue(k, len) => {
                    let r = t.enqueue(&addr(k.into()), Queued::Outbound, &vec![0; len.into()]);
                    if !m.contains_key(&k) {
                        prop_assert_eq!(r, Err(QueueError::NoPeer));
                    }
                }
                Op::Release(k) => {
                    t.release_queue(&addr(k.into()), map(k));
                    let mut buf = [0u8; 1500];
                    while t.pop_released(&mut buf).is_some() {}
                }
                Op::Advance(ms) => {
                    // A late caller: handle_timeout(now) until nothing is due.
                    now = now + Duration::from_millis(ms.into());
                    while t.poll_timeout() <= now {
                        t.handle_timeout(now);
                    }
                    // Entries unused for twice the idle timeout are gone; entries used
                    // within the idle timeout are there.
                    m.retain(|k, e| {
                        let age = now.saturating_since(e.used);
                        let present = t.contains(&addr((*k).into()));
                        assert!(!present || age < 2 * idle + Duration::from_secs(20), "entry {k} of age {age:?} kept");
                        assert!(age >= idle || present, "entry {k} of age {age:?} expired");
                        present
                    });
                }
            }
            prop_assert_eq!(t.len(), m.len());
        }
        t.check_invariants();
        prop_assert!(t.queued_bytes() <= DEFAULT_QUEUE_BYTES_TOTAL);
        if t.len() >= 640 {
            prop_assert!(t.slot_bytes_per_peer() <= 64.0 || t.stats().expired > 0);
        }
        for (k, e) in &m {
            prop_assert_eq!(t.get(&addr((*k).into())).map(|p| p.mapping()), Some(e.mapping));
        }
    }
}

/// Counts, per thread, the bytes allocated in glibc's size classes (see
/// [`queue::malloc_chunk`]), to compare the queues' charge with what they really take.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

fn chunk(size: usize) -> isize {
    queue::malloc_chunk(size) as isize
}

// SAFETY: every call is forwarded to the system allocator with the same arguments.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(chunk(layout.size()));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(chunk(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        count(-chunk(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(chunk(new_size) - chunk(layout.size()));
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// The global budget bounds the queues' real memory: after every operation, the bytes
/// they hold from the allocator (counted by the global allocator, in glibc's size
/// classes) are at most the charge, and the charge exceeds them by at most 72 bytes per
/// packet in a flood of one packet per new peer, 144 per packet in longer queues (see
/// the queue module's comment).
#[test]
fn queue_charge_bounds_real_memory() {
    let limits = PeerLimits { max_peers: 20_000, queue_bytes_total: 64 << 20, ..PeerLimits::default() };
    let mut t = PeerTable::new(limits, KEY, Instant::ZERO).unwrap();
    for i in 0..10_000 {
        t.get_or_insert(&addr(i), secs(0)).unwrap();
    }
    let base = live();
    let real = |t: &PeerTable| {
        let r = (live() - base) as usize;
        assert_eq!(r, t.queues.allocated(), "the model of the queues' memory is exact");
        r
    };
    // A flood: one packet to each of many peers, of every length from 40 to 1279.
    let mut packets = 0;
    for i in 0..5000u32 {
        let len = 40 + (i as usize * 7) % 1240;
        t.enqueue(&addr(i), Queued::Outbound, &vec![1; len]).unwrap();
        packets += 1;
        let (r, c) = (real(&t), t.queued_bytes());
        assert!(r <= c, "{r} > {c} after {packets}");
        assert!(c - r <= 72 * packets, "{c} - {r} after {packets}");
    }
    // Longer queues of small packets, down to empty ones.
    for i in 5000..6000u32 {
        for k in 0..(i % 20) as usize {
            t.enqueue(&addr(i), Queued::Inbound { from: map(1) }, &vec![2; k * 3]).unwrap();
            packets += 1;
            let (r, c) = (real(&t), t.queued_bytes());
            assert!(r <= c, "{r} > {c} after {packets}");
            assert!(c - r <= 144 * packets);
        }
    }
    // Leaving in every way: released and drained, discarded, removed with the peer.
    let mut buf = [0u8; 1500];
    for i in (0..6000u32).step_by(3) {
        t.release_queue(&addr(i), map(1));
        if i % 2 == 0 {
            while t.pop_released(&mut buf).is_some() {}
        }
        assert!(real(&t) <= t.queued_bytes());
    }
    for i in (1..6000u32).step_by(3) {
        t.discard_queue(&addr(i), |_, _| {});
        assert!(real(&t) <= t.queued_bytes());
    }
    for i in (2..6000u32).step_by(3) {
        t.remove(&addr(i));
        assert!(real(&t) <= t.queued_bytes());
    }
    t.check_invariants();
    while t.pop_released(&mut buf).is_some() {
        assert!(real(&t) <= t.queued_bytes());
    }
    assert_eq!((real(&t), t.queued_bytes()), (0, 0), "everything is given back");
    // A lone packet.
    t.enqueue(&addr(9999), Queued::Outbound, &[0; 1280]).unwrap();
    let (r, c) = (real(&t), t.queued_bytes());
    assert!(r <= c && c - r <= 72, "{r} {c}");
    t.reset(secs(1));
    assert_eq!(t.queued_bytes(), 0);
}

#[test]
fn max_peers_changes_within_the_allocation() {
    let limits = PeerLimits { max_peers: 100, ..PeerLimits::default() };
    let mut t = PeerTable::new(limits, [5; 16], Instant::ZERO).unwrap();
    assert!(!t.set_max_peers(101), "above the allocation");
    assert!(!t.set_max_peers(0));
    assert!(t.set_max_peers(10));
    let addr = |i: u16| Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, i);
    for i in 0..10 {
        t.get_or_insert(&addr(i), Instant::ZERO).unwrap().0.trust(Instant::ZERO, map(1));
    }
    assert!(t.get_or_insert(&addr(10), Instant::ZERO).is_err(), "the lowered bound holds");
    assert!(t.set_max_peers(100));
    assert!(t.get_or_insert(&addr(10), Instant::ZERO).is_ok(), "and can be raised back");
}
