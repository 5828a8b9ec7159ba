//! Benchmarks of the peer table (RFC 4380 §5.2 "list of recent peers"): random lookups of
//! present and of absent addresses at 1,000 and at 1,048,576 peers, and the insertion rate
//! into an empty table (growing as it goes) until it is full.
//!
//! Printed before the runs:
//! - the memory of a table of the default `max_peers` (2^20) holding 1,000, 10,000,
//!   100,000 and 1,048,576 peers: the slots' bytes per peer, and the resident memory the
//!   process gained (each size measured in a fresh child process, so that no freed memory
//!   of another size is counted) with its peak during the growths;
//! - every growth of a table filled up to 2^20 peers, with its pause (the insertion that
//!   moves every entry into the larger table), and the longest.
//!
//! Run with `cargo bench -p teredo-proto --bench peers`.

use std::hint::black_box;
use std::net::Ipv6Addr;
use std::process::Command;
use std::time::{Duration, Instant as Clock};

use teredo_proto::peers::{DEFAULT_MAX_PEERS, PACKET_OVERHEAD, Peer, PeerLimits, PeerTable};
use teredo_proto::time::Instant;

const SIZES: [usize; 2] = [1_000, DEFAULT_MAX_PEERS];
/// Peer counts whose memory is printed.
const MEMORY_SIZES: [usize; 4] = [1_000, 10_000, 100_000, DEFAULT_MAX_PEERS];
/// Lookups per timed iteration.
const BATCH: usize = 1024;
/// Set in the child process that measures the memory of this many peers.
const CHILD: &str = "PEERS_BENCH_MEMORY_OF";

fn main() {
    if let Ok(n) = std::env::var(CHILD) {
        memory_child(n.parse().unwrap_or(0));
        return;
    }
    let t = table(DEFAULT_MAX_PEERS);
    println!(
        "peer table at max_peers = {}: starts with {} slots ({} bytes), grows by 11/8 up to {} slots of {} bytes = {} bytes, {:.2} bytes per peer when full",
        DEFAULT_MAX_PEERS,
        t.slot_count(),
        t.slot_bytes(),
        t.max_slot_count(),
        size_of::<Peer>(),
        t.max_slot_count() * size_of::<Peer>(),
        t.bytes_per_peer()
    );
    drop(t);
    memory();
    growth_pauses();
    println!("queue charge per packet: its length + {PACKET_OVERHEAD} bytes (a bound on its real memory)");
    divan::main();
}

/// Prints the memory of the default table at each of [`MEMORY_SIZES`], each measured in a
/// child process.
fn memory() {
    println!(
        "memory at max_peers = {DEFAULT_MAX_PEERS} (resident: measured in a fresh process, /proc/self/status):"
    );
    println!(
        "{:>9} {:>9} {:>12} {:>10} {:>14} {:>10} {:>14}",
        "peers", "slots", "slot bytes", "per peer", "resident gain", "per peer", "peak gain"
    );
    let Ok(exe) = std::env::current_exe() else { return };
    for n in MEMORY_SIZES {
        match Command::new(&exe).env(CHILD, n.to_string()).output() {
            Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
            Ok(out) => println!("{n:>9} child failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => println!("{n:>9} cannot run the child: {e}"),
        }
    }
}

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`), 0 where there is none.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn memory_child(n: usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let rss0 = status_bytes("VmRSS");
    let hwm0 = status_bytes("VmHWM");
    let mut t = table(DEFAULT_MAX_PEERS);
    while t.len() < n {
        let _ = t.get_or_insert(&rng.address(), Instant::ZERO);
    }
    let rss = status_bytes("VmRSS").saturating_sub(rss0);
    let hwm = status_bytes("VmHWM").saturating_sub(hwm0);
    println!(
        "{:>9} {:>9} {:>12} {:>10.2} {:>14} {:>10.2} {:>14}",
        n,
        t.slot_count(),
        t.slot_bytes(),
        t.slot_bytes_per_peer(),
        rss,
        rss as f64 / n as f64,
        hwm
    );
    black_box(&t);
}

/// Fills a default table to 2^20 peers and prints every growth with its pause.
fn growth_pauses() {
    let mut t = table(DEFAULT_MAX_PEERS);
    let mut rng = Rng(11);
    let mut longest = (Duration::ZERO, 0);
    let mut growths = vec![];
    let start = Clock::now();
    while t.len() < DEFAULT_MAX_PEERS {
        let a = rng.address();
        let before = t.slot_count();
        let entries = t.len();
        let at = Clock::now();
        let _ = black_box(t.get_or_insert(&a, Instant::ZERO));
        if t.slot_count() != before {
            let pause = at.elapsed();
            growths.push(format!("{before}->{} ({entries} moved): {pause:.2?}", t.slot_count()));
            longest = longest.max((pause, entries));
        }
    }
    let total = start.elapsed();
    println!("growths while filling to {} peers ({} in {total:.2?}):", t.len(), growths.len());
    for g in growths.iter().rev().take(6) {
        println!("  {g}");
    }
    println!(
        "longest growth pause: {:.2?} for {} entries ({:.1} ns per entry)",
        longest.0,
        longest.1,
        longest.0.as_nanos() as f64 / longest.1.max(1) as f64
    );
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

/// Inserting `n` random peers into an empty table of `n` places (which grows from its
/// initial size), until it is full.
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
