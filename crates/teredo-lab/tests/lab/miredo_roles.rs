//! Miredo 1.2.6 in every role inside the lab: a client qualifies behind each NAT kind
//! against `miredo-server`, two clients behind different NATs ping each other, and a
//! client reaches a native IPv6 host through a `miredo` relay (and back).

use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Lab, NatKind};

use crate::{MIREDO_NEEDS, TestResult, WAIT, ensure};

/// A Miredo client behind a NAT of `kind` qualifies: its Teredo address names the lab
/// server and the NAT's public IPv4, and its port is the NAT's mapping of the flow to the
/// server.
fn qualifies_behind(lab: &mut Lab, kind: NatKind) -> TestResult {
    let server = lab.server()?;
    let client = lab.client_behind(kind)?;
    let _server_d = miredo::start_server(&server)?;
    let _client_d = miredo::start_client(&client, &server, IFACE)?;
    let (addr, teredo) = client.wait_qualified(IFACE, server.primary, WAIT)?;
    println!("{kind}: qualified as {addr} (mapping {}:{})", teredo.mapped_addr, teredo.mapped_port);
    // The client hook (run by miredo-privproc) installed the default route in the
    // client's namespace.
    let routes = client.ip(&["-6", "route", "show", "default"])?;
    ensure!(routes.contains(IFACE), "no default route via {IFACE}: {routes}");
    Ok(())
}

#[test]
fn miredo_qualifies_behind_full_cone() {
    teredo_lab::run("miredo-qualify-full-cone", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::FullCone)
    });
}

#[test]
fn miredo_qualifies_behind_address_restricted() {
    teredo_lab::run("miredo-qualify-address-restricted", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::AddressRestricted)
    });
}

#[test]
fn miredo_qualifies_behind_port_restricted() {
    teredo_lab::run("miredo-qualify-port-restricted", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::PortRestricted)
    });
}

#[test]
fn miredo_qualifies_behind_symmetric() {
    teredo_lab::run("miredo-qualify-symmetric", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::Symmetric)
    });
}

/// A Miredo client behind a NAT of each Figure 1 kind the four tests above do not cover
/// qualifies, its address embedding the mapping the NAT (conntrack or userland NAT) shows
/// for its flow to the server.
#[test]
fn miredo_qualifies_behind_the_other_figure_1_kinds() {
    let kinds: Vec<NatKind> = NatKind::FIGURE_1
        .into_iter()
        .filter(|k| {
            ![NatKind::FullCone, NatKind::AddressRestricted, NatKind::PortRestricted, NatKind::Symmetric]
                .contains(k)
        })
        .collect();
    let mut needs = MIREDO_NEEDS.to_vec();
    needs.extend(kinds.iter().flat_map(|k| k.programs().iter().copied()));
    needs.dedup();
    teredo_lab::run("miredo-qualify-figure-1", &needs, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let _server_d = miredo::start_server(&server)?;
        let mut running = Vec::new();
        let mut clients = Vec::new();
        for kind in &kinds {
            let client = lab.client_behind(*kind)?;
            running.push(miredo::start_client(&client, &server, IFACE)?);
            clients.push((*kind, client));
        }
        for (kind, client) in &clients {
            let (addr, t) = client.wait_qualified(IFACE, server.primary, WAIT)?;
            println!("{kind}: qualified as {addr} (mapping {}:{})", t.mapped_addr, t.mapped_port);
        }
        Ok(())
    });
}

/// Two clients behind NATs of kinds `a` and `b` ping each other over Teredo, both ways.
fn clients_ping_each_other(lab: &mut Lab, a: NatKind, b: NatKind) -> TestResult {
    let server = lab.server()?;
    let ca = lab.client_behind(a)?;
    let cb = lab.client_behind(b)?;
    let _server_d = miredo::start_server(&server)?;
    let _da = miredo::start_client(&ca, &server, IFACE)?;
    let _db = miredo::start_client(&cb, &server, IFACE)?;
    let (addr_a, _) = ca.wait_teredo_address(IFACE, WAIT)?;
    let (addr_b, _) = cb.wait_teredo_address(IFACE, WAIT)?;
    ca.wait_ping6(addr_b, WAIT)?;
    ensure!(cb.ping6(addr_a, 3), "{b} -> {a}: no reply from {addr_a}");
    ensure!(ca.ping6(addr_b, 3), "{a} -> {b}: no reply from {addr_b}");
    Ok(())
}

#[test]
fn miredo_clients_port_restricted_to_address_restricted() {
    teredo_lab::run("miredo-p2p-port-addr", MIREDO_NEEDS, |lab: &mut Lab| {
        clients_ping_each_other(lab, NatKind::PortRestricted, NatKind::AddressRestricted)
    });
}

#[test]
fn miredo_clients_full_cone_to_port_restricted() {
    teredo_lab::run("miredo-p2p-cone-port", MIREDO_NEEDS, |lab: &mut Lab| {
        clients_ping_each_other(lab, NatKind::FullCone, NatKind::PortRestricted)
    });
}

/// Two clients behind the same NAT both qualify, with the same public address and
/// distinct ports (no hairpinning is tried: Miredo has none).
#[test]
fn miredo_two_clients_behind_one_nat() {
    teredo_lab::run("miredo-two-behind-one", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let nat = lab.nat(NatKind::PortRestricted)?;
        let c1 = lab.client(&nat)?;
        let c2 = lab.client(&nat)?;
        let _server_d = miredo::start_server(&server)?;
        let _d1 = miredo::start_client(&c1, &server, IFACE)?;
        let _d2 = miredo::start_client(&c2, &server, IFACE)?;
        let (_, t1) = c1.wait_teredo_address(IFACE, WAIT)?;
        let (_, t2) = c2.wait_teredo_address(IFACE, WAIT)?;
        ensure!(
            t1.mapped_addr == nat.public && t2.mapped_addr == nat.public,
            "mapped addresses {} and {}",
            t1.mapped_addr,
            t2.mapped_addr
        );
        ensure!(t1.mapped_port != t2.mapped_port, "same mapped port {}", t1.mapped_port);
        Ok(())
    });
}

/// A client behind a port-restricted NAT pings the native IPv6 host through the relay,
/// and the host pings the client back.
#[test]
fn miredo_client_reaches_v6_host_through_relay() {
    teredo_lab::run("miredo-relay", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = miredo::start_server(&server)?;
        let _relay_d = miredo::start_relay(&relay, IFACE)?;
        let _client_d = miredo::start_client(&client, &server, IFACE)?;
        let (addr, _) = client.wait_teredo_address(IFACE, WAIT)?;
        client.wait_ping6(host.ipv6, WAIT)?;
        ensure!(client.ping6(host.ipv6, 3), "client -> v6 host failed after the first reply");
        ensure!(host.ping6(addr, 3), "v6 host -> client {addr} failed");
        Ok(())
    });
}

/// Bringing a client down and up: stopping the daemon removes its interface, flushing
/// the NAT forgets the mapping, and starting it again qualifies again.
#[test]
fn miredo_client_down_and_up() {
    teredo_lab::run("miredo-down-up", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::AddressRestricted)?;
        let nat = client.nat.clone().ok_or("client without NAT")?;
        let _server_d = miredo::start_server(&server)?;
        let mut client_d = miredo::start_client(&client, &server, IFACE)?;
        client.wait_teredo_address(IFACE, WAIT)?;
        client_d.stop()?;
        ensure!(!client.has_link(IFACE), "{IFACE} still exists after stop");
        nat.conntrack_flush()?;
        ensure!(nat.conntrack_udp()?.is_empty(), "conntrack not empty after flush");
        client_d.start()?;
        let (addr, teredo) = client.wait_teredo_address(IFACE, WAIT)?;
        ensure!(teredo.mapped_addr == nat.public, "{addr} after restart");
        ensure!(client_d.log().matches("Starting...").count() >= 2, "log:\n{}", client_d.log());
        Ok(())
    });
}
