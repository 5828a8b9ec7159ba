//! Anycast relays at work in a lab: two Teredo relays that probe the lab server and
//! announce 2001::/32 by BGP, each with its BIRD, to the router's BIRD ([`start`]), and
//! what a test or the demonstration looks at: which relay the router sends the prefix to
//! ([`routed_relay`]), whether a relay has its route ([`has_route`]).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::bird::{self, Bird};
use crate::daemon::Daemon;
use crate::error::{LabError, Result};
use crate::lab::{Lab, Relay, Server};
use crate::miredo::{self, IFACE};
use crate::node::Node;
use crate::wait::wait_for;

/// How long BGP may take to come up.
const CONVERGE: Duration = Duration::from_secs(20);

/// The running anycast relays (see [`start`]). Dropping it stops them and their BIRDs.
#[derive(Debug)]
pub struct Anycast {
    /// Relay 1 and relay 2.
    pub relays: Vec<Relay>,
    /// Their `teredo run` daemons, in the same order.
    pub daemons: Vec<Daemon>,
    /// The router's BIRD, then relay 1's and relay 2's.
    pub birds: Vec<Bird>,
}

/// A relay's `miredo.conf` that probes `server` for its health.
pub fn relay_config(server: Ipv4Addr) -> String {
    format!("# teredo-lab: anycast relay\nRelayType cone\nInterfaceName {IFACE}\nServerAddress {server}\n")
}

/// Makes two anycast relays ([`Lab::anycast_relay`]), runs `relay` (the program and its
/// leading arguments, e.g. `["/path/teredo", "run"]`) on each with [`relay_config`],
/// waits until each has its route (after its first answer from `server`), starts the
/// router's BIRD and each relay's with the shipped configurations, and waits until both
/// sessions are established, the router's BIRD has both relays' routes, and the router
/// routes 2001::/32 to relay 1 (lower router id).
pub fn start(lab: &mut Lab, server: &Server, relay: &[&str]) -> Result<Anycast> {
    let relays = vec![lab.anycast_relay()?, lab.anycast_relay()?];
    let mut birds = vec![Bird::start(lab.internet(), "bird", bird::ROUTER_CONF)?];
    let mut daemons = Vec::new();
    for (i, r) in relays.iter().enumerate() {
        let d = miredo::start_with(r, "relay", relay, &relay_config(server.primary))?;
        wait_for("the relay's route after its first probe", CONVERGE, || has_route(r))
            .map_err(|e| LabError::Invalid(format!("{e}; relay log:\n{}", d.log())))?;
        daemons.push(d);
        let index = u8::try_from(i + 1).unwrap_or(u8::MAX);
        birds.push(Bird::start(r, "bird", &bird::relay_config(r, index)?)?);
    }
    for (i, b) in birds.iter().enumerate().skip(1) {
        b.wait_established("upstream", CONVERGE)?;
        birds[0].wait_established(&format!("relay{i}"), CONVERGE)?;
    }
    // Both announcements reached the router, and relay 1's is the best.
    wait_for("both relays' routes in the router's BIRD", CONVERGE, || {
        birds[0]
            .birdc(&["show", "route", "for", "2001::/32", "all"])
            .is_ok_and(|r| r.contains("[relay1 ") && r.contains("[relay2 "))
    })?;
    wait_routed(lab, Some(1), CONVERGE)?;
    Ok(Anycast { relays, daemons, birds })
}

/// Whether `relay` has its route to 2001::/32 on the Teredo interface.
pub fn has_route(relay: &Node) -> bool {
    relay.ip(&["-6", "route", "show", "2001::/32", "dev", IFACE]).is_ok_and(|o| !o.trim().is_empty())
}

/// The anycast relay (1 or 2) the router sends 2001::/32 to now, if any.
pub fn routed_relay(lab: &Lab) -> Option<u8> {
    let out = lab.internet().ip(&["-6", "-j", "route", "show", "2001::/32"]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let gw: Ipv6Addr = v.get(0)?.get("gateway")?.as_str()?.parse().ok()?;
    let index = gw.segments()[2].checked_sub(0x10)?;
    u8::try_from(index).ok().filter(|i| (1..=crate::lab::MAX_ANYCAST).contains(i))
}

/// Waits until the router sends 2001::/32 to relay `want` (`None`: nowhere); returns the
/// time it took.
pub fn wait_routed(lab: &Lab, want: Option<u8>, timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    wait_for(&format!("the router's route to 2001::/32 via relay {want:?}"), timeout, || {
        routed_relay(lab) == want
    })?;
    Ok(t0.elapsed())
}
