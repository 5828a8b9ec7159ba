//! The client endpoint under fuzzing: qualification and data path together, with the real
//! server answering its router solicitations (from a NAT mapping that the fuzzer may
//! change), driven by a sequence of operations like the data path's, plus server changes,
//! name resolutions, local discovery and timers. After every step: the data path's bounds,
//! the events' bound, and the data path following the qualification (same address).

use std::net::{Ipv4Addr, SocketAddrV4};

use super::ops::Ops;
use super::tunnel::{check_strangers, check_tun_verdict, check_udp_verdict};
use super::world::{self, LOCAL, OWN_MAP, SERVER, SERVER2, World, peer, peer_map};
use crate::address::{TEREDO_PORT, TEREDO_PREFIX, TeredoAddress};
use crate::client::{self, Event, ServerAddress};
use crate::endpoint::ClientEndpoint;
use crate::server::{Action, Local, Server, ServerConfig};
use crate::tunnel::UdpVerdict;

/// The most operations one input runs.
const MAX_STEPS: usize = 512;
/// The most events the endpoint keeps for the I/O layer.
const MAX_EVENTS: usize = 16;

/// A Teredo client endpoint.
pub fn endpoint(data: &[u8]) {
    let mut ops = Ops::new(data);
    let cfg = ops.u8();
    let mut w = World::new(None, world::limits());
    let mtu = if cfg & 0x10 != 0 { 1400 } else { 1280 };
    let server =
        Server::new(ServerConfig { primary: SERVER, secondary: SERVER2, prefix: TEREDO_PREFIX, mtu });
    let address = if cfg & 0x20 != 0 { ServerAddress::HostName } else { ServerAddress::Ipv4(SERVER) };
    let config = client::Config::new(address);
    let mut e = ClientEndpoint::new(config, w.key.clone(), w.limits, w.now).expect("a small endpoint");
    if cfg & 1 != 0 {
        e.set_local_discovery(w.now, true);
    }
    if cfg & 2 != 0 {
        e.set_local_address(Some(LOCAL));
    }
    let mut h = Harness { server, mapping: OWN_MAP, auto: cfg & 4 == 0, max_peers: w.limits.peers.max_peers };
    if address == ServerAddress::HostName {
        let _ = e.set_server(w.now, SERVER, Some(SERVER2));
    }
    // Qualified (the RA, then the secondary address's probe), with peers in every state.
    for _ in 0..2 {
        h.drain(&mut w, &mut e, 2048);
        h.answer_solicitations(&mut w, &mut e);
        w.now = w.now + std::time::Duration::from_millis(10);
    }
    h.events(&mut w, &mut e);
    if let Some(own) = w.own {
        for i in 0..4 {
            let p = world::packet(own, peer(i), 17, 64, &[i as u8; 100]);
            let v = e.handle_tun_packet(w.now, &p);
            check_tun_verdict(&mut w, e.tunnel().peers(), &p, v);
        }
        h.drain(&mut w, &mut e, 2048);
        for i in 0..2 {
            let b = world::packet(peer(i), own, 59, 255, &[]);
            h.datagram(&mut w, &mut e, peer_map(i), &b);
            h.drain(&mut w, &mut e, 2048);
        }
    }
    for _ in 0..MAX_STEPS {
        if ops.is_empty() {
            break;
        }
        h.step(&mut w, &mut e, &mut ops);
    }
    e.handle_timeout(w.now);
    h.drain(&mut w, &mut e, 2048);
    h.events(&mut w, &mut e);
}

struct Harness {
    server: Server,
    /// The client's mapping on its NAT, as the server sees it.
    mapping: SocketAddrV4,
    /// The server's answers go back at once.
    auto: bool,
    max_peers: usize,
}

impl Harness {
    fn step(&mut self, w: &mut World, e: &mut ClientEndpoint, ops: &mut Ops<'_>) {
        let op = ops.u8();
        let before = e.tunnel().peers().len();
        let strangers_before = e.tunnel().peers().strangers();
        match op % 16 {
            0..=2 => {
                let (from, d) = w.datagram(ops);
                self.datagram(w, e, from, &d);
            }
            3 => {
                let from = w.addr4(ops);
                let d = ops.chunk().to_vec();
                self.datagram(w, e, from, &d);
            }
            4 => {
                if let Some((from, d)) = w.answer(ops) {
                    self.datagram(w, e, from, &d);
                }
            }
            5 | 6 => {
                let p = w.tun_packet(ops);
                let v = e.handle_tun_packet(w.now, &p);
                check_tun_verdict(w, e.tunnel().peers(), &p, v);
            }
            7 => {
                let p = ops.chunk().to_vec();
                let v = e.handle_tun_packet(w.now, &p);
                check_tun_verdict(w, e.tunnel().peers(), &p, v);
            }
            8 => w.advance(ops),
            9 => {
                if ops.bool() {
                    w.now = w.now.max(e.poll_timeout());
                }
                e.handle_timeout(w.now);
            }
            10 => {
                let len = usize::from(ops.u8()) * 8;
                self.drain(w, e, len);
            }
            11 => self.answer_solicitations(w, e),
            12 => {
                // The NAT gives the client another mapping (or the same).
                self.mapping = match ops.u8() % 4 {
                    0 => OWN_MAP,
                    1 => SocketAddrV4::new(*OWN_MAP.ip(), ops.u16()),
                    _ => w.addr4(ops),
                };
            }
            13 => {
                let (from, d) = w.datagram(ops);
                let v = e.handle_discovery(w.now, from, &d);
                assert!(!matches!(v, UdpVerdict::Deliver { .. } | UdpVerdict::Queued));
            }
            14 => self.configure(w, e, ops),
            _ => self.auto = !self.auto,
        }
        if op & 0x80 == 0 {
            self.drain(w, e, 2048);
        }
        self.events(w, e);
        let l = w.limits.peers;
        let peers = e.tunnel().peers();
        let n = peers.len();
        assert!(n <= l.max_peers, "{n} peers, more than the table's {}", l.max_peers);
        assert!(n <= before.max(self.max_peers), "a new peer beyond MaxPeers {}", self.max_peers);
        assert!(peers.queued_bytes() <= l.queue_bytes_total, "queued bytes beyond the budget");
        check_strangers(peers, strangers_before);
    }

    fn configure(&mut self, w: &mut World, e: &mut ClientEndpoint, ops: &mut Ops<'_>) {
        let server = |ops: &mut Ops<'_>| match ops.u8() % 4 {
            0 => SERVER,
            1 => SERVER2,
            2 => Ipv4Addr::new(10, 0, 0, 1),
            _ => Ipv4Addr::from(ops.u32()),
        };
        match ops.u8() % 9 {
            0 => {
                let (p, s) = (server(ops), ops.bool().then(|| server(ops)));
                let _ = e.set_server(w.now, p, s);
            }
            1 => {
                let (p, s) = (server(ops), ops.bool().then(|| server(ops)));
                let _ = e.set_server_later(w.now, p, s);
            }
            2 => e.resolution_failed(w.now),
            3 => e.solicit_now(w.now),
            4 => {
                let a = if ops.bool() { LOCAL } else { w.addr4(ops) };
                e.set_local_address(ops.bool().then_some(a));
            }
            5 => e.set_local_discovery(w.now, ops.bool()),
            6 => {
                let n = usize::from(ops.u8() % 12);
                if e.set_max_peers(n) {
                    self.max_peers = n;
                }
            }
            7 => {
                let _ = e.status(w.now, true);
            }
            _ => {
                let _ = e.poll_timeout();
                let _ = e.has_output();
            }
        }
    }

    fn datagram(&mut self, w: &mut World, e: &mut ClientEndpoint, from: SocketAddrV4, d: &[u8]) {
        let v = e.handle_datagram(w.now, from, d);
        // A qualification message may have changed the address.
        self.events(w, e);
        if v == UdpVerdict::Consumed {
            return;
        }
        check_udp_verdict(w, e.tunnel().peers(), false, from, d, v);
    }

    /// Takes the outputs; with `auto`, the server answers the solicitations at once.
    fn drain(&mut self, w: &mut World, e: &mut ClientEndpoint, len: usize) {
        w.drain(len, true, |now, b| e.poll_transmit(now, b));
        if self.auto {
            self.answer_solicitations(w, e);
        }
    }

    /// The real server's answers to the solicitations sent, from the client's mapping.
    fn answer_solicitations(&mut self, w: &mut World, e: &mut ClientEndpoint) {
        let mut out = [0u8; 1500];
        for (to, rs) in w.take_solicitations() {
            let local = match *to.ip() {
                SERVER => Local::Primary,
                SERVER2 => Local::Secondary,
                _ => continue,
            };
            if let Action::SendUdp { from, len, .. } =
                self.server.handle_datagram(local, self.mapping, &rs, &mut out)
            {
                let addr = if from == Local::Primary { SERVER } else { SERVER2 };
                let ra = out[..len].to_vec();
                self.datagram(w, e, SocketAddrV4::new(addr, TEREDO_PORT), &ra);
            }
        }
    }

    /// Takes the events: at most [`MAX_EVENTS`]; an Up carries a Teredo address of a
    /// global server and an MTU of at least 1280, and the data path has the address the
    /// qualification has.
    fn events(&mut self, w: &mut World, e: &mut ClientEndpoint) {
        let mut n = 0;
        while let Some(ev) = e.poll_event() {
            n += 1;
            assert!(n <= MAX_EVENTS, "more events than the endpoint keeps");
            if let Event::Up { address, mtu } = ev {
                assert!(mtu >= 1280, "an MTU below 1280");
                let t = TeredoAddress::from_ipv6(&address).expect("a Teredo address");
                assert!(crate::address::is_global_unicast(t.server), "an address of a server not global");
            }
        }
        let st = e.status(w.now, false);
        assert_eq!(e.tunnel().address(), st.address, "the data path does not follow the qualification");
        w.own = e.tunnel().address();
    }
}
