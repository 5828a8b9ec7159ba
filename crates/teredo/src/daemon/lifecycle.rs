//! One daemon lifecycle for `teredo run` and `teredo server`, in Miredo's order
//! (miredo-facts §1.3, §2.2): set-up as root and single-threaded (the role's
//! `prepare` closure of [`run`], which reads the configuration and opens the sockets and the TUN);
//! detach unless `-f`; logging; the PID file; the role's [`Daemon::after_detach`] (a
//! client forks its privileged helper there, as the daemon's own child); the control
//! socket and the metrics listener; signals blocked; root dropped for good; then the
//! workers and the control thread ([`Control::run`]) until a termination signal.

use std::path::PathBuf;
use std::sync::Arc;

use teredo_net::control::ControlListener;
use teredo_net::detach::{self, Detached};
use teredo_net::privileges::{self, User};
use teredo_net::waker::Waker;
use teredo_net::{pidfile, signals};
use tracing::info;

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
        match detach::detach() {
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
    let user = privileges::lookup_user(&args.user).map_err(|e| StartError(e.to_string()))?;
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
    let signals = control::signal_thread(waker.clone())?;
    let started = daemon.start(&user, waker.clone())?;
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
