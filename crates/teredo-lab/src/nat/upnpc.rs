//! A UPnP client for tests: Debian's `upnpc` (miniupnpc) run inside a client namespace,
//! to find a UPnP NAT's IGD by SSDP and to add, list and delete its port mappings as an
//! application behind the NAT would.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::error::{LabError, Result};
use crate::node::Node;

/// The client program.
pub const UPNPC: &str = "upnpc";

fn run(node: &Node, args: &[&str]) -> Result<String> {
    let out = node.exec_output(UPNPC, args)?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

fn unexpected(what: &str, node: &Node, text: &str) -> LabError {
    LabError::Invalid(format!("{UPNPC} {what} in {}:\n{text}", node.ns()))
}

/// Looks for IGDs by SSDP from `node` (M-SEARCH on the LAN; `upnpc -i -s`, `-i` because
/// `upnpc` takes an IGD with a reserved external address for disconnected) and returns
/// the description URLs found.
pub fn discover(node: &Node) -> Result<Vec<String>> {
    let text = run(node, &["-i", "-s"])?;
    let urls: Vec<String> =
        text.lines().filter_map(|l| l.trim().strip_prefix("desc:")).map(|u| u.trim().to_owned()).collect();
    if urls.is_empty() {
        return Err(unexpected("found no IGD", node, &text));
    }
    Ok(urls)
}

/// GetExternalIPAddress of the IGD at `url`.
pub fn external_ip(node: &Node, url: &str) -> Result<Ipv4Addr> {
    let text = run(node, &["-u", url, "-s"])?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("ExternalIPAddress ="))
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| unexpected("gave no external address", node, &text))
}

/// AddPortMapping on the IGD at `url`: UDP to its external port `external` goes to
/// `internal`, for any remote host, with no lease time (as RFC 6081 §5.3.3 asks).
pub fn add_udp(node: &Node, url: &str, internal: SocketAddrV4, external: u16) -> Result<()> {
    let ip = internal.ip().to_string();
    let port = internal.port().to_string();
    let ext = external.to_string();
    let text = run(node, &["-u", url, "-e", "teredo-lab", "-a", &ip, &port, &ext, "UDP", "0"])?;
    if text.contains("is redirected to internal") {
        Ok(())
    } else {
        Err(unexpected(&format!("could not map UDP {external} to {internal}"), node, &text))
    }
}

/// DeletePortMapping of UDP port `external` on the IGD at `url`.
pub fn delete_udp(node: &Node, url: &str, external: u16) -> Result<()> {
    let ext = external.to_string();
    let text = run(node, &["-u", url, "-d", &ext, "UDP"])?;
    if text.contains("returned : 0") {
        Ok(())
    } else {
        Err(unexpected(&format!("could not delete UDP {external}"), node, &text))
    }
}

/// The UDP port mappings the IGD at `url` lists (GetGenericPortMappingEntry): external
/// port and internal endpoint.
pub fn list_udp(node: &Node, url: &str) -> Result<Vec<(u16, SocketAddrV4)>> {
    let text = run(node, &["-u", url, "-l"])?;
    Ok(parse_list(&text))
}

/// The UDP entries of `upnpc -l` output, lines like ` 0 UDP 41000->10.0.1.2:40000 'x' '' 0`.
fn parse_list(text: &str) -> Vec<(u16, SocketAddrV4)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next()?.parse::<u32>().ok()?;
            if w.next()? != "UDP" {
                return None;
            }
            let (ext, int) = w.next()?.split_once("->")?;
            Some((ext.parse().ok()?, int.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_upnpc_list() {
        let t = " i protocol exPort->inAddr:inPort description remoteHost leaseTime\n \
                 0 UDP 41000->10.0.1.2:40000 'test' '' 604800\n \
                 1 TCP 80->10.0.1.2:80 'w' '' 0\n\
                 GetGenericPortMappingEntry() returned 713 (SpecifiedArrayIndexInvalid)\n";
        assert_eq!(super::parse_list(t), [(41000, "10.0.1.2:40000".parse().unwrap())]);
    }
}
