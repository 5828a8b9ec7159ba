//! The UPnP NATs' Internet Gateway Device: Debian's `miniupnpd` (nftables backend),
//! started inside the NAT namespace with a lab configuration and never anywhere else.
//!
//! It serves IGDv1 (`force_igd_desc_v1`, WANIPConnection:1: AddPortMapping,
//! DeletePortMapping, GetExternalIPAddress, ...) on the LAN bridge only: SSDP on
//! 239.255.255.250:1900 and HTTP on [`HTTP_PORT`], with the description at
//! [`description_url`]. Its nftables rules go to the chains of
//! [`super::ruleset::UPNP_TABLE`], which the lab creates (Debian's `nft_init.sh` would
//! install a forward chain with policy drop); the UPnP port-symmetric NAT applies the
//! mappings of its lease file instead of those rules (see [`super::userland`]).
//!
//! Why a STUN responder (the `stun` module): `miniupnpd` 2.3.1 refuses to forward ports when
//! its external interface has a reserved address, and the lab's NAT publics are in
//! 198.51.100.0/24 (TEST-NET-2), which it counts as reserved: with the address on `wan` it
//! logs "Reserved / private IP address 198.51.100.1 on ext interface wan: Port forwarding
//! is impossible" and answers AddPortMapping with UPnPError 501 ActionFailed, and
//! `ext_ip=198.51.100.1` is refused at start ("option ext_ip contains reserved / private
//! address"). Only `ext_perform_stun=yes` lifts it: when a STUN server sees the interface
//! unchanged by any NAT, `miniupnpd` takes the STUN answer as its public address and
//! enables forwarding. The lab's responder on the NAT's loopback gives that answer (the
//! NAT's public address), so nothing leaves the namespace for it.
//!
//! Debian's `miniupnpc` 2.2.4 (`upnpc`) in turn finds this IGD "not connected?" in its
//! discovery, as its external address is reserved, and then does nothing unless told to
//! go on (`-i`) or given the description URL (`-u`) ([`super::upnpc`]).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::error::{LabError, Result};
use crate::nat::ruleset::{UPNP_CHAINS, UPNP_TABLE};
use crate::nat::stun::{self, StunResponder};
use crate::node::Node;

/// The IGD program.
pub const MINIUPNPD: &str = "miniupnpd";
/// The IGD's HTTP port (description and SOAP control) on the NAT's LAN address.
pub const HTTP_PORT: u16 = 5000;
/// How long the lab waits for `miniupnpd` to be ready.
const READY: Duration = Duration::from_secs(15);

/// The IGD's description URL on a NAT whose LAN address is `lan`.
pub fn description_url(lan: Ipv4Addr) -> String {
    format!("http://{lan}:{HTTP_PORT}/rootDesc.xml")
}

/// A running IGD: `miniupnpd` and its STUN responder. Dropping it stops both.
#[derive(Debug)]
pub(crate) struct Igd {
    // Field order is drop order: the daemon first, then the responder it talked to.
    daemon: Daemon,
    _stun: StunResponder,
}

impl Igd {
    /// Stops `miniupnpd`.
    pub(crate) fn stop(&mut self) -> Result<()> {
        self.daemon.stop()
    }
}

/// The configuration of the IGD of NAT number `index`, LAN interface `lan_if` with
/// network `lan_net`/24, keeping its leases in `leases`.
pub(crate) fn config(index: u8, lan_if: &str, wan_if: &str, lan_net: Ipv4Addr, leases: &str) -> String {
    let [fwd, pre, post] = UPNP_CHAINS;
    let uuid = format!("{:08x}-7465-7265-646f-{:012x}", std::process::id(), index);
    let stun = stun::PRIMARY;
    format!(
        "# teredo-lab: the IGD of NAT {index}, inside its namespace only\n\
         ext_ifname={wan_if}\n\
         listening_ip={lan_if}\n\
         http_port={HTTP_PORT}\n\
         enable_natpmp=no\n\
         enable_upnp=yes\n\
         ipv6_disable=yes\n\
         force_igd_desc_v1=yes\n\
         secure_mode=yes\n\
         system_uptime=no\n\
         notify_interval=60\n\
         uuid={uuid}\n\
         lease_file={leases}\n\
         ext_perform_stun=yes\n\
         ext_stun_host={}\n\
         ext_stun_port={}\n\
         upnp_table_name={UPNP_TABLE}\n\
         upnp_nat_table_name={UPNP_TABLE}\n\
         upnp_forward_chain={fwd}\n\
         upnp_nat_chain={pre}\n\
         upnp_nat_postrouting_chain={post}\n\
         allow 1-65535 {lan_net}/24 1-65535\n\
         deny 0-65535 0.0.0.0/0 0-65535\n",
        stun.ip(),
        stun.port()
    )
}

/// Where the IGD of NAT `node` keeps its leases (the file appears with the first mapping).
pub(crate) fn leases_path(node: &Node) -> PathBuf {
    node.artifact_path("upnp.leases")
}

/// Starts the IGD in NAT `node` (number `index`, public address `public`, LAN network
/// `lan_net`/24 on `lan_if`) and waits until it forwards ports.
pub(crate) fn start(
    node: &Node,
    index: u8,
    public: Ipv4Addr,
    lan_if: &str,
    wan_if: &str,
    lan_net: Ipv4Addr,
) -> Result<Igd> {
    if !crate::cmd::have_program(MINIUPNPD) {
        return Err(LabError::Unavailable(format!(
            "a UPnP NAT needs {MINIUPNPD} (Debian's miniupnpd-nftables; run .ci/install-deps)"
        )));
    }
    let stun = StunResponder::start(node, public)?;
    let leases = leases_path(node);
    let conf = node.write_artifact(
        "miniupnpd.conf",
        &config(index, lan_if, wan_if, lan_net, &leases.to_string_lossy()),
    )?;
    let pid = node.artifact_path("miniupnpd.pid");
    let daemon = node.spawn(
        MINIUPNPD,
        MINIUPNPD,
        &["-d", "-f", &conf.to_string_lossy(), "-P", &pid.to_string_lossy()],
    )?;
    let igd = Igd { daemon, _stun: stun };
    igd.daemon.wait_log("Port forwarding is now", READY)?;
    let log = igd.daemon.log();
    if !log.contains("Port forwarding is now enabled") {
        return Err(LabError::Invalid(format!(
            "{MINIUPNPD} in {} does not forward ports (see {})",
            node.ns(),
            igd.daemon.log_path().display()
        )));
    }
    igd.daemon.wait_log(&format!("HTTP listening on port {HTTP_PORT}"), READY)?;
    Ok(igd)
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_names_the_lab_pieces() {
        let c = super::config(3, "lan", "wan", "10.0.3.0".parse().unwrap(), "/tmp/l");
        for needle in [
            "ext_ifname=wan\n",
            "listening_ip=lan\n",
            "http_port=5000\n",
            "ext_stun_host=127.0.0.1\n",
            "lease_file=/tmp/l\n",
            "allow 1-65535 10.0.3.0/24 1-65535\n",
            "upnp_table_name=lab_upnp\n",
        ] {
            assert!(c.contains(needle), "{needle} in\n{c}");
        }
    }
}
