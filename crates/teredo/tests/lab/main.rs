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

mod client;
mod control;
mod relay;
mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Daemon, Lab, Server};

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

/// A field of a `/proc/PID/status` text.
pub(crate) fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map_or("", str::trim)
}

/// The `/proc/PID/task/TID/status` of every thread of `pid`.
pub(crate) fn thread_status(pid: u32) -> TestResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let tid = e.file_name().to_string_lossy().into_owned();
        out.push((tid.clone(), std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))?));
    }
    out.sort();
    Ok(out)
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
