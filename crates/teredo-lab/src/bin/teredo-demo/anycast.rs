//! `teredo-demo --anycast`: relays at internet scale, shown to a person. Two teredo
//! relays announce 2001::/32 by BGP (BIRD 2, the configurations of `contrib/bird`) to the
//! router that carries the IPv6 host's traffic; a teredo client and a Miredo client behind
//! NATs ping the host through the relay the router prefers; that relay is killed
//! (`kill -9`), and the demo shows the router's route moving and each client's pings
//! resuming, with the gap each one saw.

use std::time::Duration;

use teredo_lab::anycast;
use teredo_lab::{Lab, LabError, NatKind, miredo, ping_log};

use super::{ping_summary, show_address, step};

/// What this scenario needs besides the lab's own programs.
pub(super) const NEEDS: &[&str] = &["miredo", "ping", "bird", "birdc"];

/// How long the demo waits for the Miredo client's pings to come back.
const MIREDO_PATIENCE: Duration = Duration::from_secs(70);

pub(super) fn run(teredo: &str, lab: &mut Lab) -> Result<(), LabError> {
    step(1, "building the lab");
    let server = lab.server()?;
    let host = lab.v6host()?;
    let a = lab.client_behind(NatKind::PortRestricted)?;
    let b = lab.client_behind(NatKind::PortRestricted)?;
    println!(
        "      internet router (BGP AS 64496); server {} + {}; IPv6 host {};",
        server.primary, server.secondary, host.ipv6
    );
    println!(
        "      client A (teredo) behind a NAT ({}), client B (Miredo 1.2.6) behind another ({})",
        a.public_ipv4(),
        b.public_ipv4()
    );

    step(2, "two teredo relays announce 2001::/32 by BGP (BIRD 2 on the router and on each relay)");
    let _server = miredo::start_server_with(&server, &[teredo, "server"])?;
    let any = anycast::start(lab, &server, &[teredo, "run"])?;
    for (i, r) in any.relays.iter().enumerate() {
        println!(
            "      relay {}: {} / {}, probing the server {} every 3 s; its route 2001::/32 exported by BIRD",
            i + 1,
            r.ipv4,
            r.ipv6,
            server.primary
        );
    }
    let routes = any.birds[0].birdc(&["show", "route", "2001::/32"])?;
    println!("      the router's BIRD (`birdc show route 2001::/32`; * is the best, put in the kernel):");
    for line in
        routes.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("BIRD") && !l.starts_with("Table"))
    {
        println!("        {}", line.trim());
    }

    step(3, "both clients qualify and ping the IPv6 host through relay 1 (the router's best route)");
    let t0 = std::time::Instant::now();
    let _ca = miredo::start_client_with(&a, &server, "teredo", &[teredo, "run"])?;
    let _cb = miredo::start_client(&b, &server, "teredo")?;
    show_address("A", &a, t0)?;
    show_address("B", &b, t0)?;
    for (label, c) in [("A", &a), ("B", &b)] {
        c.wait_ping6(host.ipv6, Duration::from_secs(20))?;
        println!("      {label} -> IPv6 host {}: {}", host.ipv6, ping_summary(c, host.ipv6));
    }

    step(4, "kill -9 of relay 1 while both clients ping every 0.2 s");
    let pa = ping_log::start(&a, "ping-a", host.ipv6, 100)?;
    let pb = ping_log::start(&b, "ping-b", host.ipv6, 100)?;
    std::thread::sleep(Duration::from_secs(2));
    let killed = ping_log::now();
    any.daemons[0].signal(libc::SIGKILL)?;
    let moved = anycast::wait_routed(lab, Some(2), Duration::from_secs(10))?;
    println!(
        "      the relay's interface and route died with it; BIRD withdrew the route: the router sends 2001::/32 to relay 2 after {:.2} s",
        moved.as_secs_f64()
    );
    match ping_log::wait_gap(&pa, killed, Duration::from_secs(20)) {
        Some(g) => println!(
            "      client A (teredo): pings resumed after a gap of {g:.1} s (its host went silent, it tested it again through the server, relay 2 answered)"
        ),
        None => println!("      client A (teredo): no reply within 20 s"),
    }
    println!(
        "      client B (Miredo 1.2.6) keeps sending to the dead relay until its peer entry expires, 30 s after the last reply..."
    );
    match ping_log::wait_gap(&pb, killed, MIREDO_PATIENCE) {
        Some(g) => println!("      client B (Miredo 1.2.6): pings resumed after a gap of {g:.1} s"),
        None => println!("      client B (Miredo 1.2.6): no reply within {} s", MIREDO_PATIENCE.as_secs()),
    }
    Ok(())
}
