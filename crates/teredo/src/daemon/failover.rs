//! A client's list of Teredo servers (`ServerAddress A B ...`; a host name counts for each
//! of its IPv4 addresses) and the failover along it: when the server in use stops
//! answering (the client's [`Event::ServerUnreachable`](teredo_proto::client::Event)), the
//! next one is solicited at once; after the last, the list starts over at its first when
//! the client's restart delay ends. `ServerAddress2` belongs to the first server only.

use std::net::Ipv4Addr;

/// What to tell the client about its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Qualify with this server now.
    Now(Ipv4Addr, Option<Ipv4Addr>),
    /// Qualify with this server when the restart delay ends.
    Later(Ipv4Addr, Option<Ipv4Addr>),
}

/// The servers of a client, in the order of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerList {
    addresses: Vec<Ipv4Addr>,
    /// `ServerAddress2`, for the first server.
    secondary: Option<Ipv4Addr>,
    current: usize,
}

impl ServerList {
    /// The list `addresses` (duplicates dropped), in use from its first.
    pub fn new(addresses: impl IntoIterator<Item = Ipv4Addr>, secondary: Option<Ipv4Addr>) -> Self {
        let mut list: Vec<Ipv4Addr> = Vec::new();
        for a in addresses {
            if !list.contains(&a) {
                list.push(a);
            }
        }
        Self { addresses: list, secondary, current: 0 }
    }

    /// The server in use: its primary address and the secondary one if configured.
    pub fn current(&self) -> Option<(Ipv4Addr, Option<Ipv4Addr>)> {
        let a = *self.addresses.get(self.current)?;
        Some((a, self.secondary.filter(|_| self.current == 0)))
    }

    /// How many servers the list has.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// The server `failed` stopped answering: the next one (now), or the first again
    /// (after the restart delay) when `failed` was the last. `None` with a single server,
    /// or when `failed` is not the one in use (an old report).
    pub fn failed(&mut self, failed: Ipv4Addr) -> Option<Switch> {
        if self.addresses.len() < 2 || self.addresses.get(self.current) != Some(&failed) {
            return None;
        }
        self.current = (self.current + 1) % self.addresses.len();
        let (a, s) = self.current()?;
        Some(if self.current == 0 { Switch::Later(a, s) } else { Switch::Now(a, s) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const C: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const A2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);

    #[test]
    fn fails_over_in_order_then_starts_over_later() {
        let mut l = ServerList::new([A, B, C, B], Some(A2));
        assert_eq!(l.len(), 3);
        assert_eq!(l.current(), Some((A, Some(A2))));
        assert_eq!(l.failed(A), Some(Switch::Now(B, None)));
        // A report about a server no longer in use changes nothing.
        assert_eq!(l.failed(A), None);
        assert_eq!(l.failed(B), Some(Switch::Now(C, None)));
        assert_eq!(l.failed(C), Some(Switch::Later(A, Some(A2))));
        assert_eq!(l.current(), Some((A, Some(A2))));
    }

    #[test]
    fn one_server_has_no_failover() {
        let mut l = ServerList::new([A], None);
        assert_eq!(l.failed(A), None);
        assert!(ServerList::default().is_empty());
        assert_eq!(ServerList::default().current(), None);
    }
}
