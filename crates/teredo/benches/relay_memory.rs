//! Memory benchmark of the Teredo relay: resident memory per destination, Miredo 1.2.6
//! against `teredo run`, on the same lab path, in the same run; and the forwarding rate of
//! an established flow with a million other peers in the table against none.
//!
//! The path is `relay_throughput`'s (teredo-lab: v6 host — router — relay — router —
//! port-restricted NAT — client). For each relay (with the client of the same
//! implementation):
//!
//! 1. start, qualify, check pings; measure the established flow host → client through the
//!    relay (iperf3 UDP 1200-byte payloads, datagrams delivered per second, and TCP);
//! 2. a generator on the v6 host sends one UDP datagram to each of N distinct Teredo
//!    destinations (first 100,000, then 900,000 more: 1,000,000 in all), paced at
//!    `TEREDO_BENCH_RATE` per second. Each makes a peer entry in the relay, a queued
//!    packet and an indirect bubble towards its embedded server. The destinations are
//!    `2001:0:c000:2c8:<flags>:<port>:<address>`: server 192.0.2.200 and mappings in
//!    203.0.113.128/25, documentation addresses that no namespace has and the router has
//!    no route to, so the bubbles die at the router (which has no default route: nothing
//!    leaves the lab);
//! 3. after each step, the growth of the relay processes' VmRSS divided by the number of
//!    datagrams the kernel handed to the relay's TUN (its `tx_packets`; datagrams the
//!    kernel dropped because the relay read too slowly make no entry and are not counted);
//! 4. the established flow again, with the million peers present (within their 30 s idle
//!    timeout). Each UDP figure is the median of three runs.
//!
//! For teredo it also prints the bound of its data structures at the default limits and
//! whether the growth stayed within it: the table (`MaxPeers` × 8/7 slots × 40 bytes), the
//! 4 MiB queue budget, the list of pending retries (65,536 × 24 bytes) and the pending
//! outputs (4,096, each at most an ICMPv6 error's 1,232-byte copy plus 64 bytes).
//!
//! Run (as root; needs Miredo, iperf3, ping):
//!
//! ```text
//! cargo bench -p teredo --bench relay_memory
//! ```
//!
//! Environment: `TEREDO_BENCH_RATE` (destinations per second, default 100000),
//! `TEREDO_BENCH_ONLY` (`miredo` or `teredo`), `TEREDO_BENCH_TEREDO` (another binary),
//! `TEREDO_BENCH_SHARE_CPU` (keep the ordinary priority).

#[path = "relay/common.rs"]
#[allow(dead_code)]
mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{Figure, Impl, Path6, Test, check_interrupted, iperf3, iperf3_server, pids_named, rss_kib};
use teredo_lab::miredo::IFACE;
use teredo_lab::{Lab, Node};
use teredo_proto::address::{Flags, TEREDO_PREFIX, TeredoAddress};
use teredo_proto::peers::DEFAULT_MAX_PEERS;

/// The destinations' embedded server: routed nowhere in the lab.
const SINK_SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
/// Seconds of each forwarding measurement.
const FLOW_SECS: f64 = 3.0;
/// UDP runs per flow measurement, of which the median is kept: a single UDP flood on this
/// kind of shared 2-core machine varies by a third from one run to the next. (Three runs
/// and the TCP one take about 14 s, well within the 30 s the million peers stay.)
const UDP_RUNS: usize = 3;

struct Outcome {
    label: &'static str,
    rss_start: u64,
    steps: Vec<(u64, u64, u64)>, // (destinations so far, delivered to the TUN so far, RSS KiB)
    flow_none: (Figure, Figure),
    flow_million: (Figure, Figure),
    summary: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay_memory: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    common::check_requirements("relay_memory")?;
    let rate = std::env::var("TEREDO_BENCH_RATE")
        .ok()
        .map(|v| v.parse::<u64>().map_err(|e| format!("TEREDO_BENCH_RATE={v:?}: {e}")))
        .transpose()?
        .unwrap_or(100_000)
        .clamp(1000, 10_000_000);
    let teredo =
        std::env::var("TEREDO_BENCH_TEREDO").unwrap_or_else(|_| env!("CARGO_BIN_EXE_teredo").to_owned());
    let only = std::env::var("TEREDO_BENCH_ONLY").unwrap_or_default();
    common::catch_signals();
    teredo_lab::bench::raise_priority("relay_memory");
    let mut lab = Lab::new("bench-relay-memory").map_err(|e| e.to_string())?;
    let path = Path6::build(&mut lab, &teredo)?;
    println!("relay_memory: destinations at {rate}/s; flow measurements {FLOW_SECS} s each");
    let mut outcomes = Vec::new();
    for (label, which) in [("miredo", Impl::Miredo), ("teredo", Impl::Teredo)] {
        if !only.is_empty() && !only.split(',').any(|w| w.trim() == label) {
            continue;
        }
        outcomes.push(phase(&path, label, which, &teredo, rate)?);
    }
    print_table(&outcomes);
    Ok(())
}

fn phase(path: &Path6, label: &'static str, which: Impl, teredo: &str, rate: u64) -> Result<Outcome, String> {
    check_interrupted()?;
    let (mut relay_d, client_d, addr) = path.start(which, teredo)?;
    let pids = pids_named(&path.relay, label);
    let srv = iperf3_server(&path.host)?;
    let host = path.host.ipv6.to_string();
    let flow = || -> Result<(Figure, Figure), String> {
        let mut udp = (0..UDP_RUNS)
            .map(|_| iperf3(&path.client, &host, Test::Udp(1200), true, FLOW_SECS))
            .collect::<Result<Vec<_>, _>>()?;
        udp.sort_by(|a, b| a.pps.total_cmp(&b.pps));
        let runs: Vec<String> = udp.iter().map(|f| format!("{:.0}", f.pps)).collect();
        println!("{label}: UDP runs (pkt/s, the median is kept): {}", runs.join(", "));
        let tcp = iperf3(&path.client, &host, Test::Tcp, true, FLOW_SECS)?;
        Ok((udp[UDP_RUNS / 2], tcp))
    };
    let flow_none = flow()?;
    println!(
        "{label}: client {addr}; flow host->client with no other peer: {:.0} pkt/s (UDP 1200), {:.0} Mbit/s (TCP)",
        flow_none.0.pps,
        flow_none.1.bps / 1e6
    );
    std::thread::sleep(Duration::from_millis(500));
    let rss_start = rss_kib(&pids);
    let tx0 = tun_tx_packets(&path.relay)?;
    let mut steps = Vec::new();
    let mut sent = 0u64;
    for total in [100_000u64, 1_000_000] {
        check_interrupted()?;
        let t = Instant::now();
        generate(&path.host, sent, total, rate)?;
        sent = total;
        std::thread::sleep(Duration::from_secs(2));
        let delivered = tun_tx_packets(&path.relay)?.saturating_sub(tx0);
        let rss = rss_kib(&pids);
        println!(
            "{label}: {sent} destinations sent (in {:.1} s), {delivered} handed to the relay's TUN, RSS {} KiB (+{} KiB, {:.1} bytes per destination)",
            t.elapsed().as_secs_f64(),
            rss,
            rss.saturating_sub(rss_start),
            rss.saturating_sub(rss_start) as f64 * 1024.0 / delivered.max(1) as f64
        );
        steps.push((sent, delivered, rss));
    }
    let flow_million = flow()?;
    println!(
        "{label}: flow host->client with 1M other peers: {:.0} pkt/s (UDP 1200), {:.0} Mbit/s (TCP)",
        flow_million.0.pps,
        flow_million.1.bps / 1e6
    );
    drop(srv);
    drop(client_d);
    relay_d.stop().map_err(|e| e.to_string())?;
    let summary = relay_d.log().lines().rfind(|l| l.contains(" delivered, ")).unwrap_or("").trim().to_owned();
    Ok(Outcome { label, rss_start, steps, flow_none, flow_million, summary })
}

/// The relay TUN's `tx_packets`: packets the kernel handed to the relay.
fn tun_tx_packets(relay: &Node) -> Result<u64, String> {
    let out = relay
        .exec("cat", &[&format!("/sys/class/net/{IFACE}/statistics/tx_packets")])
        .map_err(|e| e.to_string())?;
    out.trim().parse().map_err(|e| format!("tx_packets {out:?}: {e}"))
}

/// Destination number `i`: distinct for every `i` below 2^23.
fn destination(i: u64) -> Ipv6Addr {
    TeredoAddress {
        prefix: TEREDO_PREFIX,
        server: SINK_SERVER,
        flags: Flags(0),
        mapped_port: (i & 0xffff) as u16,
        mapped_addr: Ipv4Addr::new(203, 0, 113, 128 + ((i >> 16) & 0x7f) as u8),
    }
    .to_ipv6()
}

/// Sends one 8-byte UDP datagram to each destination `from..to` from the v6 host, at most
/// `rate` per second.
fn generate(host: &Node, from: u64, to: u64, rate: u64) -> Result<(), String> {
    let sock = host
        .enter(|| UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let payload = *b"teredo!!";
    for i in from..to {
        if (i - from).is_multiple_of(1000) {
            check_interrupted()?;
            let due = Duration::from_secs_f64((i - from) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        // Errors (ENOBUFS under load) lose a destination, which tx_packets then misses.
        let _ = sock.send_to(&payload, SocketAddr::from((destination(i), 9)));
    }
    Ok(())
}

fn print_table(outcomes: &[Outcome]) {
    println!();
    println!(
        "{:<8} {:>11} {:>13} {:>13} {:>13} {:>13} {:>12} {:>12} {:>8}",
        "relay",
        "RSS start",
        "RSS @100k",
        "B/dest @100k",
        "RSS @1M",
        "B/dest @1M",
        "UDP pkt/s 0",
        "UDP pkt/s 1M",
        "ratio"
    );
    let per = |o: &Outcome, i: usize| {
        o.steps
            .get(i)
            .map_or(0.0, |&(_, d, rss)| rss.saturating_sub(o.rss_start) as f64 * 1024.0 / d.max(1) as f64)
    };
    let rss = |o: &Outcome, i: usize| o.steps.get(i).map_or(0, |s| s.2);
    for o in outcomes {
        println!(
            "{:<8} {:>7} KiB {:>9} KiB {:>13.1} {:>9} KiB {:>13.1} {:>12.0} {:>12.0} {:>8.2}",
            o.label,
            o.rss_start,
            rss(o, 0),
            per(o, 0),
            rss(o, 1),
            per(o, 1),
            o.flow_none.0.pps,
            o.flow_million.0.pps,
            o.flow_million.0.pps / o.flow_none.0.pps.max(1.0)
        );
    }
    for o in outcomes {
        println!(
            "{:<8} TCP host->client: {:.0} Mbit/s with no other peer, {:.0} Mbit/s with 1M ({:.2}); delivered to the TUN: {:?}",
            o.label,
            o.flow_none.1.bps / 1e6,
            o.flow_million.1.bps / 1e6,
            o.flow_million.1.bps / o.flow_none.1.bps.max(1.0),
            o.steps.iter().map(|s| s.1).collect::<Vec<_>>()
        );
        println!("{:<8} summary at exit: {}", o.label, o.summary);
    }
    let m = outcomes.iter().find(|o| o.label == "miredo");
    if let Some(t) = outcomes.iter().find(|o| o.label == "teredo") {
        let table = DEFAULT_MAX_PEERS as u64 * 8 / 7 * 40;
        let bound = table + (4 << 20) + 65_536 * 24 + 4_096 * (1_232 + 64);
        let growth = rss(t, 1).saturating_sub(t.rss_start) * 1024;
        println!(
            "teredo: RSS growth at 1M {:.1} MiB; bound at the default limits (table {:.1} MiB + 4 MiB of queues + 1.5 MiB of retries + 5.1 MiB of pending outputs) {:.1} MiB: {}",
            growth as f64 / 1048576.0,
            table as f64 / 1048576.0,
            bound as f64 / 1048576.0,
            if growth <= bound { "within" } else { "ABOVE" }
        );
        if let Some(m) = m {
            println!(
                "bytes per destination teredo/miredo: {:.2} at 100k, {:.2} at 1M",
                per(t, 0) / per(m, 0).max(1e-9),
                per(t, 1) / per(m, 1).max(1e-9)
            );
        }
    }
}
