//! `teredo server` in the lab, point by point of its acceptance list:
//!
//! 1. Debian's `miredo` client qualifies against it behind each of the four NAT kinds,
//!    with a Teredo address that names our primary address and the NAT's real mapping;
//! 2. two Miredo clients behind different NATs ping each other through it, both ways;
//! 3. a Windows-style router solicitation (cone-bit link-local source, source link-layer
//!    address option) is answered from the *other* server address (RFC 4380 §5.3.2,
//!    RFC 5991 §3.2) with a complete advertisement, and tshark decodes every
//!    advertisement it sent without a malformed or error mark;
//! 4. a storm of 100,000 malformed datagrams leaves it running with flat memory, and it
//!    still qualifies a client afterwards;
//! 5. its packet path runs unprivileged: non-zero uid and no capability in every thread,
//!    and `-u root` or an unknown user is refused with exit status 1;
//! 6. it forwards a client's echo test (RFC 4380 §5.2.9) to a native IPv6 host through its
//!    raw socket, so that a Miredo client reaches the host through a Miredo relay;
//! 7. with `--tx packet` (answers sent as Ethernet frames on a packet socket): a Miredo
//!    client behind a NAT qualifies, the Windows-style RS of point 3 is answered from the
//!    other address, the workers hold no capability, and frames were really used; two
//!    clients ping each other with the bubbles relayed as frames.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use teredo_lab::lab::{SERVER_IPV4, SERVER_IPV4_2};
use teredo_lab::miredo::{self, IFACE};
use teredo_lab::{Daemon, Lab, NatKind, Node, wait_until};
use teredo_proto::address::{Flags, TEREDO_PORT, TEREDO_PREFIX, TeredoAddress, server_link_local};
use teredo_proto::checksum;
use teredo_proto::wire::icmpv6::{Echo, Icmpv6, Icmpv6Repr, Message};
use teredo_proto::wire::ipv6::ALL_ROUTERS;
use teredo_proto::wire::ipv6::emit_bubble;
use teredo_proto::wire::{Authentication, OriginIndication, TeredoPacket, encap};

use crate::{
    MIREDO_NEEDS, Rng, TestResult, WAIT, check_qualified, ensure, server_pcap, start_teredo_server,
    status_field, thread_status, tshark, vm_rss_kib,
};

/// The /64 our server advertises: 2001:0:<primary 192.0.2.1>::/64.
const ADVERTISED_PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0, 0xc000, 0x0201, 0, 0, 0, 0);

// ---------------------------------------------------------------------------------------
// 1. Qualification behind each NAT kind
// ---------------------------------------------------------------------------------------

/// A Miredo client behind a NAT of `kind` qualifies against `teredo server`: its Teredo
/// address (on its interface) is under 2001::/32, names our primary address, and embeds
/// the NAT's public address and the NAT's real mapping of the flow to 192.0.2.1:3544.
fn qualifies_behind(lab: &mut Lab, kind: NatKind) -> TestResult {
    let server = lab.server()?;
    let client = lab.client_behind(kind)?;
    let _server_d = start_teredo_server(&server, &[])?;
    let _client_d = miredo::start_client(&client, &server, IFACE)?;
    let (addr, t) = check_qualified(&client, server.primary)?;
    println!("{}: qualified as {addr} (mapping {}:{})", client.public_ipv4(), t.mapped_addr, t.mapped_port);
    Ok(())
}

#[test]
fn server_qualifies_miredo_behind_full_cone() {
    teredo_lab::run("srv-qualify-full-cone", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::FullCone)
    });
}

#[test]
fn server_qualifies_miredo_behind_address_restricted() {
    teredo_lab::run("srv-qualify-address-restricted", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::AddressRestricted)
    });
}

#[test]
fn server_qualifies_miredo_behind_port_restricted() {
    teredo_lab::run("srv-qualify-port-restricted", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::PortRestricted)
    });
}

#[test]
fn server_qualifies_miredo_behind_symmetric() {
    teredo_lab::run("srv-qualify-symmetric", MIREDO_NEEDS, |lab: &mut Lab| {
        qualifies_behind(lab, NatKind::Symmetric)
    });
}

// ---------------------------------------------------------------------------------------
// 2. Client to client through our server
// ---------------------------------------------------------------------------------------

/// Two Miredo clients behind NATs of kinds `a` and `b`, both on `teredo server`, ping each
/// other over Teredo in both directions (the bubbles that open the NATs go through our
/// server).
fn clients_ping_each_other(lab: &mut Lab, a: NatKind, b: NatKind) -> TestResult {
    clients_ping_each_other_with(lab, a, b, &[]).map(drop)
}

/// [`clients_ping_each_other`] with the server started with `extra` arguments (with
/// `--tx packet`, the next hop is primed first, see [`prime_next_hop`]); returns the
/// running server.
fn clients_ping_each_other_with(lab: &mut Lab, a: NatKind, b: NatKind, extra: &[&str]) -> TestResult<Daemon> {
    let server = lab.server()?;
    let ca = lab.client_behind(a)?;
    let cb = lab.client_behind(b)?;
    let server_d = start_teredo_server(&server, extra)?;
    if extra.contains(&"packet") {
        let sock = ca.udp_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        prime_next_hop(&sock, SERVER_IPV4_2)?;
    }
    let _da = miredo::start_client(&ca, &server, IFACE)?;
    let _db = miredo::start_client(&cb, &server, IFACE)?;
    let (addr_a, _) = ca.wait_teredo_address(IFACE, WAIT)?;
    let (addr_b, _) = cb.wait_teredo_address(IFACE, WAIT)?;
    ca.wait_ping6(addr_b, WAIT)?;
    ensure!(ca.ping6(addr_b, 3), "{a} -> {b}: no reply from {addr_b}");
    cb.wait_ping6(addr_a, WAIT)?;
    ensure!(cb.ping6(addr_a, 3), "{b} -> {a}: no reply from {addr_a}");
    Ok(server_d)
}

#[test]
fn server_relays_port_restricted_to_address_restricted() {
    teredo_lab::run("srv-p2p-port-addr", MIREDO_NEEDS, |lab: &mut Lab| {
        clients_ping_each_other(lab, NatKind::PortRestricted, NatKind::AddressRestricted)
    });
}

#[test]
fn server_relays_full_cone_to_port_restricted() {
    teredo_lab::run("srv-p2p-cone-port", MIREDO_NEEDS, |lab: &mut Lab| {
        clients_ping_each_other(lab, NatKind::FullCone, NatKind::PortRestricted)
    });
}

// ---------------------------------------------------------------------------------------
// 3. Windows-style router solicitations, and tshark on every advertisement
// ---------------------------------------------------------------------------------------

/// The UDP payload of frame 6 of `zeek-Teredo.pcap`: a Windows client's RS with an
/// authentication header (nonce cd5669400b22df88), source fe80::8000:ffff:ffff:fffd (cone
/// bit set) and a source link-layer address option.
const WINDOWS_RS: &str = "00010000cd5669400b22df88006000000000183afffe800000000000008000fffffffffffdff02\
                          00000000000000000000000000028500a91d0000000001020000000000008000f12ab9c82815";
/// The nonce of [`WINDOWS_RS`].
const WINDOWS_NONCE: [u8; 8] = [0xcd, 0x56, 0x69, 0x40, 0x0b, 0x22, 0xdf, 0x88];
/// The source of [`WINDOWS_RS`].
const WINDOWS_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x8000, 0xffff, 0xffff, 0xfffd);
/// The data of the source link-layer address option of [`WINDOWS_RS`].
const WINDOWS_SLLA: [u8; 14] = [0, 0, 0, 0, 0, 0, 0x80, 0, 0xf1, 0x2a, 0xb9, 0xc8, 0x28, 0x15];
/// The link-local source of a client without the cone bit (Miredo's).
const RESTRICTED_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xffff, 0xffff, 0xffff);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect()
}

/// An RS as a client sends it: authentication header with `nonce`, source `link_local`,
/// to ff02::2, hop limit 255, optionally with a source link-layer address option.
fn router_solicitation(link_local: Ipv6Addr, nonce: [u8; 8], slla: Option<&[u8]>) -> TestResult<Vec<u8>> {
    let mut buf = [0u8; 256];
    let n = encap::emit_headers(&mut buf, Some(&Authentication::with_nonce(nonce)), None)?;
    let m = Icmpv6Repr::RouterSolicitation { source_link_layer: slla }.emit_packet(
        &mut buf[n..],
        link_local,
        ALL_ROUTERS,
        255,
    )?;
    Ok(buf[..n + m].to_vec())
}

/// Sends `rs` from `sock` to `to` (up to three times) and returns the first answer that
/// echoes `nonce`, with its source.
fn solicit(
    sock: &UdpSocket,
    to: SocketAddrV4,
    rs: &[u8],
    nonce: [u8; 8],
) -> TestResult<(SocketAddr, Vec<u8>)> {
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        sock.send_to(rs, to)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let echoed = TeredoPacket::parse(&buf[..n]).ok().and_then(|p| p.auth).map(|a| a.nonce);
            if echoed == Some(nonce) {
                return Ok((from, buf[..n].to_vec()));
            }
        }
    }
    Err(format!("no answer to the RS sent to {to}").into())
}

/// Checks an RA as RFC 4380 §5.3.2 wants it: the nonce of the RS with confirmation 0, an
/// origin indication that is the client's mapping `origin`, from the server's link-local
/// address to `client_ll` with hop limit 255, a valid checksum, exactly one prefix
/// information option with 2001:0:c000:201::/64 and an MTU option. Returns the MTU.
fn check_advertisement(
    ra: &[u8],
    nonce: [u8; 8],
    origin: SocketAddrV4,
    client_ll: Ipv6Addr,
) -> TestResult<u32> {
    let pkt = TeredoPacket::parse(ra)?;
    let auth = pkt.auth.ok_or("RA without authentication header")?;
    ensure!(auth.nonce == nonce, "RA nonce {:02x?} instead of {nonce:02x?}", auth.nonce);
    ensure!(auth.confirmation == 0, "RA confirmation byte {}", auth.confirmation);
    let o = pkt.origin.ok_or("RA without origin indication")?;
    let seen = SocketAddrV4::new(o.addr, o.port);
    ensure!(seen == origin, "origin indication {seen} instead of the NAT's mapping {origin}");
    ensure!(pkt.ipv6.src() == server_link_local(SERVER_IPV4), "RA from {}", pkt.ipv6.src());
    ensure!(pkt.ipv6.dst() == client_ll, "RA to {} instead of {client_ll}", pkt.ipv6.dst());
    ensure!(pkt.ipv6.header().hop_limit == 255, "RA hop limit {}", pkt.ipv6.header().hop_limit);
    ensure!(Icmpv6::checksum_ok(&pkt.ipv6), "RA with a bad ICMPv6 checksum");
    let Message::RouterAdvertisement(adv) = Message::parse(&pkt.ipv6)? else {
        return Err("the answer is not a router advertisement".into());
    };
    ensure!(adv.prefix_count() == 1, "{} prefix information options", adv.prefix_count());
    let pio = adv.prefix_information().ok_or("RA without prefix information")?;
    ensure!(
        pio.prefix_len == 64 && pio.prefix == ADVERTISED_PREFIX,
        "RA prefix {}/{} instead of {ADVERTISED_PREFIX}/64",
        pio.prefix,
        pio.prefix_len
    );
    let mtu = adv.mtu().ok_or("RA without MTU option")?;
    ensure!(mtu >= 1280, "RA MTU {mtu}");
    Ok(mtu)
}

/// A Windows-style RS (cone bit, source link-layer address option) sent to one server
/// address is answered from the other, with everything a client checks; an RS without the
/// cone bit is answered from the address it was sent to; tshark decodes every RA the
/// server sent, without a malformed or error mark.
#[test]
fn server_answers_windows_rs_from_other_address() {
    teredo_lab::run("srv-windows-rs", &["tshark"], |lab: &mut Lab| windows_rs_from_other_address(lab, &[]));
}

/// Point 3 with the server started with `extra` arguments. With `--tx packet` the frames
/// bypass the server's own capture, so the RAs are looked for on the router's side, and
/// the server must have sent some of them as frames.
fn windows_rs_from_other_address(lab: &mut Lab, extra: &[&str]) -> TestResult {
    let server = lab.server()?;
    // A full-cone NAT lets the answer from the other address in, as a Windows client's
    // cone test expects when its NAT is a cone.
    let client = lab.client_behind(NatKind::FullCone)?;
    let nat = client.nat.clone().ok_or("client without NAT")?;
    let packet_tx = extra.contains(&"packet");
    let router_pcap = if packet_tx {
        let inet = lab.internet().clone();
        Some(lab.capture(&inet, "srv")?)
    } else {
        None
    };
    let mut server_d = start_teredo_server(&server, extra)?;
    let sock = client.udp_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    if packet_tx {
        prime_next_hop(&sock, SERVER_IPV4)?;
    }
    let primary = SocketAddrV4::new(SERVER_IPV4, TEREDO_PORT);
    let secondary = SocketAddrV4::new(SERVER_IPV4_2, TEREDO_PORT);
    // The NAT's public mapping of the flow between the client and `to`. The flow may
    // have been opened from outside: the RA from the other address opens the flow
    // that the next RS to that address then uses.
    let mapping = |to: SocketAddrV4| -> TestResult<SocketAddrV4> {
        let port = nat.conntrack_udp()?.into_iter().find_map(|e| {
            if *e.orig_src.ip() == client.ipv4 && e.orig_dst == to {
                Some(e.reply_dst.port())
            } else if e.orig_src == to && *e.reply_src.ip() == client.ipv4 {
                Some(e.orig_dst.port())
            } else {
                None
            }
        });
        Ok(SocketAddrV4::new(nat.public, port.ok_or_else(|| format!("no NAT flow to {to}"))?))
    };

    // The capture's bytes, to the primary: answered from the secondary.
    let windows = unhex(WINDOWS_RS);
    let built = router_solicitation(WINDOWS_LINK_LOCAL, WINDOWS_NONCE, Some(&WINDOWS_SLLA))?;
    ensure!(built == windows, "the builders do not reproduce frame 6: {built:02x?}");
    let (from, ra) = solicit(&sock, primary, &windows, WINDOWS_NONCE)?;
    ensure!(from == SocketAddr::V4(secondary), "cone RS to {primary} answered from {from}");
    let mtu = check_advertisement(&ra, WINDOWS_NONCE, mapping(primary)?, WINDOWS_LINK_LOCAL)?;
    println!("windows RS to {primary}: RA from {from}, origin {}, MTU {mtu}", mapping(primary)?);

    // The same, built, to the secondary: answered from the primary.
    let nonce2 = [1, 2, 3, 4, 5, 6, 7, 8];
    let rs = router_solicitation(WINDOWS_LINK_LOCAL, nonce2, Some(&WINDOWS_SLLA))?;
    let (from, ra) = solicit(&sock, secondary, &rs, nonce2)?;
    ensure!(from == SocketAddr::V4(primary), "cone RS to {secondary} answered from {from}");
    check_advertisement(&ra, nonce2, mapping(secondary)?, WINDOWS_LINK_LOCAL)?;
    println!("cone RS to {secondary}: RA from {from}, origin {}", mapping(secondary)?);

    // Without the cone bit: answered from the address it was sent to.
    let nonce3 = [9, 9, 9, 9, 9, 9, 9, 9];
    let rs = router_solicitation(RESTRICTED_LINK_LOCAL, nonce3, None)?;
    let (from, ra) = solicit(&sock, primary, &rs, nonce3)?;
    ensure!(from == SocketAddr::V4(primary), "restricted RS to {primary} answered from {from}");
    check_advertisement(&ra, nonce3, mapping(primary)?, RESTRICTED_LINK_LOCAL)?;

    // tshark on the server side (the router's, for frames): every RA decodes, none is
    // marked.
    let pcap = match router_pcap {
        Some(p) => p,
        None => server_pcap(lab)?,
    };
    let fields = [
        "ip.src",
        "udp.srcport",
        "ip.dst",
        "teredo.orig.addr",
        "teredo.orig.port",
        "teredo.auth.nonce",
        "ipv6.src",
        "ipv6.dst",
        "icmpv6.opt.prefix",
        "icmpv6.opt.mtu",
        "icmpv6.checksum.status",
    ];
    let ras = wait_until("the three RAs in the server capture", WAIT, || {
        let lines = tshark(&pcap, "icmpv6.type == 134", &fields)
            .map_err(|e| teredo_lab::LabError::Invalid(e.to_string()))?;
        Ok((lines.len() >= 3).then_some(lines))
    })?;
    for l in &ras {
        println!("tshark RA: {l}");
        let f: Vec<&str> = l.split('|').collect();
        ensure!(f.len() == fields.len(), "tshark line {l:?}");
        ensure!(
            (f[0] == "192.0.2.1" || f[0] == "192.0.2.2") && f[1] == "3544",
            "RA not from the server: {l}"
        );
        ensure!(f[3] == nat.public.to_string(), "RA origin {} in {l}", f[3]);
        ensure!(f[8] == "2001:0:c000:201::" && !f[9].is_empty(), "RA prefix or MTU in {l}");
        ensure!(f[10] == "1", "tshark does not find the RA's checksum good: {l}");
    }
    // A bad ICMPv6 checksum is only a warning for tshark 4.0: ask for warnings too.
    let marked = tshark(
        &pcap,
        "teredo && (_ws.malformed || _ws.expert.severity >= warning || icmpv6.checksum.status == \"Bad\")",
        &[],
    )?;
    ensure!(
        marked.is_empty(),
        "tshark marks Teredo frames as malformed, erroneous or suspicious:\n{}",
        marked.join("\n")
    );
    let teredo_frames = tshark(&pcap, "teredo", &[])?.len();
    println!("tshark: {} RAs, {teredo_frames} Teredo frames, none malformed", ras.len());
    if packet_tx {
        let frames = packet_frames_sent(&mut server_d)?;
        ensure!(frames >= 3, "{frames} of the three RAs went out as frames:\n{}", server_d.log());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. Answers as Ethernet frames (`--tx packet`)
// ---------------------------------------------------------------------------------------

/// The server's first answer goes through its UDP socket, which makes the kernel resolve
/// the next hop (ARP); the workers pick the neighbour entry up within a second (kernel
/// notification, then a refresh). Later answers are frames. The RS goes to `to`.
fn prime_next_hop(sock: &UdpSocket, to: Ipv4Addr) -> TestResult {
    let nonce = [0x70, 0x72, 0x69, 0x6d, 0x65, 0, 0, 1];
    let rs = router_solicitation(RESTRICTED_LINK_LOCAL, nonce, None)?;
    solicit(sock, SocketAddrV4::new(to, TEREDO_PORT), &rs, nonce)?;
    std::thread::sleep(Duration::from_millis(1500));
    Ok(())
}

/// Stops a `teredo server --tx packet` and returns how many frames its workers sent on
/// their packet sockets (from the lines they log when they stop).
fn packet_frames_sent(d: &mut Daemon) -> TestResult<u64> {
    d.stop()?;
    let log = d.log();
    let mut frames = 0;
    let mut workers = 0;
    for l in log.lines() {
        if let Some((head, _)) = l.split_once(" frames sent on the packet socket")
            && let Some(n) = head.split_whitespace().last().and_then(|n| n.parse::<u64>().ok())
        {
            println!("{}", l.trim());
            frames += n;
            workers += 1;
        }
    }
    ensure!(workers >= 1, "no packet TX counters in the log:\n{log}");
    Ok(frames)
}

/// A Miredo client behind a port-restricted NAT (the RA must come from exactly the address
/// and port the RS went to) qualifies against `teredo server --tx packet`; every thread
/// of the server is without capability while it sends frames; and frames were sent.
#[test]
fn server_packet_tx_qualifies_miredo_behind_port_restricted() {
    teredo_lab::run("srv-ptx-qualify", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let mut server_d = start_teredo_server(&server, &["--tx", "packet"])?;
        ensure!(server_d.log().contains("TX by packet"), "not in packet mode:\n{}", server_d.log());
        // To the secondary address: the check of the client's mapping looks for its flow
        // to the primary.
        let sock = client.udp_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        prime_next_hop(&sock, SERVER_IPV4_2)?;
        let _client_d = miredo::start_client(&client, &server, IFACE)?;
        check_qualified(&client, server.primary)?;
        let pid = server_d.pid().ok_or("server not running")?;
        for (_, status) in thread_status(pid)? {
            let (name, eff, prm) = (
                status_field(&status, "Name"),
                status_field(&status, "CapEff"),
                status_field(&status, "CapPrm"),
            );
            ensure!(
                eff.chars().all(|c| c == '0') && prm.chars().all(|c| c == '0'),
                "thread {name} has CapEff {eff} CapPrm {prm}"
            );
        }
        let frames = packet_frames_sent(&mut server_d)?;
        ensure!(frames >= 1, "no RA went out as a frame:\n{}", server_d.log());
        Ok(())
    });
}

/// Point 2 with `--tx packet`: the bubbles the server relays between two Miredo clients
/// (with their origin indications) go out as frames, and the clients ping each other.
#[test]
fn server_packet_tx_relays_bubbles_between_clients() {
    teredo_lab::run("srv-ptx-p2p", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let mut server_d = clients_ping_each_other_with(
            lab,
            NatKind::PortRestricted,
            NatKind::AddressRestricted,
            &["--tx", "packet"],
        )?;
        let frames = packet_frames_sent(&mut server_d)?;
        let log = server_d.log();
        let summary = log.lines().rfind(|l| l.contains(" relayed to clients")).ok_or("no summary")?;
        let count = |what: &str| -> Option<u64> {
            summary
                .split(", ")
                .find_map(|p| p.trim().strip_suffix(what)?.split_whitespace().last()?.parse().ok())
        };
        let (ras, relayed) =
            (count(" advertisements").unwrap_or(0), count(" relayed to clients").unwrap_or(0));
        println!("{}", summary.trim());
        ensure!(relayed >= 1, "the server relayed no bubble: {summary}");
        // Every answer but the first (which primed the next hop) left as a frame.
        ensure!(
            frames + 1 >= ras + relayed,
            "{frames} frames for {ras} advertisements and {relayed} relayed datagrams: {summary}"
        );
        Ok(())
    });
}

/// Point 3 with `--tx packet`.
#[test]
fn server_packet_tx_answers_windows_rs_from_other_address() {
    teredo_lab::run("srv-ptx-windows-rs", &["tshark"], |lab: &mut Lab| {
        windows_rs_from_other_address(lab, &["--tx", "packet"])
    });
}

// ---------------------------------------------------------------------------------------
// 4. A storm of malformed datagrams
// ---------------------------------------------------------------------------------------

/// How many datagrams the storm sends.
const STORM: usize = 100_000;
/// How many sockets (source ports) it sends from.
const STORM_SOCKETS: usize = 64;
/// The seed of the storm's generator.
const STORM_SEED: u64 = 0x7e2e_d05e_20ab_1e55;
/// How much the server's resident memory may grow during the storm.
const RSS_BOUND_KIB: u64 = 1024;

/// A Teredo address on our server whose mapping is `addr`:`port`.
fn teredo_addr(addr: Ipv4Addr, port: u16) -> Ipv6Addr {
    TeredoAddress {
        prefix: TEREDO_PREFIX,
        server: SERVER_IPV4,
        flags: Flags(0),
        mapped_port: port,
        mapped_addr: addr,
    }
    .to_ipv6()
}

/// Writes an echo request of `data_len` bytes from `src` to `dst` after `headers`;
/// returns the whole length.
fn echo_request(buf: &mut [u8], headers: usize, src: Ipv6Addr, dst: Ipv6Addr, data_len: usize) -> usize {
    let data = [0x5au8; 512];
    let e = Echo { identifier: 1, sequence: 2, data: &data[..data_len.min(data.len())] };
    headers + Icmpv6Repr::EchoRequest(e).emit_packet(&mut buf[headers..], src, dst, 64).unwrap_or(0)
}

/// Recomputes the ICMPv6 checksum of the IPv6 packet at `buf[at..end]`.
fn fix_checksum(buf: &mut [u8], at: usize, end: usize) {
    let (src, dst) = {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&buf[at + 8..at + 24]);
        d.copy_from_slice(&buf[at + 24..at + 40]);
        (Ipv6Addr::from(s), Ipv6Addr::from(d))
    };
    buf[at + 42..at + 44].fill(0);
    let c = checksum::icmpv6(&src, &dst, &buf[at + 40..end]);
    buf[at + 42..at + 44].copy_from_slice(&c.to_be_bytes());
}

/// The storm's datagram number `i`, sent from `from`, written into `buf`; returns its
/// length. Every kind is something the server must drop without answering.
fn storm_datagram(rng: &mut Rng, i: usize, from: SocketAddrV4, buf: &mut [u8]) -> usize {
    // An RS with an authentication header (13 bytes), valid unless changed below.
    let rs = |buf: &mut [u8], rng: &mut Rng| {
        let mut nonce = [0u8; 8];
        rng.fill(&mut nonce);
        let n = encap::emit_headers(buf, Some(&Authentication::with_nonce(nonce)), None).unwrap_or(0);
        n + Icmpv6Repr::RouterSolicitation { source_link_layer: None }
            .emit_packet(&mut buf[n..], RESTRICTED_LINK_LOCAL, ALL_ROUTERS, 255)
            .unwrap_or(0)
    };
    let nat_peer = teredo_addr(Ipv4Addr::new(198, 51, 100, 1), 40_000);
    let mine = teredo_addr(*from.ip(), from.port());
    match i % 16 {
        // Random bytes, 0 to 199 of them.
        0 => {
            let n = rng.below(200);
            rng.fill(&mut buf[..n]);
            n
        }
        // A truncated authentication header.
        1 => {
            let n = 2 + rng.below(11);
            rng.fill(&mut buf[..n]);
            buf[..2].copy_from_slice(&[0, 1]);
            if n > 3 {
                buf[2] = 0;
                buf[3] = 0;
            }
            n
        }
        // A truncated origin indication, or two of them.
        2 => {
            let n = 2 + rng.below(14);
            rng.fill(&mut buf[..n]);
            buf[..2].copy_from_slice(&[0, 0]);
            if n >= 10 {
                buf[8..10].copy_from_slice(&[0, 0]);
            }
            n
        }
        // An authentication header after an origin indication.
        3 => {
            let n = OriginIndication { addr: Ipv4Addr::new(203, 0, 113, 99), port: 1 }.emit(buf).unwrap_or(0);
            n + rs(&mut buf[n..], rng)
        }
        // Not IPv6: a version nibble other than 6.
        4 => {
            let n = rs(buf, rng);
            buf[13] = (rng.byte() & 0x0f) | 0x40;
            n
        }
        // A truncated IPv6 header.
        5 => {
            let n = rng.below(40);
            rng.fill(&mut buf[..n]);
            if n > 0 {
                buf[0] = 0x60;
            }
            n
        }
        // An IPv6 payload length beyond the datagram.
        6 => {
            let n = emit_bubble(buf, mine, nat_peer, 64).unwrap_or(0);
            buf[4..6].copy_from_slice(&(1 + rng.below(2000) as u16).to_be_bytes());
            n
        }
        // An RS with a bad checksum.
        7 => {
            let n = rs(buf, rng);
            buf[13 + 42] ^= 0x5a;
            n
        }
        // An RS with a wrong hop limit (the checksum does not cover it).
        8 => {
            let n = rs(buf, rng);
            buf[13 + 7] = 1 + rng.byte() % 254;
            n
        }
        // An RS with a non-zero code, checksum right.
        9 => {
            let n = rs(buf, rng);
            buf[13 + 41] = 1 + rng.byte() % 255;
            fix_checksum(buf, 13, n);
            n
        }
        // An RS whose option has length zero, checksum right.
        10 => {
            let n = rs(buf, rng);
            buf[n..n + 8].copy_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
            buf[13 + 4..13 + 6].copy_from_slice(&16u16.to_be_bytes());
            fix_checksum(buf, 13, n + 8);
            n + 8
        }
        // A valid RS followed by a trailer whose type demands discarding (01xxxxxx).
        11 => {
            let n = rs(buf, rng);
            buf[n..n + 4].copy_from_slice(&[0x40 | (rng.byte() & 0x3f), 2, 0, 0]);
            n + 4
        }
        // A bubble with a spoofed Teredo source, behind a lying origin indication.
        12 => {
            let lie = OriginIndication { addr: SERVER_IPV4, port: TEREDO_PORT };
            let n = if rng.below(2) == 0 { lie.emit(buf).unwrap_or(0) } else { 0 };
            let spoofed =
                teredo_addr(Ipv4Addr::new(198, 51, 100, 17 + rng.below(16) as u8), rng.next() as u16);
            n + emit_bubble(&mut buf[n..], spoofed, nat_peer, 64).unwrap_or(0)
        }
        // An echo request between Teredo clients, too large to relay, or with a bad
        // checksum; or one to a native host with a bad checksum.
        13 => match rng.below(3) {
            0 => echo_request(buf, 0, mine, nat_peer, 200),
            1 => {
                let n = echo_request(buf, 0, mine, nat_peer, 16);
                buf[42] ^= 0xff;
                n
            }
            _ => {
                let n = echo_request(buf, 0, mine, Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 1), 16);
                buf[43] ^= 0xff;
                n
            }
        },
        // Oversized: more than the server's 2048-byte receive buffer (IP fragments).
        14 => {
            let n = 2049 + rng.below(3000);
            rng.fill(&mut buf[..n]);
            buf[0] = 0x60;
            n
        }
        // UDP inside the IPv6 packet: neither a bubble nor ICMPv6.
        _ => {
            let n = emit_bubble(buf, mine, nat_peer, 64).unwrap_or(0);
            let extra = 8 + rng.below(40);
            rng.fill(&mut buf[n..n + extra]);
            buf[6] = 17;
            buf[4..6].copy_from_slice(&(extra as u16).to_be_bytes());
            n + extra
        }
    }
}

/// Sends the storm from `STORM_SOCKETS` sockets of `node` to both server addresses;
/// returns (datagrams sent, send errors, elapsed).
fn send_storm(node: &Node) -> TestResult<(usize, usize, Duration)> {
    let res = node.enter(|| -> std::io::Result<(usize, usize, Duration)> {
        let socks = (0..STORM_SOCKETS)
            .map(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let src_ip = source_towards_server()?;
        let locals = socks
            .iter()
            .map(|s| s.local_addr().map(|a| SocketAddrV4::new(src_ip, a.port())))
            .collect::<std::io::Result<Vec<_>>>()?;
        let dsts =
            [SocketAddrV4::new(SERVER_IPV4, TEREDO_PORT), SocketAddrV4::new(SERVER_IPV4_2, TEREDO_PORT)];
        let mut rng = Rng(STORM_SEED);
        let mut buf = vec![0u8; 8192];
        let (mut sent, mut errors) = (0, 0);
        let start = Instant::now();
        for i in 0..STORM {
            let k = (i / 2) % STORM_SOCKETS;
            let n = storm_datagram(&mut rng, i / 2, locals[k], &mut buf);
            match socks[k].send_to(&buf[..n], dsts[i % 2]) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
            // Leave the receiving side a moment now and then: "as fast as reasonable".
            if i % 2048 == 2047 {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        Ok((sent, errors, start.elapsed()))
    })?;
    Ok(res?)
}

/// The IPv4 source address the kernel picks towards the server (the sender's public
/// address), found with a connected socket.
fn source_towards_server() -> std::io::Result<Ipv4Addr> {
    let p = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    p.connect((SERVER_IPV4, TEREDO_PORT))?;
    match p.local_addr()?.ip() {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(std::io::Error::other("IPv6 source")),
    }
}

/// The `Udp:` counters of `/proc/net/snmp` inside `node`.
fn udp_counters(node: &Node) -> TestResult<BTreeMap<String, u64>> {
    let snmp = node.exec("cat", &["/proc/net/snmp"])?;
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    ensure!(udp.len() == 2, "no Udp lines in /proc/net/snmp:\n{snmp}");
    Ok(udp[0]
        .split_whitespace()
        .zip(udp[1].split_whitespace())
        .skip(1)
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect())
}

/// Waits until the server's UDP 3544 sockets have no datagram left in their queues.
fn wait_queues_drained(node: &Node) -> TestResult {
    wait_until("the server's receive queues to drain", WAIT, || {
        let out = node.exec("ss", &["-H", "-n", "-u", "-l", "sport", "=", ":3544"])?;
        let queued: u64 = out.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).sum();
        Ok((queued == 0).then_some(()))
    })?;
    Ok(())
}

/// 100,000 malformed datagrams to both server addresses from 64 source ports: the server
/// keeps running, its resident memory stays within [`RSS_BOUND_KIB`], the kernel delivered
/// the datagrams to it, it answered none of them, and it still qualifies a Miredo client.
#[test]
fn server_survives_malformed_storm() {
    teredo_lab::run("srv-storm", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        // No capture during the storm (100,000 packets); one starts before the client.
        lab.set_captures(false);
        let server = lab.server()?;
        let sender = lab.public_client()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let mut server_d = start_teredo_server(&server, &[])?;
        let pid = server_d.pid().ok_or("server not running")?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
        ensure!(comm.trim() == "teredo", "pid {pid} is {comm:?}, not the server");

        let rss_before = vm_rss_kib(pid)?;
        let udp_before = udp_counters(&server)?;
        let (sent, errors, took) = send_storm(&sender)?;
        wait_queues_drained(&server)?;
        let udp_after = udp_counters(&server)?;
        let rss_after = vm_rss_kib(pid)?;
        ensure!(server_d.is_running(), "the server died during the storm:\n{}", server_d.log());

        let delta =
            |k: &str| udp_after.get(k).copied().unwrap_or(0) - udp_before.get(k).copied().unwrap_or(0);
        let (in_dgrams, rcvbuf, in_errors) = (delta("InDatagrams"), delta("RcvbufErrors"), delta("InErrors"));
        let out_dgrams = delta("OutDatagrams");
        println!(
            "storm: {sent} sent ({errors} send errors) in {took:.2?} ({:.0}/s) from {STORM_SOCKETS} ports",
            sent as f64 / took.as_secs_f64()
        );
        println!(
            "storm: server Udp InDatagrams +{in_dgrams}, RcvbufErrors +{rcvbuf}, InErrors +{in_errors}, \
             OutDatagrams +{out_dgrams}"
        );
        println!(
            "storm: server VmRSS {rss_before} KiB before, {rss_after} KiB after ({:+} KiB)",
            rss_after as i64 - rss_before as i64
        );
        ensure!(errors == 0, "{errors} datagrams could not be sent");
        ensure!(
            in_dgrams + rcvbuf >= (STORM as u64) * 95 / 100,
            "the server's namespace received only {in_dgrams} datagrams (+{rcvbuf} queue drops) of {STORM}"
        );
        ensure!(out_dgrams == 0, "the server answered {out_dgrams} malformed datagrams");
        ensure!(
            rss_after <= rss_before + RSS_BOUND_KIB,
            "VmRSS grew from {rss_before} KiB to {rss_after} KiB during the storm"
        );

        // It still does its job.
        lab.capture(&server, "eth0")?;
        let _client_d = miredo::start_client(&client, &server, IFACE)?;
        check_qualified(&client, server.primary)?;
        let rss_end = vm_rss_kib(pid)?;
        server_d.stop()?;
        let log = server_d.log();
        let summary = log.lines().find(|l| l.contains(" datagrams: ")).unwrap_or("(no summary)");
        println!("storm: after qualifying a client VmRSS {rss_end} KiB; server's summary: {summary}");
        ensure!(!log.contains("panicked"), "the server panicked:\n{log}");
        // "N datagrams: A advertisements, U relayed to clients, I to IPv6, M malformed, D dropped"
        let count = |label: &str| -> Option<u64> {
            let before = summary[..summary.find(label)?].trim_end();
            let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            before[before.len() - digits..].parse().ok()
        };
        let counts = ["datagrams:", "relayed to clients", "to IPv6", "malformed", "dropped"].map(count);
        if let [Some(received), Some(relayed_udp), Some(relayed_ipv6), Some(malformed), Some(dropped)] =
            counts
        {
            ensure!(received >= in_dgrams, "the server handled {received} of {in_dgrams} datagrams");
            ensure!(relayed_udp + relayed_ipv6 == 0, "the server relayed storm datagrams: {summary}");
            ensure!(malformed + dropped >= in_dgrams, "not every storm datagram was dropped: {summary}");
        } else {
            return Err(format!("no counts in the server's summary at exit:\n{log}").into());
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------
// 5. Privileges
// ---------------------------------------------------------------------------------------

/// Runs `teredo server -u USER` on the lab server and returns (exit code, output).
fn run_as(server: &teredo_lab::Server, user: &str) -> TestResult<(Option<i32>, String)> {
    let mut d = miredo::start_with(
        server,
        &format!("teredo-as-{user}"),
        &[crate::TEREDO, "server", "-u", user],
        &miredo::server_config(server),
    )?;
    let status = d.wait_exit(Duration::from_secs(10))?;
    Ok((status.code(), d.log()))
}

/// Every thread of the running server has non-zero uids and gids, no supplementary root
/// group, and empty permitted and effective capability sets; `-u root` and an unknown
/// user are refused with exit status 1 and a message that says why.
#[test]
fn server_runs_unprivileged() {
    teredo_lab::run("srv-privileges", &[], |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;

        let (code, log) = run_as(&server, "root")?;
        println!("-u root: exit {code:?}: {}", log_line(&log));
        ensure!(code == Some(1), "-u root exited with {code:?}:\n{log}");
        ensure!(log.contains("\"root\" has uid 0") && log.contains("refusing"), "-u root:\n{log}");
        let (code, log) = run_as(&server, "teredo-no-such-user")?;
        println!("-u teredo-no-such-user: exit {code:?}: {}", log_line(&log));
        ensure!(code == Some(1), "-u teredo-no-such-user exited with {code:?}:\n{log}");
        ensure!(log.contains("unknown user \"teredo-no-such-user\""), "unknown user:\n{log}");

        let d = start_teredo_server(&server, &[])?;
        let pid = d.pid().ok_or("server not running")?;
        let tasks = thread_status(pid)?;
        ensure!(tasks.len() >= 2, "only {} thread(s): no worker?", tasks.len());
        for (tid, status) in &tasks {
            let name = status_field(status, "Name");
            let (uid, gid) = (status_field(status, "Uid"), status_field(status, "Gid"));
            let groups = status_field(status, "Groups");
            let (prm, eff) = (status_field(status, "CapPrm"), status_field(status, "CapEff"));
            let (inh, amb) = (status_field(status, "CapInh"), status_field(status, "CapAmb"));
            println!(
                "thread {tid} ({name}): Uid {uid} Gid {gid} Groups [{groups}] CapPrm {prm} CapEff {eff} \
                 CapInh {inh} CapAmb {amb} NoNewPrivs {}",
                status_field(status, "NoNewPrivs")
            );
            ensure!(
                uid.split_whitespace().count() == 4 && uid.split_whitespace().all(|u| u != "0"),
                "thread {tid} ({name}) has Uid {uid}"
            );
            ensure!(gid.split_whitespace().all(|g| g != "0"), "thread {tid} ({name}) has Gid {gid}");
            ensure!(groups.split_whitespace().all(|g| g != "0"), "thread {tid} ({name}) in groups {groups}");
            for (set, v) in [("CapPrm", prm), ("CapEff", eff), ("CapInh", inh), ("CapAmb", amb)] {
                ensure!(!v.is_empty() && v.chars().all(|c| c == '0'), "thread {tid} ({name}) has {set} {v}");
            }
        }
        Ok(())
    });
}

/// The line of a log that says why the server stopped.
fn log_line(log: &str) -> &str {
    log.lines().rfind(|l| l.starts_with("teredo server:")).unwrap_or("")
}

// ---------------------------------------------------------------------------------------
// 6. Echo tests to native IPv6 through the raw socket
// ---------------------------------------------------------------------------------------

/// A Miredo client behind a port-restricted NAT reaches the native host 2001:db8:3::1:
/// its echo test goes through our server, which sends it natively from its raw socket (seen
/// leaving the server as plain IPv6, not UDP), the host's reply comes back through a Miredo
/// relay; and the host pings the client back.
#[test]
fn server_forwards_echo_test_to_native_ipv6() {
    teredo_lab::run("srv-echo-test", MIREDO_NEEDS, |lab: &mut Lab| -> TestResult {
        let server = lab.server()?;
        let relay = lab.relay()?;
        let host = lab.v6host()?;
        let client = lab.client_behind(NatKind::PortRestricted)?;
        let mut server_d = start_teredo_server(&server, &[])?;
        let _relay_d = miredo::start_relay(&relay, IFACE)?;
        let _client_d = miredo::start_client(&client, &server, IFACE)?;
        let (addr, _) = client.wait_teredo_address(IFACE, WAIT)?;
        client.wait_ping6(host.ipv6, WAIT)?;
        ensure!(client.ping6(host.ipv6, 3), "client -> v6 host failed after the first reply");
        ensure!(host.ping6(addr, 3), "v6 host -> client {addr} failed");

        let pcap = server_pcap(lab)?;
        let filter = format!("!udp && ipv6.src == {addr} && ipv6.dst == {} && icmpv6.type == 128", host.ipv6);
        let native = tshark(&pcap, &filter, &["frame.number", "ipv6.hlim", "icmpv6.echo.identifier"])?;
        ensure!(!native.is_empty(), "no echo test left the server natively ({filter})");
        println!("echo tests sent natively by the server: {}", native.len());
        server_d.stop()?;
        let log = server_d.log();
        let summary = log.lines().find(|l| l.contains(" datagrams: ")).unwrap_or("(no summary)");
        println!("server's summary: {summary}");
        // "... I to IPv6, ...": the server counted at least the echo tests tshark saw leave.
        let to_ipv6 = summary
            .find(" to IPv6")
            .and_then(|end| summary[..end].rsplit(' ').next())
            .and_then(|n| n.parse::<usize>().ok());
        ensure!(
            to_ipv6.is_some_and(|n| n >= native.len()),
            "the server's count of packets sent to IPv6 ({to_ipv6:?}) is below the {} tshark saw: {summary}",
            native.len()
        );
        Ok(())
    });
}
