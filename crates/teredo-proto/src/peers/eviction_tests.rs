//! Tests of the table's defences against floods (see the module comment of
//! [`super`]): the budget of strangers, the eviction of entries that never answered in a
//! full table, and the fair share of the global queue budget.

use super::tests::{KEY, addr, map, secs, table};
use super::*;

#[test]
fn one_long_queue_gives_way_to_short_ones() {
    // One peer holds the whole budget (40-byte packets); others still get theirs.
    let limits = PeerLimits {
        max_peers: 100,
        queue_bytes_total: 30 * (40 + PACKET_OVERHEAD),
        ..PeerLimits::default()
    };
    let mut t = PeerTable::new(limits, KEY, Instant::ZERO).unwrap();
    t.get_or_insert(&addr(0), secs(0)).unwrap();
    for k in 0..30u8 {
        t.enqueue(&addr(0), Queued::Outbound, &[k; 40]).unwrap();
    }
    for i in 1..20 {
        t.get_or_insert(&addr(i), secs(0)).unwrap();
        t.enqueue(&addr(i), Queued::Outbound, &[0xee; 40]).unwrap();
        t.check_invariants();
    }
    // The victims are sampled: mostly the long queue, sometimes a short one.
    assert_eq!(t.stats().queue_evicted, 19);
    let (left, _) = t.queue_len(&addr(0));
    assert!(left <= 20, "the long queue kept {left} packets");
    assert!((1..20).filter(|&i| t.get(&addr(i)).unwrap().has_queue()).count() >= 14);
    // The long queue lost its oldest packets: what is left goes in order.
    t.release_queue(&addr(0), map(1));
    let mut buf = [0u8; 64];
    for k in 30 - left..30 {
        let p = t.pop_released(&mut buf).unwrap();
        assert_eq!((p.len, buf[0]), (40, k as u8));
    }
}

#[test]
fn strangers_have_their_own_budget() {
    let limits = PeerLimits { max_peers: 800, ..PeerLimits::default() };
    let mut t = PeerTable::new(limits, KEY, Instant::ZERO).unwrap();
    let budget = t.limits().stranger_budget();
    assert_eq!(budget, 100);
    // The host's own entries, half of them trusted.
    for i in 0..300 {
        let (p, _) = t.get_or_insert(&addr(i), secs(1)).unwrap();
        if i % 2 == 0 {
            p.trust(secs(1), map(1));
        }
    }
    // 50,000 strangers, one per millisecond: never more than the budget, and none of the
    // host's entries goes.
    for i in 0..50_000u32 {
        let now = Instant::from_millis(2000 + u64::from(i));
        let (p, new) = t.insert_stranger(&addr(100_000 + i), now).unwrap();
        assert!(new && p.is_stranger());
        assert!(t.strangers() <= budget);
    }
    t.check_invariants();
    assert_eq!(t.strangers(), budget);
    assert_eq!(t.len(), 300 + budget);
    assert!((0..300).all(|i| t.get(&addr(i)).is_some_and(|p| !p.is_stranger())));
    let s = t.stats();
    assert_eq!((s.strangers_admitted, s.strangers_evicted, s.strangers_refused), (50_000, 49_900, 0));
    // The evicted strangers were mostly the old ones (sampled LRU): most recent ones stay.
    let recent = (49_900..50_000).filter(|&i| t.contains(&addr(100_000 + i))).count();
    assert!(recent >= 50, "{recent} of the last 100 strangers kept");
    // An existing entry stays what it is; a verified stranger leaves the budget.
    assert!(!t.insert_stranger(&addr(1), secs(60)).unwrap().1);
    assert!(!t.get(&addr(1)).unwrap().is_stranger());
    let kept = (49_900..50_000).find(|&i| t.contains(&addr(100_000 + i))).unwrap();
    assert!(t.promote(&addr(100_000 + kept)));
    assert!(!t.promote(&addr(100_000 + kept)));
    assert_eq!(t.strangers(), budget - 1);
    assert_eq!(t.stats().strangers_promoted, 1);
    t.check_invariants();
}

#[test]
fn a_full_table_makes_room_for_the_hosts_own_entries() {
    let mut t = table(100);
    let budget = t.limits().stranger_budget() as u32;
    for i in 0..100 - budget {
        t.get_or_insert(&addr(i), secs(1)).unwrap().0.trust(secs(1), map(1));
    }
    for i in 0..budget {
        t.insert_stranger(&addr(1000 + i), secs(2)).unwrap();
    }
    assert_eq!(t.len(), 100);
    // A new stranger evicts a stranger; a new entry of the host's own too.
    t.insert_stranger(&addr(2000), secs(3)).unwrap();
    assert!(t.get_or_insert(&addr(3000), secs(3)).unwrap().1);
    assert_eq!((t.len(), t.strangers()), (100, budget as usize - 1));
    assert_eq!(t.stats().strangers_evicted, 2);
    // With no stranger left, new strangers are refused: trusted entries and the host's own
    // are never evicted for them.
    for i in 0..budget - 1 {
        t.get_or_insert(&addr(4000 + i), secs(4)).unwrap().0.trust(secs(4), map(2));
    }
    assert_eq!(t.strangers(), 0);
    assert_eq!(t.insert_stranger(&addr(5000), secs(5)).unwrap_err(), TableFull);
    assert_eq!(t.stats().strangers_refused, 1);
    assert!((0..100 - budget).all(|i| t.get(&addr(i)).unwrap().is_trusted()));
    // A new entry of the host's own evicts the one that never answered (3000)...
    assert!(t.get_or_insert(&addr(6000), secs(6)).unwrap().1);
    assert!(!t.contains(&addr(3000)));
    assert_eq!(t.stats().evicted_unanswered, 1);
    // ... and is refused when every entry is trusted.
    t.get_mut(&addr(6000)).unwrap().trust(secs(6), map(2));
    assert_eq!(t.get_or_insert(&addr(7000), secs(7)).unwrap_err(), TableFull);
    assert_eq!(t.stats().refused_full, 1);
    t.check_invariants();
}

#[test]
fn eviction_drops_and_counts_the_queue() {
    let mut t = table(10);
    for i in 0..10 {
        t.get_or_insert(&addr(i), secs(i.into())).unwrap();
        t.enqueue(&addr(i), Queued::Outbound, &[0; 100]).unwrap();
    }
    // The longest idle goes first (all ten are sampled in a small table).
    assert!(t.get_or_insert(&addr(10), secs(20)).unwrap().1);
    assert!(!t.contains(&addr(0)));
    let s = t.stats();
    assert_eq!((s.evicted_unanswered, s.queue_discarded), (1, 1));
    assert_eq!(t.queued_bytes(), 9 * (100 + PACKET_OVERHEAD));
    t.check_invariants();
}
