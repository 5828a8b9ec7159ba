//! What the relay benchmarks share: the lab path (teredo-lab: server, relay, native IPv6
//! host, one client behind a port-restricted NAT), starting Miredo's or teredo's relay
//! and client on it, iperf3 runs and their figures, the relay's resident memory, the
//! priority boost, and the interruption flag.

use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Client, Daemon, Lab, Node, Relay, Server, V6Host};

/// Set by SIGINT/SIGTERM: the bench stops at the next step and the lab cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Catches SIGINT and SIGTERM (so that the lab's guards remove everything).
pub(crate) fn catch_signals() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// `Err("interrupted")` after SIGINT/SIGTERM.
pub(crate) fn check_interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::Relaxed) { Err("interrupted".into()) } else { Ok(()) }
}

/// Seconds from the environment variable `name`, or `default`.
pub(crate) fn env_secs(name: &str, default: f64) -> Result<f64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
            .ok_or_else(|| format!("{name}={v:?}: expected seconds between 0 and 600")),
        Err(_) => Ok(default),
    }
}

/// Who plays the relay and the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impl {
    /// Debian's Miredo 1.2.6.
    Miredo,
    /// `teredo run`.
    Teredo,
    /// `teredo run --no-offload` (TUN packets one by one, as before the offloads).
    TeredoNoOffload,
    /// `teredo run --workers 1` (the relay with one worker instead of one per CPU).
    TeredoOneWorker,
}

/// The lab path: server (`teredo server`), relay, v6 host, client behind a port-restricted
/// NAT.
pub(crate) struct Path6 {
    pub(crate) server: Server,
    pub(crate) relay: Relay,
    pub(crate) host: V6Host,
    pub(crate) client: Client,
    _server_d: Daemon,
}

impl Path6 {
    /// Builds the path in `lab` and starts our server (not on the data path once the
    /// client is qualified).
    pub(crate) fn build(lab: &mut Lab, teredo: &str) -> Result<Self, String> {
        lab.set_captures(false);
        let server = lab.server().map_err(|e| e.to_string())?;
        let relay = lab.relay().map_err(|e| e.to_string())?;
        let host = lab.v6host().map_err(|e| e.to_string())?;
        let client = lab.client_behind(teredo_lab::NatKind::PortRestricted).map_err(|e| e.to_string())?;
        let server_d = miredo::start_server_with(&server, &[teredo, "server"]).map_err(|e| e.to_string())?;
        Ok(Self { server, relay, host, client, _server_d: server_d })
    }

    /// Starts the relay and the client of `which`, waits for qualification and for a ping
    /// from the client to the host; returns (relay, client, the client's address).
    pub(crate) fn start(&self, which: Impl, teredo: &str) -> Result<(Daemon, Daemon, Ipv6Addr), String> {
        let e = |e: teredo_lab::LabError| e.to_string();
        let (relay_d, client_d) = match which {
            Impl::Miredo => (
                miredo::start_relay(&self.relay, IFACE).map_err(e)?,
                miredo::start_client(&self.client, &self.server, IFACE).map_err(e)?,
            ),
            Impl::Teredo | Impl::TeredoNoOffload | Impl::TeredoOneWorker => {
                let command: &[&str] = match which {
                    Impl::TeredoNoOffload => &[teredo, "run", "--no-offload"],
                    Impl::TeredoOneWorker => &[teredo, "run", "--workers", "1"],
                    _ => &[teredo, "run"],
                };
                (
                    miredo::start_relay_with(&self.relay, IFACE, command).map_err(e)?,
                    miredo::start_client_with(&self.client, &self.server, IFACE, command).map_err(e)?,
                )
            }
        };
        let (addr, _) = self.client.wait_teredo_address(IFACE, Duration::from_secs(20)).map_err(e)?;
        self.client.wait_ping6(self.host.ipv6, Duration::from_secs(20)).map_err(e)?;
        if !self.host.ping6(addr, 2) {
            return Err(format!("the v6 host cannot ping the client {addr}"));
        }
        Ok((relay_d, client_d, addr))
    }
}

/// The processes running `program` (by command name) in `node`.
pub(crate) fn pids_named(node: &Node, program: &str) -> Vec<u32> {
    let comm = &program[..program.len().min(15)];
    node.pids()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect()
}

/// The summed VmRSS (KiB) of `pids`.
pub(crate) fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| teredo_lab::proc_stat::rss_kib(p)).sum()
}

/// The summed CPU time (user + system, in seconds) of `pids` and their threads.
pub(crate) fn cpu_secs(pids: &[u32]) -> f64 {
    let (user, system) = teredo_lab::proc_stat::cpu_secs(pids);
    user + system
}

/// One iperf3 measurement.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figure {
    /// Bits per second received.
    pub(crate) bps: f64,
    /// Packets per second delivered (UDP only).
    pub(crate) pps: f64,
    /// Datagrams lost (UDP only), in percent.
    pub(crate) lost_pct: f64,
}

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Test {
    /// TCP, one stream.
    Tcp,
    /// UDP as fast as iperf3 sends, with this payload.
    Udp(usize),
}

/// Runs `iperf3 -c target` in `from` (the iperf3 server runs at `target`), `-R` when
/// `reverse` (the server sends), for `secs`; returns the receiver's figures.
pub(crate) fn iperf3(
    from: &Node,
    target: &str,
    test: Test,
    reverse: bool,
    secs: f64,
) -> Result<Figure, String> {
    iperf3_port(from, target, 5201, test, reverse, secs)
}

/// [`iperf3`] to the server on `port`.
pub(crate) fn iperf3_port(
    from: &Node,
    target: &str,
    port: u16,
    test: Test,
    reverse: bool,
    secs: f64,
) -> Result<Figure, String> {
    check_interrupted()?;
    let t = format!("{}", secs.ceil() as u64);
    let mut args: Vec<String> =
        vec!["-c".into(), target.into(), "-p".into(), port.to_string(), "-t".into(), t, "-J".into()];
    if let Test::Tcp = test {
        // Past slow start.
        args.extend(["-O".into(), "1".into()]);
    }
    if reverse {
        args.push("-R".into());
    }
    if let Test::Udp(len) = test {
        args.extend(["-u".into(), "-b".into(), "0".into(), "-l".into(), len.to_string()]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut tries = 0;
    let v = loop {
        let out = from.exec_output("iperf3", &argv).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("iperf3 {}: not JSON: {e}: {text}", argv.join(" ")))?;
        match v.get("error").and_then(|e| e.as_str()) {
            // The server may still be closing the previous test.
            Some(err) if err.contains("busy") && tries < 10 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            Some(err) => return Err(format!("iperf3 {}: {err}", argv.join(" "))),
            None => break v,
        }
    };
    let end = &v["end"];
    match test {
        Test::Tcp => {
            let bps = end["sum_received"]["bits_per_second"].as_f64().ok_or("iperf3: no sum_received")?;
            Ok(Figure { bps, ..Figure::default() })
        }
        Test::Udp(len) => {
            // Delivered = the bytes the receiver counted, in datagrams of `len`.
            let (sent, received) = (&end["sum_sent"], &end["sum_received"]);
            let bytes = received["bytes"].as_f64().ok_or("iperf3: no sum_received.bytes")?;
            let seconds = received["seconds"].as_f64().filter(|s| *s > 0.0).ok_or("iperf3: no seconds")?;
            let delivered = bytes / len as f64;
            let offered = sent["bytes"].as_f64().unwrap_or(0.0) / len as f64;
            Ok(Figure {
                bps: bytes * 8.0 / seconds,
                pps: delivered / seconds,
                lost_pct: if offered > 0.0 { 100.0 * (1.0 - delivered / offered).max(0.0) } else { 0.0 },
            })
        }
    }
}

/// Starts `iperf3 -s` in `node`.
pub(crate) fn iperf3_server(node: &Node) -> Result<Daemon, String> {
    iperf3_server_port(node, 5201)
}

/// Starts `iperf3 -s -p PORT` in `node`.
pub(crate) fn iperf3_server_port(node: &Node, port: u16) -> Result<Daemon, String> {
    let name = format!("iperf3-server-{port}");
    let d = node.spawn(&name, "iperf3", &["-s", "-p", &port.to_string()]).map_err(|e| e.to_string())?;
    teredo_lab::wait_for(&format!("iperf3 -s to listen on TCP {port}"), Duration::from_secs(5), || {
        node.exec("ss", &["-H", "-n", "-l", "-t"]).unwrap_or_default().contains(&format!(":{port} "))
    })
    .map_err(|e| e.to_string())?;
    Ok(d)
}

/// Needs root and the programs the lab, iperf3 and Miredo need.
pub(crate) fn check_requirements(bench: &str) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!("{bench}: must run as root (network namespaces)"));
    }
    teredo_lab::check_requirements(&["miredo", "miredo-server", "iperf3", "ping"]).map_err(|e| e.to_string())
}
