//! The client endpoint: one Teredo client's qualification ([`crate::client`], RFC 4380
//! §5.2.1, §5.2.5) and data path ([`crate::tunnel`], §5.2.3–§5.2.9) held together, as
//! quinn-proto's `Endpoint` holds its connections.
//!
//! The endpoint routes each datagram itself and parses it once: a qualification message
//! (an RA, or anything with an authentication header) goes to the qualification
//! procedure, everything else to the data path. It applies the procedure's verdicts to
//! the data path itself (qualified with an address: [`Tunnel::set_qualified`]; lost:
//! [`Tunnel::reset`]), so that the I/O layer only configures the interface. A relay has no
//! endpoint: it is a [`Tunnel`] of [`Role::Relay`], with no server and no qualification.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::client::{self, Client, Event, ServerNotGlobal};
use crate::nonce::TokenKey;
use crate::peers::AllocationFailed;
use crate::status::{self, ClientStatus, MAX_PEER_LIST};
use crate::time::Instant;
use crate::tunnel::{Destination, Limits, Role, Transmit, TunVerdict, Tunnel, UdpVerdict};
use crate::wire::TeredoPacket;

/// How many events wait for [`ClientEndpoint::poll_event`]; older ones are dropped when
/// the caller does not drain them (the state itself is always in the snapshot).
const EVENT_CAPACITY: usize = 16;

/// Why an endpoint cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// The configured server is not global unicast.
    #[error(transparent)]
    Server(#[from] ServerNotGlobal),
    /// The list of peers could not be allocated.
    #[error(transparent)]
    Allocation(#[from] AllocationFailed),
}

/// A Teredo client: qualification and data path (see the module comment).
#[derive(Debug)]
pub struct ClientEndpoint {
    client: Client,
    tunnel: Tunnel,
    events: VecDeque<Event>,
}

impl ClientEndpoint {
    /// A client that starts qualifying at `now` with `config`; `key` is the process's
    /// [`TokenKey`], `limits` bound its list of peers and outputs.
    pub fn new(
        config: client::Config,
        key: TokenKey,
        limits: Limits,
        now: Instant,
    ) -> Result<Self, EndpointError> {
        let tunnel = Tunnel::new(Role::Client, key.clone(), limits, now)?;
        let client = Client::new(config, key, now)?;
        let mut e = Self { client, tunnel, events: VecDeque::new() };
        e.apply(now);
        Ok(e)
    }

    /// Decides what to do with a datagram received on the Teredo socket from `from`: a
    /// qualification message is taken here ([`UdpVerdict::Consumed`]); anything else is the
    /// data path's ([`Tunnel::handle_datagram`]).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, datagram: &[u8]) -> UdpVerdict {
        let Ok(packet) = TeredoPacket::parse(datagram) else {
            return self.tunnel.drop_malformed();
        };
        if self.client.handle_datagram(now, from, &packet) {
            self.apply(now);
            return UdpVerdict::Consumed;
        }
        self.tunnel.handle_packet(now, from, datagram.len(), &packet)
    }

    /// A datagram received on the random socket of local port `port`
    /// ([`Tunnel::handle_random_datagram`]): never a qualification message, the echo tests'
    /// RAs are the data path's.
    pub fn handle_random_datagram(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddrV4,
        datagram: &[u8],
    ) -> UdpVerdict {
        self.tunnel.handle_random_datagram(now, port, from, datagram)
    }

    /// The random sockets' local ports ([`Tunnel::random_ports`]).
    pub fn random_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.tunnel.random_ports()
    }

    /// Changes whenever [`ClientEndpoint::random_ports`] does.
    pub fn random_ports_generation(&self) -> u64 {
        self.tunnel.random_ports_generation()
    }

    /// The random port `port` could not be bound ([`Tunnel::random_port_unavailable`]).
    pub fn random_port_unavailable(&mut self, port: u16) {
        self.tunnel.random_port_unavailable(port);
    }

    /// The mapping the NAT's UPnP IGD gave, or none ([`Client::set_upnp`]).
    pub fn set_upnp(&mut self, now: Instant, mapping: Option<SocketAddrV4>) {
        self.client.set_upnp(now, mapping);
        self.apply(now);
    }

    /// What qualification found about the NAT ([`Client::findings`]).
    pub fn findings(&self) -> client::NatFindings {
        self.client.findings()
    }

    /// Decides what to do with an IPv6 packet read from the TUN ([`Tunnel::handle_tun_packet`]).
    /// When it makes the tunnel test a silent native peer again ([`crate::tunnel::RETEST_AFTER`]),
    /// the server is solicited at once too ([`Client::solicit_now`]): the silence may be
    /// our NAT's new mapping, which the server's answer shows within a round trip instead
    /// of at the next refresh (up to 30 s later). At most once per silent peer per 3 s.
    #[inline]
    pub fn handle_tun_packet(&mut self, now: Instant, packet: &[u8]) -> TunVerdict {
        let retests = self.tunnel.stats().echo_retests;
        let v = self.tunnel.handle_tun_packet(now, packet);
        if self.tunnel.stats().echo_retests != retests {
            self.solicit_now(now);
        }
        v
    }

    /// [`ClientEndpoint::handle_tun_packet`] from a packet's headers alone
    /// ([`Tunnel::handle_tun_headers`]): `None`, with no effect, when the whole packet is
    /// needed.
    #[inline]
    pub fn handle_tun_headers(&mut self, now: Instant, headers: &[u8]) -> Option<TunVerdict> {
        let retests = self.tunnel.stats().echo_retests;
        let v = self.tunnel.handle_tun_headers(now, headers);
        if self.tunnel.stats().echo_retests != retests {
            self.solicit_now(now);
        }
        v
    }

    /// Runs the timers of both halves that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.client.handle_timeout(now);
        self.tunnel.handle_timeout(now);
        self.apply(now);
    }

    /// The next instant at which [`ClientEndpoint::handle_timeout`] or
    /// [`ClientEndpoint::poll_transmit`] has work (possibly in the past).
    pub fn poll_timeout(&self) -> Instant {
        let t = self.tunnel.poll_timeout();
        self.client.poll_timeout().map_or(t, |c| c.min(t))
    }

    /// Whether [`ClientEndpoint::poll_transmit`] has something released by the last
    /// datagram (see [`Tunnel::has_output`]).
    pub fn has_output(&self) -> bool {
        self.tunnel.has_output()
    }

    /// Writes the next output into `buf`: a router solicitation first, then what the data
    /// path produced. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(t) = self.client.poll_transmit(now, buf) {
            return Some(Transmit { dest: Destination::Udp(t.dst), len: t.len });
        }
        self.tunnel.poll_transmit(now, buf)
    }

    /// The next event for the I/O layer, oldest first: [`Event::Up`] and [`Event::Down`]
    /// (configure the interface; the data path already follows), [`Event::NatBehaviour`],
    /// [`Event::ResolveServer`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The server's addresses, as [`Client::set_server`]: the answer to
    /// [`Event::ResolveServer`], or a new server after a reload.
    pub fn set_server(
        &mut self,
        now: Instant,
        primary: Ipv4Addr,
        secondary: Option<Ipv4Addr>,
    ) -> Result<(), ServerNotGlobal> {
        let r = self.client.set_server(now, primary, secondary);
        self.apply(now);
        r
    }

    /// The server to solicit when the restart delay ends ([`Client::set_server_later`]).
    pub fn set_server_later(
        &mut self,
        now: Instant,
        primary: Ipv4Addr,
        secondary: Option<Ipv4Addr>,
    ) -> Result<(), ServerNotGlobal> {
        let r = self.client.set_server_later(now, primary, secondary);
        self.apply(now);
        r
    }

    /// The server's name could not be resolved ([`Client::resolution_failed`]).
    pub fn resolution_failed(&mut self, now: Instant) {
        self.client.resolution_failed(now);
        self.apply(now);
    }

    /// Solicits the server at once ([`Client::solicit_now`]).
    pub fn solicit_now(&mut self, now: Instant) {
        self.client.solicit_now(now);
        self.apply(now);
    }

    /// Changes the most peers within the table's allocation ([`Tunnel::set_max_peers`]).
    pub fn set_max_peers(&mut self, max_peers: usize) -> bool {
        self.tunnel.set_max_peers(max_peers)
    }

    /// A datagram received on the Teredo IPv4 Discovery Address ([`Tunnel::handle_discovery`]).
    pub fn handle_discovery(&mut self, now: Instant, from: SocketAddrV4, datagram: &[u8]) -> UdpVerdict {
        self.tunnel.handle_discovery(now, from, datagram)
    }

    /// Turns local discovery on or off ([`Tunnel::set_local_discovery`]).
    pub fn set_local_discovery(&mut self, now: Instant, on: bool) {
        self.tunnel.set_local_discovery(now, on);
    }

    /// Qualifies with these credentials (secure qualification, [`Client::set_credentials`]).
    pub fn set_credentials(&mut self, credentials: Option<crate::secure::Credentials>) {
        self.client.set_credentials(credentials);
    }

    /// Sets the local IPv4 address and port advertised for hairpinning
    /// ([`Tunnel::set_local_address`]).
    pub fn set_local_address(&mut self, local: Option<SocketAddrV4>) {
        self.tunnel.set_local_address(local);
    }

    /// The server in use: its primary and secondary addresses.
    pub fn server(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        self.client.server()
    }

    /// The data path.
    pub fn tunnel(&self) -> &Tunnel {
        &self.tunnel
    }

    /// The snapshot at `now`, with up to [`MAX_PEER_LIST`] peers listed when `peers`.
    pub fn status(&self, now: Instant, peers: bool) -> ClientStatus {
        let c = &self.client;
        let address = c.address();
        let mut counters = c.stats().counters();
        counters.extend(self.tunnel.counters());
        ClientStatus {
            state: c.state(),
            address: address.map(|a| a.to_ipv6()),
            server: c.server(),
            mapped: address.map(|a| SocketAddrV4::new(a.mapped_addr, a.mapped_port)),
            nat: c.nat_kind(),
            findings: c.findings(),
            random_ports: self.tunnel.random_ports().count(),
            mtu: c.mtu(),
            last_interaction: c.last_interaction().map(|t| now.saturating_since(t)),
            peers: self.tunnel.peers().len(),
            peer_list: if peers {
                status::list_peers(self.tunnel.peers(), now, MAX_PEER_LIST)
            } else {
                Vec::new()
            },
            counters,
        }
    }

    /// Takes the procedure's events: applies qualification and loss to the data path, and
    /// keeps them for the I/O layer.
    fn apply(&mut self, now: Instant) {
        while let Some(e) = self.client.poll_event() {
            match e {
                Event::Up { address, .. } => {
                    if let Some((server, _)) = self.client.server() {
                        self.tunnel.set_qualified(now, address, server);
                    }
                }
                Event::Down => self.tunnel.reset(now),
                Event::NatBehaviour(_) | Event::ResolveServer | Event::ServerUnreachable { .. } => {}
            }
            if self.events.len() >= EVENT_CAPACITY {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
        // RFC 6081 §5.3–§5.5: the data path acts on what qualification found.
        if let Some((_, secondary)) = self.client.server() {
            self.tunnel.set_nat(self.client.findings(), secondary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{TEREDO_PORT, TEREDO_PREFIX, TeredoAddress};
    use crate::client::{ServerAddress, State};
    use crate::server::{Action, Local, Server, ServerConfig};

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const SERVER2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    /// The client's mapping as the server sees it.
    const MAPPED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 40_000);

    fn server() -> Server {
        Server::new(ServerConfig { primary: SERVER, secondary: SERVER2, prefix: TEREDO_PREFIX, mtu: 1280 })
    }

    /// Everything the endpoint sends at `now`; the server answers each RS, and the
    /// answers are handed back. Returns the datagrams' destinations.
    fn exchange(e: &mut ClientEndpoint, s: &Server, now: Instant) -> Vec<SocketAddrV4> {
        let mut sent = Vec::new();
        let mut buf = [0u8; 1500];
        let mut answers = Vec::new();
        while let Some(t) = e.poll_transmit(now, &mut buf) {
            let Destination::Udp(to) = t.dest else { continue };
            sent.push(to);
            let local = if *to.ip() == SERVER { Local::Primary } else { Local::Secondary };
            let mut out = [0u8; 1500];
            if let Action::SendUdp { from, len, .. } =
                s.handle_datagram(local, MAPPED, &buf[..t.len], &mut out)
            {
                let addr = if from == Local::Primary { SERVER } else { SERVER2 };
                answers.push((SocketAddrV4::new(addr, TEREDO_PORT), out[..len].to_vec()));
            }
        }
        for (from, ra) in answers {
            assert_eq!(e.handle_datagram(now, from, &ra), UdpVerdict::Consumed);
        }
        sent
    }

    #[test]
    fn qualification_reaches_the_data_path_and_the_snapshot() {
        let key = TokenKey::new([3; 32]);
        let config = client::Config::new(ServerAddress::Ipv4(SERVER));
        let mut e = ClientEndpoint::new(config, key, Limits::default(), Instant::ZERO).unwrap();
        assert_eq!(e.status(Instant::ZERO, false).state, State::Qualifying);
        assert_eq!(e.tunnel().address(), None);
        let s = server();
        let now = Instant::from_millis(1);
        let sent = exchange(&mut e, &s, now);
        assert_eq!(sent, [SocketAddrV4::new(SERVER, TEREDO_PORT)]);
        let Some(Event::Up { address, mtu }) = e.poll_event() else { panic!("no Up event") };
        assert_eq!(mtu, 1280);
        // Applied to the data path by the endpoint itself.
        assert_eq!(e.tunnel().address(), Some(address));
        let t = TeredoAddress::from_ipv6(&address).unwrap();
        assert_eq!((t.server, t.mapped_addr, t.mapped_port), (SERVER, *MAPPED.ip(), MAPPED.port()));
        // The secondary-address probe follows, and finds the same mapping.
        exchange(&mut e, &s, Instant::from_millis(2));
        let st = e.status(Instant::from_millis(3), true);
        assert_eq!(st.state, State::Qualified);
        assert_eq!(st.address, Some(address));
        assert_eq!(st.mapped, Some(MAPPED));
        assert_eq!(st.server, Some((SERVER, SERVER2)));
        assert_eq!(st.nat, Some(client::NatKind::SameMapping));
        let get = |n: &str| status::counter(&st.counters, n);
        assert_eq!(get("rs_sent"), Some(2));
        assert_eq!(get("ra_accepted"), Some(2));
        assert_eq!(get("dropped"), Some(0));
        assert!(st.peer_list.is_empty());
    }

    #[test]
    fn malformed_datagrams_are_counted_by_the_data_path() {
        let config = client::Config::new(ServerAddress::Ipv4(SERVER));
        let mut e =
            ClientEndpoint::new(config, TokenKey::new([1; 32]), Limits::default(), Instant::ZERO).unwrap();
        let from = SocketAddrV4::new(SERVER, TEREDO_PORT);
        assert!(matches!(e.handle_datagram(Instant::ZERO, from, &[0x60, 0]), UdpVerdict::Drop(_)));
        assert_eq!(e.tunnel().stats().drops.total(), 1);
    }
}
