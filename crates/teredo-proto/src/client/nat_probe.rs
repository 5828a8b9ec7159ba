//! The secondary-address probe of RFC 4380 §5.2.1: after each qualification and each
//! change of mapping, one more RS to the server's secondary address, whose RA's mapping,
//! compared with the primary's, tells a NAT that keeps one mapping for every destination
//! from a symmetric one ([`NatKind`], reported as [`Event::NatBehaviour`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use super::{Client, Event, NatKind, Solicit, Transmit};
use crate::address::{TEREDO_PORT, is_global_unicast};
use crate::time::Instant;
use crate::wire::OriginIndication;

/// The secondary-address probe of RFC 4380 §5.2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Probe {
    /// The mapping the primary address reported.
    pub(super) mapping: OriginIndication,
    pub(super) solicit: Solicit,
    /// RSs sent to the secondary address so far.
    pub(super) tries: u8,
}

impl Client {
    /// Starts the secondary-address probe for the mapping the primary reported.
    pub(super) fn start_probe(&mut self, now: Instant, primary: Ipv4Addr, mapping: OriginIndication) {
        self.probe = None;
        match self.servers {
            Some(s) if s.secondary != primary && is_global_unicast(s.secondary) => {
                self.probe = Some(Probe { mapping, solicit: Solicit::Due(now), tries: 0 });
            }
            _ => self.probe_finished(NatKind::Unknown),
        }
    }

    /// A valid RA answered the RS to the secondary address.
    pub(super) fn probe_answered(&mut self, mapping: OriginIndication) {
        let Some(p) = self.probe else { return };
        let kind = if p.mapping == mapping { NatKind::SameMapping } else { NatKind::Symmetric };
        self.probe_finished(kind);
    }

    pub(super) fn probe_finished(&mut self, kind: NatKind) {
        self.probe = None;
        self.nat = Some(kind);
        self.push(Event::NatBehaviour(kind));
    }

    /// The probe's RS went unanswered for `timeout`: another one is due, or after
    /// `Config::tries` of them the NAT's kind stays unknown.
    pub(super) fn probe_timeout(&mut self, now: Instant, timeout: Duration) {
        if let Some(Probe { solicit: Solicit::Waiting { sent, .. }, tries, .. }) = self.probe
            && now >= sent + timeout
        {
            if tries >= self.config.tries {
                self.probe_finished(NatKind::Unknown);
            } else if let Some(p) = &mut self.probe {
                p.solicit = Solicit::Due(sent + timeout);
            }
        }
    }

    /// Writes the probe's RS to `secondary` into `buf` when it is due.
    pub(super) fn poll_probe_transmit(
        &mut self,
        now: Instant,
        secondary: Ipv4Addr,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        if let Some(Probe { solicit: Solicit::Due(at), .. }) = self.probe
            && at <= now
        {
            let (len, nonce) = self.emit_rs(secondary, buf)?;
            if let Some(p) = &mut self.probe {
                p.solicit = Solicit::Waiting { sent: now, nonce };
                p.tries = p.tries.saturating_add(1);
            }
            return Some(Transmit { dst: SocketAddrV4::new(secondary, TEREDO_PORT), len });
        }
        None
    }
}
