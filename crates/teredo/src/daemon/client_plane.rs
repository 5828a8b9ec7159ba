//! The control of a client (`teredo run`, `RelayType client`): it acts on the endpoint's
//! events off the packet path — the privileged helper configures the interface on `Up` and
//! `Down` (RFC 4380 §5.2.1), host names are resolved on a thread of their own (getaddrinfo
//! blocks) — and applies a reload: a new `ServerAddress` or `ServerAddress2` makes the
//! client qualify with the new server (its old address goes when the new one comes, or
//! when the old server stops answering).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;

use teredo_net::helper::Helper;
use teredo_net::waker::Waker;
use teredo_proto::address::TeredoAddress;
use teredo_proto::client::{Event, NatKind};
use tracing::{info, warn};

use super::control::{Observability, Plane};
use super::failover::{ServerList, Switch};
use super::worker::{Command, Snapshot, Workers};
use super::{reload, resolve, summary};
use crate::config::{self, ClientRelayConfig, ClientRelayOverrides, Host};

/// A host-name resolution running on its own thread: every server of the list, and the
/// first one's secondary address.
type Resolution = Receiver<Result<(Vec<Ipv4Addr>, Option<Ipv4Addr>), String>>;

/// A client's control.
pub struct ClientPlane {
    /// The configuration file and what the command line set.
    pub path: PathBuf,
    /// The command line's server.
    pub overrides: ClientRelayOverrides,
    /// The configuration in force.
    pub cfg: ClientRelayConfig,
    /// The privileged helper (or `None` when it could not be started).
    pub helper: Option<Helper>,
    /// Woken when a resolution ends.
    pub waker: Arc<Waker>,
    /// A resolution under way.
    pub resolver: Option<Resolution>,
    /// Whether the TUN offloads are on (for the summary).
    pub offloads: bool,
    /// `MaxPeers` at start-up: the allocation a reload may lower it within.
    pub allocated_peers: u32,
    /// The servers (`ServerAddress A B ...`), once their names are resolved.
    pub servers: ServerList,
    /// A change of server to hand to the worker at the next tick (failover).
    pub switch: Option<Switch>,
    /// Whether the list was asked of the resolver once (names after a literal first
    /// server are resolved once at start-up, then when the client asks).
    pub list_asked: bool,
    /// The UPnP port mapping under way or made (`UPnP yes`), removed at the end.
    pub upnp: Option<super::upnp::Upnp>,
}

/// A client's servers: the hosts of `ServerAddress`, in order, and `ServerAddress2`.
pub fn server_hosts(cfg: &ClientRelayConfig) -> Option<(Vec<Host>, Option<Host>)> {
    let first = cfg.server_address.clone()?;
    let all = std::iter::once(first).chain(cfg.server_fallbacks.iter().cloned()).collect();
    Some((all, cfg.server_address2.clone()))
}

/// The list of servers when every host is an address literal (no resolution needed).
pub fn literal_servers(cfg: &ClientRelayConfig) -> ServerList {
    let Some((hosts, secondary)) = server_hosts(cfg) else { return ServerList::default() };
    let literals: Option<Vec<Ipv4Addr>> = hosts.iter().map(Host::ipv4).collect();
    match (literals, secondary.as_ref().map(Host::ipv4)) {
        (Some(list), None) => ServerList::new(list, None),
        (Some(list), Some(Some(s))) => ServerList::new(list, Some(s)),
        _ => ServerList::default(),
    }
}

impl ClientPlane {
    /// The server's hosts in force.
    fn hosts(&self) -> Option<(Vec<Host>, Option<Host>)> {
        server_hosts(&self.cfg)
    }

    /// Resolves the servers' names on a thread (a new request replaces one under way):
    /// each host of the list gives all its global IPv4 addresses; one that does not
    /// resolve is skipped (and logged), unless none does.
    fn resolve(&mut self) {
        self.list_asked = true;
        let Some((hosts, secondary)) = self.hosts() else { return };
        let (tx, rx) = mpsc::channel();
        let waker = self.waker.clone();
        let spawned = thread::Builder::new().name("resolver".into()).spawn(move || {
            let mut all = Vec::new();
            let mut first_error = None;
            for h in &hosts {
                match resolve::all_ipv4(h) {
                    Ok(list) => all.extend(list),
                    Err(e) => {
                        if hosts.len() > 1 {
                            warn!("Teredo server {h}: {e}");
                        }
                        first_error.get_or_insert(e);
                    }
                }
            }
            let r = if all.is_empty() {
                Err(first_error.unwrap_or_else(|| "no server".into()))
            } else {
                match &secondary {
                    Some(h) => resolve::ipv4(h).map(|s| (all, Some(s))),
                    None => Ok((all, None)),
                }
            };
            let _ = tx.send(r);
            waker.wake();
        });
        match spawned {
            Ok(_) => self.resolver = Some(rx),
            Err(e) => warn!("cannot resolve the Teredo server: {e}"),
        }
    }
}

impl Plane for ClientPlane {
    fn event(&mut self, event: Event) {
        match event {
            Event::Up { address, mtu } => {
                match TeredoAddress::from_ipv6(&address) {
                    Some(t) => info!(
                        "New Teredo address {address}, MTU {mtu} (server {}, mapped {}:{})",
                        t.server, t.mapped_addr, t.mapped_port
                    ),
                    None => info!("New Teredo address {address}, MTU {mtu}"),
                }
                if let Some(h) = self.helper.as_mut() {
                    match h.up(address, mtu) {
                        Ok(r) if r.is_success() => {}
                        Ok(r) => warn!("interface configuration refused or failed: {r:?}"),
                        Err(e) => warn!("privileged helper: {e}"),
                    }
                }
            }
            Event::Down => {
                warn!("Lost Teredo connectivity: the server does not answer");
                if let Some(h) = self.helper.as_mut()
                    && let Err(e) = h.down()
                {
                    warn!("privileged helper: {e}");
                }
            }
            Event::NatBehaviour(NatKind::SameMapping) => {
                info!("NAT: one mapping for both server addresses (cone or restricted NAT)")
            }
            Event::NatBehaviour(NatKind::Symmetric) => warn!(
                "NAT: symmetric NAT detected (the server's two addresses saw different mappings): \
                 Teredo peers behind some NATs may be unreachable directly (RFC 6081's extensions \
                 help where they can); relays still work"
            ),
            Event::NatBehaviour(NatKind::Unknown) => {
                info!("NAT: behaviour unknown (no answer from the server's secondary address)")
            }
            Event::ResolveServer => self.resolve(),
            Event::ServerUnreachable { server } => {
                self.switch = self.servers.failed(server);
                match self.switch {
                    Some(Switch::Now(next, _)) => {
                        warn!("Teredo server {server} does not answer: qualifying with {next}")
                    }
                    Some(Switch::Later(first, _)) => warn!(
                        "Teredo server {server} does not answer, nor any other of the list: \
                         starting over with {first} after the restart delay"
                    ),
                    None => {}
                }
            }
        }
    }

    fn tick(&mut self, workers: &mut Workers) {
        match self.switch.take() {
            Some(Switch::Now(primary, secondary)) => {
                workers.send(0, Command::SetServer { primary, secondary });
            }
            Some(Switch::Later(primary, secondary)) => {
                workers.send(0, Command::SetServerLater { primary, secondary });
            }
            None => {}
        }
        // A list with host names after a literal first server: the client qualifies with
        // the first at once, and the list is resolved meanwhile for the failover.
        if !self.list_asked && self.servers.is_empty() && self.resolver.is_none() {
            self.resolve();
        }
        let Some(rx) = &self.resolver else { return };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Err("resolver stopped".into()),
        };
        self.resolver = None;
        match result {
            Ok((list, secondary)) => {
                self.servers = ServerList::new(list, secondary);
                if self.servers.len() > 1 {
                    info!("{} Teredo servers, in order of use", self.servers.len());
                }
                if let Some((primary, secondary)) = self.servers.current() {
                    workers.send(0, Command::SetServer { primary, secondary });
                }
            }
            Err(e) => {
                warn!("Teredo server: {e}");
                workers.send(0, Command::ResolutionFailed);
            }
        }
    }

    fn reload(&mut self, workers: &Workers) -> Option<Observability> {
        let overrides = self.overrides.clone();
        let new = reload::read(&self.path, |p| config::load_client_relay(p, &overrides))?;
        let new = reload::client_relay(&self.path, &self.cfg, new, self.allocated_peers);
        if new.max_peers != self.cfg.max_peers {
            info!("MaxPeers is now {}", new.max_peers);
            workers.set_max_peers(new.max_peers as usize);
        }
        let server_changed = server_hosts(&new) != server_hosts(&self.cfg);
        self.cfg = new;
        if server_changed {
            info!(
                "Teredo server is now {}: qualifying with it",
                self.cfg.server_address.as_ref().map_or_else(String::new, ToString::to_string)
            );
            self.servers = literal_servers(&self.cfg);
            match self.servers.current() {
                Some((primary, secondary)) => {
                    workers.send(0, Command::SetServer { primary, secondary });
                }
                None => self.resolve(),
            }
        } else {
            // As Miredo on SIGHUP (Debian's ifupdown hook sends it when an interface comes
            // up): the network may have changed, so qualify again at once.
            info!("SIGHUP: soliciting the Teredo server again");
            workers.send(0, Command::SolicitNow);
        }
        Some(reload::client_relay_observability(&self.cfg))
    }

    fn summary(&self, last: &[Snapshot]) -> String {
        summary::tunnel_line(last, self.offloads)
    }

    fn finish(&mut self) {
        // RFC 6081 §5.3.5: the IGD's mapping goes with the client.
        if let Some(u) = self.upnp.take() {
            u.remove();
        }
        if let Some(h) = self.helper.take()
            && let Err(e) = h.finish()
        {
            warn!("privileged helper: {e}");
        }
    }
}
