//! Throughput benchmark of the Teredo relay: Miredo 1.2.6 against `teredo run`, on the same
//! lab path, in the same run, with native IPv4 on (almost) the same path as the ceiling.
//!
//! The path (teredo-lab namespaces): the native IPv6 host (2001:db8:3::1) — the "internet"
//! router — the relay (203.0.113.1; IPv6 in, Teredo/UDP out through its TUN) — the
//! router — a port-restricted NAT (198.51.100.1) — the client (10.0.1.2, Teredo address
//! on its TUN). Our `teredo server` qualifies the clients and is off the data path.
//!
//! Phases, one after the other:
//!
//! - (a) `miredo` client + `miredo` relay (`RelayType cone`, the lab's config);
//! - (b) `teredo run` client + `teredo run` relay, the same configs;
//! - (n) the same with `--no-offload` on both (no TUN offloads: what (b) was before them);
//!   only when asked for with `TEREDO_BENCH_ONLY`, e.g. `b,n`;
//! - (1) the same with `--workers 1` on the relay (one worker instead of one per CPU); only
//!   when asked for, e.g. `b,1`;
//! - (c) native IPv4 between the relay's namespace (iperf3 server on 203.0.113.1) and the
//!   client's namespace, through the router and the NAT: every namespace and veth of the
//!   Teredo path but the v6 host's link, with no tunnel. (The v6 host has no IPv4.)
//!
//! In each: iperf3 TCP (one stream) client → host and host → client (`-R`), and UDP as
//! fast as iperf3 sends (`-b 0`) with 1200-byte and 64-byte payloads in both directions,
//! counting the datagrams *delivered* per second (sent minus lost, at the receiver). The
//! iperf3 server runs at the far end (the v6 host, or the relay's namespace for IPv4), so
//! the client always opens the flow, as Teredo needs behind a port-restricted NAT. Also
//! printed: the CPU the relay's processes used, in cores (and how much of it in user space:
//! the rest is kernel time charged to the relay, which on veth includes softirq work done
//! for the rest of the path in the relay's context), and per Gbit/s of TCP; how often the
//! relay's live threads were preempted per second (another task took their CPU: on a machine
//! with fewer cores than the path has busy threads, the stages take turns); and the
//! machine's idle time over each run, in cores out of its CPUs (`machine idle 0.62 of 2`: a
//! path that leaves CPU idle is bounded by one thread, usually iperf3's sender, not by the
//! machine). Then the ratios b/a and b/c.
//!
//! Run (as root; needs Miredo, iperf3, ping):
//!
//! ```text
//! cargo bench -p teredo --bench relay_throughput
//! ```
//!
//! Environment: `TEREDO_BENCH_SECS` (seconds per iperf3 run, default 5; TCP runs omit one more),
//! `TEREDO_BENCH_ONLY` (comma-separated phase letters, e.g. `b`), `TEREDO_BENCH_TESTS`
//! (run only the tests whose labels contain one of these comma-separated words, e.g.
//! `UDP 64`, to profile one of them; the others print 0), `TEREDO_BENCH_TEREDO`
//! (another `teredo` binary), `TEREDO_BENCH_ROUNDS` (run the phases this many times, one
//! round after the other, and print b/a, b/c and the relay's CPU per Gbit/s round by
//! round with their medians; default 1), `TEREDO_BENCH_SHARE_CPU` (keep the ordinary
//! priority; see `server_load`). The lab's namespaces and every process are removed on
//! exit, on error and on Ctrl-C.

#[path = "relay/common.rs"]
#[allow(dead_code)]
mod common;

use std::process::ExitCode;

use common::{Figure, Impl, Path6, Test, check_interrupted, iperf3, iperf3_server, pids_named};
use teredo_lab::cpu_stat::{IDLE, cpu_split, cpu_times, online_cpus};
use teredo_lab::proc_stat;
use teredo_lab::{Lab, Node};

/// The measurements of one phase, in [`TESTS`] order.
type Row = Vec<(Figure, f64)>;
/// One round: each phase's label and measurements.
type Round = Vec<(&'static str, Row)>;

/// Label, test, reverse (the far end sends to the client).
const TESTS: [(&str, Test, bool); 6] = [
    ("TCP client->host", Test::Tcp, false),
    ("TCP host->client", Test::Tcp, true),
    ("UDP 1200 client->host", Test::Udp(1200), false),
    ("UDP 1200 host->client", Test::Udp(1200), true),
    ("UDP 64 client->host", Test::Udp(64), false),
    ("UDP 64 host->client", Test::Udp(64), true),
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay_throughput: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    common::check_requirements("relay_throughput")?;
    let secs = common::env_secs("TEREDO_BENCH_SECS", 5.0)?;
    let teredo =
        std::env::var("TEREDO_BENCH_TEREDO").unwrap_or_else(|_| env!("CARGO_BIN_EXE_teredo").to_owned());
    let rounds = teredo_lab::bench::rounds()?;
    common::catch_signals();
    teredo_lab::bench::raise_priority("relay_throughput");

    let mut lab = Lab::new("bench-relay-throughput").map_err(|e| e.to_string())?;
    let path = Path6::build(&mut lab, &teredo)?;
    println!(
        "relay_throughput: {} s per iperf3 run; v6 host {} <-> relay {} <-> port-restricted NAT {} <-> client {}",
        secs,
        path.host.ipv6,
        path.relay.ipv4,
        path.client.public_ipv4(),
        path.client.ipv4
    );
    // Each round's table as soon as it ends, so that an error later loses none of them.
    let mut by_round = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            println!("round {round} of {rounds}");
        }
        let rows = run_round(&path, &teredo, secs)?;
        print_table(&rows);
        by_round.push(rows);
    }
    if rounds > 1 {
        print_medians(&by_round);
    }
    drop(path);
    drop(lab);
    Ok(())
}

/// Every phase that `TEREDO_BENCH_ONLY` asks for, one after the other, each printed.
fn run_round(path: &Path6, teredo: &str, secs: f64) -> Result<Round, String> {
    let only = std::env::var("TEREDO_BENCH_ONLY").unwrap_or_default();
    let listed = |p: &str| only.split(',').any(|w| w.trim() == p);
    let wanted = |p: &str| (only.is_empty() && !matches!(p, "n" | "1")) || listed(p);
    let mut rows: Vec<(&str, Row)> = Vec::new();
    for (p, label, which) in [
        ("a", "(a) miredo", Impl::Miredo),
        ("b", "(b) teredo", Impl::Teredo),
        ("n", "(n) no-offload", Impl::TeredoNoOffload),
        ("1", "(1) one worker", Impl::TeredoOneWorker),
    ] {
        if !wanted(p) {
            continue;
        }
        check_interrupted()?;
        let (relay_d, client_d, addr) = path.start(which, teredo)?;
        let program = match which {
            Impl::Miredo => "miredo",
            Impl::Teredo | Impl::TeredoNoOffload | Impl::TeredoOneWorker => "teredo",
        };
        let relay_pids = pids_named(&path.relay, program);
        println!("{label}: client {addr}, relay pids {relay_pids:?}");
        let srv = iperf3_server(&path.host)?;
        let row = measure(label, &path.client, &path.host.ipv6.to_string(), &relay_pids, secs)?;
        drop((srv, client_d, relay_d));
        rows.push((label, row));
    }
    if wanted("c") {
        check_interrupted()?;
        let label = "(c) IPv4";
        let srv = iperf3_server(&path.relay)?;
        println!(
            "{label}: iperf3 over IPv4, client {} -> NAT -> router -> relay namespace {}",
            path.client.ipv4, path.relay.ipv4
        );
        let row = measure(label, &path.client, &path.relay.ipv4.to_string(), &[], secs)?;
        drop(srv);
        rows.push((label, row));
    }
    Ok(rows)
}

/// Runs every test of [`TESTS`] from `client` to `target`; returns the figures and the
/// cores the `relay_pids` used.
fn measure(label: &str, client: &Node, target: &str, relay_pids: &[u32], secs: f64) -> Result<Row, String> {
    let mut row = Vec::new();
    for (name, test, reverse) in TESTS {
        if !teredo_lab::bench::picked("TEREDO_BENCH_TESTS", name) {
            row.push((Figure::default(), 0.0));
            continue;
        }
        let (c0, p0) = (proc_stat::cpu_secs(relay_pids), preemptions(relay_pids));
        let (m0, t0) = (cpu_times(None), std::time::Instant::now());
        let f = iperf3(client, target, test, reverse, secs).map_err(|e| format!("{label} {name}: {e}"))?;
        let (c1, p1, elapsed) = (proc_stat::cpu_secs(relay_pids), preemptions(relay_pids), t0.elapsed());
        let (user, cores) =
            ((c1.0 - c0.0) / elapsed.as_secs_f64(), (c1.0 + c1.1 - c0.0 - c0.1) / elapsed.as_secs_f64());
        let relay = if relay_pids.is_empty() {
            String::new()
        } else {
            let preempted = p1.saturating_sub(p0) as f64 / elapsed.as_secs_f64();
            format!("   relay CPU {cores:.2} ({user:.2} user)   relay preempted {preempted:.0}/s")
        };
        println!(
            "  {label:<11} {name:<22} {}{relay}   machine idle {}",
            show(test, &f),
            idle_cores(m0, cpu_times(None))
        );
        row.push((f, cores));
    }
    Ok(row)
}

/// How often the threads of `pids` were preempted so far (involuntary context switches).
fn preemptions(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| proc_stat::context_switches(p)).map(|(_, involuntary)| involuntary).sum()
}

/// The machine's idle time over a run, in cores out of its CPU count ("0.62 of 2"): a
/// path that leaves a core idle is bounded by one thread (often the sender), not by CPU.
fn idle_cores(a: Option<[u64; 8]>, b: Option<[u64; 8]>) -> String {
    let cpus = online_cpus();
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2} of {cpus}", cpu_split(a, b)[IDLE] / 100.0 * cpus as f64),
        _ => "n/a".to_owned(),
    }
}

fn show(test: Test, f: &Figure) -> String {
    match test {
        Test::Tcp => format!("{:>8.0} Mbit/s", f.bps / 1e6),
        Test::Udp(_) => {
            format!("{:>8.0} pkt/s delivered ({:.0} Mbit/s, {:.1}% lost)", f.pps, f.bps / 1e6, f.lost_pct)
        }
    }
}

fn value(test: Test, f: &Figure) -> f64 {
    match test {
        Test::Tcp => f.bps,
        Test::Udp(_) => f.pps,
    }
}

fn print_table(rows: &[(&str, Row)]) {
    println!();
    print!("{:<24}", "test");
    for (label, _) in rows {
        print!(" {label:>14}");
    }
    let get = |l: &str| rows.iter().find(|(x, _)| x.starts_with(l)).map(|(_, r)| r);
    let (a, b, c, n, one) = (get("(a)"), get("(b)"), get("(c)"), get("(n)"), get("(1)"));
    if a.is_some() && b.is_some() {
        print!(" {:>7}", "b/a");
    }
    if c.is_some() && b.is_some() {
        print!(" {:>7}", "b/c");
    }
    if n.is_some() && b.is_some() {
        print!(" {:>7}", "b/n");
    }
    if one.is_some() && b.is_some() {
        print!(" {:>7}", "b/1");
    }
    println!();
    for (i, (name, test, _)) in TESTS.iter().enumerate() {
        let unit = match test {
            Test::Tcp => "Mbit/s",
            Test::Udp(_) => "kpkt/s",
        };
        print!("{:<24}", format!("{name} ({unit})"));
        for (_, r) in rows {
            let v = value(*test, &r[i].0);
            let shown = match test {
                Test::Tcp => v / 1e6,
                Test::Udp(_) => v / 1e3,
            };
            print!(" {shown:>14.1}");
        }
        let ratio = |x: Option<&Row>, y: Option<&Row>| match (x, y) {
            (Some(x), Some(y)) => {
                let d = value(*test, &y[i].0);
                if d > 0.0 {
                    format!(" {:>7.2}", value(*test, &x[i].0) / d)
                } else {
                    format!(" {:>7}", "n/a")
                }
            }
            _ => String::new(),
        };
        print!("{}", ratio(b, a));
        print!("{}", ratio(b, c));
        print!("{}", ratio(b, n));
        print!("{}", ratio(b, one));
        println!();
    }
    println!("(relay CPU in cores is printed per run above; (c) has no relay process)");
    print_cpu_per_gbit(rows);
}

/// The relay's CPU per Gbit/s of TCP, in cores (= CPU seconds per Gbit carried), for each
/// phase with a relay process: the cost of the relay's data path, whatever the speed the
/// path allowed in that run.
fn print_cpu_per_gbit(rows: &[(&str, Row)]) {
    println!();
    println!("relay CPU per Gbit/s of TCP (cores per Gbit/s; lower is better):");
    for (label, r) in rows.iter().filter(|(l, _)| !l.starts_with("(c)")) {
        print!("  {label:<16}");
        for (i, (name, ..)) in TESTS.iter().enumerate().filter(|(_, (_, t, _))| matches!(t, Test::Tcp)) {
            let per = cpu_per_gbit(&r[i]).map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
            print!("   {name} {per:>7}");
        }
        println!();
    }
}

/// Cores per Gbit/s of one TCP measurement, if it carried anything.
fn cpu_per_gbit((f, cores): &(Figure, f64)) -> Option<f64> {
    let gbit = f.bps / 1e9;
    (gbit > 0.0).then(|| cores / gbit)
}

/// Over several rounds: for every test, the ratios b/a and b/c round by round with their
/// median, and teredo's CPU per Gbit/s of TCP the same way.
fn print_medians(by_round: &[Round]) {
    // Ratios with 2 decimals, cores per Gbit/s with 3. A round without the value (a test
    // not run, or nothing carried) shows n/a in its place; a series with no value at all
    // is not printed.
    let series = |f: &dyn Fn(&Round) -> Option<f64>, digits: usize| {
        teredo_lab::bench::series(&by_round.iter().map(f).collect::<Vec<_>>(), digits)
    };
    let get = |rows: &Round, p: &str, i: usize| {
        rows.iter().find(|(l, _)| l.starts_with(p)).map(|(_, r)| value(TESTS[i].1, &r[i].0))
    };
    println!();
    println!("over {} rounds (round by round; median):", by_round.len());
    for (i, (name, test, _)) in TESTS.iter().enumerate() {
        for other in ["(a)", "(c)"] {
            let ratio = |rows: &Round| {
                let (b, d) = (get(rows, "(b)", i)?, get(rows, other, i)?);
                (b > 0.0 && d > 0.0).then(|| b / d)
            };
            if let Some(s) = series(&ratio, 2) {
                println!("  {name:<22} b/{} {s}", &other[1..2]);
            }
        }
        if matches!(test, Test::Tcp) {
            let per = |rows: &Round| {
                rows.iter().find(|(l, _)| l.starts_with("(b)")).and_then(|(_, r)| cpu_per_gbit(&r[i]))
            };
            if let Some(s) = series(&per, 3) {
                println!("  {name:<22} teredo relay CPU per Gbit/s {s}");
            }
        }
    }
}
