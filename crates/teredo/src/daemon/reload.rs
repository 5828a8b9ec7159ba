//! Reading a daemon's configuration file again on SIGHUP: what can change without new
//! privileges takes effect, what needs a restart is logged as such, and a file with an
//! error is refused with its `FILE:LINE` diagnostics while the daemon keeps running on
//! the configuration it has. This file is the one place that says which directive is
//! which.
//!
//! Reloadable: a client's `ServerAddress` and `ServerAddress2`, `MaxPeers` up to the value
//! the daemon started with (the table's allocation), `LogLevel` and `MetricsAddress`, in
//! both files. Everything else was applied as root at start-up.

use std::path::Path;

use tracing::{error, warn};

use super::control::Observability;
use crate::config::{ClientRelayConfig, LoadError, Parsed, ServerConfig, Severity};

/// Reads `path` with `load`, logging every diagnostic; `None` when it cannot be used.
pub fn read<T>(path: &Path, load: impl FnOnce(&Path) -> Result<Parsed<T>, LoadError>) -> Option<T> {
    let parsed = match load(path) {
        Ok(p) => p,
        Err(e) => {
            error!("{e}: new configuration refused, keeping the running one");
            return None;
        }
    };
    for d in &parsed.diagnostics {
        match d.severity {
            Severity::Warning => warn!("{d}"),
            Severity::Error => error!("{d}"),
        }
    }
    if parsed.config.is_none() {
        error!("{}: new configuration refused, keeping the running one", path.display());
    }
    parsed.config
}

/// Logs each directive of `changed` whose value changed as needing a restart.
fn needs_restart(path: &Path, changed: &[(&str, bool)]) {
    for (name, _) in changed.iter().filter(|(_, c)| *c) {
        warn!("{}: changed, but it takes a restart of teredo to apply it", super::locate(path, name));
    }
}

/// The settings of `miredo.conf` the control thread applies.
pub fn client_relay_observability(cfg: &ClientRelayConfig) -> Observability {
    Observability { metrics: cfg.metrics_address, log_level: cfg.log_level }
}

/// The settings of `miredo-server.conf` the control thread applies.
pub fn server_observability(cfg: &ServerConfig) -> Observability {
    Observability { metrics: cfg.metrics_address, log_level: cfg.log_level }
}

/// The `miredo.conf` to run on after a reload that read `new` from `path`: `running` with
/// the reloadable directives of `new` (the server only for the same `RelayType`, `MaxPeers`
/// only up to `allocated`, the value at start-up); every other directive that changed is
/// logged as needing a restart, and stays as it runs.
pub fn client_relay(
    path: &Path,
    running: &ClientRelayConfig,
    new: ClientRelayConfig,
    allocated: u32,
) -> ClientRelayConfig {
    let same_role = running.relay_type == new.relay_type;
    let peers_fit = new.max_peers <= allocated;
    needs_restart(
        path,
        &[
            ("RelayType", !same_role),
            ("Prefix", running.prefix != new.prefix),
            ("InterfaceMTU", running.interface_mtu != new.interface_mtu),
            ("InterfaceName", running.interface_name != new.interface_name),
            ("BindAddress", running.bind_address != new.bind_address),
            ("BindPort", running.bind_port != new.bind_port),
            ("SyslogFacility", running.syslog_facility != new.syslog_facility),
            ("ClientHook", running.client_hook != new.client_hook),
            ("MaxPeers", !peers_fit),
            ("BubbleRate", running.bubble_rate != new.bubble_rate),
            // A relay's probed servers: resolved and given to their workers at start-up.
            ("ServerAddress", same_role && running.probe_servers != new.probe_servers),
            ("LocalDiscovery", running.local_discovery != new.local_discovery),
            ("ClientIdentifier", running.credentials != new.credentials),
            ("UPnP", running.upnp != new.upnp),
        ],
    );
    let mut cfg = running.clone();
    if same_role {
        cfg.server_address = new.server_address;
        cfg.server_address2 = new.server_address2;
    }
    if peers_fit {
        cfg.max_peers = new.max_peers;
    }
    cfg.metrics_address = new.metrics_address;
    cfg.log_level = new.log_level;
    cfg
}

/// The `miredo-server.conf` to run on after a reload (see [`client_relay`]).
pub fn server(path: &Path, running: &ServerConfig, new: ServerConfig) -> ServerConfig {
    needs_restart(
        path,
        &[
            ("ServerBindAddress", running.server_bind_address != new.server_bind_address),
            ("ServerBindAddress2", running.server_bind_address2 != new.server_bind_address2),
            ("Prefix", running.prefix != new.prefix),
            ("InterfaceMTU", running.interface_mtu != new.interface_mtu),
            ("SyslogFacility", running.syslog_facility != new.syslog_facility),
            ("ClientKeys", running.client_keys != new.client_keys),
            ("RequireAuthentication", running.require_authentication != new.require_authentication),
        ],
    );
    ServerConfig { metrics_address: new.metrics_address, log_level: new.log_level, ..running.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LogLevel, parse_client_relay};

    #[test]
    fn only_reloadable_directives_change() {
        let old = parse_client_relay("ServerAddress 192.0.2.1\nBindPort 3545\n", "c").config.unwrap();
        let new = parse_client_relay("ServerAddress 192.0.2.3\nBindPort 4000\nLogLevel debug\n", "c")
            .config
            .unwrap();
        let cfg = client_relay(Path::new("c"), &old, new, old.max_peers);
        assert_eq!(cfg.server_address, Some("192.0.2.3".parse().unwrap()));
        assert_eq!(cfg.log_level, LogLevel::Debug);
        assert_eq!(cfg.bind_port, 3545, "BindPort takes a restart");
        // A relay in the new file: the client keeps its server.
        let relay = parse_client_relay("RelayType cone\n", "c").config.unwrap();
        let cfg = client_relay(Path::new("c"), &old, relay, old.max_peers);
        assert_eq!(cfg.server_address, old.server_address);
        // MaxPeers within the allocation only.
        let fewer = parse_client_relay("ServerAddress 192.0.2.1\nMaxPeers 1000\n", "c").config.unwrap();
        assert_eq!(client_relay(Path::new("c"), &old, fewer.clone(), old.max_peers).max_peers, 1000);
        assert_eq!(client_relay(Path::new("c"), &fewer, old.clone(), 1000).max_peers, 1000);
    }
}
