//! The client's UPnP port mapping (RFC 6081 §5.3.3, §5.3.5) against the lab's `miniupnpd`:
//! behind a UPnP port-symmetric NAT, `teredo run` maps its port before qualifying (so its
//! address embeds the mapping, and the single-NAT test zeroes it), `teredo status` says
//! so, and the mapping goes when the client stops; with `UPnP no` nothing is mapped.

use std::time::Duration;

use serde_json::Value;
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Client, Daemon, Lab, NatKind, wait_for};

use crate::{TEREDO, TestResult, WAIT, check_qualified, ensure, start_teredo_server};

/// The client's status object.
fn status(client: &Client) -> TestResult<Value> {
    let out = client.exec(TEREDO, &["status", "--json"])?;
    let v: Value = serde_json::from_str(out.trim()).map_err(|e| format!("status: {e}: {out}"))?;
    Ok(v.as_array().and_then(|a| a.first().cloned()).unwrap_or(v))
}

/// The Teredo socket's local port, from the start-up line `... (UDP 0.0.0.0:PORT) ...`.
fn local_port(d: &Daemon) -> TestResult<u16> {
    let log = d.log();
    let at = log.find("(UDP ").ok_or("no start-up line")?;
    let rest = &log[at + 5..];
    let addr = rest.split(')').next().unwrap_or_default();
    Ok(addr.rsplit(':').next().unwrap_or_default().parse()?)
}

#[test]
fn client_maps_its_port_by_upnp_and_removes_it_on_exit() {
    teredo_lab::run("upnp-map-and-remove", &["miniupnpd"], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let _server_d = start_teredo_server(&server, &[])?;
        let client = lab.client_behind(NatKind::UpnpPortSymmetric)?;
        let nat = client.nat.clone().ok_or("no NAT")?;
        let mut d = miredo::start_client_with(&client, &server, IFACE, &[TEREDO, "run"])?;
        d.wait_log("Teredo client on", WAIT)?;
        let port = local_port(&d)?;
        let (_, t) = check_qualified(&client, server.primary)?;
        let mappings = nat.upnp_mappings();
        ensure!(
            mappings.iter().any(|m| m.external_port == port && m.internal.port() == port),
            "no UPnP mapping of UDP {port}: {mappings:?}"
        );
        ensure!(t.mapped_port == port, "the address embeds port {}, not the mapped {port}", t.mapped_port);
        d.wait_log("NAT: symmetric NAT detected", WAIT)?;
        let v = status(&client)?;
        ensure!(v["nat"] == "symmetric", "nat: {}", v["nat"]);
        ensure!(v["upnp"] == format!("{}:{port}", t.mapped_addr).as_str(), "upnp: {}", v["upnp"]);
        ensure!(v["upnp_single_nat"] == true, "upnp_single_nat: {}", v["upnp_single_nat"]);
        ensure!(v["nat_extension"] == "upnp", "nat_extension: {}", v["nat_extension"]);
        ensure!(v["port_preserving"] == false, "port_preserving: {}", v["port_preserving"]);
        d.stop()?;
        wait_for("the UPnP mapping to be deleted", Duration::from_secs(10), || {
            nat.upnp_mappings().is_empty()
        })?;
        ensure!(d.log().contains("UPnP: mapping of UDP port"), "no removal logged:\n{}", d.log());

        // UPnP no: no search, no mapping. The NAT forgets the first run's bindings first, so
        // that the lab's check of the address finds the new one.
        nat.conntrack_flush()?;
        let conf = format!("{}UPnP no\n", miredo::client_config(&server, IFACE));
        let mut d = miredo::start_with(&client, "teredo-no-upnp", &[TEREDO, "run"], &conf)?;
        d.wait_log("Teredo client on", WAIT)?;
        check_qualified(&client, server.primary)?;
        ensure!(nat.upnp_mappings().is_empty(), "a mapping with UPnP no: {:?}", nat.upnp_mappings());
        ensure!(!d.log().contains("UPnP:"), "UPnP ran:\n{}", d.log());
        ensure!(status(&client)?["upnp"].is_null(), "status shows a mapping");
        d.stop()?;
        Ok(())
    });
}
