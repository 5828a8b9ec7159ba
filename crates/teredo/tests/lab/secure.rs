//! Secure qualification (RFC 4380 §5.2.2) in the lab: `teredo server` with `ClientKeys`
//! and `RequireAuthentication yes` qualifies a `teredo run` client configured with its
//! identifier and secret, and answers no one else: not a client with a wrong secret, not
//! Debian's Miredo client (which sends plain RSs); its counters say why.

use std::time::Duration;

use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Lab, NatKind};

use crate::{MIREDO_NEEDS, TEREDO, TestResult, WAIT, check_qualified, ensure};

fn client_config(server: std::net::Ipv4Addr, secret: &str) -> String {
    format!(
        "RelayType client\nInterfaceName {IFACE}\nServerAddress {server}\nClientIdentifier alice\nClientSecret {secret}\n"
    )
}

#[test]
fn server_requiring_authentication_answers_only_its_clients() {
    teredo_lab::run("secure-qualification", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let good = lab.client_behind(NatKind::PortRestricted)?;
        let bad = lab.client_behind(NatKind::PortRestricted)?;
        let plain = lab.client_behind(NatKind::PortRestricted)?;
        let keys = server.write_artifact("client-keys", "# id secret\nalice correct-horse-battery\n")?;
        let conf = server.write_artifact(
            "server.conf",
            &format!(
                "ServerBindAddress {}\nServerBindAddress2 {}\nClientKeys {}\nRequireAuthentication yes\n",
                server.primary,
                server.secondary,
                keys.display()
            ),
        )?;
        let conf = conf.to_string_lossy().into_owned();
        let s = server.spawn("teredo-server", TEREDO, &["server", "-f", "-c", &conf])?;
        s.wait_log("secure qualification: 1 client from", WAIT)?;
        s.wait_log("Teredo server on", WAIT)?;
        let start = |c: &teredo_lab::Client, name: &str, secret: &str| -> TestResult<teredo_lab::Daemon> {
            let f = c.write_artifact(&format!("{name}.conf"), &client_config(server.primary, secret))?;
            let f = f.to_string_lossy().into_owned();
            Ok(c.spawn(name, TEREDO, &["run", "-f", "-c", &f])?)
        };
        let _good_d = start(&good, "good", "correct-horse-battery")?;
        let _bad_d = start(&bad, "bad", "wrong-secret")?;
        let _plain_d = miredo::start_client(&plain, &server, IFACE)?;
        let (addr, _) = check_qualified(&good, server.primary)?;
        println!("the client with the right secret qualified: {addr}");
        std::thread::sleep(Duration::from_secs(10));
        ensure!(bad.teredo_address(IFACE)?.is_none(), "the client with a wrong secret qualified");
        ensure!(plain.teredo_address(IFACE)?.is_none(), "Miredo's unauthenticated client qualified");
        let status = server.exec(TEREDO, &["status", "--json"])?;
        let v: serde_json::Value =
            serde_json::from_str(status.trim()).map_err(|e| format!("{e}: {status}"))?;
        let v = if v.is_array() { v[0].clone() } else { v };
        let n = v["counters"]["dropped_authentication_failed"].as_u64().unwrap_or(0);
        println!("the server dropped {n} unauthenticated router solicitations");
        ensure!(n >= 4, "only {n} RSs dropped for authentication: {status}");
        Ok(())
    });
}
