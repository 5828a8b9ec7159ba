//! The userland NAT: the NAT kinds nftables cannot make (port-preserving and sequential
//! port-symmetric, address-symmetric, UPnP port-symmetric) translate UDP in a thread of the
//! test process, reading and writing whole IPv4 packets on a TUN device ([`TUN`]) in the
//! NAT namespace.
//!
//! Plumbing, set up by [`crate::Lab::nat`]: UDP from the LAN to a non-local address and
//! UDP from `wan` are policy-routed into the TUN (the `local` routing rule moved after the
//! `wan` one, so that inbound UDP to the public addresses reaches the TUN instead of the
//! namespace's own sockets, while UDP from the LAN to the NAT's own addresses stays local:
//! no hairpinning); the NAT rewrites each packet (module `packet`) per its table (module `table`) and
//! writes it back, and the kernel routes it on to `wan` or to the LAN. UDP is kept out of
//! conntrack (see [`crate::nat::ruleset`]); TCP and ICMP take the kernel's masquerade.
//!
//! It runs as a thread, not a process, so that every lab user (the tests of other crates
//! too) has it without a separate binary to build and find; the lab stops it (and so
//! removes the TUN) before it deletes the namespace. It never panics on what it reads: a
//! packet that does not parse, or that no binding lets in, is dropped and counted. Its log
//! is `<artifacts>/<nat>-userland-nat.log`.

mod leases;
mod packet;
mod table;
mod tun;

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::nat::NatKind;
use crate::node::Node;

pub use table::{Binding, UpnpMapping};

use packet::{Reject, Udp4};
use table::Table;
use tun::Tun;

/// The userland NAT's TUN interface in the NAT namespace.
pub const TUN: &str = "unat";
/// How long a binding lives after its last packet (either direction).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The most bindings one NAT holds; a new flow beyond that is dropped.
pub const MAX_BINDINGS: usize = 4096;
/// The most lines the NAT writes to its log.
const MAX_LOG_LINES: usize = 10_000;
/// How often the NAT looks at `miniupnpd`'s lease file and expires bindings.
const HOUSEKEEPING: Duration = Duration::from_millis(50);

/// What one userland NAT needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Its kind (one whose [`NatKind::engine`] is userland).
    pub kind: NatKind,
    /// Its public addresses on `wan`, the first being the main one.
    pub publics: Vec<Ipv4Addr>,
    /// Its LAN: network address and prefix length.
    pub lan: (Ipv4Addr, u8),
    /// `miniupnpd`'s lease file, for a UPnP kind.
    pub leases: Option<PathBuf>,
    /// Where it logs.
    pub log: PathBuf,
}

/// Counters of what the NAT did, for its log.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    out: u64,
    inbound: u64,
    filtered: u64,
    full: u64,
    malformed: u64,
    not_udp: u64,
    fragments: u64,
    stray: u64,
}

struct Shared {
    table: Mutex<Table>,
    running: AtomicBool,
}

impl std::fmt::Debug for Shared {
    /// Short: a [`crate::Nat`] in a test's message should not list thousands of bindings.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bindings = self.table.try_lock().map(|t| t.len()).ok();
        f.debug_struct("UserlandNat")
            .field("bindings", &bindings)
            .field("running", &self.running.load(Ordering::Relaxed))
            .finish()
    }
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a test reads of a running userland NAT: cheap to clone, valid after the NAT stops.
#[derive(Debug, Clone)]
pub struct Handle(Arc<Shared>);

impl Handle {
    /// The current bindings.
    pub fn bindings(&self) -> Vec<Binding> {
        self.0.table().bindings()
    }

    /// Forgets every binding, as when a home router reboots (UPnP mappings stay).
    pub fn clear(&self) {
        self.0.table().clear();
    }

    /// The UPnP port mappings the NAT applies (read from `miniupnpd`'s lease file).
    pub fn upnp_mappings(&self) -> Vec<UpnpMapping> {
        self.0.table().upnp().to_vec()
    }

    /// Whether the NAT's thread still runs.
    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::Relaxed)
    }
}

/// A running userland NAT; dropping it stops the thread and removes the TUN.
#[derive(Debug)]
pub(crate) struct UserlandNat {
    handle: Handle,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UserlandNat {
    /// Creates the TUN in `node`'s namespace and starts translating per `config`.
    pub(crate) fn start(node: &Node, config: Config) -> Result<Self> {
        let tun = node
            .enter(|| Tun::open(TUN))?
            .map_err(|e| LabError::io(format!("creating TUN {TUN} in {}", node.ns()), e))?;
        let log = File::create(&config.log)
            .map_err(|e| LabError::io(format!("creating {}", config.log.display()), e))?;
        let seed = seed();
        let table = Table::new(config.kind, config.publics.clone(), IDLE_TIMEOUT, MAX_BINDINGS, seed);
        let handle = Handle(Arc::new(Shared { table: Mutex::new(table), running: AtomicBool::new(true) }));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker { config, tun, shared: Arc::clone(&handle.0), log: Log { file: log, lines: 0 } };
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("userland-nat-{}", node.role()))
            .spawn(move || worker.run(&stop2))
            .map_err(|e| LabError::io("starting the userland NAT thread", e))?;
        Ok(Self { handle, stop, thread: Some(thread) })
    }

    /// What a test reads of it.
    pub(crate) fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the thread (within about 100 ms) and closes the TUN.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic in the worker is already in its log; nothing more to do here.
            let _ = t.join();
        }
    }
}

impl Drop for UserlandNat {
    fn drop(&mut self) {
        self.stop();
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (t as u64) ^ (u64::from(std::process::id()) << 32)
}

/// The NAT's log: bounded.
struct Log {
    file: File,
    lines: usize,
}

impl Log {
    fn line(&mut self, text: std::fmt::Arguments<'_>) {
        if self.lines < MAX_LOG_LINES {
            self.lines += 1;
            // Best effort: a full disk must not stop the NAT.
            let _ = writeln!(self.file, "{text}");
            if self.lines == MAX_LOG_LINES {
                let _ = writeln!(self.file, "(log limit reached)");
            }
        }
    }
}

struct Worker {
    config: Config,
    tun: Tun,
    shared: Arc<Shared>,
    log: Log,
}

impl Worker {
    fn run(mut self, stop: &AtomicBool) {
        let cfg = &self.config;
        self.log.line(format_args!(
            "userland NAT {} on {TUN}: publics {:?}, LAN {}/{}, idle timeout {:?}, at most {MAX_BINDINGS} bindings",
            cfg.kind, cfg.publics, cfg.lan.0, cfg.lan.1, IDLE_TIMEOUT
        ));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve(stop)));
        match outcome {
            Ok(c) => self.log.line(format_args!("stopped: {c:?}")),
            Err(_) => self.log.line(format_args!("stopped by a panic (a bug in the userland NAT)")),
        }
        self.shared.running.store(false, Ordering::Relaxed);
    }

    fn in_lan(&self, ip: Ipv4Addr) -> bool {
        let (net, len) = self.config.lan;
        let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
        u32::from(ip) & mask == u32::from(net) & mask
    }

    fn serve(&mut self, stop: &AtomicBool) -> Counters {
        let mut c = Counters::default();
        let mut buf = vec![0u8; 65536];
        let mut last_house = Instant::now() - HOUSEKEEPING;
        let mut last_leases: Option<Vec<UpnpMapping>> = None;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now.duration_since(last_house) >= HOUSEKEEPING {
                last_house = now;
                self.housekeeping(now, &mut last_leases);
            }
            let n = match self.tun.recv(&mut buf, Duration::from_millis(50)) {
                Ok(n) => n,
                Err(e) => {
                    self.log.line(format_args!("reading {TUN}: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if n == 0 {
                continue;
            }
            self.translate(&mut buf[..n], Instant::now(), &mut c);
        }
        c
    }

    fn housekeeping(&mut self, now: Instant, last: &mut Option<Vec<UpnpMapping>>) {
        let expired = self.shared.table().expire(now);
        if expired > 0 {
            self.log.line(format_args!("{expired} idle bindings expired"));
        }
        let Some(path) = &self.config.leases else {
            return;
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mappings = leases::parse(&text, leases::unix_now());
        if last.as_ref() != Some(&mappings) {
            self.log.line(format_args!("UPnP port mappings now: {mappings:?}"));
            self.shared.table().set_upnp(mappings.clone());
            *last = Some(mappings);
        }
    }

    fn translate(&mut self, pkt: &mut [u8], now: Instant, c: &mut Counters) {
        let mut u = match Udp4::parse(pkt) {
            Ok(u) => u,
            Err(r) => {
                match r {
                    Reject::Malformed => c.malformed += 1,
                    Reject::NotUdp => c.not_udp += 1,
                    Reject::Fragment => c.fragments += 1,
                }
                return;
            }
        };
        let (src, dst) = (u.src, u.dst);
        if self.config.publics.contains(dst.ip()) {
            let local = self.shared.table().inbound(src, dst, now);
            let Some(local) = local else {
                c.filtered += 1;
                if c.filtered <= 100 {
                    self.log.line(format_args!("dropped {src} -> {dst}: no binding lets it in"));
                }
                return;
            };
            u.rewrite(pkt, src, local);
            c.inbound += 1;
        } else if self.in_lan(*src.ip()) {
            let (public, new) = {
                let mut t = self.shared.table();
                let before = t.len();
                let public = t.outbound(src, dst, now);
                (public, t.len() > before)
            };
            let Some(public) = public else {
                c.full += 1;
                if c.full <= 100 {
                    self.log.line(format_args!("dropped {src} -> {dst}: {MAX_BINDINGS} bindings in use"));
                }
                return;
            };
            if new {
                self.log.line(format_args!("binding {src} -> {dst} as {public}"));
            }
            u.rewrite(pkt, public, dst);
            c.out += 1;
        } else {
            c.stray += 1;
            return;
        }
        if let Err(e) = self.tun.send(u.bytes(pkt)) {
            self.log.line(format_args!("writing {TUN}: {e}"));
        }
    }
}

/// The public endpoint that `client` (any port) shows `remote`, among `bindings` of a NAT
/// of `kind`: the binding made for that remote (for an address-dependent mapping, for any
/// port of its address).
pub(crate) fn find_binding(
    bindings: &[Binding],
    kind: NatKind,
    client: Ipv4Addr,
    remote: SocketAddrV4,
) -> Option<SocketAddrV4> {
    bindings
        .iter()
        .find(|b| {
            *b.local.ip() == client
                && match kind.mapping() {
                    crate::nat::Mapping::AddressDependent => b.remote.ip() == remote.ip(),
                    _ => b.remote == remote,
                }
        })
        .map(|b| b.public)
}

/// The live UDP port mappings in `miniupnpd`'s lease file `path` (none if it does not
/// exist yet).
pub(crate) fn read_leases(path: &std::path::Path) -> Vec<UpnpMapping> {
    leases::parse(&std::fs::read_to_string(path).unwrap_or_default(), leases::unix_now())
}
