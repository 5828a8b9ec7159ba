//! `teredo-demo`: the README's first command. It builds a small Teredo world in network
//! namespaces on this machine (an "internet" router, a Teredo server, a relay, a native
//! IPv6 host, two clients behind two different NATs), runs the three roles, shows what
//! happens — the qualified addresses decoded, a ping to the IPv6 host through the relay, a
//! direct ping between the clients, a throughput figure — and removes everything.
//!
//! Nothing leaves the machine: the namespaces use documentation addresses and are never
//! connected to its uplink.
//!
//! Usage: `teredo-demo --teredo PATH [--server teredo|miredo] [--relay teredo|miredo]
//! [--client teredo|miredo]` (each role defaults to teredo where teredo implements it).
//!
//! `teredo-demo --teredo PATH --anycast` shows instead two teredo relays announcing
//! 2001::/32 by BGP (BIRD 2) and a failover when the relay in use is killed, as a teredo
//! client and a Miredo client see it (see [`anycast`]).

use std::net::Ipv6Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use teredo_lab::{Client, Daemon, Lab, LabError, NatKind, Node, miredo};

mod anycast;

/// Who plays a role.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Impl {
    Teredo,
    Miredo,
}

struct Options {
    teredo: String,
    server: Impl,
    relay: Impl,
    client: Impl,
    anycast: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        teredo: String::new(),
        server: Impl::Teredo,
        relay: Impl::Teredo,
        client: Impl::Teredo,
        anycast: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let which = |v: String| match v.as_str() {
            "teredo" => Ok(Impl::Teredo),
            "miredo" => Ok(Impl::Miredo),
            _ => Err(format!("unknown implementation {v:?} (teredo or miredo)")),
        };
        match a.as_str() {
            "--teredo" => o.teredo = value("--teredo")?,
            "--server" => o.server = which(value("--server")?)?,
            "--relay" => o.relay = which(value("--relay")?)?,
            "--client" => o.client = which(value("--client")?)?,
            "--anycast" => o.anycast = true,
            "-h" | "--help" => {
                println!(
                    "usage: teredo-demo --teredo PATH [--server teredo|miredo] [--relay teredo|miredo] [--client teredo|miredo]\n       teredo-demo --teredo PATH --anycast"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    if o.teredo.is_empty() && (o.anycast || [o.server, o.relay, o.client].contains(&Impl::Teredo)) {
        return Err("--teredo PATH (the teredo binary) is required".into());
    }
    Ok(o)
}

fn name(i: Impl) -> &'static str {
    match i {
        Impl::Teredo => "teredo",
        Impl::Miredo => "Miredo 1.2.6",
    }
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("teredo-demo: {e}");
            return ExitCode::from(2);
        }
    };
    clean_up_on_signal();
    println!("Teredo demo: IPv6 over UDP/IPv4 through NATs, in network namespaces on this machine.");
    println!("(Nothing leaves this machine: documentation addresses, no link to the uplink.)\n");
    let started = Instant::now();
    // Miredo is needed only when it plays a role.
    let needs: &[&str] = if o.anycast {
        anycast::NEEDS
    } else if [o.server, o.relay, o.client].contains(&Impl::Miredo) {
        &["miredo", "ping", "iperf3"]
    } else {
        &["ping", "iperf3"]
    };
    let result = teredo_lab::check_requirements(needs).and_then(|()| demo(&o));
    match result {
        Ok(()) => {
            println!(
                "\nAll done in {:.1} s; every namespace and process was removed.",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nteredo-demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(n: u32, text: &str) {
    println!("[{n}/5] {text}");
}

fn demo(o: &Options) -> Result<(), LabError> {
    let mut lab = Lab::new(if o.anycast { "demo-anycast" } else { "demo" })?;
    lab.set_captures(false);
    let r = if o.anycast { anycast::run(&o.teredo, &mut lab) } else { run(o, &mut lab) };
    if r.is_err() {
        lab.mark_failed();
    }
    step(5, "cleaning up");
    drop(lab);
    r
}

fn run(o: &Options, lab: &mut Lab) -> Result<(), LabError> {
    step(1, "building the lab");
    let server = lab.server()?;
    let relay = lab.relay()?;
    let host = lab.v6host()?;
    let a = lab.client_behind(NatKind::PortRestricted)?;
    let b = lab.client_behind(NatKind::AddressRestricted)?;
    let c = lab.client_behind(NatKind::Symmetric)?;
    println!(
        "      internet router; server {} + {}; relay {} / {};",
        server.primary, server.secondary, relay.ipv4, relay.ipv6
    );
    println!("      IPv6 host {}; client A behind a port-restricted NAT ({}),", host.ipv6, a.public_ipv4());
    println!("      client B behind an address-restricted NAT ({}),", b.public_ipv4());
    println!("      client C behind a port-symmetric NAT ({}, a new port for every peer)", c.public_ipv4());

    step(2, "starting the three roles");
    let teredo = o.teredo.as_str();
    let _server = match o.server {
        Impl::Teredo => miredo::start_server_with(&server, &[teredo, "server"])?,
        Impl::Miredo => miredo::start_server(&server)?,
    };
    println!("      server: {} on {} and {} (UDP 3544)", name(o.server), server.primary, server.secondary);
    let _relay = match o.relay {
        Impl::Teredo => miredo::start_relay_with(&relay, "teredo", &[teredo, "run"])?,
        Impl::Miredo => miredo::start_relay(&relay, "teredo")?,
    };
    println!("      relay:  {} announcing 2001::/32 to the IPv6 side", name(o.relay));
    let start_client = |c: &Client| -> Result<Daemon, LabError> {
        match o.client {
            Impl::Teredo => miredo::start_client_with(c, &server, "teredo", &[teredo, "run"]),
            Impl::Miredo => miredo::start_client(c, &server, "teredo"),
        }
    };
    let t0 = Instant::now();
    let _ca = start_client(&a)?;
    let _cb = start_client(&b)?;
    let _cc = start_client(&c)?;
    println!("      clients: {} on A, B and C", name(o.client));

    step(3, "qualification: each client asks the server for its address");
    let qa = show_address("A", &a, t0)?;
    let qb = show_address("B", &b, t0)?;
    let qc = show_address("C", &c, t0)?;

    step(4, "traffic");
    a.wait_ping6(host.ipv6, Duration::from_secs(20))?;
    println!("      A -> IPv6 host {} through the relay: {}", host.ipv6, ping_summary(&a, host.ipv6));
    a.wait_ping6(qb, Duration::from_secs(20))?;
    println!("      A -> B {qb} directly (bubbles opened both NATs): {}", ping_summary(&a, qb));
    println!("      B -> A {qa}: {}", ping_summary(&b, qa));
    // C's NAT gives the peer another port than the server saw: RFC 6081's nonce trailers
    // (and Miredo's keyed bubbles) let B trust C at the port C really uses.
    b.wait_ping6(qc, Duration::from_secs(20))?;
    println!("      B -> C {qc} directly, through C's symmetric NAT: {}", ping_summary(&b, qc));
    println!("      C -> B {qb}: {}", ping_summary(&c, qb));
    match throughput(&host, &a, qa) {
        Ok(mbit) => println!("      IPv6 host -> A, TCP through the relay (iperf3, 3 s): {mbit:.0} Mbit/s"),
        Err(e) => println!("      throughput: not measured ({e})"),
    }
    Ok(())
}

fn show_address(label: &str, c: &Client, t0: Instant) -> Result<Ipv6Addr, LabError> {
    let (addr, t) = c.wait_teredo_address("teredo", Duration::from_secs(30))?;
    println!("      client {label}: {addr}  (after {:.2} s)", t0.elapsed().as_secs_f64());
    println!(
        "        = server {}, mapped {}:{} (its NAT's public side), flags {:#06x} (cone {}, 12 random bits)",
        t.server,
        t.mapped_addr,
        t.mapped_port,
        t.flags.0,
        if t.flags.cone() { "yes" } else { "no" }
    );
    Ok(addr)
}

fn ping_summary(from: &Node, to: Ipv6Addr) -> String {
    let out = from
        .command("ping")
        .args(["-6", "-n", "-c", "3", "-i", "0.2", "-W", "2"])
        .arg(to.to_string())
        .output();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let received =
                text.lines().find(|l| l.contains("packets transmitted")).unwrap_or("").trim().to_owned();
            let rtt = text
                .lines()
                .find(|l| l.starts_with("rtt"))
                .and_then(|l| l.split('=').nth(1))
                .and_then(|v| v.trim().split('/').nth(1))
                .map(|avg| format!(", average RTT {avg} ms"))
                .unwrap_or_default();
            format!("{received}{rtt}")
        }
        Err(e) => format!("ping failed: {e}"),
    }
}

fn throughput(host: &Node, client: &Client, addr: Ipv6Addr) -> Result<f64, LabError> {
    let mut srv = client.spawn("iperf3-server", "iperf3", &["-s", "-1", "-B", &addr.to_string()])?;
    std::thread::sleep(Duration::from_millis(300));
    let out = host.exec("iperf3", &["-6", "-c", &addr.to_string(), "-t", "3", "-J"])?;
    let _ = srv.stop();
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| LabError::Invalid(format!("iperf3 output: {e}")))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e6)
        .ok_or_else(|| LabError::Invalid("iperf3 gave no throughput".into()))
}

/// Ctrl-C (or SIGTERM, SIGHUP) must not leave the lab behind: the daemons run in their own
/// process groups and would survive the demo. The signals are blocked here and taken by a
/// thread that removes this process's namespaces (killing what runs in them) and exits.
/// Children get a clean signal mask when they are spawned.
fn clean_up_on_signal() {
    // SAFETY: a signal set initialised by sigemptyset, then used by this thread only.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: a valid signal set and output integer.
        while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
        eprintln!("\nteredo-demo: interrupted: removing the lab");
        let _ = teredo_lab::netns::remove_own();
        std::process::exit(130);
    });
}
