//! Throughput benchmark of the Teredo client: Debian's `miredo` 1.2.6 client against
//! `teredo run`, behind the same kind of NAT, through the same Miredo relay, in one run.
//!
//! The path (teredo-lab namespaces, no captures): a client (10.0.*n*.2, Teredo address on
//! its TUN) — a port-restricted NAT (198.51.100.*x*) — the "internet" router — Debian's
//! `miredo` relay (`RelayType cone`, 203.0.113.1) — the router — the native IPv6 host
//! (2001:db8:3::1). Two such clients, each behind its own NAT: one runs `miredo`, the
//! other `teredo run`, both qualified by `miredo-server` (off the data path). The relay,
//! the router and the host are shared, so the two clients differ only by their daemon.
//!
//! Tests, each run for the Miredo client then for teredo's before the next test starts:
//! iperf3 TCP (one stream) client → host and host → client (`-R`), and UDP with 1200-byte
//! payloads at a fixed 2 Gbit/s offered (`-u -b 2G -l 1200`), both directions, counting
//! what the receiver got. The iperf3 server runs on the v6 host, so the client always
//! opens the flow, as Teredo needs behind a port-restricted NAT. For each it prints the
//! Mbit/s of both, the CPU the client's daemon processes used (in cores), and the ratio
//! teredo/miredo.
//!
//! Run (as root; needs Miredo and iperf3; skips with a message otherwise):
//!
//! ```text
//! cargo bench -p teredo --bench client_throughput
//! ```
//!
//! Environment: `TEREDO_BENCH_SECS` (seconds per iperf3 run, default 5),
//! `TEREDO_BENCH_TEREDO` (another `teredo` binary to measure). The lab's namespaces and
//! processes are removed when the bench ends, also on error.

use std::net::Ipv6Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use teredo_lab::lab::V6HOST_IPV6;
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Client, Lab, NatKind, proc_stat, wait_for};

/// One iperf3 test: label, UDP (else TCP), reverse (the host sends).
const TESTS: [(&str, bool, bool); 4] = [
    ("TCP client->host", false, false),
    ("TCP host->client", false, true),
    ("UDP 1200 B @2G client->host", true, false),
    ("UDP 1200 B @2G host->client", true, true),
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client_throughput: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`) does not.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "client_throughput: not run without --bench (cargo bench -p teredo --bench client_throughput)"
        );
        return Ok(());
    }
    if let Err(e) = teredo_lab::check_requirements(&["miredo", "miredo-server", "iperf3", "ping"]) {
        println!("client_throughput: SKIP: {e}");
        return Ok(());
    }
    let secs: f64 = match std::env::var("TEREDO_BENCH_SECS") {
        Ok(s) => s.parse().map_err(|e| format!("TEREDO_BENCH_SECS={s:?}: {e}"))?,
        Err(_) => 5.0,
    };
    let teredo =
        std::env::var("TEREDO_BENCH_TEREDO").unwrap_or_else(|_| env!("CARGO_BIN_EXE_teredo").to_owned());

    let mut lab = Lab::new("bench-client-throughput").map_err(|e| e.to_string())?;
    lab.set_captures(false);
    let e = |e: teredo_lab::LabError| e.to_string();
    let server = lab.server().map_err(e)?;
    let relay = lab.relay().map_err(e)?;
    let host = lab.v6host().map_err(e)?;
    let miredo_client = lab.client_behind(NatKind::PortRestricted).map_err(e)?;
    let teredo_client = lab.client_behind(NatKind::PortRestricted).map_err(e)?;
    let _server_d = miredo::start_server(&server).map_err(e)?;
    let _relay_d = miredo::start_relay(&relay, IFACE).map_err(e)?;
    let _miredo_d = miredo::start_client(&miredo_client, &server, IFACE).map_err(e)?;
    let _teredo_d =
        miredo::start_client_with(&teredo_client, &server, IFACE, &[teredo.as_str(), "run"]).map_err(e)?;
    let clients = [("miredo", &miredo_client), ("teredo", &teredo_client)];
    for (name, c) in clients {
        let (addr, _) = c.wait_teredo_address(IFACE, Duration::from_secs(20)).map_err(e)?;
        c.wait_ping6(host.ipv6, Duration::from_secs(20)).map_err(e)?;
        println!("{name} client: {addr}, reaches {}", host.ipv6);
    }
    let host_s = host.ipv6.to_string();
    let _iperf_d = host.spawn("iperf3-server", "iperf3", &["-s", "-B", &host_s]).map_err(e)?;
    wait_for("iperf3 to listen on the v6 host", Duration::from_secs(10), || {
        host.exec("ss", &["-H", "-n", "-l", "-t"]).is_ok_and(|o| o.contains(":5201"))
    })
    .map_err(e)?;

    println!("\n{secs} s per run; Mbit/s received; client daemon CPU in cores\n");
    println!("{:<30} {:>18} {:>18} {:>8}", "test", "miredo", "teredo", "ratio");
    for (label, udp, reverse) in TESTS {
        let mut figures = Vec::new();
        for (_, c) in clients {
            figures.push(iperf3(c, V6HOST_IPV6, secs, udp, reverse)?);
        }
        let [(m, mcpu), (t, tcpu)] = [figures[0], figures[1]];
        println!(
            "{label:<30} {:>10.0} ({mcpu:.2} c) {:>10.0} ({tcpu:.2} c) {:>8.2}",
            m,
            t,
            if m > 0.0 { t / m } else { f64::NAN }
        );
    }
    Ok(())
}

/// The CPU seconds used so far by the processes of `c`'s namespace other than iperf3 and
/// ping: the client daemon's.
fn daemon_cpu_secs(c: &Client) -> f64 {
    let daemons: Vec<u32> = (c.pids().unwrap_or_default().into_iter())
        .filter(|&p| proc_stat::read(p).is_some_and(|s| s.comm != "iperf3" && s.comm != "ping"))
        .collect();
    let (user, system) = proc_stat::cpu_secs(&daemons);
    user + system
}

/// Runs one iperf3 test from `c` to the iperf3 server at `host`; returns the Mbit/s the
/// receiver got and the cores the client daemon used meanwhile.
fn iperf3(c: &Client, host: Ipv6Addr, secs: f64, udp: bool, reverse: bool) -> Result<(f64, f64), String> {
    let host = host.to_string();
    let t = format!("{secs}");
    let mut args = vec!["-6", "-c", &host, "-t", &t, "-J"];
    if udp {
        args.extend(["-u", "-b", "2G", "-l", "1200"]);
    }
    if reverse {
        args.push("-R");
    }
    let cpu0 = daemon_cpu_secs(c);
    let t0 = Instant::now();
    let out = c.exec_output("iperf3", &args).map_err(|e| e.to_string())?;
    let cores = (daemon_cpu_secs(c) - cpu0) / t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("iperf3 {args:?}: {e}: {text}"))?;
    if let Some(err) = v["error"].as_str() {
        return Err(format!("iperf3 {args:?} in {}: {err}", c.ns()));
    }
    let end = &v["end"];
    let bps = if udp {
        // The receiver's count: the sender's rate less what was lost.
        let sum = &end["sum"];
        let sent = sum["bits_per_second"].as_f64().unwrap_or(0.0);
        let lost = sum["lost_percent"].as_f64().unwrap_or(100.0);
        end["sum_received"]["bits_per_second"]
            .as_f64()
            .filter(|_| end["sum_received"]["packets"].as_u64().is_some())
            .unwrap_or(sent * (1.0 - lost / 100.0))
    } else {
        end["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0)
    };
    Ok((bps / 1e6, cores))
}
