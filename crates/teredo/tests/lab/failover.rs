//! A client with several servers (`ServerAddress A B C`, issue "several servers"): the
//! first listed server is silent, so `teredo run` qualifies with the second; when that one
//! is stopped, it qualifies with the third within a minute, its address changes with the
//! server, `teredo status` names the server in use, and its pings to the native host
//! through the relay resume. Miredo's timers (4 s reply timeout, 3 tries, 30 s refresh).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Lab, NatKind};

use crate::{TEREDO, TestResult, WAIT, check_qualified, ensure, start_teredo_server};

/// An address of the server's link where nothing listens.
const SILENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
/// The third server's addresses, on the server's link too.
const THIRD: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(192, 0, 2, 3), Ipv4Addr::new(192, 0, 2, 4));

#[test]
fn client_fails_over_along_its_server_list() {
    teredo_lab::run("failover", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        for a in [SILENT, THIRD.0, THIRD.1] {
            server.ip(&["addr", "add", &format!("{a}/28"), "dev", "eth0"])?;
        }
        let mut second = start_teredo_server(&server, &[])?;
        let conf = server.write_artifact(
            "third.conf",
            &format!("ServerBindAddress {}\nServerBindAddress2 {}\n", THIRD.0, THIRD.1),
        )?;
        let conf = conf.to_string_lossy().into_owned();
        let third = server.spawn("teredo-third", TEREDO, &["server", "-f", "-c", &conf])?;
        third.wait_log("Teredo server on", WAIT)?;
        let _relay_d = miredo::start_relay_with(&relay, IFACE, &[TEREDO, "run"])?;

        let config = format!(
            "RelayType client\nInterfaceName {IFACE}\nServerAddress {SILENT} {} {}\n",
            server.primary, THIRD.0
        );
        let conf = client.write_artifact("client.conf", &config)?;
        let conf = conf.to_string_lossy().into_owned();
        let t0 = Instant::now();
        let mut d = client.spawn("client", TEREDO, &["run", "-f", "-c", &conf])?;
        let (first, _) = check_qualified_within(&client, server.primary, Duration::from_secs(40))?;
        println!("{SILENT} silent: qualified with {} after {:?} as {first}", server.primary, t0.elapsed());
        ensure!(
            d.log().contains(&format!(
                "Teredo server {SILENT} does not answer: qualifying with {}",
                server.primary
            )),
            "no failover logged:\n{}",
            d.log()
        );
        client.wait_ping6(host.ipv6, WAIT)?;
        let status = client.exec(TEREDO, &["status", "--json"])?;
        ensure!(status.contains(&format!("\"server\":\"{}\"", server.primary)), "status: {status}");

        // The server in use stops.
        second.stop()?;
        let t1 = Instant::now();
        let (moved, _) = check_qualified_within(&client, THIRD.0, Duration::from_secs(60))?;
        let requalified = t1.elapsed();
        ensure!(moved != first, "the address did not change with the server");
        client.wait_ping6(host.ipv6, Duration::from_secs(20))?;
        let resumed = t1.elapsed();
        println!(
            "server {} stopped: qualified with {} after {requalified:?} as {moved}, pings resumed after {resumed:?}",
            server.primary, THIRD.0
        );
        ensure!(resumed <= Duration::from_secs(60), "traffic resumed only after {resumed:?}");
        let status = client.exec(TEREDO, &["status", "--json"])?;
        ensure!(status.contains(&format!("\"server\":\"{}\"", THIRD.0)), "status: {status}");
        ensure!(d.is_running(), "the client stopped");
        Ok(())
    });
}

/// Waits up to `within` for an address from `server` and checks it as [`check_qualified`].
fn check_qualified_within(
    client: &teredo_lab::Client,
    server: Ipv4Addr,
    within: Duration,
) -> TestResult<(std::net::Ipv6Addr, teredo_proto::address::TeredoAddress)> {
    teredo_lab::wait_until(&format!("an address from {server}"), within, || {
        Ok(client.teredo_address(IFACE)?.filter(|(_, t)| t.server == server))
    })?;
    check_qualified(client, server)
}
