//! Debian's Miredo 1.2.6 in the lab: write lab configuration files and start
//! `miredo-server`, a `miredo` client and a `miredo` relay inside lab namespaces, always in
//! the foreground with the lab's own config and pidfile (`-f -c FILE -p PIDFILE`), never
//! as the system service. These runs are the reference behaviour our own daemons are
//! compared with; the `*_with` functions start any implementation that takes Miredo's
//! configuration files and daemon flags (our `teredo`) in the same role.
//!
//! The client runs `/etc/miredo/client-hook` through `miredo-privproc`; the hook calls
//! `/sbin/ip`, which acts on the client's namespace, so the Teredo address and the
//! default route appear on the client's interface there.

use std::time::Duration;

use crate::cmd::have_program;
use crate::daemon::Daemon;
use crate::error::{LabError, Result};
use crate::lab::{Client, Relay, Server};
use crate::node::Node;
use crate::wait::{wait_for, wait_until};

/// The client and relay daemon.
pub const MIREDO: &str = "miredo";
/// The server daemon.
pub const MIREDO_SERVER: &str = "miredo-server";
/// The default name of the Teredo interface in lab configs.
pub const IFACE: &str = "teredo";
/// How long the start helpers wait for a daemon to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks that Miredo can run here: both programs, `/dev/net/tun`, and the client hook.
pub fn check_available() -> Result<()> {
    let missing: Vec<&str> = [MIREDO, MIREDO_SERVER].into_iter().filter(|p| !have_program(p)).collect();
    if !missing.is_empty() {
        return Err(LabError::Unavailable(format!("missing {} (run .ci/install-deps)", missing.join(", "))));
    }
    for path in ["/dev/net/tun", "/etc/miredo/client-hook"] {
        if !std::path::Path::new(path).exists() {
            return Err(LabError::Unavailable(format!("{path} does not exist")));
        }
    }
    Ok(())
}

/// A `miredo-server.conf` for the lab server (both addresses given explicitly).
pub fn server_config(server: &Server) -> String {
    format!(
        "# teredo-lab: miredo-server\nServerBindAddress {}\nServerBindAddress2 {}\n",
        server.primary, server.secondary
    )
}

/// A client `miredo.conf`: `RelayType client`, the lab server, interface `iface`.
pub fn client_config(server: &Server, iface: &str) -> String {
    format!(
        "# teredo-lab: miredo client\nRelayType client\nInterfaceName {iface}\nServerAddress {}\n",
        server.primary
    )
}

/// A relay `miredo.conf`: `RelayType cone`, interface `iface`.
pub fn relay_config(iface: &str) -> String {
    format!("# teredo-lab: miredo relay\nRelayType cone\nInterfaceName {iface}\n")
}

/// Writes `config` to `<artifacts>/<role>-<name>.conf` and starts `program -f -c CONF -p
/// PIDFILE` in `node`. Miredo skips a last line without a newline, so one is added if
/// missing.
pub fn start(node: &Node, name: &str, program: &str, config: &str) -> Result<Daemon> {
    if program == MIREDO || program == MIREDO_SERVER {
        check_available()?;
    }
    start_with(node, name, &[program], config)
}

/// Like [`start`] for any implementation that takes Miredo's daemon flags: `command` is
/// the program and its leading arguments (e.g. `["/path/to/teredo", "run"]`), followed by
/// `-f -c CONF -p PIDFILE`.
pub fn start_with(node: &Node, name: &str, command: &[&str], config: &str) -> Result<Daemon> {
    let (program, lead) =
        command.split_first().ok_or_else(|| LabError::Invalid(format!("empty command for {name}")))?;
    let mut config = config.to_owned();
    if !config.ends_with('\n') {
        config.push('\n');
    }
    let conf = node.write_artifact(&format!("{name}.conf"), &config)?;
    let pid = node.artifact_path(&format!("{name}.pid"));
    let conf = conf.to_string_lossy().into_owned();
    let pid = pid.to_string_lossy().into_owned();
    let mut args: Vec<&str> = lead.to_vec();
    args.extend(["-f", "-c", &conf, "-p", &pid]);
    node.spawn(name, program, &args)
}

/// Starts `miredo-server` on the lab server and waits until it listens on UDP 3544 on
/// both addresses.
pub fn start_server(server: &Server) -> Result<Daemon> {
    check_available()?;
    start_server_with(server, &[MIREDO_SERVER])
}

/// Starts a Teredo server `command` (see [`start_with`]) with [`server_config`] and waits
/// until something listens on UDP 3544 on both server addresses.
pub fn start_server_with(server: &Server, command: &[&str]) -> Result<Daemon> {
    let d = start_with(server, &program_name(command), command, &server_config(server))?;
    let want = [format!("{}:3544", server.primary), format!("{}:3544", server.secondary)];
    let ready = wait_for("the server to listen on UDP 3544", READY_TIMEOUT, || {
        let out = server.exec("ss", &["-H", "-n", "-l", "-u"]).unwrap_or_default();
        want.iter().all(|w| out.contains(w.as_str()))
    });
    check_ready(d, ready)
}

/// Starts a `miredo` client in `client` that uses the lab server `server` and interface
/// `iface`. It does not wait for qualification: use
/// [`Node::wait_teredo_address`](crate::Node::wait_teredo_address).
pub fn start_client(client: &Client, server: &Server, iface: &str) -> Result<Daemon> {
    check_available()?;
    start_client_with(client, server, iface, &[MIREDO])
}

/// Starts a Teredo client `command` (see [`start_with`]) with [`client_config`].
pub fn start_client_with(client: &Client, server: &Server, iface: &str, command: &[&str]) -> Result<Daemon> {
    start_with(client, &format!("{}-{iface}", program_name(command)), command, &client_config(server, iface))
}

/// Starts a `miredo` relay (`RelayType cone`) on `relay` with interface `iface`, and waits
/// until the interface has its route to 2001::/32.
pub fn start_relay(relay: &Relay, iface: &str) -> Result<Daemon> {
    check_available()?;
    start_relay_with(relay, iface, &[MIREDO])
}

/// Starts a Teredo relay `command` (see [`start_with`]) with [`relay_config`] and waits
/// until `iface` carries the route to 2001::/32.
pub fn start_relay_with(relay: &Relay, iface: &str, command: &[&str]) -> Result<Daemon> {
    let d = start_with(relay, &format!("{}-{iface}", program_name(command)), command, &relay_config(iface))?;
    let ready = wait_until(&format!("the relay's route 2001::/32 on {iface}"), READY_TIMEOUT, || {
        let out = relay.ip(&["-6", "route", "show", "2001::/32", "dev", iface]);
        Ok(out.ok().filter(|o| !o.trim().is_empty()).map(drop))
    });
    check_ready(d, ready)
}

/// The file name of the program in `command`, to name its config, pidfile and log.
fn program_name(command: &[&str]) -> String {
    command
        .first()
        .and_then(|p| std::path::Path::new(p).file_name())
        .map_or_else(|| "daemon".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Turns a readiness timeout into an error that includes the daemon's log (the daemon is
/// stopped when dropped).
fn check_ready(mut d: Daemon, ready: Result<()>) -> Result<Daemon> {
    match ready {
        Ok(()) => Ok(d),
        Err(e) => {
            let running = d.is_running();
            Err(LabError::Invalid(format!(
                "{} not ready ({e}); running: {running}; log {}:\n{}",
                d.name(),
                d.log_path().display(),
                d.log()
            )))
        }
    }
}
