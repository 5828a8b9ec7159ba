//! Relays at internet scale, in the lab, with real BIRD 2 daemons (one per namespace, the
//! project's `contrib/bird/` configurations, never the system service):
//!
//! 1. two teredo relays announce 2001::/32 by BGP to the router that carries the v6 host's
//!    traffic; a teredo client and a Miredo client behind NATs ping the host; the relay in
//!    use is killed with SIGKILL: the router's route moves to the other, and the pings
//!    resume, within 10 s for the teredo client; both gaps are printed;
//! 2. `teredo drain` moves the traffic to the other relay without a restart, `teredo
//!    undrain` brings it back; a blackhole on the relay's IPv4 side (the process running)
//!    withdraws its route within 45 s (its probes of the server go unanswered) and the
//!    traffic moves; lifting it brings the route back;
//! 3. two `teredo server`s with the same address pair behind an ECMP route: one dies,
//!    the clients keep refreshing without losing their address, and new ones qualify at
//!    once.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use serde_json::Value;
use teredo_lab::anycast::{self, Anycast};
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Client, Daemon, Lab, NatKind, Node, Relay, Server, V6Host, bird, ping_log, wait_for};

use crate::{
    MIREDO_NEEDS, TEREDO, TestResult, WAIT, check_qualified, counter, ensure, only, start_run_with,
    start_teredo_server,
};

/// The programs these tests need beyond the lab's own.
const BIRD_NEEDS: &[&str] = &[bird::BIRD, bird::BIRDC];

/// The server, the v6 host and two anycast relays with their BIRDs, all running.
struct World {
    server: Server,
    host: V6Host,
    anycast: Anycast,
    _server_d: Daemon,
}

fn world(lab: &mut Lab) -> TestResult<World> {
    let server = lab.server()?;
    let host = lab.v6host()?;
    let server_d = start_teredo_server(&server, &[])?;
    // Both relays announce, the router prefers relay 1 (see `anycast::start`).
    let anycast = anycast::start(lab, &server, &[TEREDO, "run"])?;
    Ok(World { server, host, anycast, _server_d: server_d })
}

/// The IPv4 address of the relay `client` (a teredo client) sends to for `peer`.
fn mapping_of(client: &Node, peer: Ipv6Addr) -> Option<Ipv4Addr> {
    let v = only(client, true).ok()?;
    let list = v["peer_list"].as_array()?;
    let p = list.iter().find(|p| p["address"].as_str() == Some(&peer.to_string()))?;
    let m: std::net::SocketAddrV4 = p["mapping"].as_str()?.parse().ok()?;
    Some(*m.ip())
}

/// Waits until `client` sends its traffic for `peer` through `relay`.
fn wait_mapping(client: &Node, peer: Ipv6Addr, relay: &Relay, timeout: Duration) -> TestResult<Duration> {
    let t0 = Instant::now();
    wait_for(&format!("{}'s flow to {peer} through {}", client.ns(), relay.ipv4), timeout, || {
        mapping_of(client, peer) == Some(relay.ipv4)
    })?;
    Ok(t0.elapsed())
}

#[test]
fn killing_the_relay_in_use_moves_the_route_and_the_pings() {
    let mut needs = BIRD_NEEDS.to_vec();
    needs.extend_from_slice(MIREDO_NEEDS);
    teredo_lab::run("anycast-kill", &needs, |lab: &mut Lab| -> TestResult {
        let w = world(lab)?;
        let teredo_c = lab.client_behind(NatKind::PortRestricted)?;
        let miredo_c = lab.client_behind(NatKind::PortRestricted)?;
        let _t = miredo::start_client_with(&teredo_c, &w.server, IFACE, &[TEREDO, "run"])?;
        let _m = miredo::start_client(&miredo_c, &w.server, IFACE)?;
        for c in [&teredo_c, &miredo_c] {
            check_qualified(c, w.server.primary)?;
            c.wait_ping6(w.host.ipv6, WAIT)?;
        }
        wait_mapping(&teredo_c, w.host.ipv6, &w.anycast.relays[0], WAIT)?;
        let pt = ping_log::start(&teredo_c, "ping-teredo", w.host.ipv6, 90)?;
        let pm = ping_log::start(&miredo_c, "ping-miredo", w.host.ipv6, 90)?;
        std::thread::sleep(Duration::from_secs(2));
        ensure!(
            !ping_log::reply_times(&pt.log()).is_empty() && !ping_log::reply_times(&pm.log()).is_empty(),
            "no ping reply before"
        );

        let killed_at = ping_log::now();
        w.anycast.daemons[0].signal(libc::SIGKILL)?;
        let moved = anycast::wait_routed(lab, Some(2), Duration::from_secs(10))?;
        println!("kill -9 of relay 1: the router's route moved to relay 2 in {:.2} s", moved.as_secs_f64());
        let teredo_gap = ping_log::wait_gap(&pt, killed_at, Duration::from_secs(20));
        let miredo_gap = ping_log::wait_gap(&pm, killed_at, Duration::from_secs(70));
        let show = |g: Option<f64>| g.map_or("no reply".to_owned(), |g| format!("{g:.1} s"));
        println!(
            "failover gap in the pings (every 0.2 s): teredo client {}, Miredo 1.2.6 client {}",
            show(teredo_gap),
            show(miredo_gap)
        );
        let gap = teredo_gap.ok_or("the teredo client's pings did not resume within 20 s")?;
        ensure!(gap < 10.0, "the teredo client's pings resumed only after {gap:.1} s");
        ensure!(
            mapping_of(&teredo_c, w.host.ipv6) == Some(w.anycast.relays[1].ipv4),
            "the flow is not on relay 2"
        );
        let v = only(&teredo_c, false)?;
        ensure!(counter(&v, "echo_retests") >= 1, "the client did not repeat its echo test: {v}");
        Ok(())
    });
}

/// Runs `teredo drain` or `teredo undrain` in `relay` and returns its output.
fn drain(relay: &Node, word: &str) -> TestResult<String> {
    let out = relay.exec_output(TEREDO, &[word])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "teredo {word}: {}{}", text, String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

/// The relay's `health` object.
fn health(relay: &Node) -> TestResult<Value> {
    Ok(only(relay, false)?["health"].clone())
}

#[test]
fn drain_and_a_blackholed_ipv4_side_move_the_traffic() {
    teredo_lab::run("anycast-health", BIRD_NEEDS, |lab: &mut Lab| -> TestResult {
        let mut w = world(lab)?;
        let c = lab.client_behind(NatKind::PortRestricted)?;
        let _c = miredo::start_client_with(&c, &w.server, IFACE, &[TEREDO, "run"])?;
        check_qualified(&c, w.server.primary)?;
        c.wait_ping6(w.host.ipv6, WAIT)?;
        let (r1, r2) = (w.anycast.relays[0].clone(), w.anycast.relays[1].clone());
        wait_mapping(&c, w.host.ipv6, &r1, WAIT)?;
        let pid = w.anycast.daemons[0].pid();
        let ping = ping_log::start(&c, "ping", w.host.ipv6, 120)?;

        // Drain: the route goes, the traffic follows, the relay runs on.
        let delivered = counter(&only(&r1, false)?, "delivered");
        let out = drain(&r1, "drain")?;
        println!("teredo drain: {}", out.trim());
        ensure!(out.contains("drained, route withdrawn"), "{out}");
        ensure!(!anycast::has_route(&r1), "the drained relay still has its route");
        let moved = anycast::wait_routed(lab, Some(2), Duration::from_secs(10))?;
        let flow = wait_mapping(&c, w.host.ipv6, &r2, Duration::from_secs(10))?;
        println!(
            "drained: router on relay 2 after {:.2} s, the client's flow after {:.1} s more",
            moved.as_secs_f64(),
            flow.as_secs_f64()
        );
        ensure!(
            w.anycast.daemons[0].is_running() && w.anycast.daemons[0].pid() == pid,
            "the relay restarted"
        );
        ensure!(
            counter(&only(&r1, false)?, "delivered") > delivered,
            "the drained relay did not serve the packets that still came"
        );
        let h = health(&r1)?;
        ensure!(h["drained"] == true && h["healthy"] == true && h["route"] == "withdrawn", "{h}");
        let out = drain(&r1, "undrain")?;
        println!("teredo undrain: {}", out.trim());
        ensure!(anycast::has_route(&r1), "undrained relay without its route");
        let back = anycast::wait_routed(lab, Some(1), Duration::from_secs(10))?;
        let flow = wait_mapping(&c, w.host.ipv6, &r1, Duration::from_secs(10))?;
        println!(
            "undrained: router on relay 1 after {:.2} s, the client's flow after {:.1} s more",
            back.as_secs_f64(),
            flow.as_secs_f64()
        );

        // A blackhole on relay 1's IPv4 side, the process running.
        let t0 = Instant::now();
        let at = ping_log::now();
        lab.internet().ip(&["route", "add", "blackhole", &format!("{}/32", r1.ipv4)])?;
        wait_for("relay 1 to withdraw its route", Duration::from_secs(45), || !anycast::has_route(&r1))?;
        let withdrawn = t0.elapsed();
        anycast::wait_routed(lab, Some(2), Duration::from_secs(5))?;
        let h = health(&r1)?;
        println!(
            "IPv4 side blackholed: route withdrawn after {:.1} s ({})",
            withdrawn.as_secs_f64(),
            h["reason"].as_str().unwrap_or("?")
        );
        ensure!(h["healthy"] == false && h["route"] == "withdrawn", "{h}");
        ensure!(w.anycast.daemons[0].is_running(), "the relay died");
        wait_mapping(&c, w.host.ipv6, &r2, Duration::from_secs(15))?;
        let gap = ping_log::wait_gap(&ping, at, Duration::from_secs(20))
            .ok_or("no ping reply after the blackhole")?;
        println!("the client's pings resumed on relay 2 after a gap of {gap:.1} s");

        // Lifted: the route comes back.
        let t1 = Instant::now();
        lab.internet().ip(&["route", "del", "blackhole", &format!("{}/32", r1.ipv4)])?;
        wait_for("relay 1 to announce its route again", Duration::from_secs(20), || anycast::has_route(&r1))?;
        let restored = t1.elapsed();
        anycast::wait_routed(lab, Some(1), Duration::from_secs(5))?;
        wait_mapping(&c, w.host.ipv6, &r1, Duration::from_secs(15))?;
        println!(
            "blackhole lifted: route back after {:.1} s, the flow on relay 1 again",
            restored.as_secs_f64()
        );
        ensure!(health(&r1)?["healthy"] == true, "relay 1 still unhealthy");
        Ok(())
    });
}

/// The server's count of advertisements sent.
fn advertisements(server: &Node) -> u64 {
    only(server, false).map_or(0, |v| counter(&v, "advertisements"))
}

/// A teredo client with short timers (refresh every 2 s), started and qualified.
fn fast_client(c: &Client, server: &Server) -> TestResult<Daemon> {
    let conf = format!("RelayType client\nInterfaceName {IFACE}\nServerAddress {}\n", server.primary);
    let d = start_run_with(
        c,
        "client",
        &conf,
        &[],
        &["--test-refresh-interval-ms", "2000", "--test-reply-timeout-ms", "500"],
    )?;
    check_qualified(c, server.primary)?;
    Ok(d)
}

#[test]
fn servers_behind_ecmp_keep_their_clients_when_one_dies() {
    teredo_lab::run("anycast-ecmp", &[], |lab: &mut Lab| -> TestResult {
        let servers = vec![lab.ecmp_server()?, lab.ecmp_server()?];
        let mut server_d = Vec::new();
        for s in &servers {
            server_d.push(start_teredo_server(s, &[])?);
        }
        let mut clients = Vec::new();
        for _ in 0..6 {
            let c = lab.client_behind(NatKind::PortRestricted)?;
            let d = fast_client(&c, &servers[0])?;
            clients.push((c, d));
        }
        std::thread::sleep(Duration::from_secs(3));
        let served: Vec<u64> = servers.iter().map(|s| advertisements(s)).collect();
        println!("advertisements sent by the two servers behind ECMP: {served:?}");
        ensure!(served.iter().sum::<u64>() > 0, "no advertisement at all");
        // The one that served more dies: the process killed, the machine off the network.
        let dead = if served[0] >= served[1] { 0 } else { 1 };
        let live = 1 - dead;
        let before: Vec<(Value, u64)> = clients
            .iter()
            .map(|(c, _)| only(c, false).map(|v| (v["address"].clone(), counter(&v, "ra_accepted"))))
            .collect::<TestResult<_>>()?;
        server_d[dead].signal(libc::SIGKILL)?;
        servers[dead].link_set("eth0", false)?;
        let nexthops = lab.internet().ip(&["nexthop", "show", "id", "100"])?;
        println!("server {} killed; the router's group now: {}", dead + 1, nexthops.trim());
        let live_before = advertisements(&servers[live]);
        std::thread::sleep(Duration::from_secs(6));
        for ((c, _), (address, ra)) in clients.iter().zip(&before) {
            let v = only(c, false)?;
            ensure!(
                v["state"] == "qualified" && &v["address"] == address,
                "{} lost its address: {v}",
                c.ns()
            );
            ensure!(counter(&v, "losses") == 0, "{} lost its qualification: {v}", c.ns());
            ensure!(counter(&v, "ra_accepted") >= ra + 2, "{} stopped refreshing: {v}", c.ns());
        }
        let live_after = advertisements(&servers[live]);
        ensure!(live_after > live_before, "the live server answered nothing");
        println!(
            "after the kill: all {} clients refreshed, same addresses; the live server sent {} more advertisements",
            clients.len(),
            live_after - live_before
        );
        // A client that starts now, and one restarted, qualify at once.
        let fresh = lab.client_behind(NatKind::AddressRestricted)?;
        let t0 = Instant::now();
        let _f = fast_client(&fresh, &servers[0])?;
        let (c0, d0) = &mut clients[0];
        d0.stop()?;
        // The old process's flow would still be the first the NAT lists.
        c0.nat.as_ref().ok_or("no NAT")?.conntrack_flush()?;
        let t1 = Instant::now();
        d0.start()?;
        check_qualified(c0, servers[0].primary)?;
        println!(
            "new client qualified in {:.2} s, restarted client in {:.2} s",
            t0.elapsed().as_secs_f64(),
            t1.elapsed().as_secs_f64()
        );
        Ok(())
    });
}
