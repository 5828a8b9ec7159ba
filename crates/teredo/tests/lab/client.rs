//! `teredo run` as a Teredo client in the lab, point by point of its acceptance list:
//!
//! 1. behind each of the four NAT kinds it qualifies against `teredo server` and against
//!    Debian's `miredo-server`, with an address on its interface that names the server's
//!    primary address and the NAT's real mapping (from the NAT's conntrack table);
//! 2. behind the full-cone, address-restricted and port-restricted NATs it reaches the
//!    native host through Debian's Miredo relay, and a Miredo client and a teredo client
//!    behind other NATs directly: the captures show the echoes between the NATs' public
//!    addresses and nothing between the clients through the relay;
//! 3. behind the symmetric NAT it says so in its log, still qualifies, and reaches the
//!    native host through the Miredo relay, as Miredo's client does there;
//! 4. a new NAT mapping gives a new address (the old one goes), a stopped server takes the
//!    interface down, a restarted one brings it back, with pings working each time;
//! 5. with `ClientHook` it runs the hook with Miredo's environment (a recording script,
//!    then Debian's own `/etc/miredo/client-hook`);
//! 6. its packet path runs with a non-zero uid and no capability, its helper with only
//!    CAP_NET_ADMIN;
//!
//! and beyond the list: detached (no `-f`), its helper is still its own child, which it
//! waits for, and the caller's output is released; it resolves a server host name
//! (Debian's default configuration); and on SIGHUP (Debian's ifupdown hook after a change
//! of network) it qualifies again at once.
//!
//! The mapping-change test runs with Miredo's timers (30 s refresh, so up to 30 s). The
//! tests that lose and regain the server use `teredo run`'s hidden test flags
//! (`--test-refresh-interval-ms` and friends, [`FAST_TIMERS`]): with Miredo's 100 s restart
//! delay they would take minutes.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use teredo_lab::miredo::{self, IFACE};
use teredo_lab::proc_stat::children_of;
use teredo_lab::{Client, Daemon, Lab, NatKind, Server};

use crate::{
    MIREDO_NEEDS, TEREDO, TestResult, WAIT, check_qualified, check_unprivileged, ensure, start_teredo_server,
    status_field, thread_status,
};

/// Starts `teredo run` as a client of `server` in `client` (the lab's client
/// `miredo.conf`, Miredo's flags, then `extra`), and waits until its worker runs.
fn start_teredo_client(client: &Client, server: &Server, extra: &[&str]) -> TestResult<Daemon> {
    let mut command = vec![TEREDO, "run"];
    command.extend_from_slice(extra);
    let d = miredo::start_client_with(client, server, IFACE, &command)?;
    d.wait_log("Teredo client on", WAIT)?;
    Ok(d)
}

/// Which server implementation a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerImpl {
    Teredo,
    Miredo,
}

fn start_server(server: &Server, which: ServerImpl) -> TestResult<Daemon> {
    match which {
        ServerImpl::Teredo => start_teredo_server(server, &[]),
        ServerImpl::Miredo => Ok(miredo::start_server(server)?),
    }
}

// ---------------------------------------------------------------------------------------
// 1. Qualification behind each NAT kind, against both servers
// ---------------------------------------------------------------------------------------

/// `teredo run` behind a NAT of `kind` qualifies against `teredo server`, then (after the
/// NAT forgot the first run's flows) against `miredo-server`; each time the NAT behaviour
/// it logs fits the NAT.
fn qualifies_behind(lab: &mut Lab, kind: NatKind) -> TestResult {
    let server = lab.server()?;
    let client = lab.client_behind(kind)?;
    let nat = client.nat.clone().ok_or("no NAT")?;
    for which in [ServerImpl::Teredo, ServerImpl::Miredo] {
        let t0 = Instant::now();
        let mut server_d = start_server(&server, which)?;
        let mut client_d = start_teredo_client(&client, &server, &[])?;
        let (addr, t) = check_qualified(&client, server.primary)?;
        println!(
            "{kind} / {which:?} server: qualified as {addr} (mapping {}:{}) in {:?}",
            t.mapped_addr,
            t.mapped_port,
            t0.elapsed()
        );
        let line =
            if kind == NatKind::Symmetric { "NAT: symmetric NAT detected" } else { "NAT: one mapping" };
        client_d.wait_log(line, WAIT)?;
        client_d.stop()?;
        server_d.stop()?;
        nat.conntrack_flush()?;
    }
    Ok(())
}

#[test]
fn client_qualifies_behind_full_cone() {
    teredo_lab::run("cli-qualify-full-cone", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::FullCone)
    });
}

#[test]
fn client_qualifies_behind_address_restricted() {
    teredo_lab::run("cli-qualify-address-restricted", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::AddressRestricted)
    });
}

#[test]
fn client_qualifies_behind_port_restricted() {
    teredo_lab::run("cli-qualify-port-restricted", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::PortRestricted)
    });
}

#[test]
fn client_qualifies_behind_symmetric() {
    teredo_lab::run("cli-qualify-symmetric", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::Symmetric)
    });
}

// ---------------------------------------------------------------------------------------
// 2. The native host through a Miredo relay, and Teredo peers directly
// ---------------------------------------------------------------------------------------

/// The capture the lab started on `node`'s interface `iface`.
fn pcap_of(lab: &Lab, role: &str, iface: &str) -> TestResult<std::path::PathBuf> {
    let prefix = format!("{role}-{iface}");
    lab.captures()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .ok_or_else(|| format!("no capture on {role}'s {iface}").into())
}

/// Pings `to` from `from` until a first reply (within [`WAIT`]), then 3 more times (at
/// least one reply), naming the pair as `what` in the error.
fn pings(from: &Client, to: Ipv6Addr, what: &str) -> TestResult {
    let t0 = Instant::now();
    from.wait_ping6(to, WAIT).map_err(|e| format!("{what}: {e}"))?;
    let first = t0.elapsed();
    ensure!(from.ping6(to, 3), "{what}: {to} answered once, then not again");
    println!("{what}: first reply after {first:?}");
    Ok(())
}

/// Checks in the captures that the echoes between the Teredo addresses `a` (behind the NAT
/// `nat_a`) and `b` (behind `nat_b`) went directly between the NATs' public addresses,
/// and that nothing between them passed the relay.
fn check_direct(lab: &Lab, a: (Ipv6Addr, &Client), b: (Ipv6Addr, &Client)) -> TestResult {
    let (na, nb) = (a.1.nat.clone().ok_or("no NAT")?, b.1.nat.clone().ok_or("no NAT")?);
    let wan = pcap_of(lab, na.role(), "wan")?;
    let filter = format!(
        "ip.src == {} && ip.dst == {} && ipv6.src == {} && ipv6.dst == {} && icmpv6.type == 128",
        na.public, nb.public, a.0, b.0
    );
    let requests = crate::tshark(&wan, &filter, &["frame.number"])?;
    ensure!(!requests.is_empty(), "no echo request from {} to {} between the NATs ({filter})", a.0, b.0);
    let filter = format!(
        "ip.src == {} && ip.dst == {} && ipv6.src == {} && ipv6.dst == {} && icmpv6.type == 129",
        nb.public, na.public, b.0, a.0
    );
    let replies = crate::tshark(&wan, &filter, &["frame.number"])?;
    ensure!(!replies.is_empty(), "no echo reply from {} to {} between the NATs ({filter})", b.0, a.0);
    let relay = pcap_of(lab, "relay", "eth0")?;
    let filter = format!("ipv6.addr == {} && ipv6.addr == {}", a.0, b.0);
    let via_relay = crate::tshark(&relay, &filter, &["frame.number"])?;
    ensure!(via_relay.is_empty(), "{} packets between {} and {} passed the relay", via_relay.len(), a.0, b.0);
    println!(
        "{} -> {}: {} echo requests and {} replies between {} and {}, none through the relay",
        a.0,
        b.0,
        requests.len(),
        replies.len(),
        na.public,
        nb.public
    );
    Ok(())
}

/// `teredo run` behind a NAT of `kind` (on `teredo server`) pings the native host through
/// Debian's Miredo relay (and the host pings it back), then Teredo peers, each behind its
/// own port-restricted NAT and fresh when first contacted: a Miredo client and a teredo
/// client that it pings first (they answer, then ping it back), and another Miredo client
/// and teredo client that ping it first. Every pair talks directly (see
/// [`check_direct`]).
fn reaches_peers_from(lab: &mut Lab, kind: NatKind) -> TestResult {
    let server = lab.server()?;
    let relay = lab.relay()?;
    let host = lab.v6host()?;
    let me = lab.client_behind(kind)?;
    let _server_d = start_teredo_server(&server, &[])?;
    let _relay_d = miredo::start_relay(&relay, IFACE)?;
    let _me_d = start_teredo_client(&me, &server, &[])?;
    // (name, client, Miredo?, I ping first?)
    let mut peers = Vec::new();
    let mut daemons = Vec::new();
    for (name, is_miredo, i_first) in [
        ("Miredo peer (pinged first)", true, true),
        ("teredo peer (pinged first)", false, true),
        ("Miredo peer (pings first)", true, false),
        ("teredo peer (pings first)", false, false),
    ] {
        let c = lab.client_behind(NatKind::PortRestricted)?;
        daemons.push(if is_miredo {
            miredo::start_client(&c, &server, IFACE)?
        } else {
            start_teredo_client(&c, &server, &[])?
        });
        peers.push((name, c, i_first));
    }
    let (addr, _) = check_qualified(&me, server.primary)?;

    pings(&me, host.ipv6, &format!("{kind} teredo -> v6 host"))?;
    ensure!(host.ping6(addr, 3), "v6 host -> {kind} teredo {addr} failed");
    for (name, peer, i_first) in &peers {
        let (peer_addr, _) = peer.wait_teredo_address(IFACE, WAIT)?;
        if *i_first {
            pings(&me, peer_addr, &format!("{kind} teredo -> {name}"))?;
            pings(peer, addr, &format!("{name} -> {kind} teredo"))?;
        } else {
            pings(peer, addr, &format!("{name} -> {kind} teredo"))?;
            pings(&me, peer_addr, &format!("{kind} teredo -> {name}"))?;
        }
        check_direct(lab, (addr, &me), (peer_addr, peer))?;
        check_direct(lab, (peer_addr, peer), (addr, &me))?;
    }
    drop(daemons);
    Ok(())
}

#[test]
fn client_reaches_peers_from_full_cone() {
    teredo_lab::run("cli-peers-full-cone", MIREDO_NEEDS, |lab: &mut Lab| {
        reaches_peers_from(lab, NatKind::FullCone)
    });
}

#[test]
fn client_reaches_peers_from_address_restricted() {
    teredo_lab::run("cli-peers-address-restricted", MIREDO_NEEDS, |lab: &mut Lab| {
        reaches_peers_from(lab, NatKind::AddressRestricted)
    });
}

#[test]
fn client_reaches_peers_from_port_restricted() {
    teredo_lab::run("cli-peers-port-restricted", MIREDO_NEEDS, |lab: &mut Lab| {
        reaches_peers_from(lab, NatKind::PortRestricted)
    });
}

// ---------------------------------------------------------------------------------------
// 3. Behind a symmetric NAT
// ---------------------------------------------------------------------------------------

/// Behind a symmetric NAT `teredo run` logs that it found one, qualifies all the same, and
/// reaches the native host through Debian's Miredo relay (the host pings it back), as
/// Debian's Miredo client does behind another symmetric NAT in the same lab.
#[test]
fn client_behind_symmetric_nat_reaches_v6_host() {
    teredo_lab::run("cli-symmetric", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let me = lab.client_behind(NatKind::Symmetric)?;
        let reference = lab.client_behind(NatKind::Symmetric)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let _relay_d = miredo::start_relay(&relay, IFACE)?;
        let me_d = start_teredo_client(&me, &server, &[])?;
        let _ref_d = miredo::start_client(&reference, &server, IFACE)?;
        let (addr, _) = check_qualified(&me, server.primary)?;
        me_d.wait_log("NAT: symmetric NAT detected", WAIT)?;
        let line = me_d.log().lines().find(|l| l.contains("NAT: ")).unwrap_or_default().to_owned();
        println!("teredo's log: {line}");
        ensure!(!me_d.log().contains("NAT: one mapping"), "both NAT findings logged:\n{}", me_d.log());
        pings(&reference, host.ipv6, "Miredo behind a symmetric NAT -> v6 host")?;
        pings(&me, host.ipv6, "teredo behind a symmetric NAT -> v6 host")?;
        ensure!(host.ping6(addr, 3), "v6 host -> teredo {addr} behind the symmetric NAT failed");
        Ok(())
    });
}

/// Which client implementation a peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientImpl {
    Teredo,
    Miredo,
}

impl ClientImpl {
    fn name(self) -> &'static str {
        match self {
            Self::Teredo => "teredo",
            Self::Miredo => "Miredo",
        }
    }

    fn start(self, c: &Client, server: &Server) -> TestResult<Daemon> {
        match self {
            Self::Teredo => start_teredo_client(c, server, &[]),
            Self::Miredo => Ok(miredo::start_client(c, server, IFACE)?),
        }
    }
}

/// A client (`first`) behind a NAT of `first_kind` pings a client (`second`) behind a NAT
/// of `second_kind` first, then is pinged back; the echoes go directly between the NATs
/// (see [`check_direct`]). With one side behind a symmetric NAT this works only through
/// the keyed bubbles of Miredo's `CheckBubble`: the symmetric side answers the other's
/// indirect bubble from a new mapping, which the other verifies by the token.
fn pair_talks_directly(
    lab: &mut Lab,
    first: (ClientImpl, NatKind),
    second: (ClientImpl, NatKind),
) -> TestResult {
    let server = lab.server()?;
    let _relay = lab.relay()?;
    let a = lab.client_behind(first.1)?;
    let b = lab.client_behind(second.1)?;
    let _server_d = start_teredo_server(&server, &[])?;
    let _a_d = first.0.start(&a, &server)?;
    let _b_d = second.0.start(&b, &server)?;
    let (a_addr, _) = check_qualified(&a, server.primary)?;
    let (b_addr, _) = check_qualified(&b, server.primary)?;
    let an = format!("{} behind {}", first.0.name(), first.1);
    let bn = format!("{} behind {}", second.0.name(), second.1);
    pings(&a, b_addr, &format!("{an} -> {bn}"))?;
    pings(&b, a_addr, &format!("{bn} -> {an}"))?;
    check_direct(lab, (a_addr, &a), (b_addr, &b))?;
    check_direct(lab, (b_addr, &b), (a_addr, &a))?;
    Ok(())
}

/// Debian's Miredo client behind an address-restricted NAT reaches `teredo run` behind a
/// symmetric NAT directly (it verifies our reply bubble by its token).
#[test]
fn miredo_client_reaches_client_behind_symmetric_nat_directly() {
    teredo_lab::run("cli-sym-from-miredo", MIREDO_NEEDS, |lab: &mut Lab| {
        pair_talks_directly(
            lab,
            (ClientImpl::Miredo, NatKind::AddressRestricted),
            (ClientImpl::Teredo, NatKind::Symmetric),
        )
    });
}

/// `teredo run` behind an address-restricted NAT reaches Debian's Miredo client behind a
/// symmetric NAT directly (we verify Miredo's reply bubble by our token), as one Miredo
/// client reaches the other there.
#[test]
fn client_reaches_miredo_client_behind_symmetric_nat_directly() {
    teredo_lab::run("cli-sym-to-miredo", MIREDO_NEEDS, |lab: &mut Lab| {
        pair_talks_directly(
            lab,
            (ClientImpl::Teredo, NatKind::AddressRestricted),
            (ClientImpl::Miredo, NatKind::Symmetric),
        )
    });
}

/// Two `teredo run` clients, one behind a symmetric NAT: the other reaches it directly.
#[test]
fn client_reaches_teredo_client_behind_symmetric_nat_directly() {
    teredo_lab::run("cli-sym-to-teredo", &[], |lab: &mut Lab| {
        pair_talks_directly(
            lab,
            (ClientImpl::Teredo, NatKind::AddressRestricted),
            (ClientImpl::Teredo, NatKind::Symmetric),
        )
    });
}

// ---------------------------------------------------------------------------------------
// 6. Privileges
// ---------------------------------------------------------------------------------------

/// Every thread of the qualified `teredo run` client has non-zero uids and empty
/// permitted and effective capability sets; its privileged helper (its only child) runs
/// under a non-zero uid too, with exactly CAP_NET_ADMIN permitted and effective.
#[test]
fn client_runs_unprivileged() {
    teredo_lab::run("cli-privileges", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let d = start_teredo_client(&client, &server, &[])?;
        check_qualified(&client, server.primary)?;
        let pid = d.pid().ok_or("client not running")?;
        let threads = check_unprivileged(pid, "teredo run")?;
        ensure!(threads >= 2, "only {threads} thread(s): no worker?");
        let helpers = children_of(pid);
        ensure!(helpers.len() == 1, "teredo run has children {helpers:?}, expected only its helper");
        for (tid, status) in thread_status(helpers[0])? {
            let name = status_field(&status, "Name");
            let uid = status_field(&status, "Uid");
            let (prm, eff) = (status_field(&status, "CapPrm"), status_field(&status, "CapEff"));
            let bnd = status_field(&status, "CapBnd");
            println!("helper {tid} ({name}): Uid {uid} CapPrm {prm} CapEff {eff} CapBnd {bnd}");
            ensure!(uid.split_whitespace().all(|u| u != "0"), "helper {tid} has Uid {uid}");
            for (set, v) in [("CapPrm", prm), ("CapEff", eff), ("CapBnd", bnd)] {
                ensure!(
                    u64::from_str_radix(v, 16).ok() == Some(1 << 12),
                    "helper {tid} ({name}) has {set} {v}, not CAP_NET_ADMIN alone (0x1000)"
                );
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// 4. A new mapping, a lost server, a server back
// ---------------------------------------------------------------------------------------

/// Shortened client timers (hidden flags of `teredo run`, for tests only): refresh every
/// 2 s, 0.5 s reply timeout (so 1.5 s of silence means loss), 1 s restart delay. With
/// Miredo's (30 s, 3 × 4 s, 100 s) losing and regaining the server takes minutes.
const FAST_TIMERS: &[&str] = &[
    "--test-refresh-interval-ms",
    "2000",
    "--test-reply-timeout-ms",
    "500",
    "--test-restart-delay-ms",
    "1000",
];

/// Gives `client`'s NAT a new mapping for its flows, as a rebooted home router does: the
/// NAT forgets its connections (`conntrack -F`) and, since Linux's masquerade would
/// otherwise give the client its old public port again (it keeps the source port when it
/// can), UDP now leaves from ports 20000-20999, below Linux's ephemeral range, so never the
/// old one. Inbound datagrams to the old port find no connection and are dropped.
fn change_mapping(client: &Client) -> TestResult {
    let nat = client.nat.clone().ok_or("no NAT")?;
    nat.exec(
        "nft",
        &[
            "insert",
            "rule",
            "ip",
            "lab",
            "srcnat",
            "oifname",
            "wan",
            "meta",
            "l4proto",
            "udp",
            "masquerade",
            "to",
            ":20000-20999",
        ],
    )?;
    nat.conntrack_flush()?;
    Ok(())
}

/// Waits until `client`'s Teredo address is another than `old`, at most `timeout`, and
/// checks the new one as [`check_qualified`] does; `old` must be gone from the interface.
fn wait_new_address(
    client: &Client,
    old: Ipv6Addr,
    primary: Ipv4Addr,
    timeout: Duration,
) -> TestResult<Ipv6Addr> {
    let t0 = Instant::now();
    teredo_lab::wait_until(&format!("a Teredo address other than {old}"), timeout, || {
        Ok(client.teredo_address(IFACE)?.filter(|(a, _)| *a != old))
    })?;
    let took = t0.elapsed();
    let (addr, t) = check_qualified(client, primary)?;
    let all = client.ipv6_addrs(IFACE)?;
    ensure!(!all.contains(&old), "the old address {old} is still on {IFACE}: {all:?}");
    println!("new address {addr} (mapping {}:{}) {took:?} after the change", t.mapped_addr, t.mapped_port);
    Ok(addr)
}

/// With Miredo's timers (30 s refresh): the NAT gives the client a new public port; within
/// 45 s the client has a new address that embeds it, the old one is gone from the
/// interface, and the native host is reachable again, both ways.
#[test]
fn client_takes_new_address_when_the_mapping_changes() {
    teredo_lab::run("cli-new-mapping", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let _relay_d = miredo::start_relay(&relay, IFACE)?;
        let d = start_teredo_client(&client, &server, &[])?;
        let (old, _) = check_qualified(&client, server.primary)?;
        pings(&client, host.ipv6, "before the change: teredo -> v6 host")?;
        change_mapping(&client)?;
        let new = wait_new_address(&client, old, server.primary, Duration::from_secs(45))?;
        pings(&client, host.ipv6, "after the change: teredo -> v6 host")?;
        ensure!(host.ping6(new, 3), "v6 host -> new address {new} failed");
        ensure!(
            d.log().contains(&format!("New Teredo address {new}")),
            "no log line for {new}:\n{}",
            d.log()
        );
        Ok(())
    });
}

/// After a change of network Debian's ifupdown hook sends SIGHUP, on which Miredo
/// restarts and qualifies again at once. With Miredo's timers (30 s refresh), `teredo run`
/// takes the new mapping within 5 s of a SIGHUP, well before its next refresh, and the
/// native host is reachable again.
#[test]
fn client_solicits_again_on_sighup() {
    teredo_lab::run("cli-sighup", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let _relay_d = miredo::start_relay(&relay, IFACE)?;
        let d = start_teredo_client(&client, &server, &[])?;
        let (old, _) = check_qualified(&client, server.primary)?;
        pings(&client, host.ipv6, "before SIGHUP: teredo -> v6 host")?;
        change_mapping(&client)?;
        d.signal(libc::SIGHUP)?;
        let new = wait_new_address(&client, old, server.primary, Duration::from_secs(5))?;
        ensure!(d.log().contains("SIGHUP: soliciting the Teredo server again"), "log:\n{}", d.log());
        pings(&client, host.ipv6, "after SIGHUP: teredo -> v6 host")?;
        ensure!(host.ping6(new, 3), "v6 host -> new address {new} failed");
        Ok(())
    });
}

/// Whether `iface` is administratively up (`ip -j link show`: flag "UP").
fn link_up(client: &Client, iface: &str) -> teredo_lab::Result<bool> {
    let out = client.ip(&["-j", "link", "show", "dev", iface])?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| teredo_lab::LabError::Invalid(format!("ip -j link show: {e}")))?;
    let flags = v[0]["flags"]
        .as_array()
        .ok_or_else(|| teredo_lab::LabError::Invalid(format!("no flags in {out}")))?;
    Ok(flags.iter().any(|f| f == "UP"))
}

/// Waits until `iface` has no Teredo address and its link is down.
fn wait_down(client: &Client, timeout: Duration) -> TestResult<Duration> {
    let t0 = Instant::now();
    teredo_lab::wait_until("the Teredo interface to go down", timeout, || {
        Ok((client.teredo_address(IFACE)?.is_none() && !link_up(client, IFACE)?).then_some(()))
    })?;
    Ok(t0.elapsed())
}

/// With short timers: stopping the server takes the interface down (no Teredo address,
/// link down, "Lost Teredo connectivity" logged); starting it again brings the address
/// back and the native host is reachable again.
#[test]
fn client_goes_down_and_up_with_its_server() {
    teredo_lab::run("cli-server-loss", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let mut server_d = start_teredo_server(&server, &[])?;
        let _relay_d = miredo::start_relay(&relay, IFACE)?;
        let d = start_teredo_client(&client, &server, FAST_TIMERS)?;
        check_qualified(&client, server.primary)?;
        pings(&client, host.ipv6, "teredo -> v6 host")?;
        server_d.stop()?;
        let took = wait_down(&client, Duration::from_secs(10))?;
        println!("interface down {took:?} after the server stopped");
        d.wait_log("Lost Teredo connectivity", WAIT)?;
        ensure!(!client.ping6(host.ipv6, 1), "the v6 host answered while the client is down");
        server_d.start()?;
        let t0 = Instant::now();
        let (addr, _) = check_qualified(&client, server.primary)?;
        ensure!(link_up(&client, IFACE)?, "{IFACE} has {addr} but is down");
        println!("address {addr} back {:?} after the server started", t0.elapsed());
        pings(&client, host.ipv6, "server back: teredo -> v6 host")?;
        ensure!(host.ping6(addr, 3), "v6 host -> {addr} failed");
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// 5. The client hook
// ---------------------------------------------------------------------------------------

/// Debian's Linux client hook, which `miredo-privproc` runs.
const DEBIAN_HOOK: &str = "/etc/miredo/client-hook";

/// Starts `teredo run` as a client of `server` with `ClientHook hook` added to the lab's
/// client configuration.
fn start_hooked_client(client: &Client, server: &Server, hook: &str, extra: &[&str]) -> TestResult<Daemon> {
    let mut command = vec![TEREDO, "run"];
    command.extend_from_slice(extra);
    let config = format!("{}ClientHook {hook}\n", miredo::client_config(server, IFACE));
    let d = miredo::start_with(client, "teredo-hooked", &command, &config)?;
    d.wait_log("Teredo client on", WAIT)?;
    Ok(d)
}

/// The environments a recording hook wrote to `record`, one map per run, without the
/// `PWD` that `/bin/sh` adds by itself.
fn hook_runs(record: &std::path::Path) -> TestResult<Vec<std::collections::BTreeMap<String, String>>> {
    let text = std::fs::read_to_string(record)?;
    let mut runs = Vec::new();
    let mut cur = std::collections::BTreeMap::new();
    for line in text.lines() {
        if line == "--- end of run" {
            runs.push(std::mem::take(&mut cur));
        } else if let Some((k, v)) = line.split_once('=')
            && k != "PWD"
        {
            cur.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(runs)
}

/// The environment Miredo's privproc gives a hook (miredo-facts §1.8) for `state` after a
/// run whose state was `old` (each `Some((address, mtu))` when up).
fn miredo_env(
    state: &str,
    up: Option<(Ipv6Addr, u16)>,
    old_state: &str,
    old: Option<(Ipv6Addr, u16)>,
    ifindex: u32,
) -> std::collections::BTreeMap<String, String> {
    let mut e = std::collections::BTreeMap::new();
    let mut set = |k: &str, v: String| {
        e.insert(k.to_owned(), v);
    };
    set("STATE", state.into());
    set("OLD_STATE", old_state.into());
    set("IFACE", IFACE.into());
    set("IFINDEX", ifindex.to_string());
    if let Some((a, mtu)) = up {
        set("ADDRESS", a.to_string());
        set("LLADDRESS", "fe80::ffff:ffff:ffff".into());
        set("MTU", mtu.to_string());
    }
    if let Some((a, mtu)) = old {
        set("OLD_ADDRESS", a.to_string());
        set("OLD_LLADDRESS", "fe80::ffff:ffff:ffff".into());
        set("OLD_MTU", mtu.to_string());
    }
    e
}

/// Waits until the recording hook has run `n` times.
fn wait_runs(
    record: &std::path::Path,
    n: usize,
) -> TestResult<Vec<std::collections::BTreeMap<String, String>>> {
    teredo_lab::wait_for(&format!("{n} runs of the hook"), WAIT, || {
        hook_runs(record).is_ok_and(|r| r.len() >= n)
    })?;
    hook_runs(record)
}

/// `ClientHook` with a hook that appends its environment to a file, then hands over to
/// Debian's hook (so the interface is configured and pings work): a first qualification
/// gives `up` with OLD_STATE=down; a new mapping gives `up` with the previous address in
/// OLD_*; a stopped server gives `down` (and the interface is down); a restarted one gives
/// `up` without OLD_*; stopping the client gives `down` then `destroy`. Each environment
/// is exactly Miredo's: these variables and nothing else (no PATH).
#[test]
fn client_runs_hook_with_miredos_environment() {
    teredo_lab::run("cli-hook-env", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        use std::os::unix::fs::PermissionsExt;
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let record = client.write_artifact("hook-env.txt", "")?;
        std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666))?;
        let hook = client.write_artifact(
            "record-hook.sh",
            &format!(
                "#!/bin/sh\n# Appends its environment to {rec}, then runs Debian's hook.\n\
                 /usr/bin/env >> {rec}\necho '--- end of run' >> {rec}\nexec {DEBIAN_HOOK}\n",
                rec = record.display()
            ),
        )?;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
        let hook = hook.to_string_lossy().into_owned();

        let mut server_d = start_teredo_server(&server, &[])?;
        let _relay_d = miredo::start_relay(&relay, IFACE)?;
        let mut d = start_hooked_client(&client, &server, &hook, FAST_TIMERS)?;
        let (a1, _) = check_qualified(&client, server.primary)?;
        let ifindex: u32 =
            client.exec("cat", &[&format!("/sys/class/net/{IFACE}/ifindex")])?.trim().parse()?;
        pings(&client, host.ipv6, "hook: teredo -> v6 host")?;
        let mtu = 1280;
        let mut want = vec![miredo_env("up", Some((a1, mtu)), "down", None, ifindex)];

        change_mapping(&client)?;
        let a2 = wait_new_address(&client, a1, server.primary, Duration::from_secs(10))?;
        want.push(miredo_env("up", Some((a2, mtu)), "up", Some((a1, mtu)), ifindex));
        pings(&client, host.ipv6, "hook, new mapping: teredo -> v6 host")?;

        server_d.stop()?;
        wait_down(&client, Duration::from_secs(10))?;
        want.push(miredo_env("down", None, "up", Some((a2, mtu)), ifindex));
        ensure!(
            wait_runs(&record, 3)?[..] == want[..],
            "hook runs so far:\n{:#?}\nwanted:\n{want:#?}",
            hook_runs(&record)?
        );

        server_d.start()?;
        let (a3, _) = check_qualified(&client, server.primary)?;
        ensure!(a3 == a2, "the same mapping gave another address: {a2} then {a3}");
        want.push(miredo_env("up", Some((a3, mtu)), "down", None, ifindex));
        pings(&client, host.ipv6, "hook, server back: teredo -> v6 host")?;

        d.stop()?;
        want.push(miredo_env("down", None, "up", Some((a3, mtu)), ifindex));
        want.push(miredo_env("destroy", None, "down", None, ifindex));
        let runs = hook_runs(&record)?;
        for (i, r) in runs.iter().enumerate() {
            println!(
                "hook run {}: {}",
                i + 1,
                r.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            );
        }
        ensure!(runs == want, "hook runs:\n{runs:#?}\nwanted:\n{want:#?}");
        Ok(())
    });
}

/// `ip -6 addr` and `ip -6 route` of `client`'s Teredo interface, with its Teredo
/// address written ADDRESS and the kernel's own random link-local (which the kernel adds
/// when the hook sets the link up, under Miredo as under teredo) written KERNEL-LL, for
/// comparing two clients.
fn interface_shape(client: &Client) -> TestResult<(Vec<String>, Vec<String>)> {
    let (addr, _) = client.teredo_address(IFACE)?.ok_or("no Teredo address")?;
    let a = addr.to_string();
    let addrs: Vec<String> =
        client
            .ip(&["-6", "-o", "addr", "show", "dev", IFACE])?
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(|s| s.replace(&a, "ADDRESS")))
            .map(|s| {
                if s.starts_with("fe80:") && s != "fe80::ffff:ffff:ffff/64" {
                    "KERNEL-LL/64".into()
                } else {
                    s
                }
            })
            .collect();
    let mut routes: Vec<String> = client
        .ip(&["-6", "route", "show", "dev", IFACE])?
        .lines()
        .map(|l| l.replace(&a, "ADDRESS").split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    routes.sort();
    let mut addrs = addrs;
    addrs.sort();
    Ok((addrs, routes))
}

/// `ClientHook /etc/miredo/client-hook`: Debian's own hook, run by our helper, configures
/// the interface as it does under Miredo (address /32, link-local /64, default route metric
/// 1029, same MTU and link state as a Miredo client in the same lab), and the native host
/// is reachable through it.
#[test]
fn client_runs_debians_hook() {
    teredo_lab::run("cli-debian-hook", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let reference = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let _relay_d = miredo::start_relay(&relay, IFACE)?;
        let mut d = start_hooked_client(&client, &server, DEBIAN_HOOK, &[])?;
        let _ref_d = miredo::start_client(&reference, &server, IFACE)?;
        let (addr, _) = check_qualified(&client, server.primary)?;
        reference.wait_teredo_address(IFACE, WAIT)?;
        let (addrs, routes) = interface_shape(&client)?;
        println!("teredo + Debian's hook: addresses {addrs:?}, routes {routes:?}");
        ensure!(addrs.contains(&"ADDRESS/32".to_owned()), "no ADDRESS/32 in {addrs:?}");
        ensure!(addrs.contains(&"fe80::ffff:ffff:ffff/64".to_owned()), "no link-local /64 in {addrs:?}");
        ensure!(
            routes.iter().any(|r| r.starts_with("default") && r.contains("metric 1029")),
            "no default route with metric 1029 in {routes:?}"
        );
        let miredo_shape = interface_shape(&reference)?;
        println!("Miredo: addresses {:?}, routes {:?}", miredo_shape.0, miredo_shape.1);
        ensure!((addrs, routes) == miredo_shape, "teredo's interface differs from Miredo's");
        let mtu = |c: &Client| c.exec("cat", &[&format!("/sys/class/net/{IFACE}/mtu")]);
        ensure!(
            mtu(&client)? == mtu(&reference)?,
            "MTU {} instead of Miredo's {}",
            mtu(&client)?,
            mtu(&reference)?
        );
        ensure!(link_up(&client, IFACE)?, "{IFACE} is down");
        pings(&client, host.ipv6, "Debian's hook: teredo -> v6 host")?;
        ensure!(host.ping6(addr, 3), "v6 host -> {addr} failed");
        d.stop()?;
        ensure!(!d.log().contains("exit status"), "the hook failed:\n{}", d.log());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// Detached (no -f)
// ---------------------------------------------------------------------------------------

/// Kills a process this test started outside a [`Daemon`] guard (a detached daemon leaves
/// the guard's process group), so that nothing outlives the lab.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if teredo_lab::daemon::process_alive(pid) {
                // SAFETY: kill(2) has no memory-safety preconditions; pid is a process
                // this test started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// Without `-f`, `teredo run` detaches (fork, new session) as Miredo does, and its
/// privileged helper must still be the daemon's own child: the daemon waits for the
/// helper's final `down` and `destroy` when it stops, and exits only after the helper.
#[test]
fn client_detached_keeps_its_helper() {
    teredo_lab::run("cli-detached", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let conf = client.write_artifact("detached.conf", &miredo::client_config(&server, IFACE))?;
        let pidfile = client.artifact_path("detached.pid");
        let (conf, pidfile_s) = (conf.to_string_lossy().into_owned(), pidfile.to_string_lossy().into_owned());
        let mut launcher =
            client.spawn("teredo-detached", TEREDO, &["run", "-c", &conf, "-p", &pidfile_s])?;
        let status = launcher.wait_exit(WAIT)?;
        ensure!(status.success(), "the launching process exited with {status}:\n{}", launcher.log());
        let pid: u32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
        let mut guard = KillOnDrop(vec![pid]);
        check_qualified(&client, server.primary)?;
        let helpers = children_of(pid);
        let all_helpers: Vec<u32> = client
            .pids()?
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "teredo-helper")
            })
            .collect();
        guard.0.extend(&all_helpers);
        println!("daemon {pid}: children {helpers:?}; helpers in the namespace {all_helpers:?}");
        ensure!(
            helpers.len() == 1 && all_helpers == helpers,
            "the daemon {pid} has children {helpers:?}, the helpers in the namespace are {all_helpers:?}"
        );
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        teredo_lab::wait_for("the detached daemon to exit", WAIT, || {
            !teredo_lab::daemon::process_alive(pid)
        })?;
        ensure!(
            !teredo_lab::daemon::process_alive(helpers[0]),
            "the daemon exited before its helper {}",
            helpers[0]
        );
        Ok(())
    });
}

/// Started detached from a caller that reads its output through a pipe (as `ssh host
/// teredo run` or a `$(...)` does), `teredo run` must let go of that pipe once it is
/// ready: the caller sees end of file when the launching process exits. The helper, forked
/// before the daemon points its standard streams at /dev/null, must not keep them.
#[test]
fn client_detached_releases_the_callers_output() {
    teredo_lab::run("cli-detached-pipe", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let conf = client.write_artifact("detached.conf", &miredo::client_config(&server, IFACE))?;
        let pidfile = client.artifact_path("detached.pid");
        let mut launcher = Command::new("ip")
            .args(["netns", "exec", client.ns(), TEREDO, "run", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut out = launcher.stdout.take().ok_or("no stdout")?;
        let mut err = launcher.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let r = out.read_to_string(&mut text).and_then(|_| err.read_to_string(&mut text));
            let _ = tx.send((r.is_ok(), text));
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = launcher.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = launcher.kill();
                let _ = launcher.wait();
                return Err("the launching process did not exit within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut guard = KillOnDrop(Vec::new());
        if let Ok(pid) = std::fs::read_to_string(&pidfile).unwrap_or_default().trim().parse::<u32>() {
            guard.0.push(pid);
            guard.0.extend(children_of(pid));
        }
        ensure!(status.success(), "the launching process exited with {status}");
        check_qualified(&client, server.primary)?;
        let eof = rx.recv_timeout(Duration::from_secs(5));
        ensure!(
            eof.is_ok(),
            "the caller's stdout/stderr are still open 5 s after the launching process exited \
             (held by {})",
            client
                .pids()?
                .iter()
                .map(|p| format!(
                    "{p}: {:?}",
                    (0..3)
                        .map(|fd| std::fs::read_link(format!("/proc/{p}/fd/{fd}")).unwrap_or_default())
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// A server host name (Debian's default configuration names its server)
// ---------------------------------------------------------------------------------------

/// Removes a directory `/etc/netns/NS` when dropped, and `/etc/netns` too if this test
/// created it and it is left empty.
struct RemoveDir {
    dir: std::path::PathBuf,
    created_parent: bool,
}

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.created_parent
            && let Some(parent) = self.dir.parent()
        {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// `ServerAddress teredo.lab.example`, a name the client's namespace resolves through its
/// own hosts file (`ip netns exec` mounts `/etc/netns/NS/hosts` over `/etc/hosts`; the
/// directory is this test's namespace's and is removed at the end): the unprivileged
/// worker resolves it and qualifies with the server's primary address.
#[test]
fn client_resolves_its_server_name() {
    teredo_lab::run("cli-server-name", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let dir = std::path::PathBuf::from(format!("/etc/netns/{}", client.ns()));
        let created_parent = !std::path::Path::new("/etc/netns").exists();
        std::fs::create_dir_all(&dir)?;
        let _remove = RemoveDir { dir: dir.clone(), created_parent };
        std::fs::write(
            dir.join("hosts"),
            format!("127.0.0.1 localhost\n{} teredo.lab.example\n", server.primary),
        )?;
        // Should the hosts file ever miss, the resolver asks loopback, never the machine's
        // own nameserver: no query may leave the lab.
        std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")?;
        let _server_d = start_teredo_server(&server, &[])?;
        let config = format!("RelayType client\nInterfaceName {IFACE}\nServerAddress teredo.lab.example\n");
        let _d = miredo::start_with(&client, "teredo-named", &[TEREDO, "run"], &config)?;
        let (addr, _) = check_qualified(&client, server.primary)?;
        println!("qualified as {addr} through the name teredo.lab.example");
        Ok(())
    });
}
