//! RFC 6081 Figure 1 between two `teredo run` clients, each behind its own lab NAT of every
//! kind the figure names. One test per source kind (row): a client behind that kind pings,
//! first, nine fresh clients behind one NAT of each destination kind (the columns), all on
//! one `teredo server`, with a `teredo` relay and the native host beside them. The other
//! initiator of each pair is the row of the destination kind.
//!
//! - A cell the figure marks Yes, SNS, SNS+UPnP, SNS+PP or SNS+SS must connect both ways,
//!   directly: the NATs' captures show the echo requests and replies between the two NATs'
//!   public addresses, the relay's capture nothing of them and the server's none of their
//!   echoes. The SNS+ cells take the
//!   UPnP (the lab's `miniupnpd`), Port-Preserving and Sequential Port-Symmetric NAT
//!   extensions of RFC 6081 (§5.3–§5.5).
//! - A No cell that does not connect must fail within the bubble budget (four tries 2 s
//!   apart) with no packet left queued for the peer, and the client must still reach the
//!   native host through the relay afterwards. (A No cell may connect all the same where
//!   the lab's NAT lets in more than the figure assumes; it is printed as such.)
//!
//! Each row prints its line of the matrix, which is the README's table
//! (`CI=true cargo test -p teredo --test lab -- figure1 --nocapture --test-threads 3`).

use std::net::Ipv6Addr;
use std::time::Duration;

use serde_json::Value;
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::nat::figure1::{self, Support};
use teredo_lab::{Client, Daemon, Lab, NatKind};

use crate::{TEREDO, TestResult, WAIT, check_qualified, ensure, start_teredo_server};

/// How long a pair is given to connect: qualification is done, so this is the bubble
/// exchange (four tries, 2 s apart) and the first echo.
const CONNECT_WITHIN: Duration = Duration::from_secs(14);
/// How long a capture may lag behind the packets on a loaded machine before the test
/// concludes that echoes it does not hold did not pass there.
const CAPTURE_LAG: Duration = Duration::from_secs(12);

/// What one cell gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Echoes both ways, directly between the NATs.
    Direct,
    /// No echo reply.
    Failed,
}

fn start_client(c: &Client, server: &teredo_lab::Server) -> TestResult<Daemon> {
    let d = miredo::start_client_with(c, server, IFACE, &[TEREDO, "run"])?;
    d.wait_log("Teredo client on", WAIT)?;
    Ok(d)
}

/// Whether `from` gets an echo reply from `to` within `within` (one echo a second).
fn reaches(from: &Client, to: Ipv6Addr, within: Duration) -> bool {
    from.wait_ping6(to, within).is_ok()
}

/// Starts `ping` from `from` to `to`, one echo a second for `secs` seconds.
fn spawn_ping(from: &Client, to: Ipv6Addr, secs: u64) -> TestResult<Daemon> {
    let (n, to) = (secs.to_string(), to.to_string());
    Ok(from.spawn(&format!("ping-{to}"), "ping", &["-6", "-n", "-i", "1", "-c", &n, "-w", &n, &to])?)
}

/// Pings every address of `to` from `from` at once for [`CONNECT_WITHIN`]; which answered.
fn ping_all(from: &Client, to: &[Ipv6Addr]) -> TestResult<Vec<bool>> {
    let pings: Vec<Daemon> =
        to.iter().map(|a| spawn_ping(from, *a, CONNECT_WITHIN.as_secs())).collect::<TestResult<_>>()?;
    std::thread::sleep(CONNECT_WITHIN + Duration::from_secs(1));
    Ok(pings.iter().map(|d| d.log().contains("bytes from")).collect())
}

/// The echo requests from `a` to `b` and the replies seen on `a`'s NAT's `wan` between the
/// NATs' public addresses.
fn direct_echoes(lab: &Lab, a: (Ipv6Addr, &Client), b: (Ipv6Addr, &Client)) -> TestResult<(usize, usize)> {
    let na = a.1.nat.clone().ok_or("no NAT")?;
    let nb = b.1.nat.clone().ok_or("no NAT")?;
    let wan = lab
        .captures()
        .into_iter()
        .find(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{}-wan", na.role())))
        })
        .ok_or("no capture of the NAT's wan")?;
    let set = |v: &[std::net::Ipv4Addr]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let (pa, pb) = (set(&na.publics), set(&nb.publics));
    let q = format!(
        "ip.src in {{{pa}}} && ip.dst in {{{pb}}} && ipv6.src == {} && ipv6.dst == {} && icmpv6.type == 128",
        a.0, b.0
    );
    let r = format!(
        "ip.src in {{{pb}}} && ip.dst in {{{pa}}} && ipv6.src == {} && ipv6.dst == {} && icmpv6.type == 129",
        b.0, a.0
    );
    Ok((crate::tshark(&wan, &q, &["frame.number"])?.len(), crate::tshark(&wan, &r, &["frame.number"])?.len()))
}

/// The display filter of the echo requests and replies between `a` and `b`, either way.
fn echoes_between(a: Ipv6Addr, b: Ipv6Addr) -> String {
    format!("ipv6.addr == {a} && ipv6.addr == {b} && icmpv6.type in {{128, 129}}")
}

/// For a failure message: how many echoes between `a` and `b` each capture of the lab holds.
fn echoes_anywhere(lab: &Lab, a: Ipv6Addr, b: Ipv6Addr) -> TestResult<String> {
    let filter = echoes_between(a, b);
    let mut seen = Vec::new();
    for pcap in lab.captures() {
        let n = crate::tshark(&pcap, &filter, &["frame.number"])?.len();
        let name = pcap.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        seen.push(format!("{name} {n}"));
    }
    Ok(seen.join(", "))
}

/// The bytes queued for `peer` in `node`'s `teredo status --json --peers`.
fn queued_for(node: &Client, peer: Ipv6Addr) -> TestResult<u64> {
    let out = node.exec(TEREDO, &["status", "--json", "--peers"])?;
    let v: Value = serde_json::from_str(out.trim()).map_err(|e| format!("status: {e}: {out}"))?;
    let daemons = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
    let mut queued = 0;
    for d in &daemons {
        for p in d["peer_list"].as_array().into_iter().flatten() {
            if p["address"] == peer.to_string().as_str() {
                queued += p["queued_bytes"].as_u64().unwrap_or(0);
            }
        }
    }
    Ok(queued)
}

/// One row of Figure 1: a client behind `source` and one behind each kind.
fn row(lab: &mut Lab, source: NatKind) -> TestResult<String> {
    let server = lab.server()?;
    let relay = lab.relay()?;
    let host = lab.v6host()?;
    let _server_d = start_teredo_server(&server, &[])?;
    let _relay_d = miredo::start_relay_with(&relay, IFACE, &[TEREDO, "run"])?;
    let me = lab.client_behind(source)?;
    let _me_d = start_client(&me, &server)?;
    let mut peers = Vec::new();
    for d in NatKind::FIGURE_1 {
        let c = lab.client_behind(d)?;
        let daemon = start_client(&c, &server)?;
        peers.push((d, c, daemon));
    }
    let (my_addr, _) = check_qualified(&me, server.primary)?;
    let mut addrs = Vec::new();
    for (_, c, _) in &peers {
        addrs.push(check_qualified(c, server.primary)?.0);
    }
    let mut line = format!("{:<32}", source.name());
    let mut problems = Vec::new();
    // Every pair at once: one echo a second for CONNECT_WITHIN, from me to each peer.
    let there = ping_all(&me, &addrs)?;
    let back: Vec<bool> = {
        let mut v = Vec::new();
        let mut pings = Vec::new();
        for (i, (_, peer, _)) in peers.iter().enumerate() {
            pings.push(there[i].then(|| spawn_ping(peer, my_addr, 5)).transpose()?);
        }
        std::thread::sleep(Duration::from_secs(6));
        for p in pings {
            v.push(p.is_some_and(|d| d.log().contains("bytes from")));
        }
        v
    };
    // A failed try ended within the budget: nothing stays queued for the peer.
    std::thread::sleep(Duration::from_secs(2));
    for (i, ((dest, peer, _), addr)) in peers.iter().zip(&addrs).enumerate() {
        let cell = figure1::support(source, *dest);
        let outcome = if there[i] && back[i] { Outcome::Direct } else { Outcome::Failed };
        if outcome == Outcome::Direct {
            // A loaded machine (CI runs the lab tests side by side) may leave the last packets
            // in a capture's buffer for seconds: look again until CAPTURE_LAG before concluding.
            let mut counts = Ok((0, 0));
            let _ = teredo_lab::wait_for("the direct echoes in the capture", CAPTURE_LAG, || {
                counts = direct_echoes(lab, (my_addr, &me), (*addr, peer));
                matches!(counts, Ok((q, r)) if q > 0 && r > 0)
            });
            let (q, r) = counts?;
            if q == 0 || r == 0 {
                let seen = echoes_anywhere(lab, my_addr, *addr)?;
                problems.push(format!(
                    "{source} -> {dest}: replies came, but not directly ({q} requests, {r} replies \
                     between the NATs' public sides; echoes between the two in each capture: {seen})"
                ));
            }
            let relay_cap = lab
                .captures()
                .into_iter()
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("relay-eth0")))
                .ok_or("no relay capture")?;
            let via =
                crate::tshark(&relay_cap, &format!("ipv6.addr == {my_addr} && ipv6.addr == {addr}"), &[])?;
            if !via.is_empty() {
                problems.push(format!("{source} -> {dest}: {} packets through the relay", via.len()));
            }
            // Nor through the server: it relays bubbles and ICMPv6, so none of their echoes.
            let via_server = crate::tshark(&crate::server_pcap(lab)?, &echoes_between(my_addr, *addr), &[])?;
            if !via_server.is_empty() {
                problems.push(format!("{source} -> {dest}: {} echoes through the server", via_server.len()));
            }
        } else {
            let q = queued_for(&me, *addr)?;
            if q != 0 {
                problems.push(format!("{source} -> {dest}: {q} bytes still queued after the try"));
            }
        }
        let word = match (cell, outcome) {
            (Support::No, Outcome::Direct) => "yes!",
            (Support::No, Outcome::Failed) => "no",
            (_, Outcome::Direct) => "yes",
            (_, Outcome::Failed) => {
                problems.push(format!("{source} -> {dest}: Figure 1 says {}, no connection", cell.label()));
                "FAIL"
            }
        };
        line.push_str(&format!(" {word:<5}"));
    }
    // Whatever failed, the native host is still reached through the relay.
    ensure!(
        reaches(&me, host.ipv6, WAIT),
        "{source}: the v6 host is not reached through the relay afterwards"
    );
    println!("{line}");
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(line)
}

macro_rules! figure1_row {
    ($name:ident, $kind:expr) => {
        #[test]
        fn $name() {
            teredo_lab::run(
                concat!("fig1-", stringify!($name)),
                &["tshark", "miniupnpd"],
                |lab: &mut Lab| row(lab, $kind).map(|_| ()),
            );
        }
    };
}

figure1_row!(figure1_row_cone, NatKind::FullCone);
figure1_row!(figure1_row_address_restricted, NatKind::AddressRestricted);
figure1_row!(figure1_row_port_restricted, NatKind::PortRestricted);
figure1_row!(figure1_row_upnp_port_restricted, NatKind::UpnpPortRestricted);
figure1_row!(figure1_row_upnp_port_symmetric, NatKind::UpnpPortSymmetric);
figure1_row!(figure1_row_port_preserving_symmetric, NatKind::PortPreservingSymmetric);
figure1_row!(figure1_row_sequential_symmetric, NatKind::SequentialSymmetric);
figure1_row!(figure1_row_port_symmetric, NatKind::Symmetric);
figure1_row!(figure1_row_address_symmetric, NatKind::AddressSymmetric);
