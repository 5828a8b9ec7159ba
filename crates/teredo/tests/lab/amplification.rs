//! No amplification (RFC 4380 §5.2.6, §7.3), counted on the wire: a native IPv6 host sends
//! one UDP packet to each of 200 new Teredo destinations whose mappings and server (in
//! 203.0.113.128/25, routed by the lab's router to nowhere) never answer, then 10 packets
//! to one more; a capture on the relay's IPv4 side counts the bubbles that leave (IPv6
//! next header 59, payload length 0, inside UDP, indirect ones to the servers included).
//! At most one bubble per packet (the lab's cone relay sends the indirect bubble only),
//! at most 5 for the 10 packets, and none later from a timer. Then the same from our
//! client behind a NAT, counted on its own interface.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use teredo_lab::lab::ETH;
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Lab, NatKind, Node};
use teredo_proto::address::{Flags, TEREDO_PREFIX, TeredoAddress};

use crate::{TEREDO, TestResult, WAIT, ensure, start_teredo_server, tshark};

/// The server of the unanswering destinations.
const SILENT_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 250);
/// Destinations of the flood.
const DESTINATIONS: u32 = 200;
/// Packets to the single destination.
const REPEATS: u32 = 10;

/// The `i`th unanswering destination.
fn destination(i: u32) -> Ipv6Addr {
    TeredoAddress {
        prefix: TEREDO_PREFIX,
        server: SILENT_SERVER,
        flags: Flags(0),
        mapped_port: 20_000 + i as u16,
        mapped_addr: Ipv4Addr::new(203, 0, 113, 128 + (i % 100) as u8),
    }
    .to_ipv6()
}

/// Sends one UDP datagram from `node` to each of `to`, 2 ms apart.
fn send_udp(node: &Node, to: impl Iterator<Item = Ipv6Addr>) -> TestResult {
    let s = node.udp_bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))?;
    for dst in to {
        s.send_to(b"amplification?", SocketAddr::from((dst, 9)))?;
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The bubbles in `pcap` sent from `ipv4`, to the IPv6 destination `dst` if given.
fn bubbles(pcap: &Path, ipv4: Ipv4Addr, dst: Option<Ipv6Addr>) -> TestResult<usize> {
    // Local discovery bubbles (RFC 4380 §5.2.8, to 224.0.0.253 every 200 to 300 s) are no
    // answer to a packet, and ICMP errors of the router quote bubbles: both left out.
    let mut filter = format!(
        "ip.src == {ipv4} && !icmp && !(ip.dst == 224.0.0.0/4) && udp && ipv6.nxt == 59 && ipv6.plen == 0"
    );
    if let Some(d) = dst {
        filter.push_str(&format!(" && ipv6.dst == {d}"));
    }
    Ok(tshark(pcap, &filter, &["frame.number"])?.len())
}

/// Sends the flood from `node` (200 destinations, then 10 packets to one), waits 8 s
/// (the old timer repeated bubbles 2, 4 and 6 s later), and returns the bubbles the
/// capture `pcap` saw from `ipv4`: in all, and to the single destination.
fn flood_and_count(node: &Node, pcap: &Path, ipv4: Ipv4Addr) -> TestResult<(usize, usize)> {
    send_udp(node, (0..DESTINATIONS).map(destination))?;
    let one = destination(DESTINATIONS);
    send_udp(node, (0..REPEATS).map(|_| one))?;
    std::thread::sleep(Duration::from_secs(8));
    let all = bubbles(pcap, ipv4, None)?;
    let single = bubbles(pcap, ipv4, Some(one))?;
    Ok((all - single, single))
}

#[test]
fn a_relay_sends_at_most_one_bubble_per_packet() {
    teredo_lab::run("amp-relay", &["tshark"], |lab: &mut Lab| -> TestResult {
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let pcap = lab.capture(&relay.node, ETH)?;
        let mut relay_d = crate::relay::start_teredo_relay(&relay)?;
        let (flood, single) = flood_and_count(&host.node, &pcap, relay.ipv4)?;
        println!(
            "relay: {DESTINATIONS} packets to {DESTINATIONS} new destinations: {flood} bubbles on the wire; \
             {REPEATS} packets to one: {single}"
        );
        relay_d.stop()?;
        let log = relay_d.log();
        ensure!(flood > 0, "no bubble at all left the relay: is the capture right?\n{log}");
        ensure!(flood <= DESTINATIONS as usize, "{flood} bubbles for {DESTINATIONS} packets");
        ensure!(single <= 5, "{single} bubbles for {REPEATS} packets to one destination");
        Ok(())
    });
}

#[test]
fn a_client_sends_one_probe_per_packet() {
    teredo_lab::run("amp-client", &["tshark"], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let _server_d = start_teredo_server(&server, &[])?;
        let pcap = lab.capture(&client.node, ETH)?;
        let mut client_d = miredo::start_client_with(&client, &server, IFACE, &[TEREDO, "run"])?;
        client.wait_teredo_address(IFACE, WAIT)?;
        let lan = *client.node.ipv4_addrs(ETH)?.first().ok_or("the client has no IPv4 address")?;
        let (flood, single) = flood_and_count(&client.node, &pcap, lan)?;
        println!(
            "client: {DESTINATIONS} packets to {DESTINATIONS} new peers: {flood} bubbles on the wire; \
             {REPEATS} packets to one: {single}"
        );
        client_d.stop()?;
        // A direct bubble and two indirect ones per probe (RFC 4380 §5.2.6, RFC 6081
        // §5.2.4.1: the keyed source for Miredo peers, the Teredo address for others).
        ensure!(flood > 0, "no bubble at all left the client: is the capture right?");
        ensure!(flood <= 3 * DESTINATIONS as usize, "{flood} bubbles for {DESTINATIONS} packets");
        ensure!(single <= 5, "{single} bubbles for {REPEATS} packets to one peer");
        Ok(())
    });
}
