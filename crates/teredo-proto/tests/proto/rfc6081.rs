//! RFC 6081's protocol examples (§6) played through the sans-IO core: two Teredo clients
//! with the RFC's addresses (Figure 2: servers 203.0.113.120 and 198.51.100.118), each
//! behind a simulated NAT, and real [`Server`]s relaying their indirect bubbles. Each test
//! checks the messages of the example byte by byte where the RFC fixes them (trailer
//! types, lengths, values) and the outcome it describes: which packets pass which NAT, and
//! that data then flows directly between the two NATs' public sides.
//!
//! - §6.1 Symmetric NAT Support: A behind a port-symmetric NAT, B behind an
//!   address-restricted one; both initiators.
//! - §6.2 UPnP-Enabled Symmetric NAT: both behind single UPnP port-symmetric NATs.
//! - §6.3 Port-Preserving Symmetric NAT: both behind port-preserving symmetric NATs, their
//!   random ports advertised in Random Port trailers (§4.5, known answer too).
//! - §6.4 Sequential Port-Symmetric NAT: the echo test and its prediction.
//! - §6.5 Hairpinning: A and B behind one NAT that does not hairpin; they reach each other
//!   at their local addresses advertised in Alternate Address trailers.
//! - §6.6 Server Load Reduction: after 30 s of silence A refreshes with a direct bubble
//!   soliciting an answer, and B's advertisement re-establishes the flow with no server.
//! - The Figure 1 cells between the NAT kinds simulated here (all but address-symmetric):
//!   every Yes, SNS and SNS+ cell connects, both initiators; every No cell fails within the
//!   bubble budget, leaving no packet queued (but those a UPnP port mapping opens).
//!
//! A qualified client is made as qualification would leave it (`World::add_host`): a UPnP
//! NAT maps its port first, its address embeds its NAT's mapping toward the server, and the
//! findings of RFC 6081 (symmetric, port-preserving, UPnP) come from the NAT's mappings
//! toward the server's two addresses. A client's random sockets are the ports its tunnel
//! lists; datagrams from or to other ports are lost.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use teredo_proto::address::{DISCOVERY_IPV4, Flags, TEREDO_PREFIX, TeredoAddress};
use teredo_proto::client::{NatFindings, NatKind};
use teredo_proto::nonce::TokenKey;
use teredo_proto::server::{Action, Local, Server, ServerConfig};
use teredo_proto::time::Instant;
use teredo_proto::tunnel::{Destination, Limits, Role, TunVerdict, Tunnel, UdpVerdict};
use teredo_proto::wire::ipv6::Ipv6Header;
use teredo_proto::wire::trailer::{DISCOVERY_ADVERTISEMENT, DISCOVERY_SOLICITATION};
use teredo_proto::wire::{TeredoPacket, Trailer};
use zerocopy::IntoBytes;

/// Client A's Teredo server (Figure 2).
const SERVER_1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 120);
/// Client B's Teredo server (Figure 2).
const SERVER_2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 118);

/// How a simulated NAT maps and filters (RFC 6081 §2, RFC 4787), Figure 1's kinds but the
/// address-symmetric one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cone,
    AddressRestricted,
    PortRestricted,
    /// Port-restricted, with a UPnP IGD that maps the client's port.
    UpnpPortRestricted,
    /// Port-symmetric, with a UPnP IGD that maps the client's port: the client's first
    /// binding gets the mapped port (§3.2).
    UpnpPortSymmetric,
    /// Port-symmetric, the local port kept while no other binding uses it (§3.3).
    PortPreservingSymmetric,
    /// Port-symmetric, ports handed out in sequence, NAT-wide (§3.4).
    SequentialSymmetric,
    /// Port-symmetric, random ports.
    PortSymmetric,
}

impl Kind {
    const ALL: [Self; 8] = [
        Self::Cone,
        Self::AddressRestricted,
        Self::PortRestricted,
        Self::UpnpPortRestricted,
        Self::UpnpPortSymmetric,
        Self::PortPreservingSymmetric,
        Self::SequentialSymmetric,
        Self::PortSymmetric,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Cone => "cone",
            Self::AddressRestricted => "address-restricted",
            Self::PortRestricted => "port-restricted",
            Self::UpnpPortRestricted => "upnp-port-restricted",
            Self::UpnpPortSymmetric => "upnp-port-symmetric",
            Self::PortPreservingSymmetric => "port-preserving-symmetric",
            Self::SequentialSymmetric => "sequential-symmetric",
            Self::PortSymmetric => "port-symmetric",
        }
    }

    fn symmetric(self) -> bool {
        matches!(
            self,
            Self::UpnpPortSymmetric
                | Self::PortPreservingSymmetric
                | Self::SequentialSymmetric
                | Self::PortSymmetric
        )
    }

    fn upnp(self) -> bool {
        matches!(self, Self::UpnpPortRestricted | Self::UpnpPortSymmetric)
    }

    /// RFC 6081 Figure 1's cell from a client behind `self` to one behind `d`: whether
    /// they connect (Yes, SNS, SNS+UPnP, SNS+PP, SNS+SS).
    fn connects(self, d: Self) -> bool {
        use Kind::*;
        let row: [bool; 8] = match self {
            Cone | AddressRestricted => [true; 8],
            PortRestricted => [true, true, true, true, false, true, true, false],
            UpnpPortRestricted => [true, true, true, true, true, false, false, false],
            UpnpPortSymmetric => [true, true, false, true, true, false, false, false],
            PortPreservingSymmetric => [true, true, true, false, false, true, true, false],
            SequentialSymmetric => [true, true, true, false, false, false, false, false],
            PortSymmetric => [true, true, false, false, false, false, false, false],
        };
        row[Self::ALL.iter().position(|k| *k == d).unwrap_or(0)]
    }

    /// A No cell of Figure 1 that connects all the same: an IGD's port mapping lets anyone
    /// reach the embedded mapping of a client behind a UPnP port-restricted NAT, which its
    /// replies leave from, so it behaves as a cone NAT toward a port-symmetric peer (the
    /// figure's SNS cells of the cone row and column).
    fn beyond_figure(self, d: Self) -> bool {
        let upnp_pr = [self, d].contains(&Self::UpnpPortRestricted);
        let other = if self == Self::UpnpPortRestricted { d } else { self };
        upnp_pr && other.symmetric() && !other.upnp()
    }
}

/// A NAT with one public address that does not hairpin.
struct Nat {
    kind: Kind,
    public: Ipv4Addr,
    /// (local, remote or unspecified for endpoint-independent kinds) -> public port.
    out: HashMap<(SocketAddrV4, SocketAddrV4), u16>,
    /// public port -> local.
    back: HashMap<u16, SocketAddrV4>,
    /// (public port, remote) pairs sent to, for filtering.
    sent: Vec<(u16, SocketAddrV4)>,
    /// The UPnP port mapping: public port -> local (anyone gets in).
    upnp: Option<(u16, SocketAddrV4)>,
    next_port: u16,
    rng: u32,
}

impl Nat {
    fn new(kind: Kind, public: Ipv4Addr, first_port: u16) -> Self {
        Self {
            kind,
            public,
            out: HashMap::new(),
            back: HashMap::new(),
            sent: vec![],
            upnp: None,
            next_port: first_port,
            rng: u32::from(first_port) | 1,
        }
    }

    fn free(&self, port: u16, local: SocketAddrV4) -> bool {
        port >= 1024
            && !self.back.contains_key(&port)
            && self.upnp.is_none_or(|(p, l)| p != port || l == local)
    }

    fn random_port(&mut self, local: SocketAddrV4) -> u16 {
        loop {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 17;
            self.rng ^= self.rng << 5;
            let p = 1024 + (self.rng % 64_000) as u16;
            if self.free(p, local) {
                return p;
            }
        }
    }

    /// The public port of a new binding of `local`: the NAT's first port for its first
    /// binding (Figure 2's ports), the local port where the kind keeps it (UPnP kinds:
    /// the mapped port), the next one for a sequential NAT, else a random one.
    fn allocate(&mut self, local: SocketAddrV4) -> u16 {
        let keeps = match self.kind {
            Kind::PortPreservingSymmetric | Kind::UpnpPortRestricted => true,
            Kind::UpnpPortSymmetric => self.upnp.is_some_and(|(_, l)| l == local),
            _ => false,
        };
        if keeps && self.free(local.port(), local) {
            return local.port();
        }
        if self.back.is_empty() && self.free(self.next_port, local) {
            return self.next_port;
        }
        if self.kind == Kind::SequentialSymmetric {
            loop {
                self.next_port = self.next_port.wrapping_add(1).max(1024);
                if self.free(self.next_port, local) {
                    return self.next_port;
                }
            }
        }
        self.random_port(local)
    }

    /// The public endpoint of `local` toward `remote`, made if needed.
    fn outbound(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> SocketAddrV4 {
        let key = if self.kind.symmetric() {
            (local, remote)
        } else {
            (local, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
        };
        let port = match self.out.get(&key) {
            Some(p) => *p,
            None => {
                let p = self.allocate(local);
                self.out.insert(key, p);
                p
            }
        };
        self.back.insert(port, local);
        self.sent.push((port, remote));
        SocketAddrV4::new(self.public, port)
    }

    /// Where a datagram from `remote` to public port `port` goes, if anywhere.
    fn inbound(&self, remote: SocketAddrV4, port: u16) -> Option<SocketAddrV4> {
        if let Some(local) = self.back.get(&port) {
            let allowed = match self.kind {
                Kind::Cone => true,
                Kind::AddressRestricted => self.sent.iter().any(|(p, r)| *p == port && r.ip() == remote.ip()),
                _ => self.sent.contains(&(port, remote)),
            };
            if allowed {
                return Some(*local);
            }
        }
        self.upnp.filter(|(p, _)| *p == port).map(|(_, l)| l)
    }
}

/// One client: its tunnel, its local endpoint and the index of its NAT.
struct Host {
    tunnel: Tunnel,
    local: SocketAddrV4,
    nat: usize,
    address: Ipv6Addr,
    /// What it wrote to its TUN.
    tun: Vec<Vec<u8>>,
}

impl Host {
    /// Whether the host listens on `port` (its Teredo port or a random one).
    fn listens(&self, port: u16) -> bool {
        port == self.local.port() || self.tunnel.random_ports().any(|p| p == port)
    }
}

/// A datagram in flight: (from as seen by the receiver, to, bytes).
type Datagram = (SocketAddrV4, SocketAddrV4, Vec<u8>);

/// The simulated Internet: NATs, hosts behind them, two servers.
struct World {
    nats: Vec<Nat>,
    hosts: Vec<Host>,
    servers: Vec<Server>,
    in_flight: VecDeque<Datagram>,
    /// Every datagram that crossed the public Internet: (from, to, bytes).
    wire: Vec<Datagram>,
    /// Datagrams exchanged on a NAT's LAN: (from, to, bytes).
    lan: Vec<Datagram>,
    /// Local discovery bubbles in flight: (from, host, bytes).
    multicast: VecDeque<(SocketAddrV4, usize, Vec<u8>)>,
}

fn secondary(primary: Ipv4Addr) -> Ipv4Addr {
    let o = primary.octets();
    Ipv4Addr::new(o[0], o[1], o[2], o[3] + 1)
}

fn server(primary: Ipv4Addr) -> Server {
    Server::new(ServerConfig { primary, secondary: secondary(primary), prefix: TEREDO_PREFIX, mtu: 1280 })
}

impl World {
    fn new() -> Self {
        Self {
            nats: vec![],
            hosts: vec![],
            servers: vec![server(SERVER_1), server(SERVER_2)],
            in_flight: VecDeque::new(),
            wire: vec![],
            lan: vec![],
            multicast: VecDeque::new(),
        }
    }

    fn add_nat(&mut self, kind: Kind, public: Ipv4Addr, first_port: u16) -> usize {
        self.nats.push(Nat::new(kind, public, first_port));
        self.nats.len() - 1
    }

    /// A client at `local` behind NAT `nat`, qualified with `server` as qualification
    /// would do it: a UPnP NAT maps its port first (RFC 6081 §5.3.3), its Teredo address
    /// embeds the NAT's mapping toward the server, the secondary address tells a
    /// symmetric NAT, the origin port a port-preserving one (§5.4.3).
    fn add_host(&mut self, nat: usize, local: SocketAddrV4, server: Ipv4Addr, key: u8) -> usize {
        let n = &mut self.nats[nat];
        if n.kind.upnp() {
            n.upnp = Some((local.port(), local));
        }
        let mapped = n.outbound(local, SocketAddrV4::new(server, 3544));
        let other = n.outbound(local, SocketAddrV4::new(secondary(server), 3544));
        let upnp = n.upnp.map(|(p, _)| SocketAddrV4::new(n.public, p));
        let findings = NatFindings {
            kind: Some(if other == mapped { NatKind::SameMapping } else { NatKind::Symmetric }),
            mapping: Some(mapped),
            port_preserving: mapped.port() == local.port() && upnp != Some(mapped),
            upnp,
        };
        let address = TeredoAddress {
            prefix: TEREDO_PREFIX,
            server,
            flags: Flags(0),
            mapped_port: mapped.port(),
            mapped_addr: *mapped.ip(),
        }
        .to_ipv6();
        let mut tunnel =
            Tunnel::new(Role::Client, TokenKey::new([key; 32]), Limits::default(), Instant::ZERO)
                .expect("tunnel");
        tunnel.set_qualified(Instant::ZERO, address, server);
        tunnel.set_local_address(Some(local));
        tunnel.set_nat(findings, secondary(server));
        self.hosts.push(Host { tunnel, local, nat, address, tun: vec![] });
        self.hosts.len() - 1
    }

    /// Takes what host `h` has to send.
    fn collect(&mut self, h: usize, now: Instant) {
        let mut buf = [0u8; 1500];
        while let Some(t) = self.hosts[h].tunnel.poll_transmit(now, &mut buf) {
            match t.dest {
                Destination::Udp(to) => self.send(h, None, to, buf[..t.len].to_vec()),
                Destination::UdpFrom { port, to } => self.send(h, Some(port), to, buf[..t.len].to_vec()),
                Destination::Tun => self.hosts[h].tun.push(buf[..t.len].to_vec()),
            }
        }
    }

    /// Host `h` sends `bytes` to `to` from its local endpoint (or its random port `port`,
    /// if it listens there).
    fn send(&mut self, h: usize, port: Option<u16>, to: SocketAddrV4, bytes: Vec<u8>) {
        let (mut local, nat) = (self.hosts[h].local, self.hosts[h].nat);
        if let Some(p) = port {
            assert!(self.hosts[h].listens(p), "a datagram from port {p}, which is not open");
            local.set_port(p);
        }
        if self.hosts.iter().any(|o| o.nat == nat && o.local == to) {
            // On the LAN: no NAT.
            self.lan.push((local, to, bytes.clone()));
            self.in_flight.push_back((local, to, bytes));
            return;
        }
        if *to.ip() == DISCOVERY_IPV4 {
            // Link-scope multicast: every other host on the LAN.
            for o in 0..self.hosts.len() {
                if o != h && self.hosts[o].nat == nat {
                    self.lan.push((local, to, bytes.clone()));
                    self.multicast.push_back((local, o, bytes.clone()));
                }
            }
            return;
        }
        if *to.ip() == self.nats[nat].public {
            return; // no hairpinning
        }
        let public = self.nats[nat].outbound(local, to);
        self.wire.push((public, to, bytes.clone()));
        self.in_flight.push_back((public, to, bytes));
    }

    /// Writes `packet` to host `h`'s TUN.
    fn tun_read(&mut self, h: usize, now: Instant, packet: &[u8]) -> TunVerdict {
        let v = self.hosts[h].tunnel.handle_tun_packet(now, packet);
        match v {
            TunVerdict::Send { dst } => self.send(h, None, dst, packet.to_vec()),
            TunVerdict::SendFrom { port, dst } => self.send(h, Some(port), dst, packet.to_vec()),
            TunVerdict::Queued | TunVerdict::Drop(_) => {}
        }
        self.collect(h, now);
        v
    }

    /// Delivers everything in flight.
    fn run(&mut self, now: Instant) {
        let mut guard = 0;
        while let Some((from, h, bytes)) = self.multicast.pop_front() {
            self.hosts[h].tunnel.handle_discovery(now, from, &bytes);
            self.collect(h, now);
        }
        while let Some((from, to, bytes)) = self.in_flight.pop_front() {
            guard += 1;
            assert!(guard < 10_000, "the network does not settle");
            let at_server = self.servers.iter().position(|s| {
                let c = s.config();
                c.primary == *to.ip() || c.secondary == *to.ip()
            });
            if let Some(s) = at_server {
                let local = if self.servers[s].config().primary == *to.ip() {
                    Local::Primary
                } else {
                    Local::Secondary
                };
                let mut out = [0u8; 1500];
                match self.servers[s].handle_datagram(local, from, &bytes, &mut out) {
                    Action::SendUdp { from: l, to: dst, len, .. } => {
                        let c = self.servers[s].config();
                        let ip = if l == Local::Primary { c.primary } else { c.secondary };
                        let sent = out[..len].to_vec();
                        let src = SocketAddrV4::new(ip, 3544);
                        self.wire.push((src, dst, sent.clone()));
                        self.in_flight.push_back((src, dst, sent));
                    }
                    Action::SendIpv6 { .. } | Action::Drop(_) => {}
                }
                continue;
            }
            // A LAN address, or a NAT's public side.
            let local = match self.hosts.iter().find(|o| o.local == to && self.lan_of(from) == Some(o.nat)) {
                Some(o) => Some((o.nat, to)),
                None => {
                    let Some(n) = self.nats.iter().position(|n| n.public == *to.ip()) else { continue };
                    self.nats[n].inbound(from, to.port()).map(|l| (n, l))
                }
            };
            let Some((n, local)) = local else { continue };
            let Some(h) = self.hosts.iter().position(|o| o.nat == n && *o.local.ip() == *local.ip()) else {
                continue;
            };
            let host = &mut self.hosts[h];
            let v = if local.port() == host.local.port() {
                host.tunnel.handle_datagram(now, from, &bytes)
            } else if host.listens(local.port()) {
                host.tunnel.handle_random_datagram(now, local.port(), from, &bytes)
            } else {
                continue; // a closed port
            };
            if let UdpVerdict::Deliver { range } = v {
                self.hosts[h].tun.push(bytes[range].to_vec());
            }
            self.collect(h, now);
        }
    }

    /// The NAT whose LAN `a` is on, for a local address.
    fn lan_of(&self, a: SocketAddrV4) -> Option<usize> {
        self.hosts.iter().find(|h| *h.local.ip() == *a.ip()).map(|h| h.nat)
    }

    /// Runs the timers of every host at `now`, then the network.
    fn tick(&mut self, now: Instant) {
        for h in 0..self.hosts.len() {
            while self.hosts[h].tunnel.poll_timeout() <= now {
                self.hosts[h].tunnel.handle_timeout(now);
            }
            self.collect(h, now);
        }
        self.run(now);
    }

    /// `from` sends a UDP packet (marker `m`) to host `to` once a second, as ping does,
    /// for up to 12 s, running the network and the timers. Returns the instant one
    /// arrived, if one did.
    fn reach(&mut self, from: usize, to: usize, start: Instant, m: u8) -> Option<Instant> {
        let p = data(self.hosts[from].address, self.hosts[to].address, m);
        let mut now = start;
        for i in 0..=24 {
            if i % 2 == 0 {
                self.tun_read(from, now, &p);
                self.run(now);
            }
            if self.hosts[to].tun.contains(&p) {
                return Some(now);
            }
            now = now + Duration::from_millis(500);
            self.tick(now);
        }
        None
    }

    /// Whether data went directly between the public addresses of NATs `a` and `b`.
    fn direct_data(&self, a: usize, b: usize) -> bool {
        let (pa, pb) = (self.nats[a].public, self.nats[b].public);
        self.wire.iter().any(|(from, to, b)| *from.ip() == pa && *to.ip() == pb && !is_bubble(b))
    }
}

/// A UDP-in-IPv6 packet of 20 bytes of payload marked `m`.
fn data(src: Ipv6Addr, dst: Ipv6Addr, m: u8) -> Vec<u8> {
    let mut p = Ipv6Header::new(src, dst, 17, 64, 20).as_bytes().to_vec();
    p.resize(60, m);
    p
}

fn trailers(bytes: &[u8]) -> Vec<Trailer<'_>> {
    TeredoPacket::parse(bytes)
        .expect("a Teredo packet")
        .trailers
        .iter()
        .map(|t| t.expect("trailer"))
        .collect()
}

fn is_bubble(bytes: &[u8]) -> bool {
    TeredoPacket::parse(bytes).is_ok_and(|p| p.ipv6.is_bubble())
}

/// §6.1's Figure 2: A behind `a_kind` on server 1, B behind `b_kind` on server 2, at the
/// RFC's public addresses.
fn figure_2(a_kind: Kind, b_kind: Kind) -> World {
    let mut w = World::new();
    let na = w.add_nat(a_kind, Ipv4Addr::new(192, 0, 2, 1), 4096);
    let nb = w.add_nat(b_kind, Ipv4Addr::new(192, 0, 2, 10), 8192);
    w.add_host(na, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 50_000), SERVER_1, 1);
    w.add_host(nb, SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 2), 50_000), SERVER_2, 2);
    w
}

/// Figure 2's NATs with both clients on server 1, as every client of a deployment uses
/// one server (Windows': teredo.ipv6.microsoft.com) and the lab's do: RFC 4380 §5.3.1
/// rule 5 has a server drop a bubble whose Teredo source is not at its embedded mapping,
/// which is how the mapping of a client behind a symmetric NAT toward another server
/// looks, so its indirect bubbles from its Teredo address (the ones that carry its Random
/// Port to the peer, §5.4.4.2) pass only through its own server.
fn one_server(a_kind: Kind, b_kind: Kind) -> World {
    let mut w = World::new();
    let na = w.add_nat(a_kind, Ipv4Addr::new(192, 0, 2, 1), 4096);
    let nb = w.add_nat(b_kind, Ipv4Addr::new(192, 0, 2, 10), 8192);
    w.add_host(na, SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 50_000), SERVER_1, 1);
    w.add_host(nb, SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 2), 50_000), SERVER_1, 2);
    w
}

#[test]
fn figure_2_addresses_are_the_rfcs() {
    let w = figure_2(Kind::PortSymmetric, Kind::AddressRestricted);
    assert_eq!(w.hosts[0].address, "2001:0:cb00:7178:0:efff:3fff:fdfe".parse::<Ipv6Addr>().unwrap());
    assert_eq!(w.hosts[1].address, "2001:0:c633:6476:0:dfff:3fff:fdf5".parse::<Ipv6Addr>().unwrap());
}

/// §6.1: A (port-symmetric) to B (address-restricted). B's direct bubble to A's embedded
/// mapping is dropped by A's NAT; B's indirect bubble reaches A, whose direct answer from a
/// new port reaches B (address-restricted: B sent to A's address) carrying B's nonce (§4.2:
/// type 0x01, length 4), and B accepts it from that mapping (§5.2.4.4).
#[test]
fn symmetric_nat_support_example() {
    let mut w = figure_2(Kind::PortSymmetric, Kind::AddressRestricted);
    let t0 = Instant::from_secs(1);
    let got = w.reach(0, 1, t0, 0xa1).expect("A reaches B");
    let got_back = w.reach(1, 0, got, 0xb1).expect("B reaches A");
    assert!(got_back <= got + Duration::from_secs(1));
    // Every indirect bubble carries its sender's nonce for the peer.
    let indirect: Vec<_> = w
        .wire
        .iter()
        .filter(|(_, to, b)| to.port() == 3544 && is_bubble(b))
        .map(|(_, _, b)| b.clone())
        .collect();
    assert!(indirect.len() >= 2, "indirect bubbles of both sides: {}", indirect.len());
    for b in &indirect {
        assert!(matches!(trailers(b)[..], [Trailer::Nonce(_), ..]), "{:?}", trailers(b));
        let raw = &b[40..46];
        assert_eq!(&raw[..2], &[0x01, 0x04]);
    }
    // A's answer came from a port other than the 4096 of its address, with B's nonce.
    let b_nonce = trailers(
        &indirect
            .iter()
            .find(|b| TeredoPacket::parse(b).unwrap().ipv6.dst() == w.hosts[0].address)
            .unwrap()
            .clone(),
    )
    .into_iter()
    .find_map(|t| if let Trailer::Nonce(n) = t { Some(n) } else { None })
    .unwrap();
    let answer = w
        .wire
        .iter()
        .find(|(from, to, b)| {
            trailers(b).contains(&Trailer::Nonce(b_nonce))
                && *from.ip() == Ipv4Addr::new(192, 0, 2, 1)
                && *to == SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 8192)
                && is_bubble(b)
        })
        .expect("A's direct bubble to B");
    assert_ne!(answer.0.port(), 4096);
    assert!(trailers(&answer.2).contains(&Trailer::Nonce(b_nonce)));
    // Data then went directly between the two NATs' public addresses.
    assert!(w.wire.iter().any(|(from, to, b)| from.ip() == &Ipv4Addr::new(192, 0, 2, 1)
        && to.ip() == &Ipv4Addr::new(192, 0, 2, 10)
        && !is_bubble(b)));
    assert!(w.hosts[1].tunnel.stats().nonces_verified + w.hosts[1].tunnel.stats().bubbles_verified >= 1);
}

/// Figure 1 for the kinds simulated here (all but address-symmetric), both clients on one
/// server: every Yes, SNS, SNS+UPnP, SNS+PP and SNS+SS cell connects, both ways, with data
/// directly between the NATs; every No cell fails and leaves nothing queued, but those a
/// UPnP port mapping opens ([`Kind::beyond_figure`], printed `yes!`).
#[test]
fn figure_1_matrix_for_the_simulated_kinds() {
    let mut matrix = String::from("source \\ destination");
    for d in Kind::ALL {
        matrix.push_str(&format!(" | {}", d.name()));
    }
    matrix.push('\n');
    let mut wrong = Vec::new();
    for s in Kind::ALL {
        matrix.push_str(s.name());
        for d in Kind::ALL {
            let expected = s.connects(d) || s.beyond_figure(d);
            let mut w = one_server(s, d);
            let t0 = Instant::from_secs(1);
            let there = w.reach(0, 1, t0, 1);
            let back = there.and_then(|t| w.reach(1, 0, t, 2));
            let ok = back.is_some();
            if ok != expected {
                wrong.push(format!("{} -> {}: connected {ok}, Figure 1 says {expected}", s.name(), d.name()));
            }
            if ok && !w.direct_data(0, 1) {
                wrong.push(format!("{} -> {}: no data directly between the NATs", s.name(), d.name()));
            }
            if !ok {
                // The bubble budget (4 in 300 s) ends the try; no packet stays queued.
                let mut now = t0 + Duration::from_secs(13);
                for _ in 0..10 {
                    now = now + Duration::from_secs(1);
                    w.tick(now);
                }
                let queued: usize = w.hosts.iter().map(|h| h.tunnel.peers().queued_bytes()).sum();
                if queued != 0 {
                    wrong.push(format!("{} -> {}: packets left queued", s.name(), d.name()));
                }
            }
            matrix.push_str(match (ok, s.connects(d)) {
                (true, true) => " | yes",
                (true, false) => " | yes!",
                (false, _) => " | no",
            });
        }
        matrix.push('\n');
    }
    println!("{matrix}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// §6.5 with one NAT (E) that does not hairpin: A's indirect bubble carries its local
/// address in an Alternate Address trailer (§4.3: type 0x03, length 8, two reserved zero
/// bytes, IPv4 and port); B answers there with A's nonce, over the LAN, and the two talk
/// over the LAN from then on.
#[test]
fn hairpinning_example() {
    // Figure 3's NAT E has Figure 2's second server address: only server 1 here.
    let mut w = World::new();
    w.servers.truncate(1);
    let e = w.add_nat(Kind::PortRestricted, Ipv4Addr::new(198, 51, 100, 118), 4095);
    let a_local = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 4095);
    let b_local = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 11), 4096);
    w.add_host(e, a_local, SERVER_1, 1);
    w.add_host(e, b_local, SERVER_1, 2);
    let t0 = Instant::from_secs(1);
    let got = w.reach(0, 1, t0, 0xa5).expect("A reaches B behind the same NAT");
    w.reach(1, 0, got, 0xb5).expect("B reaches A back");
    let indirect = w
        .wire
        .iter()
        .find(|(_, to, b)| {
            *to == SocketAddrV4::new(SERVER_1, 3544)
                && is_bubble(b)
                && TeredoPacket::parse(b).is_ok_and(|p| p.ipv6.src() == w.hosts[0].address)
        })
        .expect("A's indirect bubble from its address");
    let at = 40 + 6; // after the bubble and the nonce trailer
    assert_eq!(&indirect.2[at..at + 10], &[0x03, 0x08, 0, 0, 192, 168, 1, 10, 0x0f, 0xff]);
    // The data went over the LAN, none over the Internet.
    assert!(w.lan.iter().any(|(from, to, b)| *from == a_local && *to == b_local && !is_bubble(b)));
    assert!(
        !w.wire.iter().any(|(_, _, b)| !is_bubble(b)
            && TeredoPacket::parse(b).is_ok_and(|p| p.ipv6.header().next_header == 17))
    );
}

/// §6.6: A and B talked, then stayed silent 30 s. A's next packet makes A send one direct
/// bubble with a Neighbor Discovery Option trailer (type 0x04, length 4, discovery type
/// 0 = solicitation, 3 zero bytes) and no indirect bubble; B answers with discovery type 1
/// (advertisement), and the packet goes.
#[test]
fn server_load_reduction_example() {
    let mut w = figure_2(Kind::Cone, Kind::Cone);
    let t0 = Instant::from_secs(1);
    let got = w.reach(0, 1, t0, 1).expect("A reaches B");
    w.reach(1, 0, got, 2).expect("B reaches A");
    let later = got + Duration::from_secs(40);
    let before = w.wire.len();
    w.reach(0, 1, later, 3).expect("A reaches B again");
    let after = &w.wire[before..];
    let to_servers = after.iter().filter(|(_, to, _)| to.port() == 3544).count();
    assert_eq!(to_servers, 0, "no server involved in the refresh");
    let ns = after.iter().find(|(_, _, b)| is_bubble(b)).expect("A's solicitation");
    assert_eq!(&ns.2[40..46], &[0x04, 0x04, DISCOVERY_SOLICITATION, 0, 0, 0]);
    let na = after.iter().filter(|(_, _, b)| is_bubble(b)).nth(1).expect("B's advertisement");
    assert_eq!(&na.2[40..46], &[0x04, 0x04, DISCOVERY_ADVERTISEMENT, 0, 0, 0]);
    assert_eq!(w.hosts[0].tunnel.stats().solicitations_sent, 1);
    assert_eq!(w.hosts[1].tunnel.stats().advertisements_sent, 1);
}

/// RFC 4380 §5.2.8 local discovery, without the hairpinning extension (no local address
/// advertised): A and B behind one NAT that does not hairpin send discovery bubbles to
/// 224.0.0.253 (all-nodes destination, hop limit 1); each then knows the other's local
/// address, and A reaches B over the LAN.
#[test]
fn local_discovery_finds_a_peer_behind_the_same_nat() {
    let mut w = World::new();
    w.servers.truncate(1);
    let e = w.add_nat(Kind::PortRestricted, Ipv4Addr::new(192, 0, 2, 77), 5000);
    let a_local = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 4095);
    let b_local = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 11), 4096);
    w.add_host(e, a_local, SERVER_1, 1);
    w.add_host(e, b_local, SERVER_1, 2);
    for h in 0..2 {
        w.hosts[h].tunnel.set_local_address(None);
        w.hosts[h].tunnel.set_local_discovery(Instant::ZERO, true);
    }
    let t0 = Instant::from_secs(1);
    w.tick(t0);
    let discovery: Vec<_> = w.lan.iter().filter(|(_, to, _)| *to.ip() == DISCOVERY_IPV4).collect();
    assert_eq!(discovery.len(), 2, "one discovery bubble from each");
    for (_, to, b) in &discovery {
        assert_eq!(to.port(), 3544);
        let p = TeredoPacket::parse(b).unwrap();
        assert!(p.ipv6.is_bubble());
        assert_eq!(p.ipv6.dst(), "ff02::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(b[7], 1, "hop limit 1");
    }
    assert_eq!(w.hosts[1].tunnel.stats().discovery_bubbles_received, 1);
    let got = w.reach(0, 1, t0, 0x5a).expect("A reaches B over the LAN");
    w.reach(1, 0, got, 0x5b).expect("B reaches A back");
    assert!(w.lan.iter().any(|(from, to, b)| *from == a_local && *to == b_local && !is_bubble(b)));
}

/// A discovery bubble from a client behind another NAT (another public address in its
/// Teredo address), to a unicast destination, or with local discovery off is dropped.
#[test]
fn foreign_discovery_bubbles_are_dropped() {
    let mut w = figure_2(Kind::Cone, Kind::Cone);
    let a = &mut w.hosts[0].tunnel;
    a.set_local_discovery(Instant::ZERO, true);
    let b_addr = w.hosts[1].address;
    let mut bubble = vec![0u8; 40];
    teredo_proto::wire::ipv6::emit_bubble(&mut bubble, b_addr, "ff02::1".parse().unwrap(), 1).unwrap();
    let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), 3544);
    let a = &mut w.hosts[0].tunnel;
    assert!(matches!(a.handle_discovery(Instant::from_secs(1), from, &bubble), UdpVerdict::Drop(_)));
    assert_eq!(a.stats().discovery_dropped, 1);
    assert!(a.peers().is_empty());
}

/// The Random Port trailer of `bytes`, if any.
fn random_port(bytes: &[u8]) -> Option<u16> {
    trailers(bytes).into_iter().find_map(|t| match t {
        Trailer::RandomPort { port, .. } => Some(port),
        _ => None,
    })
}

/// The data packets (not bubbles) that crossed the Internet from NAT `a`'s public side to
/// NAT `b`'s: (from, to).
fn data_between(w: &World, a: usize, b: usize) -> Vec<(SocketAddrV4, SocketAddrV4)> {
    let (pa, pb) = (w.nats[a].public, w.nats[b].public);
    w.wire
        .iter()
        .filter(|(from, to, b)| *from.ip() == pa && *to.ip() == pb && !is_bubble(b))
        .map(|(from, to, _)| (*from, *to))
        .collect()
}

fn embedded(a: Ipv6Addr) -> SocketAddrV4 {
    let t = TeredoAddress::from_ipv6(&a).unwrap();
    SocketAddrV4::new(t.mapped_addr, t.mapped_port)
}

/// RFC 6081 §4.5's Random Port trailer, known answer: type 0x05, length 2, the port in
/// network byte order (§6.4's predicted port 1201 is 0x04b1); 0x02, the IANA type of §9,
/// reads the same.
#[test]
fn random_port_trailer_known_answer() {
    let mut buf = [0u8; 4];
    let t = Trailer::RandomPort { trailer_type: teredo_proto::wire::trailer::RANDOM_PORT, port: 1201 };
    assert_eq!(t.emit(&mut buf), Ok(4));
    assert_eq!(buf, [0x05, 0x02, 0x04, 0xb1]);
    let iana = teredo_proto::wire::Trailers::new(&[0x02, 0x02, 0x04, 0xb1]);
    assert_eq!(iana.iter().next(), Some(Ok(Trailer::RandomPort { trailer_type: 0x02, port: 1201 })));
    // A wrong length is malformed: processing stops (§5.1.2), nothing is read.
    assert_eq!(teredo_proto::wire::Trailers::new(&[0x05, 0x03, 0x04, 0xb1, 0]).iter().count(), 0);
}

/// §6.2: A and B each behind a single UPnP-enabled port-symmetric NAT, their ports mapped
/// before qualification (so each address embeds the UPnP mapping, which qualification finds
/// equal to the IGD's: the UPnP-Mapped Address/Port is zeroed). A's direct bubble reaches B
/// through B's mapping from another port of A's NAT: B flags A as a symmetric peer and
/// sends to A's embedded mapping; so does A for B. Data then goes, each way, from a
/// mapping of one NAT to the embedded (UPnP) mapping of the other.
#[test]
fn upnp_symmetric_nat_example() {
    let mut w = one_server(Kind::UpnpPortSymmetric, Kind::UpnpPortSymmetric);
    for h in &w.hosts {
        assert_eq!(embedded(h.address).port(), h.local.port(), "the UPnP mapping is in the address");
    }
    let t0 = Instant::from_secs(1);
    let got = w.reach(0, 1, t0, 0x62).expect("A reaches B");
    w.reach(1, 0, got, 0x63).expect("B reaches A");
    let (a, b) = (w.hosts[0].address, w.hosts[1].address);
    let ab = data_between(&w, 0, 1);
    let ba = data_between(&w, 1, 0);
    assert!(
        !ab.is_empty() && ab.iter().all(|(from, to)| *to == embedded(b) && *from != embedded(a)),
        "{ab:?}"
    );
    assert!(
        !ba.is_empty() && ba.iter().all(|(from, to)| *to == embedded(a) && *from != embedded(b)),
        "{ba:?}"
    );
    for h in &w.hosts {
        assert!(h.tunnel.stats().symmetric_peers >= 1, "the Symmetric Peer flag (§5.3.4.1)");
    }
}

/// §6.3: A and B each behind a port-preserving symmetric NAT. A's indirect bubbles carry a
/// Nonce and a Random Port trailer (§4.5: 0x05, 2, its random port); B opens a random port
/// of its own and advertises it; the direct bubbles between the two random ports open both
/// NATs, whose mappings keep the random ports, and data goes between them.
#[test]
fn port_preserving_symmetric_nat_example() {
    let mut w = one_server(Kind::PortPreservingSymmetric, Kind::PortPreservingSymmetric);
    let t0 = Instant::from_secs(1);
    let got = w.reach(0, 1, t0, 0x64).expect("A reaches B");
    w.reach(1, 0, got, 0x65).expect("B reaches A");
    let advertised = |h: usize| {
        let src = w.hosts[h].address;
        let b = w
            .wire
            .iter()
            .find(|(_, to, b)| {
                to.port() == 3544 && is_bubble(b) && TeredoPacket::parse(b).is_ok_and(|p| p.ipv6.src() == src)
            })
            .map(|(_, _, b)| b.clone())
            .expect("an indirect bubble from the Teredo address");
        assert!(matches!(
            trailers(&b)[..],
            [Trailer::Nonce(_), .., Trailer::RandomPort { trailer_type: 0x05, .. }]
        ));
        let raw = &b[b.len() - 4..];
        assert_eq!(&raw[..2], &[0x05, 0x02]);
        u16::from_be_bytes([raw[2], raw[3]])
    };
    let (ra, rb) = (advertised(0), advertised(1));
    assert_ne!(ra, w.hosts[0].local.port());
    let ab = data_between(&w, 0, 1);
    let ba = data_between(&w, 1, 0);
    assert!(!ab.is_empty() && ab.iter().all(|(f, t)| f.port() == ra && t.port() == rb), "{ab:?} {ra} {rb}");
    assert!(!ba.is_empty() && ba.iter().all(|(f, t)| f.port() == rb && t.port() == ra), "{ba:?}");
    assert_eq!(
        w.hosts[0].tunnel.random_ports().collect::<Vec<_>>(),
        [ra],
        "A's random port is its Random Port"
    );
}

/// §6.4: A behind a sequential port-symmetric NAT, B behind a port-restricted one. A's
/// echo test leaves from its random port in this order: an RS to its server's primary
/// address, a direct bubble to B, an RS to the secondary address; the NAT gives them
/// consecutive ports, and the indirect bubble that follows predicts the middle one, from
/// which the data then goes.
#[test]
fn sequential_port_symmetric_nat_example() {
    let mut w = one_server(Kind::SequentialSymmetric, Kind::PortRestricted);
    let t0 = Instant::from_secs(1);
    let got = w.reach(0, 1, t0, 0x66).expect("A reaches B");
    w.reach(1, 0, got, 0x67).expect("B reaches A");
    let pa = w.nats[0].public;
    let is_rs = |b: &[u8]| TeredoPacket::parse(b).is_ok_and(|p| p.auth.is_some());
    let rs1 =
        w.wire.iter().position(|(f, t, b)| *f.ip() == pa && *t.ip() == SERVER_1 && is_rs(b)).expect("RS 1");
    let (from1, _, _) = w.wire[rs1].clone();
    let (from2, to2, b2) = w.wire[rs1 + 1].clone();
    let (from3, to3, b3) = w.wire[rs1 + 2].clone();
    assert!(is_bubble(&b2) && to2 == embedded(w.hosts[1].address), "then the direct bubble to B");
    assert!(is_rs(&b3) && *to3.ip() == secondary(SERVER_1), "then the RS to the secondary address");
    assert_eq!((from2.port(), from3.port()), (from1.port() + 1, from1.port() + 2));
    let b_addr = w.hosts[1].address;
    let prediction = w
        .wire
        .iter()
        .find(|(_, to, b)| {
            to.port() == 3544 && is_bubble(b) && TeredoPacket::parse(b).is_ok_and(|p| p.ipv6.dst() == b_addr)
        })
        .and_then(|(_, _, b)| random_port(b))
        .expect("an indirect bubble with a Random Port trailer");
    assert_eq!(prediction, from2.port(), "the midpoint of the two RAs' ports");
    let ab = data_between(&w, 0, 1);
    assert!(!ab.is_empty() && ab.iter().all(|(f, _)| f.port() == prediction), "{ab:?}");
    let st = w.hosts[0].tunnel.stats();
    assert_eq!((st.port_echo_tests, st.port_predictions), (1, 1));
}
