//! Two `teredo run` clients behind one NAT that does not hairpin (RFC 4380 §8.3; the lab's
//! NATs never do): each reaches the other's Teredo address, and the echoes go over their
//! LAN, never through the NAT's public side. Once with RFC 6081's hairpinning extension
//! alone (`LocalDiscovery no`: the local addresses travel in Alternate Address trailers of
//! the indirect bubbles); once with local discovery on too (the default), where the LAN
//! capture also shows the discovery bubbles to 224.0.0.253 and each client counts the
//! other's.

use teredo_lab::miredo::IFACE;
use teredo_lab::{Client, Lab, NatKind};

use crate::{TEREDO, TestResult, WAIT, check_qualified, ensure, start_teredo_server};

fn start(c: &Client, server: std::net::Ipv4Addr, extra: &str) -> TestResult<teredo_lab::Daemon> {
    let f = c.write_artifact(
        "client.conf",
        &format!("RelayType client\nInterfaceName {IFACE}\nServerAddress {server}\n{extra}"),
    )?;
    let f = f.to_string_lossy().into_owned();
    let d = c.spawn("client", TEREDO, &["run", "-f", "-c", &f])?;
    d.wait_log("Teredo client on", WAIT)?;
    Ok(d)
}

/// The echo requests from `a` to `b` (Teredo addresses) seen on the NAT's LAN between the
/// two clients' local addresses, and those seen on its public side.
fn echoes(
    lab: &Lab,
    a: (std::net::Ipv6Addr, &Client),
    b: (std::net::Ipv6Addr, &Client),
) -> TestResult<(usize, usize)> {
    let nat = a.1.nat.clone().ok_or("no NAT")?;
    let cap = |iface: &str| -> TestResult<std::path::PathBuf> {
        lab.captures()
            .into_iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{}-{iface}", nat.role())))
            })
            .ok_or_else(|| format!("no capture of the NAT's {iface}").into())
    };
    let q = format!("ipv6.src == {} && ipv6.dst == {} && icmpv6.type == 128", a.0, b.0);
    let lan = crate::tshark(
        &cap("lan")?,
        &format!("ip.src == {} && ip.dst == {} && {q}", a.1.ipv4, b.1.ipv4),
        &[],
    )?;
    let wan = crate::tshark(&cap("wan")?, &q, &[])?;
    Ok((lan.len(), wan.len()))
}

/// Returns the number of local discovery bubbles seen on the LAN.
fn two_behind_one_nat(lab: &mut Lab, extra: &str, what: &str) -> TestResult<usize> {
    let server = lab.server()?;
    let _relay = lab.relay()?;
    let a = lab.client_behind(NatKind::PortRestricted)?;
    let b = lab.client_beside(&a)?;
    let nat = a.nat.clone().ok_or("no NAT")?;
    let lan_cap = lab.capture(&nat.node, "lan")?;
    let _s = start_teredo_server(&server, &[])?;
    let _ad = start(&a, server.primary, extra)?;
    let _bd = start(&b, server.primary, extra)?;
    let (qa, _) = check_qualified(&a, server.primary)?;
    let (qb, _) = check_qualified(&b, server.primary)?;
    a.wait_ping6(qb, WAIT).map_err(|e| format!("{what}: A -> B: {e}"))?;
    ensure!(a.ping6(qb, 3), "{what}: A -> B stopped");
    ensure!(b.ping6(qa, 3), "{what}: B -> A failed");
    let (lan, wan) = echoes(lab, (qa, &a), (qb, &b))?;
    println!(
        "{what}: A -> B: {lan} echo requests over the LAN ({} -> {}), {wan} on the NAT's public side",
        a.ipv4, b.ipv4
    );
    ensure!(lan >= 4 && wan == 0, "{what}: {lan} requests over the LAN, {wan} outside");
    let discovery = crate::tshark(&lan_cap, "ip.dst == 224.0.0.253 && udp.dstport == 3544", &[])?;
    Ok(discovery.len())
}

#[test]
fn two_clients_behind_one_nat_meet_by_the_hairpinning_extension() {
    teredo_lab::run("hairpin-rfc6081", &["tshark"], |lab: &mut Lab| -> TestResult {
        let discovery = two_behind_one_nat(lab, "LocalDiscovery no\n", "Alternate Address trailers")?;
        ensure!(discovery == 0, "{discovery} discovery bubbles with LocalDiscovery no");
        Ok(())
    });
}

#[test]
fn two_clients_behind_one_nat_meet_by_local_discovery() {
    teredo_lab::run("hairpin-discovery", &["tshark"], |lab: &mut Lab| -> TestResult {
        let discovery = two_behind_one_nat(lab, "LocalDiscovery yes\n", "local discovery")?;
        println!("{discovery} local discovery bubbles to 224.0.0.253 on the LAN");
        ensure!(discovery >= 2, "only {discovery} discovery bubbles on the LAN");
        Ok(())
    });
}
