//! The packet plane: one worker loop for all three roles, driven through a small role
//! trait ([`Role`]), and the supervision of the worker threads ([`Workers`]).
//!
//! A worker sleeps in poll(2) on its role's descriptors (UDP and TUN, with a client's
//! random sockets; or the server's two sockets) and on its [`Waker`]; it never blocks on anything else. The control
//! thread talks to it through a bounded channel of [`Command`]s (then wakes it); the
//! worker answers snapshots with `try_send` on a channel of one place, and reports
//! ([`Report`]: a client's state changes, a failure) on a bounded channel, so that
//! neither side ever waits for the other on the packet path. A worker that panics (a bug)
//! reports it, and the daemon stops with an error for its supervisor to restart it.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use teredo_net::poll;
use teredo_net::waker::Waker;
use teredo_proto::client;
use teredo_proto::peers::PeerLimits;
use teredo_proto::status::{ClientStatus, Counters, RelayStatus, ServerStatus};
use teredo_proto::tunnel::Limits;
use tracing::warn;

use super::StartError;

/// Commands waiting for one worker at most; more are refused (and retried by the control
/// thread on its next occasion).
const COMMAND_QUEUE: usize = 16;
/// Reports waiting for the control thread at most, from all workers.
const REPORT_QUEUE: usize = 64;
/// The longest a worker sleeps: it then runs its timers and counts a heartbeat.
pub const MAX_WAIT: Duration = Duration::from_millis(500);

/// What the control thread asks a worker.
#[derive(Debug)]
pub enum Command {
    /// Answer a snapshot (with the listing of peers when `peers`) on `reply`.
    Snapshot {
        /// List the peers.
        peers: bool,
        /// Where to answer; a channel of one place, never waited on by the worker.
        reply: SyncSender<Snapshot>,
    },
    /// A client's server addresses: resolved, or changed by a reload.
    SetServer {
        /// The primary address.
        primary: Ipv4Addr,
        /// The secondary address, if not the primary plus one.
        secondary: Option<Ipv4Addr>,
    },
    /// A client's server to qualify with when its restart delay ends (the first of its
    /// list, after every one failed).
    SetServerLater {
        /// The primary address.
        primary: Ipv4Addr,
        /// The secondary address, if not the primary plus one.
        secondary: Option<Ipv4Addr>,
    },
    /// A client's server name did not resolve.
    ResolutionFailed,
    /// A client solicits its server at once (SIGHUP).
    SolicitNow,
    /// This worker's share of the most peers (a reload within the allocation).
    SetMaxPeers(usize),
    /// What a client's UPnP IGD gave (RFC 6081 §5.3.3): the mapping of its port, or none.
    Upnp(Option<std::net::SocketAddrV4>),
    /// A datagram received on the Teredo IPv4 Discovery Address (a client's local
    /// discovery, RFC 4380 §5.2.8).
    Discovery {
        /// Its source.
        from: std::net::SocketAddrV4,
        /// Its bytes.
        datagram: Box<[u8]>,
    },
}

/// A worker's state, for `teredo status`, the metrics and the exit summary.
#[derive(Debug, Clone)]
pub enum Snapshot {
    /// A client's.
    Client(ClientStatus),
    /// One relay worker's share.
    Relay(RelayStatus),
    /// One server worker's counts.
    Server(ServerStatus),
}

impl Snapshot {
    /// The counters.
    pub fn counters(&self) -> &Counters {
        match self {
            Self::Client(s) => &s.counters,
            Self::Relay(s) => &s.counters,
            Self::Server(s) => &s.counters,
        }
    }

    /// The counters, for adding the worker's own (socket and TUN refusals, offloads).
    pub fn counters_mut(&mut self) -> &mut Counters {
        match self {
            Self::Client(s) => &mut s.counters,
            Self::Relay(s) => &mut s.counters,
            Self::Server(s) => &mut s.counters,
        }
    }
}

/// What a worker tells the control thread.
#[derive(Debug)]
pub enum Report {
    /// A client's qualification event (configure the interface, resolve the server...).
    Client(client::Event),
    /// What became of a relay's probe of a server (its health).
    Probe {
        /// The server probed.
        server: Ipv4Addr,
        /// Answered or not.
        outcome: teredo_proto::probe::Outcome,
    },
    /// A worker failed (panicked): the daemon stops.
    Failed {
        /// Which worker.
        worker: usize,
        /// The panic's message.
        what: String,
    },
}

/// One role's packet path, as the worker loop drives it.
pub trait Role: Send + 'static {
    /// The descriptors to wait on, at most [`poll::MAX_FDS`] - 1 (UDP and TUN, then a
    /// client's random sockets; or the server's two sockets).
    fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>>;
    /// Runs the timers due now; returns how long to sleep at most.
    fn handle_timeout(&mut self) -> Duration;
    /// Serves the descriptors that are readable: `ready[i]` for the `i`th of
    /// [`Role::fds`].
    fn handle_ready(&mut self, ready: &[bool]);
    /// The snapshot now.
    fn snapshot(&self, peers: bool) -> Snapshot;
    /// A command other than a snapshot.
    fn command(&mut self, command: Command) {
        let _ = command;
    }
    /// Moves the reports produced since the last call into `out`.
    fn reports(&mut self, out: &mut Vec<Report>) {
        let _ = out;
    }
}

/// The control thread's end of one worker (or another thread's: [`Workers::link`]).
#[derive(Debug, Clone)]
pub struct Link {
    commands: SyncSender<Command>,
    waker: Arc<Waker>,
}

impl Link {
    /// Sends `command` to the worker and wakes it; false when its queue is full or it
    /// stopped (the command is then dropped).
    pub fn send(&self, command: Command) -> bool {
        let sent = self.commands.try_send(command).is_ok();
        self.waker.wake();
        sent
    }
}

/// The running workers of a daemon.
#[derive(Debug)]
pub struct Workers {
    links: Vec<Link>,
    handles: Vec<JoinHandle<Option<Snapshot>>>,
    stop: Arc<AtomicBool>,
    /// The reports of every worker.
    pub reports: Receiver<Report>,
    /// Each worker's loop count (for the watchdog).
    heartbeats: Arc<Vec<Heartbeat>>,
    /// Per worker, the count last seen and when it last changed.
    seen: Vec<(u64, Instant)>,
}

/// A worker's loop count, alone on its cache line: each worker writes its own at every
/// wake-up, and neighbours must not share a line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Heartbeat(AtomicU64);

/// Starts one thread per role, named `worker-N`. `control` is woken for every report.
pub fn spawn<R: Role>(roles: Vec<R>, control: Arc<Waker>) -> Result<Workers, StartError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (report_tx, reports) = mpsc::sync_channel(REPORT_QUEUE);
    let heartbeats = Arc::new((0..roles.len()).map(|_| Heartbeat::default()).collect::<Vec<_>>());
    let seen = vec![(0, Instant::now()); roles.len()];
    let mut workers =
        Workers { links: Vec::new(), handles: Vec::new(), stop: stop.clone(), reports, heartbeats, seen };
    for (i, role) in roles.into_iter().enumerate() {
        let waker = Arc::new(Waker::new().map_err(|e| StartError::new("worker wake-up channel", e))?);
        let (tx, rx) = mpsc::sync_channel(COMMAND_QUEUE);
        let ctx = Context {
            index: i,
            commands: rx,
            waker: waker.clone(),
            stop: stop.clone(),
            reports: report_tx.clone(),
            control: control.clone(),
            heartbeats: workers.heartbeats.clone(),
        };
        let handle = thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || supervise(role, ctx))
            .map_err(|e| StartError::new("starting a worker", e))?;
        workers.links.push(Link { commands: tx, waker });
        workers.handles.push(handle);
    }
    Ok(workers)
}

impl Workers {
    /// How many workers run.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Sends `command` to worker `i` and wakes it; false when its queue is full.
    pub fn send(&self, i: usize, command: Command) -> bool {
        let Some(l) = self.links.get(i) else { return false };
        let sent = match l.commands.try_send(command) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                warn!("worker {i} is not taking commands");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        l.waker.wake();
        sent
    }

    /// A handle on worker `i` that another thread may keep to send it commands.
    pub fn link(&self, i: usize) -> Option<Link> {
        self.links.get(i).cloned()
    }

    /// Gives every worker its share of `max_peers`, the bound of the whole daemon, divided
    /// as at start-up ([`Limits::shared_by`]).
    pub fn set_max_peers(&self, max_peers: usize) {
        let whole = Limits { peers: PeerLimits { max_peers, ..PeerLimits::default() }, ..Limits::default() };
        let share = whole.shared_by(self.len()).peers.max_peers;
        for i in 0..self.len() {
            self.send(i, Command::SetMaxPeers(share));
        }
    }

    /// Every worker's snapshot, waiting at most `timeout` in all; a worker that does not
    /// answer in time is left out.
    pub fn snapshots(&self, peers: bool, timeout: Duration) -> Vec<Snapshot> {
        let deadline = Instant::now() + timeout;
        let replies: Vec<_> = (0..self.len())
            .filter_map(|i| {
                let (tx, rx) = mpsc::sync_channel(1);
                self.send(i, Command::Snapshot { peers, reply: tx }).then_some(rx)
            })
            .collect();
        replies
            .into_iter()
            .filter_map(|rx| rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok())
            .collect()
    }

    /// Whether every worker went through its loop within `within` (the watchdog's test;
    /// an idle worker still wakes every [`MAX_WAIT`]).
    pub fn alive(&mut self, within: Duration) -> bool {
        let now = Instant::now();
        let mut all = true;
        for (h, (count, changed)) in self.heartbeats.iter().zip(&mut self.seen) {
            let c = h.0.load(Ordering::Relaxed);
            if c != *count {
                *count = c;
                *changed = now;
            }
            all &= now.duration_since(*changed) <= within;
        }
        all
    }

    /// Stops every worker and waits for them; returns their last snapshots and whether
    /// one failed.
    pub fn stop(self) -> (Vec<Snapshot>, bool) {
        self.stop.store(true, Ordering::Relaxed);
        for l in &self.links {
            l.waker.wake();
        }
        let mut failed = false;
        let mut last = Vec::new();
        for h in self.handles {
            match h.join() {
                Ok(Some(s)) => last.push(s),
                _ => failed = true,
            }
        }
        (last, failed)
    }
}

/// A worker's end.
struct Context {
    index: usize,
    commands: Receiver<Command>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    reports: SyncSender<Report>,
    control: Arc<Waker>,
    heartbeats: Arc<Vec<Heartbeat>>,
}

impl Context {
    fn report(&self, r: Report) {
        if let Err(TrySendError::Full(r)) = self.reports.try_send(r) {
            warn!("control thread busy: report dropped ({r:?})");
        }
        self.control.wake();
    }
}

/// Runs the loop; a panic becomes a [`Report::Failed`], and the thread's result `None`.
fn supervise<R: Role>(mut role: R, ctx: Context) -> Option<Snapshot> {
    let run = std::panic::AssertUnwindSafe(|| run(&mut role, &ctx));
    match std::panic::catch_unwind(run) {
        Ok(()) => Some(role.snapshot(false)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            ctx.report(Report::Failed { worker: ctx.index, what });
            None
        }
    }
}

/// The one worker loop.
fn run<R: Role>(role: &mut R, ctx: &Context) {
    let mut reports = Vec::new();
    let mut ready = [false; poll::MAX_FDS];
    let mut beats = 0u64;
    while !ctx.stop.load(Ordering::Relaxed) {
        let wait = role.handle_timeout().min(MAX_WAIT);
        // The role's descriptors, then the waker (never past the bound: the role's list is
        // cut first).
        let polled = {
            let fds = role.fds().take(poll::MAX_FDS - 1).chain(std::iter::once(ctx.waker.as_fd()));
            poll::readable_many(fds, wait, &mut ready)
        };
        let n = match polled {
            Ok(n) => n,
            Err(e) => {
                warn!("poll: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let roles = n.saturating_sub(1);
        if ready[roles] {
            ctx.waker.drain();
            while let Ok(c) = ctx.commands.try_recv() {
                match c {
                    Command::Snapshot { peers, reply } => {
                        let _ = reply.try_send(role.snapshot(peers));
                    }
                    other => role.command(other),
                }
            }
        }
        role.handle_ready(&ready[..roles]);
        role.reports(&mut reports);
        for r in reports.drain(..) {
            ctx.report(r);
        }
        beats = beats.wrapping_add(1);
        if let Some(h) = ctx.heartbeats.get(ctx.index) {
            h.0.store(beats, Ordering::Relaxed);
        }
    }
}
