//! The Teredo client's qualification and maintenance procedures as a sans-IO state
//! machine: RFC 4380 §5.2 (client variables), §5.2.1 (qualification), §5.2.2 (the RS
//! nonce), §5.2.5 (maintenance), as updated by RFC 5991 §3 (random address flags, no cone
//! probing) and RFC 6081 §5.1.1 (configurable refresh interval).
//!
//! The client solicits its server with router solicitations (RS) and learns its mapped
//! address and port from the origin indication of the router advertisements (RA) that
//! answer; from them it builds its Teredo address. It is driven from outside, like
//! quinn-proto or smoltcp:
//!
//! - input: [`Client::handle_datagram`] for every parsed datagram received on the Teredo
//!   socket (it returns `true` for the ones that belong to qualification),
//!   [`Client::handle_timeout`] when [`Client::poll_timeout`] is reached, and
//!   [`Client::set_server`] / [`Client::resolution_failed`] to answer
//!   [`Event::ResolveServer`], and [`Client::solicit_now`] when the network changed;
//! - output: [`Client::poll_transmit`] (an RS to send), [`Client::poll_event`] (qualified,
//!   lost, NAT behaviour, resolve the server) and [`Client::poll_timeout`].
//!
//! # Timers (Miredo's, RFC 4380 §5.2.1 and §5.2.5)
//!
//! - An RS not answered within the reply timeout (4 s) is sent again; after 3 unanswered
//!   RSs in a row the server is unreachable: the client goes down if it was up and waits
//!   the restart delay (100 s after the last RS) before starting over.
//! - Once qualified, an RS every refresh interval (30 s by default, configurable per
//!   RFC 6081 §5.1.1) after the previous RS; its RA may report a new mapping, which gives a
//!   new address.
//! - A deadline found already past (a clock jump, a suspended machine) is not caught up
//!   on: the RS goes out at the current time and the following deadlines count from it.
//!
//! # The secondary server address (RFC 4380 §5.2.1)
//!
//! Unlike Miredo, after each qualification and each change of mapping the client sends one
//! more RS, to the server's secondary address, and compares the mapping that RA reports
//! with the primary's: the same means the NAT keeps one mapping for every destination
//! (cone or restricted), a different one means a symmetric NAT. The finding is reported as
//! [`Event::NatBehaviour`]; it does not change qualification, which always uses the
//! primary's mapping (RFC 4380 would declare a symmetric-NAT client unqualified; RFC 6081
//! §2.1 makes such clients work, and a relay is reachable through one anyway).
//!
//! # What RFC 6081 adds ([`NatFindings`])
//!
//! - The Port-Preserving NAT flag (§5.4.3): the primary's origin port is the local port
//!   ([`Config::local_port`]).
//! - UPnP (§5.3.3): the I/O layer asks the NAT's IGD for a mapping of the local port and
//!   gives it with [`Client::set_upnp`]. The first RS waits for it "prior to beginning the
//!   qualification procedure", at most [`Config::upnp_wait`] ([`MAX_UPNP_WAIT`]), so that
//!   a network without an IGD costs at most that once at start-up; a mapping given later
//!   is used all the same. A mapping equal to the qualification's means a single NAT.
//! - From the flags: the UPnP, port-preserving and sequential port-symmetric extensions
//!   that apply ([`NatFindings::upnp_symmetric`], [`NatFindings::port_preserving_symmetric`],
//!   [`NatFindings::sequential`]).
//!
//! # Where this differs from RFC 4380 and from Miredo
//!
//! - The refresh interval is not randomised (RFC 4380 §5.2 asks for 75–100% of it; RFC
//!   6081 §5.1.1 lets the range be the implementation's): an RS goes out every interval,
//!   whatever else came from the server, as Miredo does. No RNG is needed.
//! - A symmetric NAT does not prevent qualification (above).
//! - Only 2001::/32 and 3ffe:831f::/32 prefixes are accepted; Miredo takes any prefix
//!   outside ff00::/8.
//! - Checked, unlike Miredo: the RA's source IPv4 address and port, its ICMPv6 checksum,
//!   the RFC 6081 §5.1.2 trailer discard rule. Not checked, like Miredo: the RA's hop limit
//!   and IPv6 source.
//! - A server host name is resolved again before every new start, also when the client
//!   never qualified (Miredo does it only after a loss).

mod config;
mod events;
mod findings;
mod nat_probe;
pub(crate) mod qualification;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::address::{Flags, TEREDO_PORT, TEREDO_PREFIX, TeredoAddress, is_global_unicast};
use crate::nonce::TokenKey;
use crate::secure::Credentials;
use crate::time::Instant;
use crate::wire::{PacketKind, TeredoPacket};

pub use config::{
    Config, DEFAULT_REFRESH_INTERVAL, DEFAULT_REPLY_TIMEOUT, DEFAULT_RESTART_DELAY, DEFAULT_TRIES,
    MAX_UPNP_WAIT, MIN_DELAY, ServerAddress, ServerNotGlobal,
};
pub use events::{Event, NatKind, State, Stats, Transmit};
pub use findings::NatFindings;
use nat_probe::Probe;
pub use qualification::{RS_LEN, Rejection};

/// How many events are kept for [`Client::poll_event`]; older ones are dropped (and
/// counted) when the caller does not drain them.
const EVENT_CAPACITY: usize = 16;

/// One solicitation exchange: an RS is due, or one was sent and waits for its RA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Solicit {
    /// An RS is due at this instant (at once if it is past).
    Due(Instant),
    /// An RS with this nonce was sent at `sent`.
    Waiting { sent: Instant, nonce: [u8; 8] },
}

impl Solicit {
    fn nonce(&self) -> Option<[u8; 8]> {
        match *self {
            Self::Waiting { nonce, .. } => Some(nonce),
            Self::Due(_) => None,
        }
    }

    fn deadline(&self, timeout: Duration) -> Instant {
        match *self {
            Self::Due(at) => at,
            Self::Waiting { sent, .. } => sent + timeout,
        }
    }
}

/// The qualification procedure toward the primary address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No server address yet.
    Resolving,
    /// Qualifying or maintaining.
    Soliciting(Solicit),
    /// Unreachable server: waiting until this instant.
    Offline { until: Instant },
}

/// The server's two addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Servers {
    primary: Ipv4Addr,
    secondary: Ipv4Addr,
}

/// The current link: what the last `Up` event announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    address: TeredoAddress,
    mtu: u16,
}

/// A Teredo client's qualification and maintenance (see the module comment).
#[derive(Debug)]
pub struct Client {
    config: Config,
    key: TokenKey,
    servers: Option<Servers>,
    phase: Phase,
    /// RSs to the primary unanswered in a row.
    failures: u8,
    probe: Option<Probe>,
    /// The counter that makes every RS nonce different.
    rs_sequence: u64,
    /// The link while qualified.
    link: Option<Link>,
    /// The last address built, kept across losses so that the same mapping gives the same
    /// address (and flags) again.
    last_address: Option<TeredoAddress>,
    /// Advanced at every new address; an input of the random flags.
    generation: u64,
    nat: Option<NatKind>,
    /// The IGD's mapping (RFC 6081 §5.3.3), once [`Client::set_upnp`] gave one.
    upnp: Option<SocketAddrV4>,
    /// While waiting for the UPnP mapping: the latest instant of the first RS.
    upnp_hold: Option<Instant>,
    last_interaction: Option<Instant>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Secure qualification (RFC 4380 §5.2.2), when configured.
    credentials: Option<Credentials>,
}

impl Client {
    /// Qualifies with `credentials` from the next solicitation on (RFC 4380 §5.2.2): RSs
    /// carry the identifier and an authentication value, and only RAs that carry a valid
    /// one are accepted. `None` for plain qualification.
    pub fn set_credentials(&mut self, credentials: Option<Credentials>) {
        self.credentials = credentials;
    }

    /// A client that starts qualifying at `now` (its first RS is due at once), or that
    /// asks for its server's name to be resolved ([`Event::ResolveServer`]). `key` makes
    /// the RS nonces and the random address flags; it is the process's [`TokenKey`].
    pub fn new(config: Config, key: TokenKey, now: Instant) -> Result<Self, ServerNotGlobal> {
        let config = config.sanitised();
        let mut client = Self {
            config,
            key,
            servers: None,
            phase: Phase::Resolving,
            failures: 0,
            probe: None,
            rs_sequence: 0,
            link: None,
            last_address: None,
            generation: 0,
            nat: None,
            upnp: None,
            upnp_hold: (!config.upnp_wait.is_zero()).then(|| now + config.upnp_wait),
            last_interaction: None,
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            stats: Stats::default(),
            credentials: None,
        };
        match config.server {
            ServerAddress::Ipv4(primary) => {
                client.servers = Some(client.servers_for(primary, None)?);
                client.phase = Phase::Soliciting(Solicit::Due(client.first_rs(now)));
            }
            ServerAddress::HostName => client.push(Event::ResolveServer),
        }
        Ok(client)
    }

    /// Gives the server's addresses, normally the answer to [`Event::ResolveServer`]:
    /// `secondary` overrides the configured one (default: primary + 1). Qualification
    /// starts over at once unless these are the addresses already in use.
    ///
    /// A primary address that is not global unicast is refused; if the client was waiting
    /// for it, this counts as [`Client::resolution_failed`].
    pub fn set_server(
        &mut self,
        now: Instant,
        primary: Ipv4Addr,
        secondary: Option<Ipv4Addr>,
    ) -> Result<(), ServerNotGlobal> {
        let servers = match self.servers_for(primary, secondary) {
            Ok(s) => s,
            Err(e) => {
                self.resolution_failed(now);
                return Err(e);
            }
        };
        if self.servers == Some(servers) && self.phase != Phase::Resolving {
            return Ok(());
        }
        self.servers = Some(servers);
        self.failures = 0;
        self.probe = None;
        self.phase = Phase::Soliciting(Solicit::Due(self.first_rs(now)));
        Ok(())
    }

    /// The mapping the NAT's UPnP IGD gave (RFC 6081 §5.3.3: AddPortMapping of the local
    /// port, then GetExternalIPAddress), or `None` when there is no IGD, the IGD refused,
    /// or UPnP is off. Ends the wait of [`Config::upnp_wait`]: the first RS is due at once.
    /// A mapping given later counts as well (it is compared with the qualification's at
    /// every use, [`Client::findings`]).
    pub fn set_upnp(&mut self, now: Instant, mapping: Option<SocketAddrV4>) {
        self.upnp = mapping;
        if self.upnp_hold.take().is_some()
            && let Phase::Soliciting(Solicit::Due(at)) = self.phase
            && at > now
        {
            self.phase = Phase::Soliciting(Solicit::Due(now));
        }
    }

    /// What qualification found about the NAT, for the RFC 6081 extensions.
    pub fn findings(&self) -> NatFindings {
        let mapping = self.link.map(|l| SocketAddrV4::new(l.address.mapped_addr, l.address.mapped_port));
        let port_preserving = mapping.is_some_and(|m| {
            self.config.local_port != 0 && m.port() == self.config.local_port && self.upnp != Some(m)
        });
        NatFindings { kind: self.nat, mapping, port_preserving, upnp: self.upnp }
    }

    /// When the first RS may go: now, or when the wait for the UPnP mapping ends.
    fn first_rs(&self, now: Instant) -> Instant {
        self.upnp_hold.map_or(now, |h| h.max(now))
    }

    /// Makes the server with `primary` (and `secondary`, as [`Client::set_server`]) the
    /// one to solicit when the restart delay ends, without soliciting it before: after
    /// every server of a list failed, the list starts over at its first. Outside the
    /// offline state this is [`Client::set_server`].
    pub fn set_server_later(
        &mut self,
        now: Instant,
        primary: Ipv4Addr,
        secondary: Option<Ipv4Addr>,
    ) -> Result<(), ServerNotGlobal> {
        if !matches!(self.phase, Phase::Offline { .. }) {
            return self.set_server(now, primary, secondary);
        }
        self.servers = Some(self.servers_for(primary, secondary)?);
        Ok(())
    }

    /// Solicits the server at once, as after a change of network: Miredo restarts on
    /// SIGHUP, which Debian's ifupdown hook sends whenever an interface comes up, and then
    /// qualifies again at once instead of at the next refresh (up to 30 s later, with an
    /// address that embeds a mapping the NAT may have forgotten). While qualifying or
    /// qualified, the RS to the primary is due now unless one already waits for its answer
    /// (the deadlines that follow count from now); after the server was found unreachable,
    /// the restart delay ends now (a host name is resolved again). The address stays until
    /// the answer says otherwise: a new mapping gives a new address, silence the usual loss.
    pub fn solicit_now(&mut self, now: Instant) {
        match self.phase {
            Phase::Soliciting(Solicit::Due(at)) if at > now => {
                self.phase = Phase::Soliciting(Solicit::Due(self.first_rs(now)));
            }
            Phase::Offline { .. } => self.start_over(now),
            Phase::Soliciting(_) | Phase::Resolving => {}
        }
    }

    /// The server's host name could not be resolved: try again after the restart delay
    /// (Miredo does the same). Ignored unless the client was waiting for it.
    pub fn resolution_failed(&mut self, now: Instant) {
        if self.phase == Phase::Resolving {
            self.phase = Phase::Offline { until: now + self.config.restart_delay };
        }
    }

    /// Looks at a datagram received on the Teredo socket from `from`. Returns `true` when
    /// it is a qualification message (it has an authentication header, or it carries a
    /// router advertisement): the client accepted it or counted it as rejected, and the
    /// caller must not process it further. Returns `false` for everything else.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, packet: &TeredoPacket<'_>) -> bool {
        if packet.auth.is_none() && packet.kind() != PacketKind::RouterAdvertisement {
            return false;
        }
        let Some(servers) = self.servers else {
            self.reject(Rejection::WrongSource);
            return true;
        };
        let primary = match self.phase {
            Phase::Soliciting(s) => s.nonce(),
            _ => None,
        };
        let expected = [primary, self.probe.and_then(|p| p.solicit.nonce())];
        match qualification::check_ra(
            packet,
            from,
            servers.primary,
            servers.secondary,
            &expected,
            self.credentials.as_ref(),
        ) {
            Err(r) => self.reject(r),
            Ok((which, ra)) => {
                self.stats.ra_accepted += 1;
                self.last_interaction = Some(now);
                if which == 0 {
                    self.primary_answered(now, servers.primary, ra);
                } else {
                    self.probe_answered(ra.mapping);
                }
            }
        }
        true
    }

    /// Runs the timers due at `now`: RS timeouts, the end of the restart delay. (RSs that
    /// are due are written by [`Client::poll_transmit`].)
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.config.reply_timeout;
        if let Phase::Soliciting(Solicit::Waiting { sent, .. }) = self.phase
            && now >= sent + timeout
        {
            self.stats.timeouts += 1;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.config.tries {
                self.unreachable(sent);
            } else {
                // Miredo: the next RS at once, timed from the previous one.
                self.phase = Phase::Soliciting(Solicit::Due(sent + timeout));
            }
        }
        // Possibly at once, after a clock jump past both the reply timeout and the delay.
        if let Phase::Offline { until } = self.phase
            && now >= until
        {
            self.start_over(now);
        }
        self.probe_timeout(now, timeout);
    }

    /// The next instant at which [`Client::handle_timeout`] or [`Client::poll_transmit`]
    /// has something to do; it may be in the past (then act at once). `None` while waiting
    /// for the server's address.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.config.reply_timeout;
        let primary = match self.phase {
            Phase::Resolving => None,
            Phase::Soliciting(s) => Some(s.deadline(t)),
            Phase::Offline { until } => Some(until),
        };
        let probe = self.probe.map(|p| p.solicit.deadline(t));
        match (primary, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Writes the next due router solicitation into `buf` (which must hold [`RS_LEN`]
    /// bytes, else nothing is written and the RS stays due) and says where to send it.
    /// Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let servers = self.servers?;
        // A late deadline is not caught up on: the RS goes out now and the next deadlines
        // count from now (Miredo's "resynchronizing").
        if let Phase::Soliciting(Solicit::Due(at)) = self.phase
            && at <= now
        {
            let (len, nonce) = self.emit_rs(servers.primary, buf)?;
            // The wait for the UPnP mapping, if any, is over (RFC 6081 §5.3.3: "prior to").
            self.upnp_hold = None;
            self.phase = Phase::Soliciting(Solicit::Waiting { sent: now, nonce });
            return Some(Transmit { dst: SocketAddrV4::new(servers.primary, TEREDO_PORT), len });
        }
        self.poll_probe_transmit(now, servers.secondary, buf)
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The Teredo address while qualified.
    pub fn address(&self) -> Option<TeredoAddress> {
        self.link.map(|l| l.address)
    }

    /// The MTU while qualified.
    pub fn mtu(&self) -> Option<u16> {
        self.link.map(|l| l.mtu)
    }

    /// The connectivity status.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Resolving => State::Resolving,
            Phase::Offline { .. } => State::Offline,
            Phase::Soliciting(_) if self.link.is_some() => State::Qualified,
            Phase::Soliciting(_) => State::Qualifying,
        }
    }

    /// The server's primary and secondary addresses, once known.
    pub fn server(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        self.servers.map(|s| (s.primary, s.secondary))
    }

    /// What the last secondary-address probe found.
    pub fn nat_kind(&self) -> Option<NatKind> {
        self.nat
    }

    /// When the last valid RA arrived (RFC 4380 §5.2 "date and time of the last
    /// interaction with the Teredo server").
    pub fn last_interaction(&self) -> Option<Instant> {
        self.last_interaction
    }

    /// The configuration in use (with delays raised to [`MIN_DELAY`]).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn servers_for(
        &self,
        primary: Ipv4Addr,
        secondary: Option<Ipv4Addr>,
    ) -> Result<Servers, ServerNotGlobal> {
        if !is_global_unicast(primary) {
            return Err(ServerNotGlobal(primary));
        }
        let secondary = secondary
            .or(self.config.secondary)
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(primary).wrapping_add(1)));
        // The secondary address gets RSs too (RFC 4380 §5.2.1): one given, or the one
        // after the primary (which may leave the unicast space: 223.255.255.255 + 1).
        if !is_global_unicast(secondary) {
            return Err(ServerNotGlobal(secondary));
        }
        Ok(Servers { primary, secondary })
    }

    fn emit_rs(&mut self, dst: Ipv4Addr, buf: &mut [u8]) -> Option<(usize, [u8; 8])> {
        let nonce = self.key.rs_nonce(dst, self.rs_sequence);
        let len = qualification::emit_rs(buf, nonce, self.credentials.as_ref()).ok()?;
        self.rs_sequence = self.rs_sequence.wrapping_add(1);
        self.stats.rs_sent += 1;
        Some((len, nonce))
    }

    fn push(&mut self, e: Event) {
        if self.events.len() >= EVENT_CAPACITY {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    fn reject(&mut self, r: Rejection) {
        self.stats.ra_rejected += 1;
        self.stats.last_rejection = Some(r);
    }

    /// A valid RA answered the RS to the primary (RFC 4380 §5.2.1, §5.2.5).
    fn primary_answered(&mut self, now: Instant, primary: Ipv4Addr, ra: qualification::Advertisement) {
        let Phase::Soliciting(Solicit::Waiting { sent, .. }) = self.phase else { return };
        self.failures = 0;
        self.phase = Phase::Soliciting(Solicit::Due(sent + self.config.refresh_interval));
        // The address is always built under 2001::/32, even from a 3ffe:831f::/32 prefix.
        let mut address = TeredoAddress {
            prefix: TEREDO_PREFIX,
            server: primary,
            flags: Flags(0),
            mapped_port: ra.mapping.port,
            mapped_addr: ra.mapping.addr,
        };
        let same = self.last_address.is_some_and(|a| TeredoAddress { flags: Flags(0), ..a } == address);
        match self.last_address {
            Some(a) if same => address = a,
            previous => {
                // RFC 5991 §3.1: C = z = U = G = 0 and 12 random bits, new for each new
                // address, derived from the key rather than drawn.
                self.generation = self.generation.wrapping_add(1);
                let bits = self.key.address_flags(ra.mapping.addr, ra.mapping.port, self.generation);
                address.flags = Flags::random(bits);
                if previous.is_some() {
                    self.stats.mapping_changes += 1;
                }
            }
        }
        self.last_address = Some(address);
        let link = Link { address, mtu: ra.mtu };
        let was_up = self.link.replace(link);
        if was_up != Some(link) {
            self.stats.up += 1;
            self.push(Event::Up { address: address.to_ipv6(), mtu: ra.mtu });
        }
        if was_up.is_none() || !same {
            self.start_probe(now, primary, ra.mapping);
        }
    }

    /// The last of `tries` RSs, sent at `last_rs`, went unanswered.
    fn unreachable(&mut self, last_rs: Instant) {
        if self.link.take().is_some() {
            self.stats.down += 1;
            self.push(Event::Down);
        }
        self.probe = None;
        self.phase = Phase::Offline { until: last_rs + self.config.restart_delay };
        if let Some(s) = self.servers {
            self.push(Event::ServerUnreachable { server: s.primary });
        }
    }

    /// The restart delay is over: resolve the server's name again, or solicit at once.
    fn start_over(&mut self, now: Instant) {
        self.failures = 0;
        match self.config.server {
            ServerAddress::HostName => {
                self.phase = Phase::Resolving;
                self.push(Event::ResolveServer);
            }
            ServerAddress::Ipv4(_) => self.phase = Phase::Soliciting(Solicit::Due(now)),
        }
    }
}
