//! The control plane in the lab, checked as a user would:
//!
//! 1. `teredo status` of a client, a relay and a server, each field against what the lab
//!    sees (the interface's address, the NAT's conntrack mapping, the server's addresses),
//!    peers listed after traffic, counters that grow; nothing found where no daemon runs;
//! 2. two clients in two namespaces each see only their own daemon;
//! 3. `MetricsAddress`: metrics scraped, accepted by `promtool check metrics`, a counter
//!    that grows after traffic, and no TCP listener without the directive;
//! 4. readiness through a `NOTIFY_SOCKET` listener, the daemon chrooted: READY, STATUS,
//!    WATCHDOG, RELOADING, STOPPING;
//! 5. SIGHUP on a relay carrying a flow (a ping every 100 ms): same PID, at most 2 pings
//!    lost, peers kept; a lower `MaxPeers` takes effect, a higher one is logged as needing
//!    a restart; then a broken file is refused with FILE:LINE and the relay still
//!    forwards;
//! 6. SIGHUP on a client whose `ServerAddress` changed: it qualifies with the new server
//!    and its old address is removed.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use teredo_lab::miredo::IFACE;
use teredo_lab::{Client, Daemon, Lab, NatKind, Node, Server};

use crate::{
    TEREDO, TestResult, WAIT, check_qualified, counter, ensure, only, start_run, start_run_with,
    start_teredo_server,
};

fn client_config(server: Ipv4Addr, extra: &str) -> String {
    format!("RelayType client\nInterfaceName {IFACE}\nServerAddress {server}\n{extra}")
}

fn relay_config(extra: &str) -> String {
    format!("RelayType cone\nInterfaceName {IFACE}\n{extra}")
}

/// The world of these tests: server, relay, v6 host, one client behind a port-restricted
/// NAT, all teredo, the client qualified and pinging the host.
struct World {
    server: Server,
    relay: teredo_lab::Relay,
    host: teredo_lab::V6Host,
    client: Client,
    server_d: Daemon,
    relay_d: Daemon,
    client_d: Daemon,
    address: std::net::Ipv6Addr,
}

fn world(lab: &mut Lab, client_extra: &str) -> TestResult<World> {
    let server = lab.server()?;
    let relay = lab.relay()?;
    let host = lab.v6host()?;
    let client = lab.client_behind(NatKind::PortRestricted)?;
    let server_d = start_teredo_server(&server, &[])?;
    let relay_d = start_run(&relay, "relay", &relay_config(""), &[])?;
    let client_d = start_run(&client, "client", &client_config(server.primary, client_extra), &[])?;
    let (address, _) = check_qualified(&client, server.primary)?;
    client.wait_ping6(host.ipv6, WAIT)?;
    Ok(World { server, relay, host, client, server_d, relay_d, client_d, address })
}

#[test]
fn status_of_client_relay_and_server() {
    teredo_lab::run("ctl-status", &[], |lab: &mut Lab| -> TestResult {
        let w = world(lab, "")?;
        // The client, against the interface and the NAT's connection tracking.
        let c = only(&w.client, false)?;
        println!("client: {c}");
        ensure!(c["role"] == "client" && c["state"] == "qualified", "{c}");
        ensure!(
            c["pid"].as_u64() == w.client_d.pid().map(u64::from),
            "pid {} vs {:?}",
            c["pid"],
            w.client_d.pid()
        );
        ensure!(
            c["address"] == w.address.to_string().as_str(),
            "address {} vs the interface's {}",
            c["address"],
            w.address
        );
        ensure!(c["server"] == w.server.primary.to_string().as_str(), "{c}");
        let nat = w.client.nat.as_ref().ok_or("no NAT")?;
        let port = nat
            .mapped_port(w.client.ipv4, SocketAddrV4::new(w.server.primary, 3544))?
            .ok_or("no conntrack entry towards the server")?;
        let mapped = format!("{}:{port}", nat.public);
        ensure!(c["mapped"] == mapped.as_str(), "mapped {} vs conntrack {mapped}", c["mapped"]);
        ensure!(c["nat"] == "cone", "a port-restricted NAT keeps one mapping: {c}");
        ensure!(c["mtu"] == 1280 && c["interface"] == IFACE, "{c}");
        ensure!(c["uptime_s"].is_u64() && c["counters"].is_object(), "{c}");
        // Peers listed after traffic, counters that grow.
        let c = only(&w.client, true)?;
        let host = w.host.ipv6.to_string();
        let listed = c["peer_list"].as_array().ok_or("no peer_list")?;
        ensure!(
            listed.iter().any(|p| p["address"] == host.as_str() && p["trusted"] == true),
            "the v6 host is not a trusted peer: {c}"
        );
        ensure!(c["peers"].as_u64() >= Some(1), "{c}");
        let before = counter(&c, "sent");
        ensure!(w.client.ping6(w.host.ipv6, 3), "ping");
        let after = counter(&only(&w.client, false)?, "sent");
        ensure!(after >= before + 3, "sent {before} -> {after} after 3 pings");
        // Plain output.
        let plain = w.client.exec(TEREDO, &["status"])?;
        println!("{plain}");
        ensure!(plain.contains("state:      qualified") && plain.contains(&w.address.to_string()), "{plain}");
        // The relay.
        let r = only(&w.relay, true)?;
        println!("relay: {r}");
        ensure!(
            r["role"] == "relay" && r["prefix"] == "2001::/32" && r["workers"].as_u64() >= Some(1),
            "{r}"
        );
        ensure!(r["pid"].as_u64() == w.relay_d.pid().map(u64::from), "{r}");
        let me = w.address.to_string();
        let entry = r["peer_list"].as_array().and_then(|l| l.iter().find(|p| p["address"] == me.as_str()));
        let entry = entry.ok_or_else(|| format!("the client {me} is not among the relay's peers: {r}"))?;
        ensure!(entry["mapping"] == mapped.as_str() && entry["trusted"] == true, "{entry}");
        ensure!(counter(&r, "sent") >= 3 && counter(&r, "delivered") >= 3, "{r}");
        // The server.
        let s = only(&w.server, false)?;
        println!("server: {s}");
        let addrs = [w.server.primary.to_string(), w.server.secondary.to_string()];
        ensure!(s["role"] == "server" && s["addresses"] == serde_json::json!(addrs), "{s}");
        ensure!(s["pid"].as_u64() == w.server_d.pid().map(u64::from), "{s}");
        ensure!(counter(&s, "advertisements") >= 1, "{s}");
        // Where no daemon runs.
        let out = w.host.exec_output(TEREDO, &["status"])?;
        ensure!(!out.status.success(), "teredo status succeeded with no daemon");
        ensure!(String::from_utf8_lossy(&out.stderr).contains("no teredo daemon"), "{out:?}");
        Ok(())
    });
}

#[test]
fn two_clients_in_two_namespaces_each_see_their_own() {
    teredo_lab::run("ctl-two", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let a = lab.client_behind(NatKind::PortRestricted)?;
        let b = lab.client_behind(NatKind::FullCone)?;
        let _s = start_teredo_server(&server, &[])?;
        let da = start_run(&a, "client-a", &client_config(server.primary, ""), &[])?;
        let db = start_run(&b, "client-b", &client_config(server.primary, ""), &[])?;
        for (node, d) in [(&a, &da), (&b, &db)] {
            let (addr, _) = check_qualified(node, server.primary)?;
            let v = only(node, false)?;
            ensure!(v["pid"].as_u64() == d.pid().map(u64::from), "{}: {v}", node.ns());
            ensure!(v["address"] == addr.to_string().as_str(), "{}: {v}", node.ns());
        }
        Ok(())
    });
}

/// `GET path` on 127.0.0.1:`port` inside `node`: the status line and the body.
fn http_get(node: &Node, port: u16, path: &str) -> TestResult<(String, String)> {
    let text = node.enter(|| -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())?;
        let mut t = String::new();
        s.read_to_string(&mut t)?;
        Ok(t)
    })??;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP head")?;
    Ok((head.lines().next().unwrap_or("").to_owned(), body.to_owned()))
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_scraped_and_accepted_by_promtool() {
    teredo_lab::run("ctl-metrics", &["promtool"], |lab: &mut Lab| -> TestResult {
        let w = world(lab, "MetricsAddress 127.0.0.1:9544\n")?;
        let (status_line, body) = http_get(&w.client, 9544, "/metrics")?;
        ensure!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
        let path = w.client.write_artifact("metrics.txt", &body)?;
        let check = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("promtool check metrics < '{}'", path.display()))
            .output()?;
        ensure!(
            check.status.success(),
            "promtool: {}{}\n{body}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let before =
            metric(&body, "teredo_sent_total").ok_or_else(|| format!("no teredo_sent_total:\n{body}"))?;
        ensure!(metric(&body, "teredo_qualified") == Some(1.0), "{body}");
        ensure!(w.client.ping6(w.host.ipv6, 3), "ping");
        let (_, body) = http_get(&w.client, 9544, "/metrics")?;
        let after = metric(&body, "teredo_sent_total").unwrap_or(0.0);
        ensure!(after >= before + 3.0, "teredo_sent_total {before} -> {after}");
        // Without the directive, no TCP listener at all.
        let relay_tcp = w.relay.exec("ss", &["-H", "-l", "-t", "-n"])?;
        ensure!(relay_tcp.trim().is_empty(), "the relay listens on TCP: {relay_tcp}");
        let server_tcp = w.server.exec("ss", &["-H", "-l", "-t", "-n"])?;
        ensure!(server_tcp.trim().is_empty(), "the server listens on TCP: {server_tcp}");
        let client_tcp = w.client.exec("ss", &["-H", "-l", "-t", "-n"])?;
        ensure!(
            client_tcp.trim().lines().count() == 1 && client_tcp.contains("127.0.0.1:9544"),
            "{client_tcp}"
        );
        // Anything else than GET /metrics is refused.
        let (other, _) = http_get(&w.client, 9544, "/other")?;
        ensure!(other.starts_with("HTTP/1.1 404"), "{other}");
        Ok(())
    });
}

/// The notifications received on `sock` until one contains `want` (or `timeout`).
fn wait_notify(sock: &UnixDatagram, want: &str, timeout: Duration, seen: &mut Vec<String>) -> TestResult {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < timeout {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = m.contains(want);
            seen.push(m);
            if hit {
                return Ok(());
            }
        }
    }
    Err(format!("no notification with {want:?} within {timeout:?}; received {seen:?}").into())
}

#[test]
fn readiness_is_notified() {
    teredo_lab::run("ctl-notify", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _s = start_teredo_server(&server, &[])?;
        let path = client.artifact_path("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path)?;
        // The daemon sends from its unprivileged user.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let p = path.to_string_lossy().into_owned();
        let env = [("NOTIFY_SOCKET", p.as_str()), ("WATCHDOG_USEC", "1000000")];
        // Chrooted into an empty directory: the socket was connected before.
        let jail = client.artifact_path("jail");
        std::fs::create_dir_all(&jail)?;
        let jail = jail.to_string_lossy().into_owned();
        let config = client_config(server.primary, "");
        let mut d = start_run_with(&client, "client", &config, &env, &["-t", &jail])?;
        let mut seen = Vec::new();
        wait_notify(&sock, "READY=1", WAIT, &mut seen)?;
        let pid = d.pid().ok_or("the client is not running")?;
        let root = std::fs::read_link(format!("/proc/{pid}/root"))?;
        ensure!(root == std::path::Path::new(&jail), "the client is not chrooted: root {}", root.display());
        let (addr, _) = check_qualified(&client, server.primary)?;
        wait_notify(&sock, &format!("STATUS=qualified {addr}"), WAIT, &mut seen)?;
        wait_notify(&sock, "WATCHDOG=1", Duration::from_secs(3), &mut seen)?;
        d.signal(libc::SIGHUP)?;
        wait_notify(&sock, "RELOADING=1", Duration::from_secs(5), &mut seen)?;
        wait_notify(&sock, "READY=1", Duration::from_secs(5), &mut seen)?;
        d.signal(libc::SIGTERM)?;
        wait_notify(&sock, "STOPPING=1", Duration::from_secs(5), &mut seen)?;
        d.wait_exit(Duration::from_secs(10))?;
        println!("notifications: {seen:?}");
        Ok(())
    });
}

/// `ping -6 -i 0.1 -c N` output's transmitted and received counts.
fn ping_counts(out: &str) -> Option<(u32, u32)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut n = line.split(", ").map(|p| p.split_whitespace().next().and_then(|x| x.parse().ok()));
    Some((n.next()??, n.next()??))
}

#[test]
fn sighup_keeps_a_relays_flow_and_refuses_a_broken_file() {
    teredo_lab::run("ctl-hup-relay", &[], |lab: &mut Lab| -> TestResult {
        let mut w = world(lab, "")?;
        let pid = w.relay_d.pid();
        let peers_before = only(&w.relay, false)?["peers"].as_u64().unwrap_or(0);
        let mut ping = w.client.command("ping");
        ping.args(["-6", "-n", "-i", "0.1", "-c", "40"]).arg(w.host.ipv6.to_string());
        let pinger = std::thread::spawn(move || ping.output());
        std::thread::sleep(Duration::from_secs(1));
        w.relay_d.signal(libc::SIGHUP)?;
        let out = pinger.join().map_err(|_| "ping thread")??;
        let text = String::from_utf8_lossy(&out.stdout);
        let (tx, rx) = ping_counts(&text).ok_or_else(|| format!("no ping summary: {text}"))?;
        println!("pings across the relay's SIGHUP: {rx} of {tx} answered");
        ensure!(tx >= 40 && tx - rx <= 2, "{} pings lost across SIGHUP:\n{text}", tx - rx);
        ensure!(w.relay_d.is_running() && w.relay_d.pid() == pid, "the relay did not survive SIGHUP");
        ensure!(w.relay_d.log().contains("SIGHUP: reloading"), "{}", w.relay_d.log());
        let peers_after = only(&w.relay, false)?["peers"].as_u64().unwrap_or(0);
        ensure!(peers_after >= peers_before && peers_after >= 1, "peers {peers_before} -> {peers_after}");
        // A lower MaxPeers takes effect (within the allocation); a higher one takes a restart.
        w.relay.write_artifact("relay.conf", &relay_config("MaxPeers 1000\n"))?;
        w.relay_d.signal(libc::SIGHUP)?;
        w.relay_d.wait_log("MaxPeers is now 1000", WAIT)?;
        w.relay.write_artifact("relay.conf", &relay_config("MaxPeers 16777216\n"))?;
        w.relay_d.signal(libc::SIGHUP)?;
        w.relay_d.wait_log("MaxPeers: changed, but it takes a restart", WAIT)?;
        ensure!(w.client.ping6(w.host.ipv6, 3), "the relay stopped forwarding after MaxPeers changed");
        // A broken file: refused with FILE:LINE, and the relay goes on forwarding.
        let conf = w.relay.write_artifact("relay.conf", &relay_config("BindPort not-a-port\n"))?;
        w.relay_d.signal(libc::SIGHUP)?;
        let want = format!("{}:3:", conf.display());
        w.relay_d.wait_log(&want, WAIT)?;
        w.relay_d.wait_log("refused, keeping the running one", WAIT)?;
        ensure!(w.client.ping6(w.host.ipv6, 3), "the relay stopped forwarding after a broken reload");
        ensure!(
            w.relay_d.is_running() && w.relay_d.pid() == pid,
            "the relay did not survive a broken reload"
        );
        Ok(())
    });
}

#[test]
fn sighup_moves_a_client_to_its_new_server() {
    teredo_lab::run("ctl-hup-client", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        // A second server on two more addresses of the server's link.
        let (p2, s2) = (Ipv4Addr::new(192, 0, 2, 3), Ipv4Addr::new(192, 0, 2, 4));
        for a in [p2, s2] {
            server.ip(&["addr", "add", &format!("{a}/28"), "dev", "eth0"])?;
        }
        let _s1 = start_teredo_server(&server, &[])?;
        let conf2 = server
            .write_artifact("server2.conf", &format!("ServerBindAddress {p2}\nServerBindAddress2 {s2}\n"))?;
        let conf2 = conf2.to_string_lossy().into_owned();
        let s2d = server.spawn("teredo-server2", TEREDO, &["server", "-f", "-c", &conf2])?;
        s2d.wait_log("Teredo server on", WAIT)?;
        let mut d = start_run(&client, "client", &client_config(server.primary, ""), &[])?;
        let (old, _) = check_qualified(&client, server.primary)?;
        let pid = d.pid();
        client.write_artifact("client.conf", &client_config(p2, ""))?;
        d.signal(libc::SIGHUP)?;
        let t0 = Instant::now();
        teredo_lab::wait_until("an address from the new server", WAIT, || {
            Ok(client.teredo_address(IFACE)?.filter(|(a, t)| *a != old && t.server == p2))
        })?;
        println!("qualified with the new server {:?} after SIGHUP", t0.elapsed());
        let (new, _) = check_qualified(&client, p2)?;
        let all = client.ipv6_addrs(IFACE)?;
        ensure!(!all.contains(&old), "the old address {old} is still on {IFACE}: {all:?}");
        let v = only(&client, false)?;
        ensure!(v["server"] == p2.to_string().as_str() && v["address"] == new.to_string().as_str(), "{v}");
        ensure!(d.pid() == pid && d.is_running(), "the client restarted");
        Ok(())
    });
}
