//! The control of a relay (`teredo run`, `RelayType cone`): it has nothing to do off the
//! packet path but reload, where only the log level and the metrics can change (the
//! interface, the prefix, the socket and the table were set up as root).

use std::path::PathBuf;

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
}

/// What a reload may change of `cfg` without new privileges, besides the role's own.
pub fn observability(cfg: &ClientRelayConfig) -> Observability {
    Observability { metrics: cfg.metrics_address, log_level: cfg.log_level }
}

/// The directives of `miredo.conf` that take a restart, and whether each changed.
pub fn restart_list(old: &ClientRelayConfig, new: &ClientRelayConfig) -> [(&'static str, bool); 9] {
    [
        ("RelayType", old.relay_type != new.relay_type),
        ("Prefix", old.prefix != new.prefix),
        ("InterfaceMTU", old.interface_mtu != new.interface_mtu),
        ("InterfaceName", old.interface_name != new.interface_name),
        ("BindAddress", old.bind_address != new.bind_address),
        ("BindPort", old.bind_port != new.bind_port),
        ("SyslogFacility", old.syslog_facility != new.syslog_facility),
        ("ClientHook", old.client_hook != new.client_hook),
        ("MaxPeers", old.max_peers != new.max_peers),
    ]
}

impl Plane for RelayPlane {
    fn reload(&mut self, _: &Workers) -> Option<Observability> {
        let overrides = ClientRelayOverrides::default();
        let new = reload::read(&self.path, |p| config::load_client_relay(p, &overrides))?;
        reload::needs_restart(&self.path, &restart_list(&self.cfg, &new));
        let o = observability(&new);
        self.cfg.metrics_address = new.metrics_address;
        self.cfg.log_level = new.log_level;
        Some(o)
    }

    fn summary(&self, last: &[Snapshot]) -> String {
        summary::tunnel_line(last, self.offloads)
    }
}
