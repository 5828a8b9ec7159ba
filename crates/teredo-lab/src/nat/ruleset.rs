//! The nftables rulesets of the NAT kinds (see the table in [`super`]): what the kernel
//! does for each kind, and, for the kinds a userland NAT serves, how UDP is kept away
//! from connection tracking so that only the userland NAT translates it.

use super::{Engine, NatKind};

/// The nftables table that holds the lab's own NAT rules.
pub const TABLE: &str = "lab";
/// The nftables table (family `inet`) into whose chains `miniupnpd` puts its rules.
pub const UPNP_TABLE: &str = "lab_upnp";
/// `miniupnpd`'s chains in [`UPNP_TABLE`]: forward (filter), prerouting (DNAT),
/// postrouting (SNAT, unused by IGDv1 port mappings).
pub const UPNP_CHAINS: [&str; 3] = ["upnp_forward", "upnp_prerouting", "upnp_postrouting"];

/// The ruleset (for `nft -f -`) that makes a NAT of `kind` with public interface `wan`;
/// `tun` is the userland NAT's TUN interface for the kinds that have one.
pub(crate) fn ruleset(kind: NatKind, wan: &str, tun: &str) -> String {
    let userland = kind.engine() == Engine::Userland;
    let masquerade = match kind {
        NatKind::Symmetric => "masquerade fully-random",
        _ => "masquerade",
    };
    let cone = matches!(kind, NatKind::FullCone | NatKind::AddressRestricted);
    let mut r = format!("table ip {TABLE} {{\n");
    if cone {
        r.push_str(
            "  map cone {\n    type inet_service : ipv4_addr . inet_service\n    \
             flags dynamic,timeout\n    timeout 300s\n  }\n",
        );
    }
    if kind == NatKind::AddressRestricted {
        r.push_str(
            "  set permit {\n    type inet_service . ipv4_addr\n    \
             flags dynamic,timeout\n    timeout 300s\n  }\n",
        );
    }
    if userland {
        // UDP from the LAN, from the internet and from the userland NAT's TUN is never
        // tracked: masquerade must not touch it (it would put the first public address on
        // every packet) and the filter below must not take it for unsolicited.
        r.push_str(&format!(
            "  chain raw {{\n    type filter hook prerouting priority raw; policy accept;\n    \
             iifname {{ \"{wan}\", \"lan\", \"{tun}\" }} meta l4proto udp notrack\n  }}\n"
        ));
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
        if kind == NatKind::AddressRestricted {
            learn.push_str(&format!(
                "    oifname \"{wan}\" meta l4proto udp update @permit {{ udp sport . ip daddr }}\n"
            ));
        }
        r.push_str(&format!(
            "  chain learn {{\n    type filter hook postrouting priority srcnat + 10; policy accept;\n{learn}  }}\n"
        ));
        if kind == NatKind::AddressRestricted {
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
    let mut allow = String::new();
    if cone || kind == NatKind::UpnpPortRestricted {
        // The cone map's or miniupnpd's DNAT: the mapping lets it in.
        allow.push_str(&format!("    iifname \"{wan}\" ct status dnat accept\n"));
    }
    if userland {
        allow.push_str("    meta l4proto udp ct state untracked accept\n");
    }
    r.push_str(&format!(
        "  chain input {{\n    type filter hook input priority filter; policy accept;\n    \
         iifname \"{wan}\" ct state != {{ established, related }} drop\n  }}\n  \
         chain forward {{\n    type filter hook forward priority filter; policy accept;\n\
         {allow}    iifname \"{wan}\" ct state != {{ established, related }} drop\n  }}\n"
    ));
    r.push_str("}\n");
    if kind.upnp() {
        r.push_str(&upnp_tables(kind == NatKind::UpnpPortRestricted));
    }
    r
}

/// The table and chains `miniupnpd` adds its rules to. With `hooked`, the kernel applies
/// them (its DNAT and forward accepts); without, they are only its bookkeeping and the
/// userland NAT applies the port mappings from `miniupnpd`'s lease file instead.
fn upnp_tables(hooked: bool) -> String {
    let [fwd, pre, post] = UPNP_CHAINS;
    let mut r = format!(
        "table inet {UPNP_TABLE} {{\n  chain {fwd} {{\n  }}\n  chain {pre} {{\n  }}\n  chain {post} {{\n  }}\n"
    );
    if hooked {
        r.push_str(&format!(
            "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    \
             jump {fwd}\n  }}\n  \
             chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             jump {pre}\n  }}\n  \
             chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    \
             jump {post}\n  }}\n"
        ));
    }
    r.push_str("}\n");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(kind: NatKind) -> String {
        ruleset(kind, "wan", "unat")
    }

    #[test]
    fn rulesets_mention_their_pieces() {
        assert!(rs(NatKind::Symmetric).contains("fully-random"));
        assert!(!rs(NatKind::PortRestricted).contains("@cone"));
        assert!(rs(NatKind::FullCone).contains("@cone"));
        assert!(!rs(NatKind::FullCone).contains("@permit"));
        assert!(rs(NatKind::AddressRestricted).contains("@permit"));
        for kind in NatKind::ALL {
            let r = rs(kind);
            assert_eq!(r.contains("notrack"), kind.engine() == Engine::Userland, "{kind}");
            assert_eq!(r.contains(UPNP_TABLE), kind.upnp(), "{kind}");
            assert!(!r.contains("fully-random") || kind == NatKind::Symmetric, "{kind}");
        }
        assert!(rs(NatKind::UpnpPortRestricted).contains("jump upnp_prerouting"));
        assert!(!rs(NatKind::UpnpPortSymmetric).contains("jump upnp_prerouting"));
    }
}
