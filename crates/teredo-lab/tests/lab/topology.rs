//! The topology without any Teredo daemon: reachability through the router and the NATs,
//! and each NAT kind's mapping and filtering, checked with UDP sockets opened inside the
//! namespaces.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use teredo_lab::{Client, Lab, NatKind, Node, lab};

use crate::{TestResult, ensure};

#[test]
fn routing_and_addresses() {
    teredo_lab::run("topology-routing", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let v6 = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let public = lab.public_client()?;
        ensure!(
            server.ipv4_addrs(lab::ETH)? == vec![lab::SERVER_IPV4, lab::SERVER_IPV4_2],
            "server addresses"
        );
        ensure!(server.ipv6_addrs(lab::ETH)?.contains(&lab::SERVER_IPV6), "server IPv6");
        ensure!(client.ping4(server.secondary, 1), "client -> server through the NAT");
        ensure!(public.ping4(relay.ipv4, 1), "public client -> relay");
        ensure!(server.ping6(v6.ipv6, 1), "server -> v6 host");
        ensure!(v6.ping6(relay.ipv6, 1), "v6 host -> relay");
        // Nothing leaves the lab: the router has no default route.
        let routes = lab.internet().ip(&["route", "show", "default"])?;
        ensure!(routes.trim().is_empty(), "router has a default route: {routes}");
        // Private LAN addresses are not routed on the internet.
        let nat = client.nat.clone().ok_or("client without NAT")?;
        ensure!(!server.ping4(client.ipv4, 1), "LAN address reachable from outside");
        ensure!(nat.public == Ipv4Addr::new(198, 51, 100, 1), "first NAT address");
        Ok(())
    });
}

/// A UDP socket in `node` bound to `ip:port`, with a short read timeout.
fn sock(node: &Node, ip: Ipv4Addr, port: u16) -> Result<UdpSocket, Box<dyn std::error::Error>> {
    let s = node.udp_bind(SocketAddr::from((ip, port)))?;
    s.set_read_timeout(Some(Duration::from_millis(300)))?;
    Ok(s)
}

/// The source a datagram to `s` came from, if one came within the timeout.
fn recv_from(s: &UdpSocket) -> Option<SocketAddr> {
    let mut buf = [0u8; 64];
    s.recv_from(&mut buf).ok().map(|(_, from)| from)
}

/// Behaviour of one NAT kind, observed from outside: the mapping seen by two remotes, and
/// which unsolicited senders get in.
fn observe(lab: &mut Lab, kind: NatKind) -> TestResult {
    let server = lab.server()?;
    let relay = lab.relay()?;
    let client: Client = lab.client_behind(kind)?;
    let nat = client.nat.clone().ok_or("client without NAT")?;
    let c = sock(&client, client.ipv4, 40000)?;
    let s1 = sock(&server, server.primary, 3544)?;
    let s1b = sock(&server, server.primary, 3545)?;
    let s2 = sock(&server, server.secondary, 3544)?;
    let r = sock(&relay, relay.ipv4, 5000)?;

    c.send_to(b"a", SocketAddr::from((server.primary, 3544)))?;
    let m1 = recv_from(&s1).ok_or("server primary got nothing")?;
    c.send_to(b"b", SocketAddr::from((server.secondary, 3544)))?;
    let m2 = recv_from(&s2).ok_or("server secondary got nothing")?;
    ensure!(
        m1.ip() == std::net::IpAddr::V4(nat.public),
        "mapped address {m1} is not the NAT's {}",
        nat.public
    );
    let eim = m1 == m2;
    ensure!(eim == kind.endpoint_independent_mapping(), "{kind}: mappings {m1} and {m2}");
    // The conntrack view agrees with what the server saw.
    let ct = nat.mapped_port(client.ipv4, SocketAddrV4::new(server.primary, 3544))?;
    ensure!(ct == Some(m1.port()), "{kind}: conntrack says {ct:?}, server saw {m1}");

    // Unsolicited senders: same address other port, other address.
    s1b.send_to(b"c", m1)?;
    let same_addr = recv_from(&c).is_some();
    r.send_to(b"d", m1)?;
    let other_addr = recv_from(&c).is_some();
    let (want_same, want_other) = match kind {
        NatKind::FullCone => (true, true),
        NatKind::AddressRestricted => (true, false),
        NatKind::PortRestricted | NatKind::Symmetric => (false, false),
    };
    ensure!(
        (same_addr, other_addr) == (want_same, want_other),
        "{kind}: unsolicited from same address passed: {same_addr} (want {want_same}), \
         from other address: {other_addr} (want {want_other})"
    );
    // Replies always come in.
    s1.send_to(b"e", m1)?;
    ensure!(recv_from(&c).is_some(), "{kind}: reply from the server blocked");
    Ok(())
}

#[test]
fn nat_full_cone() {
    teredo_lab::run("nat-full-cone", &[], |lab: &mut Lab| observe(lab, NatKind::FullCone));
}

#[test]
fn nat_address_restricted() {
    teredo_lab::run("nat-address-restricted", &[], |lab: &mut Lab| observe(lab, NatKind::AddressRestricted));
}

#[test]
fn nat_port_restricted() {
    teredo_lab::run("nat-port-restricted", &[], |lab: &mut Lab| observe(lab, NatKind::PortRestricted));
}

#[test]
fn nat_symmetric() {
    teredo_lab::run("nat-symmetric", &[], |lab: &mut Lab| observe(lab, NatKind::Symmetric));
}
