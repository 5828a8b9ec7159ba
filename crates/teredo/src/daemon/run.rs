//! `teredo run`: the Teredo client (RFC 4380 §5.2) or relay (§5.4), as `RelayType` says —
//! a drop-in for `miredo`, with the same configuration file and flags.
//!
//! Start-up, as root and single-threaded ([`RunDaemon`], driven by
//! [`super::lifecycle`]): read the configuration; create the TUN (one queue per worker)
//! and bind the UDP sockets; for a relay, configure the interface once (MTU,
//! fe80::ffff:ffff:ffff, and the route to the served prefix unless it waits for a first
//! answer of a probed server) and steer each peer to one worker; after detaching, fork the
//! privileged helper that alone may change the interface later (it keeps only
//! CAP_NET_ADMIN, see `teredo_net::helper`): a client's address, a relay's route. Then, as the
//! unprivileged user, the workers ([`super::tunnel_worker`]) run the packet path and the
//! control thread the rest ([`super::client_plane`], [`super::relay_plane`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Args;
use socket2::Socket;
use teredo_net::client_if::RELAY_ROUTE_METRIC;
use teredo_net::helper::{self, Helper, HelperOptions};
use teredo_net::ifconfig::{InterfaceConfig, Ipv6Prefix, Route};
use teredo_net::privileges::User;
use teredo_net::tun::{Tun, TunOptions};
use teredo_net::udp::{bind_udp, local_v4};
use teredo_net::waker::Waker;
use teredo_proto::address::LINK_LOCAL_RESTRICTED;
use teredo_proto::client;
use teredo_proto::endpoint::ClientEndpoint;
use teredo_proto::nonce::TokenKey;
use teredo_proto::probe::{ProbeConfig, ServerProbe};
use teredo_proto::time::Instant;
use teredo_proto::tunnel::{Limits, RelayConfig, Role, Tunnel};
use tracing::{info, warn};

use super::client_plane::ClientPlane;
use super::control::Plane;
use super::lifecycle::{self, Daemon, Names, Settings, Started};
use super::relay_health::RelayHealth;
use super::relay_plane::{RelayPlane, RelayRoute};
use super::status::Identity;
use super::tunnel_worker::{Core, TunnelWorker};
use super::{DaemonArgs, Flavour, StartError, reload, resolve, worker};
use crate::config::{self, ClientRelayConfig, ClientRelayOverrides, Host, RelayType};

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
/// ([`Daemon::after_detach`]), so that it is the daemon's own child: forked before, it
/// would be the child of the parent that exits, and the daemon could not wait for its
/// final `down` and `destroy`.
enum Mode {
    Client {
        helper: HelperOptions,
        server: Host,
        server2: Option<Host>,
    },
    Relay {
        config: RelayConfig,
        /// The route's helper, forked after detaching.
        helper: HelperOptions,
        /// The servers probed for the relay's health (resolved at start-up).
        probes: Vec<Ipv4Addr>,
        /// Whether the route was added at start-up (no server to wait for).
        announced: bool,
        /// The key of the steering hash, to find the worker that gets a server's answers.
        steering_key: u64,
    },
}

/// What start-up produced: one TUN queue and one UDP socket per worker (one of each for a
/// client; for a relay of several workers, a multi-queue TUN and a SO_REUSEPORT group
/// whose traffic is steered so that each peer's packets, both ways, meet its worker).
pub struct RunDaemon {
    path: PathBuf,
    overrides: ClientRelayOverrides,
    timers: ClientTimers,
    cfg: ClientRelayConfig,
    tuns: Vec<Tun>,
    udps: Vec<Socket>,
    key: TokenKey,
    mode: Mode,
    helper: Option<Helper>,
}

/// Runs the client or relay; returns the exit status.
pub fn run(args: &RunArgs) -> u8 {
    run_as(args, Flavour::Teredo)
}

/// Runs the client or relay with the defaults of `flavour` (Miredo's for the `miredo`
/// entry point); returns the exit status.
pub fn run_as(args: &RunArgs, flavour: Flavour) -> u8 {
    let names = match flavour {
        Flavour::Teredo => Names { who: "teredo run", ident: "teredo", pidfile: "/run/teredo.pid" },
        Flavour::Miredo => Names { who: "miredo", ident: "miredo", pidfile: "/var/run/miredo.pid" },
    };
    lifecycle::run(names, &args.daemon, || prepare(args, flavour, names.who))
}

/// 32 random bytes from the kernel: the key of every token, nonce and hash of the process.
pub fn random_key() -> Result<TokenKey, StartError> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| StartError::new("getrandom", e))?;
    Ok(TokenKey::new(k))
}

fn prepare(args: &RunArgs, flavour: Flavour, who: &str) -> Result<RunDaemon, StartError> {
    let overrides = ClientRelayOverrides {
        server_address: match &args.server_name {
            Some(s) => Some(Host::parse_global(s).map_err(|e| StartError::new(format!("server {s:?}"), e))?),
            None => None,
        },
    };
    let path = args.daemon.config.clone().unwrap_or_else(|| PathBuf::from(config::DEFAULT_CLIENT_RELAY_FILE));
    let cfg = super::read_config(
        who,
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
        if workers > 1 {
            teredo_net::steer_workers(&tuns[0], &udps[0], workers as u32, cfg.prefix.0, steering_key)
        } else {
            Ok(())
        }
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
            let user = args.daemon.user()?;
            // Not kept in `cfg`: a reload compares the files' own ClientHook.
            let hook = cfg.client_hook.clone().or_else(|| flavour.default_client_hook());
            let helper = HelperOptions { user, hook, route: None, seccomp: !args.daemon.no_seccomp };
            let server = cfg.server_address.clone().ok_or_else(|| StartError("no Teredo server".into()))?;
            Mode::Client { helper, server, server2: cfg.server_address2.clone() }
        }
        RelayType::Cone | RelayType::Restricted => {
            let mut probes = Vec::with_capacity(cfg.probe_servers.len());
            for h in &cfg.probe_servers {
                let a = resolve::any_ipv4(h)
                    .map_err(|e| StartError::new(super::locate(&path, "ServerAddress"), e))?;
                if !probes.contains(&a) {
                    probes.push(a);
                }
            }
            // With servers to probe, the route waits for the first answer.
            let announced = probes.is_empty();
            let route = configure_relay_interface(&tuns[0], &cfg, announced)?;
            let user = args.daemon.user()?;
            Mode::Relay {
                helper: HelperOptions {
                    user,
                    hook: None,
                    route: Some(route),
                    seccomp: !args.daemon.no_seccomp,
                },
                probes,
                announced,
                steering_key: if udps.len() > 1 { steering_key } else { 0 },
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
    Ok(RunDaemon { path, overrides, timers: args.timers, cfg, tuns, udps, key, mode, helper: None })
}

/// The worker that receives the answers of `server` (from its port 3544) among `workers`
/// steered with `key` (see `teredo_net::steer`): the one that must run its probe.
fn probe_worker(server: Ipv4Addr, workers: usize, key: u64) -> usize {
    if workers <= 1 {
        return 0;
    }
    let n = u32::try_from(workers).unwrap_or(u32::MAX);
    teredo_net::steer::shard(server, teredo_proto::address::TEREDO_PORT, n, key) as usize
}

/// A relay's interface is set up once, as root (miredo-facts §5.1): MTU, up, the
/// link-local fe80::ffff:ffff:ffff/64 and, when `announce`, the route to the served
/// prefix. Returns that route (for the helper that adds and deletes it later).
fn configure_relay_interface(
    tun: &Tun,
    cfg: &ClientRelayConfig,
    announce: bool,
) -> Result<Route, StartError> {
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
    if !announce {
        return Ok(route);
    }
    match ifc.add_route(&route) {
        Ok(()) => Ok(route),
        Err(e) if e.is_exists() => Ok(route),
        Err(e) => Err(StartError::new(ctx("route"), e)),
    }
}

impl Daemon for RunDaemon {
    fn settings(&self) -> Settings {
        Settings {
            facility: self.cfg.syslog_facility.code(),
            observability: reload::client_relay_observability(&self.cfg),
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn after_detach(&mut self, detached: bool) -> Result<(), StartError> {
        // The helper, forked while still root and single-threaded, in the detached
        // process, and before the daemon's signals are blocked.
        let (options, relay) = match &self.mode {
            Mode::Client { helper, .. } => (helper, false),
            Mode::Relay { helper, .. } => (helper, true),
        };
        if detached {
            // Logs go to syslog now; the helper must not keep the caller's stdout and
            // stderr open once the parent has exited.
            teredo_net::detach::null_stdio().map_err(|e| StartError::new("/dev/null", e))?;
        }
        // SAFETY: called from `after_detach`, before the control, signal and worker threads
        // start: the process has a single thread.
        match unsafe { helper::spawn(&self.tuns[0], options) } {
            Ok(h) => self.helper = Some(h),
            // A relay without one (a platform where it is not written yet) keeps the
            // route it was given at start-up: no health-gating, no drain.
            Err(e) if relay => warn!("{e}: the relay's route will not follow its health"),
            Err(e) => return Err(StartError::new("privileged helper", e)),
        }
        Ok(())
    }

    fn start(self, user: &User, waker: Arc<Waker>) -> Result<Started, StartError> {
        let local =
            self.udps.first().map(local_v4).transpose().map_err(|e| StartError::new("UDP socket", e))?;
        let start = std::time::Instant::now();
        let now = Instant::ZERO;
        let workers = self.udps.len();
        // Each worker has its own table, for its share of the peers, and its share of every
        // other bound, so that the daemon as a whole keeps them.
        let whole = Limits {
            peers: teredo_proto::peers::PeerLimits {
                max_peers: self.cfg.max_peers as usize,
                ..Default::default()
            },
            bubbles_per_second: self.cfg.bubble_rate,
            ..Default::default()
        };
        let limits = whole.shared_by(workers);
        let interface = self.tuns.first().map(|t| t.name().to_owned());
        let mut roles = Vec::with_capacity(workers);
        for (i, (udp, tun)) in self.udps.into_iter().zip(self.tuns).enumerate() {
            // The TUN's packets for non-Teredo destinations, which get the unreachables, all
            // go to worker 0: it keeps the whole rate.
            let limits = if i == 0 {
                Limits { unreachables_per_second: whole.unreachables_per_second, ..limits }
            } else {
                limits
            };
            let core = match &self.mode {
                Mode::Client { server, server2, .. } => {
                    let address = match server {
                        Host::Ipv4(a) => client::ServerAddress::Ipv4(*a),
                        Host::Name(_) => client::ServerAddress::HostName,
                    };
                    let mut c = self.timers.apply(client::Config::new(address));
                    c.secondary = server2.as_ref().and_then(Host::ipv4);
                    // RFC 6081 §5.4.3 compares the origin port with it; §5.3.3 maps it first.
                    c.local_port = local.map_or(0, |l| l.port());
                    if self.cfg.upnp {
                        c.upnp_wait = client::MAX_UPNP_WAIT;
                    }
                    let mut e = ClientEndpoint::new(c, self.key.clone(), limits, now)
                        .map_err(|e| StartError::new("ServerAddress", e))?;
                    e.set_local_discovery(now, self.cfg.local_discovery);
                    if let Some(k) = &self.cfg.credentials {
                        let c = teredo_proto::secure::Credentials::new(k.id.as_bytes(), k.secret.as_bytes())
                            .map_err(|e| StartError::new(super::locate(&self.path, "ClientIdentifier"), e))?;
                        e.set_credentials(Some(c));
                    }
                    if self.cfg.local_discovery
                        && let Err(err) = teredo_net::udp::set_multicast_link_scope(&udp)
                    {
                        warn!("local discovery: {err}");
                    }
                    Core::Client(e)
                }
                Mode::Relay { config, .. } => Core::Relay(
                    Tunnel::new(Role::Relay(*config), self.key.clone(), limits, now)
                        .map_err(|e| StartError::new("peer table", e))?,
                ),
            };
            let worker = TunnelWorker::new(start, udp, tun, core);
            let worker = match &self.mode {
                Mode::Relay { probes, steering_key, .. } => {
                    let mine = probes
                        .iter()
                        .filter(|&&s| probe_worker(s, workers, *steering_key) == i)
                        .map(|&s| ServerProbe::new(s, self.key.clone(), ProbeConfig::default(), now))
                        .collect();
                    worker.with_probes(mine)
                }
                Mode::Client { .. } => worker,
            };
            roles.push(worker);
        }
        let offloads = roles.first().is_some_and(TunnelWorker::offloads);
        let what = if matches!(self.mode, Mode::Client { .. }) { "client" } else { "relay" };
        info!(
            "Teredo {what} on {} (UDP {}), running as {} (uid {}), TUN offloads {}, {workers} worker{}",
            interface.as_deref().unwrap_or("?"),
            local.map_or_else(String::new, |l| l.to_string()),
            user.name,
            user.uid,
            if offloads { "on" } else { "off" },
            if workers == 1 { "" } else { "s" }
        );
        let workers = worker::spawn(roles, waker.clone())?;
        if matches!(self.mode, Mode::Client { .. })
            && self.cfg.local_discovery
            && let Some(link) = workers.link(0)
        {
            super::discovery::spawn(link);
        }
        let upnp = match (&self.mode, local, workers.link(0)) {
            (Mode::Client { .. }, Some(local), Some(link)) if self.cfg.upnp => {
                Some(super::upnp::spawn(local, link))
            }
            _ => None,
        };
        let identity =
            Identity { role: what, started: start, interface, config: self.path.display().to_string() };
        let allocated_peers = self.cfg.max_peers;
        let servers = super::client_plane::literal_servers(&self.cfg);
        let plane: Box<dyn Plane> = match self.mode {
            Mode::Client { .. } => Box::new(ClientPlane {
                path: self.path,
                overrides: self.overrides,
                cfg: self.cfg,
                helper: self.helper,
                waker,
                resolver: None,
                offloads,
                allocated_peers,
                servers,
                switch: None,
                list_asked: false,
                upnp,
            }),
            Mode::Relay { probes, announced, helper, .. } => {
                let prefix = helper.route.map_or_else(String::new, |r| r.destination.network().to_string());
                let name = format!("route {prefix} on {}", identity.interface.as_deref().unwrap_or("?"));
                Box::new(RelayPlane {
                    path: self.path,
                    cfg: self.cfg,
                    offloads,
                    allocated_peers,
                    health: RelayHealth::new(&probes),
                    route: RelayRoute { name, helper: self.helper, announced, failing: false },
                })
            }
        };
        Ok(Started { plane, workers, identity })
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
