//! `teredo run` as a relay (`RelayType cone`, RFC 4380 §5.4) in the lab:
//!
//! 1. a Miredo client behind a port-restricted NAT (on our `teredo server`) and the native
//!    IPv6 host ping each other through the `teredo` relay, both ways;
//! 2. the same with a `teredo` client;
//! 3. the relay drops a well-formed Teredo datagram from a peer it never sent to (RFC 4380
//!    §5.4.2; it holds the packet of an unknown sender until the sender answers a keyed
//!    bubble, module `teredo_proto::tunnel::relearn`, which this one cannot), even though
//!    its embedded mapping is the sender's real one: nothing reaches the IPv6 host; once the host has sent to
//!    that peer, the very same datagram is accepted and delivered (the control);
//! 4. a packet for a non-Teredo destination routed into the relay's TUN is answered with
//!    an ICMPv6 destination unreachable, code 3 (§5.4.1), that reaches the sender;
//! 5. 8 MiB of TCP each way between a client (`teredo`, then Miredo's) and the host arrive
//!    byte for byte, while the relay cuts the host's TCP super-packets read from its TUN
//!    and joins the client's segments before writing them (the TUN offloads);
//! 6. a relay of two workers: each client's peer lives on the worker the steering programs
//!    bring both its directions to, and every client is reached both ways;
//! 7. a second relay started on the port of a running one is refused (SO_REUSEPORT must not
//!    mix them), and the first one keeps working.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use teredo_lab::lab::SERVER_IPV4;
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Daemon, Lab, NatKind, Relay};
use teredo_proto::address::{Flags, TEREDO_PREFIX, TeredoAddress};
use teredo_proto::wire::icmpv6::{Echo, Icmpv6Repr};

use crate::{
    MIREDO_NEEDS, TEREDO, TestResult, WAIT, check_unprivileged, ensure, start_teredo_server, tshark,
};

/// Starts `teredo run` as the lab relay (the lab's `RelayType cone` config) and waits
/// until its worker runs.
pub(crate) fn start_teredo_relay(relay: &Relay) -> TestResult<Daemon> {
    let d = miredo::start_relay_with(relay, IFACE, &[TEREDO, "run"])?;
    d.wait_log("Teredo relay on", WAIT)?;
    Ok(d)
}

/// The relay's UDP port, from its log line `Teredo relay on IFACE (UDP 0.0.0.0:PORT), ...`.
fn relay_port(log: &str) -> TestResult<u16> {
    let line = log.lines().find(|l| l.contains("Teredo relay on")).ok_or("no `Teredo relay on` line")?;
    let port = line
        .split("(UDP ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|a| a.parse::<SocketAddrV4>().ok())
        .map(|a| a.port())
        .ok_or_else(|| format!("no UDP address in {line:?}"))?;
    Ok(port)
}

/// The counters of the relay's summary at exit (`N sent, N delivered, ..., N dropped, N
/// peers`), by name.
fn summary_count(log: &str, name: &str) -> Option<u64> {
    let line = log.lines().rfind(|l| l.contains(" delivered, "))?;
    line.split(", ").find_map(|part| {
        let n = part.trim().strip_suffix(name)?.strip_suffix(' ')?;
        n.rsplit(' ').next()?.parse().ok()
    })
}

/// Stops the relay and returns its summary line and `sent`/`delivered`/`dropped` counts.
fn stop_and_count(relay_d: &mut Daemon) -> TestResult<(String, u64, u64, u64)> {
    relay_d.stop()?;
    let log = relay_d.log();
    let line = log.lines().rfind(|l| l.contains(" delivered, ")).unwrap_or("(no summary)").to_owned();
    let count =
        |n: &str| summary_count(&log, n).ok_or_else(|| format!("no `{n}` count in the relay's log:\n{log}"));
    Ok((line, count("sent")?, count("delivered")?, count("dropped")?))
}

// ---------------------------------------------------------------------------------------
// 1, 2. Clients reach the native IPv6 host through the relay
// ---------------------------------------------------------------------------------------

/// A client (`command`) behind a NAT of `kind`, on `teredo server`, and the v6 host ping
/// each other through `teredo run` as the relay; the relay's counters show that it carried
/// both directions. Behind a symmetric NAT the client's reply bubble comes from a mapping
/// other than its address's, and the relay trusts it by the token in its destination
/// (Miredo's `CheckBubble`).
fn client_reaches_v6_host(lab: &mut Lab, command: &[&str], kind: NatKind) -> TestResult {
    let server = lab.server()?;
    let relay = lab.relay()?;
    let host = lab.v6host()?;
    let client = lab.client_behind(kind)?;
    let _server_d = start_teredo_server(&server, &[])?;
    let mut relay_d = start_teredo_relay(&relay)?;
    let _client_d = miredo::start_client_with(&client, &server, IFACE, command)?;
    let (addr, _) = client.wait_teredo_address(IFACE, WAIT)?;
    client.wait_ping6(host.ipv6, WAIT)?;
    ensure!(client.ping6(host.ipv6, 3), "client {addr} -> v6 host failed after the first reply");
    ensure!(host.ping6(addr, 3), "v6 host -> client {addr} failed");
    let (line, sent, delivered, _) = stop_and_count(&mut relay_d)?;
    println!("relay's summary: {line}");
    ensure!(sent >= 6, "the relay sent only {sent} packets to the client: {line}");
    ensure!(delivered >= 6, "the relay delivered only {delivered} packets to the host: {line}");
    Ok(())
}

#[test]
fn relay_carries_miredo_client_to_v6_host() {
    teredo_lab::run("rly-miredo-client", MIREDO_NEEDS, |lab: &mut Lab| {
        client_reaches_v6_host(lab, &[miredo::MIREDO], NatKind::PortRestricted)
    });
}

#[test]
fn relay_carries_teredo_client_to_v6_host() {
    teredo_lab::run("rly-teredo-client", &[], |lab: &mut Lab| {
        client_reaches_v6_host(lab, &[TEREDO, "run"], NatKind::PortRestricted)
    });
}

#[test]
fn relay_carries_miredo_client_behind_symmetric_nat_to_v6_host() {
    teredo_lab::run("rly-miredo-symmetric", MIREDO_NEEDS, |lab: &mut Lab| {
        client_reaches_v6_host(lab, &[miredo::MIREDO], NatKind::Symmetric)
    });
}

#[test]
fn relay_carries_teredo_client_behind_symmetric_nat_to_v6_host() {
    teredo_lab::run("rly-teredo-symmetric", &[], |lab: &mut Lab| {
        client_reaches_v6_host(lab, &[TEREDO, "run"], NatKind::Symmetric)
    });
}

// ---------------------------------------------------------------------------------------
// 3. Inbound traffic from unknown peers is dropped
// ---------------------------------------------------------------------------------------

/// The UDP port the crafted datagrams come from.
const SPOOF_PORT: u16 = 40_000;

/// A Teredo datagram (no headers) carrying an echo request from `src` to `dst`.
fn echo_datagram(src: Ipv6Addr, dst: Ipv6Addr, sequence: u16) -> TestResult<Vec<u8>> {
    let mut buf = vec![0u8; 200];
    let data = *b"teredo relay lab: unknown peer test";
    let e = Echo { identifier: 0x7e1a, sequence, data: &data };
    let n = Icmpv6Repr::EchoRequest(e).emit_packet(&mut buf, src, dst, 64)?;
    buf.truncate(n);
    Ok(buf)
}

/// Lines of the capture `pcap` with an echo request from `src` (tshark).
fn echo_requests_from(pcap: &std::path::Path, src: Ipv6Addr) -> TestResult<Vec<String>> {
    tshark(pcap, &format!("ipv6.src == {src} && icmpv6.type == 128"), &["frame.number", "ipv6.dst"])
}

#[test]
fn relay_drops_datagrams_from_unknown_peers() {
    teredo_lab::run("rly-unknown-peer", &["tshark"], |lab: &mut Lab| -> TestResult {
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let sender = lab.public_client()?;
        let host_pcap = lab.capture(&host, "eth0")?;
        let mut relay_d = start_teredo_relay(&relay)?;
        let port = relay_port(&relay_d.log())?;
        let ss = relay.exec("ss", &["-H", "-n", "-l", "-u"])?;
        ensure!(ss.contains(&format!(":{port} ")), "nothing listens on UDP {port} in the relay:\n{ss}");

        // A valid Teredo source whose embedded mapping is the sender's real address and
        // port, as a relay checks it (RFC 4380 §5.4.2).
        let teredo = TeredoAddress {
            prefix: TEREDO_PREFIX,
            server: SERVER_IPV4,
            flags: Flags(0),
            mapped_port: SPOOF_PORT,
            mapped_addr: sender.ipv4,
        };
        let src = teredo.to_ipv6();
        let to = SocketAddr::from((relay.ipv4, port));
        let sock = sender.udp_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, SPOOF_PORT)))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        const TRIES: u16 = 20;
        for seq in 0..TRIES {
            sock.send_to(&echo_datagram(src, host.ipv6, seq)?, to)?;
        }
        std::thread::sleep(Duration::from_millis(500));
        let seen = echo_requests_from(&host_pcap, src)?;
        ensure!(seen.is_empty(), "the v6 host received echo requests from the unknown peer {src}: {seen:?}");
        println!("{TRIES} datagrams from the unknown peer {src}: none reached the v6 host");

        // The control: the host sends to that peer first (the relay makes its entry and
        // queues the packet); then the same datagram is accepted, and the relay sends the
        // queued request and the host's reply to the sender's mapping.
        let _ = host.exec_output("ping", &["-6", "-n", "-c", "1", "-W", "1", &src.to_string()])?;
        sock.send_to(&echo_datagram(src, host.ipv6, 100)?, to)?;
        let mut got_from_relay = 0;
        let mut buf = [0u8; 2048];
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            match sock.recv_from(&mut buf) {
                Ok((_, from)) if from == to => got_from_relay += 1,
                Ok(_) => {}
                Err(_) if got_from_relay > 0 => break,
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let seen = echo_requests_from(&host_pcap, src)?;
        ensure!(
            seen.len() == 1,
            "after the host sent to {src}, its datagram should reach the host once; capture: {seen:?}"
        );
        ensure!(got_from_relay >= 1, "the relay sent nothing to the known peer's mapping");
        println!(
            "control: once known, the peer's datagram reached the host; the relay sent it {got_from_relay} datagrams"
        );

        let (line, _, delivered, dropped) = stop_and_count(&mut relay_d)?;
        println!("relay's summary: {line}");
        ensure!(
            dropped >= u64::from(TRIES),
            "the relay counted {dropped} drops for {TRIES} datagrams: {line}"
        );
        ensure!(
            delivered == 1,
            "the relay delivered {delivered} packets, expected the control's only: {line}"
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// 4. Non-Teredo destinations get an unreachable
// ---------------------------------------------------------------------------------------

/// A native prefix misrouted into the relay.
const MISROUTED: &str = "2001:db8:dead::/48";

#[test]
fn relay_answers_non_teredo_destination_with_unreachable() {
    teredo_lab::run("rly-not-teredo", &["tshark"], |lab: &mut Lab| -> TestResult {
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let host_pcap = lab.capture(&host, "eth0")?;
        let _relay_d = start_teredo_relay(&relay)?;
        // The internet sends 2001:db8:dead::/48 to the relay, which sends it into its TUN.
        lab.internet().ip(&["-6", "route", "add", MISROUTED, "via", &relay.ipv6.to_string()])?;
        relay.ip(&["-6", "route", "add", MISROUTED, "dev", IFACE])?;
        let target = "2001:db8:dead::1";
        let out = host.exec_output("ping", &["-6", "-n", "-c", "2", "-i", "0.3", "-W", "1", target])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("ping {target} from the v6 host:\n{text}");
        ensure!(!out.status.success(), "a reply came from {target}?\n{text}");
        ensure!(
            text.contains("Destination unreachable: Address unreachable"),
            "no code 3 unreachable:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let filter = format!("icmpv6.type == 1 && icmpv6.code == 3 && ipv6.dst == {}", host.ipv6);
        let errors = tshark(&host_pcap, &filter, &["ipv6.src", "ipv6.dst"])?;
        println!("unreachables captured at the host: {errors:?}");
        ensure!(!errors.is_empty(), "no ICMPv6 code 3 unreachable reached the host ({filter})");
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// 5. TCP streams through the TUN offloads arrive intact
// ---------------------------------------------------------------------------------------

/// The bytes each way: enough for hundreds of 64 KiB super-packets.
const STREAM_BYTES: usize = 8 << 20;
/// The TCP port on the v6 host.
const STREAM_PORT: u16 = 5_001;

/// `len` reproducible pseudo-random bytes (xorshift64 from `seed`), so that a lost,
/// repeated or reordered piece shows.
fn stream_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The numbers of the `TUN offloads: N super-packets read cut into N packets, N written
/// joining N packets, N unusable` part of a daemon's summary at exit.
fn offload_counts(log: &str) -> Option<[u64; 5]> {
    let line = log.lines().rfind(|l| l.contains("TUN offloads: "))?;
    let part = line.split("TUN offloads: ").nth(1)?;
    let numbers: Vec<u64> =
        part.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    numbers.get(..5)?.try_into().ok()
}

/// A client (`command`) behind a port-restricted NAT sends 8 MiB over TCP to the v6 host
/// through the `teredo` relay, and the host sends 8 MiB back: both arrive byte for byte.
/// The relay's counters show that it read super-packets from its TUN and cut them (host to
/// client), and joined segments before writing them (client to host). With a `teredo`
/// client, the client's counters show the same on its side.
fn tcp_stream_through_relay(lab: &mut Lab, command: &[&str], client_offloads: bool) -> TestResult {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

    let server = lab.server()?;
    let relay = lab.relay()?;
    let host = lab.v6host()?;
    let client = lab.client_behind(NatKind::PortRestricted)?;
    let _server_d = start_teredo_server(&server, &[])?;
    let mut relay_d = start_teredo_relay(&relay)?;
    let mut client_d = miredo::start_client_with(&client, &server, IFACE, command)?;
    let (addr, _) = client.wait_teredo_address(IFACE, WAIT)?;
    client.wait_ping6(host.ipv6, WAIT)?;

    let up = stream_bytes(0x7e7ed0, STREAM_BYTES);
    let down = stream_bytes(0xd0e7e7, STREAM_BYTES);
    let listener = host.node.enter(|| TcpListener::bind(SocketAddr::from((host.ipv6, STREAM_PORT))))??;
    let host_side = std::thread::scope(|s| -> TestResult<(Vec<u8>, Vec<u8>)> {
        let far = s.spawn(|| -> std::io::Result<Vec<u8>> {
            let (mut c, _) = listener.accept()?;
            c.set_read_timeout(Some(WAIT))?;
            let mut got = Vec::with_capacity(STREAM_BYTES);
            c.read_to_end(&mut got)?;
            c.write_all(&down)?;
            c.shutdown(Shutdown::Write)?;
            Ok(got)
        });
        let mut c = client.enter(|| TcpStream::connect(SocketAddr::from((host.ipv6, STREAM_PORT))))??;
        c.set_read_timeout(Some(WAIT))?;
        c.write_all(&up)?;
        c.shutdown(Shutdown::Write)?;
        let mut back = Vec::with_capacity(STREAM_BYTES);
        c.read_to_end(&mut back)?;
        let got = far.join().map_err(|_| "the host's side panicked")??;
        Ok((got, back))
    })?;
    let (got, back) = host_side;
    let first_difference = |a: &[u8], b: &[u8]| a.iter().zip(b).position(|(x, y)| x != y);
    ensure!(
        got == up,
        "client {addr} -> host: {} of {} bytes, first difference at {:?}",
        got.len(),
        up.len(),
        first_difference(&got, &up)
    );
    ensure!(
        back == down,
        "host -> client {addr}: {} of {} bytes, first difference at {:?}",
        back.len(),
        down.len(),
        first_difference(&back, &down)
    );

    let (line, ..) = stop_and_count(&mut relay_d)?;
    println!("relay's summary: {line}");
    let [cut, segments, joined, coalesced, unusable] = offload_counts(&relay_d.log())
        .ok_or_else(|| format!("no offload counters in the relay's summary: {line}"))?;
    ensure!(cut > 0 && segments > cut, "the relay cut no super-packet from the host's stream: {line}");
    ensure!(joined > 0 && coalesced > joined, "the relay joined no segment of the client's stream: {line}");
    ensure!(unusable == 0, "the relay found {unusable} unusable TUN packets: {line}");
    if client_offloads {
        client_d.stop()?;
        let log = client_d.log();
        let line = log.lines().rfind(|l| l.contains("TUN offloads: ")).unwrap_or("(no summary)").to_owned();
        println!("client's summary: {line}");
        let [cut, _, joined, _, unusable] = offload_counts(&log)
            .ok_or_else(|| format!("no offload counters in the client's summary: {line}"))?;
        ensure!(cut > 0 && joined > 0 && unusable == 0, "the client's offloads did not work: {line}");
    }
    Ok(())
}

#[test]
fn tcp_stream_through_relay_with_teredo_client_is_intact() {
    teredo_lab::run("rly-tcp-teredo", &[], |lab: &mut Lab| {
        tcp_stream_through_relay(lab, &[TEREDO, "run"], true)
    });
}

#[test]
fn tcp_stream_through_relay_with_miredo_client_is_intact() {
    teredo_lab::run("rly-tcp-miredo", MIREDO_NEEDS, |lab: &mut Lab| {
        tcp_stream_through_relay(lab, &[miredo::MIREDO], false)
    });
}

// ---------------------------------------------------------------------------------------
// 6. A relay of two workers: each peer is served by the worker it is steered to
// ---------------------------------------------------------------------------------------

/// At most this many clients behind one NAT, each with its own mapping (port).
const STEERED_CLIENTS_MAX: usize = 20;
/// The relay's steering key, given so that the test can predict each peer's worker.
const STEERING_KEY: u64 = 0x0bad_cafe_dead_beef;

/// The `(A+B by worker)` part of the relay's summary.
fn peers_by_worker(log: &str) -> Option<Vec<u64>> {
    let line = log.lines().rfind(|l| l.contains(" by worker)"))?;
    let part = line.split(" by worker)").next()?.rsplit('(').next()?;
    part.split('+').map(|n| n.parse().ok()).collect()
}

/// `teredo run --workers 2` as the relay, and `teredo` clients behind one port-restricted
/// NAT (one mapping each) until each worker has at least two of them: every client pings
/// the v6 host and is pinged back through the relay. The UDP side (a SO_REUSEPORT group
/// steered by a classic BPF program) and the TUN side (a multi-queue TUN steered by an eBPF
/// program) must bring both directions of each peer to the same worker, or the pings of
/// some clients would fail. And the relay's count of peers per worker is exactly what
/// `teredo_net::steer::shard` predicts from the mappings.
#[test]
fn relay_with_two_workers_steers_each_peer_to_one_worker() {
    teredo_lab::run("rly-workers", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let nat = lab.nat(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let key = STEERING_KEY.to_string();
        let command = [TEREDO, "run", "--workers", "2", "--test-steering-key", &key];
        let mut relay_d = miredo::start_relay_with(&relay, IFACE, &command)?;
        relay_d.wait_log("Teredo relay on", WAIT)?;
        ensure!(
            relay_d.log().contains("2 workers"),
            "the relay does not run two workers:\n{}",
            relay_d.log()
        );
        let mut expected = [0u64; 2];
        let mut daemons = Vec::new();
        while expected.iter().any(|&c| c < 2) {
            ensure!(
                daemons.len() < STEERED_CLIENTS_MAX,
                "{} clients and still not two on each worker: {expected:?}",
                daemons.len()
            );
            let c = lab.client(&nat)?;
            daemons.push(miredo::start_client_with(&c, &server, IFACE, &[TEREDO, "run"])?);
            let (addr, t) = c.wait_teredo_address(IFACE, WAIT)?;
            let shard = teredo_net::steer::shard(t.mapped_addr, t.mapped_port, 2, STEERING_KEY);
            expected[shard as usize] += 1;
            c.wait_ping6(host.ipv6, WAIT)?;
            ensure!(c.ping6(host.ipv6, 2), "client {addr} (worker {shard}) -> v6 host failed");
            ensure!(host.ping6(addr, 2), "v6 host -> client {addr} (worker {shard}) failed");
        }
        // The packet path runs unprivileged: every thread, both workers included.
        let pid = relay_d.pid().ok_or("the relay is not running")?;
        let threads = check_unprivileged(pid, "relay")?;
        ensure!(threads >= 3, "the relay has {threads} threads: not a main thread and two workers");
        relay_d.stop()?;
        let log = relay_d.log();
        let got =
            peers_by_worker(&log).ok_or_else(|| format!("no peers by worker in the relay's log:\n{log}"))?;
        println!("peers by worker: expected {expected:?}, relay says {got:?}");
        ensure!(got == expected, "peers by worker {got:?}, but the mappings steer {expected:?}");
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// 7. A second relay on the same port is refused, not mixed into the first one's group
// ---------------------------------------------------------------------------------------

/// A relay with `BindPort 3545` and two workers (a SO_REUSEPORT group) runs; a second one
/// started by mistake with the same port must fail at start-up naming `BindPort` (its
/// sockets must not join the first relay's group and take half of its traffic), and the
/// first one must keep carrying a client's pings.
#[test]
fn a_second_relay_on_the_same_port_is_refused() {
    teredo_lab::run("rly-port-taken", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let config = |iface: &str| format!("RelayType cone\nInterfaceName {iface}\nBindPort 3545\n");
        let command = [TEREDO, "run", "--workers", "2"];
        let first = miredo::start_with(&relay, "first", &command, &config(IFACE))?;
        first.wait_log("Teredo relay on", WAIT)?;
        ensure!(
            first.log().contains("2 workers"),
            "the first relay does not run two workers:\n{}",
            first.log()
        );
        let mut second = miredo::start_with(&relay, "second", &command, &config("teredo9"))?;
        let status = second.wait_exit(WAIT)?;
        let log = second.log();
        ensure!(!status.success(), "the second relay started:\n{log}");
        ensure!(
            log.contains("BindPort") && log.contains("in use"),
            "the second relay's error does not name BindPort and the port in use:\n{log}"
        );
        let _client_d = miredo::start_client_with(&client, &server, IFACE, &[TEREDO, "run"])?;
        let (addr, _) = client.wait_teredo_address(IFACE, WAIT)?;
        client.wait_ping6(host.ipv6, WAIT)?;
        ensure!(client.ping6(host.ipv6, 3) && host.ping6(addr, 3), "the first relay stopped carrying pings");
        Ok(())
    });
}
