//! [`Lab`]: one test's topology of network namespaces, built on demand (an "internet"
//! router, a Teredo server, a relay, a native IPv6 host, NATs of each kind and clients
//! behind them), with packet captures, and removal of everything on drop; artifacts
//! (captures, logs, configs) are kept and summarised only when the test fails.
//!
//! Addresses (all from documentation ranges; nothing is routed to the real network):
//!
//! | node | interface | IPv4 | IPv6 | router side (in `inet`) |
//! |---|---|---|---|---|
//! | server | eth0 | 192.0.2.1 and 192.0.2.2 /28 | 2001:db8:1::1/64 | `srv` 192.0.2.14, 2001:db8:1::ff |
//! | relay | eth0 | 203.0.113.1/28 | 2001:db8:2::1/64 | `rly` 203.0.113.14, 2001:db8:2::ff |
//! | v6host | eth0 | none | 2001:db8:3::1/64 | `v6h` 2001:db8:3::ff |
//! | NAT *i* (1..=15) | wan | 198.51.100.(16(*i*-1)+1)/28 (address-symmetric: also the next [`ADDRESS_SYMMETRIC_PUBLICS`](crate::nat::ADDRESS_SYMMETRIC_PUBLICS) − 1) | none | `nat`*i* 198.51.100.(16(*i*-1)+14) |
//! | NAT *i* | lan (bridge) | 10.0.*i*.1/24 | none | |
//! | client behind NAT *i* | eth0 | 10.0.*i*.2, .3, ... /24 | (Teredo) | |
//! | public client *j* (1..=15) | eth0 | 203.0.113.(16*j*+1)/28 | (Teredo) | `pub`*j* 203.0.113.(16*j*+14) |
//!
//! The router routes 2001::/32 (Teredo) to the relay once there is one; the server, the
//! relay and the v6 host have their IPv6 default route through the router. A UPnP NAT's
//! IGD listens on its LAN address, port [`crate::nat::igd::HTTP_PORT`]. Relays that
//! announce 2001::/32 by BGP instead ([`Lab::anycast_relay`]), and servers behind an ECMP
//! route ([`Lab::ecmp_server`]), have addresses of their own (see those methods).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cmd;
use crate::daemon::Daemon;
use crate::error::{LabError, Result};
use crate::nat::igd::{self, Igd};
use crate::nat::userland::{self, UserlandNat};
use crate::nat::{Engine, NatKind};
use crate::netns;
use crate::node::Node;

mod anycast;
mod artifacts;
mod hosts;

use artifacts::{OWNER_FILE, artifacts_dir_for};

pub use anycast::MAX_ANYCAST;
pub use hosts::*;

/// A running packet capture.
#[derive(Debug)]
struct Capture {
    daemon: Daemon,
    pcap: PathBuf,
}

/// Names of labs alive in this process, so that two labs never share an artifacts
/// directory.
static ACTIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// One test's network. See the module documentation for the addresses.
#[derive(Debug)]
pub struct Lab {
    name: String,
    prefix: String,
    artifacts: Arc<PathBuf>,
    namespaces: Vec<String>,
    inet: Node,
    server: Option<Server>,
    relay: Option<Relay>,
    anycast: Vec<Relay>,
    ecmp: Vec<Server>,
    v6host: Option<V6Host>,
    nats: Vec<Nat>,
    clients: Vec<Client>,
    public_clients: u8,
    captures: Vec<Capture>,
    igds: Vec<Igd>,
    userland_nats: Vec<UserlandNat>,
    capture_enabled: bool,
    failed: bool,
    keep: bool,
}

impl Lab {
    /// Creates a lab for test `name` (letters, digits, `-` and `_`; unique among the labs
    /// alive in this process): checks that the lab can run here, removes namespaces left
    /// by dead test processes, creates the artifacts directory and the "internet" router.
    ///
    /// Artifacts go to `$TEREDO_LAB_ARTIFACTS/<name>` if that variable is set, else to
    /// `<cargo target dir>/lab-artifacts/<name>` (found from the test executable's path).
    /// Captures on the server, the relay and every NAT's `wan` start automatically unless
    /// `TEREDO_LAB_CAPTURE=0`. `TEREDO_LAB_KEEP=1` keeps the artifacts of passing tests too.
    pub fn new(name: &str) -> Result<Self> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(LabError::Invalid(format!(
                "lab name {name:?} must be non-empty letters, digits, '-' or '_'"
            )));
        }
        netns::check_available()?;
        {
            let mut active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
            if active.iter().any(|n| n == name) {
                return Err(LabError::Invalid(format!("a lab named {name} already exists in this process")));
            }
            active.push(name.to_owned());
        }
        // From here on, Drop releases the name and removes what was made.
        let artifacts = Arc::new(artifacts_dir_for(name));
        let prefix = netns::new_prefix();
        let inet = Node::new(format!("{prefix}-inet"), "inet".into(), Arc::clone(&artifacts));
        let mut lab = Self {
            name: name.to_owned(),
            prefix,
            artifacts,
            namespaces: Vec::new(),
            inet,
            server: None,
            relay: None,
            anycast: Vec::new(),
            ecmp: Vec::new(),
            v6host: None,
            nats: Vec::new(),
            clients: Vec::new(),
            public_clients: 0,
            captures: Vec::new(),
            igds: Vec::new(),
            userland_nats: Vec::new(),
            capture_enabled: std::env::var("TEREDO_LAB_CAPTURE").map_or(true, |v| v != "0"),
            failed: false,
            keep: std::env::var("TEREDO_LAB_KEEP").is_ok_and(|v| v == "1"),
        };
        if let Err(e) = netns::remove_stale() {
            eprintln!("lab {name}: could not look for stale namespaces: {e}");
        }
        let dir = lab.artifacts.as_path();
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| LabError::io(format!("removing old {}", dir.display()), e))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let owner = dir.join(OWNER_FILE);
        std::fs::write(&owner, std::process::id().to_string())
            .map_err(|e| LabError::io(format!("writing {}", owner.display()), e))?;
        let inet = lab.inet.clone();
        lab.create(&inet)?;
        inet.sysctl(&[("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")])?;
        Ok(lab)
    }

    /// The test name given to [`Lab::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The prefix of all this lab's namespace names (`tl-<pid>-<n>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespaces made so far, in creation order.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Where logs, configs and captures go (deleted on success).
    pub fn artifacts_dir(&self) -> &Path {
        &self.artifacts
    }

    /// The "internet" router namespace.
    pub fn internet(&self) -> &Node {
        &self.inet
    }

    /// Turns automatic captures on or off for the nodes made from now on.
    pub fn set_captures(&mut self, on: bool) {
        self.capture_enabled = on;
    }

    /// Marks the test as failed: artifacts are kept and summarised on drop (a panic does
    /// this by itself).
    pub fn mark_failed(&mut self) {
        self.failed = true;
    }

    /// Keeps the artifacts even if the test passes.
    pub fn keep_artifacts(&mut self) {
        self.keep = true;
    }

    /// The Teredo server node, made on first call: [`SERVER_IPV4`] and [`SERVER_IPV4_2`],
    /// [`SERVER_IPV6`].
    pub fn server(&mut self) -> Result<Server> {
        if let Some(s) = &self.server {
            return Ok(s.clone());
        }
        let node = self.add_node("server")?;
        self.uplink(&node, "srv")?;
        node.ip(&["addr", "add", "192.0.2.1/28", "dev", ETH])?;
        node.ip(&["addr", "add", "192.0.2.2/28", "dev", ETH])?;
        node.ip(&["route", "add", "default", "via", "192.0.2.14"])?;
        self.inet_ip(&["addr", "add", "192.0.2.14/28", "dev", "srv"])?;
        self.v6_link(&node, "srv", 1)?;
        self.auto_capture(&node, ETH)?;
        let s = Server { node, primary: SERVER_IPV4, secondary: SERVER_IPV4_2, ipv6: SERVER_IPV6 };
        self.server = Some(s.clone());
        Ok(s)
    }

    /// The relay node, made on first call: [`RELAY_IPV4`], [`RELAY_IPV6`], IPv6
    /// forwarding on, and the router's route to 2001::/32 through it.
    pub fn relay(&mut self) -> Result<Relay> {
        if let Some(r) = &self.relay {
            return Ok(r.clone());
        }
        let node = self.add_node("relay")?;
        self.uplink(&node, "rly")?;
        node.ip(&["addr", "add", "203.0.113.1/28", "dev", ETH])?;
        node.ip(&["route", "add", "default", "via", "203.0.113.14"])?;
        self.inet_ip(&["addr", "add", "203.0.113.14/28", "dev", "rly"])?;
        self.v6_link(&node, "rly", 2)?;
        node.sysctl(&[("net.ipv6.conf.all.forwarding", "1")])?;
        self.inet_ip(&["-6", "route", "add", "2001::/32", "via", "2001:db8:2::1"])?;
        self.auto_capture(&node, ETH)?;
        let r = Relay { node, ipv4: RELAY_IPV4, ipv6: RELAY_IPV6 };
        self.relay = Some(r.clone());
        Ok(r)
    }

    /// The native IPv6 host, made on first call: [`V6HOST_IPV6`], default route through
    /// the router (which sends 2001::/32 to the relay).
    pub fn v6host(&mut self) -> Result<V6Host> {
        if let Some(h) = &self.v6host {
            return Ok(h.clone());
        }
        let node = self.add_node("v6host")?;
        self.uplink(&node, "v6h")?;
        self.v6_link(&node, "v6h", 3)?;
        let h = V6Host { node, ipv6: V6HOST_IPV6 };
        self.v6host = Some(h.clone());
        Ok(h)
    }

    /// A new NAT of `kind` (see [`crate::nat`]), with its public side on the internet and
    /// an empty LAN; put clients behind it with [`Lab::client`]. A userland kind gets its
    /// userland NAT, a UPnP kind its IGD (`miniupnpd`, ready when this returns).
    pub fn nat(&mut self, kind: NatKind) -> Result<Nat> {
        let index = u8::try_from(self.nats.len() + 1)
            .ok()
            .filter(|i| *i <= MAX_NATS)
            .ok_or_else(|| LabError::Invalid(format!("at most {MAX_NATS} NATs per lab")))?;
        let role = format!("nat{index}");
        let node = self.add_node(&role)?;
        let base = 16 * (index - 1);
        let publics: Vec<Ipv4Addr> =
            (0..kind.public_addresses()).map(|k| Ipv4Addr::new(198, 51, 100, base + 1 + k)).collect();
        let public = publics[0];
        let gw = Ipv4Addr::new(198, 51, 100, base + 14);
        let lan = Ipv4Addr::new(10, 0, index, 1);
        node.sysctl(&[("net.ipv4.ip_forward", "1")])?;
        self.link(&node, WAN, self.inet(), &role)?;
        for p in &publics {
            node.ip(&["addr", "add", &format!("{p}/28"), "dev", WAN])?;
        }
        node.ip(&["route", "add", "default", "via", &gw.to_string()])?;
        self.inet_ip(&["addr", "add", &format!("{gw}/28"), "dev", &role])?;
        node.ip(&["link", "add", LAN, "type", "bridge"])?;
        node.ip(&["addr", "add", &format!("{lan}/24"), "dev", LAN])?;
        node.ip(&["link", "set", LAN, "up"])?;
        cmd::checked_with_stdin(node.command("nft").args(["-f", "-"]), node.ns(), &kind.ruleset(WAN))?;
        self.auto_capture(&node, WAN)?;
        let lan_net = Ipv4Addr::new(10, 0, index, 0);
        let leases = kind.upnp().then(|| igd::leases_path(&node));
        let mut handle = None;
        if kind.engine() == Engine::Userland {
            let config = userland::Config {
                kind,
                publics: publics.clone(),
                lan: (lan_net, 24),
                leases: leases.clone(),
                log: node.artifact_path("userland-nat.log"),
            };
            let running = UserlandNat::start(&node, config)?;
            handle = Some(running.handle());
            self.userland_nats.push(running);
            route_udp_through_tun(&node)?;
        }
        if kind.upnp() {
            let igd = igd::start(&node, index, public, LAN, WAN, lan_net)?;
            self.igds.push(igd);
        }
        let nat = Nat { node, kind, index, public, publics, lan, userland: handle, upnp_leases: leases };
        self.nats.push(nat.clone());
        Ok(nat)
    }

    /// A new client behind `nat` (on its LAN bridge, default route through it).
    pub fn client(&mut self, nat: &Nat) -> Result<Client> {
        let behind =
            self.clients.iter().filter(|c| c.nat.as_ref().is_some_and(|n| n.index == nat.index)).count();
        let host = u8::try_from(behind + 2)
            .ok()
            .filter(|h| *h < MAX_CLIENTS_PER_NAT + 2)
            .ok_or_else(|| LabError::Invalid(format!("at most {MAX_CLIENTS_PER_NAT} clients per NAT")))?;
        let role = format!("c{}", self.clients.len() + 1);
        let node = self.add_node(&role)?;
        let ipv4 = Ipv4Addr::new(10, 0, nat.index, host);
        self.link(&node, ETH, &nat.node, &role)?;
        nat.ip(&["link", "set", &role, "master", LAN])?;
        node.ip(&["addr", "add", &format!("{ipv4}/24"), "dev", ETH])?;
        node.ip(&["route", "add", "default", "via", &nat.lan.to_string()])?;
        let c = Client { node, ipv4, nat: Some(nat.clone()) };
        self.clients.push(c.clone());
        Ok(c)
    }

    /// A new client on the same LAN as `client`, behind the same NAT (which does not
    /// hairpin: the two reach each other over the LAN only).
    pub fn client_beside(&mut self, client: &Client) -> Result<Client> {
        let nat = client
            .nat
            .clone()
            .ok_or_else(|| LabError::Invalid(format!("{} is not behind a NAT", client.role())))?;
        self.client(&nat)
    }

    /// A new NAT of `kind` with one new client behind it.
    pub fn client_behind(&mut self, kind: NatKind) -> Result<Client> {
        let nat = self.nat(kind)?;
        self.client(&nat)
    }

    /// A new client with a public IPv4 address directly on the internet (no NAT).
    pub fn public_client(&mut self) -> Result<Client> {
        let j = self
            .public_clients
            .checked_add(1)
            .filter(|j| *j <= MAX_NATS)
            .ok_or_else(|| LabError::Invalid(format!("at most {MAX_NATS} public clients")))?;
        let role = format!("p{j}");
        let node = self.add_node(&role)?;
        let ipv4 = Ipv4Addr::new(203, 0, 113, 16 * j + 1);
        let gw = Ipv4Addr::new(203, 0, 113, 16 * j + 14);
        let inet_if = format!("pub{j}");
        self.link(&node, ETH, self.inet(), &inet_if)?;
        node.ip(&["addr", "add", &format!("{ipv4}/28"), "dev", ETH])?;
        node.ip(&["route", "add", "default", "via", &gw.to_string()])?;
        self.inet_ip(&["addr", "add", &format!("{gw}/28"), "dev", &inet_if])?;
        self.public_clients = j;
        let c = Client { node, ipv4, nat: None };
        self.clients.push(c.clone());
        Ok(c)
    }

    /// Starts a capture (`tcpdump -w`) on `iface` of `node`, waits until it listens, and
    /// returns the pcap path (`<artifacts>/<role>-<iface>.pcap`). It stops when the lab
    /// is dropped.
    pub fn capture(&mut self, node: &Node, iface: &str) -> Result<PathBuf> {
        let pcap = node.unique_artifact(iface, "pcap");
        let pcap_s = pcap.to_string_lossy().into_owned();
        let daemon = node.spawn(
            &format!("tcpdump-{iface}"),
            "tcpdump",
            &["-i", iface, "-n", "-U", "--immediate-mode", "-s", "0", "-Z", "root", "-w", &pcap_s],
        )?;
        daemon.wait_log("listening on", std::time::Duration::from_secs(10))?;
        self.captures.push(Capture { daemon, pcap: pcap.clone() });
        Ok(pcap)
    }

    /// The pcap files of the captures started so far.
    pub fn captures(&self) -> Vec<PathBuf> {
        self.captures.iter().map(|c| c.pcap.clone()).collect()
    }

    fn inet(&self) -> &Node {
        &self.inet
    }

    fn inet_ip(&self, args: &[&str]) -> Result<String> {
        self.inet().ip(args)
    }

    fn auto_capture(&mut self, node: &Node, iface: &str) -> Result<()> {
        if self.capture_enabled {
            self.capture(node, iface)?;
        }
        Ok(())
    }

    /// Creates namespace `<prefix>-<role>` (see [`Lab::create`]).
    fn add_node(&mut self, role: &str) -> Result<Node> {
        let ns = format!("{}-{role}", self.prefix);
        let node = Node::new(ns, role.to_owned(), Arc::clone(&self.artifacts));
        self.create(&node)?;
        Ok(node)
    }

    /// Creates the namespace of `node` with loopback up, no IPv6 DAD delay and no router
    /// advertisements; the lab deletes it on drop.
    fn create(&mut self, node: &Node) -> Result<()> {
        netns::add(node.ns())?;
        self.namespaces.push(node.ns().to_owned());
        node.ip(&["link", "set", "lo", "up"])?;
        node.sysctl(&[
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv6.conf.all.accept_ra", "0"),
            ("net.ipv6.conf.default.accept_ra", "0"),
        ])
    }

    /// A veth pair: `a_if` in `a`, `b_if` in `b`, both up. Created directly inside the
    /// namespaces, so the names never meet in the host namespace.
    fn link(&self, a: &Node, a_if: &str, b: &Node, b_if: &str) -> Result<()> {
        cmd::ip(&[
            "link",
            "add",
            a_if,
            "netns",
            a.ns(),
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.ns(),
        ])?;
        a.ip(&["link", "set", a_if, "up"])?;
        b.ip(&["link", "set", b_if, "up"])?;
        Ok(())
    }

    /// The node's `eth0` linked to the router's `inet_if`.
    fn uplink(&self, node: &Node, inet_if: &str) -> Result<()> {
        self.link(node, ETH, self.inet(), inet_if)
    }

    /// 2001:db8:`net`::1/64 on the node's eth0, 2001:db8:`net`::ff on the router, and the
    /// node's IPv6 default route through the router.
    fn v6_link(&self, node: &Node, inet_if: &str, net: u16) -> Result<()> {
        let mine = format!("2001:db8:{net:x}::1/64");
        let router = format!("2001:db8:{net:x}::ff");
        node.ip(&["-6", "addr", "add", &mine, "dev", ETH, "nodad"])?;
        self.inet_ip(&["-6", "addr", "add", &format!("{router}/64"), "dev", inet_if, "nodad"])?;
        node.ip(&["-6", "route", "add", "default", "via", &router])?;
        Ok(())
    }
}

/// Sends UDP from the LAN to non-local addresses and all UDP from `wan` into the userland
/// NAT's TUN (see [`crate::nat::userland`]): table 100 routes everything to the TUN; the
/// rule for `wan` comes before the `local` table (moved from priority 0 to 200), the rule
/// for the LAN after it.
fn route_udp_through_tun(node: &Node) -> Result<()> {
    let tun = userland::TUN;
    node.link_set(tun, true)?;
    node.sysctl(&[
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        (&format!("net.ipv4.conf.{tun}.rp_filter"), "0"),
        // Translated outbound packets come from the TUN with a public (local) source.
        (&format!("net.ipv4.conf.{tun}.accept_local"), "1"),
    ])?;
    node.ip(&["route", "add", "default", "dev", tun, "table", "100"])?;
    node.ip(&["rule", "add", "pref", "100", "iif", WAN, "ipproto", "udp", "lookup", "100"])?;
    node.ip(&["rule", "add", "pref", "200", "lookup", "local"])?;
    node.ip(&["rule", "del", "pref", "0", "lookup", "local"])?;
    node.ip(&["rule", "add", "pref", "300", "iif", LAN, "ipproto", "udp", "lookup", "100"])?;
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        let keep = self.keep || self.failed || std::thread::panicking();
        for igd in &mut self.igds {
            if let Err(e) = igd.stop() {
                eprintln!("lab {}: {e}", self.name);
            }
        }
        self.igds.clear();
        self.userland_nats.clear();
        if keep && !self.captures.is_empty() {
            // Let the captures write the last packets before they stop.
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        for c in &mut self.captures {
            if let Err(e) = c.daemon.stop() {
                eprintln!("lab {}: {e}", self.name);
            }
        }
        self.captures.clear();
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = netns::delete(ns) {
                eprintln!("lab {}: {e}", self.name);
            }
        }
        if keep {
            artifacts::report(&self.name, &self.artifacts);
        } else if let Err(e) = std::fs::remove_dir_all(&*self.artifacts)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("lab {}: removing {}: {e}", self.name, self.artifacts.display());
        }
        let mut active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
        active.retain(|n| n != &self.name);
    }
}
