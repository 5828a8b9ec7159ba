//! `teredo run`: the Teredo client (RFC 4380 §5.2) or relay (§5.4), as `RelayType` says —
//! a drop-in for `miredo`, with the same configuration file and flags.
//!
//! Start-up, as root and single-threaded: read the configuration; create the TUN and bind
//! the UDP socket; for a relay, configure the interface once (MTU, fe80::ffff:ffff:ffff,
//! the route to the served prefix); detach unless `-f`; write the PID file; for a client,
//! fork the privileged helper that alone may change the interface later (it keeps only
//! CAP_NET_ADMIN, see `teredo_net::helper`; forked after detaching, so that it is the
//! daemon's own child, which waits for its final `down` and `destroy`); drop to the
//! unprivileged user with no capability left. Then one worker thread runs the packet path:
//! the sans-IO qualification procedure ([`teredo_proto::client::Client`]) and data path
//! ([`teredo_proto::tunnel::Tunnel`]) driven by batched UDP I/O and the TUN. The main
//! thread only waits for signals.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use clap::Args;
use socket2::Socket;
use teredo_net::batch::{RecvBatch, SendBatch};
use teredo_net::client_if::RELAY_ROUTE_METRIC;
use teredo_net::helper::{self, Helper, HelperOptions};
use teredo_net::ifconfig::{InterfaceConfig, Ipv6Prefix, Route};
use teredo_net::tun::{Tun, TunOptions};
use teredo_net::udp::{bind_udp, local_v4};
use teredo_net::{poll, privileges};
use teredo_proto::address::LINK_LOCAL_RESTRICTED;
use teredo_proto::client::{self, Client, Event, NatKind};
use teredo_proto::nonce::TokenKey;
use teredo_proto::offload::{self, Coalescer, Segments, VNET_HDR_LEN, VnetHeader};
use teredo_proto::time::Instant;
use teredo_proto::tunnel::{Destination, Limits, RelayConfig, Role, TunVerdict, Tunnel, UdpVerdict};
use teredo_proto::wire::TeredoPacket;
use tracing::{info, warn};

use super::signals::{self, Signal};
use super::{DaemonArgs, StartError, detach, logging, pidfile, resolve};
use crate::config::{self, ClientRelayConfig, ClientRelayOverrides, Host, RelayType};

/// Datagrams per receive call.
const BATCH: usize = 64;
/// Room per batch slot: a UDP GRO burst of one peer, a TUN packet, or an output of the state
/// machines (RSs, bubbles, echo tests, ICMPv6 errors, released queued packets) is at most
/// 64 KiB.
/// Slots are allocated zeroed, so only the pages written are ever resident.
const SLOT_SIZE: usize = 65536;
/// TUN packets read per wake-up before the socket gets its turn.
const TUN_BURST: usize = 64;
// The platform and the protocol core agree on the virtio-net header.
const _: () = assert!(teredo_net::tun::VNET_HDR_LEN == VNET_HDR_LEN);

/// TCP flows whose segments are joined at once on their way to an offloading TUN.
const COALESCE_FLOWS: usize = 8;

/// The TUN offloads at work (see `teredo_net::tun`): super-packets read from the TUN are
/// cut into ordinary packets, and the TCP segments of one flow that arrive together are
/// joined before they are written.
struct Offload {
    /// The virtio-net header of the packet just read.
    hdr: [u8; VNET_HDR_LEN],
    /// Where a super-packet is cut from (ordinary packets are read straight into their send
    /// slot and never come here).
    scratch: Vec<u8>,
    coalescer: Coalescer,
    /// Super-packets read, and the packets cut from them.
    super_packets: u64,
    segments: u64,
    /// Packets read that could not be cut (malformed for the offload rules: counted and
    /// dropped).
    errors: u64,
    /// Super-packets the kernel refused to take (EINVAL): each was written again cut into
    /// its packets, and joining stopped for good (of UDP only, if it was a UDP one).
    refused: Refusals,
    /// Where a refused super-packet is cut back into packets.
    cut: Vec<u8>,
}

/// The super-packets the kernel refused to take, and of which kinds.
#[derive(Debug, Default)]
struct Refusals {
    count: u64,
    tcp: bool,
    udp: bool,
}

/// Writes one frame of the [`Coalescer`] to the TUN. Should the kernel refuse a
/// super-packet's header (an older kernel's rules), the packets in it are written one by
/// one and the refusal is noted in `refused`, so that nothing is lost; any other failure is
/// counted in `write_errors`.
fn write_frame(
    tun: &Tun,
    cut: &mut [u8],
    refused: &mut Refusals,
    write_errors: &mut u64,
    hdr: &[u8; VNET_HDR_LEN],
    packet: &[u8],
) {
    let Err(e) = tun.send_offload(hdr, packet) else { return };
    let header = VnetHeader::parse(hdr).unwrap_or_default();
    if header.gso_type == VnetHeader::GSO_NONE || e.raw_os_error() != Some(libc::EINVAL) {
        *write_errors += 1;
        return;
    }
    refused.count += 1;
    if header.gso_type == VnetHeader::GSO_UDP_L4 {
        refused.udp = true;
    } else {
        refused.tcp = true;
    }
    let Ok(mut segments) = Segments::new(&header, packet) else {
        *write_errors += 1;
        return;
    };
    for _ in 0..segments.count() {
        match segments.next_into(cut) {
            Some(n) if tun.send(&cut[..n]).is_ok() => {}
            _ => *write_errors += 1,
        }
    }
}

impl Offload {
    fn new() -> Self {
        Self {
            hdr: [0; VNET_HDR_LEN],
            scratch: vec![0; SLOT_SIZE],
            coalescer: Coalescer::new(COALESCE_FLOWS),
            super_packets: 0,
            segments: 0,
            errors: 0,
            refused: Refusals::default(),
            cut: vec![0; SLOT_SIZE],
        }
    }
}

/// `teredo run [-c FILE] [-f] [-p PIDFILE] [-u USER] [-t CHROOT] [SERVER_NAME]`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Miredo's daemon flags.
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// The Teredo server, instead of ServerAddress (a client only; ServerAddress2 is then
    /// not read).
    #[arg(value_name = "SERVER_NAME")]
    pub server_name: Option<String>,
    /// Client timers for tests, not for production (hidden from `--help`): see
    /// [`ClientTimers`].
    #[command(flatten)]
    pub timers: ClientTimers,
    /// Do not use the TUN's offloads (Linux virtio-net headers with checksum and TCP
    /// segmentation offload): packets then cross the TUN one by one.
    #[arg(long)]
    pub no_offload: bool,
    /// Worker threads of a relay (default: one per CPU, at most 16), each with its own TUN
    /// queue, UDP socket and share of the peers (`MaxPeers` and the other bounds are
    /// divided among them); a client always runs one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// The key of the relay's steering hash, for tests (hidden from `--help`): by default
    /// it is drawn at random, so that nobody can aim many peers at one worker.
    #[arg(long, value_name = "KEY", hide = true)]
    pub test_steering_key: Option<u64>,
}

/// The default number of relay workers is one per CPU, up to this: each worker holds about
/// 9 MiB of buffers and two 4 MiB socket buffers, and a TUN has at most 256 queues.
const DEFAULT_MAX_WORKERS: usize = 16;

/// The client's qualification timers, shortened for the lab tests only: with Miredo's
/// values (30 s refresh, 4 s × 3 reply timeouts, 100 s restart delay) a test of losing and
/// regaining the server would take minutes. Hidden from `--help`; each defaults to the
/// value of [`client::Config::new`], and values below 100 ms are raised to it.
///
/// `--test-refresh-interval-ms N`, `--test-reply-timeout-ms N`, `--test-restart-delay-ms N`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ClientTimers {
    /// The refresh interval (RFC 4380 §5.2.5), in milliseconds.
    #[arg(long = "test-refresh-interval-ms", value_name = "MS", hide = true)]
    pub refresh_interval_ms: Option<u64>,
    /// The time to wait for an RA before soliciting again (RFC 4380 §5.2.1), in ms.
    #[arg(long = "test-reply-timeout-ms", value_name = "MS", hide = true)]
    pub reply_timeout_ms: Option<u64>,
    /// The wait after the server was found unreachable, in milliseconds.
    #[arg(long = "test-restart-delay-ms", value_name = "MS", hide = true)]
    pub restart_delay_ms: Option<u64>,
}

impl ClientTimers {
    /// `config` with the timers given on the command line.
    pub fn apply(&self, mut config: client::Config) -> client::Config {
        if let Some(ms) = self.refresh_interval_ms {
            config.refresh_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = self.reply_timeout_ms {
            config.reply_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.restart_delay_ms {
            config.restart_delay = Duration::from_millis(ms);
        }
        config
    }
}

/// The role-specific part of start-up. A client's helper is forked only after detaching
/// (in `serve`), so that it is the daemon's own child: forked before, it would be the child
/// of the parent that exits, and the daemon could not wait for its final `down` and
/// `destroy`.
enum Mode {
    Client { helper: HelperOptions, server: Host, server2: Option<Host> },
    Relay { config: RelayConfig },
}

/// What start-up produced: one TUN queue and one UDP socket per worker (one of each for a
/// client; for a relay of several workers, a multi-queue TUN and a SO_REUSEPORT group
/// whose traffic is steered so that each peer's packets, both ways, meet its worker).
struct Prepared {
    cfg: ClientRelayConfig,
    tuns: Vec<Tun>,
    udps: Vec<Socket>,
    key: TokenKey,
    mode: Mode,
}

/// Runs the client or relay; returns the exit status.
pub fn run(args: &RunArgs) -> u8 {
    if args.daemon.foreground {
        logging::init(logging::Target::Stderr, false);
    }
    let prepared = match prepare(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("teredo run: {e}");
            return 1;
        }
    };
    let mut detached = None;
    if !args.daemon.foreground {
        match detach::detach() {
            Ok(d) => detached = Some(d),
            Err(e) => {
                eprintln!("teredo run: cannot detach: {e}");
                return 1;
            }
        }
        logging::init(
            logging::Target::Syslog { facility: prepared.cfg.syslog_facility.code(), ident: "teredo" },
            false,
        );
    }
    let status = match serve(args, prepared, &mut detached) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    };
    if let Some(d) = detached.as_mut() {
        d.failed(status);
    }
    status
}

fn random_key() -> Result<TokenKey, StartError> {
    let mut k = [0u8; 32];
    let mut filled = 0;
    while filled < k.len() {
        // SAFETY: writing into the unfilled tail of a local buffer.
        let n = unsafe { libc::getrandom(k[filled..].as_mut_ptr().cast(), k.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(StartError::new("getrandom", e));
            }
            continue;
        }
        filled += n as usize;
    }
    Ok(TokenKey::new(k))
}

fn prepare(args: &RunArgs) -> Result<Prepared, StartError> {
    let overrides = ClientRelayOverrides {
        server_address: match &args.server_name {
            Some(s) => Some(Host::parse_global(s).map_err(|e| StartError::new(format!("server {s:?}"), e))?),
            None => None,
        },
    };
    let path = args.daemon.config.clone().unwrap_or_else(|| PathBuf::from(config::DEFAULT_CLIENT_RELAY_FILE));
    let cfg = super::read_config(
        "teredo run",
        &path,
        overrides.server_address.is_some(),
        |p| config::load_client_relay(p, &overrides),
        |name| config::parse_client_relay_with("", name, &overrides),
    )?;
    let key = random_key()?;

    let bind_ip = match &cfg.bind_address {
        Some(h) => {
            resolve::any_ipv4(h).map_err(|e| StartError::new(super::locate(&path, "BindAddress"), e))?
        }
        None => Ipv4Addr::UNSPECIFIED,
    };
    let is_relay = cfg.relay_type != RelayType::Client;
    if !is_relay && args.workers.is_some_and(|n| n > 1) {
        warn!("--workers is for a relay: a client runs one worker");
    }
    let wanted = if is_relay {
        args.workers.map(usize::from).unwrap_or_else(|| {
            thread::available_parallelism().map_or(1, |n| n.get()).min(DEFAULT_MAX_WORKERS)
        })
    } else {
        1
    };
    let workers = if cfg!(target_os = "linux") { wanted } else { 1 };
    let options = TunOptions {
        name: cfg.interface_name.clone(),
        multi_queue: workers > 1,
        offload: cfg!(target_os = "linux") && !args.no_offload,
    };
    let mut tuns = vec![Tun::create(&options).map_err(|e| {
        StartError::new(format!("{}: TUN interface", super::locate(&path, "InterfaceName")), e)
    })?];
    let mut udps = Vec::with_capacity(workers);
    let mut port = cfg.bind_port;
    for i in 0..workers {
        // The first socket binds without SO_REUSEPORT, so that the port must be free of
        // every other socket, those of another daemon's group included (a second relay
        // started by mistake must not take half of the first one's traffic), and so that
        // an ephemeral port is one nobody holds. Then it opens the group that the other
        // workers' sockets join, on the port it got.
        let udp = bind_udp(SocketAddrV4::new(bind_ip, port), i > 0).map_err(|e| {
            let at = super::locate(&path, if cfg.bind_port != 0 { "BindPort" } else { "BindAddress" });
            StartError::new(format!("{at}: UDP socket {bind_ip}:{port}"), e)
        })?;
        if i == 0 && workers > 1 {
            udp.set_reuse_port(true).map_err(|e| StartError::new("UDP socket (SO_REUSEPORT)", e))?;
        }
        port = local_v4(&udp).map_err(|e| StartError::new("UDP socket", e))?.port();
        udps.push(udp);
    }
    let steering_key = match args.test_steering_key {
        Some(k) => k,
        None => {
            let k = key.hash_key("worker steering");
            u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]])
        }
    };
    let extra = (1..workers).map(|_| tuns[0].clone_queue()).collect::<Result<Vec<_>, _>>();
    let steered = extra.map_err(|e| format!("TUN queues: {e}")).and_then(|extra| {
        tuns.extend(extra);
        if workers > 1 { steer(&tuns[0], &udps[0], workers, cfg.prefix.0, steering_key) } else { Ok(()) }
    });
    if let Err(e) = steered {
        warn!("cannot steer each peer to one worker ({e}): running one worker");
        tuns.truncate(1);
        udps.truncate(1);
    }
    for udp in &udps {
        udp.set_nonblocking(true).map_err(|e| StartError::new("UDP socket", e))?;
        // Best effort: without GRO the datagrams simply come one by one.
        let _ = teredo_net::udp::enable_gro(udp);
    }
    for tun in &tuns {
        tun.set_nonblocking(true).map_err(|e| StartError::new("TUN interface", e))?;
    }

    let mode = match cfg.relay_type {
        RelayType::Client => {
            let user = privileges::lookup_user(&args.daemon.user).map_err(|e| StartError(e.to_string()))?;
            let helper = HelperOptions { user, hook: cfg.client_hook.clone() };
            let server = cfg.server_address.clone().ok_or_else(|| StartError("no Teredo server".into()))?;
            Mode::Client { helper, server, server2: cfg.server_address2.clone() }
        }
        RelayType::Cone | RelayType::Restricted => {
            configure_relay_interface(&tuns[0], &cfg)?;
            Mode::Relay {
                config: RelayConfig {
                    prefix: cfg.prefix.0,
                    cone: cfg.relay_type == RelayType::Cone,
                    // Not the TUN's link-local address: the kernel never forwards a
                    // packet with a link-local source, so the native sender would never
                    // see the error (Miredo's kernel-chosen source is global). The
                    // unreachable destination is routable back to the sender.
                    unreachable_source: None,
                },
            }
        }
    };
    Ok(Prepared { cfg, tuns, udps, key, mode })
}

/// Attaches the programs that send each peer's datagrams to the socket, and the packets
/// for it to the TUN queue, of the same worker (`teredo_net::steer`); as root.
#[cfg(target_os = "linux")]
fn steer(tun: &Tun, udp: &Socket, workers: usize, prefix: u32, key: u64) -> Result<(), String> {
    let n = workers as u32;
    teredo_net::steer::steer_udp(udp, n, key).map_err(|e| e.to_string())?;
    teredo_net::steer::steer_tun(tun, n, prefix, key).map_err(|e| e.to_string())
}

#[cfg(not(target_os = "linux"))]
fn steer(_: &Tun, _: &Socket, _: usize, _: u32, _: u64) -> Result<(), String> {
    Err("one worker only on this platform".into())
}

/// A relay's interface is set up once, as root (miredo-facts §5.1): MTU, up, the
/// link-local fe80::ffff:ffff:ffff/64 and the route to the served prefix.
fn configure_relay_interface(tun: &Tun, cfg: &ClientRelayConfig) -> Result<(), StartError> {
    let mut ifc = teredo_net::ifconfig::platform_config(tun).map_err(|e| StartError::new("netlink", e))?;
    let idx = tun.ifindex();
    let ctx = |what: &str| format!("{} ({what})", tun.name());
    ifc.set_mtu(idx, u32::from(cfg.interface_mtu)).map_err(|e| StartError::new(ctx("MTU"), e))?;
    ifc.set_link(idx, true).map_err(|e| StartError::new(ctx("link up"), e))?;
    let _ = ifc.flush_addresses(idx);
    let ll = Ipv6Prefix::new(LINK_LOCAL_RESTRICTED, 64).ok_or_else(|| StartError(ctx("address")))?;
    ifc.add_address(idx, ll).map_err(|e| StartError::new(ctx("address"), e))?;
    let p = cfg.prefix.0.to_be_bytes();
    let prefix = Ipv6Prefix::new(
        std::net::Ipv6Addr::from([p[0], p[1], p[2], p[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        32,
    )
    .ok_or_else(|| StartError(ctx("prefix")))?;
    let route = Route { destination: prefix, ifindex: idx, metric: RELAY_ROUTE_METRIC };
    match ifc.add_route(&route) {
        Ok(()) => Ok(()),
        Err(e) if e.is_exists() => Ok(()),
        Err(e) => Err(StartError::new(ctx("route"), e)),
    }
}

fn serve(args: &RunArgs, p: Prepared, detached: &mut Option<detach::Detached>) -> Result<(), StartError> {
    let pidfile =
        args.daemon.pidfile.clone().or_else(|| (!args.daemon.foreground).then(|| "/run/teredo.pid".into()));
    let _pid = match &pidfile {
        Some(path) => Some(pidfile::create(path).map_err(|e| StartError::new(path.display(), e))?),
        None => None,
    };
    let user = privileges::lookup_user(&args.daemon.user).map_err(|e| StartError(e.to_string()))?;
    // The client's helper, forked while still root and single-threaded, in the detached
    // process (see `Mode::Client`), and before the daemon's signals are blocked.
    let helper = match &p.mode {
        Mode::Client { helper, .. } => {
            if detached.is_some() {
                // Logs go to syslog now; the helper must not keep the caller's stdout and
                // stderr open once the parent has exited.
                detach::null_stdio().map_err(|e| StartError::new("/dev/null", e))?;
            }
            Some(helper::spawn(&p.tuns[0], helper).map_err(|e| StartError::new("privileged helper", e))?)
        }
        Mode::Relay { .. } => None,
    };
    signals::block().map_err(|e| StartError::new("blocking signals", e))?;
    privileges::drop_privileges(&user, args.daemon.chroot.as_deref())
        .map_err(|e| StartError(e.to_string()))?;

    let local = local_v4(&p.udps[0]).map_err(|e| StartError::new("UDP socket", e))?;
    let start = std::time::Instant::now();
    let now = Instant::ZERO;
    let workers = p.udps.len();
    // Each worker has its own table, for its share of the peers, and its share of every
    // other bound, so that the daemon as a whole keeps them.
    let whole = Limits {
        peers: teredo_proto::peers::PeerLimits { max_peers: p.cfg.max_peers as usize, ..Default::default() },
        ..Default::default()
    };
    let limits = whole.shared_by(workers);
    let (role, mut client, mut helper, mut server_hosts) = match p.mode {
        Mode::Client { server, server2, .. } => {
            let address = match &server {
                Host::Ipv4(a) => client::ServerAddress::Ipv4(*a),
                Host::Name(_) => client::ServerAddress::HostName,
            };
            let mut c = args.timers.apply(client::Config::new(address));
            c.secondary = server2.as_ref().and_then(Host::ipv4);
            let cl = Client::new(c, p.key.clone(), now).map_err(|e| StartError::new("ServerAddress", e))?;
            (Role::Client, Some(cl), helper, Some((server, server2)))
        }
        Mode::Relay { config } => (Role::Relay(config), None, None, None),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let solicit = Arc::new(AtomicBool::new(false));
    let is_client = client.is_some();
    let what = if is_client { "client" } else { "relay" };
    let mut handles = Vec::with_capacity(workers);
    let failed = Arc::new(AtomicBool::new(false));
    let mut offloads = false;
    for (i, (udp, tun)) in p.udps.into_iter().zip(p.tuns).enumerate() {
        // The TUN's packets for non-Teredo destinations, which get the unreachables, all
        // go to worker 0: it keeps the whole rate.
        let limits = if i == 0 {
            Limits { unreachables_per_second: whole.unreachables_per_second, ..limits }
        } else {
            limits
        };
        let tunnel =
            Tunnel::new(role, p.key.clone(), limits, now).map_err(|e| StartError::new("peer table", e))?;
        let mut worker = Worker {
            start,
            udp,
            offload: None,
            tun_write_errors: 0,
            tun,
            client: client.take(),
            tunnel,
            helper: helper.take(),
            server_hosts: server_hosts.take(),
            resolver: None,
            server: None,
            // Buffers of 64 KiB: with UDP GRO one holds a whole burst of one peer.
            rx: RecvBatch::new(BATCH, SLOT_SIZE),
            tx: {
                // Runs of full-size packets to one peer (a TCP stream) leave as one UDP GSO
                // message each: one trip through the stack instead of one per packet.
                let mut tx = SendBatch::new(BATCH, SLOT_SIZE);
                tx.set_segmentation(true);
                tx
            },
            solicit: solicit.clone(),
        };
        worker.offload = worker.tun.offloads().then(|| {
            let mut o = Offload::new();
            // UDP super-packets only where the TUN takes them (USO, Linux 6.2).
            o.coalescer.set_join_udp(worker.tun.uso(), &mut |_, _| {});
            o
        });
        offloads = worker.offload.is_some();
        if i == 0 {
            info!(
                "Teredo {what} on {} (UDP {local}), running as {} (uid {}), TUN offloads {}, {workers} \
                 worker{}",
                worker.tun.name(),
                user.name,
                user.uid,
                if offloads { "on" } else { "off" },
                if workers == 1 { "" } else { "s" }
            );
        }
        let (stop2, failed2) = (stop.clone(), failed.clone());
        let handle = thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                // A worker that panics (a bug) must not leave a daemon that silently stops
                // forwarding: the whole daemon stops, with an error, for its supervisor to
                // restart it.
                let run = std::panic::AssertUnwindSafe(|| worker.run(&stop2));
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!("worker {i} failed ({what}): stopping");
                    failed2.store(true, Ordering::Relaxed);
                    // SAFETY: sending a signal to our own process.
                    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
                }
                worker.finish();
                worker.totals()
            })
            .map_err(|e| StartError::new("starting a worker", e))?;
        handles.push(handle);
    }
    if let Some(d) = detached.as_mut() {
        d.ready();
    }
    loop {
        match signals::wait() {
            // Miredo restarts on SIGHUP, which Debian's ifupdown hook sends when an interface
            // comes up: a client at least qualifies again at once (the network may have
            // changed); the configuration is not read again.
            Signal::Hangup if is_client => {
                info!(
                    "SIGHUP: soliciting the Teredo server again; restart teredo to apply a new \
                     configuration"
                );
                solicit.store(true, Ordering::Relaxed);
            }
            Signal::Hangup => {
                info!("SIGHUP: reloading is not supported yet; restart teredo to apply a new configuration")
            }
            Signal::Terminate(sig) => {
                info!("signal {sig}: stopping");
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut totals = Totals::default();
    for handle in handles {
        match handle.join() {
            Ok(t) => totals.add(&t),
            Err(_) => failed.store(true, Ordering::Relaxed),
        }
    }
    info!("{}", totals.line(offloads));
    if failed.load(Ordering::Relaxed) {
        return Err(StartError("a worker failed".into()));
    }
    Ok(())
}

/// The counters of the workers, summed for the line logged at exit.
#[derive(Debug, Default)]
struct Totals {
    qualification: Option<String>,
    sent: u64,
    delivered: u64,
    bubbles: u64,
    echo_tests: u64,
    unreachables: u64,
    dropped: u64,
    /// The peers of each worker, in worker order.
    peers_per_worker: Vec<u64>,
    socket_refused: u64,
    tun_refused: u64,
    /// Super-packets read, packets cut from them, super-packets written, packets joined in
    /// them, unusable reads, super-packets refused, packets not joined for their checksum.
    offload: [u64; 7],
}

impl Totals {
    fn add(&mut self, o: &Self) {
        if self.qualification.is_none() {
            self.qualification.clone_from(&o.qualification);
        }
        for (a, b) in [
            (&mut self.sent, o.sent),
            (&mut self.delivered, o.delivered),
            (&mut self.bubbles, o.bubbles),
            (&mut self.echo_tests, o.echo_tests),
            (&mut self.unreachables, o.unreachables),
            (&mut self.dropped, o.dropped),
            (&mut self.socket_refused, o.socket_refused),
            (&mut self.tun_refused, o.tun_refused),
        ] {
            *a += b;
        }
        for (a, b) in self.offload.iter_mut().zip(o.offload) {
            *a += b;
        }
        self.peers_per_worker.extend_from_slice(&o.peers_per_worker);
    }

    /// `[qualification: ...; ]N sent, N delivered, ..., N refused by the TUN[; TUN offloads: ...]`.
    fn line(&self, offloads: bool) -> String {
        let o = &self.offload;
        let per_worker = if self.peers_per_worker.len() > 1 {
            let v: Vec<String> = self.peers_per_worker.iter().map(u64::to_string).collect();
            format!(" ({} by worker)", v.join("+"))
        } else {
            String::new()
        };
        let offload = if offloads {
            format!(
                "; TUN offloads: {} super-packets read cut into {} packets, {} written joining {} packets, \
                 {} unusable, {} refused by the kernel, {} not joined for their checksum",
                o[0], o[1], o[2], o[3], o[4], o[5], o[6]
            )
        } else {
            String::new()
        };
        format!(
            "{}{} sent, {} delivered, {} bubbles sent, {} echo tests, {} unreachables, {} dropped, {} \
             peers{per_worker}, {} refused by the socket, {} refused by the TUN{offload}",
            self.qualification.as_deref().unwrap_or(""),
            self.sent,
            self.delivered,
            self.bubbles,
            self.echo_tests,
            self.unreachables,
            self.dropped,
            self.peers_per_worker.iter().sum::<u64>(),
            self.socket_refused,
            self.tun_refused
        )
    }
}

/// A host-name resolution running on its own thread (getaddrinfo blocks).
type Resolution = mpsc::Receiver<Result<(Ipv4Addr, Option<Ipv4Addr>), String>>;

struct Worker {
    start: std::time::Instant,
    udp: Socket,
    tun: Tun,
    client: Option<Client>,
    tunnel: Tunnel,
    helper: Option<Helper>,
    server_hosts: Option<(Host, Option<Host>)>,
    resolver: Option<Resolution>,
    /// The server's primary address, once known (for the data path's qualification).
    server: Option<Ipv4Addr>,
    rx: RecvBatch,
    tx: SendBatch,
    /// The TUN's offloads, when the kernel granted them.
    offload: Option<Offload>,
    /// Packets the TUN refused to take (write errors).
    tun_write_errors: u64,
    /// Set on SIGHUP: a client solicits its server at once ([`Client::solicit_now`]).
    solicit: Arc<AtomicBool>,
}

impl Worker {
    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let now = self.now();
            if let Some(c) = self.client.as_mut() {
                if self.solicit.swap(false, Ordering::Relaxed) {
                    c.solicit_now(now);
                }
                c.handle_timeout(now);
            }
            self.tunnel.handle_timeout(now);
            self.events(now);
            self.check_resolver(now);
            self.transmit(now);

            let mut deadline = self.tunnel.poll_timeout();
            if let Some(t) = self.client.as_ref().and_then(Client::poll_timeout) {
                deadline = deadline.min(t);
            }
            let wait = deadline
                .saturating_since(now)
                .min(Duration::from_millis(if self.resolver.is_some() { 50 } else { 500 }));
            let ready = match poll::readable(&[self.udp.as_fd(), self.tun.as_fd()], wait) {
                Ok(r) => r,
                Err(e) => {
                    warn!("poll: {e}");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if ready[0] {
                self.receive_udp();
            }
            if ready[1] {
                self.receive_tun();
            }
        }
    }

    /// Datagrams from the Teredo socket: qualification replies to the client, the rest to
    /// the data path.
    fn receive_udp(&mut self) {
        // Out of `self` for the burst, so that the state machines' outputs can be sent
        // between two datagrams of it.
        let mut rx = std::mem::replace(&mut self.rx, RecvBatch::new(0, 0));
        self.receive_udp_with(&mut rx);
        self.rx = rx;
    }

    fn receive_udp_with(&mut self, rx: &mut RecvBatch) {
        for _ in 0..16 {
            let n = match rx.recv(self.udp.as_fd()) {
                Ok(n) => n,
                Err(e) => {
                    warn!("receive: {e}");
                    0
                }
            };
            let now = self.now();
            for i in 0..n {
                let (from, _, truncated) = rx.get(i);
                if truncated {
                    continue;
                }
                for data in rx.segments(i) {
                    if let Some(c) = self.client.as_mut()
                        && let Ok(pkt) = TeredoPacket::parse(data)
                        && c.handle_datagram(now, from, &pkt)
                    {
                        continue;
                    }
                    let verdict = self.tunnel.handle_datagram(now, from, data);
                    if self.tunnel.has_output() {
                        // A peer or relay was just verified: its queued packets go out now,
                        // before this one and those that came after them.
                        self.flush_coalescer();
                        self.transmit(now);
                    }
                    if let UdpVerdict::Deliver { range } = verdict {
                        match self.offload.as_mut() {
                            Some(o) => o.coalescer.push(&data[range], &mut |h, p| {
                                write_frame(
                                    &self.tun,
                                    &mut o.cut,
                                    &mut o.refused,
                                    &mut self.tun_write_errors,
                                    h,
                                    p,
                                )
                            }),
                            None => {
                                if self.tun.send(&data[range]).is_err() {
                                    self.tun_write_errors += 1;
                                }
                            }
                        }
                    }
                }
            }
            self.flush_coalescer();
            if let Some(o) = self.offload.as_mut() {
                if o.refused.udp && o.coalescer.joins_udp() {
                    warn!(
                        "the kernel refuses our UDP super-packets: writing datagrams one by one from now on"
                    );
                    o.coalescer.set_join_udp(false, &mut |h, p| {
                        write_frame(&self.tun, &mut o.cut, &mut o.refused, &mut self.tun_write_errors, h, p)
                    });
                }
                if o.refused.tcp && o.coalescer.flows() > 0 {
                    warn!("the kernel refuses our TCP super-packets: writing packets one by one from now on");
                    o.coalescer.stop_joining(&mut |h, p| {
                        write_frame(&self.tun, &mut o.cut, &mut o.refused, &mut self.tun_write_errors, h, p)
                    });
                }
            }
            if n < BATCH {
                break;
            }
        }
        let now = self.now();
        self.events(now);
        self.transmit(now);
    }

    /// Writes what the coalescer holds open.
    fn flush_coalescer(&mut self) {
        if let Some(o) = self.offload.as_mut() {
            o.coalescer.flush(&mut |h, p| {
                write_frame(&self.tun, &mut o.cut, &mut o.refused, &mut self.tun_write_errors, h, p)
            });
        }
    }

    /// IPv6 packets from the TUN: encapsulated and sent in one batch.
    fn receive_tun(&mut self) {
        if self.offload.is_some() {
            return self.receive_tun_offload();
        }
        let now = self.now();
        for _ in 0..TUN_BURST {
            if self.tx.is_full() {
                let _ = self.tx.flush(self.udp.as_fd());
            }
            // Read straight into the next send slot: a packet sent as it is (simple
            // encapsulation) is never copied.
            let Some(slot) = self.tx.next_buf() else { break };
            let n = match self.tun.recv(slot) {
                Ok(n) => n,
                Err(_) => break,
            };
            if let TunVerdict::Send { dst } = self.tunnel.handle_tun_packet(now, &slot[..n]) {
                self.tx.commit(n, dst);
            }
        }
        if !self.tx.is_empty() {
            let _ = self.tx.flush(self.udp.as_fd());
        }
        self.transmit(now);
    }

    /// [`Worker::receive_tun`] on a TUN with offloads: an ordinary packet is read straight
    /// into its send slot (its checksum completed in place if the kernel left it partial);
    /// a super-packet is cut into ordinary packets, one slot each, which leave as UDP GSO
    /// messages of up to 64 KiB when they go to one peer.
    fn receive_tun_offload(&mut self) {
        let now = self.now();
        let Some(o) = self.offload.as_mut() else { return };
        for _ in 0..TUN_BURST {
            if self.tx.is_full() {
                let _ = self.tx.flush(self.udp.as_fd());
            }
            let Some(slot) = self.tx.next_buf() else { break };
            let n = match self.tun.recv_offload(&mut o.hdr, slot) {
                Ok(n) => n,
                Err(_) => break,
            };
            let hdr = VnetHeader::parse(&o.hdr).unwrap_or_default();
            if hdr.gso_type == VnetHeader::GSO_NONE {
                if offload::complete_checksum(&hdr, &mut slot[..n]).is_err() {
                    o.errors += 1;
                    continue;
                }
                if let TunVerdict::Send { dst } = self.tunnel.handle_tun_packet(now, &slot[..n]) {
                    self.tx.commit(n, dst);
                }
                continue;
            }
            o.scratch[..n].copy_from_slice(&slot[..n]);
            let mut segments = match Segments::new(&hdr, &o.scratch[..n]) {
                Ok(s) => s,
                Err(_) => {
                    o.errors += 1;
                    continue;
                }
            };
            o.super_packets += 1;
            o.segments += segments.count() as u64;
            loop {
                if self.tx.is_full() {
                    let _ = self.tx.flush(self.udp.as_fd());
                }
                let Some(slot) = self.tx.next_buf() else { break };
                let Some(len) = segments.next_into(slot) else { break };
                if let TunVerdict::Send { dst } = self.tunnel.handle_tun_packet(now, &slot[..len]) {
                    self.tx.commit(len, dst);
                }
            }
        }
        if !self.tx.is_empty() {
            let _ = self.tx.flush(self.udp.as_fd());
        }
        self.transmit(now);
    }

    /// Everything the state machines want to send, written straight into the send batch
    /// (bubbles to many new peers, released queues: one sendmmsg for a batch, not one
    /// system call each); what goes to the TUN is written from its slot.
    fn transmit(&mut self, now: Instant) {
        loop {
            if self.tx.is_full() {
                let _ = self.tx.flush(self.udp.as_fd());
            }
            let Some(slot) = self.tx.next_buf() else { break };
            if let Some(t) = self.client.as_mut().and_then(|c| c.poll_transmit(now, slot)) {
                self.tx.commit(t.len, t.dst);
                continue;
            }
            let Some(t) = self.tunnel.poll_transmit(now, slot) else { break };
            match t.dest {
                Destination::Udp(to) => self.tx.commit(t.len, to),
                Destination::Tun => {
                    if self.tun.send(&slot[..t.len]).is_err() {
                        self.tun_write_errors += 1;
                    }
                }
            }
        }
        if !self.tx.is_empty() {
            let _ = self.tx.flush(self.udp.as_fd());
        }
    }

    /// The client's state changes: configure the interface and tell the data path.
    fn events(&mut self, now: Instant) {
        loop {
            let Some(c) = self.client.as_mut() else { return };
            let Some(e) = c.poll_event() else { return };
            match e {
                Event::Up { address, mtu } => {
                    let t = teredo_proto::address::TeredoAddress::from_ipv6(&address);
                    let server = c.server().map(|(p, _)| p).or(self.server);
                    match t {
                        Some(t) => info!(
                            "New Teredo address {address}, MTU {mtu} (server {}, mapped {}:{})",
                            t.server, t.mapped_addr, t.mapped_port
                        ),
                        None => info!("New Teredo address {address}, MTU {mtu}"),
                    }
                    if let Some(h) = self.helper.as_mut() {
                        match h.up(address, mtu) {
                            Ok(r) if r.is_success() => {}
                            Ok(r) => warn!("interface configuration refused or failed: {r:?}"),
                            Err(e) => warn!("privileged helper: {e}"),
                        }
                    }
                    if let Some(s) = server {
                        self.tunnel.set_qualified(now, address, s);
                    }
                }
                Event::Down => {
                    warn!("Lost Teredo connectivity: the server does not answer");
                    self.tunnel.reset(now);
                    if let Some(h) = self.helper.as_mut()
                        && let Err(e) = h.down()
                    {
                        warn!("privileged helper: {e}");
                    }
                }
                Event::NatBehaviour(NatKind::SameMapping) => {
                    info!("NAT: one mapping for both server addresses (cone or restricted NAT)")
                }
                Event::NatBehaviour(NatKind::Symmetric) => warn!(
                    "NAT: symmetric NAT detected (the server's two addresses saw different mappings): \
                     Teredo peers behind other NATs may be unreachable directly; relays still work"
                ),
                Event::NatBehaviour(NatKind::Unknown) => {
                    info!("NAT: behaviour unknown (no answer from the server's secondary address)")
                }
                Event::ResolveServer => self.start_resolver(),
            }
        }
    }

    fn start_resolver(&mut self) {
        if self.resolver.is_some() {
            return;
        }
        let Some((primary, secondary)) = self.server_hosts.clone() else { return };
        let (tx, rx) = mpsc::channel();
        let spawned = thread::Builder::new().name("resolver".into()).spawn(move || {
            let r = resolve::ipv4(&primary).and_then(|p| match &secondary {
                Some(h) => resolve::ipv4(h).map(|s| (p, Some(s))),
                None => Ok((p, None)),
            });
            let _ = tx.send(r);
        });
        if spawned.is_ok() {
            self.resolver = Some(rx);
        }
    }

    fn check_resolver(&mut self, now: Instant) {
        let Some(rx) = &self.resolver else { return };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => Err("resolver stopped".into()),
        };
        self.resolver = None;
        let Some(c) = self.client.as_mut() else { return };
        match result {
            Ok((p, s)) => {
                self.server = Some(p);
                if let Err(e) = c.set_server(now, p, s) {
                    warn!("Teredo server: {e}");
                }
            }
            Err(e) => {
                warn!("Teredo server: {e}");
                c.resolution_failed(now);
            }
        }
    }

    /// This worker's counters, to be added to the others'.
    fn totals(&self) -> Totals {
        let s = self.tunnel.stats();
        let mut t = Totals {
            qualification: self.client.as_ref().map(|c| format!("qualification: {:?}; ", c.stats())),
            sent: s.sent,
            delivered: s.delivered,
            bubbles: s.bubbles_sent,
            echo_tests: s.echo_tests_sent,
            unreachables: s.unreachables_sent,
            dropped: s.drops.total(),
            peers_per_worker: vec![self.tunnel.peers().len() as u64],
            socket_refused: self.tx.dropped(),
            tun_refused: self.tun_write_errors,
            ..Totals::default()
        };
        if let Some(o) = &self.offload {
            let c = o.coalescer.stats();
            t.offload = [
                o.super_packets,
                o.segments,
                c.super_packets,
                c.packets_coalesced,
                o.errors,
                o.refused.count,
                c.bad_checksums,
            ];
        }
        t
    }

    /// Takes the interface down through the helper (client), which then exits.
    fn finish(&mut self) {
        if let Some(h) = self.helper.take()
            && let Err(e) = h.finish()
        {
            warn!("privileged helper: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn test_timers_are_hidden_and_applied() {
        let cmd = Cmd::try_parse_from([
            "run",
            "--test-refresh-interval-ms",
            "2000",
            "--test-reply-timeout-ms=500",
            "--test-restart-delay-ms",
            "1",
            "-f",
        ])
        .unwrap();
        let c = cmd.run.timers.apply(client::Config::new(client::ServerAddress::HostName));
        assert_eq!(c.refresh_interval, Duration::from_secs(2));
        assert_eq!(c.reply_timeout, Duration::from_millis(500));
        assert_eq!(c.restart_delay, Duration::from_millis(1));
        assert_eq!(c.tries, client::DEFAULT_TRIES);
        // Without them, Miredo's timers.
        let cmd = Cmd::try_parse_from(["run", "-f"]).unwrap();
        let c = cmd.run.timers.apply(client::Config::new(client::ServerAddress::HostName));
        assert_eq!(c, client::Config::new(client::ServerAddress::HostName));
        let help = <Cmd as clap::CommandFactory>::command().render_help().to_string();
        assert!(!help.contains("test-"), "{help}");
    }
}
