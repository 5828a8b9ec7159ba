//! The Sequential Port-Symmetric NAT extension (RFC 6081 §5.5) in a client's data path:
//! behind a symmetric NAT that does not preserve ports, a request to send indirect bubbles
//! to an untrusted peer first opens a random port and runs an echo test from it (§5.5.4.1,
//! §5.5.4.1.1): an RS to the server's primary address, a direct bubble to the peer, an RS
//! to the secondary address. The two RAs tell which external ports the NAT gave just
//! before and just after the bubble; their midpoint is the prediction (§5.5.4.4), sent in
//! the Random Port trailer of the indirect bubbles that follow. The Echo Test Failover
//! Timer (§5.5.2.2) runs a second test after 1 s without both answers, then sends the
//! indirect bubbles without a prediction after 2 s more.
//!
//! §5.5.4.4 writes the midpoint as "(EchoTestUpperPort + EchoTestUpperPort)/2": a typo for
//! the lower and upper ports (§3.4, §6.4 step 4E), which is what is used.

use std::net::{Ipv6Addr, SocketAddrV4};
use std::time::Duration;

use super::bubbles::Bubble;
use super::output::BubbleTrailers;
use super::random::EchoTest;
use super::{DropReason, Pending, Tunnel, UdpVerdict};
use crate::address::{TEREDO_PORT, TeredoAddress};
use crate::client::qualification::check_ra;
use crate::time::Instant;
use crate::wire::TeredoPacket;

/// Echo tests per random port before the indirect bubbles go without a prediction.
const ECHO_TESTS: u8 = 2;

impl Tunnel {
    /// Whenever indirect bubbles are to go to `peer`: behind a port-preserving symmetric
    /// NAT, an untrusted peer gets a random port first (§5.4.4.2); behind a sequential NAT
    /// (§5.5.4.1),
    /// an untrusted peer with no random port gets an echo test first (the indirect bubbles
    /// follow its answers, or the failover); while one runs, nothing. Otherwise, or when no
    /// random port can be had, the indirect bubbles go now.
    pub(super) fn request_indirect(&mut self, now: Instant, peer: Ipv6Addr) {
        let untrusted = self.peers.get(&peer).is_some_and(|p| !p.is_trusted());
        if self.nat.port_preserving_symmetric() && untrusted && self.link().is_some() {
            // RFC 6081 §5.4.4.2: a random port first, advertised in the indirect bubbles.
            self.open_random_port(&peer);
        }
        if self.nat.sequential() && untrusted && self.link().is_some() {
            let entry = self.peers.get(&peer).is_some_and(|p| p.has_random_port());
            match self.random.get(&peer).filter(|_| entry) {
                Some(e) if e.local_port != 0 => {
                    if e.random_port == 0 && e.echo.is_some_and(|x| x.failover.is_some()) {
                        return;
                    }
                }
                _ => {
                    if self.start_echo_test(now, &peer) {
                        return;
                    }
                }
            }
        }
        self.indirect_bubbles(now, peer);
    }

    /// §5.5.4.1.1 from `peer`'s random port (opened if needed); false when there is none
    /// to be had (the table is full) or no secondary server address.
    fn start_echo_test(&mut self, now: Instant, peer: &Ipv6Addr) -> bool {
        let (Some(link), Some(secondary)) = (self.link(), self.secondary) else { return false };
        let Some(port) = self.open_random_port(peer) else { return false };
        let n = self.ports_chosen;
        self.ports_chosen = self.ports_chosen.wrapping_add(1);
        let primary = *link.server.ip();
        let nonces = [self.key.echo_test_nonce(primary, n), self.key.echo_test_nonce(secondary, n)];
        let Some(e) = self.random.get_mut(peer) else { return false };
        let retries = e.echo.map_or(0, |x| x.retries).saturating_add(1);
        let failover = now + Duration::from_secs(u64::from(retries));
        e.echo = Some(EchoTest { nonces, ports: [0, 0], retries, failover: Some(failover) });
        let t = TeredoAddress::from_octets(&peer.octets());
        let to_port = if e.peer_random_port != 0 { e.peer_random_port } else { t.mapped_port };
        let trailers = BubbleTrailers::nonce(e.nonce_received);
        self.push(Pending::EchoRs { from: port, to: link.server, nonce: nonces[0] });
        let to = SocketAddrV4::new(t.mapped_addr, to_port);
        let sent =
            self.send_bubble(now, Bubble { src: link.address, dst: *peer, to, trailers, from: Some(port) });
        self.push(Pending::EchoRs {
            from: port,
            to: SocketAddrV4::new(secondary, TEREDO_PORT),
            nonce: nonces[1],
        });
        if sent {
            self.stats.random_port_bubbles_sent += 1;
        }
        self.stats.port_echo_tests += 1;
        true
    }

    /// The Echo Test Failover Timers due at `now` (§5.5.2.2): a second test after the
    /// first, the indirect bubbles after the second.
    pub(super) fn echo_failovers(&mut self, now: Instant) {
        let mut due = Vec::new();
        for e in self.random.iter_mut() {
            if let Some(x) = e.echo.as_mut()
                && x.failover.is_some_and(|at| at <= now)
            {
                x.failover = None;
                due.push((e.peer, x.retries));
            }
        }
        for (peer, retries) in due {
            if retries >= ECHO_TESTS || !self.start_echo_test(now, &peer) {
                self.indirect_bubbles(now, peer);
            }
        }
    }

    /// A router advertisement on the random port `port` (§5.5.4.4): one answer of the echo
    /// test running there. With both, the Random Port is their midpoint and the indirect
    /// bubbles go with it.
    pub(super) fn echo_answer(
        &mut self,
        now: Instant,
        port: u16,
        from: SocketAddrV4,
        packet: &TeredoPacket<'_>,
    ) -> UdpVerdict {
        let (Some(link), Some(secondary)) = (self.link(), self.secondary) else {
            return self.drop_udp(DropReason::UnknownPort);
        };
        let Some((peer, echo)) = self.random.by_port(port).and_then(|e| Some((e.peer, e.echo?))) else {
            return self.drop_udp(DropReason::UnknownPort);
        };
        let expected = [Some(echo.nonces[0]), Some(echo.nonces[1])];
        let Ok((which, ra)) = check_ra(packet, from, *link.server.ip(), secondary, &expected, None) else {
            return self.drop_udp(DropReason::MappingMismatch);
        };
        let Some(e) = self.random.get_mut(&peer) else { return UdpVerdict::Consumed };
        let Some(x) = e.echo.as_mut() else { return UdpVerdict::Consumed };
        if let Some(p) = x.ports.get_mut(which)
            && *p == 0
        {
            *p = ra.mapping.port;
        }
        let [lower, upper] = x.ports;
        if lower != 0 && upper != 0 && x.failover.is_some() {
            x.failover = None;
            e.random_port = u16::try_from((u32::from(lower) + u32::from(upper)) / 2).unwrap_or(0);
            self.stats.port_predictions += 1;
            self.indirect_bubbles(now, peer);
        }
        UdpVerdict::Consumed
    }
}
