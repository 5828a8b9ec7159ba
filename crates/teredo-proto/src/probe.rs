//! A relay's probe of a Teredo server, sans-IO: is the relay's IPv4 side alive? The relay
//! sends, from its own Teredo socket, the router solicitation a client would send (RFC 4380
//! §5.2.1, with the nonce of §5.2.2, the restricted form of RFC 5991 §3.2), every
//! [`ProbeConfig::interval`], and checks the router advertisement that answers it as a
//! client does. A server that answers proves that the relay's UDP socket sends and
//! receives across the IPv4 internet: a relay whose IPv4 side is cut off stops hearing the
//! answers, and its daemon withdraws the relay's route (the health decision is the
//! daemon's; this module only reports each [`Outcome`]).
//!
//! The server learns nothing from it it would not from a client: the relay is not
//! qualifying, and ignores the address the advertisement offers.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::address::TEREDO_PORT;
use crate::client::qualification::{check_ra, emit_rs};
use crate::nonce::TokenKey;
use crate::time::Instant;
use crate::wire::TeredoPacket;

/// The default time between two probes.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(3);
/// The default wait for an answer (RFC 4380 §5.2.1 waits 4 s for a client; a server that
/// is alive answers within a round trip).
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Outcomes kept for [`ServerProbe::poll_outcome`]; older ones are dropped.
const OUTCOME_CAPACITY: usize = 8;

/// How often to probe and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The time between two probes.
    pub interval: Duration,
    /// How long a probe waits for its answer (at most the interval).
    pub timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { interval: DEFAULT_PROBE_INTERVAL, timeout: DEFAULT_PROBE_TIMEOUT }
    }
}

/// What became of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered, after this round trip.
    Answered(Duration),
    /// No valid answer within the timeout.
    Unanswered,
}

/// What a probe has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// Solicitations sent.
    pub sent: u64,
    /// Answered in time.
    pub answered: u64,
    /// Not answered in time.
    pub unanswered: u64,
    /// Datagrams from the server's port 3544 that did not answer the waiting probe (late,
    /// forged, malformed): ignored.
    pub ignored: u64,
}

/// An RS that waits for its RA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiting {
    sent: Instant,
    nonce: [u8; 8],
}

/// The probe of one server (see the module comment).
#[derive(Debug)]
pub struct ServerProbe {
    server: Ipv4Addr,
    key: TokenKey,
    config: ProbeConfig,
    next: Instant,
    waiting: Option<Waiting>,
    epoch: u64,
    outcomes: VecDeque<Outcome>,
    stats: ProbeStats,
}

impl ServerProbe {
    /// A probe of the server at `server` (UDP 3544), whose first solicitation is due at
    /// `now`. `key` makes the nonces.
    pub fn new(server: Ipv4Addr, key: TokenKey, config: ProbeConfig, now: Instant) -> Self {
        let config = ProbeConfig { timeout: config.timeout.min(config.interval), ..config };
        Self {
            server,
            key,
            config,
            next: now,
            waiting: None,
            epoch: 0,
            outcomes: VecDeque::new(),
            stats: ProbeStats::default(),
        }
    }

    /// The server probed.
    pub fn server(&self) -> Ipv4Addr {
        self.server
    }

    /// The counts so far.
    pub fn stats(&self) -> ProbeStats {
        self.stats
    }

    /// Whether `from` is the server's Teredo port: the caller hands such datagrams to
    /// [`ServerProbe::handle_datagram`] first.
    #[inline]
    pub fn is_from_server(&self, from: SocketAddrV4) -> bool {
        from.port() == TEREDO_PORT && *from.ip() == self.server
    }

    /// A datagram from the server: true when it answers the waiting probe (it is then
    /// consumed). Anything else from the server is counted as ignored and false is
    /// returned, so that the caller treats it as any other datagram.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, packet: &TeredoPacket<'_>) -> bool {
        let Some(w) = self.waiting else {
            self.stats.ignored += 1;
            return false;
        };
        // Any secondary address: the restricted solicitation is answered from the primary.
        match check_ra(packet, from, self.server, self.server, &[Some(w.nonce)], None) {
            Ok(_) => {
                self.waiting = None;
                self.stats.answered += 1;
                self.push(Outcome::Answered(now.saturating_since(w.sent)));
                true
            }
            Err(_) => {
                self.stats.ignored += 1;
                false
            }
        }
    }

    /// Runs what is due at `now`: a probe whose answer did not come in time is
    /// [`Outcome::Unanswered`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(w) = self.waiting
            && now >= w.sent + self.config.timeout
        {
            self.waiting = None;
            self.stats.unanswered += 1;
            self.push(Outcome::Unanswered);
        }
    }

    /// The next instant at which [`ServerProbe::handle_timeout`] or
    /// [`ServerProbe::poll_transmit`] has work.
    pub fn poll_timeout(&self) -> Instant {
        match self.waiting {
            Some(w) => (w.sent + self.config.timeout).min(self.next),
            None => self.next,
        }
    }

    /// Writes the solicitation into `buf` when one is due (61 bytes suffice) and returns
    /// its length and where it goes; `None` when none is due (or `buf` is too small).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(usize, SocketAddrV4)> {
        if now < self.next {
            return None;
        }
        self.handle_timeout(now);
        if self.waiting.is_some() {
            // The timeout is at most the interval: only an early call gets here.
            return None;
        }
        self.epoch = self.epoch.wrapping_add(1);
        let nonce = self.key.rs_nonce(self.server, self.epoch);
        let len = emit_rs(buf, nonce, None).ok()?;
        self.waiting = Some(Waiting { sent: now, nonce });
        self.next = now + self.config.interval;
        self.stats.sent += 1;
        Some((len, SocketAddrV4::new(self.server, TEREDO_PORT)))
    }

    /// The next outcome not yet taken.
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcomes.pop_front()
    }

    fn push(&mut self, o: Outcome) {
        if self.outcomes.len() >= OUTCOME_CAPACITY {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Action, Local, Server, ServerConfig};

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 3544);

    fn probe(now: Instant) -> ServerProbe {
        ServerProbe::new(SERVER, TokenKey::new([7; 32]), ProbeConfig::default(), now)
    }

    /// The real server's answer to `rs`.
    fn answer(rs: &[u8]) -> Vec<u8> {
        let server = Server::new(ServerConfig {
            primary: SERVER,
            secondary: Ipv4Addr::new(192, 0, 2, 2),
            prefix: crate::address::TEREDO_PREFIX,
            mtu: 1280,
        });
        let mut out = vec![0u8; 1500];
        match server.handle_datagram(Local::Primary, RELAY, rs, &mut out) {
            Action::SendUdp { from: Local::Primary, to, len, advertisement: true } if to == RELAY => {
                out.truncate(len);
                out
            }
            other => panic!("the server does not answer the relay's solicitation: {other:?}"),
        }
    }

    #[test]
    fn an_answered_probe_reports_its_round_trip() {
        let t0 = Instant::ZERO;
        let mut p = probe(t0);
        let mut buf = [0u8; 128];
        let (len, to) = p.poll_transmit(t0, &mut buf).unwrap();
        assert_eq!(to, SocketAddrV4::new(SERVER, 3544));
        assert!(p.poll_transmit(t0, &mut buf).is_none(), "one probe per interval");
        let ra = answer(&buf[..len]);
        let packet = TeredoPacket::parse(&ra).unwrap();
        let from = SocketAddrV4::new(SERVER, 3544);
        assert!(p.is_from_server(from));
        assert!(p.handle_datagram(t0 + Duration::from_millis(5), from, &packet));
        assert_eq!(p.poll_outcome(), Some(Outcome::Answered(Duration::from_millis(5))));
        // The same answer again is no longer expected.
        assert!(!p.handle_datagram(t0 + Duration::from_millis(6), from, &packet));
        assert_eq!(p.stats(), ProbeStats { sent: 1, answered: 1, unanswered: 0, ignored: 1 });
        assert_eq!(p.poll_timeout(), t0 + DEFAULT_PROBE_INTERVAL);
    }

    #[test]
    fn a_silent_server_gives_unanswered_probes() {
        let t0 = Instant::ZERO;
        let mut p = probe(t0);
        let mut buf = [0u8; 128];
        let (len, _) = p.poll_transmit(t0, &mut buf).unwrap();
        let old = answer(&buf[..len]);
        assert_eq!(p.poll_timeout(), t0 + DEFAULT_PROBE_TIMEOUT);
        p.handle_timeout(t0 + DEFAULT_PROBE_TIMEOUT);
        assert_eq!(p.poll_outcome(), Some(Outcome::Unanswered));
        // A late answer does not count.
        let packet = TeredoPacket::parse(&old).unwrap();
        assert!(!p.handle_datagram(t0 + DEFAULT_PROBE_TIMEOUT, SocketAddrV4::new(SERVER, 3544), &packet));
        // The next probe carries another nonce: the old answer does not answer it either.
        let t1 = t0 + DEFAULT_PROBE_INTERVAL;
        p.poll_transmit(t1, &mut buf).unwrap();
        assert!(!p.handle_datagram(t1, SocketAddrV4::new(SERVER, 3544), &packet));
        assert_eq!(p.poll_outcome(), None);
        p.handle_timeout(t1 + DEFAULT_PROBE_TIMEOUT);
        assert_eq!(p.poll_outcome(), Some(Outcome::Unanswered));
        assert_eq!(p.stats().unanswered, 2);
    }

    #[test]
    fn answers_from_elsewhere_are_refused() {
        let t0 = Instant::ZERO;
        let mut p = probe(t0);
        let mut buf = [0u8; 128];
        let (len, _) = p.poll_transmit(t0, &mut buf).unwrap();
        let ra = answer(&buf[..len]);
        let packet = TeredoPacket::parse(&ra).unwrap();
        let other = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 3544);
        assert!(!p.is_from_server(other));
        assert!(!p.handle_datagram(t0, other, &packet));
        assert!(!p.is_from_server(SocketAddrV4::new(SERVER, 3545)));
        assert_eq!(p.poll_outcome(), None);
    }

    #[test]
    fn outcomes_are_bounded() {
        let mut p = probe(Instant::ZERO);
        let mut buf = [0u8; 128];
        let mut now = Instant::ZERO;
        for _ in 0..100 {
            p.poll_transmit(now, &mut buf).unwrap();
            now = now + DEFAULT_PROBE_INTERVAL;
            p.handle_timeout(now);
        }
        assert_eq!(std::iter::from_fn(|| p.poll_outcome()).count(), OUTCOME_CAPACITY);
    }
}
