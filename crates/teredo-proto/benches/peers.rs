//! Benchmarks of the peer table (RFC 4380 §5.2 "list of recent peers"): random lookups of
//! present and of absent addresses at 1,000 and at 1,048,576 peers, the insertion rate
//! into an empty table until it is full, and (printed before the runs) the bytes each peer
//! costs at full capacity.
//!
//! Run with `cargo bench -p teredo-proto --bench peers`.

use std::hint::black_box;
use std::net::Ipv6Addr;

use teredo_proto::peers::{DEFAULT_MAX_PEERS, Peer, PeerLimits, PeerTable};
use teredo_proto::time::Instant;

const SIZES: [usize; 2] = [1_000, DEFAULT_MAX_PEERS];
/// Lookups per timed iteration.
const BATCH: usize = 1024;

fn main() {
    let t = table(DEFAULT_MAX_PEERS);
    println!(
        "peer table at max_peers = {}: {} slots of {} bytes = {} bytes, {:.2} bytes per peer",
        DEFAULT_MAX_PEERS,
        t.slot_count(),
        size_of::<Peer>(),
        t.slot_bytes(),
        t.bytes_per_peer()
    );
    drop(t);
    divan::main();
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A random Teredo-like address under 2001:0:c000:201::/64.
    fn address(&mut self) -> Ipv6Addr {
        let low = self.next();
        Ipv6Addr::from((0x2001_0000_c000_0201u128 << 64) | u128::from(low))
    }
}

fn table(max_peers: usize) -> PeerTable {
    let limits = PeerLimits { max_peers, ..PeerLimits::default() };
    PeerTable::new(limits, [0x5a; 16], Instant::ZERO).unwrap()
}

/// A full table of `n` random peers and its keys in a random order.
fn filled(n: usize) -> (PeerTable, Vec<Ipv6Addr>) {
    let mut t = table(n);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        let a = rng.address();
        if let Ok((_, true)) = t.get_or_insert(&a, Instant::ZERO) {
            keys.push(a);
        }
    }
    // Fisher-Yates, so that lookups visit the table in random order.
    for i in (1..keys.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        keys.swap(i, j);
    }
    (t, keys)
}

/// Random lookups of present peers.
#[divan::bench(args = SIZES)]
fn lookup_hit(bencher: divan::Bencher<'_, '_>, n: usize) {
    let (t, keys) = filled(n);
    let mut at = 0usize;
    bencher.counter(divan::counter::ItemsCount::new(BATCH)).bench_local(|| {
        let mut found = 0usize;
        for _ in 0..BATCH {
            at = if at + 1 >= keys.len() { 0 } else { at + 1 };
            found += usize::from(t.get(black_box(&keys[at])).is_some());
        }
        assert_eq!(found, BATCH);
    });
}

/// Random lookups of absent addresses (an unknown source, a new destination).
#[divan::bench(args = SIZES)]
fn lookup_miss(bencher: divan::Bencher<'_, '_>, n: usize) {
    let (t, _) = filled(n);
    let mut rng = Rng(42);
    let misses: Vec<Ipv6Addr> = (0..65_536).map(|_| rng.address()).collect();
    let mut at = 0usize;
    bencher.counter(divan::counter::ItemsCount::new(BATCH)).bench_local(|| {
        let mut found = 0usize;
        for _ in 0..BATCH {
            at = (at + 1) & 65_535;
            found += usize::from(t.get(black_box(&misses[at])).is_some());
        }
        black_box(found);
    });
}

/// Inserting `n` random peers into an empty table of `n` places, until it is full.
#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn insert_until_full(bencher: divan::Bencher<'_, '_>, n: usize) {
    let mut rng = Rng(7);
    let keys: Vec<Ipv6Addr> = (0..n).map(|_| rng.address()).collect();
    bencher.counter(divan::counter::ItemsCount::new(n)).with_inputs(|| table(n)).bench_local_values(
        |mut t| {
            for k in &keys {
                let _ = black_box(t.get_or_insert(k, Instant::ZERO));
            }
            t
        },
    );
}
