//! The daemons, `teredo run` (client or relay) and `teredo server`, on one engine:
//!
//! - [`lifecycle`]: start-up as root, detaching, the PID file, the privilege drop, and the
//!   end, shared by both commands;
//! - [`worker`]: the packet plane, one worker loop for the three roles ([`worker::Role`]);
//!   [`tunnel_worker`] (client and relay, with [`offload`]) and [`server`] implement it;
//! - [`control`]: the control plane, one thread that owns signals, the role's control
//!   ([`client_plane`], [`relay_plane`], the server's), the control socket ([`status`]),
//!   [`metrics`], readiness ([`notify`]) and [`reload`]s;
//! - [`logging`], [`resolve`], [`summary`]: logs, host names, the exit summary;
//! - [`discovery`]: a client's local discovery receiver (RFC 4380 §5.2.8); [`failover`]:
//!   its list of servers; `random_sockets`: its random sockets (RFC 6081 §5.4, §5.5);
//!   [`upnp`]: its UPnP port mapping (RFC 6081 §5.3.3);
//! - [`run`] and [`server`]: each command's arguments and set-up.
//!
//! Miredo's daemon flags are [`DaemonArgs`]; whose defaults apply is a [`Flavour`].

pub mod client_plane;
pub mod control;
pub mod discovery;
pub mod failover;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod offload;
mod random_sockets;
pub mod relay_health;
pub mod relay_plane;
pub mod reload;
pub mod resolve;
pub mod run;
pub mod server;
pub mod status;
pub mod summary;
mod tunnel_core;
pub mod tunnel_worker;
pub mod upnp;
pub mod worker;

use std::path::PathBuf;

use clap::Args;

/// The flags `miredo` and `miredo-server` take (miredo-facts §1.2), with their long
/// aliases.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Configuration file (Miredo's format).
    #[arg(short = 'c', long = "config", visible_alias = "conf", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Stay in the foreground and log to standard error.
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// PID file (created and locked; default in /run when detached).
    #[arg(short = 'p', long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Unprivileged user the packet path runs as (never root): teredo, the package's
    /// system user, or nobody where no teredo user exists.
    #[arg(
        short = 'u',
        long = "user",
        visible_alias = "username",
        value_name = "USER",
        default_value = DEFAULT_USER
    )]
    pub user: String,
    /// Directory to chroot into after set-up.
    #[arg(short = 't', long = "chrootdir", visible_alias = "chroot", value_name = "DIR")]
    pub chroot: Option<PathBuf>,
    /// Run without the seccomp filter (for kernels or C libraries whose system calls it
    /// does not know); Landlock, the resource limits and the privilege drop stay.
    #[arg(long = "no-seccomp")]
    pub no_seccomp: bool,
}

/// The user the daemons drop to by default: the system user the package creates.
pub const DEFAULT_USER: &str = "teredo";
/// The user taken instead of [`DEFAULT_USER`] where that does not exist.
pub const FALLBACK_USER: &str = "nobody";

impl DaemonArgs {
    /// The user to drop to: `-u`'s, where [`DEFAULT_USER`] (given or by default) falls
    /// back to [`FALLBACK_USER`] when the system has no such user.
    pub fn user(&self) -> Result<teredo_net::privileges::User, StartError> {
        use teredo_net::privileges::{PrivilegeError, lookup_user};
        match lookup_user(&self.user) {
            Err(PrivilegeError::UnknownUser(_)) if self.user == DEFAULT_USER => lookup_user(FALLBACK_USER),
            other => other,
        }
        .map_err(|e| StartError(e.to_string()))
    }
}

/// Debian's client hook, which Miredo runs on every state change of its client
/// (miredo-facts §1.8).
pub const MIREDO_CLIENT_HOOK: &str = "/etc/miredo/client-hook";

/// Whose defaults a daemon takes where the command line and the file leave them out:
/// teredo's own (`teredo run`, `teredo server`), or Miredo's when the binary is started as
/// `miredo` or `miredo-server` (`crate::cli::miredo`): Miredo's name in messages and in
/// syslog, its PID file `/var/run/NAME.pid`, and for a client Debian's hook
/// [`MIREDO_CLIENT_HOOK`] when the file names no `ClientHook` and the hook exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flavour {
    /// teredo's defaults.
    #[default]
    Teredo,
    /// Miredo's defaults.
    Miredo,
}

impl Flavour {
    /// The hook a client runs when its file names none: Debian's, where it exists, for
    /// Miredo's flavour; none (teredo configures the interface itself) otherwise.
    pub fn default_client_hook(self) -> Option<PathBuf> {
        match self {
            Self::Teredo => None,
            Self::Miredo => Some(PathBuf::from(MIREDO_CLIENT_HOOK)).filter(|p| p.exists()),
        }
    }
}

/// Where the directive `name` of the configuration file `path` is: `FILE:LINE`, or `FILE`
/// when the file does not set it (a default, or a value from the command line).
pub fn locate(path: &std::path::Path, name: &str) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    match crate::config::directive_line(&text, name) {
        Some(line) => format!("{}:{line}: {name}", path.display()),
        None => format!("{}: {name}", path.display()),
    }
}

/// Reads a daemon's configuration file with `load`, printing every diagnostic on standard
/// error prefixed with `who`. As Miredo does, a missing file is no error when the server
/// was given on the command line (`from_command_line`): `empty` then reads an empty file
/// with the command line's values.
pub fn read_config<T>(
    who: &str,
    path: &std::path::Path,
    from_command_line: bool,
    load: impl FnOnce(&std::path::Path) -> Result<crate::config::Parsed<T>, crate::config::LoadError>,
    empty: impl FnOnce(&str) -> crate::config::Parsed<T>,
) -> Result<T, StartError> {
    let parsed = match load(path) {
        Ok(p) => p,
        Err(_) if from_command_line && !path.exists() => empty(&path.display().to_string()),
        Err(e) => return Err(StartError(e.to_string())),
    };
    for d in &parsed.diagnostics {
        match d.severity {
            crate::config::Severity::Warning => eprintln!("{who}: warning: {d}"),
            crate::config::Severity::Error => eprintln!("{who}: {d}"),
        }
    }
    parsed.config.ok_or_else(|| StartError(format!("{}: invalid configuration", path.display())))
}

/// A daemon start-up failure, with what to tell the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl StartError {
    /// A failure with context.
    pub fn new(context: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        Self(format!("{context}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn locate_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("teredo-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("miredo.conf");
        std::fs::write(&f, "RelayType client\nServerAddress teredo.example\n").unwrap();
        assert_eq!(locate(&f, "ServerAddress"), format!("{}:2: ServerAddress", f.display()));
        assert_eq!(locate(&f, "BindAddress"), format!("{}: BindAddress", f.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
