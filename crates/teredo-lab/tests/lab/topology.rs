//! The topology without any Teredo daemon: reachability through the router and the NATs,
//! and each NAT kind of RFC 6081 Figure 1 checked from outside with UDP sockets opened
//! inside the namespaces: its mapping (what two remotes see), port preservation and
//! sequence, its filtering (which unsolicited senders get in), UPnP port mappings made with
//! `upnpc`, and two clients behind one NAT, which does not hairpin.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use teredo_lab::nat::{Filtering, Mapping, upnpc};
use teredo_lab::{Client, Lab, NatKind, Node, lab, wait_until};

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

/// Sends from `from` to `to`'s address and returns the source `to` saw: the mapping.
fn mapping_seen(from: &UdpSocket, to: &UdpSocket) -> Result<SocketAddrV4, Box<dyn std::error::Error>> {
    let dst = to.local_addr()?;
    from.send_to(b"m", dst)?;
    match recv_from(to) {
        Some(SocketAddr::V4(m)) => Ok(m),
        other => Err(format!("{dst} got {other:?} from {}", from.local_addr()?).into()),
    }
}

/// The kinds' programs beyond the lab's own, with `upnpc` for the UPnP kinds' tests.
fn needs(kinds: &[NatKind]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = kinds.iter().flat_map(|k| k.programs().iter().copied()).collect();
    if kinds.iter().any(|k| k.upnp()) {
        v.push(upnpc::UPNPC);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Runs `observe` for `kind` in a lab of its own.
fn observe_kind(kind: NatKind) {
    let name = format!("nat-{kind}");
    teredo_lab::run(&name, &needs(&[kind]), |lab: &mut Lab| observe(lab, kind));
}

/// Behaviour of one NAT kind, observed from outside: the mapping seen by three remotes
/// (the server's primary address on two ports, then its secondary address), and which
/// unsolicited senders get in.
fn observe(lab: &mut Lab, kind: NatKind) -> TestResult {
    let server = lab.server()?;
    let relay = lab.relay()?;
    let client: Client = lab.client_behind(kind)?;
    let nat = client.nat.clone().ok_or("client without NAT")?;
    let c = sock(&client, client.ipv4, 40000)?;
    let s1 = sock(&server, server.primary, 3544)?;
    let s1b = sock(&server, server.primary, 3545)?;
    let s1c = sock(&server, server.primary, 3546)?;
    let s2 = sock(&server, server.secondary, 3544)?;
    let r = sock(&relay, relay.ipv4, 5000)?;

    let m1 = mapping_seen(&c, &s1)?;
    let m1b = mapping_seen(&c, &s1b)?;
    let m2 = mapping_seen(&c, &s2)?;
    println!(
        "{kind}: 10.0.x.2:40000 seen as {m1} by {}, {m1b} by {}, {m2} by {}",
        s1.local_addr()?,
        s1b.local_addr()?,
        s2.local_addr()?
    );
    for m in [m1, m1b, m2] {
        ensure!(
            nat.publics.contains(m.ip()),
            "{kind}: mapped address {m} is not one of the NAT's {:?}",
            nat.publics
        );
    }
    ensure!(
        *m1.ip() == nat.public,
        "{kind}: the first remote sees {m1}, not the NAT's first address {}",
        nat.public
    );
    match kind.mapping() {
        Mapping::EndpointIndependent => {
            ensure!(m1 == m1b && m1 == m2, "{kind}: endpoint-independent mapping, yet {m1}, {m1b}, {m2}")
        }
        Mapping::AddressDependent => {
            ensure!(m1 == m1b, "{kind}: same remote address, yet {m1} and {m1b}");
            ensure!(
                m1.ip() != m2.ip(),
                "{kind}: another remote address, yet the same public address: {m1}, {m2}"
            );
        }
        Mapping::AddressAndPortDependent => {
            ensure!(
                m1.ip() == m1b.ip() && m1.ip() == m2.ip(),
                "{kind}: one public address, yet {m1}, {m1b}, {m2}"
            );
            ensure!(
                m1.port() != m1b.port() && m1.port() != m2.port() && m1b.port() != m2.port(),
                "{kind}: a port per remote endpoint, yet {m1}, {m1b}, {m2}"
            );
        }
    }
    if kind.port_preserving() {
        ensure!(m1.port() == 40000, "{kind}: port-preserving, yet the free local port 40000 became {m1}");
    }
    if let Some(step) = kind.sequential_step() {
        ensure!(
            m1b.port() == m1.port() + step && m2.port() == m1b.port() + step,
            "{kind}: ports in steps of {step}, yet {m1}, {m1b}, {m2}"
        );
    }
    // The NAT's own view (conntrack or the userland NAT's bindings) agrees.
    let seen = nat.mapping(client.ipv4, SocketAddrV4::new(server.primary, 3544))?;
    ensure!(seen == Some(m1), "{kind}: the NAT says {seen:?}, the server saw {m1}");

    // Unsolicited senders: same address other port, other address.
    s1c.send_to(b"c", m1)?;
    let same_addr = recv_from(&c).is_some();
    r.send_to(b"d", m1)?;
    let other_addr = recv_from(&c).is_some();
    let (want_same, want_other) = match kind.filtering() {
        Filtering::EndpointIndependent => (true, true),
        Filtering::AddressDependent => (true, false),
        Filtering::AddressAndPortDependent => (false, false),
    };
    ensure!(
        (same_addr, other_addr) == (want_same, want_other),
        "{kind}: unsolicited from same address passed: {same_addr} (want {want_same}), \
         from other address: {other_addr} (want {want_other})"
    );
    // Replies always come in, from the address and port they were sent from.
    s1.send_to(b"e", m1)?;
    let from = recv_from(&c).ok_or(format!("{kind}: reply from the server blocked"))?;
    ensure!(from == s1.local_addr()?, "{kind}: the reply came from {from}");
    s2.send_to(b"f", m2)?;
    ensure!(recv_from(&c).is_some(), "{kind}: reply from the secondary address blocked");
    Ok(())
}

#[test]
fn nat_full_cone() {
    observe_kind(NatKind::FullCone);
}

#[test]
fn nat_address_restricted() {
    observe_kind(NatKind::AddressRestricted);
}

#[test]
fn nat_port_restricted() {
    observe_kind(NatKind::PortRestricted);
}

#[test]
fn nat_upnp_port_restricted() {
    observe_kind(NatKind::UpnpPortRestricted);
}

#[test]
fn nat_upnp_port_symmetric() {
    observe_kind(NatKind::UpnpPortSymmetric);
}

#[test]
fn nat_port_preserving_symmetric() {
    observe_kind(NatKind::PortPreservingSymmetric);
}

#[test]
fn nat_sequential_symmetric() {
    observe_kind(NatKind::SequentialSymmetric);
}

#[test]
fn nat_symmetric() {
    observe_kind(NatKind::Symmetric);
}

#[test]
fn nat_address_symmetric() {
    observe_kind(NatKind::AddressSymmetric);
}

/// A port-preserving port-symmetric NAT keeps a local port only while no other binding of
/// the NAT uses it as its public port: not for the same client's second remote, not for
/// another client with the same local port.
#[test]
fn nat_port_preserving_only_when_free() {
    let kind = NatKind::PortPreservingSymmetric;
    teredo_lab::run("nat-port-preserving-taken", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let c1 = lab.client_behind(kind)?;
        let c2 = lab.client_beside(&c1)?;
        let a = sock(&c1, c1.ipv4, 40000)?;
        let b = sock(&c2, c2.ipv4, 40000)?;
        let b2 = sock(&c2, c2.ipv4, 40001)?;
        let s1 = sock(&server, server.primary, 3544)?;
        let s2 = sock(&server, server.secondary, 3544)?;
        let first = mapping_seen(&a, &s1)?;
        let second = mapping_seen(&a, &s2)?;
        let other = mapping_seen(&b, &s1)?;
        let free = mapping_seen(&b2, &s1)?;
        println!("{kind}: c1:40000 -> {first} and {second}; c2:40000 -> {other}; c2:40001 -> {free}");
        ensure!(first.port() == 40000, "free port not kept: {first}");
        ensure!(second.port() != 40000, "40000 is taken by c1's first binding, yet {second}");
        ensure!(other.port() != 40000 && other != second, "40000 is taken, yet c2 got {other}");
        ensure!(free.port() == 40001, "free port 40001 not kept: {free}");
        Ok(())
    });
}

/// The SSDP packets of a pcap file (UDP port 1900 or the SSDP group), counted by tcpdump.
fn ssdp_packets(pcap: &std::path::Path) -> Result<usize, Box<dyn std::error::Error>> {
    let out = std::process::Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["udp port 1900 or host 239.255.255.250"])
        .output()?;
    if !out.status.success() {
        return Err(format!("tcpdump -r {}: {}", pcap.display(), String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// A UPnP NAT of `kind`, checked with `upnpc` from a client as an application would:
/// the IGD is found by SSDP on the LAN and tells the NAT's public address; a port mapping
/// lets anyone in to the mapped local port; the client's own flows keep the kind's
/// behaviour; DeletePortMapping closes it again; no SSDP leaves the LAN.
fn upnp_mapping(lab: &mut Lab, kind: NatKind) -> TestResult {
    let server = lab.server()?;
    let relay = lab.relay()?;
    let client = lab.client_behind(kind)?;
    let nat = client.nat.clone().ok_or("client without NAT")?;
    let url = nat.igd_url().ok_or("no IGD")?;
    let found = upnpc::discover(&client)?;
    ensure!(found.contains(&url), "{kind}: SSDP found {found:?}, not {url}");
    let ext = upnpc::external_ip(&client, &url)?;
    ensure!(
        ext == nat.public,
        "{kind}: GetExternalIPAddress says {ext}, the NAT's address is {}",
        nat.public
    );

    let local = SocketAddrV4::new(client.ipv4, 40000);
    let public = SocketAddrV4::new(nat.public, 40000);
    let c = sock(&client, client.ipv4, 40000)?;
    let r = sock(&relay, relay.ipv4, 5000)?;
    let r2 = sock(&relay, relay.ipv4, 5001)?;
    let s2 = sock(&server, server.secondary, 3544)?;
    r.send_to(b"before", public)?;
    ensure!(recv_from(&c).is_none(), "{kind}: unsolicited packet passed before any port mapping");

    upnpc::add_udp(&client, &url, local, 40000)?;
    let mapped = |m: &teredo_lab::nat::userland::UpnpMapping| m.external_port == 40000 && m.internal == local;
    wait_until(&format!("{kind} to apply the port mapping"), Duration::from_secs(5), || {
        Ok(nat.upnp_mappings().iter().any(mapped).then_some(()))
    })?;
    let listed = upnpc::list_udp(&client, &url)?;
    ensure!(listed.contains(&(40000, local)), "{kind}: the IGD lists {listed:?}");
    for (who, s) in [("the relay", &r), ("the server's secondary address", &s2)] {
        s.send_to(b"in", public)?;
        let from = recv_from(&c).ok_or(format!("{kind}: {who} could not reach the mapped port"))?;
        ensure!(from == s.local_addr()?, "{kind}: {who}'s packet arrived from {from}");
    }
    // The client's own flows: the mapped port toward a first remote; a new port toward a
    // second one on a symmetric NAT.
    let s1 = sock(&server, server.primary, 3547)?;
    let s3 = sock(&server, server.secondary, 3548)?;
    let out1 = mapping_seen(&c, &s1)?;
    let out2 = mapping_seen(&c, &s3)?;
    println!("{kind}: UPnP {public} -> {local}; the client's flows leave as {out1} and {out2}");
    ensure!(out1 == public, "{kind}: the first flow from the mapped port leaves as {out1}");
    ensure!(
        (out2 == public) == kind.endpoint_independent_mapping(),
        "{kind}: the second flow leaves as {out2}"
    );

    upnpc::delete_udp(&client, &url, 40000)?;
    wait_until(&format!("{kind} to drop the port mapping"), Duration::from_secs(5), || {
        Ok((!nat.upnp_mappings().iter().any(mapped)).then_some(()))
    })?;
    let listed = upnpc::list_udp(&client, &url)?;
    ensure!(listed.is_empty(), "{kind}: the IGD still lists {listed:?}");
    r2.send_to(b"after", public)?;
    ensure!(recv_from(&c).is_none(), "{kind}: a new sender still reaches the deleted mapping");

    let wan = lab.captures().into_iter().find(|p| p.ends_with(format!("{}-wan.pcap", nat.role())));
    let wan = wan.ok_or("no capture on the NAT's wan")?;
    let n = ssdp_packets(&wan)?;
    ensure!(n == 0, "{kind}: {n} SSDP packets on the NAT's public side ({})", wan.display());
    Ok(())
}

#[test]
fn nat_upnp_port_restricted_port_mapping() {
    let kind = NatKind::UpnpPortRestricted;
    teredo_lab::run("nat-upnp-pr-mapping", &needs(&[kind]), |lab: &mut Lab| upnp_mapping(lab, kind));
}

#[test]
fn nat_upnp_port_symmetric_port_mapping() {
    let kind = NatKind::UpnpPortSymmetric;
    teredo_lab::run("nat-upnp-ps-mapping", &needs(&[kind]), |lab: &mut Lab| upnp_mapping(lab, kind));
}

/// Two clients behind one NAT of every kind talk over the LAN, by their local addresses;
/// neither reaches the other through its public mapping (no NAT hairpins).
#[test]
fn nat_two_clients_behind_one_nat_talk_over_the_lan() {
    let kinds = NatKind::FIGURE_1;
    teredo_lab::run("nat-two-behind-one", &needs(&kinds), |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        for kind in kinds {
            let c1 = lab.client_behind(kind)?;
            let c2 = lab.client_beside(&c1)?;
            ensure!(c1.nat.as_ref().map(|n| n.index) == c2.nat.as_ref().map(|n| n.index), "not one NAT");
            let a = sock(&c1, c1.ipv4, 40000)?;
            let b = sock(&c2, c2.ipv4, 40000)?;
            let s = sock(&server, server.primary, 3544 + u16::from(c1.nat.as_ref().map_or(0, |n| n.index)))?;
            let ma = mapping_seen(&a, &s)?;
            let mb = mapping_seen(&b, &s)?;
            ensure!(ma != mb, "{kind}: both clients seen as {ma}");
            // Over the LAN, both ways.
            let seen = mapping_seen(&a, &b)?;
            ensure!(seen == SocketAddrV4::new(c1.ipv4, 40000), "{kind}: c2 saw c1 as {seen}");
            let seen = mapping_seen(&b, &a)?;
            ensure!(seen == SocketAddrV4::new(c2.ipv4, 40000), "{kind}: c1 saw c2 as {seen}");
            // Through the public mappings: nothing.
            b.send_to(b"hairpin", ma)?;
            ensure!(recv_from(&a).is_none(), "{kind}: c2 -> c1's mapping {ma} hairpinned");
            a.send_to(b"hairpin", mb)?;
            ensure!(recv_from(&b).is_none(), "{kind}: c1 -> c2's mapping {mb} hairpinned");
            println!(
                "{kind}: {} and {} talk over the LAN; mappings {ma} and {mb} do not hairpin",
                c1.ipv4, c2.ipv4
            );
        }
        Ok(())
    });
}

/// The userland NAT drops UDP that does not parse, sent at its public address from the
/// internet, and goes on translating.
#[test]
fn nat_userland_survives_garbage() {
    let kind = NatKind::PortPreservingSymmetric;
    teredo_lab::run("nat-userland-garbage", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let client = lab.client_behind(kind)?;
        let nat = client.nat.clone().ok_or("client without NAT")?;
        let c = sock(&client, client.ipv4, 40000)?;
        let s1 = sock(&server, server.primary, 3544)?;
        let m = mapping_seen(&c, &s1)?;
        let sent = relay.enter(|| send_garbage(relay.ipv4, nat.public, m.port()))??;
        ensure!(sent > 0, "no garbage sent");
        s1.send_to(b"still", m)?;
        ensure!(recv_from(&c).is_some(), "{kind}: a reply no longer passes after {sent} garbage packets");
        ensure!(mapping_seen(&c, &s1)? == m, "{kind}: the binding changed");
        Ok(())
    });
}

/// Sends hand-made IPv4 packets claiming UDP with lengths that do not add up, from `src`
/// to `dst`:`port` (raw socket, in the calling thread's namespace). Returns how many left.
fn send_garbage(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> std::io::Result<usize> {
    // SAFETY: plain socket(2); the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut sent = 0;
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(dst).to_be() },
        sin_zero: [0; 8],
    };
    for (total, udp_len) in [(24u16, 8u16), (28, 200), (28, 3), (40, 0), (36, 16)] {
        let mut p = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&5000u16.to_be_bytes());
        p.extend_from_slice(&port.to_be_bytes());
        p.extend_from_slice(&udp_len.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.resize(usize::from(total), 0xee);
        // SAFETY: `p` and `to` are valid for the call; the kernel fills in the IPv4
        // checksum and checks the total length against the buffer.
        let n = unsafe {
            libc::sendto(
                fd,
                p.as_ptr().cast(),
                p.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n > 0 {
            sent += 1;
        }
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    Ok(sent)
}
