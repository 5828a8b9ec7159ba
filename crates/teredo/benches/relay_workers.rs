//! Does a relay of one worker per CPU pay? Many clients at once through `teredo run` as the
//! relay with `--workers 1`, then with `--workers N` (default: one per CPU), in one run on
//! the same lab path.
//!
//! The path (teredo-lab namespaces): the native IPv6 host — the router — the relay — the
//! router — one port-restricted NAT — `TEREDO_BENCH_CLIENTS` `teredo run` clients (default
//! 6, each with its own mapping, so its own peer and worker at the relay). Our `teredo
//! server` qualifies them and is off the data path.
//!
//! In each phase, every client runs iperf3 at once against its own iperf3 server on the v6
//! host, one TCP stream client → host, then host → client; the figures (Mbit/s received)
//! are summed over the clients. Also printed: the cores the relay used, and how
//! the clients' mappings spread over the workers (`teredo_net::steer::shard`).
//!
//! Run (as root; needs iperf3, ping):
//!
//! ```text
//! cargo bench -p teredo --bench relay_workers
//! ```
//!
//! Environment: `TEREDO_BENCH_SECS` (seconds per iperf3 run, default 5),
//! `TEREDO_BENCH_CLIENTS` (default 6), `TEREDO_BENCH_WORKERS` (the N of the second phase,
//! default one per CPU). The lab's namespaces and every process are removed on exit, on
//! error and on Ctrl-C.

#[path = "relay/common.rs"]
#[allow(dead_code)]
mod common;

use std::process::ExitCode;
use std::time::Duration;

use common::{Figure, Test, check_interrupted, cpu_secs, iperf3_port, iperf3_server_port, pids_named};
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Client, Daemon, Lab, NatKind};

/// The relay's steering key, given so that the spread of the clients can be printed.
const STEERING_KEY: u64 = 0x5eed_0001_5eed_0002;

/// Label, test, reverse (the host sends). TCP only: six unpaced UDP floods at once starve
/// the iperf3 control connections that share the path, and the runs fail or vary tenfold.
const TESTS: [(&str, Test, bool); 2] =
    [("TCP clients->host", Test::Tcp, false), ("TCP host->clients", Test::Tcp, true)];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay_workers: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_count(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| format!("{name}={v:?}: expected 1 to 64")),
        Err(_) => Ok(default),
    }
}

fn run() -> Result<(), String> {
    common::check_requirements("relay_workers")?;
    let secs = common::env_secs("TEREDO_BENCH_SECS", 5.0)?;
    let count = env_count("TEREDO_BENCH_CLIENTS", 6)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let many = env_count("TEREDO_BENCH_WORKERS", cpus)?;
    let teredo = env!("CARGO_BIN_EXE_teredo");
    common::catch_signals();
    teredo_lab::bench::raise_priority("relay_workers");

    let mut lab = Lab::new("bench-relay-workers").map_err(|e| e.to_string())?;
    lab.set_captures(false);
    let e = |e: teredo_lab::LabError| e.to_string();
    let server = lab.server().map_err(e)?;
    let relay = lab.relay().map_err(e)?;
    let host = lab.v6host().map_err(e)?;
    let nat = lab.nat(NatKind::PortRestricted).map_err(e)?;
    let clients: Vec<Client> = (0..count).map(|_| lab.client(&nat)).collect::<Result<_, _>>().map_err(e)?;
    let _server_d = miredo::start_server_with(&server, &[teredo, "server"]).map_err(e)?;
    let ports: Vec<u16> = (0..count).map(|i| 5201 + i as u16).collect();
    let _iperf_servers: Vec<Daemon> =
        ports.iter().map(|&p| iperf3_server_port(&host, p)).collect::<Result<_, _>>()?;
    println!(
        "relay_workers: {count} clients behind one port-restricted NAT, {secs} s per iperf3 run, {cpus} CPUs"
    );

    let mut rows = Vec::new();
    for workers in [1, many] {
        check_interrupted()?;
        let w = workers.to_string();
        let key = STEERING_KEY.to_string();
        let command = [teredo, "run", "--workers", &w, "--test-steering-key", &key];
        let relay_d = miredo::start_relay_with(&relay, IFACE, &command).map_err(e)?;
        let client_ds: Vec<Daemon> = clients
            .iter()
            .map(|c| miredo::start_client_with(c, &server, IFACE, &[teredo, "run"]))
            .collect::<Result<_, _>>()
            .map_err(e)?;
        let mut addrs = Vec::new();
        let mut spread = vec![0; workers];
        for c in &clients {
            let (addr, t) = c.wait_teredo_address(IFACE, Duration::from_secs(20)).map_err(e)?;
            c.wait_ping6(host.ipv6, Duration::from_secs(20)).map_err(e)?;
            let shard = teredo_net::steer::shard(t.mapped_addr, t.mapped_port, workers as u32, STEERING_KEY);
            spread[shard as usize] += 1;
            addrs.push(addr);
        }
        let relay_pids = pids_named(&relay, "teredo");
        let label = format!("{workers} worker{}", if workers == 1 { "" } else { "s" });
        println!("{label}: clients by worker {spread:?}");
        let mut row = Vec::new();
        for (name, test, reverse) in TESTS {
            let (c0, t0) = (cpu_secs(&relay_pids), std::time::Instant::now());
            let target = host.ipv6.to_string();
            let figures: Vec<Result<Figure, String>> = std::thread::scope(|s| {
                let runs: Vec<_> = clients
                    .iter()
                    .zip(&ports)
                    .map(|(c, &p)| {
                        let target = &target;
                        s.spawn(move || iperf3_port(c, target, p, test, reverse, secs))
                    })
                    .collect();
                runs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("iperf3 thread".into()))).collect()
            });
            let mut sum = Figure::default();
            for f in figures {
                let f = f.map_err(|err| format!("{label} {name}: {err}"))?;
                sum.bps += f.bps;
                sum.pps += f.pps;
            }
            let cores = (cpu_secs(&relay_pids) - c0) / t0.elapsed().as_secs_f64();
            let shown = match test {
                Test::Tcp => format!("{:>8.0} Mbit/s", sum.bps / 1e6),
                Test::Udp(_) => format!("{:>8.0} pkt/s delivered", sum.pps),
            };
            println!("  {label:<10} {name:<22} {shown}   relay CPU {cores:.2}");
            row.push(match test {
                Test::Tcp => sum.bps,
                Test::Udp(_) => sum.pps,
            });
        }
        drop(client_ds);
        drop(relay_d);
        rows.push((label, row));
    }

    println!();
    println!("{:<24} {:>14} {:>14} {:>7}", "test (sum over clients)", rows[0].0, rows[1].0, "ratio");
    for (i, (name, test, _)) in TESTS.iter().enumerate() {
        let (one, many) = (rows[0].1[i], rows[1].1[i]);
        let (scale, unit) = match test {
            Test::Tcp => (1e6, "Mbit/s"),
            Test::Udp(_) => (1e3, "kpkt/s"),
        };
        let ratio = if one > 0.0 { format!("{:.2}", many / one) } else { "n/a".into() };
        println!(
            "{:<24} {:>14.1} {:>14.1} {:>7}",
            format!("{name} ({unit})"),
            one / scale,
            many / scale,
            ratio
        );
    }
    drop(lab);
    Ok(())
}
