//! Load benchmark of the Teredo server: `teredo server` against Debian's `miredo-server`
//! 1.2.6, on the same path, in the same run.
//!
//! What it measures: router advertisements answered per second when a load generator
//! sends router solicitations as fast as it can, each from a source (IPv4 address and UDP
//! port) never used before, so that a million RSs are a million distinct clients. For
//! each server it prints the RAs/s, the RS rate offered, the CPU the server used, its
//! resident memory (VmRSS) before the load, after one million distinct clients were
//! answered, and at the end, and the ratio teredo/miredo.
//!
//! How: the bench makes two network namespaces of its own, `tdb-<pid>-gen` and
//! `tdb-<pid>-srv`, joined by a veth pair and connected to nothing else. The server runs in
//! `srv` on 192.0.2.1 and 192.0.2.2; a generator thread in `gen` sends RSs from a raw
//! socket with spoofed sources in 198.51.100.0/24 and 203.0.113.0/24 (sendmmsg, 64 per
//! call). The RAs come back to `gen`, where they are counted by the veth's `rx_packets`
//! and dropped at once by an nftables ingress rule (no one has those addresses, and
//! forwarding is off: no ICMP either way). Before and after each timed phase a probe sends real RSs from
//! 198.51.100.254 to both server addresses and checks the RAs (nonce, origin indication,
//! prefix), so junk can not be counted. Phases, one after the other:
//!
//! 1. `miredo-server`, pinned to CPU 0 (`taskset -c 0`), generator on CPU 1;
//! 2. `teredo server --workers 1`, the same;
//! 3. `teredo server --workers 1 --tx packet` (answers as Ethernet frames on a packet
//!    socket, past the kernel's UDP output path), the same;
//! 4. the socket floor, the same: not a server but the bench itself answering every RS
//!    with a datagram of an RA's size through the socket path of `teredo server` (the same
//!    socket options and recvmmsg/sendmmsg batches) and no protocol work, so the kernel's
//!    bound on that path (`server_load/floor.rs`; its answers are not RAs, so this phase
//!    has no probe);
//! 5. `teredo server --workers 2` and 6. `miredo-server`, nothing pinned (on a 2-core
//!    machine they then share both cores with the generator).
//!
//! Run (as root, needs `ip`, `nft`, `taskset`, `miredo-server`):
//!
//! ```text
//! cargo bench -p teredo --bench server_load
//! ```
//!
//! Environment: `TEREDO_BENCH_SECS` (timed seconds per phase, default 10),
//! `TEREDO_BENCH_WARMUP` (seconds before timing, default 2), `TEREDO_BENCH_ONLY` (run only
//! the phases whose labels contain one of these comma-separated words, e.g. `teredo (1w)`,
//! to profile one server with `perf record -C 0`), `TEREDO_BENCH_TEREDO` (another `teredo`
//! binary to measure, e.g. a patched build), `TEREDO_BENCH_ROUNDS` (run the phases this
//! many times, one round after the other, and print every ratio round by round with its
//! median: the phases of a round follow each other closely, so a drift of the machine
//! moves them alike; default 1), `TEREDO_BENCH_SHARE_CPU` (see below).
//!
//! The machine should be otherwise idle. So that other work does not steal the cores
//! anyway, the bench leaves its parent's session and raises the priority of its own
//! scheduling group (Linux autogroup) to nice -20, which the servers inherit; set
//! `TEREDO_BENCH_SHARE_CPU=1` to keep the ordinary priority. (Out of the terminal's
//! session, Ctrl-C stops cargo, whose death sends the bench SIGTERM.) The namespaces and every
//! process started are removed on exit, on error and on Ctrl-C.

#[path = "server_load/floor.rs"]
mod floor;
#[path = "server_load/generator.rs"]
mod generator;
#[path = "server_load/lab.rs"]
mod lab;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use generator::Flood;
use lab::{ServerProcess, TempDir, Topology};
use teredo_lab::cpu_stat::{cpu_split, cpu_times, online_cpus};
use teredo_lab::proc_stat;

/// Set by SIGINT/SIGTERM: the bench stops and its guards clean up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Distinct clients after which the "RSS @1M" column is taken.
const MILLION: u64 = 1_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Miredo,
    Teredo {
        workers: usize,
        packet_tx: bool,
    },
    /// The socket floor (`floor.rs`).
    Floor,
}

struct Phase {
    label: &'static str,
    kind: Kind,
    /// Server on CPU 0 and generator on CPU 1; otherwise nothing is pinned.
    pinned: bool,
}

struct Outcome {
    label: &'static str,
    ras_per_s: f64,
    offered_per_s: f64,
    /// RSs the server's sockets dropped because their queues were full, per second.
    overflow_per_s: f64,
    cpu_cores: f64,
    rss_start: Option<u64>,
    rss_million: Option<u64>,
    rss_end: Option<u64>,
    answered: u64,
    distinct: u64,
    /// Per CPU (0 and 1): % user, system, irq+softirq, idle, steal during the timed part.
    cpu_split: Vec<[f64; 5]>,
}

struct Settings {
    secs: f64,
    warmup: f64,
    teredo: String,
    miredo: String,
    taskset: String,
    cpus: usize,
    /// Times the phases are run, one round after the other (`TEREDO_BENCH_ROUNDS`).
    rounds: usize,
}

fn env_secs(name: &str, default: f64) -> Result<f64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
            .ok_or_else(|| format!("{name}={v:?}: expected seconds between 0 and 3600")),
        Err(_) => Ok(default),
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(floor::ARG) {
        return match floor::serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("server_load: socket floor: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server_load: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("must run as root (it makes network namespaces and raw sockets)".into());
    }
    let need = |p: &str, package: &str| {
        lab::find_program(p)
            .map(|p| p.display().to_string())
            .ok_or_else(|| format!("{p} not found (install Debian's {package} package)"))
    };
    need("ip", "iproute2")?;
    need("nft", "nftables")?;
    let settings = Settings {
        secs: env_secs("TEREDO_BENCH_SECS", 10.0)?.max(1.0),
        warmup: env_secs("TEREDO_BENCH_WARMUP", 2.0)?,
        teredo: std::env::var("TEREDO_BENCH_TEREDO")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_teredo").to_owned()),
        miredo: need("miredo-server", "miredo-server")?,
        taskset: need("taskset", "util-linux")?,
        cpus: online_cpus(),
        rounds: teredo_lab::bench::rounds()?,
    };
    if settings.cpus < 2 {
        return Err("needs at least 2 CPUs (one for the server, one for the generator)".into());
    }
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    lab::remove_stale_namespaces();
    teredo_lab::bench::raise_priority("server_load");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1 = load.split_whitespace().next().and_then(|l| l.parse::<f64>().ok()).unwrap_or(0.0);
    if load1 > 0.5 {
        println!(
            "server_load: warning: load average {load1:.2} before the start: other work competes for the CPUs (the bench raises its priority; TEREDO_BENCH_SHARE_CPU=1 turns that off), expect some noise"
        );
    }
    let tmp = TempDir::create(format!("tdb-{}", std::process::id()))?;
    let conf = tmp.path.join("server.conf");
    std::fs::write(&conf, "ServerBindAddress 192.0.2.1\n").map_err(|e| e.to_string())?;
    let topo = Topology::create()?;
    println!(
        "server_load: {} CPUs, {} s timed after {} s warm-up per phase; namespaces {} and {}",
        settings.cpus, settings.secs, settings.warmup, topo.gen_ns.name, topo.srv_ns.name
    );

    let phases = [
        Phase { label: "miredo", kind: Kind::Miredo, pinned: true },
        Phase { label: "teredo (1w)", kind: Kind::Teredo { workers: 1, packet_tx: false }, pinned: true },
        Phase {
            label: "teredo (1w, --tx packet)",
            kind: Kind::Teredo { workers: 1, packet_tx: true },
            pinned: true,
        },
        Phase { label: "socket floor", kind: Kind::Floor, pinned: true },
        Phase { label: "teredo (2w)*", kind: Kind::Teredo { workers: 2, packet_tx: false }, pinned: false },
        Phase { label: "miredo*", kind: Kind::Miredo, pinned: false },
    ];
    // Each round's table as soon as it ends, so that an error later loses none of them.
    let mut rounds = Vec::new();
    for round in 1..=settings.rounds {
        if settings.rounds > 1 {
            println!("round {round} of {}", settings.rounds);
        }
        let outcomes = run_round(&settings, &topo, &tmp, &conf, &phases)?;
        print_table(&outcomes, settings.cpus);
        rounds.push(outcomes);
    }
    if rounds.len() > 1 {
        print_medians(&rounds);
    }
    Ok(())
}

/// Runs the phases that `TEREDO_BENCH_ONLY` picks, one after the other, printing each.
fn run_round(
    settings: &Settings,
    topo: &Topology,
    tmp: &TempDir,
    conf: &Path,
    phases: &[Phase],
) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::new();
    // TEREDO_BENCH_ONLY=miredo,teredo (1w): only the phases whose labels contain one of
    // these words (handy when profiling one server).
    for phase in phases.iter().filter(|p| teredo_lab::bench::picked("TEREDO_BENCH_ONLY", p.label)) {
        let o = run_phase(settings, topo, tmp, conf, phase)?;
        println!(
            "  {:<24} {:>9.0} RAs/s  (offered {:.0} RS/s, {:.0}/s dropped at the server's sockets, {:.2} CPUs)",
            o.label, o.ras_per_s, o.offered_per_s, o.overflow_per_s, o.cpu_cores
        );
        for (cpu, [usr, sys, irq, idle, steal]) in o.cpu_split.iter().enumerate() {
            println!(
                "      CPU {cpu}: {usr:>3.0}% user {sys:>3.0}% system {irq:>3.0}% softirq {idle:>3.0}% idle {steal:>3.0}% steal"
            );
        }
        outcomes.push(o);
    }
    Ok(outcomes)
}

fn server_argv(s: &Settings, topo: &Topology, tmp: &TempDir, conf: &Path, phase: &Phase) -> Vec<String> {
    let mut argv: Vec<String> = vec!["ip".into(), "netns".into(), "exec".into(), topo.srv_ns.name.clone()];
    if phase.pinned {
        argv.extend([s.taskset.clone(), "-c".into(), "0".into()]);
    }
    let pidfile = tmp.path.join("server.pid").display().to_string();
    let conf = conf.display().to_string();
    match phase.kind {
        Kind::Miredo => {
            argv.extend([s.miredo.clone(), "-f".into(), "-u".into(), "nobody".into(), "-c".into(), conf]);
            argv.extend(["-p".into(), pidfile]);
        }
        Kind::Teredo { workers, packet_tx } => {
            argv.extend([s.teredo.clone(), "server".into(), "-f".into(), "-u".into(), "nobody".into()]);
            argv.extend(["-c".into(), conf, "-p".into(), pidfile, "--workers".into(), workers.to_string()]);
            if packet_tx {
                argv.extend(["--tx".into(), "packet".into()]);
            }
            argv.push("192.0.2.1".into());
        }
        Kind::Floor => {
            let exe = std::env::current_exe()
                .map_or_else(|_| std::env::args().next().unwrap_or_default(), |p| p.display().to_string());
            argv.extend([exe, floor::ARG.into()]);
        }
    }
    argv
}

fn check_interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::Relaxed) { Err("interrupted".into()) } else { Ok(()) }
}

fn run_phase(
    s: &Settings,
    topo: &Topology,
    tmp: &TempDir,
    conf: &Path,
    phase: &Phase,
) -> Result<Outcome, String> {
    check_interrupted()?;
    // The bench's own thread stays off the server's core when the server is pinned.
    generator::pin_current_thread(phase.pinned.then_some(1))
        .map_err(|e| format!("sched_setaffinity: {e}"))?;
    let argv = server_argv(s, topo, tmp, conf, phase);
    let name = match phase.kind {
        Kind::Miredo => "miredo-server",
        Kind::Teredo { .. } => "teredo server",
        Kind::Floor => "socket floor",
    };
    let log = tmp.path.join(format!("{}.log", phase.label.replace([' ', '(', ')', '*', ','], "")));
    let mut server = ServerProcess::spawn(name, &argv, log)?;
    let ctx = |e: String| format!("{} ({}): {e}", phase.label, argv.join(" "));
    // miredo-server forks its worker even in the foreground; teredo does not fork.
    let pid = match phase.kind {
        Kind::Miredo => server.worker_pid().map_err(ctx)?,
        Kind::Teredo { .. } | Kind::Floor => server.pid(),
    };
    // The floor's answers are not RAs: it is only given time to bind.
    let probed = phase.kind != Kind::Floor;
    if !probed {
        thread::sleep(Duration::from_millis(300));
    } else if let Err(e) = generator::probe(&topo.gen_ns, Duration::from_secs(10)) {
        server.check_running().map_err(ctx)?;
        return Err(ctx(format!("{e}; log: {}", server.log_tail())));
    }
    server.check_running().map_err(ctx)?;
    let rss_start = proc_stat::rss_kib(pid);

    let link = generator::Link { ifindex: topo.gen_ifindex, src_mac: topo.gen_mac, dst_mac: topo.srv_mac };
    let flood = Arc::new(Flood::default());
    let handle = {
        let (flood, ns) = (flood.clone(), topo.gen_ns.name.clone());
        let cpu = phase.pinned.then_some(1);
        thread::Builder::new()
            .name("generator".into())
            .spawn(move || {
                let ns = lab::Netns { name: ns };
                let r = generator::flood(&ns, link, cpu, &flood);
                // Not ours to delete: the topology guard owns the namespace.
                std::mem::forget(ns);
                flood.ready.store(true, Ordering::Release);
                r
            })
            .map_err(|e| e.to_string())?
    };
    let stop_flood = |flood: &Flood, handle: thread::JoinHandle<Result<(), String>>| -> Result<(), String> {
        flood.stop.store(true, Ordering::Relaxed);
        handle.join().map_err(|_| "generator thread panicked".to_owned())?
    };
    while !flood.ready.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(1));
    }
    let tid = flood.tid.load(Ordering::Relaxed);
    let rx = || lab::rx_packets(tid, lab::VETH_GEN).unwrap_or(0);
    let rx_begin = rx();

    let mut rss_million = None;
    let sample = |rss_million: &mut Option<u64>| {
        if rss_million.is_none() && rx().saturating_sub(rx_begin) >= MILLION {
            *rss_million = proc_stat::rss_kib(pid);
        }
    };
    let warm_until = Instant::now() + Duration::from_secs_f64(s.warmup);
    while Instant::now() < warm_until {
        if INTERRUPTED.load(Ordering::Relaxed) || server.check_running().is_err() {
            break;
        }
        sample(&mut rss_million);
        thread::sleep(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    let (rx0, sent0, cpu0) = (rx(), flood.sent.load(Ordering::Relaxed), lab::cpu_ticks(pid).unwrap_or(0));
    let udp0 = lab::udp_counters(pid);
    let cpus0: Vec<_> = (0..s.cpus.min(2)).map(|c| cpu_times(Some(c))).collect();
    let end = t0 + Duration::from_secs_f64(s.secs);
    while Instant::now() < end {
        if INTERRUPTED.load(Ordering::Relaxed) || server.check_running().is_err() {
            break;
        }
        sample(&mut rss_million);
        thread::sleep(Duration::from_millis(20));
    }
    let (rx1, sent1, cpu1) = (rx(), flood.sent.load(Ordering::Relaxed), lab::cpu_ticks(pid).unwrap_or(0));
    let udp1 = lab::udp_counters(pid);
    let cpus1: Vec<_> = (0..s.cpus.min(2)).map(|c| cpu_times(Some(c))).collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let rss_end = proc_stat::rss_kib(pid);
    stop_flood(&flood, handle).map_err(ctx)?;
    check_interrupted()?;
    server.check_running().map_err(ctx)?;
    // Still answering correctly after the load?
    thread::sleep(Duration::from_millis(100));
    if probed {
        generator::probe(&topo.gen_ns, Duration::from_secs(5))
            .map_err(|e| ctx(format!("after the load: {e}")))?;
    }
    drop(server);

    let delta = |name: &str| lab::counter(&udp1, name).saturating_sub(lab::counter(&udp0, name));
    Ok(Outcome {
        label: phase.label,
        ras_per_s: (rx1 - rx0) as f64 / elapsed,
        offered_per_s: (sent1 - sent0) as f64 / elapsed,
        overflow_per_s: delta("RcvbufErrors") as f64 / elapsed,
        cpu_cores: cpu1.saturating_sub(cpu0) as f64 / proc_stat::ticks_per_second() as f64 / elapsed,
        rss_start,
        rss_million,
        rss_end,
        answered: rx1.saturating_sub(rx_begin),
        distinct: flood.distinct.load(Ordering::Relaxed),
        cpu_split: cpus0
            .iter()
            .zip(&cpus1)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => cpu_split(*a, *b),
                _ => [0.0; 5],
            })
            .collect(),
    })
}

fn kib(v: Option<u64>) -> String {
    match v {
        Some(k) if k >= 10 * 1024 => format!("{:.1} MiB", k as f64 / 1024.0),
        Some(k) => format!("{k} KiB"),
        None => "n/a".into(),
    }
}

fn print_table(outcomes: &[Outcome], cpus: usize) {
    println!();
    println!(
        "{:<24} {:>9} {:>11} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "server", "RAs/s", "offered/s", "CPUs", "RSS start", "RSS @1M", "RSS end", "answered", "distinct"
    );
    for o in outcomes {
        println!(
            "{:<24} {:>9.0} {:>11.0} {:>6.2} {:>10} {:>10} {:>10} {:>10} {:>10}",
            o.label,
            o.ras_per_s,
            o.offered_per_s,
            o.cpu_cores,
            kib(o.rss_start),
            kib(o.rss_million),
            kib(o.rss_end),
            o.answered,
            o.distinct
        );
    }
    for (name, value) in ratios(outcomes) {
        println!("{name}: {value:.2}");
    }
    println!("* unpinned: on this {cpus}-CPU machine the servers share the cores with the generator.");
    if outcomes.iter().any(|o| o.label == "socket floor") {
        println!(
            "socket floor: answers of an RA's size per second, with no protocol work; they are not RAs."
        );
    }
    println!(
        "answered = RAs counted since the load began (warm-up included); distinct = RS sources sent, all different."
    );
}

/// The ratios of one round: (what, value), for the phases that ran.
fn ratios(outcomes: &[Outcome]) -> Vec<(&'static str, f64)> {
    let rate = |label: &str| outcomes.iter().find(|o| o.label == label).map(|o| o.ras_per_s);
    let pairs = [
        ("ratio teredo/miredo, one core each", "teredo (1w)", "miredo"),
        ("ratio teredo --tx packet/miredo, one core each", "teredo (1w, --tx packet)", "miredo"),
        (
            "ratio socket floor/miredo, one core each (the socket path with no protocol work)",
            "socket floor",
            "miredo",
        ),
        ("ratio teredo/socket floor, one core each", "teredo (1w)", "socket floor"),
        ("ratio teredo (2 workers)/miredo, unpinned", "teredo (2w)*", "miredo*"),
        ("teredo 2 workers / 1 worker", "teredo (2w)*", "teredo (1w)"),
    ];
    pairs.into_iter().filter_map(|(name, num, den)| Some((name, rate(num)? / rate(den)?.max(1.0)))).collect()
}

/// Each ratio round by round, and its median over the rounds.
fn print_medians(rounds: &[Vec<Outcome>]) {
    let by_round: Vec<_> = rounds.iter().map(|r| ratios(r)).collect();
    println!();
    println!("over {} rounds (round by round; median):", rounds.len());
    for (name, _) in by_round.first().into_iter().flatten() {
        // A round without the value (a phase that answered nothing) shows n/a in its place.
        let values: Vec<Option<f64>> =
            by_round.iter().map(|r| r.iter().find(|(n, _)| n == name).map(|&(_, v)| v)).collect();
        if let Some(s) = teredo_lab::bench::series(&values, 2) {
            println!("{name}: {s}");
        }
    }
}
