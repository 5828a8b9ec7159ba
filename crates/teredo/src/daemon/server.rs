//! `teredo server`: the Teredo server daemon (RFC 4380 §5.3, RFC 5991 §3.2), a drop-in for
//! `miredo-server` — same configuration file, same flags.
//!
//! Start-up, in order: read the configuration; resolve the two addresses; open, as root,
//! one pair of UDP 3544 sockets per worker (SO_REUSEPORT) and the raw IPv6 socket; detach
//! unless `-f`; write the PID file; drop to the unprivileged user with no capability left;
//! then start the workers. Each worker receives and sends in batches (recvmmsg/sendmmsg)
//! and hands every datagram to the sans-IO [`teredo_proto::server::Server`]. The main
//! thread only waits for signals.
//!
//! With `--tx packet`, each worker also opens (as root, before the drop) a packet socket
//! ([`teredo_net::packet_tx::PacketTx`]) and sends its answers as whole Ethernet frames,
//! written in place, past the kernel's UDP output path; a datagram whose next hop is not
//! resolved yet goes through the worker's UDP socket instead. Receiving is unchanged.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use socket2::Socket;
use teredo_net::batch::{RecvBatch, SendBatch};
use teredo_net::packet_tx::{PacketTx, Queued};
use teredo_net::udp::{RawIpv6, bind_udp};
use teredo_net::{poll, privileges};
use teredo_proto::address::TEREDO_PORT;
use teredo_proto::server::{Action, Local, Server, ServerConfig, ServerStats};
use tracing::{info, warn};

use super::signals::{self, Signal};
use super::{DaemonArgs, StartError, detach, logging, pidfile, resolve};
use crate::config::{self, Host, ServerOverrides};

/// Set when a worker failed: the daemon then exits with status 1.
static WORKER_FAILED: AtomicBool = AtomicBool::new(false);

/// Datagrams per system call.
const BATCH: usize = 64;
/// Receive buffer per datagram: the server handles RSs, bubbles and small ICMPv6 only;
/// anything larger is cut by the kernel, flagged, and dropped.
const RECV_SIZE: usize = 2048;
/// Room per datagram sent: an RA, or a relayed bubble or small ICMPv6 message with its
/// trailers, is far smaller (the core refuses to relay anything larger).
const SEND_SIZE: usize = 1500;

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
struct Prepared {
    server: Server,
    sockets: Vec<(Socket, Socket)>,
    /// One packet socket per worker with `--tx packet`.
    packet: Vec<PacketTx>,
    raw: Option<RawIpv6>,
    facility: u8,
}

/// Runs the server; returns the exit status.
pub fn run(args: &ServerArgs) -> u8 {
    let prepared = match prepare(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("teredo server: {e}");
            return 1;
        }
    };
    let mut detached = None;
    if args.daemon.foreground {
        logging::init(logging::Target::Stderr, false);
    } else {
        match detach::detach() {
            Ok(d) => detached = Some(d),
            Err(e) => {
                eprintln!("teredo server: cannot detach: {e}");
                return 1;
            }
        }
        logging::init(logging::Target::Syslog { facility: prepared.facility, ident: "teredo-server" }, false);
    }
    let status = match serve(args, prepared, &mut detached) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            if args.daemon.foreground || detached.is_some() {
                eprintln!("teredo server: {e}");
            }
            1
        }
    };
    if let Some(d) = detached.as_mut() {
        d.failed(status);
    }
    status
}

fn prepare(args: &ServerArgs) -> Result<Prepared, StartError> {
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
        "teredo server",
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
    let server =
        Server::new(ServerConfig { primary, secondary, prefix: cfg.prefix.0, mtu: cfg.interface_mtu });
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
    // Packet sockets need CAP_NET_RAW: opened now, used after the drop.
    let mut packet = Vec::new();
    if args.tx == Tx::Packet {
        for _ in 0..workers {
            packet.push(PacketTx::open(BATCH).map_err(|e| StartError::new("--tx packet: packet socket", e))?);
        }
        if let Some(p) = packet.first() {
            if p.ethernet_links() == 0 {
                eprintln!(
                    "teredo server: warning: --tx packet: no Ethernet interface is up; answers go through the UDP sockets"
                );
            } else if p.policy_routing() {
                eprintln!(
                    "teredo server: warning: --tx packet: policy routing rules are in use; answers go through the UDP sockets"
                );
            }
        }
    }
    // Forwarding echo tests to native hosts needs a raw socket; without one the server
    // still qualifies clients, so a failure is a warning.
    let raw = match RawIpv6::open() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!(
                "teredo server: warning: no raw IPv6 socket ({e}): echo tests will not reach native IPv6"
            );
            None
        }
    };
    Ok(Prepared { server, sockets, packet, raw, facility: cfg.syslog_facility.code() })
}

fn serve(args: &ServerArgs, p: Prepared, detached: &mut Option<detach::Detached>) -> Result<(), StartError> {
    let pidfile = args
        .daemon
        .pidfile
        .clone()
        .or_else(|| (!args.daemon.foreground).then(|| "/run/teredo-server.pid".into()));
    let _pid = match &pidfile {
        Some(path) => Some(pidfile::create(path).map_err(|e| StartError::new(path.display(), e))?),
        None => None,
    };
    signals::block().map_err(|e| StartError::new("blocking signals", e))?;
    let user = privileges::lookup_user(&args.daemon.user).map_err(|e| StartError(e.to_string()))?;
    privileges::drop_privileges(&user, args.daemon.chroot.as_deref())
        .map_err(|e| StartError(e.to_string()))?;

    let cfg = *p.server.config();
    let server = Arc::new(p.server);
    let raw = Arc::new(p.raw);
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Mutex::new(ServerStats::default()));
    let workers = p.sockets.len();
    let tx_mode = if p.packet.is_empty() { "socket" } else { "packet" };
    let mut packet = p.packet.into_iter();
    let mut handles = Vec::new();
    for (i, (primary, secondary)) in p.sockets.into_iter().enumerate() {
        let (server, raw, stop, totals) = (server.clone(), raw.clone(), stop.clone(), totals.clone());
        let mut ptx = packet.next();
        let h = thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                let socks = [&primary, &secondary];
                // A worker that panics (a bug) must not leave a server that silently stops
                // answering: the whole daemon stops, with an error, and is restarted by its
                // supervisor.
                let run = std::panic::AssertUnwindSafe(|| {
                    worker(&server, socks, ptx.as_mut(), raw.as_ref().as_ref(), &stop)
                });
                let Ok(stats) = std::panic::catch_unwind(run) else {
                    tracing::error!("worker {i} failed: stopping the server");
                    WORKER_FAILED.store(true, Ordering::Relaxed);
                    // SAFETY: sending a signal to our own process.
                    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
                    return;
                };
                if let Some(p) = &ptx {
                    let s = p.stats();
                    info!(
                        "worker {i}: {} frames sent on the packet socket, {} datagrams through the UDP sockets, {} frames refused",
                        s.frames, s.fallbacks, s.errors
                    );
                }
                if let Ok(mut t) = totals.lock() {
                    t.add(&stats);
                }
            })
            .map_err(|e| StartError::new("starting a worker", e))?;
        handles.push(h);
    }
    info!(
        "Teredo server on {}:{TEREDO_PORT} and {}:{TEREDO_PORT}, prefix {:x}::/32, MTU {}, {workers} worker(s), TX by {tx_mode}, running as {} (uid {})",
        cfg.primary,
        cfg.secondary,
        cfg.prefix >> 16,
        cfg.mtu,
        user.name,
        user.uid
    );
    if let Some(d) = detached.as_mut() {
        d.ready();
    }
    loop {
        match signals::wait() {
            Signal::Hangup => {
                info!("SIGHUP: the server keeps no state; restart it to apply a new configuration")
            }
            Signal::Terminate(sig) => {
                info!("signal {sig}: stopping");
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    if let Ok(t) = totals.lock() {
        info!(
            "{} datagrams: {} advertisements, {} relayed to clients, {} to IPv6, {} malformed, {} dropped",
            t.received, t.advertisements, t.relayed_udp, t.relayed_ipv6, t.malformed, t.dropped
        );
    }
    if WORKER_FAILED.load(Ordering::Relaxed) {
        return Err(StartError("a worker failed".into()));
    }
    Ok(())
}

/// One worker: serve both sockets until `stop`; answers leave by `packet` when given
/// (and possible), by the sockets otherwise.
fn worker(
    server: &Server,
    socks: [&Socket; 2],
    mut packet: Option<&mut PacketTx>,
    raw: Option<&RawIpv6>,
    stop: &AtomicBool,
) -> ServerStats {
    let mut stats = ServerStats::default();
    let mut rx = RecvBatch::new(BATCH, RECV_SIZE);
    let mut tx = [SendBatch::new(BATCH, SEND_SIZE), SendBatch::new(BATCH, SEND_SIZE)];
    let cfg = *server.config();
    let addrs = [cfg.primary, cfg.secondary];
    let mut scratch = [0u8; SEND_SIZE];
    let mut errors_logged = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if let Some(p) = packet.as_deref_mut() {
            p.maintain(Instant::now());
        }
        let ready = match poll::readable(&[socks[0].as_fd(), socks[1].as_fd()], Duration::from_millis(500)) {
            Ok(r) => r,
            Err(e) => {
                warn!("poll: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        for (idx, local) in [(0, Local::Primary), (1, Local::Secondary)] {
            if !ready[idx] {
                continue;
            }
            // Drain a bounded number of batches, then give the other socket its turn.
            for _ in 0..16 {
                let n = match rx.recv(socks[idx].as_fd()) {
                    Ok(n) => n,
                    Err(e) => {
                        if errors_logged < 10 {
                            warn!("receive: {e}");
                            errors_logged += 1;
                        }
                        0
                    }
                };
                for i in 0..n {
                    let (from, data, truncated) = rx.get(i);
                    if truncated {
                        stats.received += 1;
                        stats.malformed += 1;
                        continue;
                    }
                    // With a packet socket the answer is written straight into the next
                    // frame, behind the room for its headers.
                    let out = match packet.as_deref_mut() {
                        Some(p) => {
                            if p.is_full() {
                                let _ = p.flush();
                            }
                            // Never more than a socket slot: an answer that falls back
                            // to the socket must fit there too.
                            p.payload_mut().map(|b| {
                                let n = b.len().min(SEND_SIZE);
                                &mut b[..n]
                            })
                        }
                        None => None,
                    };
                    let in_frame = out.is_some();
                    let action = server.handle_datagram(local, from, data, out.unwrap_or(&mut scratch[..]));
                    stats.count(&action);
                    match action {
                        Action::SendUdp { from: out, to, len, .. } => {
                            let o = usize::from(out == Local::Secondary);
                            let bytes = match packet.as_deref_mut() {
                                Some(p) if in_frame => {
                                    match p.commit(SocketAddrV4::new(addrs[o], TEREDO_PORT), to, len) {
                                        Queued::Frame => continue,
                                        Queued::Socket(bytes) => bytes,
                                    }
                                }
                                _ => &scratch[..len],
                            };
                            if tx[o].is_full() {
                                let _ = tx[o].flush(socks[o].as_fd());
                            }
                            if let Some(buf) = tx[o].next_buf().and_then(|b| b.get_mut(..bytes.len())) {
                                buf.copy_from_slice(bytes);
                                tx[o].commit(bytes.len(), to);
                            }
                        }
                        Action::SendIpv6 { start, len, dst } => {
                            if let Some(r) = raw {
                                let _ = r.send(&data[start..start + len], dst);
                            }
                        }
                        Action::Drop(_) => {}
                    }
                }
                if let Some(p) = packet.as_deref_mut()
                    && !p.is_empty()
                {
                    let _ = p.flush();
                }
                for o in 0..2 {
                    if !tx[o].is_empty() {
                        let _ = tx[o].flush(socks[o].as_fd());
                    }
                }
                if n < BATCH {
                    break;
                }
            }
        }
    }
    stats
}
