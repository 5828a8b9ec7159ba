//! Reading a kernel NAT's connection-tracking table (`conntrack -L -p udp`): which public
//! address and port the NAT gave each UDP flow.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::error::{LabError, Result};

/// One UDP entry of a conntrack table: the original direction (as the LAN client sent
/// it) and the reply direction (as the remote answers; its destination is the public
/// mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackUdp {
    /// Source of the original direction.
    pub orig_src: SocketAddrV4,
    /// Destination of the original direction.
    pub orig_dst: SocketAddrV4,
    /// Source of the reply direction.
    pub reply_src: SocketAddrV4,
    /// Destination of the reply direction: the NAT's public address and port for an
    /// outbound flow.
    pub reply_dst: SocketAddrV4,
}

/// Parses the text of `conntrack -L -p udp`; lines that are not UDP IPv4 entries are
/// skipped.
pub fn parse_conntrack_udp(text: &str) -> Result<Vec<ConntrackUdp>> {
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.starts_with("udp") {
            continue;
        }
        let mut vals: [Vec<&str>; 4] = Default::default();
        for tok in line.split_whitespace() {
            if let Some((k, v)) = tok.split_once('=') {
                let i = match k {
                    "src" => 0,
                    "dst" => 1,
                    "sport" => 2,
                    "dport" => 3,
                    _ => continue,
                };
                vals[i].push(v);
            }
        }
        let bad = || LabError::Invalid(format!("cannot parse conntrack line: {line}"));
        let addr = |i: usize, j: usize| -> Result<SocketAddrV4> {
            let ip: Ipv4Addr = vals[i].get(j).ok_or_else(bad)?.parse().map_err(|_| bad())?;
            let port: u16 = vals[i + 2].get(j).ok_or_else(bad)?.parse().map_err(|_| bad())?;
            Ok(SocketAddrV4::new(ip, port))
        };
        if vals[0].len() < 2 || vals[0].iter().any(|v| v.contains(':')) {
            continue; // not IPv4, or not a full entry
        }
        out.push(ConntrackUdp {
            orig_src: addr(0, 0)?,
            orig_dst: addr(1, 0)?,
            reply_src: addr(0, 1)?,
            reply_dst: addr(1, 1)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conntrack() {
        let t = "udp      17 29 src=10.0.1.2 dst=192.0.2.1 sport=5000 dport=3544 [UNREPLIED] \
                 src=192.0.2.1 dst=198.51.100.1 sport=3544 dport=5001 mark=0 use=1\n\
                 tcp      6 10 src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2 src=5.6.7.8 dst=1.2.3.4 sport=2 dport=1\n";
        let e = parse_conntrack_udp(t).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].orig_src, "10.0.1.2:5000".parse().unwrap());
        assert_eq!(e[0].reply_dst, "198.51.100.1:5001".parse().unwrap());
    }
}
