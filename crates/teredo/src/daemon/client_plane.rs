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
use super::worker::{Command, Snapshot, Workers};
use super::{reload, resolve, summary};
use crate::config::{self, ClientRelayConfig, ClientRelayOverrides, Host};

/// A host-name resolution running on its own thread.
type Resolution = Receiver<Result<(Ipv4Addr, Option<Ipv4Addr>), String>>;

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
}

/// A client's server: `ServerAddress` and `ServerAddress2`.
fn server_hosts(cfg: &ClientRelayConfig) -> Option<(Host, Option<Host>)> {
    Some((cfg.server_address.clone()?, cfg.server_address2.clone()))
}

impl ClientPlane {
    /// The server's hosts in force.
    fn hosts(&self) -> Option<(Host, Option<Host>)> {
        server_hosts(&self.cfg)
    }

    /// Resolves the server's names on a thread (a new request replaces one under way).
    fn resolve(&mut self) {
        let Some((primary, secondary)) = self.hosts() else { return };
        let (tx, rx) = mpsc::channel();
        let waker = self.waker.clone();
        let spawned = thread::Builder::new().name("resolver".into()).spawn(move || {
            let r = resolve::ipv4(&primary).and_then(|p| match &secondary {
                Some(h) => resolve::ipv4(h).map(|s| (p, Some(s))),
                None => Ok((p, None)),
            });
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
                 Teredo peers behind other NATs may be unreachable directly; relays still work"
            ),
            Event::NatBehaviour(NatKind::Unknown) => {
                info!("NAT: behaviour unknown (no answer from the server's secondary address)")
            }
            Event::ResolveServer => self.resolve(),
        }
    }

    fn tick(&mut self, workers: &Workers) {
        let Some(rx) = &self.resolver else { return };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Err("resolver stopped".into()),
        };
        self.resolver = None;
        match result {
            Ok((primary, secondary)) => {
                workers.send(0, Command::SetServer { primary, secondary });
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
            match self.hosts() {
                Some((Host::Ipv4(p), s)) if s.as_ref().is_none_or(|s| s.ipv4().is_some()) => {
                    workers.send(
                        0,
                        Command::SetServer { primary: p, secondary: s.as_ref().and_then(Host::ipv4) },
                    );
                }
                _ => self.resolve(),
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
        if let Some(h) = self.helper.take()
            && let Err(e) = h.finish()
        {
            warn!("privileged helper: {e}");
        }
    }
}
