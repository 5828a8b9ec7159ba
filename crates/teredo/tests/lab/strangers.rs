//! Floods of state in the lab (RFC 4380 §7.3.3, "Denial of Service by Exceeding the Number
//! of Peers"), with the resident memory of the daemon's packet path measured before and
//! after:
//!
//! 1. 50,000 datagrams from spoofed Teredo sources, each with its own mapping (its own
//!    UDP source port) and its own embedded server, at a `teredo run` client's mapping:
//!    the client accepts them (RFC 4380 §5.2.3 case 3) but only as strangers, in their
//!    own small budget; its memory grows less than 32 MB, its direct flow to a peer goes
//!    on throughout (pings keep answering), and it reaches a new peer afterwards;
//! 2. a flood of packets from the IPv6 side to distinct Teredo destinations that never
//!    answer (100,000, twelve times `MaxPeers`; more through the environment, see
//!    [`DESTINATIONS`]), through a `teredo run` relay: it evicts the unanswered entries,
//!    its memory stays within the bound its limits give, and the native host's pings to a
//!    trusted client go on throughout and after.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Client, Daemon, Lab, NatKind, Node, Server};
use teredo_proto::address::{Flags, TEREDO_PREFIX, TeredoAddress};
use teredo_proto::peers::{DEFAULT_QUEUE_BYTES_TOTAL, Peer, slots_for};

use crate::{
    TEREDO, TestResult, WAIT, check_qualified, counter, ensure, only, start_teredo_server, vm_rss_kib,
};

/// The strangers sent at the client.
const STRANGERS: u32 = 50_000;
/// The client's `MaxPeers`: its budget of strangers is 1/8 of it, far fewer than the flood.
const CLIENT_MAX_PEERS: usize = 8192;
/// How much the client's resident memory may grow.
const CLIENT_RSS_BOUND_KIB: u64 = 32 * 1024;
/// The destinations sent to the relay, at most this many per second (a rate a debug
/// build of the relay keeps up with on a loaded machine: above it the packets, the pings
/// among them, are lost in the kernel's queue of the TUN, whatever the relay's table
/// does), and its `MaxPeers`. `TEREDO_LAB_FLOOD_DESTINATIONS` and `TEREDO_LAB_FLOOD_RATE`
/// change the first two (e.g. 10,000,000 at 50,000/s with `cargo test --release`).
const DESTINATIONS: u32 = 100_000;
const FLOOD_RATE: u32 = 5_000;
const RELAY_MAX_PEERS: usize = 8_192;
/// Allocator slack allowed above the relay's table and queues (pending outputs, the
/// allocator's arenas and thresholds).
const RELAY_SLACK_KIB: u64 = 8 * 1024;

/// Starts `teredo run` in `node` with the lab's `config` plus `MaxPeers max_peers`, and
/// waits for its start-up line `Teredo <role> on`.
fn start(node: &Node, name: &str, config: String, max_peers: usize, role: &str) -> TestResult<Daemon> {
    let config = format!("{config}MaxPeers {max_peers}\n");
    let d = miredo::start_with(node, name, &[TEREDO, "run"], &config)?;
    d.wait_log(&format!("Teredo {role} on"), WAIT)?;
    Ok(d)
}

fn start_client(c: &Client, server: &Server, name: &str) -> TestResult<Daemon> {
    start(c, name, miredo::client_config(server, IFACE), CLIENT_MAX_PEERS, "client")
}

/// Pings `to` from `from` once at a time while `f` runs; returns `f`'s result and (pings
/// answered, pings sent).
fn pinging<T>(from: &Node, to: Ipv6Addr, f: impl FnOnce() -> T) -> (T, (u32, u32)) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            let (mut ok, mut sent) = (0, 0);
            while !stop.load(Ordering::Relaxed) || sent < 3 {
                sent += 1;
                ok += u32::from(from.ping6(to, 1));
            }
            (ok, sent)
        });
        let r = f();
        stop.store(true, Ordering::Relaxed);
        (r, pinger.join().unwrap_or((0, 0)))
    })
}

/// Datagram `i` of the flood of strangers: an IPv4/UDP header from `from`, UDP port
/// 1024 + `i`, to the client's mapping `to`, carrying a UDP-in-IPv6 packet from the
/// Teredo address that embeds that mapping (and a server of its own) to `dst`. The inner
/// UDP checksum is left 0, which IPv6 forbids: the client's kernel drops the packet
/// silently once the tunnel has accepted it, so the flood gets no answers.
fn stranger_datagram(buf: &mut [u8; 84], i: u32, from: Ipv4Addr, to: SocketAddrV4, dst: Ipv6Addr) -> usize {
    let port = 1024 + (i % 60_000) as u16;
    let server = Ipv4Addr::new(198, 51, 100, 1 + (i % 200) as u8);
    let src = TeredoAddress {
        prefix: TEREDO_PREFIX,
        server,
        flags: Flags((i >> 8) as u16 & Flags::RANDOM_MASK),
        mapped_port: port,
        mapped_addr: from,
    }
    .to_ipv6();
    buf.fill(0);
    // IPv4 (the kernel fills in the checksum and the identification).
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&84u16.to_be_bytes());
    buf[6] = 0x40;
    buf[8] = 64;
    buf[9] = 17;
    buf[12..16].copy_from_slice(&from.octets());
    buf[16..20].copy_from_slice(&to.ip().octets());
    // UDP, no checksum.
    buf[20..22].copy_from_slice(&port.to_be_bytes());
    buf[22..24].copy_from_slice(&to.port().to_be_bytes());
    buf[24..26].copy_from_slice(&64u16.to_be_bytes());
    // IPv6: 16 bytes of UDP to port 9.
    buf[28] = 0x60;
    buf[32..34].copy_from_slice(&16u16.to_be_bytes());
    buf[34] = 17;
    buf[35] = 64;
    buf[36..52].copy_from_slice(&src.octets());
    buf[52..68].copy_from_slice(&dst.octets());
    buf[68..70].copy_from_slice(&port.to_be_bytes());
    buf[70..72].copy_from_slice(&9u16.to_be_bytes());
    buf[72..74].copy_from_slice(&16u16.to_be_bytes());
    buf[76..84].copy_from_slice(b"stranger");
    84
}

/// Sends the flood of strangers from `attacker` (a raw socket: each datagram has its own
/// UDP source port); returns (sent, send errors, elapsed).
fn send_strangers(attacker: &Client, to: SocketAddrV4, dst: Ipv6Addr) -> TestResult<(u32, u32, Duration)> {
    let from = attacker.ipv4;
    let r = attacker.enter(|| -> std::io::Result<(u32, u32, Duration)> {
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
        let target = SocketAddr::from(to).into();
        let mut buf = [0u8; 84];
        let (mut sent, mut errors) = (0, 0);
        let start = Instant::now();
        for i in 0..STRANGERS {
            let n = stranger_datagram(&mut buf, i, from, to, dst);
            match raw.send_to(&buf[..n], &target) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
            // "As fast as reasonable": leave the client's worker time to read.
            if i % 512 == 511 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok((sent, errors, start.elapsed()))
    })?;
    Ok(r?)
}

#[test]
fn client_survives_fifty_thousand_strangers() {
    teredo_lab::run("str-client", &[], |lab: &mut Lab| -> TestResult {
        lab.set_captures(false);
        let server = lab.server()?;
        let me = lab.public_client()?;
        let peer = lab.public_client()?;
        let later = lab.client_behind(NatKind::PortRestricted)?;
        let attacker = lab.public_client()?;
        let _server_d = start_teredo_server(&server, &[])?;
        let me_d = start_client(&me, &server, "teredo-me")?;
        let _peer_d = start_client(&peer, &server, "teredo-peer")?;
        let _later_d = start_client(&later, &server, "teredo-later")?;
        let (my_addr, my_teredo) = check_qualified(&me, server.primary)?;
        let (peer_addr, _) = check_qualified(&peer, server.primary)?;
        let (later_addr, _) = check_qualified(&later, server.primary)?;
        me.wait_ping6(peer_addr, WAIT)?;
        ensure!(me.ping6(peer_addr, 3), "the direct flow to the peer {peer_addr} does not go");

        let pid = me_d.pid().ok_or("client not running")?;
        let rss_before = vm_rss_kib(pid)?;
        let mapping = SocketAddrV4::new(my_teredo.mapped_addr, my_teredo.mapped_port);
        let (flood, (answered, pings)) =
            pinging(&me, peer_addr, || send_strangers(&attacker, mapping, my_addr));
        let (sent, errors, took) = flood?;
        std::thread::sleep(Duration::from_millis(500));
        let rss_after = vm_rss_kib(pid)?;
        let st = only(&me, false)?;
        let (admitted, evicted, refused) = (
            counter(&st, "strangers_admitted"),
            counter(&st, "strangers_evicted"),
            counter(&st, "strangers_refused"),
        );
        let growth = rss_after.saturating_sub(rss_before);
        println!(
            "strangers: {sent} sent ({errors} errors) in {took:.2?} ({:.0}/s) from {} at {mapping}",
            f64::from(sent) / took.as_secs_f64(),
            attacker.ipv4
        );
        println!(
            "strangers: client admitted {admitted}, evicted {evicted}, refused {refused}; {} peers \
             (MaxPeers {CLIENT_MAX_PEERS}, budget of strangers {})",
            st["peers"],
            CLIENT_MAX_PEERS / 8
        );
        println!(
            "strangers: client VmRSS {rss_before} KiB before, {rss_after} KiB after (+{growth} KiB, \
             bound {CLIENT_RSS_BOUND_KIB} KiB)"
        );
        println!("strangers: pings to the peer during the flood: {answered} of {pings} answered");
        ensure!(sent == STRANGERS, "only {sent} of {STRANGERS} strangers sent ({errors} errors)");
        ensure!(
            admitted >= u64::from(STRANGERS) / 2,
            "the client took only {admitted} of {STRANGERS} strangers: the flood did not reach it"
        );
        ensure!(evicted > 0 && evicted >= admitted - (CLIENT_MAX_PEERS / 8) as u64, "strangers not evicted");
        ensure!(st["peers"].as_u64().unwrap_or(u64::MAX) <= CLIENT_MAX_PEERS as u64, "too many peers");
        ensure!(growth < CLIENT_RSS_BOUND_KIB, "the client's memory grew by {growth} KiB");
        // A flood of 28,000 datagrams a second on a loaded 2-core machine may overflow the
        // client's socket buffer and cost a ping now and then: the flow continues when
        // three in four are answered during the flood and every one after it.
        ensure!(4 * answered >= 3 * pings, "the direct flow stopped: {answered} of {pings} pings answered");
        ensure!(me.ping6(peer_addr, 3), "the direct flow to the peer stopped after the flood");
        // A new destination after the flood.
        me.wait_ping6(later_addr, WAIT).map_err(|e| format!("no new destination after the flood: {e}"))?;
        ensure!(me.ping6(later_addr, 3), "the new peer {later_addr} answered once, then not again");
        println!("strangers: after the flood, the client reaches the new peer {later_addr}");
        Ok(())
    });
}

/// The flood's destination `i`: a Teredo address whose embedded server and mapping are
/// nowhere in the lab (the router has no route to them), so that nothing ever answers.
fn unanswering(i: u32) -> Ipv6Addr {
    TeredoAddress {
        prefix: TEREDO_PREFIX,
        server: Ipv4Addr::new(192, 0, 2, 100),
        flags: Flags((i / 65_000) as u16 & Flags::RANDOM_MASK),
        mapped_port: 1 + (i % 65_000) as u16,
        mapped_addr: Ipv4Addr::new(198, 51, 100, 250),
    }
    .to_ipv6()
}

/// A number from the environment variable `name`, or `default`.
fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// Sends one UDP datagram from `host` to each of `count` unanswering Teredo destinations,
/// at most `rate` per second; returns (sent, send errors, elapsed).
fn send_destinations(host: &Node, count: u32, rate: u32) -> TestResult<(u32, u32, Duration)> {
    let r = host.enter(|| -> std::io::Result<(u32, u32, Duration)> {
        let sock = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?;
        let (mut sent, mut errors) = (0, 0);
        let start = Instant::now();
        for i in 0..count {
            let ok = sock.send_to(b"nobody answers", (unanswering(i), 9)).is_ok();
            sent += u32::from(ok);
            errors += u32::from(!ok);
            if i % 64 == 63 {
                let due = start + Duration::from_secs_f64(f64::from(i + 1) / f64::from(rate));
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        }
        Ok((sent, errors, start.elapsed()))
    })?;
    Ok(r?)
}

#[test]
fn relay_survives_a_flood_of_unanswering_destinations() {
    teredo_lab::run("str-relay", &[], |lab: &mut Lab| -> TestResult {
        lab.set_captures(false);
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let relay_d = start(&relay, "teredo-relay", miredo::relay_config(IFACE), RELAY_MAX_PEERS, "relay")?;
        let _client_d = start_client(&client, &server, "teredo-client")?;
        let (addr, _) = check_qualified(&client, server.primary)?;
        client.wait_ping6(host.ipv6, WAIT)?;
        ensure!(host.ping6(addr, 3), "v6 host -> client {addr} through the relay failed");

        let pid = relay_d.pid().ok_or("relay not running")?;
        let rss_before = vm_rss_kib(pid)?;
        let count = env_number("TEREDO_LAB_FLOOD_DESTINATIONS", DESTINATIONS);
        let rate = env_number("TEREDO_LAB_FLOOD_RATE", FLOOD_RATE);
        let (flood, (answered, pings)) = pinging(&host, addr, || send_destinations(&host, count, rate));
        let (sent, errors, took) = flood?;
        std::thread::sleep(Duration::from_millis(500));
        let rss_after = vm_rss_kib(pid)?;
        let st = only(&relay, false)?;
        let growth = rss_after.saturating_sub(rss_before);
        // The bound the limits give: the table at MaxPeers (and a growth's peak, when the
        // old and the new table are both held: 19/8 of the last), the global queue
        // budget, and some slack.
        let table_kib = (slots_for(RELAY_MAX_PEERS) * size_of::<Peer>()) as u64 / 1024;
        let bound = table_kib * 19 / 8 + DEFAULT_QUEUE_BYTES_TOTAL as u64 / 1024 + RELAY_SLACK_KIB;
        println!(
            "relay flood: {sent} destinations sent ({errors} errors) in {took:.2?} ({:.0}/s)",
            f64::from(sent) / took.as_secs_f64()
        );
        println!(
            "relay flood: {} peers (MaxPeers {RELAY_MAX_PEERS}), {} inserted, {} evicted unanswered, \
             {} refused, {} queued packets evicted, {} discarded",
            st["peers"],
            counter(&st, "peers_inserted"),
            counter(&st, "evicted_unanswered"),
            counter(&st, "peers_refused_full"),
            counter(&st, "queue_evicted"),
            counter(&st, "queue_discarded"),
        );
        println!(
            "relay flood: relay VmRSS {rss_before} KiB before, {rss_after} KiB after (+{growth} KiB, \
             bound {bound} KiB = table {table_kib} KiB x 19/8 + queues {} KiB + slack {RELAY_SLACK_KIB} KiB)",
            DEFAULT_QUEUE_BYTES_TOTAL / 1024
        );
        println!("relay flood: host -> client pings during the flood: {answered} of {pings} answered");
        ensure!(sent == count, "only {sent} of {count} sent");
        let inserted = counter(&st, "peers_inserted");
        ensure!(
            inserted >= u64::from(count) * 9 / 10,
            "only {inserted} of {count} destinations reached the relay's table: the flood was lost on the way"
        );
        ensure!(st["peers"].as_u64().unwrap_or(u64::MAX) <= RELAY_MAX_PEERS as u64, "too many peers");
        ensure!(counter(&st, "evicted_unanswered") > 0, "the relay evicted nothing: did the flood reach it?");
        ensure!(growth <= bound, "the relay's memory grew by {growth} KiB, above {bound} KiB");
        ensure!(
            answered == pings,
            "the trusted client's flow suffered: {answered} of {pings} pings answered"
        );
        ensure!(host.ping6(addr, 3), "v6 host -> client {addr} failed after the flood");
        Ok(())
    });
}
