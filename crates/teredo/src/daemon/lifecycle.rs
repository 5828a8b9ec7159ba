//! One daemon lifecycle for `teredo run` and `teredo server`, in Miredo's order
//! (miredo-facts §1.3, §2.2): set-up as root and single-threaded (the role's
//! `prepare` closure of [`run`], which reads the configuration and opens the sockets and the TUN);
//! detach unless `-f`; logging; the PID file; the role's [`Daemon::after_detach`] (a
//! client forks its privileged helper there, as the daemon's own child); the control
//! socket and the metrics listener; signals blocked; root dropped for good; file access
//! cut down (Landlock, before any thread); then the workers; then the rest of the sandbox
//! (`teredo_net::sandbox`: not dumpable, resource limits, the seccomp filter on every
//! thread); and the control thread ([`Control::run`]) until a termination signal.

use std::path::PathBuf;
use std::sync::Arc;

use teredo_net::control::ControlListener;
use teredo_net::detach::{self, Detached};
use teredo_net::privileges::{self, User};
use teredo_net::sandbox::landlock::{self, Outcome, Paths};
use teredo_net::sandbox::{self, Kind, Limits};
use teredo_net::waker::Waker;
use teredo_net::{pidfile, signals};
use teredo_proto::tunnel::MAX_RANDOM_PEERS;
use tracing::{info, warn};

use super::control::{self, Control, Observability, Plane};
use super::logging::{self, Target};
use super::metrics::Endpoint;
use super::notify::Notifier;
use super::status::Identity;
use super::worker::Workers;
use super::{DaemonArgs, StartError};
use crate::config::LogLevel;

/// What the lifecycle needs to know of a prepared daemon.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `SyslogFacility`'s code.
    pub facility: u8,
    /// `LogLevel` and `MetricsAddress`.
    pub observability: Observability,
}

/// One role's daemon, prepared as root.
pub trait Daemon: Sized {
    /// The logging settings and the metrics address.
    fn settings(&self) -> Settings;
    /// After detaching, still root and single-threaded; `detached` says whether it did.
    fn after_detach(&mut self, detached: bool) -> Result<(), StartError> {
        let _ = detached;
        Ok(())
    }
    /// The files a reload reads (the configuration file and the files it names): their
    /// directories stay readable under Landlock (a file an editor replaces is a new one).
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Unprivileged now: starts the workers (which wake `waker` with their reports).
    fn start(self, user: &User, waker: Arc<Waker>) -> Result<Started, StartError>;
}

/// A daemon whose workers run.
pub struct Started {
    /// The role's control.
    pub plane: Box<dyn Plane>,
    /// The workers.
    pub workers: Workers,
    /// What the daemon is, for its status.
    pub identity: Identity,
}

/// The names of a daemon.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    /// Prefix of the messages on standard error, e.g. "teredo run".
    pub who: &'static str,
    /// The syslog identity.
    pub ident: &'static str,
    /// The PID file when detached and none is given.
    pub pidfile: &'static str,
}

/// Runs a daemon through its whole life; returns the exit status.
pub fn run<D: Daemon>(
    names: Names,
    args: &DaemonArgs,
    prepare: impl FnOnce() -> Result<D, StartError>,
) -> u8 {
    if args.foreground {
        logging::init(Target::foreground(), LogLevel::Info);
    }
    let daemon = match prepare() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{}: {e}", names.who);
            return 1;
        }
    };
    let settings = daemon.settings();
    let mut detached = None;
    if args.foreground {
        logging::set_level(settings.observability.log_level);
    } else {
        // SAFETY: no thread is started before this point (the signal, control and worker
        // threads all come after the detach).
        match unsafe { detach::detach() } {
            Ok(d) => detached = Some(d),
            Err(e) => {
                eprintln!("{}: cannot detach: {e}", names.who);
                return 1;
            }
        }
        logging::init(
            Target::Syslog { facility: settings.facility, ident: names.ident },
            settings.observability.log_level,
        );
    }
    let status = match serve(names, args, daemon, settings, &mut detached) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            if args.foreground || detached.is_some() {
                eprintln!("{}: {e}", names.who);
            }
            1
        }
    };
    if let Some(d) = detached.as_mut() {
        d.failed(status);
    }
    status
}

fn serve<D: Daemon>(
    names: Names,
    args: &DaemonArgs,
    mut daemon: D,
    settings: Settings,
    detached: &mut Option<Detached>,
) -> Result<(), StartError> {
    let pidfile = args.pidfile.clone().or_else(|| (!args.foreground).then(|| PathBuf::from(names.pidfile)));
    let _pid = match &pidfile {
        Some(path) => Some(pidfile::create(path).map_err(|e| StartError::new(path.display(), e))?),
        None => None,
    };
    let user = args.user()?;
    daemon.after_detach(detached.is_some())?;
    let listener = ControlListener::bind().map_err(|e| StartError::new("control socket", e))?;
    let metrics = match settings.observability.metrics {
        Some(a) => Some(Endpoint::bind(a).map_err(|e| StartError::new(format!("MetricsAddress {a}"), e))?),
        None => None,
    };
    // Connected now: after a chroot the socket's path may be out of reach.
    let notify = Notifier::from_env();
    signals::block().map_err(|e| StartError::new("blocking signals", e))?;
    privileges::drop_privileges(&user, args.chroot.as_deref()).map_err(|e| StartError(e.to_string()))?;
    let waker = Arc::new(Waker::new().map_err(|e| StartError::new("wake-up channel", e))?);
    restrict_files(&daemon.files());
    let signals = control::signal_thread(waker.clone())?;
    let started = daemon.start(&user, waker.clone())?;
    enter_sandbox(args)?;
    if let Some(m) = &metrics {
        info!("metrics on http://{}/metrics", m.address);
    }
    let control = Control {
        plane: started.plane,
        workers: started.workers,
        waker,
        listener,
        metrics,
        identity: started.identity,
        uid: user.uid,
        observability: settings.observability,
    };
    if let Some(d) = detached.as_mut() {
        d.ready();
    }
    control.run(signals, notify)
}

/// Descriptors a daemon may open after start-up besides those it holds: a client's random
/// sockets, then a margin for control and metrics connections (served one at a time),
/// UPnP, name resolution, reading the configuration again, a new metrics listener.
const DESCRIPTOR_HEADROOM: u64 = MAX_RANDOM_PEERS as u64 + 64;

/// Landlock for the daemon (best effort, logged): read beneath the directories of
/// `files`, the name service's files and the libraries its modules live in; syslog's
/// socket; nothing else.
fn restrict_files(files: &[PathBuf]) {
    let dir = |f: &PathBuf| match f.parent() {
        Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        Some(p) => p.to_path_buf(),
        None => f.clone(),
    };
    let mut read: Vec<PathBuf> = files.iter().map(dir).collect();
    read.extend(landlock::NAME_SERVICE.iter().map(PathBuf::from));
    let paths = Paths {
        read,
        execute: landlock::LIBRARIES.iter().map(PathBuf::from).collect(),
        connect: vec![PathBuf::from(landlock::SYSLOG)],
    };
    match sandbox::restrict_files(&paths) {
        Ok(Outcome::Full) => info!("sandbox: Landlock on"),
        Ok(Outcome::Partial) => info!("sandbox: Landlock on, in part (an older kernel ABI)"),
        Ok(Outcome::None) => warn!("sandbox: this kernel has no Landlock: file access is not restricted"),
        Err(e) => warn!("sandbox: Landlock: {e}: file access is not restricted"),
    }
}

/// The rest of the sandbox, on every thread (`teredo_net::sandbox::enter`); a failure
/// stops the daemon (it never runs less confined than it says).
fn enter_sandbox(args: &DaemonArgs) -> Result<(), StartError> {
    let limits = Limits { no_process: false, no_file_writes: true, descriptor_headroom: DESCRIPTOR_HEADROOM };
    let entered =
        sandbox::enter(Kind::Daemon, limits, !args.no_seccomp).map_err(|e| StartError::new("sandbox", e))?;
    if entered.seccomp {
        info!("sandbox: seccomp filter on every thread");
    }
    for s in &entered.skipped {
        info!("sandbox: without {s}");
    }
    Ok(())
}
