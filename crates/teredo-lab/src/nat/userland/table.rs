//! The userland NAT's bindings: which public address/port each local endpoint gets toward
//! each remote (per the kind's mapping and port allocation), which inbound packets a
//! binding lets in (filtering), UPnP port mappings that let anyone in, idle expiry and a
//! bound on the table's size. Pure logic with the clock passed in, so that it is tested
//! without a network.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::nat::{Mapping, NatKind};

/// The lowest public port handed out.
const MIN_PORT: u16 = 1024;
/// How many remote endpoints an address-dependent binding remembers for filtering.
const MAX_PERMITTED: usize = 16;

/// A UPnP port mapping: UDP to the NAT's first public address and `external_port` goes
/// to `internal`, whoever sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpnpMapping {
    /// The public port.
    pub external_port: u16,
    /// The LAN endpoint it forwards to.
    pub internal: SocketAddrV4,
}

/// One binding as a test sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The LAN endpoint.
    pub local: SocketAddrV4,
    /// The remote endpoint the binding was made for (for an address-dependent mapping,
    /// any port of this address shares it).
    pub remote: SocketAddrV4,
    /// The public address and port.
    pub public: SocketAddrV4,
}

/// Key of a binding: the local endpoint and the remote as far as the mapping depends on
/// it (port 0 for an address-dependent mapping).
type Key = (SocketAddrV4, SocketAddrV4);

#[derive(Debug)]
struct Entry {
    first_remote: SocketAddrV4,
    public: SocketAddrV4,
    permitted: Vec<SocketAddrV4>,
    last: Instant,
}

/// A small xorshift generator: port choice only needs to look random.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn port(&mut self) -> u16 {
        let span = u64::from(u16::MAX - MIN_PORT) + 1;
        MIN_PORT + u16::try_from(self.next() % span).unwrap_or(0)
    }
}

/// The bindings of one userland NAT. See the module documentation.
#[derive(Debug)]
pub(crate) struct Table {
    kind: NatKind,
    publics: Vec<Ipv4Addr>,
    idle: Duration,
    max: usize,
    entries: HashMap<Key, Entry>,
    by_public: HashMap<SocketAddrV4, Key>,
    upnp: Vec<UpnpMapping>,
    /// Address-symmetric: the public address each remote address sees.
    remote_public: HashMap<Ipv4Addr, Ipv4Addr>,
    next_public: usize,
    last_port: u16,
    rng: Rng,
}

impl Table {
    /// An empty table for `kind` with public addresses `publics` (at least one), bindings
    /// idle for `idle` forgotten, at most `max` of them; `seed` drives port choice.
    pub(crate) fn new(kind: NatKind, publics: Vec<Ipv4Addr>, idle: Duration, max: usize, seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        // A sequential NAT starts somewhere in the middle, far from any local port.
        let last_port = 20000 + u16::try_from(rng.next() % 20000).unwrap_or(0);
        Self {
            kind,
            publics,
            idle,
            max,
            entries: HashMap::new(),
            by_public: HashMap::new(),
            upnp: Vec::new(),
            remote_public: HashMap::new(),
            next_public: 0,
            last_port,
            rng,
        }
    }

    fn key(&self, local: SocketAddrV4, remote: SocketAddrV4) -> Key {
        match self.kind.mapping() {
            Mapping::EndpointIndependent => (local, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            Mapping::AddressDependent => (local, SocketAddrV4::new(*remote.ip(), 0)),
            Mapping::AddressAndPortDependent => (local, remote),
        }
    }

    /// Replaces the UPnP port mappings (from `miniupnpd`'s lease file).
    pub(crate) fn set_upnp(&mut self, mappings: Vec<UpnpMapping>) {
        self.upnp = mappings;
    }

    /// The UPnP port mappings in force.
    pub(crate) fn upnp(&self) -> &[UpnpMapping] {
        &self.upnp
    }

    /// Whether public `addr` is free for a new binding of `local`: no binding uses it, and
    /// no UPnP mapping reserves it for another local endpoint.
    fn free(&self, addr: SocketAddrV4, local: SocketAddrV4) -> bool {
        addr.port() >= MIN_PORT
            && !self.by_public.contains_key(&addr)
            && !(*addr.ip() == self.publics[0]
                && self.upnp.iter().any(|m| m.external_port == addr.port() && m.internal != local))
    }

    fn random_port(&mut self, ip: Ipv4Addr, local: SocketAddrV4) -> Option<u16> {
        for _ in 0..64 {
            let p = self.rng.port();
            if self.free(SocketAddrV4::new(ip, p), local) {
                return Some(p);
            }
        }
        let start = self.rng.port();
        (start..=u16::MAX).chain(MIN_PORT..start).find(|p| self.free(SocketAddrV4::new(ip, *p), local))
    }

    fn sequential_port(&mut self, ip: Ipv4Addr, local: SocketAddrV4, step: u16) -> Option<u16> {
        let mut p = self.last_port;
        for _ in 0..=u16::MAX {
            p = p.checked_add(step).filter(|p| *p >= MIN_PORT).unwrap_or(MIN_PORT);
            if self.free(SocketAddrV4::new(ip, p), local) {
                self.last_port = p;
                return Some(p);
            }
        }
        None
    }

    /// A public address and port for a new binding of `local` toward `remote`.
    fn allocate(&mut self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<SocketAddrV4> {
        let ip = match self.kind {
            NatKind::AddressSymmetric => match self.remote_public.get(remote.ip()) {
                Some(ip) => *ip,
                None => {
                    // Each new remote address sees the next public address, in turn.
                    let ip = self.publics[self.next_public % self.publics.len()];
                    self.next_public = self.next_public.wrapping_add(1);
                    self.remote_public.insert(*remote.ip(), ip);
                    ip
                }
            },
            _ => self.publics[0],
        };
        let port = match self.kind {
            NatKind::PortPreservingSymmetric if self.free(SocketAddrV4::new(ip, local.port()), local) => {
                Some(local.port())
            }
            NatKind::SequentialSymmetric => self.sequential_port(ip, local, crate::nat::SEQUENTIAL_STEP),
            NatKind::UpnpPortSymmetric => {
                let reserved = self
                    .upnp
                    .iter()
                    .find(|m| m.internal == local && self.free(SocketAddrV4::new(ip, m.external_port), local))
                    .map(|m| m.external_port);
                match reserved {
                    Some(p) => Some(p),
                    None => self.random_port(ip, local),
                }
            }
            _ => self.random_port(ip, local),
        }?;
        Some(SocketAddrV4::new(ip, port))
    }

    /// The public source for a packet from `local` to `remote`, making a binding if there
    /// is none; `None` when the table is full.
    pub(crate) fn outbound(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        now: Instant,
    ) -> Option<SocketAddrV4> {
        let key = self.key(local, remote);
        if let Some(e) = self.entries.get_mut(&key) {
            e.last = now;
            if !e.permitted.contains(&remote) {
                if e.permitted.len() >= MAX_PERMITTED {
                    e.permitted.remove(0);
                }
                e.permitted.push(remote);
            }
            return Some(e.public);
        }
        if self.entries.len() >= self.max {
            self.expire(now);
            if self.entries.len() >= self.max {
                return None;
            }
        }
        let public = self.allocate(local, remote)?;
        self.entries.insert(key, Entry { first_remote: remote, public, permitted: vec![remote], last: now });
        self.by_public.insert(public, key);
        Some(public)
    }

    /// The LAN destination for a packet from `remote` to public `public`: a binding's
    /// local endpoint if the binding lets `remote` in, else a UPnP mapping's, else `None`
    /// (dropped).
    pub(crate) fn inbound(
        &mut self,
        remote: SocketAddrV4,
        public: SocketAddrV4,
        now: Instant,
    ) -> Option<SocketAddrV4> {
        if let Some(key) = self.by_public.get(&public)
            && let Some(e) = self.entries.get_mut(key)
            && e.permitted.contains(&remote)
        {
            e.last = now;
            return Some(key.0);
        }
        if *public.ip() == self.publics[0] {
            return self.upnp.iter().find(|m| m.external_port == public.port()).map(|m| m.internal);
        }
        None
    }

    /// Forgets bindings idle for longer than the idle timeout; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let idle = self.idle;
        let before = self.entries.len();
        let by_public = &mut self.by_public;
        self.entries.retain(|_, e| {
            let keep = now.saturating_duration_since(e.last) <= idle;
            if !keep {
                by_public.remove(&e.public);
            }
            keep
        });
        let expired = before - self.entries.len();
        if expired > 0 && !self.remote_public.is_empty() {
            let live: std::collections::HashSet<Ipv4Addr> =
                self.entries.values().map(|e| *e.first_remote.ip()).collect();
            self.remote_public.retain(|r, _| live.contains(r));
        }
        expired
    }

    /// Forgets every binding (UPnP mappings stay: they belong to `miniupnpd`).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.by_public.clear();
        self.remote_public.clear();
    }

    /// The bindings, in no particular order.
    pub(crate) fn bindings(&self) -> Vec<Binding> {
        self.entries
            .iter()
            .map(|((local, _), e)| Binding { local: *local, remote: e.first_remote, public: e.public })
            .collect()
    }

    /// How many bindings there are.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    const PUB: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn table(kind: NatKind) -> Table {
        let publics = (1..=kind.public_addresses()).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect();
        Table::new(kind, publics, Duration::from_secs(120), 64, 42)
    }

    #[test]
    fn port_preserving_keeps_a_free_port_only() {
        let mut t = table(NatKind::PortPreservingSymmetric);
        let now = Instant::now();
        let a = sa("10.0.1.2:40000");
        let b = sa("10.0.1.3:40000");
        let m1 = t.outbound(a, sa("192.0.2.1:3544"), now).unwrap();
        assert_eq!(m1, SocketAddrV4::new(PUB, 40000));
        // Same binding again; another remote gets another port (40000 is taken).
        assert_eq!(t.outbound(a, sa("192.0.2.1:3544"), now), Some(m1));
        let m2 = t.outbound(a, sa("192.0.2.2:3544"), now).unwrap();
        assert_ne!(m2.port(), 40000);
        let m3 = t.outbound(b, sa("192.0.2.1:3544"), now).unwrap();
        assert_ne!(m3.port(), 40000);
        assert_ne!(m3, m2);
    }

    #[test]
    fn sequential_ports_step() {
        let mut t = table(NatKind::SequentialSymmetric);
        let now = Instant::now();
        let a = sa("10.0.1.2:40000");
        let p: Vec<u16> = ["192.0.2.1:3544", "203.0.113.1:5000", "192.0.2.2:3544"]
            .iter()
            .map(|r| t.outbound(a, sa(r), now).unwrap().port())
            .collect();
        assert_eq!(p[1], p[0] + crate::nat::SEQUENTIAL_STEP);
        assert_eq!(p[2], p[1] + crate::nat::SEQUENTIAL_STEP);
    }

    #[test]
    fn port_symmetric_filters_by_endpoint() {
        let mut t = table(NatKind::UpnpPortSymmetric);
        let now = Instant::now();
        let a = sa("10.0.1.2:40000");
        let s = sa("192.0.2.1:3544");
        let m = t.outbound(a, s, now).unwrap();
        assert_ne!(t.outbound(a, sa("192.0.2.1:3545"), now), Some(m));
        assert_eq!(t.inbound(s, m, now), Some(a));
        assert_eq!(t.inbound(sa("192.0.2.1:3546"), m, now), None);
        assert_eq!(t.inbound(sa("203.0.113.1:5000"), m, now), None);
    }

    #[test]
    fn address_symmetric_changes_address_per_remote_address() {
        let mut t = table(NatKind::AddressSymmetric);
        let now = Instant::now();
        let a = sa("10.0.1.2:40000");
        let m1 = t.outbound(a, sa("192.0.2.1:3544"), now).unwrap();
        let m1b = t.outbound(a, sa("192.0.2.1:3545"), now).unwrap();
        let m2 = t.outbound(a, sa("192.0.2.2:3544"), now).unwrap();
        assert_eq!(m1, m1b, "same remote address, same binding");
        assert_ne!(m1.ip(), m2.ip());
        // Another local endpoint: the same public address toward the same remote address.
        let b = t.outbound(sa("10.0.1.3:40000"), sa("192.0.2.2:1"), now).unwrap();
        assert_eq!(b.ip(), m2.ip());
        assert_ne!(b, m2);
        // Filtering by address and port: only the endpoints sent to.
        assert_eq!(t.inbound(sa("192.0.2.1:3545"), m1, now), Some(a));
        assert_eq!(t.inbound(sa("192.0.2.1:3546"), m1, now), None);
    }

    #[test]
    fn upnp_mappings_let_anyone_in_and_reserve_their_port() {
        let mut t = table(NatKind::UpnpPortSymmetric);
        let now = Instant::now();
        let a = sa("10.0.1.2:40000");
        let b = sa("10.0.1.3:5555");
        t.set_upnp(vec![UpnpMapping { external_port: 40000, internal: a }]);
        let pubp = SocketAddrV4::new(PUB, 40000);
        assert_eq!(t.inbound(sa("203.0.113.1:5000"), pubp, now), Some(a));
        // The owner's first binding gets the mapped port, the next ones random ports.
        assert_eq!(t.outbound(a, sa("192.0.2.1:3544"), now), Some(pubp));
        assert_ne!(t.outbound(a, sa("192.0.2.2:3544"), now), Some(pubp));
        for i in 0..40 {
            let m = t.outbound(b, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1000 + i), now).unwrap();
            assert_ne!(m.port(), 40000, "reserved for {a}");
        }
        t.set_upnp(Vec::new());
        assert_eq!(t.inbound(sa("203.0.113.9:1"), pubp, now), None);
    }

    #[test]
    fn bindings_expire_and_the_table_is_bounded() {
        let mut t = Table::new(NatKind::Symmetric, vec![PUB], Duration::from_secs(10), 3, 7);
        let now = Instant::now();
        let a = sa("10.0.1.2:40000");
        for i in 0..3 {
            assert!(t.outbound(a, SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1 + i), now).is_some());
        }
        assert_eq!(t.outbound(a, sa("192.0.2.1:99"), now), None, "full");
        let later = now + Duration::from_secs(11);
        assert!(t.outbound(a, sa("192.0.2.1:99"), later).is_some(), "idle ones expired");
        assert_eq!(t.len(), 1);
        t.clear();
        assert_eq!(t.len(), 0);
    }
}
