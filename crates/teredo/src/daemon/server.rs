//! `teredo server`: the Teredo server daemon (RFC 4380 §5.3, RFC 5991 §3.2), a drop-in for
//! `miredo-server` — same configuration file, same flags.
//!
//! Start-up ([`ServerDaemon`], driven by [`super::lifecycle`]): read the configuration;
//! resolve the two addresses; open, as root, one pair of UDP 3544 sockets per worker
//! (SO_REUSEPORT) and the raw IPv6 socket; detach unless `-f`; write the PID file; drop to
//! the unprivileged user with no capability left; then start the workers. Each worker
//! ([`ServerWorker`]) receives and sends in batches (recvmmsg/sendmmsg) and hands every
//! datagram to the sans-IO [`teredo_proto::server::Server`]; the control thread serves
//! status, metrics and reloads.
//!
//! With `--tx packet`, each worker also opens (as root, before the drop) a packet socket
//! ([`teredo_net::packet_tx::PacketTx`]) and sends its answers as whole Ethernet frames,
//! written in place, past the kernel's UDP output path; a datagram whose next hop is not
//! resolved yet goes through the worker's UDP socket instead. Receiving is unchanged.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use socket2::Socket;
use teredo_net::batch::{RecvBatch, SendBatch};
use teredo_net::packet_tx::{PacketTx, Queued};
use teredo_net::privileges::User;
use teredo_net::udp::{RawIpv6, bind_udp};
use teredo_net::waker::Waker;
use teredo_proto::address::TEREDO_PORT;
use teredo_proto::server::{Action, DropReason, Local, Server, ServerConfig, ServerStats};
use teredo_proto::status::{ServerStatus, add_counters, counter};
use tracing::{info, warn};

use super::control::{Observability, Plane};
use super::lifecycle::{self, Daemon, Names, Settings, Started};
use super::status::Identity;
use super::worker::{self, Role, Snapshot, Workers};
use super::{DaemonArgs, Flavour, StartError, reload, resolve};
use crate::config::{self, Host, ServerOverrides};

/// Datagrams per system call. (Public, with the two sizes, for `server_load`'s socket
/// floor, which must do its I/O exactly as the server does.)
pub const BATCH: usize = 64;
/// Receive buffer per datagram: the server handles RSs, bubbles and small ICMPv6 only;
/// anything larger is cut by the kernel, flagged, and dropped.
pub const RECV_SIZE: usize = 2048;
/// Room per datagram sent: an RA, or a relayed bubble or small ICMPv6 message with its
/// trailers, is far smaller (the core refuses to relay anything larger).
pub const SEND_SIZE: usize = 1500;

/// `teredo server [-c FILE] [-f] [-p PIDFILE] [-u USER] [-t CHROOT] [SERVER_ADDRESS]`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Miredo's daemon flags.
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Worker threads, each with its own sockets (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// How answers leave: `socket` (the UDP sockets) or `packet` (whole Ethernet frames on
    /// a packet socket, much cheaper per datagram). `packet` bypasses the queueing
    /// discipline and the host firewall's output chains, needs the server addresses on an
    /// Ethernet interface (datagrams it cannot route that way go through the sockets), and
    /// is meant for dedicated servers.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = Tx::Socket)]
    pub tx: Tx,
    /// The primary server address, instead of ServerBindAddress (the secondary is then
    /// this address plus one).
    #[arg(value_name = "SERVER_ADDRESS")]
    pub server_address: Option<String>,
}

/// How the server sends (`--tx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tx {
    /// sendmmsg on the UDP sockets.
    Socket,
    /// Ethernet frames on a packet socket (AF_PACKET, qdisc bypassed).
    Packet,
}

/// What start-up produced: everything the workers need.
pub struct ServerDaemon {
    path: PathBuf,
    overrides: ServerOverrides,
    cfg: config::ServerConfig,
    server: Server,
    sockets: Vec<(Socket, Socket)>,
    /// One packet socket per worker with `--tx packet`.
    packet: Vec<PacketTx>,
    raw: Option<RawIpv6>,
}

/// Runs the server; returns the exit status.
pub fn run(args: &ServerArgs) -> u8 {
    run_as(args, Flavour::Teredo)
}

/// Runs the server with the defaults of `flavour` (Miredo's for the `miredo-server` entry
/// point); returns the exit status.
pub fn run_as(args: &ServerArgs, flavour: Flavour) -> u8 {
    let names = match flavour {
        Flavour::Teredo => {
            Names { who: "teredo server", ident: "teredo-server", pidfile: "/run/teredo-server.pid" }
        }
        Flavour::Miredo => {
            Names { who: "miredo-server", ident: "miredo-server", pidfile: "/var/run/miredo-server.pid" }
        }
    };
    lifecycle::run(names, &args.daemon, || prepare(args, names.who))
}

fn prepare(args: &ServerArgs, who: &str) -> Result<ServerDaemon, StartError> {
    let overrides = ServerOverrides {
        server_bind_address: match &args.server_address {
            Some(s) => {
                Some(Host::parse_global(s).map_err(|e| StartError::new(format!("server address {s:?}"), e))?)
            }
            None => None,
        },
    };
    let path = args.daemon.config.clone().unwrap_or_else(|| PathBuf::from(config::DEFAULT_SERVER_FILE));
    let cfg = super::read_config(
        who,
        &path,
        overrides.server_bind_address.is_some(),
        |p| config::load_server(p, &overrides),
        |name| config::parse_server_with("", name, &overrides),
    )?;
    let file = path.display();
    let primary = resolve::ipv4(&cfg.server_bind_address)
        .map_err(|e| StartError::new(super::locate(&path, "ServerBindAddress"), e))?;
    let secondary = match &cfg.server_bind_address2 {
        Some(h) => resolve::ipv4(h).map_err(|e| StartError::new(super::locate(&path, "ServerBindAddress2"), e))?,
        // The primary plus one, which must be a global unicast address too.
        None => u32::from(primary)
            .checked_add(1)
            .map(Ipv4Addr::from)
            .filter(|a| teredo_proto::address::is_global_unicast(*a))
            .ok_or_else(|| {
                StartError(format!(
                    "{file}: the address after {primary} is not a global unicast address: set ServerBindAddress2"
                ))
            })?,
    };
    if secondary == primary {
        return Err(StartError("the secondary address must differ from the primary".into()));
    }
    let mut server =
        Server::new(ServerConfig { primary, secondary, prefix: cfg.prefix.0, mtu: cfg.interface_mtu });
    // Secure qualification: the key file is read now, as root, before the privilege drop
    // (it should be readable by root alone).
    if let Some(keys) = client_keys(&path, &cfg)? {
        server.set_client_keys(Some(Arc::new(keys)));
    }
    let workers = args
        .workers
        .unwrap_or_else(|| thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .clamp(1, 256);
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        let bind = |a: Ipv4Addr| {
            bind_udp(SocketAddrV4::new(a, TEREDO_PORT), true)
                .map_err(|e| StartError::new(format!("{a}:{TEREDO_PORT}"), e))
        };
        sockets.push((bind(primary)?, bind(secondary)?));
    }
    // Packet sockets need CAP_NET_RAW: opened now, used after the drop. Only with `--tx
    // packet` (none otherwise): one per worker, each a send-only AF_PACKET socket bound to
    // no protocol (it receives nothing), the fast path of the server's answers. They
    // stay for the daemon's life because the unprivileged, sandboxed worker could never
    // open one again.
    let mut packet = Vec::new();
    if args.tx == Tx::Packet {
        for _ in 0..workers {
            packet.push(PacketTx::open(BATCH).map_err(|e| StartError::new("--tx packet: packet socket", e))?);
        }
        if let Some(p) = packet.first() {
            if p.ethernet_links() == 0 {
                eprintln!(
                    "{who}: warning: --tx packet: no Ethernet interface is up; answers go through the UDP sockets"
                );
            } else if p.policy_routing() {
                eprintln!(
                    "{who}: warning: --tx packet: policy routing rules are in use; answers go through the UDP sockets"
                );
            }
        }
    }
    // Forwarding echo tests to native hosts needs a raw socket; without one the server
    // still qualifies clients, so a failure is a warning. The one raw socket the server
    // keeps (RFC 4380 §5.3.1: a client's echo test to a native IPv6 host, sent by the
    // server as plain IPv6), shared by the workers; it is IPPROTO_RAW-style send-only
    // traffic, so no packet is ever read from it.
    let raw = match RawIpv6::open() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("{who}: warning: no raw IPv6 socket ({e}): echo tests will not reach native IPv6");
            None
        }
    };
    Ok(ServerDaemon { path, overrides, cfg, server, sockets, packet, raw })
}

impl Daemon for ServerDaemon {
    fn files(&self) -> Vec<PathBuf> {
        std::iter::once(self.path.clone()).chain(self.cfg.client_keys.clone()).collect()
    }

    fn settings(&self) -> Settings {
        Settings {
            facility: self.cfg.syslog_facility.code(),
            observability: reload::server_observability(&self.cfg),
        }
    }

    fn start(self, user: &User, waker: Arc<Waker>) -> Result<Started, StartError> {
        let cfg = *self.server.config();
        let server = Arc::new(self.server);
        let raw = Arc::new(self.raw);
        let n = self.sockets.len();
        let tx_mode = if self.packet.is_empty() { "socket" } else { "packet" };
        let mut packet = self.packet.into_iter();
        let roles: Vec<ServerWorker> = self
            .sockets
            .into_iter()
            .map(|socks| ServerWorker::new(server.clone(), socks, packet.next(), raw.clone()))
            .collect();
        let workers = worker::spawn(roles, waker)?;
        info!(
            "Teredo server on {}:{TEREDO_PORT} and {}:{TEREDO_PORT}, prefix {:x}::/32, MTU {}, {n} worker(s), TX by {tx_mode}, running as {} (uid {})",
            cfg.primary,
            cfg.secondary,
            cfg.prefix >> 16,
            cfg.mtu,
            user.name,
            user.uid
        );
        let identity = Identity {
            role: "server",
            started: Instant::now(),
            interface: None,
            config: self.path.display().to_string(),
        };
        Ok(Started {
            plane: Box::new(ServerPlane { path: self.path, overrides: self.overrides, cfg: self.cfg }),
            workers,
            identity,
        })
    }
}

/// The server's control: reloads (only the log level and the metrics can change: the
/// server's addresses were bound as root) and the summary.
pub struct ServerPlane {
    path: PathBuf,
    overrides: ServerOverrides,
    cfg: config::ServerConfig,
}

impl Plane for ServerPlane {
    fn reload(&mut self, _: &Workers) -> Option<Observability> {
        let new = reload::read(&self.path, |p| config::load_server(p, &self.overrides))?;
        self.cfg = reload::server(&self.path, &self.cfg, new);
        Some(reload::server_observability(&self.cfg))
    }

    fn summary(&self, last: &[Snapshot]) -> String {
        let mut c = Vec::new();
        for (i, s) in last.iter().enumerate() {
            let w = s.counters();
            if let Some(frames) = counter(w, "packet_frames") {
                info!(
                    "worker {i}: {frames} frames sent on the packet socket, {} datagrams through the UDP sockets, {} frames refused",
                    counter(w, "packet_fallbacks").unwrap_or(0),
                    counter(w, "packet_refused").unwrap_or(0)
                );
            }
            add_counters(&mut c, w);
        }
        let get = |n: &str| counter(&c, n).unwrap_or(0);
        format!(
            "{} datagrams: {} advertisements, {} relayed to clients, {} to IPv6, {} malformed, {} dropped",
            get("received"),
            get("advertisements"),
            get("relayed_udp"),
            get("relayed_ipv6"),
            get("malformed"),
            get("dropped")
        )
    }
}

/// One server worker: both sockets of its pair; answers leave by its packet socket when it
/// has one (and can), by the sockets otherwise.
pub struct ServerWorker {
    server: Arc<Server>,
    socks: (Socket, Socket),
    packet: Option<PacketTx>,
    raw: Arc<Option<RawIpv6>>,
    stats: ServerStats,
    rx: RecvBatch,
    tx: [SendBatch; 2],
    scratch: Box<[u8; SEND_SIZE]>,
    errors_logged: u32,
    /// Echo tests the raw IPv6 socket refused to send.
    raw_errors: u64,
}

impl ServerWorker {
    fn new(
        server: Arc<Server>,
        socks: (Socket, Socket),
        packet: Option<PacketTx>,
        raw: Arc<Option<RawIpv6>>,
    ) -> Self {
        Self {
            server,
            socks,
            packet,
            raw,
            stats: ServerStats::default(),
            rx: RecvBatch::new(BATCH, RECV_SIZE),
            tx: [SendBatch::new(BATCH, SEND_SIZE), SendBatch::new(BATCH, SEND_SIZE)],
            scratch: Box::new([0u8; SEND_SIZE]),
            errors_logged: 0,
            raw_errors: 0,
        }
    }

    /// Drains a bounded number of batches from socket `idx`, then gives the other its turn.
    fn serve(&mut self, idx: usize, local: Local) {
        let cfg = *self.server.config();
        let addrs = [cfg.primary, cfg.secondary];
        for _ in 0..16 {
            let sock = if idx == 0 { &self.socks.0 } else { &self.socks.1 };
            let n = match self.rx.recv(sock.as_fd()) {
                Ok(n) => n,
                Err(e) => {
                    if self.errors_logged < 10 {
                        warn!("receive: {e}");
                        self.errors_logged += 1;
                    }
                    0
                }
            };
            for i in 0..n {
                let (from, data, truncated) = self.rx.get(i);
                if truncated {
                    self.stats.count(&Action::Drop(DropReason::Oversized));
                    continue;
                }
                // With a packet socket the answer is written straight into the next frame,
                // behind the room for its headers.
                let out = match self.packet.as_mut() {
                    Some(p) => {
                        if p.is_full() {
                            let _ = p.flush();
                        }
                        // Never more than a socket slot: an answer that falls back to the
                        // socket must fit there too.
                        p.payload_mut().map(|b| {
                            let n = b.len().min(SEND_SIZE);
                            &mut b[..n]
                        })
                    }
                    None => None,
                };
                let in_frame = out.is_some();
                let action =
                    self.server.handle_datagram(local, from, data, out.unwrap_or(&mut self.scratch[..]));
                self.stats.count(&action);
                match action {
                    Action::SendUdp { from: out, to, len, .. } => {
                        let o = usize::from(out == Local::Secondary);
                        let bytes = match self.packet.as_mut() {
                            Some(p) if in_frame => {
                                match p.commit(SocketAddrV4::new(addrs[o], TEREDO_PORT), to, len) {
                                    Queued::Frame => continue,
                                    Queued::Socket(bytes) => bytes,
                                }
                            }
                            _ => &self.scratch[..len],
                        };
                        let sock = if o == 0 { &self.socks.0 } else { &self.socks.1 };
                        if self.tx[o].is_full() {
                            let _ = self.tx[o].flush(sock.as_fd());
                        }
                        if let Some(buf) = self.tx[o].next_buf().and_then(|b| b.get_mut(..bytes.len())) {
                            buf.copy_from_slice(bytes);
                            self.tx[o].commit(bytes.len(), to);
                        }
                    }
                    Action::SendIpv6 { start, len, dst } => {
                        if let Some(r) = self.raw.as_ref()
                            && r.send(&data[start..start + len], dst).is_err()
                        {
                            self.raw_errors += 1;
                        }
                    }
                    Action::Drop(_) => {}
                }
            }
            if let Some(p) = self.packet.as_mut()
                && !p.is_empty()
            {
                let _ = p.flush();
            }
            for o in 0..2 {
                if !self.tx[o].is_empty() {
                    let sock = if o == 0 { &self.socks.0 } else { &self.socks.1 };
                    let _ = self.tx[o].flush(sock.as_fd());
                }
            }
            if n < BATCH {
                break;
            }
        }
    }
}

impl Role for ServerWorker {
    fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        [self.socks.0.as_fd(), self.socks.1.as_fd()].into_iter()
    }

    fn handle_timeout(&mut self) -> Duration {
        if let Some(p) = self.packet.as_mut() {
            p.maintain(Instant::now());
        }
        worker::MAX_WAIT
    }

    fn handle_ready(&mut self, ready: &[bool]) {
        if ready.first() == Some(&true) {
            self.serve(0, Local::Primary);
        }
        if ready.get(1) == Some(&true) {
            self.serve(1, Local::Secondary);
        }
    }

    fn snapshot(&self, _peers: bool) -> Snapshot {
        let cfg = self.server.config();
        let mut counters = self.stats.counters();
        counters.push(("socket_refused", self.tx[0].dropped() + self.tx[1].dropped()));
        counters.push(("ipv6_refused", self.raw_errors));
        if let Some(p) = &self.packet {
            let s = p.stats();
            counters.extend([
                ("packet_frames", s.frames),
                ("packet_fallbacks", s.fallbacks),
                ("packet_refused", s.errors),
            ]);
        }
        Snapshot::Server(ServerStatus { addresses: (cfg.primary, cfg.secondary), counters })
    }
}

/// The clients of `ClientKeys`, if set (RFC 4380 §5.2.2); a bad key file stops start-up
/// with its diagnostics, which never show a secret.
fn client_keys(
    path: &std::path::Path,
    cfg: &config::ServerConfig,
) -> Result<Option<teredo_proto::server::ClientKeys>, StartError> {
    let Some(file) = &cfg.client_keys else { return Ok(None) };
    let parsed = config::load_client_keys(file)
        .map_err(|e| StartError(format!("{}: {e}", super::locate(path, "ClientKeys"))))?;
    let Some(list) = parsed.config else {
        let lines: Vec<String> = parsed.diagnostics.iter().map(ToString::to_string).collect();
        return Err(StartError(lines.join("\n")));
    };
    let mut keys = teredo_proto::server::ClientKeys::new(cfg.require_authentication);
    for k in list {
        match teredo_proto::secure::Credentials::new(k.id.as_bytes(), k.secret.as_bytes()) {
            Ok(c) => keys.insert(c),
            Err(e) => return Err(StartError(format!("{}: client {:?}: {e}", file.display(), k.id))),
        }
    }
    info!(
        "secure qualification: {} client{} from {}{}",
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        file.display(),
        if keys.required { ", required" } else { "" }
    );
    Ok(Some(keys))
}
