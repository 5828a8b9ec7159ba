//! The control of a relay (`teredo run`, `RelayType cone`): it has nothing to do off the
//! packet path but reload, where only the log level and the metrics can change (the
//! interface, the prefix, the socket and the table were set up as root).

use std::path::PathBuf;

use tracing::info;

use super::control::{Observability, Plane};
use super::worker::{Snapshot, Workers};
use super::{reload, summary};
use crate::config::{self, ClientRelayConfig, ClientRelayOverrides};

/// A relay's control.
pub struct RelayPlane {
    /// The configuration file.
    pub path: PathBuf,
    /// The configuration in force.
    pub cfg: ClientRelayConfig,
    /// Whether the TUN offloads are on (for the summary).
    pub offloads: bool,
    /// `MaxPeers` at start-up: the allocation a reload may lower it within.
    pub allocated_peers: u32,
}

impl Plane for RelayPlane {
    fn reload(&mut self, workers: &Workers) -> Option<Observability> {
        let overrides = ClientRelayOverrides::default();
        let new = reload::read(&self.path, |p| config::load_client_relay(p, &overrides))?;
        let new = reload::client_relay(&self.path, &self.cfg, new, self.allocated_peers);
        if new.max_peers != self.cfg.max_peers {
            info!("MaxPeers is now {}", new.max_peers);
            workers.set_max_peers(new.max_peers as usize);
        }
        self.cfg = new;
        Some(reload::client_relay_observability(&self.cfg))
    }

    fn summary(&self, last: &[Snapshot]) -> String {
        summary::tunnel_line(last, self.offloads)
    }
}
