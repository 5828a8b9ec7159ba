//! The control plane: one thread per daemon (the main thread, once the workers run) that
//! owns the signals (taken by a small `sigwait` thread and handed over), the role's
//! control ([`Plane`]: a client's privileged helper and name resolution), the control
//! socket behind `teredo status`, the metrics endpoint, readiness and the watchdog, and
//! reloading on SIGHUP. The packet threads never wait for it: it talks to them through
//! [`Workers`], and a slow client of its sockets only delays this thread.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use teredo_net::control::ControlListener;
use teredo_net::signals::{self, Signal};
use teredo_net::waker::Waker;
use teredo_proto::client;
use teredo_proto::probe::Outcome;
use tracing::{error, info, warn};

use super::metrics::{self, Endpoint};
use super::notify::Notifier;
use super::status::{self, Identity};
use super::worker::{MAX_WAIT, Report, Snapshot, Workers};
use super::{StartError, logging};
use crate::config::LogLevel;

/// How long the control thread waits for the workers' snapshots.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client of the control socket may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);
/// How long it may take to read the answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest request line.
const MAX_REQUEST: usize = 256;
/// Connections served per wake-up on each socket.
const ACCEPT_BURST: usize = 8;

/// What a reload may change without new privileges, besides the role's own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observability {
    /// `MetricsAddress`.
    pub metrics: Option<SocketAddr>,
    /// `LogLevel`.
    pub log_level: LogLevel,
}

/// The role-specific part of the control plane.
pub trait Plane {
    /// A client's qualification event from its worker.
    fn event(&mut self, event: client::Event) {
        let _ = event;
    }
    /// What became of a relay's probe of `server`.
    fn probe(&mut self, server: Ipv4Addr, outcome: Outcome) {
        let _ = (server, outcome);
    }
    /// Called at every wake-up, at least once a second (results of name resolution, a
    /// relay's health).
    fn tick(&mut self, workers: &mut Workers) {
        let _ = workers;
    }
    /// Adds the role's own keys to the daemon's status object (a relay's `health`).
    fn status(&self, object: &mut Map<String, Value>) {
        let _ = object;
    }
    /// A request of the control socket other than `status` (a relay's `drain` and
    /// `undrain`): the answer, or `None` when the role knows no such request.
    fn request(&mut self, request: &str) -> Option<Value> {
        let _ = request;
        None
    }
    /// SIGHUP: reads the configuration file again and applies what it can. `None` when the
    /// file was refused (the daemon keeps running on the old one).
    fn reload(&mut self, workers: &Workers) -> Option<Observability>;
    /// The line logged at exit, from the workers' last snapshots.
    fn summary(&self, last: &[Snapshot]) -> String;
    /// The daemon stops (a client takes its interface down).
    fn finish(&mut self) {}
}

/// Everything the control thread runs.
pub struct Control {
    /// The role's part.
    pub plane: Box<dyn Plane>,
    /// The workers.
    pub workers: Workers,
    /// Woken by the workers and the signal thread.
    pub waker: Arc<Waker>,
    /// The control socket.
    pub listener: ControlListener,
    /// The metrics endpoint, when configured.
    pub metrics: Option<Endpoint>,
    /// What the daemon is.
    pub identity: Identity,
    /// The user the daemon runs as (may use the control socket, besides root).
    pub uid: u32,
    /// The settings in force.
    pub observability: Observability,
}

/// Starts the thread that takes the daemon's (blocked) signals and hands them over.
pub fn signal_thread(waker: Arc<Waker>) -> Result<Receiver<Signal>, StartError> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let s = signals::wait();
                let last = matches!(s, Signal::Terminate(_));
                if tx.send(s).is_err() {
                    return;
                }
                waker.wake();
                if last {
                    return;
                }
            }
        })
        .map_err(|e| StartError::new("starting the signal thread", e))?;
    Ok(rx)
}

impl Control {
    /// Runs until a termination signal or a worker's failure; then stops the workers and
    /// the role. Returns an error when a worker failed.
    pub fn run(mut self, signals: Receiver<Signal>, notify: Notifier) -> Result<(), StartError> {
        notify.ready(&self.status_line());
        let mut failed = None;
        let mut next_watchdog = Instant::now();
        let mut denied = 0;
        'run: loop {
            let wait = notify.watchdog.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1));
            let ready = {
                let mut fds = vec![self.waker.as_fd(), self.listener.as_fd()];
                if let Some(m) = &self.metrics {
                    fds.push(m.listener().as_fd());
                }
                teredo_net::poll::readable(&fds, wait).unwrap_or_default()
            };
            if ready[0] {
                self.waker.drain();
            }
            while let Ok(s) = signals.try_recv() {
                match s {
                    Signal::Terminate(sig) => {
                        info!("signal {sig}: stopping");
                        break 'run;
                    }
                    Signal::Hangup => self.reload(&notify),
                }
            }
            while let Ok(r) = self.workers.reports.try_recv() {
                match r {
                    Report::Failed { worker, what } => {
                        error!("worker {worker} failed ({what}): stopping");
                        failed = Some(worker);
                        break 'run;
                    }
                    Report::Probe { server, outcome } => self.plane.probe(server, outcome),
                    Report::Client(e) => {
                        self.plane.event(e);
                        if matches!(e, client::Event::Up { .. } | client::Event::Down) {
                            notify.status(&self.status_line());
                        }
                    }
                }
            }
            self.plane.tick(&mut self.workers);
            let now_denied = teredo_net::sandbox::denied();
            if now_denied > denied {
                warn!(
                    "seccomp denied {} system call(s), {now_denied} in all (see the numbers on standard error)",
                    now_denied - denied
                );
                denied = now_denied;
            }
            if ready[1] {
                self.serve_control();
            }
            if ready[2] {
                self.serve_metrics();
            }
            if let Some(period) = notify.watchdog
                && Instant::now() >= next_watchdog
            {
                // Only while every worker goes round its loop: a stuck one gets the daemon
                // restarted.
                if self.workers.alive(MAX_WAIT * 4) {
                    notify.watchdog();
                }
                next_watchdog = Instant::now() + period;
            }
        }
        notify.stopping();
        let (last, join_failed) = self.workers.stop();
        self.plane.finish();
        info!("{}", self.plane.summary(&last));
        if failed.is_some() || join_failed {
            return Err(StartError("a worker failed".into()));
        }
        Ok(())
    }

    /// The daemon's status object now.
    fn status(&self, peers: bool) -> Value {
        let snaps = self.workers.snapshots(peers, SNAPSHOT_TIMEOUT);
        let mut v = status::to_json(&self.identity, &snaps, peers);
        if let Value::Object(o) = &mut v {
            self.plane.status(o);
        }
        v
    }

    fn status_line(&self) -> String {
        status::status_line(&self.status(false))
    }

    fn reload(&mut self, notify: &Notifier) {
        info!("SIGHUP: reloading {}", self.identity.config);
        notify.reloading();
        if let Some(o) = self.plane.reload(&self.workers) {
            if o.log_level != self.observability.log_level {
                logging::set_level(o.log_level);
                info!("LogLevel is now {:?}", o.log_level);
            }
            if o.metrics != self.observability.metrics {
                self.metrics = None;
                if let Some(a) = o.metrics {
                    match Endpoint::bind(a) {
                        Ok(e) => {
                            info!("metrics on http://{}/metrics", e.address);
                            self.metrics = Some(e);
                        }
                        Err(e) => warn!("MetricsAddress {a}: {e}"),
                    }
                } else {
                    info!("metrics turned off");
                }
            }
            self.observability = o;
        }
        notify.ready(&self.status_line());
    }

    /// Answers the waiting clients of the control socket, one request each.
    fn serve_control(&mut self) {
        for _ in 0..ACCEPT_BURST {
            let (mut s, uid) = match self.listener.accept() {
                Ok(Some(c)) => c,
                Ok(None) => return,
                Err(e) => {
                    warn!("control socket: {e}");
                    return;
                }
            };
            let answer = if uid == 0 || uid == self.uid {
                match read_line(&mut s).as_deref() {
                    Some("status") => self.status(false),
                    Some("status peers") => self.status(true),
                    // Debug builds only: the lab's proof that a denied call is counted.
                    #[cfg(debug_assertions)]
                    Some("test-forbidden-call") => {
                        json!({"errno": teredo_net::sandbox::forbidden_call_for_tests()})
                    }
                    Some(other) => self
                        .plane
                        .request(other)
                        .unwrap_or_else(|| json!({"error": format!("unknown request {other:?}")})),
                    None => continue,
                }
            } else {
                json!({"error": "permission denied: only root and the daemon's user may ask"})
            };
            let _ = s.set_write_timeout(Some(ANSWER_TIMEOUT));
            let _ = s.write_all(format!("{answer}\n").as_bytes());
        }
    }

    /// Answers the waiting scrapers.
    fn serve_metrics(&mut self) {
        for _ in 0..ACCEPT_BURST {
            let Some(mut s) = self.metrics.as_ref().and_then(Endpoint::accept) else { return };
            if metrics::read_request(&mut s) {
                let body = metrics::encode_status(&self.status(false));
                metrics::respond(&mut s, "200 OK", metrics::CONTENT_TYPE, &body);
            }
        }
    }
}

/// One request line, read within [`REQUEST_TIMEOUT`]; `None` if none came.
fn read_line(s: &mut UnixStream) -> Option<String> {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut buf = [0u8; MAX_REQUEST];
    let mut n = 0;
    while n < buf.len() && !buf[..n].contains(&b'\n') {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}
