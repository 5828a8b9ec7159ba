//! Lab tests of `teredo server` (RFC 4380 §5.3, RFC 5991 §3.2), in network namespaces built
//! by `teredo-lab`: Debian's Miredo clients qualify against it behind each NAT kind and talk
//! to each other through it, a Windows-style router solicitation gets its advertisement
//! from the other server address, tshark decodes every advertisement it sends, a storm of
//! malformed datagrams leaves it running with flat memory, it runs unprivileged, and it
//! forwards a client's echo test to native IPv6 through its raw socket.
//!
//! They need root, network namespaces, Miredo and tshark; without them they print SKIP,
//! except under `CI=true` where they fail. Run them with
//! `cargo test -p teredo --test lab -- --nocapture` to see the measurements they print.

mod amplification;
mod anycast;
mod client;
mod control;
mod entry_points;
mod failover;
mod faults;
mod figure1;
mod hairpin;
mod package;
mod relay;
mod sandbox;
mod secure;
mod server;
mod strangers;
mod upnp;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Daemon, Lab, Node, Server};

/// Our binary.
pub(crate) const TEREDO: &str = env!("CARGO_BIN_EXE_teredo");

/// The programs the tests with a Miredo client need beyond the lab's own.
pub(crate) const MIREDO_NEEDS: &[&str] = &["miredo", "miredo-server", "tshark"];

pub(crate) use teredo_lab::{TestResult, WAIT, ensure};

/// Starts `teredo server` on the lab server with the lab's `miredo-server.conf` and
/// Miredo's flags (`-f -c CONF -p PIDFILE`, then `extra`), and waits until it listens on
/// both addresses and has started its workers.
pub(crate) fn start_teredo_server(server: &Server, extra: &[&str]) -> TestResult<Daemon> {
    let mut command = vec![TEREDO, "server"];
    command.extend_from_slice(extra);
    let d = miredo::start_server_with(server, &command)?;
    d.wait_log("Teredo server on", WAIT)?;
    Ok(d)
}

/// The capture the lab started on the server's `eth0`.
pub(crate) fn server_pcap(lab: &Lab) -> TestResult<PathBuf> {
    lab.captures()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("server-eth0")))
        .ok_or_else(|| "no capture on the server's eth0".into())
}

/// Runs `tshark -n -r PCAP -Y FILTER` (printing `fields` if any) and returns its output
/// lines. UDP 3544 is decoded as Teredo by default; the heuristic also finds other ports.
pub(crate) fn tshark(pcap: &Path, filter: &str, fields: &[&str]) -> TestResult<Vec<String>> {
    let mut c = Command::new("tshark");
    c.arg("-n").arg("-r").arg(pcap).args(["--enable-heuristic", "teredo_udp", "-Y", filter]);
    if !fields.is_empty() {
        c.args(["-T", "fields", "-E", "separator=|"]);
        for f in fields {
            c.args(["-e", f]);
        }
    }
    let out = c.output()?;
    ensure!(
        out.status.success(),
        "tshark -Y '{filter}' on {} failed ({}): {}",
        pcap.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect())
}

/// Waits for `client`'s Teredo address and checks that it embeds `primary` and the real
/// public mapping of its NAT towards `primary`:3544 (see `Client::wait_qualified`).
pub(crate) fn check_qualified(
    client: &teredo_lab::Client,
    primary: std::net::Ipv4Addr,
) -> TestResult<(std::net::Ipv6Addr, teredo_proto::address::TeredoAddress)> {
    Ok(client.wait_qualified(IFACE, primary, WAIT)?)
}

/// A field of a `/proc/PID/status` text; empty when it is missing.
pub(crate) fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    teredo_lab::proc_stat::status_field(status, key).unwrap_or("")
}

/// A small deterministic generator (xorshift64*), so that a failing storm or flood can be
/// replayed from its seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    pub(crate) fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.byte();
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Up to `max - 1` random bytes.
    pub(crate) fn some(&mut self, max: u64) -> Vec<u8> {
        let n = (self.next() % max) as usize;
        self.bytes(n)
    }
}

/// `VmRSS` of `pid`, in KiB.
pub(crate) fn vm_rss_kib(pid: u32) -> TestResult<u64> {
    Ok(teredo_lab::proc_stat::rss_kib(pid).ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))?)
}

/// The `/proc/PID/task/TID/status` of every thread of `pid`, by thread id.
pub(crate) fn thread_status(pid: u32) -> TestResult<Vec<(u32, String)>> {
    Ok(teredo_lab::proc_stat::thread_statuses(pid)?)
}

/// Checks that every thread of `pid` runs under non-zero uids with empty permitted and
/// effective capability sets; returns how many threads there are.
pub(crate) fn check_unprivileged(pid: u32, what: &str) -> TestResult<usize> {
    let threads = thread_status(pid)?;
    for (tid, status) in &threads {
        let name = status_field(status, "Name");
        let uid = status_field(status, "Uid");
        let (prm, eff) = (status_field(status, "CapPrm"), status_field(status, "CapEff"));
        println!("{what} thread {tid} ({name}): Uid {uid} CapPrm {prm} CapEff {eff}");
        ensure!(
            uid.split_whitespace().count() == 4 && uid.split_whitespace().all(|u| u != "0"),
            "{what} thread {tid} ({name}) has Uid {uid}"
        );
        for (set, v) in [("CapPrm", prm), ("CapEff", eff)] {
            ensure!(
                !v.is_empty() && v.chars().all(|c| c == '0'),
                "{what} thread {tid} ({name}) has {set} {v}"
            );
        }
    }
    Ok(threads.len())
}

/// `teredo status --json [--peers]` run in `node`'s namespace.
pub(crate) fn status(node: &Node, peers: bool) -> TestResult<Vec<Value>> {
    let mut args = vec!["status", "--json"];
    if peers {
        args.push("--peers");
    }
    let out = node.exec_output(TEREDO, &args)?;
    ensure!(out.status.success(), "teredo status failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v.as_array().cloned().ok_or("not a JSON array")?)
}

/// The one daemon `teredo status` finds in `node`.
pub(crate) fn only(node: &Node, peers: bool) -> TestResult<Value> {
    let all = status(node, peers)?;
    ensure!(all.len() == 1, "expected one daemon in {}, found {}: {all:?}", node.ns(), all.len());
    Ok(all.into_iter().next().unwrap_or_default())
}

pub(crate) fn counter(v: &Value, name: &str) -> u64 {
    v["counters"][name].as_u64().unwrap_or(0)
}

/// Starts `teredo run` in `node` with `config`, and waits for its start-up line.
pub(crate) fn start_run(node: &Node, name: &str, config: &str, env: &[(&str, &str)]) -> TestResult<Daemon> {
    start_run_with(node, name, config, env, &[])
}

/// [`start_run`] with more arguments.
pub(crate) fn start_run_with(
    node: &Node,
    name: &str,
    config: &str,
    env: &[(&str, &str)],
    extra: &[&str],
) -> TestResult<Daemon> {
    let conf = node.write_artifact(&format!("{name}.conf"), config)?;
    let conf = conf.to_string_lossy().into_owned();
    let mut args = vec!["run", "-f", "-c", &conf];
    args.extend_from_slice(extra);
    let d = node.spawn_env(name, TEREDO, &args, env)?;
    d.wait_log("Teredo ", WAIT)?;
    Ok(d)
}
