//! The lab's NAT behaviours (RFC 4787 terms), built with nftables inside a NAT namespace,
//! and reading the NAT's conntrack table.
//!
//! Every kind masquerades the LAN behind the NAT's single public IPv4 on interface `wan`,
//! and drops unsolicited inbound packets in INPUT and FORWARD *before* conntrack confirms
//! them. That drop matters: if an early inbound bubble were confirmed, a later outbound
//! packet of the same flow would clash with it and leave with another public port.
//!
//! | kind | mapping | filtering | how |
//! |---|---|---|---|
//! | [`NatKind::FullCone`] | endpoint-independent | endpoint-independent | masquerade (port-preserving) + a dynamic nft map *public port → LAN address.port*, filled by outbound UDP, used to DNAT inbound UDP |
//! | [`NatKind::AddressRestricted`] | endpoint-independent | address-dependent | the same, plus a dynamic set *public port . remote IPv4* filled by outbound UDP; new inbound UDP whose pair is absent is dropped before DNAT |
//! | [`NatKind::PortRestricted`] | endpoint-independent (Linux keeps the source port when it can) | address- and port-dependent | plain masquerade: only conntrack replies come in |
//! | [`NatKind::Symmetric`] | address- and port-dependent | address- and port-dependent | masquerade `random-fully`: every new flow gets a random public port |
//!
//! Limits:
//! - only UDP gets cone behaviour; TCP and ICMP behave as port-restricted in every kind;
//! - cone mappings are keyed by public port: they live 300 s after the last outbound
//!   packet, and a mapping is endpoint-independent only while masquerade can keep the
//!   client's port (two LAN clients using the same source port get distinct public ports
//!   from masquerade, and each keeps its own, so this works for a few clients too);
//! - no hairpinning: a LAN client cannot reach another through the public address;
//! - conntrack's own UDP timeouts apply (30 s unreplied, 120 s once replied).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::error::{LabError, Result};

/// A NAT behaviour. See the module documentation for how each is made and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering ("full cone").
    FullCone,
    /// Endpoint-independent mapping, filtering by remote address ("restricted cone").
    AddressRestricted,
    /// Endpoint-independent mapping, filtering by remote address and port (Linux
    /// MASQUERADE, "port-restricted cone").
    PortRestricted,
    /// A new public port for every remote endpoint (MASQUERADE `--random-fully`).
    Symmetric,
}

impl NatKind {
    /// All four kinds.
    pub const ALL: [Self; 4] =
        [Self::FullCone, Self::AddressRestricted, Self::PortRestricted, Self::Symmetric];

    /// A short name, e.g. `full-cone`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FullCone => "full-cone",
            Self::AddressRestricted => "address-restricted",
            Self::PortRestricted => "port-restricted",
            Self::Symmetric => "symmetric",
        }
    }

    /// Whether the public mapping is the same whatever the remote endpoint (all but
    /// symmetric).
    pub fn endpoint_independent_mapping(self) -> bool {
        self != Self::Symmetric
    }

    /// The nftables ruleset (for `nft -f -`) that makes a NAT of this kind, with public
    /// interface `wan`.
    pub fn ruleset(self, wan: &str) -> String {
        let masquerade = match self {
            Self::Symmetric => "masquerade fully-random",
            _ => "masquerade",
        };
        let cone = matches!(self, Self::FullCone | Self::AddressRestricted);
        let mut r = String::from("table ip lab {\n");
        if cone {
            r.push_str(
                "  map cone {\n    type inet_service : ipv4_addr . inet_service\n    \
                 flags dynamic,timeout\n    timeout 300s\n  }\n",
            );
        }
        if self == Self::AddressRestricted {
            r.push_str(
                "  set permit {\n    type inet_service . ipv4_addr\n    \
                 flags dynamic,timeout\n    timeout 300s\n  }\n",
            );
        }
        r.push_str(&format!(
            "  chain srcnat {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
             oifname \"{wan}\" {masquerade}\n  }}\n"
        ));
        if cone {
            // After srcnat the packet carries its public port; the conntrack original tuple
            // still knows the LAN endpoint.
            let mut learn = format!(
                "    oifname \"{wan}\" meta l4proto udp update @cone \
                 {{ udp sport : ct original ip saddr . ct original proto-src }}\n"
            );
            if self == Self::AddressRestricted {
                learn.push_str(&format!(
                    "    oifname \"{wan}\" meta l4proto udp update @permit {{ udp sport . ip daddr }}\n"
                ));
            }
            r.push_str(&format!(
                "  chain learn {{\n    type filter hook postrouting priority srcnat + 10; policy accept;\n{learn}  }}\n"
            ));
            if self == Self::AddressRestricted {
                r.push_str(&format!(
                    "  chain restrict {{\n    type filter hook prerouting priority dstnat - 10; policy accept;\n    \
                     iifname \"{wan}\" meta l4proto udp ct state new udp dport . ip saddr != @permit drop\n  }}\n"
                ));
            }
            r.push_str(&format!(
                "  chain dstnat {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
                 iifname \"{wan}\" meta l4proto udp dnat ip addr . port to udp dport map @cone\n  }}\n"
            ));
        }
        let allow_dnat =
            if cone { format!("    iifname \"{wan}\" ct status dnat accept\n") } else { String::new() };
        r.push_str(&format!(
            "  chain input {{\n    type filter hook input priority filter; policy accept;\n    \
             iifname \"{wan}\" ct state != {{ established, related }} drop\n  }}\n  \
             chain forward {{\n    type filter hook forward priority filter; policy accept;\n\
             {allow_dnat}    iifname \"{wan}\" ct state != {{ established, related }} drop\n  }}\n"
        ));
        r.push_str("}\n");
        r
    }
}

impl fmt::Display for NatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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

    #[test]
    fn rulesets_mention_their_pieces() {
        assert!(NatKind::Symmetric.ruleset("wan").contains("fully-random"));
        assert!(!NatKind::PortRestricted.ruleset("wan").contains("@cone"));
        assert!(NatKind::FullCone.ruleset("wan").contains("@cone"));
        assert!(!NatKind::FullCone.ruleset("wan").contains("@permit"));
        assert!(NatKind::AddressRestricted.ruleset("wan").contains("@permit"));
    }
}
