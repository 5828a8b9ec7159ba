//! Tests of the client's qualification and maintenance (RFC 4380 §5.2.1, §5.2.5, RFC 5991
//! §3) against a fake server built with the wire builders, in virtual time.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use proptest::prelude::*;
use zerocopy::IntoBytes;

use super::*;
use crate::address::{LINK_LOCAL_RESTRICTED, server_link_local};
use crate::checksum;
use crate::wire::icmpv6::{Icmpv6, Icmpv6Repr, Message, PrefixInformation};
use crate::wire::ipv6::{Ipv6Header, NEXT_HEADER_ICMPV6, emit_bubble};
use crate::wire::{Authentication, OriginIndication, TeredoPacket, encap::emit_headers};

const PRIMARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SECONDARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const MAPPED: OriginIndication = OriginIndication { addr: Ipv4Addr::new(203, 0, 113, 7), port: 40000 };
const OTHER_PORT: OriginIndication = OriginIndication { addr: Ipv4Addr::new(203, 0, 113, 7), port: 40001 };
/// The prefix the fake server advertises: 2001:0:<192.0.2.1>::/64.
const PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0, 0xc000, 0x0201, 0, 0, 0, 0);
/// Network latency of the fake server.
const RTT: Duration = Duration::from_millis(20);

fn key() -> TokenKey {
    TokenKey::new([7; 32])
}

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

fn ms(m: u64) -> Instant {
    Instant::from_millis(m)
}

fn client() -> Client {
    Client::new(Config::new(ServerAddress::Ipv4(PRIMARY)), key(), Instant::ZERO).unwrap()
}

/// A router advertisement as a server would send it, with every field adjustable.
#[derive(Debug, Clone)]
struct Ra {
    /// The nonce echoed in the authentication header; `None` for no header.
    nonce: Option<[u8; 8]>,
    confirmation: u8,
    origin: Option<OriginIndication>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    code: u8,
    /// (prefix length, prefix) of each prefix information option.
    prefixes: Vec<(u8, Ipv6Addr)>,
    mtus: Vec<u32>,
    bad_checksum: bool,
    trailer: Vec<u8>,
}

impl Ra {
    /// The RA a Miredo server sends for the RS `rs`, with `mapping` as origin.
    fn answering(rs: &[u8], mapping: OriginIndication) -> Self {
        let p = TeredoPacket::parse(rs).unwrap();
        Self {
            nonce: Some(p.auth.unwrap().nonce),
            confirmation: 0,
            origin: Some(mapping),
            src: server_link_local(PRIMARY),
            dst: p.ipv6.src(),
            code: 0,
            prefixes: vec![(64, PREFIX)],
            mtus: vec![1280],
            bad_checksum: false,
            trailer: vec![],
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; 200];
        let auth = self
            .nonce
            .map(|n| Authentication { confirmation: self.confirmation, ..Authentication::with_nonce(n) });
        let n = emit_headers(&mut b, auth.as_ref(), self.origin.as_ref()).unwrap();
        b.truncate(n);
        // cur hop limit 0, flags 0, router lifetime 0, reachable 0, retrans timer 2000 ms
        let mut icmp = vec![134, self.code, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xd0];
        for &(len, prefix) in &self.prefixes {
            icmp.extend_from_slice(&[3, 4, len, 0x40]);
            icmp.extend_from_slice(&[0xff; 8]);
            icmp.extend_from_slice(&[0; 4]);
            icmp.extend_from_slice(&prefix.octets());
        }
        for &m in &self.mtus {
            icmp.extend_from_slice(&[5, 1, 0, 0]);
            icmp.extend_from_slice(&m.to_be_bytes());
        }
        let c = checksum::icmpv6(&self.src, &self.dst, &icmp) ^ u16::from(self.bad_checksum);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let h = Ipv6Header::new(self.src, self.dst, NEXT_HEADER_ICMPV6, 255, icmp.len() as u16);
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&icmp);
        b.extend_from_slice(&self.trailer);
        b
    }
}

/// A fake Teredo server with two addresses: what each answers (the mapping it sees), or
/// `None` for silence.
#[derive(Debug, Clone)]
struct FakeServer {
    primary: Option<OriginIndication>,
    secondary: Option<OriginIndication>,
    mtu: u32,
}

impl FakeServer {
    fn answer(&self, dst: SocketAddrV4, rs: &[u8]) -> Option<(SocketAddrV4, Vec<u8>)> {
        let mapping = if *dst.ip() == PRIMARY { self.primary? } else { self.secondary? };
        let mut ra = Ra::answering(rs, mapping);
        ra.mtus = vec![self.mtu];
        Some((dst, ra.build()))
    }
}

/// The client, the fake server and the network between them, in virtual time.
struct Sim {
    client: Client,
    server: FakeServer,
    now: Instant,
    /// Every RS sent: when and where.
    sent: Vec<(Instant, SocketAddrV4)>,
    /// Every event, with the time it was polled.
    events: Vec<(Instant, Event)>,
    /// RAs on their way: arrival time, source, bytes.
    inflight: Vec<(Instant, SocketAddrV4, Vec<u8>)>,
}

impl Sim {
    fn new(client: Client) -> Self {
        let server = FakeServer { primary: Some(MAPPED), secondary: Some(MAPPED), mtu: 1280 };
        Self { client, server, now: Instant::ZERO, sent: vec![], events: vec![], inflight: vec![] }
    }

    /// Sends what is due and collects events.
    fn flush(&mut self) {
        let mut buf = [0u8; 1500];
        while let Some(t) = self.client.poll_transmit(self.now, &mut buf) {
            assert_eq!(t.len, RS_LEN);
            self.sent.push((self.now, t.dst));
            if let Some((from, ra)) = self.server.answer(t.dst, &buf[..t.len]) {
                self.inflight.push((self.now + RTT, from, ra));
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.events.push((self.now, e));
        }
    }

    /// Runs every timer and delivery up to `end`, then stops there.
    fn run_until(&mut self, end: Instant) {
        self.flush();
        for _ in 0..100_000 {
            let next_ra = self.inflight.iter().map(|x| x.0).min();
            let next = match (self.client.poll_timeout(), next_ra) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    let (due, later) = self.inflight.drain(..).partition(|x| x.0 <= now);
                    self.inflight = later;
                    for (_, from, ra) in due {
                        let p = TeredoPacket::parse(&ra).unwrap();
                        assert!(self.client.handle_datagram(now, from, &p));
                    }
                    self.client.handle_timeout(now);
                    self.flush();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("the client does not make progress");
    }

    /// Jumps to `t` without running the timers in between (a suspended machine).
    fn jump_to(&mut self, t: Instant) {
        self.now = t;
        self.inflight.clear();
        self.client.handle_timeout(t);
        self.flush();
    }

    fn rs_times(&self, to: Ipv4Addr) -> Vec<Instant> {
        self.sent.iter().filter(|s| *s.1.ip() == to).map(|s| s.0).collect()
    }

    fn events(&self) -> Vec<Event> {
        self.events.iter().map(|e| e.1).collect()
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).map(|e| e.1).collect()
    }
}

fn up_address(e: &Event) -> Option<TeredoAddress> {
    match e {
        Event::Up { address, .. } => TeredoAddress::from_ipv6(address),
        _ => None,
    }
}

#[test]
fn qualifies_and_address_decodes() {
    let mut sim = Sim::new(client());
    assert_eq!(sim.client.state(), State::Qualifying);
    sim.run_until(secs(1));
    assert_eq!(sim.client.state(), State::Qualified);
    let events = sim.events();
    assert_eq!(events.len(), 2, "{events:?}");
    let a = up_address(&events[0]).expect("Up first");
    assert!(matches!(events[0], Event::Up { mtu: 1280, .. }));
    assert_eq!(events[1], Event::NatBehaviour(NatKind::SameMapping));
    assert_eq!(a.prefix, TEREDO_PREFIX);
    assert_eq!(a.server, PRIMARY);
    assert_eq!(a.mapped_addr, MAPPED.addr);
    assert_eq!(a.mapped_port, MAPPED.port);
    assert!(!a.flags.cone() && !a.flags.z() && !a.flags.u() && !a.flags.g());
    assert_eq!(a.flags.0 & !Flags::RANDOM_MASK, 0);
    assert_eq!(sim.client.address(), Some(a));
    assert_eq!(sim.client.mtu(), Some(1280));
    assert_eq!(sim.client.server(), Some((PRIMARY, SECONDARY)));
    assert_eq!(sim.client.nat_kind(), Some(NatKind::SameMapping));
    assert_eq!(sim.client.last_interaction(), Some(ms(20) + RTT));
    // One RS to each address; the Up came with the primary's RA.
    assert_eq!(sim.rs_times(PRIMARY), [Instant::ZERO]);
    assert_eq!(sim.rs_times(SECONDARY), [ms(20)]);
    assert_eq!(sim.events[0].0, ms(20));
    let st = sim.client.stats();
    assert_eq!((st.rs_sent, st.ra_accepted, st.ra_rejected, st.up, st.down), (2, 2, 0, 1, 0));
}

#[test]
fn router_solicitation_format() {
    let mut c = client();
    let mut buf = [0u8; 100];
    let t = c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    assert_eq!(t.dst, SocketAddrV4::new(PRIMARY, 3544));
    assert_eq!(t.len, RS_LEN);
    assert!(c.poll_transmit(Instant::ZERO, &mut buf).is_none(), "one RS at a time");
    let p = TeredoPacket::parse(&buf[..t.len]).unwrap();
    let auth = p.auth.unwrap();
    assert!(auth.client_id.is_empty() && auth.auth_value.is_empty());
    assert_eq!(auth.confirmation, 0);
    assert_eq!(auth.nonce, key().rs_nonce(PRIMARY, 0));
    let first_nonce = auth.nonce;
    assert!(p.origin.is_none());
    assert!(p.trailers.is_empty());
    assert_eq!(p.ipv6.src(), LINK_LOCAL_RESTRICTED);
    assert_eq!(p.ipv6.dst(), "ff02::2".parse::<Ipv6Addr>().unwrap());
    assert_eq!(p.ipv6.header().hop_limit, 255);
    assert!(Icmpv6::checksum_ok(&p.ipv6));
    let icmp = Icmpv6::parse(&p.ipv6).unwrap();
    assert_eq!((icmp.msg_type, icmp.code), (133, 0));
    // Miredo's precomputed checksum of the restricted RS (miredo-facts §4.1).
    assert_eq!(icmp.checksum, 0x7d37);
    let Message::RouterSolicitation(rs) = Message::parse(&p.ipv6).unwrap() else { panic!() };
    assert!(rs.source_link_layer().is_none());
    // etherparse agrees.
    let e = etherparse::Ipv6Slice::from_slice(p.ipv6.bytes()).unwrap();
    assert_eq!(e.header().hop_limit(), 255);
    // The next RS carries another nonce.
    c.handle_timeout(secs(4));
    let t2 = c.poll_transmit(secs(4), &mut buf).unwrap();
    let p2 = TeredoPacket::parse(&buf[..t2.len]).unwrap();
    assert_ne!(p2.auth.unwrap().nonce, first_nonce);
    // Too small a buffer: nothing written, the RS stays due.
    let mut c = client();
    assert!(c.poll_transmit(Instant::ZERO, &mut buf[..RS_LEN - 1]).is_none());
    assert_eq!(c.poll_timeout(), Some(Instant::ZERO));
    assert!(c.poll_transmit(Instant::ZERO, &mut buf).is_some());
}

#[test]
fn fake_ra_matches_the_wire_builder() {
    let mut c = client();
    let mut buf = [0u8; 100];
    let t = c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    let ra = Ra::answering(&buf[..t.len], MAPPED);
    let mine = ra.build();
    let mut other = vec![0u8; 200];
    let auth = Authentication::with_nonce(ra.nonce.unwrap());
    let n = emit_headers(&mut other, Some(&auth), Some(&MAPPED)).unwrap();
    let repr = Icmpv6Repr::RouterAdvertisement {
        cur_hop_limit: 0,
        flags: 0,
        router_lifetime: 0,
        reachable_time: 0,
        retrans_timer: 2000,
        prefix: Some(PrefixInformation {
            prefix_len: 64,
            flags: PrefixInformation::FLAG_AUTONOMOUS,
            valid_lifetime: u32::MAX,
            preferred_lifetime: u32::MAX,
            prefix: PREFIX,
        }),
        mtu: Some(1280),
    };
    let m = repr.emit_packet(&mut other[n..], ra.src, ra.dst, 255).unwrap();
    assert_eq!(mine, other[..n + m]);
}

/// Sends one RS, answers it with `mutate(ra)` from `from`, and returns the client.
fn answer_with(from: SocketAddrV4, mutate: impl FnOnce(&mut Ra)) -> (Client, Vec<u8>, Ra) {
    let mut c = client();
    let mut buf = [0u8; 100];
    let t = c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    let good = Ra::answering(&buf[..t.len], MAPPED);
    let mut ra = good.clone();
    mutate(&mut ra);
    let bytes = ra.build();
    let p = TeredoPacket::parse(&bytes).unwrap();
    assert!(c.handle_datagram(ms(10), from, &p), "qualification messages are consumed");
    (c, good.build(), ra)
}

#[test]
fn invalid_advertisements_are_ignored() {
    let server = SocketAddrV4::new(PRIMARY, 3544);
    type Mutation = Box<dyn Fn(&mut Ra)>;
    let cases: Vec<(&str, SocketAddrV4, Mutation, Rejection)> = vec![
        ("wrong nonce", server, Box::new(|r| r.nonce = Some([0; 8])), Rejection::UnexpectedNonce),
        ("no authentication", server, Box::new(|r| r.nonce = None), Rejection::NoAuthentication),
        ("confirmation 1", server, Box::new(|r| r.confirmation = 1), Rejection::AuthenticationFailed),
        ("no origin", server, Box::new(|r| r.origin = None), Rejection::NoOrigin),
        (
            "not the Teredo prefix",
            server,
            Box::new(|r| r.prefixes = vec![(64, "2001:db8:c000:201::".parse().unwrap())]),
            Rejection::WrongPrefix,
        ),
        (
            "another server's prefix",
            server,
            Box::new(|r| r.prefixes = vec![(64, "2001:0:c000:202::".parse().unwrap())]),
            Rejection::WrongPrefix,
        ),
        ("prefix length 48", server, Box::new(|r| r.prefixes = vec![(48, PREFIX)]), Rejection::WrongPrefix),
        (
            "wrong source address",
            SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 3544),
            Box::new(|_| {}),
            Rejection::WrongSource,
        ),
        ("wrong source port", SocketAddrV4::new(PRIMARY, 3545), Box::new(|_| {}), Rejection::WrongSource),
        ("bad checksum", server, Box::new(|r| r.bad_checksum = true), Rejection::BadChecksum),
        ("MTU 1279", server, Box::new(|r| r.mtus = vec![1279]), Rejection::BadMtu),
        ("MTU 65536", server, Box::new(|r| r.mtus = vec![65536]), Rejection::BadMtu),
        ("second MTU bad", server, Box::new(|r| r.mtus = vec![1400, 100]), Rejection::BadMtu),
        (
            "two prefixes",
            server,
            Box::new(|r| r.prefixes = vec![(64, PREFIX), (64, PREFIX)]),
            Rejection::PrefixCount,
        ),
        ("no prefix", server, Box::new(|r| r.prefixes = vec![]), Rejection::PrefixCount),
        (
            "wrong destination",
            server,
            Box::new(|r| r.dst = "fe80::8000:5445:5245:444f".parse().unwrap()),
            Rejection::WrongDestination,
        ),
        ("code 1", server, Box::new(|r| r.code = 1), Rejection::NotRouterAdvertisement),
        (
            "private mapping",
            server,
            Box::new(|r| r.origin = Some(OriginIndication { addr: Ipv4Addr::new(10, 0, 0, 1), port: 1 })),
            Rejection::MappingNotGlobal,
        ),
        ("discard trailer", server, Box::new(|r| r.trailer = vec![0x41, 0]), Rejection::DiscardTrailer),
    ];
    for (name, from, mutate, why) in cases {
        let (mut c, good, _) = answer_with(from, mutate);
        assert_eq!(c.stats().last_rejection, Some(why), "{name}");
        assert_eq!(c.stats().ra_rejected, 1, "{name}");
        assert_eq!(c.poll_event(), None, "{name}");
        assert_eq!(c.state(), State::Qualifying, "{name}");
        assert_eq!(c.address(), None, "{name}");
        // The RS still waits for its answer: the right RA is accepted.
        let p = TeredoPacket::parse(&good).unwrap();
        assert!(c.handle_datagram(ms(20), server, &p));
        assert!(matches!(c.poll_event(), Some(Event::Up { .. })), "{name}");
    }
}

#[test]
fn acceptable_variations() {
    let from = SocketAddrV4::new(PRIMARY, 3544);
    // The obsolete prefix is accepted and the address built under 2001::/32.
    let (c, _, _) = answer_with(from, |r| r.prefixes = vec![(64, "3ffe:831f:c000:201::".parse().unwrap())]);
    assert_eq!(c.address().unwrap().prefix, TEREDO_PREFIX);
    // Junk beyond /64 (ndpi-teredo.pcap).
    let (c, _, _) =
        answer_with(from, |r| r.prefixes = vec![(64, "2001:0:c000:201:dead:beef:1:2".parse().unwrap())]);
    assert_eq!(c.address().unwrap().prefix, TEREDO_PREFIX);
    // From the secondary address.
    let (c, _, _) = answer_with(SocketAddrV4::new(SECONDARY, 3544), |_| {});
    assert_eq!(c.state(), State::Qualified);
    // MTU option absent, or larger.
    let (c, _, _) = answer_with(from, |r| r.mtus = vec![]);
    assert_eq!(c.mtu(), Some(1280));
    let (mut c, _, _) = answer_with(from, |r| r.mtus = vec![1400]);
    assert_eq!(c.mtu(), Some(1400));
    assert!(matches!(c.poll_event(), Some(Event::Up { mtu: 1400, .. })));
    let (c, _, _) = answer_with(from, |r| r.mtus = vec![65535]);
    assert_eq!(c.mtu(), Some(65535));
    // A skippable trailer.
    let (c, _, _) = answer_with(from, |r| r.trailer = vec![0x81, 2, 0, 0]);
    assert_eq!(c.state(), State::Qualified);
    assert_eq!(c.stats().ra_rejected, 0);
}

#[test]
fn replayed_and_late_answers_are_ignored() {
    let from = SocketAddrV4::new(PRIMARY, 3544);
    let (mut c, good, _) = answer_with(from, |_| {});
    assert!(matches!(c.poll_event(), Some(Event::Up { .. })));
    // The same RA again: the nonce was used.
    let p = TeredoPacket::parse(&good).unwrap();
    assert!(c.handle_datagram(ms(30), from, &p));
    assert_eq!(c.stats().last_rejection, Some(Rejection::UnexpectedNonce));
    assert_eq!(c.stats().ra_accepted, 1);

    // An answer to an RS that has since been sent again.
    let mut c = client();
    let mut buf = [0u8; 100];
    let t = c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    let old = Ra::answering(&buf[..t.len], MAPPED).build();
    c.handle_timeout(secs(4));
    c.poll_transmit(secs(4), &mut buf).unwrap();
    let p = TeredoPacket::parse(&old).unwrap();
    assert!(c.handle_datagram(secs(5), from, &p));
    assert_eq!(c.stats().last_rejection, Some(Rejection::UnexpectedNonce));
    assert_eq!(c.state(), State::Qualifying);
}

#[test]
fn other_datagrams_are_not_consumed() {
    let mut c = client();
    let mut buf = [0u8; 100];
    c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    // A bubble with an origin indication, from the server: the data path's business.
    let n = emit_headers(&mut buf, None, Some(&MAPPED)).unwrap();
    let m = emit_bubble(&mut buf[n..], "2001::1".parse().unwrap(), "2001::2".parse().unwrap(), 0).unwrap();
    let p = TeredoPacket::parse(&buf[..n + m]).unwrap();
    assert!(!c.handle_datagram(ms(10), SocketAddrV4::new(PRIMARY, 3544), &p));
    // An echo request.
    let repr = Icmpv6Repr::EchoRequest(crate::wire::icmpv6::Echo { identifier: 1, sequence: 1, data: b"x" });
    let m = repr.emit_packet(&mut buf, "2001::1".parse().unwrap(), "2001::2".parse().unwrap(), 64).unwrap();
    let p = TeredoPacket::parse(&buf[..m]).unwrap();
    assert!(!c.handle_datagram(ms(10), SocketAddrV4::new(PRIMARY, 3544), &p));
    assert_eq!(c.stats().ra_rejected, 0);
    // An RS with an authentication header is consumed (and ignored).
    let mut c2 = client();
    let t = c2.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    let p = TeredoPacket::parse(&buf[..t.len]).unwrap();
    assert!(c.handle_datagram(ms(10), SocketAddrV4::new(PRIMARY, 3544), &p));
    assert!(c.stats().last_rejection.is_some());
}

#[test]
fn unanswered_solicitations_repeat_then_pause() {
    let mut sim = Sim::new(client());
    sim.server.primary = None;
    sim.server.secondary = None;
    sim.run_until(secs(12) - Duration::from_micros(1));
    assert_eq!(sim.rs_times(PRIMARY), [secs(0), secs(4), secs(8)]);
    assert_eq!(sim.client.state(), State::Qualifying);
    sim.run_until(secs(12));
    assert_eq!(sim.client.state(), State::Offline);
    // 100 s after the last RS, start over.
    assert_eq!(sim.client.poll_timeout(), Some(secs(108)));
    sim.run_until(secs(250));
    assert_eq!(sim.rs_times(PRIMARY), [0, 4, 8, 108, 112, 116, 216, 220, 224].map(secs));
    // Never up, so no Down; each failed round tells which server failed (for a daemon
    // with other servers to fail over to).
    let failed = Event::ServerUnreachable { server: PRIMARY };
    assert_eq!(sim.events, [(secs(12), failed), (secs(120), failed), (secs(228), failed)]);
    sim.events.clear();
    assert_eq!(sim.client.stats().timeouts, 9);
    // The server comes back: qualified at the next start.
    sim.server.primary = Some(MAPPED);
    sim.run_until(secs(340));
    assert!(matches!(sim.events()[..], [Event::Up { .. }, Event::NatBehaviour(NatKind::Unknown)]));
    assert_eq!(sim.events[0].0, secs(324) + RTT);
}

#[test]
fn refresh_every_interval() {
    let mut sim = Sim::new(client());
    sim.run_until(secs(125));
    assert_eq!(sim.rs_times(PRIMARY), [0, 30, 60, 90, 120].map(secs));
    assert_eq!(sim.rs_times(SECONDARY), [ms(20)], "the probe runs once");
    // Flags stable across refreshes with the same mapping: one Up only.
    assert_eq!(sim.events().iter().filter(|e| matches!(e, Event::Up { .. })).count(), 1);
    let a = sim.client.address().unwrap();
    assert_eq!(Some(a), up_address(&sim.events[0].1));

    // A configured interval (RFC 6081 §5.1.1).
    let mut config = Config::new(ServerAddress::Ipv4(PRIMARY));
    config.refresh_interval = Duration::from_secs(15);
    let mut sim = Sim::new(Client::new(config, key(), Instant::ZERO).unwrap());
    sim.run_until(secs(50));
    assert_eq!(sim.rs_times(PRIMARY), [0, 15, 30, 45].map(secs));
}

#[test]
fn new_mapping_gives_new_address() {
    let mut sim = Sim::new(client());
    sim.run_until(secs(10));
    let first = sim.client.address().unwrap();
    sim.take_events();
    // The NAT rebinds: the server now sees another port.
    sim.server.primary = Some(OTHER_PORT);
    sim.server.secondary = Some(OTHER_PORT);
    sim.run_until(secs(31));
    let events = sim.take_events();
    assert_eq!(events.len(), 2, "{events:?}");
    let second = up_address(&events[0]).expect("a new Up");
    assert_eq!(sim.client.address(), Some(second));
    assert_eq!(second.mapped_port, OTHER_PORT.port);
    assert_eq!(second.server, PRIMARY);
    assert_ne!(second.flags, first.flags, "new random bits");
    assert_eq!(second.flags.0 & !Flags::RANDOM_MASK, 0);
    assert_eq!(events[1], Event::NatBehaviour(NatKind::SameMapping), "probed again");
    assert_eq!(sim.client.stats().mapping_changes, 1);
    // Back to the first mapping: yet another address (the generation moved on).
    sim.server.primary = Some(MAPPED);
    sim.server.secondary = Some(MAPPED);
    sim.run_until(secs(61));
    let third = up_address(&sim.take_events()[0]).unwrap();
    assert_eq!((third.mapped_port, third.mapped_addr), (MAPPED.port, MAPPED.addr));
    assert_ne!(third.flags, first.flags);
    // An MTU change alone gives an Up with the same address.
    sim.server.mtu = 1400;
    sim.run_until(secs(91));
    assert_eq!(sim.take_events(), [Event::Up { address: third.to_ipv6(), mtu: 1400 }]);
}

#[test]
fn solicit_now_finds_a_new_mapping_at_once() {
    let mut sim = Sim::new(client());
    sim.run_until(secs(10));
    let first = sim.client.address().unwrap();
    sim.take_events();
    // The network changed: the NAT now maps the client to another port. Without a
    // prompt, the client would learn it at the refresh, at 30 s.
    sim.server.primary = Some(OTHER_PORT);
    sim.server.secondary = Some(OTHER_PORT);
    sim.client.solicit_now(secs(10));
    sim.run_until(secs(11));
    assert_eq!(sim.rs_times(PRIMARY), [Instant::ZERO, secs(10)]);
    let events = sim.take_events();
    let second = up_address(&events[0]).expect("a new Up at once");
    assert_eq!(second.mapped_port, OTHER_PORT.port);
    assert_ne!(second, first);
    assert_eq!(sim.events[..], []);
    // The next refresh counts from the prompted RS.
    sim.run_until(secs(41));
    assert_eq!(sim.rs_times(PRIMARY), [Instant::ZERO, secs(10), secs(40)]);
    // An RS waiting for its answer is not doubled.
    let mut c = client();
    let mut buf = [0u8; 100];
    assert!(c.poll_transmit(Instant::ZERO, &mut buf).is_some());
    c.solicit_now(ms(1));
    assert!(c.poll_transmit(ms(1), &mut buf).is_none());
    // Offline: the restart delay ends at once.
    let mut sim = Sim::new(client());
    sim.server.primary = None;
    sim.run_until(secs(20));
    assert_eq!(sim.client.state(), State::Offline);
    sim.server.primary = Some(MAPPED);
    sim.client.solicit_now(secs(20));
    sim.run_until(secs(21));
    assert_eq!(sim.client.state(), State::Qualified);
    assert_eq!(sim.rs_times(PRIMARY).last(), Some(&secs(20)));
}

#[test]
fn lost_then_regained() {
    let mut sim = Sim::new(client());
    sim.run_until(secs(10));
    let a = sim.client.address().unwrap();
    sim.take_events();
    sim.server.primary = None;
    sim.run_until(secs(41));
    assert_eq!(sim.client.state(), State::Qualified, "still up until the third timeout");
    sim.run_until(secs(42));
    assert_eq!(sim.take_events(), [Event::Down, Event::ServerUnreachable { server: PRIMARY }]);
    assert_eq!(sim.events.len(), 0);
    assert_eq!(sim.client.state(), State::Offline);
    assert_eq!(sim.client.address(), None);
    assert_eq!(sim.rs_times(PRIMARY), [0, 30, 34, 38].map(secs));
    sim.server.primary = Some(MAPPED);
    sim.run_until(secs(139));
    assert_eq!(sim.rs_times(PRIMARY).last(), Some(&secs(138)), "100 s after the last RS");
    let events = sim.take_events();
    assert_eq!(events[0], Event::Up { address: a.to_ipv6(), mtu: 1280 }, "same mapping, same address");
    assert_eq!(events[1], Event::NatBehaviour(NatKind::SameMapping));
    let st = sim.client.stats();
    assert_eq!((st.up, st.down), (2, 1));
}

#[test]
fn secondary_address_probe() {
    // Same mapping from both addresses.
    let mut sim = Sim::new(client());
    sim.run_until(secs(1));
    assert_eq!(sim.client.nat_kind(), Some(NatKind::SameMapping));
    // Symmetric NAT: the secondary address sees another port. Still qualified, with the
    // primary's mapping.
    let mut sim = Sim::new(client());
    sim.server.secondary = Some(OTHER_PORT);
    sim.run_until(secs(1));
    assert!(matches!(sim.events()[..], [Event::Up { .. }, Event::NatBehaviour(NatKind::Symmetric)]));
    assert_eq!(sim.client.address().unwrap().mapped_port, MAPPED.port);
    assert_eq!(sim.client.state(), State::Qualified);
    // The secondary address never answers: 3 tries, then unknown; still qualified.
    let mut sim = Sim::new(client());
    sim.server.secondary = None;
    sim.run_until(secs(20));
    assert_eq!(sim.rs_times(SECONDARY), [ms(20), ms(4020), ms(8020)]);
    assert!(matches!(sim.events()[..], [Event::Up { .. }, Event::NatBehaviour(NatKind::Unknown)]));
    assert_eq!(sim.events[1].0, ms(12020));
    assert_eq!(sim.client.state(), State::Qualified);
    // A configured secondary address.
    let mut config = Config::new(ServerAddress::Ipv4(PRIMARY));
    config.secondary = Some(Ipv4Addr::new(192, 0, 2, 9));
    let mut sim = Sim::new(Client::new(config, key(), Instant::ZERO).unwrap());
    sim.run_until(secs(1));
    assert_eq!(sim.rs_times(Ipv4Addr::new(192, 0, 2, 9)), [ms(20)]);
}

#[test]
fn clock_jump_resynchronises() {
    let mut sim = Sim::new(client());
    sim.run_until(secs(10));
    // Suspended for a long while: one RS at once, then the usual rhythm from there.
    sim.jump_to(secs(1000));
    assert_eq!(sim.rs_times(PRIMARY), [secs(0), secs(1000)]);
    sim.run_until(secs(1065));
    assert_eq!(sim.rs_times(PRIMARY), [0, 1000, 1030, 1060].map(secs));
    assert_eq!(sim.client.state(), State::Qualified);
    // Suspended while an RS waits for its answer: one timeout, one RS, no burst.
    sim.server.primary = None;
    sim.run_until(secs(1091));
    sim.server.primary = Some(MAPPED);
    sim.jump_to(secs(2000));
    assert_eq!(sim.rs_times(PRIMARY), [0, 1000, 1030, 1060, 1090, 2000].map(secs));
    assert_eq!(sim.client.stats().timeouts, 1);
    sim.run_until(secs(2031));
    assert_eq!(sim.rs_times(PRIMARY), [0, 1000, 1030, 1060, 1090, 2000, 2030].map(secs));
    assert_eq!(sim.client.state(), State::Qualified);
    // While offline too: a late restart starts at once.
    let mut sim = Sim::new(client());
    sim.server.primary = None;
    sim.run_until(secs(13));
    assert_eq!(sim.client.state(), State::Offline);
    sim.jump_to(secs(5000));
    assert_eq!(sim.rs_times(PRIMARY), [0, 4, 8, 5000].map(secs));
    // A jump across the whole reply window and restart delay in one call.
    let mut sim = Sim::new(client());
    sim.server.primary = None;
    sim.run_until(secs(9));
    sim.jump_to(secs(9000));
    assert_eq!(sim.rs_times(PRIMARY), [0, 4, 8, 9000].map(secs));
}

#[test]
fn host_name_resolution() {
    let mut c = Client::new(Config::new(ServerAddress::HostName), key(), Instant::ZERO).unwrap();
    assert_eq!(c.poll_event(), Some(Event::ResolveServer));
    assert_eq!(c.state(), State::Resolving);
    assert_eq!(c.poll_timeout(), None);
    let mut buf = [0u8; 100];
    assert!(c.poll_transmit(secs(1), &mut buf).is_none());
    // The name does not resolve: ask again 100 s later.
    c.resolution_failed(secs(1));
    assert_eq!(c.state(), State::Offline);
    assert_eq!(c.poll_timeout(), Some(secs(101)));
    c.handle_timeout(secs(101));
    assert_eq!(c.poll_event(), Some(Event::ResolveServer));
    // A private address counts as a failure.
    assert_eq!(
        c.set_server(secs(102), Ipv4Addr::new(10, 0, 0, 1), None),
        Err(ServerNotGlobal(Ipv4Addr::new(10, 0, 0, 1)))
    );
    // So does a secondary address outside the global unicast space, given or derived
    // (the one after 223.255.255.255 is multicast): no RS may go to a broadcast address.
    assert_eq!(
        c.set_server(secs(102), PRIMARY, Some(Ipv4Addr::BROADCAST)),
        Err(ServerNotGlobal(Ipv4Addr::BROADCAST))
    );
    assert_eq!(
        c.set_server(secs(102), Ipv4Addr::new(223, 255, 255, 255), None),
        Err(ServerNotGlobal(Ipv4Addr::new(224, 0, 0, 0)))
    );
    assert_eq!(c.state(), State::Offline);
    c.handle_timeout(secs(202));
    assert_eq!(c.poll_event(), Some(Event::ResolveServer));
    c.set_server(secs(203), PRIMARY, None).unwrap();
    assert_eq!(c.server(), Some((PRIMARY, SECONDARY)));
    assert_eq!(c.state(), State::Qualifying);

    // Qualifies; after a loss, the name is resolved again before the next start.
    let mut sim = Sim::new(c);
    sim.now = secs(203);
    sim.flush();
    sim.run_until(secs(210));
    assert!(matches!(sim.take_events()[..], [Event::Up { .. }, Event::NatBehaviour(_)]));
    sim.server.primary = None;
    sim.run_until(secs(400));
    let failed = Event::ServerUnreachable { server: PRIMARY };
    assert_eq!(sim.take_events(), [Event::Down, failed, Event::ResolveServer]);
    assert_eq!(sim.client.state(), State::Resolving);
    // Resolved to a new address: qualifies with it.
    let new_primary = Ipv4Addr::new(198, 51, 100, 1);
    sim.client.set_server(sim.now, new_primary, Some(Ipv4Addr::new(198, 51, 100, 2))).unwrap();
    sim.flush();
    assert_eq!(sim.sent.last().map(|s| s.1), Some(SocketAddrV4::new(new_primary, 3544)));
}

#[test]
fn set_server_restarts_only_on_change() {
    let mut sim = Sim::new(client());
    sim.run_until(secs(10));
    let n = sim.sent.len();
    sim.client.set_server(sim.now, PRIMARY, Some(SECONDARY)).unwrap();
    sim.flush();
    assert_eq!(sim.sent.len(), n, "same addresses: nothing changes");
    assert_eq!(
        Client::new(Config::new(ServerAddress::Ipv4(Ipv4Addr::new(127, 0, 0, 1))), key(), Instant::ZERO)
            .unwrap_err(),
        ServerNotGlobal(Ipv4Addr::new(127, 0, 0, 1))
    );
}

#[test]
fn random_flags_come_from_the_key() {
    let run = |k: TokenKey| {
        let mut sim =
            Sim::new(Client::new(Config::new(ServerAddress::Ipv4(PRIMARY)), k, Instant::ZERO).unwrap());
        sim.run_until(secs(1));
        sim.client.address().unwrap()
    };
    let a = run(TokenKey::new([1; 32]));
    assert_eq!(a, run(TokenKey::new([1; 32])), "deterministic for one key");
    let others: Vec<_> = (2..6u8).map(|b| run(TokenKey::new([b; 32])).flags).collect();
    assert!(others.iter().any(|f| *f != a.flags), "another key, other flags");
}

#[test]
fn sanitised_config() {
    let mut config = Config::new(ServerAddress::Ipv4(PRIMARY));
    config.refresh_interval = Duration::ZERO;
    config.reply_timeout = Duration::ZERO;
    config.restart_delay = Duration::ZERO;
    config.tries = 0;
    let c = Client::new(config, key(), Instant::ZERO).unwrap();
    assert_eq!(c.config().reply_timeout, MIN_DELAY);
    assert_eq!(c.config().tries, 1);
    let mut sim = Sim::new(c);
    sim.server.primary = None;
    sim.run_until(secs(1));
    // tries 1: each RS times out after 100 ms, and the restart delay (100 ms after it)
    // is over at the same instant.
    assert_eq!(sim.sent.len(), 11);
}

/// A datagram for the property test: random bytes, or an RA-shaped datagram with random
/// fields (which can never carry the right nonce).
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    let ra = (
        any::<Option<[u8; 8]>>(),
        any::<u8>(),
        any::<Option<(u32, u16)>>(),
        any::<u8>(),
        prop::collection::vec((any::<u8>(), any::<u128>()), 0..3),
        prop::collection::vec(any::<u32>(), 0..2),
        any::<bool>(),
    )
        .prop_map(|(nonce, confirmation, origin, code, prefixes, mtus, bad)| {
            Ra {
                nonce,
                confirmation: confirmation % 2,
                origin: origin.map(|(a, port)| OriginIndication { addr: a.into(), port }),
                src: server_link_local(PRIMARY),
                dst: LINK_LOCAL_RESTRICTED,
                code: code % 2,
                prefixes: prefixes.into_iter().map(|(l, p)| (l, Ipv6Addr::from(p))).collect(),
                mtus,
                bad_checksum: bad,
                trailer: vec![],
            }
            .build()
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..120), ra]
}

fn source() -> impl Strategy<Value = SocketAddrV4> {
    prop_oneof![
        Just(SocketAddrV4::new(PRIMARY, 3544)),
        Just(SocketAddrV4::new(SECONDARY, 3544)),
        any::<(u32, u16)>().prop_map(|(a, p)| SocketAddrV4::new(a.into(), p)),
    ]
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_qualify(
        inputs in prop::collection::vec((0u64..20_000_000, source(), datagram()), 0..40),
        host_name in any::<bool>(),
    ) {
        let server = if host_name { ServerAddress::HostName } else { ServerAddress::Ipv4(PRIMARY) };
        let mut c = Client::new(Config::new(server), key(), Instant::ZERO).unwrap();
        if host_name {
            c.set_server(Instant::ZERO, PRIMARY, None).unwrap();
        }
        let mut buf = [0u8; 1500];
        let mut now = Instant::ZERO;
        let mut inputs = inputs;
        inputs.sort_by_key(|i| i.0);
        for (dt, from, bytes) in inputs {
            now = now.max(Instant::from_micros(dt * 10));
            c.handle_timeout(now);
            while c.poll_transmit(now, &mut buf).is_some() {}
            if let Ok(p) = TeredoPacket::parse(&bytes) {
                c.handle_datagram(now, from, &p);
            }
            while let Some(e) = c.poll_event() {
                prop_assert!(!matches!(e, Event::Up { .. }), "{e:?}");
            }
            prop_assert!(c.address().is_none());
            prop_assert_eq!(c.stats().ra_accepted, 0);
        }
    }
}

proptest! {
    /// Answers carrying the right nonce but random contents: the client never panics, and
    /// an address it adopts always has the primary server, a global mapping and RFC 5991
    /// flags.
    #[test]
    fn answers_with_random_contents(
        confirmation in 0u8..2,
        origin in any::<Option<(u32, u16)>>(),
        code in 0u8..2,
        prefixes in prop::collection::vec((prop_oneof![Just(64u8), any::<u8>()], prop_oneof![
            Just(u128::from(PREFIX)),
            Just(u128::from_be_bytes(Ipv6Addr::new(0x3ffe, 0x831f, 0xc000, 0x201, 0, 0, 0, 0).octets())),
            any::<u128>(),
        ]), 0..3),
        mtus in prop::collection::vec(prop_oneof![Just(1280u32), 1000u32..70000, any::<u32>()], 0..2),
        bad_checksum in any::<bool>(),
        trailer in prop::collection::vec(any::<u8>(), 0..8),
        from_secondary in any::<bool>(),
    ) {
        let mut c = client();
        let mut buf = [0u8; 100];
        let t = c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
        let mut ra = Ra::answering(&buf[..t.len], MAPPED);
        ra.confirmation = confirmation;
        ra.origin = origin.map(|(a, port)| OriginIndication { addr: a.into(), port });
        ra.code = code;
        ra.prefixes = prefixes.into_iter().map(|(l, p)| (l, Ipv6Addr::from(p))).collect();
        ra.mtus = mtus;
        ra.bad_checksum = bad_checksum;
        ra.trailer = trailer;
        let bytes = ra.build();
        let from = SocketAddrV4::new(if from_secondary { SECONDARY } else { PRIMARY }, 3544);
        let p = TeredoPacket::parse(&bytes).unwrap();
        prop_assert!(c.handle_datagram(ms(5), from, &p));
        if let Some(a) = c.address() {
            prop_assert_eq!(a.prefix, TEREDO_PREFIX);
            prop_assert_eq!(a.server, PRIMARY);
            prop_assert!(is_global_unicast(a.mapped_addr));
            prop_assert_eq!(a.flags.0 & !Flags::RANDOM_MASK, 0);
            prop_assert!(c.mtu().is_some_and(|m| m >= 1280));
            let up = matches!(c.poll_event(), Some(Event::Up { .. }));
            prop_assert!(up);
        } else {
            prop_assert_eq!(c.poll_event(), None);
            prop_assert_eq!(c.stats().ra_rejected, 1);
        }
    }
}

fn upnp_client(wait: Duration, local_port: u16) -> Client {
    let mut c = Config::new(ServerAddress::Ipv4(PRIMARY));
    c.upnp_wait = wait;
    c.local_port = local_port;
    Client::new(c, key(), Instant::ZERO).unwrap()
}

/// RFC 6081 §5.3.3: the UPnP mapping comes before qualification. The first RS waits for
/// it, at most `upnp_wait` (bounded by MAX_UPNP_WAIT), and goes at once when it comes.
#[test]
fn the_first_rs_waits_for_the_upnp_mapping_within_a_bound() {
    let mut sim = Sim::new(upnp_client(Duration::from_secs(10), 0));
    sim.run_until(ms(100));
    assert!(sim.sent.is_empty(), "held for UPnP");
    sim.client.set_upnp(ms(100), Some(SocketAddrV4::new(MAPPED.addr, MAPPED.port)));
    sim.run_until(secs(1));
    assert_eq!(sim.rs_times(PRIMARY), [ms(100)]);
    // Nothing comes: the RS goes after the bound.
    let mut sim = Sim::new(upnp_client(Duration::from_secs(10), 0));
    sim.run_until(secs(5));
    assert_eq!(sim.rs_times(PRIMARY), [Instant::ZERO + MAX_UPNP_WAIT]);
    // A SIGHUP during the wait does not cut it short; set_server neither.
    let mut sim = Sim::new(upnp_client(Duration::from_secs(1), 0));
    sim.client.solicit_now(ms(10));
    sim.client.set_server(ms(10), Ipv4Addr::new(192, 0, 2, 9), None).unwrap();
    sim.run_until(ms(500));
    assert!(sim.sent.is_empty());
}

/// §5.3.3 (single NAT: the UPnP mapping is the qualification's) and §5.4.3 (the origin
/// port is the local port: port-preserving, unless the IGD mapped it so).
#[test]
fn findings_follow_the_mappings() {
    let mut sim = Sim::new(upnp_client(Duration::ZERO, MAPPED.port));
    sim.server.secondary = Some(OTHER_PORT);
    sim.run_until(secs(1));
    let f = sim.client.findings();
    assert_eq!(f.kind, Some(NatKind::Symmetric));
    assert!(f.port_preserving && f.port_preserving_symmetric() && !f.sequential());
    assert_eq!(f.mapping, Some(SocketAddrV4::new(MAPPED.addr, MAPPED.port)));
    // The same mapping from the IGD: a single UPnP symmetric NAT, not port-preserving.
    sim.client.set_upnp(secs(1), Some(SocketAddrV4::new(MAPPED.addr, MAPPED.port)));
    let f = sim.client.findings();
    assert!(f.upnp_symmetric() && !f.port_preserving && f.upnp_mapping().is_none());
    // Another local port: not port-preserving, so sequential is assumed.
    let mut sim = Sim::new(upnp_client(Duration::ZERO, 1234));
    sim.server.secondary = Some(OTHER_PORT);
    sim.run_until(secs(1));
    assert!(sim.client.findings().sequential());
    assert_eq!(client().findings().mapping, None);
}
