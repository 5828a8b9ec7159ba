//! BIRD 2 in the lab: the BGP daemons of the anycast topology ([`crate::Lab::anycast_relay`]),
//! each started inside its own namespace in the foreground with a configuration and a
//! control socket of its own (`bird -f -c CONF -s SOCKET -P PIDFILE`), never as the system
//! service, and asked through that socket (`birdc -s SOCKET`).
//!
//! The configurations are the ones the project ships, `contrib/bird/relay.conf` and
//! `contrib/bird/router.conf`, written for the lab's relay 1 and router: relay `k` gets
//! relay 1's file with its own router id and addresses put in ([`relay_config`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::error::{LabError, Result};
use crate::lab::Relay;
use crate::node::Node;
use crate::wait::wait_for;

/// The daemon.
pub const BIRD: &str = "bird";
/// Its client.
pub const BIRDC: &str = "birdc";

/// The shipped relay configuration (for relay 1).
pub const RELAY_CONF: &str = include_str!("../../../contrib/bird/relay.conf");
/// The shipped router configuration (for the lab's router and relays 1 and 2).
pub const ROUTER_CONF: &str = include_str!("../../../contrib/bird/router.conf");

/// The configuration of anycast relay `relay` (its index from 1): the shipped one, whose
/// example values are relay 1's, with this relay's router id and addresses.
pub fn relay_config(relay: &Relay, index: u8) -> Result<String> {
    let mut text = RELAY_CONF.to_owned();
    for (from, to) in [
        ("router id 192.0.2.17;", format!("router id {};", relay.ipv4)),
        ("2001:db8:11::", format!("2001:db8:{:x}::", 0x10 + u16::from(index))),
    ] {
        if !text.contains(from) {
            return Err(LabError::Invalid(format!("contrib/bird/relay.conf no longer contains {from:?}")));
        }
        text = text.replace(from, &to);
    }
    Ok(text)
}

/// A running BIRD.
#[derive(Debug)]
pub struct Bird {
    daemon: Daemon,
    node: Node,
    socket: PathBuf,
}

impl Bird {
    /// Writes `config` to `<artifacts>/<role>-<name>.conf` and starts BIRD with it in
    /// `node`; returns once its control socket answers.
    pub fn start(node: &Node, name: &str, config: &str) -> Result<Self> {
        let conf = node.write_artifact(&format!("{name}.conf"), config)?;
        // A Unix socket's path is short (108 bytes): not under the artifacts.
        let socket = std::env::temp_dir().join(format!("{}-{name}.ctl", node.ns()));
        let _ = std::fs::remove_file(&socket);
        let pid = node.artifact_path(&format!("{name}.pid"));
        let args = [
            "-f",
            "-c",
            &conf.to_string_lossy(),
            "-s",
            &socket.to_string_lossy(),
            "-P",
            &pid.to_string_lossy(),
        ]
        .map(|s| s.to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = node.spawn(name, BIRD, &args)?;
        let bird = Self { daemon, node: node.clone(), socket };
        wait_for(&format!("BIRD's control socket in {}", node.ns()), Duration::from_secs(10), || {
            bird.birdc(&["show", "status"]).is_ok_and(|s| s.contains("Daemon is up"))
        })
        .map_err(|e| LabError::Invalid(format!("{e}; log:\n{}", bird.daemon.log())))?;
        Ok(bird)
    }

    /// Runs `birdc -s SOCKET ARGS` in the node and returns its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-s".to_owned(), self.socket.to_string_lossy().into_owned()];
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        self.node.exec(BIRDC, &full)
    }

    /// Waits until BGP session `protocol` is established, at most `timeout`.
    pub fn wait_established(&self, protocol: &str, timeout: Duration) -> Result<()> {
        wait_for(&format!("BGP session {protocol} in {}", self.node.ns()), timeout, || {
            self.birdc(&["show", "protocols", protocol]).is_ok_and(|s| s.contains("Established"))
        })
    }

    /// The daemon (its log, its process).
    pub fn daemon(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Err(e) = self.daemon.stop() {
            eprintln!("lab: stopping {}: {e}", self.daemon.name());
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
