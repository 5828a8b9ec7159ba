//! A client's UPnP port mapping (RFC 6081 §5.3.3, §5.3.5), on a thread of its own so that
//! neither the packet path nor the control thread ever waits for SSDP or HTTP: an SSDP
//! search for the NAT's Internet Gateway Device on the client's LAN ([`SEARCH_TIMEOUT`]),
//! then AddPortMapping (external port = the Teredo socket's local port, internal = its local
//! address and port, UDP, "TEREDO", lease 0) and GetExternalIPAddress. The worker gets the
//! mapping, or `None`, as [`Command::Upnp`]; its client holds its first RS for it at most
//! [`teredo_proto::client::MAX_UPNP_WAIT`] (a network without an IGD costs that once, at
//! start-up; a later answer is still recorded). The control thread deletes the mapping on
//! exit (DeletePortMapping, [`Upnp::remove`]).
//!
//! The mapping is made once per start (lease 0: it lasts until deleted); a reload or a
//! new qualification does not redo it. Not done: the Persisted UPnP-Mapped Port of §5.3.1 (a mapping left by a crash is
//! replaced by the next AddPortMapping of the same port, which IGDs allow to its owner).
//! The IGD's external address is taken as it is, even in a reserved range (the lab's
//! documentation ranges): igd-next does not judge the connection, unlike miniupnpc.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use igd_next::{Gateway, PortMappingProtocol, SearchOptions};
use tracing::{info, warn};

use super::worker::{Command, Link};

/// How long the SSDP search (and the description it fetches) may take.
pub const SEARCH_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long the first RS waits after the IGD answered: an IGD may apply its mapping a
/// little after its answer (the lab's userland NATs read `miniupnpd`'s lease file every
/// 50 ms), and an RS sent before would make the NAT's binding toward the server with
/// another port, which the server would then see instead of the mapped one.
const SETTLE: Duration = Duration::from_millis(250);
/// How long [`Upnp::remove`] waits for DeletePortMapping at exit.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);
/// The mapping's description (§5.3.3: NewPortMappingDescription).
const DESCRIPTION: &str = "TEREDO";

/// A mapping made on the IGD.
struct Mapping {
    gateway: Gateway,
    port: u16,
}

/// The UPnP thread's result, for the control thread.
pub struct Upnp {
    result: Receiver<Option<Mapping>>,
    mapping: Option<Mapping>,
}

/// Starts the search and mapping for the Teredo socket bound at `local` (its port is
/// mapped), telling the worker behind `link` what came of it.
pub fn spawn(local: SocketAddrV4, link: Link) -> Upnp {
    let (tx, result) = mpsc::channel();
    let spawned = thread::Builder::new().name("upnp".into()).spawn(move || {
        let mapped = map(local);
        if mapped.is_some() {
            thread::sleep(SETTLE);
        }
        link.send(Command::Upnp(mapped.as_ref().map(|(_, external)| *external)));
        let _ = tx.send(mapped.map(|(m, _)| m));
    });
    if let Err(e) = spawned {
        warn!("UPnP: {e}");
    }
    Upnp { result, mapping: None }
}

/// The source address toward `gateway`: the local address the IGD sees.
fn source_toward(bind: Ipv4Addr, gateway: SocketAddr) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind(SocketAddrV4::new(bind, 0)).ok()?;
    s.connect(gateway).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) => Some(*a.ip()),
        SocketAddr::V6(_) => None,
    }
}

/// §5.3.3: the mapping and the external address, or `None` (logged) when any step fails.
fn map(local: SocketAddrV4) -> Option<(Mapping, SocketAddrV4)> {
    let mut options = SearchOptions::default();
    options.bind_addr = SocketAddr::V4(SocketAddrV4::new(*local.ip(), 0));
    options.timeout = Some(SEARCH_TIMEOUT);
    options.single_search_timeout = Some(SEARCH_TIMEOUT);
    let gateway = match igd_next::search_gateway(options) {
        Ok(g) => g,
        Err(e) => {
            info!("UPnP: no Internet Gateway Device found ({e})");
            return None;
        }
    };
    let ip =
        if local.ip().is_unspecified() { source_toward(*local.ip(), gateway.addr)? } else { *local.ip() };
    let internal = SocketAddr::V4(SocketAddrV4::new(ip, local.port()));
    if let Err(e) = gateway.add_port(PortMappingProtocol::UDP, local.port(), internal, 0, DESCRIPTION) {
        warn!("UPnP: the IGD at {} refused to map UDP port {}: {e}", gateway.addr, local.port());
        return None;
    }
    let mapping = Mapping { gateway, port: local.port() };
    match mapping.gateway.get_external_ip() {
        Ok(IpAddr::V4(external)) => {
            let external = SocketAddrV4::new(external, local.port());
            info!("UPnP: the IGD at {} maps {external} to {internal}", mapping.gateway.addr);
            Some((mapping, external))
        }
        other => {
            // §5.3.3: "SHOULD perform the uninitialization procedure".
            warn!("UPnP: no external IPv4 address from the IGD ({other:?}): mapping removed");
            delete(&mapping);
            None
        }
    }
}

fn delete(m: &Mapping) {
    match m.gateway.remove_port(PortMappingProtocol::UDP, m.port) {
        Ok(()) => info!("UPnP: mapping of UDP port {} removed", m.port),
        Err(e) => warn!("UPnP: could not remove the mapping of UDP port {}: {e}", m.port),
    }
}

impl Upnp {
    /// §5.3.5: DeletePortMapping of the mapping made, if any, waiting at most a few
    /// seconds (for the search to end too).
    pub fn remove(mut self) {
        if self.mapping.is_none() {
            self.mapping = self.result.recv_timeout(SEARCH_TIMEOUT + REMOVE_TIMEOUT).ok().flatten();
        }
        let Some(m) = self.mapping.take() else { return };
        let (tx, rx) = mpsc::channel();
        let spawned = thread::Builder::new().name("upnp".into()).spawn(move || {
            delete(&m);
            let _ = tx.send(());
        });
        if spawned.is_ok() && rx.recv_timeout(REMOVE_TIMEOUT).is_err() {
            warn!("UPnP: the IGD did not answer DeletePortMapping in time");
        }
    }
}
